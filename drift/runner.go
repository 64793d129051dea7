package drift

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-version"
	"github.com/hashicorp/terraform-exec/tfexec"

	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/sandbox"
)

// Phase is the phase a credential is minted for: plan-phase credentials
// only read; apply-phase credentials mutate.
type Phase string

// The two phases of a run.
const (
	PhasePlan  Phase = "plan"
	PhaseApply Phase = "apply"
)

// Credentials supply the environment that carries a phase's credential to
// Terraform: for example a token written to a file in dir — a directory
// private to the run, outside the configuration — and the variables naming
// it. A fresh credential is asked for at each step, right before it runs.
type Credentials interface {
	Env(ctx context.Context, phase Phase, dir string) (map[string]string, error)
}

// Options configure a Runner.
type Options struct {
	// Terraform is the binary, Terraform or OpenTofu.
	Terraform string
	// ProviderMirror is the filesystem mirror Terraform installs
	// providers from, and from nowhere else: the runner writes the CLI
	// configuration that says so.
	ProviderMirror string
	// Sandbox runs every Terraform process (and the providers it starts)
	// in a bubblewrap sandbox that sees only the run's workdir, the
	// binary and the mirror. Required unless InsecureNoSandbox.
	Sandbox *sandbox.Sandbox
	// InsecureNoSandbox runs Terraform as a plain child process, able to
	// read whatever the runner's user can: only for development machines
	// without bubblewrap.
	InsecureNoSandbox bool
	// InterruptGrace is how long Terraform may take to stop after an
	// interrupt (cancel or step timeout) before it is killed with all it
	// started; 0 means 2 minutes.
	InterruptGrace time.Duration
	// WorkRoot is where scratch workdirs are made; "" means os.TempDir().
	WorkRoot string
	// StepTimeout bounds each Terraform command; 0 means 15 minutes.
	StepTimeout time.Duration
	// SensitiveKey is planparse's HMAC key for sensitive values.
	SensitiveKey []byte
	// Env is added to every step's environment. Nothing else of seb's own
	// environment reaches Terraform: seb's credentials must never leak
	// into a run.
	Env map[string]string
	// Limits bound what a bundle may unpack to; zero means
	// DefaultBundleLimits.
	Limits BundleLimits
	Logger *slog.Logger
	// Now is the clock for step timings; nil means time.Now.
	Now func() time.Time
}

// Valid reports whether the options can be used.
func (o Options) Valid() error {
	switch {
	case o.Terraform == "":
		return errors.New("drift: Options.Terraform is empty")
	case o.ProviderMirror == "" || !filepath.IsAbs(o.ProviderMirror):
		// Without one, Terraform would install providers from the registry
		// or from a bundle's terraform.d: code the broker never vetted.
		return errors.New("drift: Options.ProviderMirror must be an absolute path; seb runs Terraform only with a provider mirror")
	case o.Sandbox == nil && !o.InsecureNoSandbox:
		return errors.New("drift: Options.Sandbox is nil; seb runs Terraform only in a sandbox (InsecureNoSandbox overrides that)")
	case o.InterruptGrace < 0:
		return errors.New("drift: Options.InterruptGrace is negative")
	case len(o.SensitiveKey) == 0:
		return errors.New("drift: Options.SensitiveKey is empty")
	case o.StepTimeout < 0:
		return errors.New("drift: Options.StepTimeout is negative")
	}
	return nil
}

// A Runner runs Terraform for seb: it materializes configurations into
// scratch workdirs, plans against live state, and applies exactly the plan
// it compared.
type Runner struct {
	opts    Options
	version *version.Version
	// cliConfig is the CLI configuration every step uses: providers from
	// the mirror only.
	cliConfig string
}

// New returns a runner for the binary in opts, whose version it reads.
func New(ctx context.Context, opts Options) (r *Runner, err error) {
	if err := opts.Valid(); err != nil {
		return nil, err
	}
	if opts.StepTimeout == 0 {
		opts.StepTimeout = 15 * time.Minute
	}
	if opts.InterruptGrace == 0 {
		opts.InterruptGrace = 2 * time.Minute
	}
	if opts.Terraform, err = filepath.Abs(opts.Terraform); err != nil {
		return nil, fmt.Errorf("terraform binary: %w", err)
	}
	if opts.WorkRoot == "" {
		opts.WorkRoot = os.TempDir()
	}
	if opts.Limits == (BundleLimits{}) {
		opts.Limits = DefaultBundleLimits
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.WorkRoot, 0o700); err != nil {
		return nil, fmt.Errorf("work root: %w", err)
	}
	// The CLI configuration sits in the work root, beside the runs and
	// outside every one of them, and is shown to each read-only.
	cliConfig := filepath.Join(opts.WorkRoot, "terraform.rc")
	config := fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path = %q\n  }\n}\n", opts.ProviderMirror)
	if err := os.WriteFile(cliConfig, []byte(config), 0o644); err != nil {
		return nil, fmt.Errorf("terraform CLI configuration: %w", err)
	}
	tf, err := tfexec.NewTerraform(opts.WorkRoot, opts.Terraform)
	if err != nil {
		return nil, fmt.Errorf("terraform binary: %w", err)
	}
	tf.SetEnv(map[string]string{"CHECKPOINT_DISABLE": "1", "PATH": os.Getenv("PATH")})
	v, _, err := tf.Version(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("terraform version: %w", err)
	}
	return &Runner{opts: opts, version: v, cliConfig: cliConfig}, nil
}

// Version returns the version the binary reports.
func (r *Runner) Version() string { return r.version.String() }

// A Workdir is a scratch directory holding one configuration for one run.
// It holds no state of its own: the run reads the workspace's state from
// the broker's store and writes it back.
type Workdir struct {
	r *Runner
	// Dir is the directory Terraform runs in: the configuration.
	Dir string
	// Secrets is a directory private to the run, beside Dir and outside
	// the configuration, for credential files. In a sandbox it is visible
	// read-only and only Dir is writable, so that nothing Terraform runs
	// can move or replace what the runner writes there.
	Secrets string
	root    string
	// ConfigDigest is the digest of the configuration bundle.
	ConfigDigest string

	mu  sync.Mutex
	log bytes.Buffer // JSON UI log lines of every step so far
	// tf is reused by every step so that tfexec reads the binary's version
	// once, not once per command.
	tf *tfexec.Terraform
	// tee, when set, receives the log as it is written.
	tee io.Writer
}

// Follow sends the workdir's JSON UI log, from now on, to w as Terraform
// writes it, in addition to keeping it: how a live log reaches a watcher.
func (w *Workdir) Follow(tee io.Writer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tee = tee
}

// NewWorkdir unpacks a configuration bundle (a gzip'd tar of a module
// tree) into a fresh workdir. Hostile archives are refused and leave
// nothing behind.
func (r *Runner) NewWorkdir(bundle io.Reader) (*Workdir, error) {
	return r.newWorkdir(func(dir string) (string, error) { return ExtractBundle(bundle, dir, r.opts.Limits) }, true)
}

// NewWorkdirFromDirectory copies a local module tree into a fresh workdir,
// for local use; its digest equals that of the directory's bundle.
func (r *Runner) NewWorkdirFromDirectory(src string) (*Workdir, error) {
	return r.newWorkdir(func(dir string) (string, error) { return CopyDirectory(src, dir, r.opts.Limits) }, true)
}

// newWorkdir makes a workdir that fill fills; check runs the checks of
// the configuration (only tests of the sandbox skip them, to prove that
// the sandbox alone contains what they would refuse).
func (r *Runner) newWorkdir(fill func(dir string) (string, error), check bool) (*Workdir, error) {
	root, err := os.MkdirTemp(r.opts.WorkRoot, "seb-run-")
	if err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	w := &Workdir{r: r, root: root, Dir: filepath.Join(root, "config"), Secrets: filepath.Join(root, "secrets")}
	err = os.Mkdir(w.Dir, 0o700)
	if err == nil {
		err = os.Mkdir(w.Secrets, 0o700)
	}
	if err == nil {
		err = os.Mkdir(filepath.Join(root, "home"), 0o700)
	}
	if err == nil {
		w.ConfigDigest, err = fill(w.Dir)
	}
	if err == nil && check {
		err = checkConfiguration(w.Dir)
	}
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	return w, nil
}

// checkConfiguration refuses what a configuration must not bring along:
// state (the broker owns it), Terraform's data directory (it could hold
// provider binaries), and a backend or cloud block (state would go
// elsewhere), and provisioners (see checkHCL).
func checkConfiguration(dir string) error {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		switch name := d.Name(); {
		case d.IsDir() && name == ".terraform":
			return refuseConfig("%s: a bundle cannot bring Terraform's data directory (it could hold provider binaries)", rel)
		case d.IsDir() && name == "terraform.d":
			return refuseConfig("%s: a bundle cannot bring plugins; providers come from the broker's mirror", rel)
		case !d.IsDir() && (strings.HasSuffix(name, ".tfstate") || strings.Contains(name, ".tfstate.")):
			return refuseConfig("%s: a bundle cannot bring state; the broker owns each workspace's state", rel)
		case !d.IsDir() && isVariableFile(name):
			return refuseConfig("%s: a bundle cannot bring variable files; Terraform would read them without their values being the proposal's variables that reviewers see — send the values with the proposal", rel)
		case !d.IsDir() && isOverrideFile(name):
			return refuseConfig("%s: a bundle cannot bring override files; they silently change what the other files say", rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return checkHCL(dir)
}

// isVariableFile reports whether Terraform loads name as variable values
// by itself (terraform.tfvars, *.auto.tfvars and their JSON forms).
func isVariableFile(name string) bool {
	base := strings.TrimSuffix(name, ".json")
	return base == "terraform.tfvars" || strings.HasSuffix(base, ".auto.tfvars")
}

// isOverrideFile reports whether Terraform or OpenTofu merges name over
// the other files (override.tf, *_override.tf, and .tofu and JSON forms).
func isOverrideFile(name string) bool {
	base := strings.TrimSuffix(name, ".json")
	for _, ext := range []string{".tf", ".tofu"} {
		if stem, ok := strings.CutSuffix(base, ext); ok {
			return stem == "override" || strings.HasSuffix(stem, "_override")
		}
	}
	return false
}

// Close removes the workdir and its secrets.
func (w *Workdir) Close() error { return os.RemoveAll(w.root) }

// Log returns the JSON UI log (one JSON object per line) of every step
// run so far in the workdir.
func (w *Workdir) Log() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.log.Bytes())
}

// terraform returns the workdir's tfexec handle prepared for one step:
// exactly the environment seb gives Terraform plus extra, and no output
// writers left from an earlier step. In a sandbox the handle's binary is
// the sandbox's shim, and the step sees only the workdir (read-write), the
// binary, the mirror and the CLI configuration (read-only).
func (w *Workdir) terraform(extra map[string]string) (*tfexec.Terraform, error) {
	exe, sandboxEnv := w.r.opts.Terraform, map[string]string(nil)
	home := filepath.Join(w.root, "home")
	if sb := w.r.opts.Sandbox; sb != nil {
		var err error
		exe, sandboxEnv, err = sb.Command(sandbox.Spec{
			Program:   w.r.opts.Terraform,
			ReadOnly:  []string{w.r.opts.Terraform, w.r.opts.ProviderMirror, w.r.cliConfig, w.Secrets},
			ReadWrite: []string{w.Dir},
			Dir:       w.Dir,
		})
		if err != nil {
			return nil, err
		}
		home = "/tmp"
	}
	if w.tf == nil {
		tf, err := tfexec.NewTerraform(w.Dir, exe)
		if err != nil {
			return nil, err
		}
		if err := tf.SetWaitDelay(w.r.opts.InterruptGrace); err != nil {
			return nil, err
		}
		w.tf = tf
	}
	tf := w.tf
	tf.SetStdout(nil)
	tf.SetStderr(nil)
	env := map[string]string{
		"PATH":               "/usr/local/bin:/usr/bin:/bin",
		"HOME":               home,
		"CHECKPOINT_DISABLE": "1",
		"TF_CLI_CONFIG_FILE": w.r.cliConfig,
	}
	maps.Copy(env, w.r.opts.Env)
	maps.Copy(env, extra)
	maps.Copy(env, sandboxEnv)
	if err := tf.SetEnv(env); err != nil {
		return nil, err
	}
	return tf, nil
}

// step runs fn with a fresh tfexec handle under the step timeout, and
// keeps Terraform's standard error for the error it returns.
func (w *Workdir) step(ctx context.Context, name string, env map[string]string, fn func(ctx context.Context, tf *tfexec.Terraform) error) error {
	tf, err := w.terraform(env)
	if err != nil {
		return fmt.Errorf("terraform %s: %w", name, err)
	}
	var stderr bytes.Buffer
	tf.SetStderr(&stderr)
	ctx, cancel := context.WithTimeout(ctx, w.r.opts.StepTimeout)
	defer cancel()
	start := w.r.opts.Now()
	w.mu.Lock()
	logStart := w.log.Len()
	w.mu.Unlock()
	err = fn(ctx, tf)
	w.r.opts.Logger.Debug("terraform step", "step", name, "dir", w.Dir, "duration", w.r.opts.Now().Sub(start), "error", err)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("terraform %s: timed out after %s: %w", name, w.r.opts.StepTimeout, err)
		}
		w.mu.Lock()
		diagnostics := logErrors(w.log.Bytes()[logStart:])
		w.mu.Unlock()
		return &StepError{Step: name, Err: err, Stderr: strings.TrimSpace(strings.TrimSpace(stderr.String()) + "\n" + diagnostics)}
	}
	return nil
}

// logErrors returns the error diagnostics of a JSON UI log: in -json mode
// Terraform writes them there, not to stderr.
func logErrors(log []byte) string {
	var out []string
	for _, line := range bytes.Split(log, []byte("\n")) {
		var msg struct {
			Level      string `json:"@level"`
			Message    string `json:"@message"`
			Diagnostic *struct {
				Summary, Detail string
			} `json:"diagnostic"`
		}
		if json.Unmarshal(line, &msg) != nil || msg.Level != "error" {
			continue
		}
		if msg.Diagnostic != nil {
			out = append(out, strings.TrimSpace(msg.Diagnostic.Summary+": "+msg.Diagnostic.Detail))
		} else {
			out = append(out, msg.Message)
		}
	}
	return strings.Join(out, "\n")
}

// A StepError is a failed Terraform command, with what it said on
// standard error.
type StepError struct {
	Step   string
	Err    error
	Stderr string
}

func (e *StepError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("terraform %s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("terraform %s: %v\n%s", e.Step, e.Err, e.Stderr)
}

func (e *StepError) Unwrap() error { return e.Err }

// logWriter appends a step's JSON UI log to the workdir's log.
type logWriter struct{ w *Workdir }

func (l logWriter) Write(p []byte) (int, error) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if l.w.tee != nil {
		l.w.tee.Write(p)
	}
	return l.w.log.Write(p)
}

// init runs `terraform init` offline against the provider mirror.
func (w *Workdir) init(ctx context.Context) error {
	return w.step(ctx, "init", nil, func(ctx context.Context, tf *tfexec.Terraform) error {
		if w.r.version.GreaterThanOrEqual(version.Must(version.NewVersion("1.9.0"))) {
			return tf.InitJSON(ctx, logWriter{w}, tfexec.Upgrade(false))
		}
		// Before 1.9 init has no JSON output; keep its text out of the log.
		return tf.Init(ctx, tfexec.Upgrade(false))
	})
}

// A PlanRequest says what to plan.
type PlanRequest struct {
	// Vars are root module variables.
	Vars map[string]string
	// State is the workspace's current state; nil for none.
	State []byte
	// Credentials supply the plan-phase credential.
	Credentials Credentials
	// Schemas asks for the provider schemas of the changed resource
	// types (`terraform providers schema -json`), which say which values
	// are sensitive by nature.
	Schemas bool
}

// A PlanResult is a plan made against live state and saved.
type PlanResult struct {
	// Plan is the summarized plan, with its drift.
	Plan *planparse.Plan
	// JSON is `terraform show -json` of the saved plan.
	JSON []byte
	// File is the saved plan, the only thing Apply will apply.
	File string
	// HasChanges is the plan's -detailed-exitcode answer.
	HasChanges bool
	// RefreshedAt is when the plan, and with it the refresh of live state,
	// ended; ShownAt when its JSON had been read.
	RefreshedAt, ShownAt time.Time
	// Schemas are the schemas of the changed resource types, when the
	// request asked for them.
	Schemas planparse.Schemas
}

const (
	planFile  = "seb.tfplan"
	stateFile = "terraform.tfstate"
)

// Plan runs init and `terraform plan -out` with refresh against live state
// using a plan-phase credential, then `terraform show -json` of the saved
// plan, and summarizes it.
func (w *Workdir) Plan(ctx context.Context, req PlanRequest) (*PlanResult, error) {
	if err := w.writeState(req.State); err != nil {
		return nil, err
	}
	if err := w.init(ctx); err != nil {
		return nil, err
	}
	env, err := req.Credentials.Env(ctx, PhasePlan, w.Secrets)
	if err != nil {
		return nil, fmt.Errorf("plan credential: %w", err)
	}
	res := &PlanResult{File: filepath.Join(w.Dir, planFile)}
	opts := []tfexec.PlanOption{tfexec.Out(planFile), tfexec.Refresh(true)}
	for _, name := range slices.Sorted(maps.Keys(req.Vars)) {
		opts = append(opts, tfexec.Var(name+"="+req.Vars[name]))
	}
	err = w.step(ctx, "plan", env, func(ctx context.Context, tf *tfexec.Terraform) error {
		changes, err := tf.PlanJSON(ctx, logWriter{w}, opts...)
		res.HasChanges = changes
		return err
	})
	if err != nil {
		return nil, err
	}
	res.RefreshedAt = w.r.opts.Now()
	var raw bytes.Buffer
	err = w.step(ctx, "show", nil, func(ctx context.Context, tf *tfexec.Terraform) error {
		// Read the version first: tfexec checks it before showing, and
		// that check would also write to the captured stdout.
		if _, _, err := tf.Version(ctx, false); err != nil {
			return err
		}
		tf.SetStdout(&raw)
		_, err := tf.ShowPlanFile(ctx, planFile, tfexec.JSONNumber(true))
		return err
	})
	if err != nil {
		return nil, err
	}
	res.JSON = raw.Bytes()
	res.Plan, err = planparse.Parse(bytes.NewReader(res.JSON), planparse.Options{SensitiveKey: w.r.opts.SensitiveKey})
	if err != nil {
		return nil, fmt.Errorf("summarize the plan: %w", err)
	}
	res.ShownAt = w.r.opts.Now()
	if req.Schemas {
		err = w.step(ctx, "schema", nil, func(ctx context.Context, tf *tfexec.Terraform) error {
			ps, err := tf.ProvidersSchema(ctx)
			res.Schemas = planparse.SchemasFor(ps, res.Plan.Summary)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// maxStateBytes bounds the state the runner reads back from a workdir.
const maxStateBytes = 512 << 20

// writeState puts the workspace's state where Terraform's local backend
// reads it, or removes any. Like every access of the runner to the
// workdir, which Terraform's processes write, it goes through an os.Root:
// a link planted there cannot lead it to a file outside.
func (w *Workdir) writeState(state []byte) error {
	root, err := os.OpenRoot(w.Dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer root.Close()
	if state == nil {
		if err := root.Remove(stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("state: %w", err)
		}
		return nil
	}
	if err := root.WriteFile(stateFile, state, 0o600); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// State returns the state Terraform left in the workdir, or nil. Only a
// regular file inside the workdir, of at most maxStateBytes, is read: the
// configuration could have replaced it with a link to a host file or a
// device.
func (w *Workdir) State() ([]byte, error) {
	root, err := os.OpenRoot(w.Dir)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	defer root.Close()
	fi, err := root.Lstat(stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("state: %s is not a regular file (%s)", stateFile, fi.Mode().Type())
	}
	f, err := root.OpenFile(stateFile, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if len(data) > maxStateBytes {
		return nil, fmt.Errorf("state: over %d bytes", maxStateBytes)
	}
	return data, nil
}

// Outcome is how an apply ended.
type Outcome string

// The outcomes of an apply.
const (
	Succeeded   Outcome = "succeeded"
	Failed      Outcome = "failed"
	Interrupted Outcome = "interrupted"
)

// An ApplyResult is how an apply ended and the state it left.
type ApplyResult struct {
	Outcome Outcome
	// Err says why it failed or was interrupted.
	Err error
	// State is the state after the apply (also after a failure: partial
	// changes are real), nil if Terraform left none.
	State []byte
	// StartedAt is when the apply command started.
	StartedAt, EndedAt time.Time
}

// Apply applies exactly the saved plan of p — no re-plan in between —
// with an apply-phase credential, streaming its JSON log into the
// workdir's log. Cancelling ctx interrupts Terraform (SIGINT), which stops
// cleanly and writes the state; the outcome is then Interrupted.
func (w *Workdir) Apply(ctx context.Context, p *PlanResult, creds Credentials) (*ApplyResult, error) {
	env, err := creds.Env(ctx, PhaseApply, w.Secrets)
	if err != nil {
		return nil, fmt.Errorf("apply credential: %w", err)
	}
	res := &ApplyResult{Outcome: Succeeded, StartedAt: w.r.opts.Now()}
	err = w.step(ctx, "apply", env, func(ctx context.Context, tf *tfexec.Terraform) error {
		return tf.ApplyJSON(ctx, logWriter{w}, tfexec.DirOrPlan(filepath.Base(p.File)))
	})
	res.EndedAt = w.r.opts.Now()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		res.Outcome, res.Err = Interrupted, err
	default:
		res.Outcome, res.Err = Failed, err
	}
	state, serr := w.State()
	if serr != nil {
		return nil, fmt.Errorf("read state after apply: %w", serr)
	}
	res.State = state
	return res, nil
}

// CheckBundle unpacks a bundle into a scratch directory, checks the
// configuration as NewWorkdir does, removes it and returns the bundle's
// digest: admission's checks, for the broker, which never runs Terraform.
// Refusals are the sender's fault (IsRefusal).
func CheckBundle(bundle io.Reader, limits BundleLimits) (string, error) {
	dir, err := os.MkdirTemp("", "seb-check-")
	if err != nil {
		return "", fmt.Errorf("check bundle: %w", err)
	}
	defer os.RemoveAll(dir)
	digest, err := ExtractBundle(bundle, dir, limits)
	if err != nil {
		return "", err
	}
	if err := checkConfiguration(dir); err != nil {
		return "", err
	}
	return digest, nil
}

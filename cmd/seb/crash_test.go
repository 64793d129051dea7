package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/broker/sqlite"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
	"github.com/seb-broker/seb/internal/sandboxtest"
	"github.com/seb-broker/seb/internal/tftest"
)

// A crashSite is seb serve (and maybe seb runner) as real processes of
// this binary, on a data directory of the test's, with a sandbox cloud
// whose every mutation takes two seconds.
type crashSite struct {
	t       *testing.T
	dir     string
	url     string
	config  string
	env     []string
	tokens  map[string]string
	serve   *exec.Cmd
	sandbox *sandboxtest.Sandbox
	logs    *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// chain is three buckets created one after the other.
const chain = `terraform {
  required_providers {
    sandbox = { source = "seb.invalid/seb/sandbox", version = "0.1.0" }
  }
}
resource "sandbox_bucket" "a" { name = "crash-a" }
resource "sandbox_bucket" "b" {
  name       = "crash-b"
  depends_on = [sandbox_bucket.a]
}
resource "sandbox_bucket" "c" {
  name       = "crash-c"
  depends_on = [sandbox_bucket.b]
}
`

func newCrashSite(t *testing.T, external bool) *crashSite {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &crashSite{t: t, dir: dir, url: "http://" + addr, config: filepath.Join(dir, "seb.hcl"), tokens: map[string]string{}, logs: &syncBuffer{}}
	s.sandbox = sandboxtest.StartWith(t, sandboxcloud.Options{Issuer: s.url, StatePath: filepath.Join(dir, "sandbox.json"), MutationDelay: 2 * time.Second})
	config := fmt.Sprintf(`data_dir   = %q
listen     = %q
issuer_url = %q
runner {
  external = %t
  lease    = "4s"
}
workspace "sandbox" {
  approvals_required = 0
  protected_actions  = []
  credentials {
    audience       = %q
    token_file_env = ["SANDBOX_TOKEN_FILE"]
    env            = { SANDBOX_ENDPOINT = %q }
  }
}
`, filepath.Join(dir, "data"), addr, s.url, external, sandboxtest.Audience, s.sandbox.URL)
	if err := os.WriteFile(s.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "terraform.rc"), []byte(tftest.CLIConfig(tftest.Mirror(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o700)
	s.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + tmp,
		"TF_CLI_CONFIG_FILE=" + filepath.Join(dir, "terraform.rc"), "SEB_REQUIRE_SANDBOX=" + os.Getenv("SEB_REQUIRE_SANDBOX")}
	if bin := os.Getenv("SEB_TERRAFORM"); bin != "" {
		s.env = append(s.env, "SEB_TERRAFORM="+bin)
	}
	for _, role := range []string{"agent", "ci", "admin", "runner"} {
		r := seb(t, "", "tokens", "create", "--config", s.config, "--role", role, "--name", role+"-1")
		if r.code != exitOK {
			t.Fatalf("tokens create: %s", r.stderr)
		}
		s.tokens[role] = strings.TrimSpace(r.stdout)
	}
	return s
}

// start starts this binary as `seb args...` with the site's environment.
func (s *crashSite) start(args ...string) *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// startServe starts seb serve and waits until it answers.
func (s *crashSite) startServe() {
	s.t.Helper()
	s.serve = s.serveAt(s.config, s.url)
}

// serveAt starts seb serve with a configuration and waits until it
// answers at url.
func (s *crashSite) serveAt(config, url string) *exec.Cmd {
	s.t.Helper()
	cmd := s.start("serve", "--config", config)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("seb serve (%s) did not start:\n%s", config, s.logs)
		}
	}
}

// call sends a JSON request with a role's token and decodes the answer.
func (s *crashSite) call(role, method, path string, body, out any) int {
	s.t.Helper()
	var in io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		in = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, s.url+path, in)
	req.Header.Set("Authorization", "Bearer "+s.tokens[role])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		json.Unmarshal(data, out)
	}
	return resp.StatusCode
}

// until polls cond every 100ms for up to limit.
func (s *crashSite) until(what string, limit time.Duration, cond func() bool) {
	s.t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s\n%s", what, s.logs)
		}
	}
}

// stateResources returns how many resources seb's state of the workspace
// holds.
func (s *crashSite) stateResources() int {
	var state struct {
		Resources []json.RawMessage `json:"resources"`
	}
	s.call("admin", "GET", "/api/v1/workspaces/sandbox/state", nil, &state)
	return len(state.Resources)
}

// applyingExecution proposes the chain, waits for its certificate,
// executes it, and returns the execution once seb's state holds the first
// bucket: the apply is under way, and what it did so far reached seb.
func (s *crashSite) applyingExecution() string {
	s.t.Helper()
	work := filepath.Join(s.dir, "config")
	os.Mkdir(work, 0o755)
	os.WriteFile(filepath.Join(work, "main.tf"), []byte(chain), 0o644)
	r := seb(s.t, "", "propose", "--server", s.url, "--token", s.tokens["agent"], "--workspace", "sandbox", "--dir", work)
	if r.code != exitOK {
		s.t.Fatalf("propose: %s\n%s", r.stderr, s.logs)
	}
	proposal := strings.TrimSpace(r.stdout)
	var p struct {
		State         string `json:"state"`
		CertificateID string `json:"certificate_id"`
	}
	s.until("the certificate", 2*time.Minute, func() bool {
		s.call("admin", "GET", "/api/v1/proposals/"+proposal, nil, &p)
		return p.CertificateID != "" || p.State == "refused"
	})
	var e struct {
		ID string `json:"id"`
	}
	if code := s.call("ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": p.CertificateID}, &e); code != http.StatusAccepted {
		s.t.Fatalf("execute: %d\n%s", code, s.logs)
	}
	s.until("the first bucket in seb's state", 2*time.Minute, func() bool { return s.stateResources() >= 1 })
	return e.ID
}

type crashExecution struct {
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// checkHeld checks what must hold after a crash mid-apply: the execution
// interrupted and not retried, the workspace held and saying why, what
// the apply did before the crash in seb's state, and the certificate
// unusable.
func (s *crashSite) checkHeld(exec string) {
	s.t.Helper()
	var e crashExecution
	s.until("the execution to end", time.Minute, func() bool {
		s.call("admin", "GET", "/api/v1/executions/"+exec, nil, &e)
		return e.State != "applying" && e.State != "planning" && e.State != "queued" && e.State != "comparing"
	})
	if e.State != "interrupted" || !strings.Contains(e.Reason, "not retried") {
		s.t.Errorf("execution %+v, want interrupted and not retried", e)
	}
	var ws struct {
		Hold *struct{ Execution, Reason string } `json:"hold"`
	}
	s.call("admin", "GET", "/api/v1/workspaces/sandbox", nil, &ws)
	if ws.Hold == nil || ws.Hold.Execution != exec || !strings.Contains(ws.Hold.Reason, "may be missing") {
		s.t.Errorf("the workspace is not held for reconciliation: %+v", ws.Hold)
	}
	if n := s.stateResources(); n < 1 {
		s.t.Errorf("seb's state holds %d resources; the bucket created before the crash is missing", n)
	}
	var refused struct{ Error struct{ Message string } }
	var cert struct {
		CertificateID string `json:"certificate_id"`
	}
	s.call("admin", "GET", "/api/v1/executions/"+exec, nil, &cert)
	if code := s.call("ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": cert.CertificateID}, &refused); code < 400 {
		s.t.Errorf("the certificate ran again: %d", code)
	}
}

// tokenFiles counts the credential files under dir.
func tokenFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".token") {
			n++
		}
		return nil
	})
	return n
}

// noTokenFiles fails if a credential file is left under dir.
func noTokenFiles(t *testing.T, dir string) {
	t.Helper()
	if n := tokenFiles(dir); n > 0 {
		t.Errorf("%d credential file(s) outlived their run under %s", n, dir)
	}
}

// TestKillBrokerMidApply: kill -9 of seb serve during an apply. Its
// runner dies with it; at restart the execution is interrupted (never
// retried), the bucket created before the kill is in seb's state, the
// workspace is held for reconciliation and says why, the certificate is
// spent, and no credential file is left once the new runner has started.
func TestKillBrokerMidApply(t *testing.T) {
	if testing.Short() {
		t.Skip("starts seb serve twice")
	}
	s := newCrashSite(t, false)
	s.startServe()
	exec := s.applyingExecution()
	s.serve.Process.Signal(syscall.SIGKILL)
	// Not Wait: the runner child may still hold the output pipe.
	s.serve.Process.Wait()
	// The runner child was told to stop when its parent died; it cannot
	// report to a broker that is gone.
	time.Sleep(3 * time.Second)
	s.startServe()
	s.checkHeld(exec)
	// The old runner stops once it has given up reporting to the broker
	// that died, and takes its workdir with it.
	s.until("no credential file left", time.Minute, func() bool { return tokenFiles(filepath.Join(s.dir, "tmp")) == 0 })
	if r := seb(t, "", "reconcile", "sandbox", "--server", s.url, "--token", s.tokens["ci"], "--note", "x"); r.code == exitOK {
		t.Error("a ci token reconciled the workspace")
	}
	if r := seb(t, "", "reconcile", "sandbox", "--server", s.url, "--token", s.tokens["admin"], "--note", "checked the buckets by hand"); r.code != exitOK {
		t.Errorf("reconcile: %s", r.stderr)
	}
	var ws struct {
		Hold *struct{ Reason string } `json:"hold"`
	}
	if s.call("admin", "GET", "/api/v1/workspaces/sandbox", nil, &ws); ws.Hold != nil {
		t.Errorf("still held after reconciling: %+v", ws.Hold)
	}
}

// TestKillRunnerMidApply: kill -9 of an external seb runner during an
// apply. Once its lease expires the execution is interrupted (never
// retried) and the workspace held; a report the dead runner's lease
// sends late is refused; a runner started afterwards sweeps what the
// killed one left, credential files included.
func TestKillRunnerMidApply(t *testing.T) {
	if testing.Short() {
		t.Skip("starts seb serve and seb runner")
	}
	s := newCrashSite(t, true)
	s.startServe()
	tokenFile := filepath.Join(s.dir, "runner.token")
	os.WriteFile(tokenFile, []byte(s.tokens["runner"]), 0o600)
	work := filepath.Join(s.dir, "work")
	runner := s.start("runner", "--server", s.url, "--token-file", tokenFile, "--work-dir", work)
	exec := s.applyingExecution()

	store, err := sqlite.Open(filepath.Join(s.dir, "data", "seb.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	job, err := store.Job(context.Background(), "job-"+exec)
	if err != nil || job.State != broker.JobLeased {
		t.Fatalf("job %+v, %v", job, err)
	}
	runner.Process.Signal(syscall.SIGKILL)
	runner.Wait()
	s.checkHeld(exec)

	// The dead runner's lease, used late, stores nothing.
	var late struct{ Error struct{ Code string } }
	code := s.call("runner", "POST", "/api/v1/runner/jobs/"+job.ID+"/state", map[string]any{"token": job.Token, "data": []byte(`{"version":4,"resources":[]}`)}, &late)
	if code != http.StatusConflict || late.Error.Code != broker.ECONFLICT {
		t.Errorf("a late state report: %d %+v", code, late)
	}
	if n := s.stateResources(); n < 1 {
		t.Errorf("the late report replaced seb's state: %d resources", n)
	}
	if tokenFiles(work) == 0 {
		t.Fatal("the killed runner left no credential file: the sweep below proves nothing")
	}
	s.start("runner", "--server", s.url, "--token-file", tokenFile, "--work-dir", work)
	s.until("the new runner's sweep", 30*time.Second, func() bool { return strings.Count(s.logs.String(), "runner started") >= 2 })
	noTokenFiles(t, work)
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/broker/sqlite"
	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
	"github.com/seb-broker/seb/internal/runnertest"
	"github.com/seb-broker/seb/internal/sandboxtest"
	"github.com/seb-broker/seb/internal/tftest"
	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/runner"
	"github.com/seb-broker/seb/web"
)

func TestMain(m *testing.M) {
	// seb serve and seb demo start `seb runner` from their own executable,
	// and the crash tests start seb itself: in the tests, this binary is
	// seb when its first argument is a command rather than a test flag.
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(tftest.MainWithProvider(m))
}

// scaleDir is the configuration the client tests propose: one service
// whose replicas are var.replicas.
const scaleDir = "../../fixtures/terraform/scale"

// clientEnv lists the variables that would change what the client
// commands do; every client test starts with them unset.
var clientEnv = []string{"SEB_SERVER", "SEB_TOKEN", "SEB_TOKEN_FILE", "SEB_JSON", "SEB_WORKSPACE", "SEB_DIR", "SEB_VAR",
	"SEB_PLAN", "SEB_RATIONALE", "SEB_TIMEOUT", "SEB_INTERVAL", "SEB_FOLLOW", "SEB_PROPOSAL", "SEB_ALL", "SEB_COMMENT",
	"SEB_VALIDITY", "SEB_STATE"}

// cliSite is a whole seb server on 127.0.0.1, as web's tests start it —
// real store, Terraform, provider and sandbox — with a token per role and
// a broker clock the test can move forward.
type cliSite struct {
	t      *testing.T
	url    string
	sb     *sandboxtest.Sandbox
	tokens map[string]string // name → token
	skew   atomic.Int64      // added to the broker's clock, in nanoseconds
}

func newCLISite(t *testing.T) *cliSite {
	t.Helper()
	for _, name := range clientEnv {
		unsetenv(t, name)
	}
	issuer := sandboxtest.StartIssuer(t)
	sb := sandboxtest.StartWith(t, sandboxcloud.Options{Issuer: issuer.URL(), StatePath: filepath.Join(t.TempDir(), "sandbox.json")})
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "seb.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	signer, err := broker.OpenSigner(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("cli test key for sensitive values")
	s := &cliSite{t: t, sb: sb, tokens: map[string]string{}}
	svc, err := broker.New(broker.Options{Store: store, Signer: signer, Issuer: issuer, SensitiveKey: key,
		Now: func() time.Time { return time.Now().Add(time.Duration(s.skew.Load())) },
		Workspaces: []broker.Workspace{{Name: "sandbox", Credentials: sb.Credentials(issuer, "sandbox").Profile, DriftMode: drift.ModeDefault,
			CertificateLifetime: time.Hour, ApprovalsRequired: 1, ProtectedActions: []planparse.Action{planparse.ActionDelete}}}})
	if err != nil {
		t.Fatal(err)
	}
	server, err := web.New(web.Options{Broker: svc, Records: store, Issuer: issuer.Handler(), MaxBundleBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(server)
	t.Cleanup(hs.Close)
	s.url = hs.URL
	runnerToken, record, err := broker.NewAPIToken("runner-1", broker.RoleRunner, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateAPIToken(context.Background(), record); err != nil {
		t.Fatal(err)
	}
	client, err := runner.NewClient(hs.URL, runnerToken)
	if err != nil {
		t.Fatal(err)
	}
	runnertest.Start(t, client, "cli-test")
	for name, role := range map[string]broker.Role{"agent-1": broker.RoleAgent, "alice": broker.RoleReviewer, "ci": broker.RoleCI, "root": broker.RoleAdmin} {
		token, record, err := broker.NewAPIToken(name, role, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := store.CreateAPIToken(context.Background(), record); err != nil {
			t.Fatal(err)
		}
		s.tokens[name] = token
	}
	return s
}

// seb runs the command line as who, against the site.
func (s *cliSite) seb(who string, args ...string) result {
	s.t.Helper()
	return seb(s.t, "", append(args, "--server", s.url, "--token", s.tokens[who])...)
}

// must fails the test unless r exited with code.
func must(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// propose proposes the scale configuration with replicas as agent-1 and
// returns the proposal id.
func (s *cliSite) propose(replicas string, more ...string) string {
	s.t.Helper()
	r := s.seb("agent-1", append([]string{"propose", "--workspace", "sandbox", "--dir", scaleDir, "--var", "replicas=" + replicas,
		"--rationale", "scale web"}, more...)...)
	must(s.t, r, exitOK)
	id := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(id, "prop") || strings.Contains(id, "\n") {
		s.t.Fatalf("propose printed %q, want the proposal id", r.stdout)
	}
	return id
}

// approve approves as alice and returns the certificate id.
func (s *cliSite) approve(id string, more ...string) string {
	s.t.Helper()
	r := s.seb("alice", append([]string{"approve", id, "--comment", "ok"}, more...)...)
	must(s.t, r, exitOK)
	cert := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(cert, "cert") {
		s.t.Fatalf("approve printed %q, want the certificate id", r.stdout)
	}
	return cert
}

// execute executes a certificate as ci, following the logs.
func (s *cliSite) execute(cert string, more ...string) result {
	s.t.Helper()
	return s.seb("ci", append([]string{"execute", cert, "--follow", "--interval", "100ms"}, more...)...)
}

// api sends a request as who and decodes the answer into out.
func (s *cliSite) api(who, method, path string, in, out any) int {
	s.t.Helper()
	var body io.Reader
	if in != nil {
		data, _ := json.Marshal(in)
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.url+"/api/v1"+path, body)
	if err != nil {
		s.t.Error(err)
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+s.tokens[who])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestClientSeedScenario drives the seed scenario only through the
// command line: 3 is applied; a certified 3 -> 5 is refused after the
// console scales to 7, with the replicas divergence printed; a new 7 -> 5
// is applied.
func TestClientSeedScenario(t *testing.T) {
	s := newCLISite(t)

	id := s.propose("3")
	r := s.execute(s.approve(id))
	must(t, r, exitOK)
	if !strings.Contains(r.stdout, "Apply complete!") || !strings.Contains(r.stdout, " succeeded\n") {
		t.Errorf("execute --follow printed:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, `"@message"`) {
		t.Errorf("human logs show raw JSON:\n%s", r.stdout)
	}

	r = s.seb("agent-1", "propose", "--workspace", "sandbox", "--dir", scaleDir, "--var", "replicas=5")
	must(t, r, exitOK)
	if !strings.Contains(r.stderr, "~ replicas = 3 -> 5") {
		t.Errorf("propose's stderr lacks the rendered diff:\n%s", r.stderr)
	}
	cert := s.approve(strings.TrimSpace(r.stdout))
	s.sb.Scale(s.sb.Service("sandbox", "web").ID, 7)
	r = s.execute(cert)
	must(t, r, exitRejected)
	if want := "sandbox_service.web replicas: certified 3 -> 5, live 7 -> 5"; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
	if got := s.sb.Service("sandbox", "web").Replicas; got != 7 {
		t.Errorf("the refused execution changed replicas to %d", got)
	}
	must(t, s.execute(cert), exitError) // single use

	r = s.execute(s.approve(s.propose("5")))
	must(t, r, exitOK)
	if got := s.sb.Service("sandbox", "web").Replicas; got != 5 {
		t.Errorf("replicas %d, want 5", got)
	}

	r = s.seb("alice", "status", "--workspace", "sandbox")
	must(t, r, exitOK)
	if !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "certified") || !strings.Contains(r.stdout, "agent-1") {
		t.Errorf("status:\n%s", r.stdout)
	}
	r = s.seb("alice", "status", "--json")
	must(t, r, exitOK)
	var list struct {
		Items []struct{ ID, State string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Items) != 3 {
		t.Errorf("status --json: %v\n%s", err, r.stdout)
	}
}

// TestClientWait: seb wait exits 3 on a rejected proposal, 1 on a diverged
// one, 5 at its timeout, and 0 with the certificate id once certified.
func TestClientWait(t *testing.T) {
	s := newCLISite(t)

	rejected := s.propose("3")
	must(t, s.seb("alice", "reject", rejected, "--comment", "not today"), exitOK)
	r := s.seb("ci", "wait", rejected)
	must(t, r, exitRejected)
	if !strings.Contains(r.stderr, "alice: not today") {
		t.Errorf("wait on a rejected proposal:\n%s", r.stderr)
	}

	// The agent's own plan, of replicas = 4, sent with a proposal of 3.
	r = s.seb("agent-1", "plan", "--workspace", "sandbox", "--dir", scaleDir, "--var", "replicas=4", "--json")
	must(t, r, exitOK)
	var speculative struct {
		Plan json.RawMessage `json:"plan"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &speculative); err != nil || len(speculative.Plan) == 0 {
		t.Fatalf("plan --json: %v\n%s", err, r.stdout)
	}
	planFile := writeFile(t, "plan.json", string(speculative.Plan))
	r = s.seb("agent-1", "propose", "--workspace", "sandbox", "--dir", scaleDir, "--var", "replicas=3", "--plan", planFile)
	must(t, r, exitDiverged)
	diverged := strings.TrimSpace(r.stdout)
	if !strings.Contains(r.stderr, "diverged") || !strings.Contains(r.stderr, "sandbox_service.web replicas: seb") {
		t.Errorf("propose of a diverged plan:\n%s", r.stderr)
	}
	r = s.seb("agent-1", "wait", diverged)
	must(t, r, exitDiverged)

	pending := s.propose("3")
	r = s.seb("ci", "wait", pending, "--timeout", "300ms", "--interval", "50ms")
	must(t, r, exitTimeout)
	if !strings.Contains(r.stderr, "still pending") {
		t.Errorf("wait at its timeout:\n%s", r.stderr)
	}

	cert := s.approve(pending)
	r = s.seb("ci", "wait", pending)
	must(t, r, exitOK)
	if strings.TrimSpace(r.stdout) != cert {
		t.Errorf("wait printed %q, want %s", r.stdout, cert)
	}
	r = s.seb("ci", "execute", "--proposal", pending, "--interval", "100ms")
	must(t, r, exitOK)
	if got := s.sb.Service("sandbox", "web").Replicas; got != 3 {
		t.Errorf("replicas %d, want 3", got)
	}
}

// TestClientRefusedCertificates: an expired certificate exits 4; a revoked
// one, or one of a workspace whose certificates were all revoked, exits 2
// saying so.
func TestClientRefusedCertificates(t *testing.T) {
	s := newCLISite(t)

	cert := s.approve(s.propose("3"), "--validity", "10m")
	s.skew.Store(int64(2 * time.Hour))
	r := s.execute(cert)
	must(t, r, exitExpired)
	if !strings.Contains(r.stderr, "expired") || strings.Count(r.stderr, "seb: ") != 1 {
		t.Errorf("execute of an expired certificate:\n%s", r.stderr)
	}

	cert = s.approve(s.propose("3"))
	r = s.seb("root", "revoke", cert)
	must(t, r, exitOK)
	r = s.execute(cert)
	must(t, r, exitError)
	if !strings.Contains(r.stderr, "revoked") {
		t.Errorf("execute of a revoked certificate:\n%s", r.stderr)
	}

	cert = s.approve(s.propose("3"))
	r = s.seb("root", "revoke", "--all", "--workspace", "sandbox", "--json")
	must(t, r, exitOK)
	if !strings.Contains(r.stdout, `"revocation_epoch": 1`) {
		t.Errorf("revoke --all --json:\n%s", r.stdout)
	}
	r = s.execute(cert)
	must(t, r, exitError)
	if !strings.Contains(r.stderr, "revoked with every certificate") {
		t.Errorf("execute after revoke --all:\n%s", r.stderr)
	}
	if len(s.sb.Services()) != 0 {
		t.Error("a refused certificate changed the sandbox")
	}
}

// TestClientJSON: --json prints one JSON document on stdout, and progress
// stays on stderr.
func TestClientJSON(t *testing.T) {
	s := newCLISite(t)
	r := s.seb("agent-1", "propose", "--workspace", "sandbox", "--dir", scaleDir, "--var", "replicas=3", "--json")
	must(t, r, exitOK)
	var p struct{ ID, State, Digest string }
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.State != "pending" || !strings.HasPrefix(p.Digest, "sha256:") {
		t.Fatalf("propose --json: %v\n%s", err, r.stdout)
	}
	r = s.seb("alice", "approve", p.ID, "--json")
	must(t, r, exitOK)
	var approved struct {
		State         string `json:"state"`
		CertificateID string `json:"certificate_id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &approved); err != nil || approved.State != "certified" {
		t.Fatalf("approve --json: %v\n%s", err, r.stdout)
	}
	r = s.seb("ci", "execute", approved.CertificateID, "--follow", "--json", "--interval", "100ms")
	must(t, r, exitOK)
	var e struct {
		State string            `json:"state"`
		Logs  []json.RawMessage `json:"logs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.State != "succeeded" || len(e.Logs) == 0 {
		t.Fatalf("execute --json --follow: %v\n%s", err, r.stdout)
	}
	if !strings.Contains(r.stderr, "succeeded") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// TestClientBundle: the directory is bundled honouring .terraformignore,
// and a bundle over the server's limit gets advice, not just a 413.
func TestClientBundle(t *testing.T) {
	s := newCLISite(t)
	dir := t.TempDir()
	for _, name := range []string{"main.tf", "versions.tf"} {
		data, err := os.ReadFile(filepath.Join(scaleDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	big := make([]byte, 2<<20)
	rand.Read(big) // incompressible
	if err := os.WriteFile(filepath.Join(dir, "artifact.bin"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.seb("agent-1", "plan", "--workspace", "sandbox", "--dir", dir)
	must(t, r, exitError)
	if !strings.Contains(r.stderr, "too large") || !strings.Contains(r.stderr, ".terraformignore") {
		t.Errorf("an oversized bundle:\n%s", r.stderr)
	}
	if err := os.WriteFile(filepath.Join(dir, ".terraformignore"), []byte("*.bin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.seb("agent-1", "plan", "--workspace", "sandbox", "--dir", dir)
	must(t, r, exitOK)
	if !strings.Contains(r.stdout, "+ replicas = 3") {
		t.Errorf("plan with .terraformignore:\n%s", r.stdout)
	}
}

// TestClientErrors: every failure is one line, "seb: " and what is wrong,
// exit 2; never a stack or a page of HTML.
func TestClientErrors(t *testing.T) {
	s := newCLISite(t)
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
	}))
	defer html.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	tokenFile := writeFile(t, "token", s.tokens["alice"]+"\n")
	notPlan := writeFile(t, "plan.tfplan", "PK\x03\x04 binary")
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"no token", nil, []string{"status", "--server", s.url}, exitError, "no API token: set SEB_TOKEN"},
		{"unknown token", nil, []string{"status", "--server", s.url, "--token", "seb_nope"}, exitError, "unknown API token (set SEB_TOKEN"},
		{"wrong role", nil, []string{"approve", "prop-x", "--server", s.url, "--token", s.tokens["agent-1"]}, exitError, "seb: this needs the role reviewer\n"},
		{"unknown proposal", nil, []string{"wait", "prop-nope", "--server", s.url, "--token", s.tokens["ci"]}, exitError, "prop-nope"},
		{"HTML error page", nil, []string{"status", "--server", html.URL, "--token", "x"}, exitError, "seb: the server answered 502 Bad Gateway\n"},
		{"server down", nil, []string{"status", "--server", down.URL, "--token", "x"}, exitError, "cannot reach the seb server at " + down.URL},
		{"not a URL", nil, []string{"status", "--server", "localhost:8080", "--token", "x"}, exitError, "is not an http:// or https:// URL"},
		{"both token flags", nil, []string{"status", "--server", s.url, "--token", "x", "--token-file", tokenFile}, exitError, "not both"},
		{"both token variables", map[string]string{"SEB_TOKEN": "x", "SEB_TOKEN_FILE": tokenFile}, []string{"status", "--server", s.url}, exitError, "SEB_TOKEN and SEB_TOKEN_FILE are both set"},
		{"token file missing", nil, []string{"status", "--server", s.url, "--token-file", tokenFile + ".gone"}, exitError, "token file:"},
		{"bad --var", nil, []string{"plan", "--workspace", "sandbox", "--dir", scaleDir, "--var", "replicas", "--server", s.url, "--token", "x"}, exitError, `--var "replicas": want NAME=VALUE`},
		{"no workspace", nil, []string{"propose", "--dir", scaleDir, "--server", s.url, "--token", "x"}, exitError, "--workspace (or SEB_WORKSPACE) is required"},
		{"binary plan", nil, []string{"propose", "--workspace", "sandbox", "--plan", notPlan, "--server", s.url, "--token", "x"}, exitError, "is not plan JSON"},
		{"unknown workspace", nil, []string{"plan", "--workspace", "nowhere", "--dir", scaleDir, "--server", s.url, "--token", s.tokens["agent-1"]}, exitError, "nowhere"},
		{"certificate and --proposal", nil, []string{"execute", "cert-x", "--proposal", "prop-x", "--server", s.url, "--token", "x"}, exitError, "not both"},
		{"unknown certificate", nil, []string{"execute", "cert-nope", "--server", s.url, "--token", s.tokens["ci"]}, exitError, "cert-nope"},
		{"revoke without a target", nil, []string{"revoke", "--server", s.url, "--token", "x"}, exitError, "name the certificate"},
		// The environment mirrors the flags; the command line wins.
		{"SEB_SERVER and SEB_TOKEN_FILE", map[string]string{"SEB_SERVER": s.url, "SEB_TOKEN_FILE": tokenFile}, []string{"status"}, exitOK, "no proposals"},
		{"--token wins over SEB_TOKEN_FILE", map[string]string{"SEB_SERVER": s.url, "SEB_TOKEN_FILE": tokenFile}, []string{"status", "--token", "seb_nope"}, exitError, "unknown API token"},
		{"--token-file wins over SEB_TOKEN", map[string]string{"SEB_SERVER": s.url, "SEB_TOKEN": "seb_nope"}, []string{"status", "--token-file", tokenFile}, exitOK, "no proposals"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r := seb(t, "", tt.args...)
			if r.code != tt.wantCode || !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, tt.wantCode, tt.wantStderr)
			}
			for _, bad := range []string{"<html", "goroutine ", "panic"} {
				if strings.Contains(r.stderr, bad) {
					t.Errorf("stderr shows %q: %s", bad, r.stderr)
				}
			}
		})
	}
}

// TestCIGateScript runs docs/ci/seb-gate.sh with a freshly built seb
// against the live server, while a reviewer approves the proposal it
// waits on: the script exits 0 and the sandbox has the change. A second
// run, after a console change while it waits, exits 3; a third, with
// nothing to change, exits 0 without proposing.
func TestCIGateScript(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("the gate script needs jq")
	}
	s := newCLISite(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "seb"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"SEB_SERVER=" + s.url, "SEB_AGENT_TOKEN=" + s.tokens["agent-1"], "SEB_CI_TOKEN=" + s.tokens["ci"], "SEB_INTERVAL=200ms"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SEB_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	// gate runs the script; a reviewer approves the proposal it makes,
	// after calling meanwhile, unless review is false.
	gate := func(replicas string, review bool, meanwhile func()) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		approved := make(chan error, 1)
		if review {
			go func() { approved <- s.approveWhenPending(ctx, meanwhile) }()
		} else {
			approved <- nil
		}
		cmd := exec.CommandContext(ctx, "bash", "../../docs/ci/seb-gate.sh", "sandbox", scaleDir, "replicas="+replicas)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		code := 0
		if err != nil {
			code = -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
		}
		cancel()
		if err := <-approved; err != nil && code == 0 {
			t.Errorf("reviewer: %v", err)
		}
		return code, string(out)
	}

	code, out := gate("4", true, nil)
	if testing.Verbose() {
		t.Logf("seb-gate.sh:\n%s", out)
	}
	if code != 0 {
		t.Fatalf("seb-gate.sh exited %d:\n%s", code, out)
	}
	if got := s.sb.Service("sandbox", "web").Replicas; got != 4 {
		t.Errorf("replicas %d, want 4\n%s", got, out)
	}
	for _, want := range []string{"+ replicas = 4", "Apply complete!", "seb-gate: applied"} {
		if !strings.Contains(out, want) {
			t.Errorf("the script's output lacks %q:\n%s", want, out)
		}
	}

	code, out = gate("6", true, func() { s.sb.Scale(s.sb.Service("sandbox", "web").ID, 9) })
	if code != exitRejected {
		t.Fatalf("seb-gate.sh after a console change exited %d, want %d:\n%s", code, exitRejected, out)
	}
	if !strings.Contains(out, "replicas: certified 4 -> 6, live 9 -> 6") {
		t.Errorf("the script's output lacks the divergence:\n%s", out)
	}
	if got := s.sb.Service("sandbox", "web").Replicas; got != 9 {
		t.Errorf("replicas %d, want 9 (nothing applied)", got)
	}

	// Live state already has what the configuration says: nothing to gate.
	proposals := func() int {
		var list struct{ Items []json.RawMessage }
		s.api("alice", "GET", "/proposals?workspace=sandbox", nil, &list)
		return len(list.Items)
	}
	before := proposals()
	code, out = gate("9", false, nil)
	if code != 0 || !strings.Contains(out, "seb-gate: no changes") {
		t.Errorf("seb-gate.sh with nothing to change exited %d:\n%s", code, out)
	}
	if after := proposals(); after != before {
		t.Errorf("%d proposals after a run with nothing to change, want %d", after, before)
	}
}

// approveWhenPending is a reviewer at work: it polls the API for a
// pending proposal and approves it, after calling meanwhile (when not
// nil).
func (s *cliSite) approveWhenPending(ctx context.Context, meanwhile func()) error {
	for {
		var list struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		if status := s.api("alice", "GET", "/proposals?workspace=sandbox&state=pending", nil, &list); status != http.StatusOK {
			return fmt.Errorf("list proposals: %d", status)
		}
		if len(list.Items) > 0 {
			if meanwhile != nil {
				meanwhile()
			}
			if status := s.api("alice", "POST", "/proposals/"+list.Items[0].ID+"/approve", map[string]string{"comment": "lgtm"}, nil); status != http.StatusOK {
				return fmt.Errorf("approve %s: %d", list.Items[0].ID, status)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestDemo runs `seb demo`: the seed scenario end to end over HTTP.
func TestDemo(t *testing.T) {
	cliConfig := filepath.Join(t.TempDir(), "terraform.rc")
	if err := os.WriteFile(cliConfig, []byte(tftest.CLIConfig(tftest.Mirror(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir("../..")
	r := seb(t, "", "demo", "--terraform-cli-config", cliConfig)
	if r.code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"REFUSED", "sandbox_service.web replicas: certified 3 -> 5, live 7 -> 5", "~ replicas = 7 -> 5", "execution.succeeded", "verified with only seb's public key"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the demo does not say %q:\n%s", want, r.stdout)
		}
	}
}

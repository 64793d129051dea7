package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seb-broker/seb/broker/postgres"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
	"github.com/seb-broker/seb/internal/pgtest"
	"github.com/seb-broker/seb/internal/sandboxtest"
	"github.com/seb-broker/seb/internal/tftest"
)

// A replicaSite is three seb serve processes of this binary on one
// PostgreSQL database, each with its own data directory holding the same
// keys, two seb runner processes, and a load balancer in front that is
// the issuer's URL the sandbox cloud trusts.
type replicaSite struct {
	*crashSite
	db       string
	replicas []*replica
	lb       string
}

type replica struct {
	name, url, config string
	cmd               *exec.Cmd
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newReplicaSite writes three replicas' configurations, makes the keys
// once with seb keys init and copies them to each data directory.
func newReplicaSite(t *testing.T) *replicaSite {
	t.Helper()
	db := pgtest.Database(t)
	dir := t.TempDir()
	s := &replicaSite{crashSite: &crashSite{t: t, dir: dir, tokens: map[string]string{}, logs: &syncBuffer{}}, db: db}
	lb := s.startBalancer()
	s.sandbox = sandboxtest.StartWith(t, sandboxcloud.Options{Issuer: lb, StatePath: filepath.Join(dir, "sandbox.json"), MutationDelay: 2 * time.Second})
	for i, name := range []string{"a", "b", "c"} {
		addr := freeAddr(t)
		// Each replica names its connections, so that the test can see
		// which one leads.
		u, err := url.Parse(db)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("application_name", "seb-"+name)
		u.RawQuery = q.Encode()
		r := &replica{name: name, url: "http://" + addr, config: filepath.Join(dir, name+".hcl")}
		config := fmt.Sprintf(`data_dir   = %q
listen     = %q
issuer_url = %q
database {
  url      = %q
  password = "env:SEB_TEST_DB_PASSWORD"
}
runner {
  external = true
  lease    = "4s"
}
workspace "sandbox" {
  approvals_required = 1
  protected_actions  = []
  credentials {
    audience       = %q
    token_file_env = ["SANDBOX_TOKEN_FILE"]
    env            = { SANDBOX_ENDPOINT = %q }
  }
}
`, filepath.Join(dir, "data-"+name), addr, lb, u.String(), sandboxtest.Audience, s.sandbox.URL)
		if err := os.WriteFile(r.config, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		s.replicas = append(s.replicas, r)
		if i == 0 {
			s.url, s.config = r.url, r.config
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "terraform.rc"), []byte(tftest.CLIConfig(tftest.Mirror(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o700)
	s.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + tmp, "SEB_TEST_DB_PASSWORD=unused-with-trust-auth",
		"TF_CLI_CONFIG_FILE=" + filepath.Join(dir, "terraform.rc"), "SEB_REQUIRE_SANDBOX=" + os.Getenv("SEB_REQUIRE_SANDBOX")}
	if bin := os.Getenv("SEB_TERRAFORM"); bin != "" {
		s.env = append(s.env, "SEB_TERRAFORM="+bin)
	}
	t.Setenv("SEB_TEST_DB_PASSWORD", "unused-with-trust-auth")
	return s
}

// startBalancer starts the load balancer the issuer's URL names: it
// sends each request to the next replica that answers.
func (s *replicaSite) startBalancer() string {
	addr := freeAddr(s.t)
	var next atomic.Int64
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range len(s.replicas) {
			rep := s.replicas[int(next.Add(1))%len(s.replicas)]
			resp, err := http.Get(rep.url + r.URL.RequestURI())
			if err != nil {
				continue // a dead replica: the next
			}
			defer resp.Body.Close()
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
			return
		}
		http.Error(w, "no replica answers", http.StatusBadGateway)
	})}
	go srv.ListenAndServe()
	s.t.Cleanup(func() { srv.Close() })
	return "http://" + addr
}

// startReplica starts a replica and waits until it answers.
func (s *replicaSite) startReplica(r *replica) {
	s.t.Helper()
	r.cmd = s.serveAt(r.config, r.url)
}

// on sends a request to replica r with a role's token.
func (s *replicaSite) on(r *replica, role, method, path string, body, out any) int {
	s.t.Helper()
	s.url = r.url
	return s.call(role, method, path, body, out)
}

// TestReplicas: three seb serve replicas on one PostgreSQL and two
// runners. Proposals are submitted to each replica in turn, reviewed on
// another and executed on a third; 50 concurrent executions of one
// certificate over the three apply it once; a revocation on one replica is
// refused on the others at their next request; a UI session made on one
// works on another; kill -9 of the replica whose runner applies, and of
// the replica leading the background work, leaves the execution
// interrupted and not retried, swept by the survivor, which takes the lead
// and serves; and the audit log verifies afterwards.
func TestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three seb serve and two seb runner processes")
	}
	s := newReplicaSite(t)
	a, b, c := s.replicas[0], s.replicas[1], s.replicas[2]

	// A replica never makes its own keys: without them it refuses to
	// start, and says how to make them.
	r := seb(t, "", "serve", "--config", a.config)
	if r.code == exitOK || !strings.Contains(r.stderr, "seb keys init") {
		t.Fatalf("a replica without keys: %d %s", r.code, r.stderr)
	}
	if r := seb(t, "", "keys", "init", "--config", a.config); r.code != exitOK {
		t.Fatalf("keys init: %s", r.stderr)
	}
	for _, rep := range []*replica{b, c} {
		for _, name := range keyFiles {
			from, to := filepath.Join(s.dir, "data-a", name), filepath.Join(s.dir, "data-"+rep.name, name)
			if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := exec.Command("cp", "-a", from, to).Run(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, role := range []string{"agent", "reviewer", "ci", "admin", "runner"} {
		r := seb(t, "", "tokens", "create", "--config", a.config, "--role", role, "--name", role+"-1")
		if r.code != exitOK {
			t.Fatalf("tokens create: %s", r.stderr)
		}
		s.tokens[role] = strings.TrimSpace(r.stdout)
	}
	// a starts first and takes the lead of the background work; b and c
	// follow.
	s.startReplica(a)
	s.until("a to lead", 10*time.Second, func() bool { return s.leader() == a })
	s.startReplica(b)
	s.startReplica(c)
	tokenFile := filepath.Join(s.dir, "runner.token")
	os.WriteFile(tokenFile, []byte(s.tokens["runner"]), 0o600)
	// Runner 1 talks to b, runner 2 to c.
	for i, rep := range []*replica{b, c} {
		s.start("runner", "--server", rep.url, "--token-file", tokenFile, "--name", rep.name, "--work-dir", filepath.Join(s.dir, fmt.Sprintf("work-%d", i)))
	}

	// Proposed on each replica in turn, reviewed on the next, executed on
	// the one after.
	for i, replicas := range []string{"2", "3", "4"} {
		proposer, reviewer, executor := s.replicas[i], s.replicas[(i+1)%3], s.replicas[(i+2)%3]
		cert := s.certifiedOn(proposer, reviewer, replicas)
		var e crashExecution
		var started struct {
			ID string `json:"id"`
		}
		if code := s.on(executor, "ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": cert}, &started); code != http.StatusAccepted {
			t.Fatalf("execute on %s: %d\n%s", executor.name, code, s.logs)
		}
		s.until("the execution on "+executor.name, 2*time.Minute, func() bool {
			s.on(proposer, "ci", "GET", "/api/v1/executions/"+started.ID, nil, &e)
			return e.State == "succeeded" || e.State == "failed" || e.State == "refused" || e.State == "interrupted"
		})
		if e.State != "succeeded" {
			t.Fatalf("execution of %s replicas: %+v\n%s", replicas, e, s.logs)
		}
	}

	// A replica with keys of its own, made by seb keys init on its data
	// directory, refuses to start: the others could not verify it.
	strange := filepath.Join(s.dir, "d.hcl")
	conf, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	conf = []byte(strings.Replace(strings.Replace(string(conf), "data-a", "data-d", 1), strings.TrimPrefix(a.url, "http://"), freeAddr(t), 1))
	os.WriteFile(strange, conf, 0o600)
	if r := seb(t, "", "keys", "init", "--config", strange); r.code != exitOK {
		t.Fatalf("keys init: %s", r.stderr)
	}
	if r := seb(t, "", "serve", "--config", strange); r.code == exitOK || !strings.Contains(r.stderr, "did not sign the audit log's last entry") {
		t.Errorf("a replica with other keys: %d %s", r.code, r.stderr)
	}

	// 50 concurrent executions of one certificate over the three replicas.
	cert := s.certifiedOn(a, b, "5")
	var (
		wg       sync.WaitGroup
		accepted atomic.Int64
		ids      sync.Map
	)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var e struct {
				ID string `json:"id"`
			}
			req := fmt.Sprintf(`{"certificate_id":%q}`, cert)
			status, body := post(s.replicas[i%3].url+"/api/v1/executions", s.tokens["ci"], req)
			if status == http.StatusAccepted {
				accepted.Add(1)
				json.Unmarshal(body, &e)
				ids.Store(e.ID, true)
			} else if status != http.StatusConflict && status != http.StatusBadRequest {
				t.Errorf("execution %d: %d %s", i, status, body)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 1 {
		t.Fatalf("%d of 50 concurrent executions of one certificate were accepted, want 1", accepted.Load())
	}
	var only string
	ids.Range(func(id, _ any) bool { only = id.(string); return false })
	var e crashExecution
	s.until("the single execution to end", 2*time.Minute, func() bool {
		s.on(c, "admin", "GET", "/api/v1/executions/"+only, nil, &e)
		return e.State == "succeeded" || e.State == "failed" || e.State == "refused" || e.State == "interrupted"
	})
	if n := s.count("SELECT count(*) FROM executions WHERE certificate_id = $1", cert); e.State != "succeeded" || n != 1 {
		t.Errorf("the certificate ran %d times; the accepted execution: %+v", n, e)
	}

	// Revoked on a, refused on b and c at their next request.
	revoked := s.certifiedOn(b, c, "6")
	if code := s.on(a, "admin", "POST", "/api/v1/certificates/"+revoked+"/revoke", nil, nil); code != http.StatusOK {
		t.Fatalf("revoke: %d", code)
	}
	for _, rep := range []*replica{b, c} {
		var refused struct{ Error struct{ Message string } }
		if code := s.on(rep, "ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": revoked}, &refused); code < 400 || !strings.Contains(refused.Error.Message, "revoked") {
			t.Errorf("a certificate revoked on a, executed on %s: %d %+v", rep.name, code, refused)
		}
	}

	// A UI session made on a works on b.
	jar := s.signIn(a)
	page := s.uiPage(b, jar, "/")
	if !strings.Contains(page, "reviewer-1") {
		t.Errorf("the session made on a does not work on b:\n%.400s", page)
	}

	// kill -9 of the replica whose runner applies: the execution ends
	// interrupted, not retried, while the other replicas serve.
	certDead := s.certifiedOn(c, a, "7")
	var running struct {
		ID string `json:"id"`
	}
	if code := s.on(a, "ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": certDead}, &running); code != http.StatusAccepted {
		t.Fatalf("execute: %d", code)
	}
	var applying crashExecution
	s.until("the execution to apply", 2*time.Minute, func() bool {
		s.on(a, "ci", "GET", "/api/v1/executions/"+running.ID, nil, &applying)
		return applying.State == "applying"
	})
	// The runner's replica dies, and so does a, the leader: the survivor
	// must take the lead to sweep the dead runner's lease.
	victim := s.replicaOfJob("job-" + running.ID)
	survivor := b
	if victim == b {
		survivor = c
	}
	for _, dead := range []*replica{victim, a} {
		dead.cmd.Process.Signal(syscall.SIGKILL)
		dead.cmd.Wait()
	}
	s.url = survivor.url
	s.checkHeld(running.ID)
	if l := s.leader(); l != survivor {
		t.Errorf("the lead did not move to the survivor %s: %v", survivor.name, l)
	}
	for _, rep := range s.replicas {
		if rep == victim || rep == a {
			continue
		}
		var page struct {
			Items []any `json:"items"`
		}
		if code := s.on(rep, "reviewer", "GET", "/api/v1/proposals?limit=5", nil, &page); code != http.StatusOK || len(page.Items) == 0 {
			t.Errorf("replica %s stopped serving after %s was killed: %d", rep.name, victim.name, code)
		}
	}

	var verified struct {
		Verified bool  `json:"verified"`
		Entries  int64 `json:"entries"`
	}
	if code := s.on(survivor, "admin", "GET", "/api/v1/audit/verify", nil, &verified); code != http.StatusOK || !verified.Verified || verified.Entries < 20 {
		t.Errorf("the audit log after it all: %d %+v", code, verified)
	}
}

// certifiedOn proposes the scale fixture with replicas on one replica,
// approves it on another, and returns its certificate.
func (s *replicaSite) certifiedOn(proposer, reviewer *replica, replicas string) string {
	s.t.Helper()
	r := seb(s.t, "", "propose", "--server", proposer.url, "--token", s.tokens["agent"], "--workspace", "sandbox",
		"--dir", "../../fixtures/terraform/scale", "--var", "replicas="+replicas)
	if r.code != exitOK {
		s.t.Fatalf("propose on %s: %s\n%s", proposer.name, r.stderr, s.logs)
	}
	id := strings.TrimSpace(r.stdout)
	var p struct {
		State         string `json:"state"`
		CertificateID string `json:"certificate_id"`
	}
	s.until("seb's plan of "+id, 2*time.Minute, func() bool {
		s.on(reviewer, "reviewer", "GET", "/api/v1/proposals/"+id, nil, &p)
		return p.State != "verifying"
	})
	if code := s.on(reviewer, "reviewer", "POST", "/api/v1/proposals/"+id+"/approve", map[string]string{"comment": "ok"}, &p); code != http.StatusOK || p.CertificateID == "" {
		s.t.Fatalf("approve on %s: %d %+v\n%s", reviewer.name, code, p, s.logs)
	}
	return p.CertificateID
}

// queryRow runs a one-row query on the database, as an operator would,
// and scans it into dest; false when it found no row.
func (s *replicaSite) queryRow(query string, args []any, dest ...any) bool {
	s.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.db)
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, query, args...).Scan(dest...)
	if err == pgx.ErrNoRows {
		return false
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return true
}

// count runs a count query on the database.
func (s *replicaSite) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	s.queryRow(query, args, &n)
	return n
}

// leader returns the replica that leads the background work, as the
// database's locks say; nil for none.
func (s *replicaSite) leader() *replica {
	s.t.Helper()
	var name string
	if !s.queryRow(`SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		[]any{postgres.LeadLockKey}, &name) {
		return nil
	}
	for _, rep := range s.replicas {
		if name == "seb-"+rep.name {
			return rep
		}
	}
	return nil
}

// replicaOfJob returns the replica whose runner holds a job's lease, as
// the database says.
func (s *replicaSite) replicaOfJob(job string) *replica {
	s.t.Helper()
	var runner string
	if !s.queryRow("SELECT runner FROM jobs WHERE id = $1", []any{job}, &runner) {
		s.t.Fatalf("no job %s", job)
	}
	for _, rep := range s.replicas {
		if strings.HasSuffix(runner, "/"+rep.name) {
			return rep
		}
	}
	s.t.Fatalf("job %s is leased to %q, no replica's runner", job, runner)
	return nil
}

// signIn signs in to replica r's UI as the reviewer and returns the
// session cookie.
func (s *replicaSite) signIn(r *replica) *http.Cookie {
	s.t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(r.url+"/signin", url.Values{"token": {s.tokens["reviewer"]}, "next": {"/"}})
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "seb_session" && ck.Value != "" {
			return ck
		}
	}
	s.t.Fatalf("sign-in on %s: %d, no session cookie", r.name, resp.StatusCode)
	return nil
}

// uiPage gets a UI page from replica r with a session cookie.
func (s *replicaSite) uiPage(r *replica, ck *http.Cookie, path string) string {
	s.t.Helper()
	req, _ := http.NewRequest("GET", r.url+path, nil)
	req.AddCookie(ck)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Errorf("GET %s on %s: %d %s", path, r.name, resp.StatusCode, resp.Header.Get("Location"))
	}
	return string(body)
}

// post sends a JSON body with a token.
func post(u, token, body string) (int, []byte) {
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

package web_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	os.Exit(tftest.MainWithProvider(m))
}

// site is a whole seb server on 127.0.0.1 with a real store, Terraform,
// provider and sandbox, and a token per role.
type site struct {
	t      testing.TB
	url    string
	sb     *sandboxtest.Sandbox
	store  *sqlite.Store
	server *web.Server
	svc    *broker.Service
	tokens map[string]string // name → token
	// urls are the replicas' (siteOptions.replicas); url is the first.
	urls []string
	// exchanges are the API calls made through call, for the contract
	// test; served records every exchange the server served, the
	// runner's included.
	exchanges []exchange
	served    *recorder
}

// A recorder keeps every API exchange its handler serves.
type recorder struct {
	next      http.Handler
	mu        sync.Mutex
	exchanges []exchange
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !strings.HasPrefix(req.URL.Path, "/api/v1/") {
		r.next.ServeHTTP(w, req)
		return
	}
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	rw := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
	r.next.ServeHTTP(rw, req)
	r.mu.Lock()
	r.exchanges = append(r.exchanges, exchange{method: req.Method, path: req.URL.Path, request: body, status: rw.status,
		contentType: rw.Header().Get("Content-Type"), response: rw.body.Bytes()})
	r.mu.Unlock()
}

// all returns what was served so far.
func (r *recorder) all() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]exchange{}, r.exchanges...)
}

type recordingWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *recordingWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

func (w *recordingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// An exchange is one API call and its answer.
type exchange struct {
	method, path string // the path without its query
	request      []byte
	status       int
	contentType  string // of the answer; only the recorder keeps it
	response     []byte
}

// newSite starts the sandbox cloud (adjusted by tune, if any) and a seb
// server for it, with tokens for every role.
func newSite(t testing.TB, tune ...func(*sandboxcloud.Options)) *site {
	t.Helper()
	return newSiteFrom(t, siteOptions{tune: tune})
}

// newSiteWith is newSite with these workspaces, each in the sandbox cloud
// under its own name.
func newSiteWith(t testing.TB, workspaces []string, tune ...func(*sandboxcloud.Options)) *site {
	t.Helper()
	return newSiteFrom(t, siteOptions{workspaces: workspaces, tune: tune})
}

// siteOptions change what newSiteFrom builds; the zero value is newSite's.
type siteOptions struct {
	workspaces []string                       // default: sandbox
	tune       []func(*sandboxcloud.Options)  // the sandbox cloud's
	store      func(testing.TB) *sqlite.Store // default: a SQLite file
	broker     func(*broker.Options)          // adjusts the broker's
	// replicas, when above 1, serves that many brokers with the same keys,
	// each on a store of its own from store (one database): site.urls.
	replicas int
}

func newSiteFrom(t testing.TB, o siteOptions) *site {
	t.Helper()
	workspaces := o.workspaces
	if workspaces == nil {
		workspaces = []string{"sandbox"}
	}
	issuer := sandboxtest.StartIssuer(t)
	sbOpts := sandboxcloud.Options{Issuer: issuer.URL(), StatePath: filepath.Join(t.TempDir(), "sandbox.json")}
	for _, f := range o.tune {
		f(&sbOpts)
	}
	sb := sandboxtest.StartWith(t, sbOpts)
	var store *sqlite.Store
	if o.store != nil {
		store = o.store(t)
	} else {
		var err error
		if store, err = sqlite.Open(filepath.Join(t.TempDir(), "seb.db"), sqlite.Options{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
	}
	signer, err := broker.OpenSigner(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("web test key for sensitive values")
	var wss []broker.Workspace
	for _, name := range workspaces {
		wss = append(wss, broker.Workspace{Name: name, Credentials: sb.Credentials(issuer, name).Profile, DriftMode: drift.ModeDefault,
			CertificateLifetime: time.Hour, ApprovalsRequired: 1, ProtectedActions: []planparse.Action{planparse.ActionDelete}})
	}
	opts := broker.Options{Store: store, Signer: signer, Issuer: issuer, SensitiveKey: key, Workspaces: wss}
	if o.broker != nil {
		o.broker(&opts)
	}
	svc, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	server, err := web.New(web.Options{Broker: svc, Records: store, Issuer: issuer.Handler(), MaxBundleBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{next: server}
	hs := httptest.NewServer(rec)
	t.Cleanup(hs.Close)
	s := &site{t: t, url: hs.URL, sb: sb, store: store, server: server, svc: svc, tokens: map[string]string{}, served: rec}
	s.urls = []string{hs.URL}
	for range o.replicas - 1 {
		opts.Store = o.store(t)
		svc, err := broker.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		server, err := web.New(web.Options{Broker: svc, Records: opts.Store.(web.Records), Issuer: issuer.Handler(), MaxBundleBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(server)
		t.Cleanup(hs.Close)
		s.urls = append(s.urls, hs.URL)
	}
	s.tokens["runner"] = startRunner(t, hs.URL, store)
	for name, role := range map[string]broker.Role{"agent-1": broker.RoleAgent, "alice": broker.RoleReviewer, "ci": broker.RoleCI, "root": broker.RoleAdmin, "agent-2": broker.RoleAgent,
		"runner-1": broker.RoleRunner} {
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

// call sends a request as who ("" for no token) and decodes the answer
// into out; it returns the status and the raw body.
func (s *site) call(who, method, path, contentType string, body io.Reader, out any) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+s.tokens[who])
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	var sent []byte
	if body != nil {
		sent, _ = io.ReadAll(body)
		req.Body = io.NopCloser(bytes.NewReader(sent))
		req.ContentLength = int64(len(sent))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	p, _, _ := strings.Cut(path, "?")
	s.exchanges = append(s.exchanges, exchange{method: method, path: p, request: sent, status: resp.StatusCode, response: data})
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: %v\n%s", method, path, err, data)
		}
	}
	return resp.StatusCode, data
}

func (s *site) json(who, method, path string, in, out any) (int, []byte) {
	s.t.Helper()
	data, _ := json.Marshal(in)
	return s.call(who, method, path, "application/json", bytes.NewReader(data), out)
}

func bundle(t testing.TB, config string) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := drift.BundleDirectory(filepath.Join("../fixtures/terraform", config), &buf); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

type proposal struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	Rendered      string `json:"rendered"`
	CertificateID string `json:"certificate_id"`
}

type execution struct {
	ID       string          `json:"id"`
	State    string          `json:"state"`
	Final    bool            `json:"final"`
	Reason   string          `json:"reason"`
	Decision json.RawMessage `json:"decision"`
}

func (s *site) propose(replicas string) proposal {
	s.t.Helper()
	var p proposal
	status, body := s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals",
		map[string]any{"bundle": bundle(s.t, "scale"), "vars": map[string]string{"replicas": replicas}, "rationale": "scale web"}, &p)
	if status != http.StatusAccepted || p.State != "verifying" {
		s.t.Fatalf("propose: %d %s", status, body)
	}
	return s.verified(p.ID)
}

// verified polls a proposal until seb's own plan of it is done.
func (s *site) verified(id string) proposal {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var p proposal
		s.call("agent-1", "GET", "/api/v1/proposals/"+id, "", nil, &p)
		if p.State != "verifying" {
			return p
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("proposal %s still verifying", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *site) approve(id string) string {
	s.t.Helper()
	var p proposal
	if status, body := s.json("alice", "POST", "/api/v1/proposals/"+id+"/approve", map[string]string{"comment": "ok"}, &p); status != 200 || p.CertificateID == "" {
		s.t.Fatalf("approve: %d %s", status, body)
	}
	return p.CertificateID
}

// execute starts an execution and polls it to its end.
func (s *site) execute(certificate string) execution {
	s.t.Helper()
	var e execution
	if status, body := s.json("ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": certificate}, &e); status != http.StatusAccepted {
		s.t.Fatalf("execute: %d %s", status, body)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for !e.Final {
		if time.Now().After(deadline) {
			s.t.Fatalf("execution %s still %s", e.ID, e.State)
		}
		time.Sleep(200 * time.Millisecond)
		s.call("ci", "GET", "/api/v1/executions/"+e.ID, "", nil, &e)
	}
	return e
}

// executeAfterDrift scales web to 7 outside of seb, as someone at the
// console would, then executes the certificate: seb must refuse it.
func (s *site) executeAfterDrift(certificate string) execution {
	s.t.Helper()
	s.sb.Scale(s.sb.Service("sandbox", "web").ID, 7)
	e := s.execute(certificate)
	if e.State != "refused" {
		s.t.Fatalf("execution after drift: %+v", e)
	}
	return e
}

// TestSeedScenarioOverHTTP drives the seed scenario only through the API:
// certified 3 → 5 is refused after the console scales to 7; a new 7 → 5 is
// applied; the audit log lists it all.
func TestSeedScenarioOverHTTP(t *testing.T) {
	s := newSite(t)
	if e := s.execute(s.approve(s.propose("3").ID)); e.State != "succeeded" {
		t.Fatalf("first apply: %+v", e)
	}
	p := s.propose("5")
	if !strings.Contains(p.Rendered, "~ replicas = 3 -> 5") {
		t.Errorf("rendered diff:\n%s", p.Rendered)
	}
	cert := s.approve(p.ID)
	var signed struct {
		VarsDigest   string `json:"vars_digest"`
		ConfigDigest string `json:"config_digest"`
	}
	if s.call("ci", "GET", "/api/v1/certificates/"+cert, "", nil, &signed); !strings.HasPrefix(signed.VarsDigest, "sha256:") || !strings.HasPrefix(signed.ConfigDigest, "sha256:") {
		t.Errorf("certificate: %+v", signed)
	}
	s.sb.Scale(s.sb.Service("sandbox", "web").ID, 7)
	e := s.execute(cert)
	if e.State != "refused" || !strings.Contains(string(e.Decision), `"replicas"`) || !strings.Contains(string(e.Decision), `"accepted":false`) ||
		!strings.Contains(string(e.Decision), `"drift":[{"action":"update","address":"sandbox_service.web"`) {
		t.Fatalf("execution after drift: %+v %s", e, e.Decision)
	}
	var again execution
	if status, body := s.json("ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": cert}, &again); status != http.StatusConflict || !strings.Contains(string(body), "already used") {
		t.Errorf("second use: %d %s", status, body)
	}
	applied := s.execute(s.approve(s.propose("5").ID))
	if applied.State != "succeeded" {
		t.Fatalf("second apply: %+v", applied)
	}
	if got := s.sb.Service("sandbox", "web").Replicas; got != 5 {
		t.Errorf("replicas %d", got)
	}
	var logs []byte
	status, logs := s.call("ci", "GET", "/api/v1/executions/"+e.ID+"/logs", "", nil, nil)
	if status != 200 || !bytes.Contains(logs, []byte(`"@message"`)) {
		t.Errorf("logs: %d %.200s", status, logs)
	}
	// Every artifact of the execution is served as a DSSE envelope that
	// verifies with the published key alone, and the audit entry of its
	// end names each by digest.
	var got struct {
		PlanLogID  string `json:"plan_log_id"`
		ApplyLogID string `json:"apply_log_id"`
		PlanJSONID string `json:"plan_json_id"`
	}
	s.call("ci", "GET", "/api/v1/executions/"+applied.ID, "", nil, &got)
	_, pem := s.call("", "GET", "/api/v1/keys/signing", "", nil, nil)
	pub, err := broker.ParsePublicKeyPEM(pem)
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	for kind, id := range map[string]string{"plan-log": got.PlanLogID, "apply-log": got.ApplyLogID, "plan-json": got.PlanJSONID} {
		status, env := s.call("ci", "GET", "/api/v1/artifacts/"+id, "", nil, nil)
		a, err := broker.VerifyArtifactEnvelope(env, pub)
		if status != http.StatusOK || err != nil || a.Kind != kind {
			t.Errorf("%s %q: %d, %+v, %v", kind, id, status, a, err)
			continue
		}
		digests[kind] = a.Digest
	}
	_, metrics := s.call("", "GET", "/metrics", "", nil, nil)
	for _, want := range []string{`seb_executions_total{outcome="refused"} 1`, `seb_executions_total{outcome="succeeded"} 2`,
		`seb_proposals_total{state="pending"} 3`, `seb_certificates_issued_total 3`, `seb_http_requests_total{method="POST",route="/api/v1/executions",status="409"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var audit struct {
		Items []broker.AuditEntry `json:"items"`
	}
	s.call("root", "GET", "/api/v1/audit?limit=1000", "", nil, &audit)
	var actions []string
	for _, a := range audit.Items {
		actions = append(actions, a.Action)
	}
	joined := strings.Join(actions, " ")
	// A checkpoint, public, signed now: the log's length and head.
	status, cpEnv := s.call("", "GET", "/api/v1/audit/checkpoint", "", nil, nil)
	cp, err := broker.VerifyCheckpoint(cpEnv, pub)
	if status != http.StatusOK || err != nil || cp.Count < int64(len(audit.Items)) || cp.Count == 0 {
		t.Errorf("checkpoint: %d, %+v, %v", status, cp, err)
	}
	// The apply credential's entry names the plan JSON; the end's, the logs.
	var entries string
	for _, a := range audit.Items {
		if a.Subject == applied.ID && (a.Action == "execution.succeeded" || a.Action == "credential.apply_issued") {
			entries += string(a.Details)
		}
	}
	for kind, digest := range digests {
		if !strings.Contains(entries, digest) {
			t.Errorf("the audit entries of %s do not name its %s %s: %s", applied.ID, kind, digest, entries)
		}
	}
	if len(digests) != 3 {
		t.Errorf("artifacts %v", digests)
	}
	for _, want := range []string{"execution.refused", "execution.started", "execution.succeeded", "certificate.issued"} {
		if !strings.Contains(joined, want) {
			t.Errorf("audit lacks %s: %s", want, joined)
		}
	}
}

// TestRoleMatrix: every route refuses every role it does not list (403),
// and every route refuses a missing or unknown token (401).
func TestRoleMatrix(t *testing.T) {
	s := newSite(t)
	roleOf := map[string]broker.Role{"agent-1": broker.RoleAgent, "alice": broker.RoleReviewer, "ci": broker.RoleCI, "root": broker.RoleAdmin,
		"runner-1": broker.RoleRunner}
	for _, r := range web.Routes() {
		path := "/api/v1" + strings.NewReplacer(":workspace", "sandbox", ":id", "missing").Replace(r.Path)
		if strings.HasPrefix(r.Summary, "Refused") {
			// Writes and locks of state: refused to every role (to a
			// runner's before anything else).
			for who, role := range roleOf {
				if status, body := s.json(who, r.Method, path, map[string]string{}, nil); status != http.StatusForbidden || role != broker.RoleRunner && !strings.Contains(string(body), "read-only") {
					t.Errorf("%s %s as %s: %d %s", r.Method, r.Path, who, status, body)
				}
			}
			continue
		}
		for who, role := range roleOf {
			status, body := s.json(who, r.Method, path, map[string]string{}, nil)
			allowed := false
			for _, ok := range r.Roles {
				allowed = allowed || ok == role
			}
			if !allowed && status != http.StatusForbidden {
				t.Errorf("%s %s as %s: %d %s, want 403", r.Method, r.Path, role, status, body)
			}
			if allowed && (status == http.StatusForbidden || status == http.StatusUnauthorized) {
				t.Errorf("%s %s as %s: %d %s, want it allowed", r.Method, r.Path, role, status, body)
			}
		}
		if status, _ := s.json("", r.Method, path, map[string]string{}, nil); status != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d", r.Method, r.Path, status)
		}
		s.tokens["nobody"] = "seb_not-a-real-token"
		if status, _ := s.json("nobody", r.Method, path, map[string]string{}, nil); status != http.StatusUnauthorized {
			t.Errorf("%s %s with an unknown token: %d", r.Method, r.Path, status)
		}
	}
}

// TestBadInput: each bad request gets a 4xx saying what is wrong, the
// server keeps serving, and nothing stored changes.
func TestBadInput(t *testing.T) {
	s := newSite(t)
	p := s.propose("3")
	huge := `{"bundle":"` + strings.Repeat("A", 2<<20) + `"}`
	tests := []struct {
		name, who, method, path, contentType, body string
		wantStatus                                 int
		wantMsg                                    string
	}{
		{"malformed JSON", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", `{"bundle":`, 400, "request body"},
		{"unknown field", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", `{"bundel":"x"}`, 400, "unknown field"},
		{"wrong content type", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "text/plain", `{}`, 415, "application/json"},
		{"oversized body", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", huge, 413, "too large"},
		{"unknown workspace", "agent-1", "POST", "/api/v1/workspaces/nowhere/proposals", "application/json", `{"bundle":"` + bundle(t, "scale") + `"}`, 404, "no workspace"},
		{"hostile bundle", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", `{"bundle":"` + base64.StdEncoding.EncodeToString([]byte("not a tarball")) + `"}`, 400, "gzip"},
		{"garbage certificate", "ci", "POST", "/api/v1/executions", "application/json", `{"envelope":{"payload":"x"}}`, 400, "not a certificate envelope"},
		{"unknown certificate", "ci", "POST", "/api/v1/executions", "application/json", `{"certificate_id":"cert-nope"}`, 404, "cert-nope"},
		{"both or neither", "ci", "POST", "/api/v1/executions", "application/json", `{}`, 400, "certificate_id"},
		{"bad validity", "alice", "POST", "/api/v1/proposals/" + p.ID + "/approve", "application/json", `{"validity":"soon"}`, 400, "not a duration"},
		{"unknown route", "root", "GET", "/api/v1/nothing", "", "", 404, "Not Found"},
		{"a list of an unknown workspace", "alice", "GET", "/api/v1/proposals?workspace=sandbx", "", "", 404, "sandbx"},
		{"rationale not UTF-8", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", "{\"bundle\":\"" + bundle(t, "scale") + "\",\"rationale\":\"caf\xe9\"}", 400, "not valid UTF-8 at byte"},
		{"data after the body", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", `{"bundle":"` + bundle(t, "scale") + `"} {"bundle":"x"}`, 400, "after top-level value"},
		{"data after a small body", "alice", "POST", "/api/v1/proposals/" + p.ID + "/approve", "application/json", `{"comment":"ok"} trailing`, 400, "data after the JSON value"},
		{"NUL in a variable", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", `{"bundle":"` + bundle(t, "scale") + `","vars":{"replicas":"3\u0000"}}`, 400, "variable replicas: control character U+0000"},
		{"a variable name", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", `{"bundle":"` + bundle(t, "scale") + `","vars":{"re plicas":"3"}}`, 400, `variable "re plicas"`},
		{"a null variable", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", `{"bundle":"` + bundle(t, "scale") + `","vars":{"replicas":null}}`, 400, "variable replicas is null"},
		{"control character in a rationale", "agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", "application/json", `{"bundle":"` + bundle(t, "scale") + `","rationale":"a\u001bb"}`, 400, "rationale: control character U+001B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e struct {
				Error struct{ Code, Message string }
			}
			status, body := s.call(tt.who, tt.method, tt.path, tt.contentType, strings.NewReader(tt.body), &e)
			if status != tt.wantStatus || !strings.Contains(e.Error.Message, tt.wantMsg) {
				t.Errorf("%d %s; want %d saying %q", status, body, tt.wantStatus, tt.wantMsg)
			}
		})
	}
	var still proposal
	if status, _ := s.call("alice", "GET", "/api/v1/proposals/"+p.ID, "", nil, &still); status != 200 || still.State != "pending" {
		t.Errorf("after the bad requests: %d %+v", status, still)
	}
	list, _ := s.store.ListProposals(context.Background(), broker.ProposalFilter{})
	if len(list) != 1 {
		t.Errorf("%d proposals stored", len(list))
	}
}

// TestTypedVariables: variables may be JSON numbers, booleans, lists and
// objects, and reach Terraform as they were sent.
func TestTypedVariables(t *testing.T) {
	s := newSite(t)
	var p proposal
	status, body := s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals",
		map[string]any{"bundle": bundle(t, "scale"), "vars": map[string]any{"replicas": 4, "image": "nginx:1.27"}}, &p)
	if status != http.StatusAccepted {
		t.Fatalf("propose: %d %s", status, body)
	}
	p = s.verified(p.ID)
	if p.State != "pending" || !strings.Contains(p.Rendered, "replicas = 4") {
		t.Fatalf("a number variable: %+v", p)
	}
	stored, err := s.store.Proposal(context.Background(), p.ID)
	if err != nil || stored.Vars["replicas"] != "4" || stored.Vars["image"] != "nginx:1.27" {
		t.Errorf("stored vars: %v, %v", stored.Vars, err)
	}
	// Approving needs no body at all.
	var approved proposal
	if status, body := s.call("alice", "POST", "/api/v1/proposals/"+p.ID+"/approve", "", nil, &approved); status != http.StatusOK || approved.State != "certified" {
		t.Errorf("approve with no body: %d %s", status, body)
	}
}

// TestRequestEdges: basic auth is for Terraform's state backend only,
// metrics labels stay bounded whatever method a client sends, an oversized
// multipart proposal is answered 413, and a server shutting down refuses a
// new execution without consuming its certificate.
func TestRequestEdges(t *testing.T) {
	s := newSite(t)
	basic := func(path string) int {
		req, _ := http.NewRequest("GET", s.url+path, nil)
		req.SetBasicAuth("agent-1", s.tokens["agent-1"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := basic("/api/v1/workspaces/sandbox/state"); status != http.StatusNoContent && status != http.StatusOK {
		t.Errorf("state with basic auth: %d", status)
	}
	if status := basic("/api/v1/proposals"); status != http.StatusUnauthorized {
		t.Errorf("proposals with basic auth: %d, want 401", status)
	}

	s.call("agent-1", "BREW", "/api/v1/proposals", "", nil, nil)
	s.call("agent-1", "GET", "/api/v1/no/such/route/"+strings.Repeat("x", 40), "", nil, nil)
	_, metrics := s.call("", "GET", "/metrics", "", nil, nil)
	if !strings.Contains(string(metrics), `method="OTHER"`) || strings.Contains(string(metrics), "BREW") || strings.Contains(string(metrics), "xxxx") {
		t.Errorf("metrics labels are not bounded:\n%s", metrics)
	}

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	part, _ := mw.CreateFormFile("bundle", "bundle.tar.gz")
	part.Write(bytes.Repeat([]byte{0}, 2<<20))
	mw.Close()
	var e struct {
		Error struct{ Code, Message string }
	}
	if status, body := s.call("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", mw.FormDataContentType(), &form, &e); status != http.StatusRequestEntityTooLarge || e.Error.Code != "too_large" {
		t.Errorf("oversized multipart proposal: %d %s", status, body)
	}

}

// startRunner runs a runner against the server over HTTP, with a runner
// token, as `seb runner` does, until the test ends. It returns the
// runner's token.
func startRunner(t testing.TB, url string, store broker.Store) string {
	t.Helper()
	token, record, err := broker.NewAPIToken("runner-"+strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())), broker.RoleRunner, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateAPIToken(context.Background(), record); err != nil {
		t.Fatal(err)
	}
	client, err := runner.NewClient(url, token)
	if err != nil {
		t.Fatal(err)
	}
	runnertest.Start(t, client, "web-test")
	return token
}

// TestSpeculativePlan: an agent without Terraform gets seb's plan of its
// bundle — plan JSON, summary and rendered diff — and nothing is stored.
func TestSpeculativePlan(t *testing.T) {
	s := newSite(t)
	var out struct {
		Digest     string          `json:"digest"`
		Rendered   string          `json:"rendered"`
		HasChanges bool            `json:"has_changes"`
		Plan       json.RawMessage `json:"plan"`
	}
	status, body := s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/plan",
		map[string]any{"bundle": bundle(t, "scale"), "vars": map[string]string{"replicas": "4"}}, &out)
	if status != 200 || !out.HasChanges || !strings.Contains(out.Rendered, "+ replicas = 4") || !strings.HasPrefix(out.Digest, "sha256:") {
		t.Fatalf("%d %s", status, body)
	}
	plan, err := planparse.Parse(bytes.NewReader(out.Plan), planparse.Options{SensitiveKey: []byte("web test key for sensitive values")})
	if err != nil || plan.Digest != out.Digest {
		t.Errorf("the returned plan JSON: %v, digest %v vs %s", err, plan, out.Digest)
	}
	if list, _ := s.store.ListProposals(context.Background(), broker.ProposalFilter{}); len(list) != 0 {
		t.Errorf("a speculative plan stored %d proposals", len(list))
	}
	if len(s.sb.Services()) != 0 {
		t.Error("a speculative plan changed the sandbox")
	}
}

// TestAgentPlansLocally: an agent with its own Terraform reads seb's state
// read-only over the http backend with a plan-phase credential; its plan
// works, but it can neither apply nor write nor lock the state.
func TestAgentPlansLocally(t *testing.T) {
	s := newSite(t)
	if e := s.execute(s.approve(s.propose("3").ID)); e.State != "succeeded" {
		t.Fatalf("first apply: %+v", e)
	}
	var cred struct {
		Token        string            `json:"token"`
		TokenFileEnv []string          `json:"token_file_env"`
		Env          map[string]string `json:"env"`
	}
	if status, body := s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/credentials", map[string]string{}, &cred); status != 200 || cred.Token == "" {
		t.Fatalf("credentials: %d %s", status, body)
	}
	if status, _ := s.json("ci", "POST", "/api/v1/workspaces/sandbox/credentials", map[string]string{}, nil); status != http.StatusForbidden {
		t.Errorf("a ci token got a plan credential: %d", status)
	}
	src := t.TempDir()
	os.CopyFS(src, os.DirFS("../fixtures/terraform/scale"))
	dir := src
	backend := func(lock bool) {
		cfg := "terraform {\n  backend \"http\" {\n    address = \"" + s.url + "/api/v1/workspaces/sandbox/state\"\n"
		if lock {
			cfg += "    lock_address   = \"" + s.url + "/api/v1/workspaces/sandbox/state\"\n    unlock_address = \"" + s.url + "/api/v1/workspaces/sandbox/state\"\n"
		}
		os.WriteFile(filepath.Join(dir, "backend.tf"), []byte(cfg+"  }\n}\n"), 0o644)
	}
	backend(false)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(cred.Token), 0o600)
	w := tftest.NewWorkdir(t, tftest.Binary(t), src)
	dir = w.Dir
	w.Setenv("TF_HTTP_USERNAME", "agent-1")
	w.Setenv("TF_HTTP_PASSWORD", s.tokens["agent-1"])
	for k, v := range cred.Env {
		w.Setenv(k, v)
	}
	for _, name := range cred.TokenFileEnv {
		w.Setenv(name, tokenFile)
	}
	w.Run("init", "-input=false", "-no-color")
	w.Run("plan", "-input=false", "-no-color", "-var=replicas=4", "-out=p.tfplan")
	plan, err := planparse.Parse(bytes.NewReader(w.Run("show", "-json", "p.tfplan")), planparse.Options{SensitiveKey: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Summary.Resources) != 1 || plan.Summary.Resources[0].Action != planparse.ActionUpdate {
		t.Fatalf("the local plan did not see seb's state: %s", plan.Summary.Canonical())
	}
	_, stderr, err := w.RunErr("apply", "-input=false", "-no-color", "p.tfplan")
	if err == nil || !strings.Contains(strings.Join(strings.Fields(string(stderr)), " "), "read-only") {
		t.Errorf("the agent's apply was not refused: %v\n%s", err, stderr)
	}
	if got := s.sb.Service("sandbox", "web").Replicas; got != 3 {
		t.Errorf("replicas %d after the refused apply", got)
	}
	backend(true)
	w.Run("init", "-input=false", "-no-color", "-reconfigure")
	if _, stderr, err := w.RunErr("plan", "-input=false", "-no-color", "-var=replicas=4"); err == nil || !strings.Contains(string(stderr), "lock") {
		t.Errorf("a plan that locks seb's state was not refused: %v\n%s", err, stderr)
	}
	if status, body := s.call("agent-1", "POST", "/api/v1/workspaces/sandbox/state", "application/json", strings.NewReader(`{"version":4}`), nil); status != http.StatusForbidden {
		t.Errorf("state write: %d %s", status, body)
	}
}

// TestFollowLogs: a follower sees an execution's log while it runs,
// streamed as Terraform writes it, to the end.
func TestFollowLogs(t *testing.T) {
	s := newSite(t)
	cert := s.approve(s.propose("3").ID)
	var e execution
	if status, body := s.json("ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": cert}, &e); status != http.StatusAccepted {
		t.Fatalf("execute: %d %s", status, body)
	}
	req, _ := http.NewRequest("GET", s.url+"/api/v1/executions/"+e.ID+"/logs?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+s.tokens["ci"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	followed, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`"type":"planned_change"`, `"type":"apply_complete"`} {
		if !bytes.Contains(followed, []byte(want)) {
			t.Errorf("the followed log lacks %s:\n%.400s", want, followed)
		}
	}
	s.call("ci", "GET", "/api/v1/executions/"+e.ID, "", nil, &e)
	if e.State != "succeeded" {
		t.Errorf("execution %+v", e)
	}
	_, stored := s.call("ci", "GET", "/api/v1/executions/"+e.ID+"/logs", "", nil, nil)
	if !bytes.Equal(stored, followed) {
		t.Errorf("the stored logs (%d bytes) differ from the followed ones (%d bytes)", len(stored), len(followed))
	}
}

// TestMultipartProposalAndAuditEndpoints: a proposal can come as
// multipart/form-data, and the audit log is exported and verified over the
// API.
func TestMultipartProposalAndAuditEndpoints(t *testing.T) {
	s := newSite(t)
	raw, _ := base64.StdEncoding.DecodeString(bundle(t, "scale"))
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormFile("bundle", "bundle.tar.gz")
	part.Write(raw)
	mw.WriteField("vars", `{"replicas":"4"}`)
	mw.WriteField("rationale", "multipart")
	mw.Close()
	var p proposal
	status, answer := s.call("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", mw.FormDataContentType(), &body, &p)
	if status != http.StatusAccepted {
		t.Fatalf("multipart proposal: %d %s", status, answer)
	}
	if v := s.verified(p.ID); v.State != "pending" || !strings.Contains(v.Rendered, "+ replicas = 4") {
		t.Errorf("multipart proposal after verification: %+v", v)
	}
	var bad bytes.Buffer
	mw = multipart.NewWriter(&bad)
	mw.WriteField("rationale", "no bundle")
	mw.Close()
	if status, answer := s.call("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", mw.FormDataContentType(), &bad, nil); status != http.StatusBadRequest || !strings.Contains(string(answer), "bundle") {
		t.Errorf("multipart without a bundle: %d %s", status, answer)
	}

	status, export := s.call("alice", "GET", "/api/v1/audit/export", "", nil, nil)
	if status != 200 || bytes.Count(export, []byte("\n")) < 2 {
		t.Fatalf("export: %d %s", status, export)
	}
	var verdict struct {
		Verified bool   `json:"verified"`
		Entries  int64  `json:"entries"`
		Head     string `json:"head"`
	}
	if status, answer := s.call("root", "GET", "/api/v1/audit/verify", "", nil, &verdict); status != 200 || !verdict.Verified || verdict.Entries != int64(bytes.Count(export, []byte("\n"))) {
		t.Errorf("verify: %d %s", status, answer)
	}
}

// TestLargeBodiesWaitForRoom: what large uploads take at once is bounded.
// A body that finds no room within the wait is refused with 429 and a
// clear message, and is accepted once the room is given back.
func TestLargeBodiesWaitForRoom(t *testing.T) {
	s := newSite(t)
	server, err := web.New(web.Options{Broker: s.svc, Records: s.store, MaxBundleBytes: 1 << 20, MaxReadingBytes: 1 << 20, ReadingWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(server)
	t.Cleanup(hs.Close)

	// A slow upload of a maximal body holds all the room while it is read.
	pr, pw := io.Pipe()
	slow, err := http.NewRequest("POST", hs.URL+"/api/v1/workspaces/sandbox/proposals", pr)
	if err != nil {
		t.Fatal(err)
	}
	slow.ContentLength = 1 << 20
	slow.Header.Set("Authorization", "Bearer "+s.tokens["agent-1"])
	slow.Header.Set("Content-Type", "application/json")
	slowDone := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(slow)
		if err != nil {
			slowDone <- 0
			return
		}
		resp.Body.Close()
		slowDone <- resp.StatusCode
	}()
	pw.Write([]byte(`{"rationale": "`))
	time.Sleep(100 * time.Millisecond) // the slow body is being read

	propose := func() (int, string) {
		body, _ := json.Marshal(map[string]any{"bundle": bundle(t, "scale"), "vars": map[string]string{"replicas": "4"}})
		req, _ := http.NewRequest("POST", hs.URL+"/api/v1/workspaces/sandbox/proposals", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.tokens["agent-2"])
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	if status, body := propose(); status != http.StatusTooManyRequests || !strings.Contains(body, "reading other large proposals") {
		t.Errorf("a proposal while the room is taken: %d %s", status, body)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF) // the slow upload gives up
	if status := <-slowDone; status == http.StatusAccepted {
		t.Errorf("the cut upload was accepted")
	}
	if status, body := propose(); status != http.StatusAccepted {
		t.Errorf("a proposal once the room is back: %d %s", status, body)
	}
}

// TestProposalPages: the proposal list pages with a cursor: every
// proposal once, newest first, whatever the page size.
func TestProposalPages(t *testing.T) {
	s := newSite(t)
	var ids []string
	for i := range 5 {
		var p proposal
		if status, body := s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals",
			map[string]any{"bundle": bundle(t, "scale"), "vars": map[string]any{"replicas": i + 1}}, &p); status != http.StatusAccepted {
			t.Fatalf("propose: %d %s", status, body)
		}
		ids = append([]string{p.ID}, ids...)
	}
	var got []string
	after := ""
	for pages := 0; pages < 10; pages++ {
		var page struct {
			Items []proposal `json:"items"`
			Next  string     `json:"next"`
		}
		path := "/api/v1/proposals?limit=2"
		if after != "" {
			path += "&after=" + after
		}
		if status, body := s.call("alice", "GET", path, "", nil, &page); status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, status, body)
		}
		for _, p := range page.Items {
			got = append(got, p.ID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("pages: %v, want %v", got, ids)
	}
	if status, _ := s.call("alice", "GET", "/api/v1/proposals?limit=0", "", nil, nil); status != http.StatusBadRequest {
		t.Errorf("limit 0: %d", status)
	}
	if status, _ := s.call("alice", "GET", "/api/v1/proposals?after=prop-nope", "", nil, nil); status != http.StatusNotFound {
		t.Errorf("after a missing proposal: %d", status)
	}
}

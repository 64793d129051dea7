package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
)

func TestMain(m *testing.M) {
	if os.Getenv("SEB_CRASH_CHILD") != "" {
		crashChild()
	}
	os.Exit(tftest.MainWithProvider(m))
}

var sensitiveKey = []byte("broker test key for sensitive values")

// world is a broker with everything real: SQLite, the signer, the token
// issuer, Terraform and a sandbox that trusts only the issuer.
type world struct {
	t      *testing.T
	svc    *broker.Service
	store  broker.Store
	signer *broker.Signer
	sb     *sandboxtest.Sandbox
	clock  *testClock
	ws     broker.Workspace
	// stopRunner stops the world's runner, for tests that lease by hand.
	stopRunner func()
}

type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

func newWorld(t *testing.T, configure func(*broker.Workspace)) *world {
	t.Helper()
	return newWorldWith(t, worldOptions{configure: configure})
}

// worldOptions changes a world from the default one; a nil field leaves
// that part as it is.
type worldOptions struct {
	configure func(*broker.Workspace)
	// wrapStore returns the store the broker uses.
	wrapStore func(broker.Store) broker.Store
	// wrapBroker returns what the runner reaches the broker through.
	wrapBroker func(runner.Broker) runner.Broker
	// service changes the broker's options.
	service func(*broker.Options)
}

func newWorldWith(t *testing.T, o worldOptions) *world {
	t.Helper()
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
	ws := broker.Workspace{
		Name:                "sandbox",
		Credentials:         sb.Credentials(issuer, "sandbox").Profile,
		DriftMode:           drift.ModeDefault,
		CertificateLifetime: time.Hour,
		ApprovalsRequired:   1,
		ProtectedActions:    []planparse.Action{planparse.ActionDelete, planparse.ActionReplace},
	}
	if o.configure != nil {
		o.configure(&ws)
	}
	clock := &testClock{}
	var serviceStore broker.Store = store
	if o.wrapStore != nil {
		serviceStore = o.wrapStore(store)
	}
	opts := broker.Options{
		Store: serviceStore, Signer: signer, Issuer: issuer,
		Workspaces: []broker.Workspace{ws}, SensitiveKey: sensitiveKey, ClockSkew: 30 * time.Second, Now: clock.Now,
	}
	if o.service != nil {
		o.service(&opts)
	}
	svc, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var runnerBroker runner.Broker = svc
	if o.wrapBroker != nil {
		runnerBroker = o.wrapBroker(svc)
	}
	stop := runnertest.Start(t, runnerBroker, "test-runner")
	return &world{t: t, svc: svc, store: store, signer: signer, sb: sb, clock: clock, ws: ws, stopRunner: stop}
}

// bundle packs a fixture configuration as an agent would.
func bundle(t *testing.T, config string) []byte {
	t.Helper()
	return bundleDir(t, filepath.Join("../fixtures/terraform", config))
}

func bundleDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := drift.BundleDirectory(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bundleVariant packs a copy of the scale fixture that edit changed.
func bundleVariant(t *testing.T, edit func(dir string) error) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../fixtures/terraform/scale")); err != nil {
		t.Fatal(err)
	}
	if err := edit(dir); err != nil {
		t.Fatal(err)
	}
	return bundleDir(t, dir)
}

// editFile rewrites one file of dir with what change returns for it.
func editFile(dir, name string, change func([]byte) []byte) error {
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, change(data), 0o644)
}

func (w *world) propose(replicas string) *broker.Proposal {
	w.t.Helper()
	p, _, err := w.svc.Propose(context.Background(), broker.ProposalRequest{
		Workspace: "sandbox", Proposer: "agent-1", Rationale: "scale web", Bundle: bundle(w.t, "scale"),
		Vars: map[string]string{"replicas": replicas},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

func (w *world) approve(p *broker.Proposal, reviewer string) *broker.Certificate {
	w.t.Helper()
	_, cert, err := w.svc.Review(context.Background(), broker.ReviewRequest{ProposalID: p.ID, Reviewer: reviewer, Decision: broker.Approve, Comment: "ok"})
	if err != nil {
		w.t.Fatal(err)
	}
	if cert == nil {
		w.t.Fatalf("no certificate after %s's approval", reviewer)
	}
	return cert
}

func (w *world) execute(cert *broker.Certificate) (*broker.Execution, error) {
	w.t.Helper()
	return w.svc.Execute(context.Background(), broker.ExecuteRequest{Envelope: cert.Envelope, Actor: "ci"})
}

// certified runs a proposal to its certificate.
func (w *world) certified(replicas string) *broker.Certificate {
	w.t.Helper()
	return w.approve(w.propose(replicas), "alice")
}

func auditActions(t *testing.T, store broker.Store, pub []byte) []string {
	t.Helper()
	entries, err := store.AuditEntries(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	key, err := broker.ParsePublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	count, err := broker.VerifyAudit(func() (*broker.AuditEntry, error) {
		if i == len(entries) {
			return nil, io.EOF
		}
		i++
		return entries[i-1], nil
	}, key)
	if err != nil || count != int64(len(entries)) {
		t.Fatalf("audit verify: %d entries, %v", count, err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	return actions
}

// audited counts the world's verified audit entries with this action.
func (w *world) audited(t *testing.T, action string) int {
	t.Helper()
	n := 0
	for _, a := range auditActions(t, w.store, w.svc.PublicKey()) {
		if a == action {
			n++
		}
	}
	return n
}

// TestScenario is the whole story in one test: propose 3 → 5, verify,
// approve; the console scales to 7; the execution is rejected with the
// replicas divergence; propose again 7 → 5, approve, execute: applied, and
// the sandbox shows 5; the audit log verifies and tells it all.
func TestScenario(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	if _, err := w.execute(w.certified("3")); err != nil {
		t.Fatalf("first apply: %v", err)
	}

	p := w.propose("5")
	if p.State != broker.ProposalPending || p.Summary.Resources[0].Changes[0].Path.String() != "replicas" {
		t.Fatalf("proposal %+v", p)
	}
	cert := w.approve(p, "alice")
	w.sb.Scale(w.sb.Service("sandbox", "web").ID, 7)

	e, err := w.execute(cert)
	if broker.ErrorCode(err) != broker.ECONFLICT || e.State != broker.ExecutionRefused {
		t.Fatalf("execution %+v, %v", e, err)
	}
	stored, _ := w.store.Execution(ctx, e.ID)
	var decision drift.Decision
	if err := json.Unmarshal(stored.Divergence, &decision); err != nil {
		t.Fatal(err)
	}
	a := decision.Divergence.Resources[0].Attributes[0]
	if a.Path.String() != "replicas" || planparse.FormatValue(a.Certified.Before) != "3" || planparse.FormatValue(a.Live.Before) != "7" {
		t.Errorf("divergence %+v / %+v", a.Certified, a.Live)
	}
	if got := w.sb.Service("sandbox", "web").Replicas; got != 7 {
		t.Errorf("a rejected execution changed replicas to %d", got)
	}

	again := w.propose("5")
	if before, _ := planparse.FormatValue(again.Summary.Resources[0].Changes[0].Before), 0; before != "7" {
		t.Errorf("second proposal's before is %s, want 7", before)
	}
	e, err = w.execute(w.approve(again, "bob"))
	if err != nil || e.State != broker.ExecutionSucceeded {
		t.Fatalf("execution %+v, %v", e, err)
	}
	if got := w.sb.Service("sandbox", "web").Replicas; got != 5 {
		t.Errorf("replicas %d after the execution, want 5", got)
	}
	done, _ := w.store.Execution(ctx, e.ID)
	for _, id := range []string{done.PlanLogID, done.ApplyLogID} {
		art, err := w.store.Artifact(ctx, id)
		if err != nil {
			t.Fatalf("log %q: %v", id, err)
		}
		if err := broker.VerifyArtifact(art, w.signer.PublicKey()); err != nil || !bytes.Contains(art.Data, []byte(`"@level"`)) {
			t.Errorf("log %s: %v, %d bytes", art.Kind, err, len(art.Data))
		}
	}

	actions := strings.Join(auditActions(t, w.store, w.svc.PublicKey()), " ")
	want := strings.Join([]string{
		"proposal.received proposal.verified proposal.approved certificate.issued execution.started credential.apply_issued execution.succeeded",
		"proposal.received proposal.verified proposal.approved certificate.issued execution.started execution.refused",
		"proposal.received proposal.verified proposal.approved certificate.issued execution.started credential.apply_issued execution.succeeded",
	}, " ")
	if actions != want {
		t.Errorf("audit log:\n%s\nwant:\n%s", actions, want)
	}
}

// TestCertificateRefusals: every way a certificate can be unusable has its
// own clear reason.
func TestCertificateRefusals(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	other, err := broker.OpenSigner(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	resign := func(cert *broker.Certificate, edit func(*broker.CertificatePayload)) []byte {
		p := cert.CertificatePayload
		edit(&p)
		env, err := w.signer.SignCertificate(&p)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	tests := []struct {
		name     string
		envelope func(*broker.Certificate) []byte
		before   func(*broker.Certificate)
		wantMsg  string
	}{
		{name: "bad signature", envelope: func(c *broker.Certificate) []byte {
			p := c.CertificatePayload
			p.IssuerKeyID = other.KeyID()
			env, _ := other.SignCertificate(&p)
			return env
		}, wantMsg: "signature is invalid"},
		{name: "tampered payload", envelope: func(c *broker.Certificate) []byte {
			var env map[string]any
			json.Unmarshal(c.Envelope, &env)
			payload := env["payload"].(string)
			env["payload"] = payload[:len(payload)-8] + "AAAAAAA="
			out, _ := json.Marshal(env)
			return out
		}, wantMsg: "certificate"},
		{name: "wrong workspace", envelope: func(c *broker.Certificate) []byte {
			return resign(c, func(p *broker.CertificatePayload) { p.Workspace = "prod" })
		}, wantMsg: "does not match the one this broker issued"},
		{name: "wrong config digest", envelope: func(c *broker.Certificate) []byte {
			return resign(c, func(p *broker.CertificatePayload) { p.ConfigDigest = "sha256:" + strings.Repeat("0", 64) })
		}, wantMsg: "does not match the one this broker issued"},
		{name: "not yet valid", before: func(*broker.Certificate) { w.clock.Advance(-10 * time.Minute) }, wantMsg: "is not valid before"},
		{name: "expired", before: func(*broker.Certificate) { w.clock.Advance(2 * time.Hour) }, wantMsg: "expired at"},
		{name: "policy epoch stale", before: func(*broker.Certificate) {
			if _, err := w.svc.LoadPolicy(ctx, "sha256:"+strings.Repeat("1", 64)); err != nil {
				t.Fatal(err)
			}
		}, wantMsg: "policy epoch"},
		{name: "workspace revoked", before: func(*broker.Certificate) {
			if _, err := w.svc.RevokeAll(ctx, "sandbox", "admin"); err != nil {
				t.Fatal(err)
			}
		}, wantMsg: "revoked with every certificate of workspace sandbox"},
		{name: "certificate revoked", before: func(c *broker.Certificate) {
			if err := w.svc.Revoke(ctx, c.ID, "admin"); err != nil {
				t.Fatal(err)
			}
		}, wantMsg: "was revoked by admin"},
		{name: "already used", before: func(c *broker.Certificate) {
			if _, err := w.execute(c); err != nil {
				t.Fatal(err)
			}
		}, wantMsg: "already used"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := w.certified(string(rune('3' + i%5)))
			if tt.before != nil {
				tt.before(cert)
			}
			defer func() { w.clock.mu.Lock(); w.clock.offset = 0; w.clock.mu.Unlock() }()
			env := cert.Envelope
			if tt.envelope != nil {
				env = tt.envelope(cert)
			}
			e, err := w.svc.Execute(ctx, broker.ExecuteRequest{Envelope: env, Actor: "ci"})
			if err == nil || !strings.Contains(broker.ErrorMessage(err), tt.wantMsg) {
				t.Fatalf("execution %+v, error %v; want one saying %q", e, err, tt.wantMsg)
			}
		})
	}
}

// TestSeparationOfDuties: proposers never approve their own proposals,
// approvals are counted per distinct reviewer, and protected actions always
// need a human.
func TestSeparationOfDuties(t *testing.T) {
	ctx := context.Background()
	t.Run("own proposal", func(t *testing.T) {
		w := newWorld(t, nil)
		p := w.propose("3")
		_, _, err := w.svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: "agent-1", Decision: broker.Approve})
		if broker.ErrorCode(err) != broker.EFORBIDDEN {
			t.Errorf("self-approval: %v", err)
		}
	})
	t.Run("two approvals", func(t *testing.T) {
		w := newWorld(t, func(ws *broker.Workspace) { ws.ApprovalsRequired = 2 })
		p := w.propose("3")
		if _, cert, err := w.svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: "alice", Decision: broker.Approve}); err != nil || cert != nil {
			t.Fatalf("first approval: %v, %v", cert, err)
		}
		if _, _, err := w.svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: "alice", Decision: broker.Approve}); broker.ErrorCode(err) != broker.ECONFLICT {
			t.Errorf("second approval by the same reviewer: %v", err)
		}
		cert := w.approve(p, "bob")
		if len(cert.Approvals) != 2 {
			t.Errorf("approvals %+v", cert.Approvals)
		}
		if _, _, err := w.svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: "carol", Decision: broker.Reject}); broker.ErrorCode(err) != broker.ECONFLICT {
			t.Errorf("review of a certified proposal: %v", err)
		}
	})
	t.Run("protected actions", func(t *testing.T) {
		w := newWorld(t, func(ws *broker.Workspace) { ws.ApprovalsRequired = 0 })
		_, cert, err := w.svc.Propose(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Bundle: bundle(t, "scale"), Vars: map[string]string{"replicas": "3"}})
		if err != nil || cert == nil {
			t.Fatalf("a create with no approvals required was not certified at once: %v", err)
		}
		if _, err := w.execute(cert); err != nil {
			t.Fatal(err)
		}
		// Renaming the service replaces it: a protected action.
		renamed := bundleVariant(t, func(dir string) error {
			return editFile(dir, "main.tf", func(main []byte) []byte {
				return bytes.Replace(main, []byte(`name     = "web"`), []byte(`name     = "www"`), 1)
			})
		})
		p, cert, err := w.svc.Propose(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Bundle: renamed})
		if err != nil || cert != nil || p.State != broker.ProposalPending {
			t.Fatalf("a replacement was certified without a human: %+v, %v, %v", p, cert, err)
		}
		w.approve(p, "alice")
	})
	t.Run("diverged agent plan", func(t *testing.T) {
		w := newWorld(t, nil)
		agentPlan := `{"format_version":"1.2","resource_changes":[{"address":"sandbox_service.web","mode":"managed","type":"sandbox_service","name":"web",
		  "provider_name":"seb.invalid/seb/sandbox","change":{"actions":["create"],"before":null,"after":{"name":"web","replicas":1}}}]}`
		p, _, err := w.svc.Propose(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Bundle: bundle(t, "scale"),
			Vars: map[string]string{"replicas": "3"}, AgentPlan: []byte(agentPlan)})
		if err != nil || p.State != broker.ProposalDiverged || p.Divergence == nil {
			t.Fatalf("proposal %+v, %v", p, err)
		}
		if _, _, err := w.svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: "alice", Decision: broker.Approve}); broker.ErrorCode(err) != broker.ECONFLICT {
			t.Errorf("approval of a diverged proposal: %v", err)
		}
	})
	t.Run("no changes", func(t *testing.T) {
		w := newWorld(t, func(ws *broker.Workspace) { ws.ApprovalsRequired = 0 })
		_, cert, _ := w.svc.Propose(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Bundle: bundle(t, "scale"), Vars: map[string]string{"replicas": "3"}})
		w.execute(cert)
		_, _, err := w.svc.Propose(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Bundle: bundle(t, "scale"), Vars: map[string]string{"replicas": "3"}})
		if broker.ErrorCode(err) != broker.EINVALID || !strings.Contains(broker.ErrorMessage(err), "changes nothing") {
			t.Errorf("empty proposal: %v", err)
		}
	})
}

// TestConcurrentExecutions: 50 requests for one certificate, at once:
// exactly one run.
func TestConcurrentExecutions(t *testing.T) {
	w := newWorld(t, nil)
	cert := w.certified("3")
	var wg sync.WaitGroup
	results := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := w.execute(cert)
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	ran, used := 0, 0
	for err := range results {
		switch {
		case err == nil:
			ran++
		case strings.Contains(broker.ErrorMessage(err), "already used"):
			used++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	executions, _ := w.store.ListExecutions(context.Background(), broker.ExecutionFilter{CertificateID: cert.ID})
	if ran != 1 || used != 49 || len(executions) != 1 {
		t.Errorf("%d ran, %d refused as used, %d executions stored", ran, used, len(executions))
	}
}

// TestRevokedWhileWaiting: a certificate revoked after its execution was
// queued is refused before the apply: the broker checks it again when the
// runner's plan comes back, before it mints the apply credential.
func TestRevokedWhileWaiting(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	cert := w.certified("3")
	e, _, err := w.svc.Begin(ctx, broker.ExecuteRequest{CertificateID: cert.ID, Actor: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.svc.Revoke(ctx, cert.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.WaitExecution(ctx, e.ID)
	stored, _ := w.store.Execution(ctx, e.ID)
	if broker.ErrorCode(err) != broker.ECONFLICT || stored.State != broker.ExecutionRefused || !strings.Contains(stored.Reason, "was revoked by admin") {
		t.Fatalf("err %v, execution %+v", err, stored)
	}
	if len(w.sb.Services()) != 0 {
		t.Error("the revoked certificate's diff was applied")
	}
}

// TestVariablesBound: the certificate binds the variables; a proposal row
// changed behind the broker's back is refused.
func TestVariablesBound(t *testing.T) {
	w := newWorld(t, nil)
	cert := w.certified("3")
	if cert.VarsDigest != broker.VarsDigest(map[string]string{"replicas": "3"}) {
		t.Fatalf("vars digest %s", cert.VarsDigest)
	}
	if broker.VarsDigest(map[string]string{"a": "b=c"}) == broker.VarsDigest(map[string]string{"a=b": "c"}) {
		t.Error("two sets of variables share a digest")
	}
}

// TestRunnersDrainTogether: two runners drain a queue of proposals
// together; every verification runs once, on one runner.
func TestRunnersDrainTogether(t *testing.T) {
	w := newWorld(t, nil)
	// newWorld's runner and a second one, each one job at a time.
	for _, name := range []string{"second"} {
		opts := tftest.EngineOptions(t)
		opts.SensitiveKey = []byte("throwaway")
		engine, err := drift.New(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		runnertest.StartWith(t, runner.Options{Name: name, Broker: w.svc, Engine: engine, Jobs: 1})
	}
	ctx := context.Background()
	var ids []string
	// Six agents: one agent's verifications would run one at a time.
	for i := range 6 {
		p, err := w.svc.Submit(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: fmt.Sprintf("agent-%d", i+1),
			Bundle: bundle(t, "scale"), Vars: map[string]string{"replicas": fmt.Sprint(i + 1)}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	runners := map[string]int{}
	for _, id := range ids {
		p, _, err := w.svc.Verify(ctx, id)
		if err != nil || p.State != broker.ProposalPending {
			t.Fatalf("proposal %s: %+v, %v", id, p, err)
		}
		j, err := w.store.Job(ctx, "job-"+id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Attempts != 1 || j.State != broker.JobDone {
			t.Errorf("job %s: %d attempts, %s", j.ID, j.Attempts, j.State)
		}
		runners[j.Runner]++
	}
	if len(runners) != 2 {
		t.Errorf("jobs ran on %v; want both runners", runners)
	}
	verified := w.audited(t, "proposal.verified")
	if verified != len(ids) {
		t.Errorf("%d proposal.verified entries for %d proposals", verified, len(ids))
	}
}

// TestRunnerReportsBound: a runner can report only on a job leased to it,
// with its lease's token, and an execution's plan only once: a second
// report would mint a second apply credential.
func TestRunnerReportsBound(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	cert := w.certified("3")
	w.stopRunner()
	if _, _, err := w.svc.Begin(ctx, broker.ExecuteRequest{CertificateID: cert.ID, Actor: "ci"}); err != nil {
		t.Fatal(err)
	}
	lease, err := w.svc.LeaseJob(ctx, "mine/1", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mine, thief := broker.AsRunner(ctx, "mine"), broker.AsRunner(ctx, "thief")
	before, err := w.store.Job(ctx, lease.Job)
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(time.Second)
	if err := w.svc.Heartbeat(thief, lease.Job, lease.Token); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("another runner's heartbeat: %v", err)
	}
	// ... and it renewed nothing: it cannot keep a dead runner's job alive.
	if after, err := w.store.Job(ctx, lease.Job); err != nil || !after.LeaseExpires.Equal(before.LeaseExpires) {
		t.Errorf("another runner's heartbeat moved the lease from %s to %+v (%v)", before.LeaseExpires, after, err)
	}
	if err := w.svc.AppendLog(thief, lease.Job, lease.Token, "plan", []byte("forged\n")); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("another runner's log: %v", err)
	}
	if err := w.svc.ReportFailure(thief, lease.Job, lease.Token, "stop it"); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("another runner's failure report: %v", err)
	}
	if err := w.svc.Heartbeat(mine, lease.Job, lease.Token+1); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("a heartbeat with a wrong token: %v", err)
	}

	// The plan, as the runner makes it, with the credential of the lease.
	opts := tftest.EngineOptions(t)
	opts.SensitiveKey = []byte("throwaway")
	engine, err := drift.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	wd, err := engine.NewWorkdir(bytes.NewReader(lease.Bundle))
	if err != nil {
		t.Fatal(err)
	}
	defer wd.Close()
	plan, err := wd.Plan(ctx, drift.PlanRequest{Vars: lease.Vars, State: lease.State, Credentials: broker.GrantCredentials{Plan: lease.Credentials}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.ReportPlan(thief, lease.Job, lease.Token, broker.PlanReport{Plan: plan.JSON}); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("another runner's plan: %v", err)
	}
	verdict, err := w.svc.ReportPlan(mine, lease.Job, lease.Token, broker.PlanReport{Plan: plan.JSON})
	if err != nil || !verdict.Apply || verdict.Credentials == nil || verdict.Credentials.Phase != drift.PhaseApply {
		t.Fatalf("verdict %+v, %v", verdict, err)
	}
	if again, err := w.svc.ReportPlan(mine, lease.Job, lease.Token, broker.PlanReport{Plan: plan.JSON}); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("a second plan report: %+v, %v", again, err)
	}
	if err := w.svc.ReportState(thief, lease.Job, lease.Token, []byte(`{"version":4}`)); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("another runner's state: %v", err)
	}
	issued := w.audited(t, "credential.apply_issued")
	if issued != 1 {
		t.Errorf("%d apply credentials issued, want 1", issued)
	}
}

// TestSpeculativePlanRefused: a speculative plan Terraform refuses is the
// agent's error, with Terraform's reason, not the broker's.
func TestSpeculativePlanRefused(t *testing.T) {
	w := newWorld(t, nil)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.tf"), []byte(`output "x" { value = var.missing }`), 0o644)
	var buf bytes.Buffer
	if _, err := drift.BundleDirectory(dir, &buf); err != nil {
		t.Fatal(err)
	}
	_, err := w.svc.Plan(context.Background(), "agent-1", "sandbox", buf.Bytes(), nil)
	if broker.ErrorCode(err) != broker.EINVALID || !strings.Contains(broker.ErrorMessage(err), "seb's plan failed") || !strings.Contains(broker.ErrorMessage(err), "missing") {
		t.Errorf("plan of an invalid configuration: %v", err)
	}
}

// TestCancelJobs: an admin cancels a queued verification (the proposal is
// refused, saying so) and a queued execution (interrupted, never run);
// both are audited, and a runner's report on a cancelled job is refused.
func TestCancelJobs(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	cert := w.certified("3")
	w.stopRunner()
	p, err := w.svc.Submit(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Bundle: bundle(t, "scale"), Vars: map[string]string{"replicas": "4"}})
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := w.svc.Begin(ctx, broker.ExecuteRequest{CertificateID: cert.ID, Actor: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := w.svc.LeaseJob(ctx, "late", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.svc.CancelJob(ctx, "job-"+p.ID, "root"); err != nil {
		t.Fatal(err)
	}
	if err := w.svc.CancelJob(ctx, "job-"+e.ID, "root"); err != nil {
		t.Fatal(err)
	}
	if err := w.svc.CancelJob(ctx, "job-"+e.ID, "root"); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("cancelling twice: %v", err)
	}
	got, _ := w.store.Proposal(ctx, p.ID)
	if got.State != broker.ProposalRefused || !strings.Contains(got.Reason, "cancelled by root") {
		t.Errorf("proposal %s: %s", got.State, got.Reason)
	}
	stored, _ := w.store.Execution(ctx, e.ID)
	if stored.State != broker.ExecutionInterrupted || !strings.Contains(stored.Reason, "cancelled by root") {
		t.Errorf("execution %s: %s", stored.State, stored.Reason)
	}
	if err := w.svc.Heartbeat(ctx, lease.Job, lease.Token); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("a heartbeat on a cancelled job: %v", err)
	}
	if len(w.sb.Services()) != 0 {
		t.Errorf("%d services; the cancelled execution ran", len(w.sb.Services()))
	}
	cancelled := w.audited(t, "job.cancelled")
	if cancelled != 2 {
		t.Errorf("%d job.cancelled entries, want 2", cancelled)
	}
}

// TestVerifyingCapPerAgent: an agent with the most proposals waiting for
// seb's plan is refused more (EBUSY, 429 over HTTP) while another agent
// still proposes.
func TestVerifyingCapPerAgent(t *testing.T) {
	w := newWorld(t, nil)
	w.stopRunner()
	ctx := context.Background()
	submit := func(agent string, i int) error {
		_, err := w.svc.Submit(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: agent, Bundle: bundle(t, "scale"),
			Vars: map[string]string{"replicas": fmt.Sprint(i)}})
		return err
	}
	for i := range 8 {
		if err := submit("greedy", i+1); err != nil {
			t.Fatalf("proposal %d: %v", i+1, err)
		}
	}
	if err := submit("greedy", 9); broker.ErrorCode(err) != broker.EBUSY || !strings.Contains(broker.ErrorMessage(err), "8 proposals waiting") {
		t.Errorf("a ninth waiting proposal: %v", err)
	}
	if err := submit("other", 1); err != nil {
		t.Errorf("another agent was refused: %v", err)
	}
}

// TestRunnerFailureRetriedLater: a verification the runner could not run
// is tried again, not at once, and after its attempts the proposal is
// refused with the runner's reason.
func TestRunnerFailureRetriedLater(t *testing.T) {
	w := newWorld(t, nil)
	w.stopRunner()
	ctx := context.Background()
	p, err := w.svc.Submit(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Bundle: bundle(t, "scale"), Vars: map[string]string{"replicas": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 3; attempt++ {
		lease, err := w.svc.LeaseJob(ctx, "flaky", time.Second)
		if err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		if err := w.svc.ReportFailure(ctx, lease.Job, lease.Token, "disk full"); err != nil {
			t.Fatal(err)
		}
		if attempt < 3 {
			if _, err := w.svc.LeaseJob(ctx, "flaky", 0); broker.ErrorCode(err) != broker.ENOTFOUND {
				t.Fatalf("attempt %d was tried again at once: %v", attempt, err)
			}
			w.clock.Advance(time.Minute)
		}
	}
	got, _ := w.store.Proposal(ctx, p.ID)
	if got.State != broker.ProposalRefused || !strings.Contains(got.Reason, "after 3 attempt(s)") || !strings.Contains(got.Reason, "disk full") {
		t.Errorf("proposal %s: %q", got.State, got.Reason)
	}
}

// TestBundleBytesCapPerAgent: one agent cannot fill the broker's store
// with bundles; the cap counts the distinct bundles it stored in a day.
func TestBundleBytesCapPerAgent(t *testing.T) {
	ctx := context.Background()
	one := bundle(t, "scale")
	w := newWorldWith(t, worldOptions{service: func(o *broker.Options) { o.MaxAgentBundleBytes = int64(len(one))*2 + 100 }})
	w.stopRunner()
	submit := func(agent string, b []byte) error {
		_, err := w.svc.Submit(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: agent, Bundle: b})
		return err
	}
	// A bundle that differs by one file's content is another bundle.
	other := func(n int) []byte {
		return bundleVariant(t, func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "note.tf"), []byte(fmt.Sprintf("# %d\n", n)), 0o644)
		})
	}
	if err := submit("greedy", one); err != nil {
		t.Fatal(err)
	}
	if err := submit("greedy", other(1)); err != nil {
		t.Fatal(err)
	}
	if err := submit("greedy", other(2)); broker.ErrorCode(err) != broker.EBUSY || !strings.Contains(broker.ErrorMessage(err), "one agent may store in a day") {
		t.Errorf("a third bundle: %v", err)
	}
	if err := submit("other", other(3)); err != nil {
		t.Errorf("another agent was refused: %v", err)
	}
	// Speculative plans keep their bundles too: they count, and a plan
	// past the cap is refused as a proposal would be. (No runner plans
	// them here: the agent stops waiting, its bundles are kept.)
	plan := func(b []byte) error {
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := w.svc.Plan(short, "planner", "sandbox", b, nil)
		return err
	}
	for i := range 2 {
		if err := plan(other(10 + i)); broker.ErrorCode(err) == broker.EBUSY {
			t.Fatalf("plan %d: %v", i, err)
		}
	}
	if err := plan(other(12)); broker.ErrorCode(err) != broker.EBUSY {
		t.Errorf("a third planned bundle: %v", err)
	}
	if err := submit("planner", other(13)); broker.ErrorCode(err) != broker.EBUSY {
		t.Errorf("a proposal after two planned bundles: %v", err)
	}
}

// TestSlowAgentHoldsOneSlot: one agent's plans take one runner slot at a
// time, so its hung plans (a data source waiting on a silent server) can
// never hold all of them: with one of its jobs leased and never reported,
// the next lease goes to another agent's proposal, and its second job
// waits.
func TestSlowAgentHoldsOneSlot(t *testing.T) {
	w := newWorld(t, nil)
	w.stopRunner()
	ctx := context.Background()
	submit := func(agent string, replicas int) string {
		p, err := w.svc.Submit(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: agent, Bundle: bundle(t, "scale"),
			Vars: map[string]string{"replicas": fmt.Sprint(replicas)}})
		if err != nil {
			t.Fatal(err)
		}
		return "job-" + p.ID
	}
	slow1, slow2 := submit("slow-agent", 1), submit("slow-agent", 2)
	other := submit("agent-1", 3)
	first, err := w.svc.LeaseJob(ctx, "r1", time.Second)
	if err != nil || first.Job != slow1 {
		t.Fatalf("first lease: %+v, %v; want %s", first, err, slow1)
	}
	second, err := w.svc.LeaseJob(ctx, "r2", time.Second)
	if err != nil || second.Job != other {
		t.Fatalf("second lease: %+v, %v; want %s, not %s", second, err, other, slow2)
	}
	if third, err := w.svc.LeaseJob(ctx, "r3", 200*time.Millisecond); broker.ErrorCode(err) != broker.ENOTFOUND {
		t.Errorf("a third lease while slow-agent holds one: %+v, %v", third, err)
	}
}

// TestStaleReplicaRefuses: a broker left running with one configuration,
// while another sharing its store loaded another, certifies and executes
// nothing, and says to restart it; once it loads the current
// configuration it works again.
func TestStaleReplicaRefuses(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	mine, theirs := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	if _, err := w.svc.LoadPolicy(ctx, mine); err != nil {
		t.Fatal(err)
	}
	cert := w.certified("3")
	// Another replica starts with another seb.hcl.
	if _, err := w.store.SetPolicyEpoch(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	p := w.propose("4")
	_, _, err := w.svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: "alice", Decision: broker.Approve})
	if broker.ErrorCode(err) != broker.ECONFLICT || !strings.Contains(broker.ErrorMessage(err), "restart this one with the current seb.hcl") {
		t.Errorf("a stale replica certified: %v", err)
	}
	if got, err := w.store.Proposal(ctx, p.ID); err != nil || got.State != broker.ProposalPending {
		t.Errorf("the refused approval changed the proposal: %+v %v", got, err)
	}
	if _, err := w.execute(cert); err == nil || !strings.Contains(broker.ErrorMessage(err), "restart this one") {
		t.Errorf("a stale replica executed: %v", err)
	}
	// Restarted with the current configuration, it works again.
	if _, err := w.svc.LoadPolicy(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	if _, cert, err := w.svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: "alice", Decision: broker.Approve}); err != nil || cert == nil {
		t.Errorf("after the restart: %v, %v", cert, err)
	}
}

// renewingStore renews a job's lease, once armed, right after the sweep
// lists the stale jobs: a heartbeat that another replica, whose clock
// runs a little behind, accepted meanwhile.
type renewingStore struct {
	broker.Store
	armed atomic.Bool
	renew func()
}

func (s *renewingStore) StaleJobs(ctx context.Context, now time.Time) ([]*broker.Job, error) {
	jobs, err := s.Store.StaleJobs(ctx, now)
	if s.armed.CompareAndSwap(true, false) {
		s.renew()
	}
	return jobs, err
}

// TestSweepSparesRenewedLease: a lease renewed between the sweep's list
// and its transaction is not ended: the execution goes on.
func TestSweepSparesRenewedLease(t *testing.T) {
	var race *renewingStore
	w := newWorldWith(t, worldOptions{wrapStore: func(s broker.Store) broker.Store { race = &renewingStore{Store: s}; return race }})
	ctx := context.Background()
	cert := w.certified("3")
	w.stopRunner()
	e, _, err := w.svc.Begin(ctx, broker.ExecuteRequest{CertificateID: cert.ID, Actor: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := w.svc.LeaseJob(ctx, "mine/1", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	expired := w.clock.Now()
	w.clock.Advance(time.Minute) // the lease ran out, by this broker's clock
	race.renew = func() {
		if _, err := w.store.RenewJob(ctx, lease.Job, lease.Token, "mine", w.clock.Now().Add(time.Minute), expired); err != nil {
			t.Error(err)
		}
	}
	race.armed.Store(true)
	if err := w.svc.SweepJobs(ctx); err != nil {
		t.Fatal(err)
	}
	if j, err := w.store.Job(ctx, lease.Job); err != nil || j.State != broker.JobLeased {
		t.Errorf("the renewed job was swept: %+v, %v", j, err)
	}
	if got, err := w.store.Execution(ctx, e.ID); err != nil || got.State.Final() {
		t.Errorf("the execution ended: %+v, %v", got, err)
	}
}

// TestStoredBundleCheckedAgain: a bundle the store already holds (stored
// by an earlier seb, whose checks were laxer) is checked again when it is
// proposed: a file function reading outside the bundle is refused.
func TestStoredBundleCheckedAgain(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	hostile := bundleVariant(t, func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "leak.tf"), []byte("output \"leak\" {\n  value = file(\"/etc/passwd\")\n}\n"), 0o644)
	})
	if err := w.store.PutBundle(ctx, drift.BundleDigest(hostile), hostile); err != nil {
		t.Fatal(err)
	}
	_, err := w.svc.Submit(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Bundle: hostile})
	if broker.ErrorCode(err) != broker.EINVALID || !strings.Contains(broker.ErrorMessage(err), "file") {
		t.Errorf("a stored bundle reading /etc/passwd was admitted: %v", err)
	}
}

// TestCheckVarsRefusesHostileNames: a variable's name becomes a
// -var NAME=VALUE argument of Terraform and a name a policy reads: one that
// could be read as another variable, a flag or another line is refused.
func TestCheckVarsRefusesHostileNames(t *testing.T) {
	for _, name := range []string{"replicas=99", "-chdir", "--var", "", "x\n", "x\x00", "x y", "1st", "ré", strings.Repeat("a", 129), "a.b", "a/b"} {
		if err := broker.CheckVars(map[string]string{name: "3"}); broker.ErrorCode(err) != broker.EINVALID {
			t.Errorf("variable name %q: %v, want EINVALID", name, err)
		}
	}
	for _, name := range []string{"replicas", "_x", "image-tag", "A1", strings.Repeat("a", 128)} {
		if err := broker.CheckVars(map[string]string{name: "3"}); err != nil {
			t.Errorf("variable name %q: %v", name, err)
		}
	}
}

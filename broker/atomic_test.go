package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/runner"
)

// errInjected is the failure a fault makes a store call return.
var errInjected = errors.New("injected store failure")

type faultKey struct{}

// A fault fails the nth store call made with a context that carries it
// (withFault); calls made with other contexts — a runner's heartbeats, a
// page — are not counted.
type fault struct {
	mu    sync.Mutex
	n     int
	calls int
	at    string // the call that failed, once one did
}

func withFault(ctx context.Context, n int) (context.Context, *fault) {
	f := &fault{n: n}
	return context.WithValue(ctx, faultKey{}, f), f
}

// hit counts a store call and fails it if it is the fault's nth.
func hit(ctx context.Context, call string) error {
	f, _ := ctx.Value(faultKey{}).(*fault)
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls != f.n {
		return nil
	}
	f.at = call
	return fmt.Errorf("%s: %w", call, errInjected)
}

func (f *fault) fired() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at, f.at != ""
}

// faultStore is a Store whose every call, and the commit of every
// transaction, can be made to fail.
type faultStore struct{ broker.Store }

func (s *faultStore) Tx(ctx context.Context, fn func(broker.Store) error) error {
	if err := hit(ctx, "Tx"); err != nil {
		return err
	}
	return s.Store.Tx(ctx, func(tx broker.Store) error {
		if err := fn(&faultStore{tx}); err != nil {
			return err
		}
		return hit(ctx, "Tx commit")
	})
}

// atomically runs a use case once for every store call it makes, failing
// that call, and then once more with no failure, whose error it returns.
// After each failure the use case must have returned an error and left
// the store exactly as it was; after the run with no failure, every
// decision in the store must have its audit entry and every audit entry
// its decision.
func (w *world) atomically(ctx context.Context, name string, call func(ctx context.Context) error) error {
	for n := 1; ; n++ {
		before := snapshot(w.t, w.store)
		fctx, f := withFault(ctx, n)
		err := call(fctx)
		at, fired := f.fired()
		if !fired {
			w.t.Logf("%s: failed each of its %d store calls in turn", name, n-1)
			w.consistent(name)
			return err
		}
		if err == nil {
			w.t.Errorf("%s: the store failed at %s (call %d), and it returned no error", name, at, n)
			return nil
		}
		if after := snapshot(w.t, w.store); after != before {
			w.t.Errorf("%s: the store failed at %s (call %d); it returned %v, but the store changed:\n%s",
				name, at, n, err, lineDiff(before, after))
			return err
		}
	}
}

// snapshot renders what the store holds that a use case may change.
func snapshot(t *testing.T, st broker.Store) string {
	ctx := context.Background()
	var b strings.Builder
	entries, err := st.AuditEntries(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fmt.Fprintf(&b, "audit %d %s %s %s\n", e.Seq, e.Actor, e.Action, e.Subject)
	}
	proposals, err := st.ListProposals(ctx, broker.ProposalFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range proposals {
		fmt.Fprintf(&b, "proposal %s %s %q\n", p.ID, p.State, p.Reason)
		reviews, err := st.Reviews(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reviews {
			fmt.Fprintf(&b, "  review %s %s\n", r.Reviewer, r.Decision)
		}
		if c, err := st.ProposalCertificate(ctx, p.ID); err == nil {
			fmt.Fprintf(&b, "  certificate %s revoked=%v\n", c.ID, c.RevokedAt != nil)
		}
		b.WriteString(jobLine(st, "job-"+p.ID))
	}
	executions, err := st.ListExecutions(ctx, broker.ExecutionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range executions {
		fmt.Fprintf(&b, "execution %s %s %q logs=%s,%s\n", e.ID, e.State, e.Reason, e.PlanLogID, e.ApplyLogID)
		b.WriteString(jobLine(st, "job-"+e.ID))
	}
	hold, err := st.WorkspaceHold(ctx, "sandbox")
	if err == nil {
		fmt.Fprintf(&b, "hold %s %s\n", hold.Execution, hold.Reason)
	}
	policy, _ := st.PolicyEpoch(ctx)
	revocation, _ := st.RevocationEpoch(ctx, "sandbox")
	fmt.Fprintf(&b, "epochs policy=%d revocation=%d\n", policy, revocation)
	tokens, err := st.ListAPITokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		fmt.Fprintf(&b, "token %s %s\n", tok.Name, tok.Role)
	}
	return b.String()
}

func jobLine(st broker.Store, id string) string {
	j, err := st.Job(context.Background(), id)
	if err != nil {
		return "  no job\n"
	}
	return fmt.Sprintf("  job %s %s phase=%s %q\n", j.ID, j.State, j.Phase, j.Error)
}

func lineDiff(before, after string) string {
	var b strings.Builder
	was, is := strings.Split(before, "\n"), strings.Split(after, "\n")
	for _, l := range was {
		if !slices.Contains(is, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range is {
		if !slices.Contains(was, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// consistent checks that the store's decisions and its audit log say the
// same thing: each recorded decision has exactly its entry, and the chain
// verifies. It reads in one transaction: the runner's reports and the
// test's own calls write concurrently, and reads that straddled a commit
// would see a decision without its entry that the store never held.
func (w *world) consistent(when string) {
	w.t.Helper()
	if err := w.store.Tx(context.Background(), func(tx broker.Store) error {
		w.consistentIn(tx, when)
		return nil
	}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) consistentIn(st broker.Store, when string) {
	t, ctx := w.t, context.Background()
	t.Helper()
	auditActions(t, st, w.signer.PublicKeyPEM()) // the chain verifies
	entries, err := st.AuditEntries(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range entries {
		count[e.Action+" "+e.Subject]++
	}
	want := func(n int, key, why string) {
		t.Helper()
		if count[key] != n {
			t.Errorf("%s: %d audit entries %q, want %d: %s", when, count[key], key, n, why)
		}
	}
	proposals, err := st.ListProposals(ctx, broker.ProposalFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range proposals {
		want(1, "proposal.received "+p.ID, "every proposal was received")
		verdicts := count["proposal.verified "+p.ID] + count["proposal.refused "+p.ID] + count["proposal.diverged "+p.ID]
		if (p.State == broker.ProposalVerifying) != (verdicts == 0) || verdicts > 1 {
			t.Errorf("%s: proposal %s is %s with %d verification entries", when, p.ID, p.State, verdicts)
		}
		reviews, err := st.Reviews(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		approvals, rejections := 0, 0
		for _, r := range reviews {
			if r.Decision == broker.Approve {
				approvals++
			} else {
				rejections++
			}
		}
		want(approvals, "proposal.approved "+p.ID, "one per stored approval")
		want(rejections, "proposal.rejected "+p.ID, "one per stored rejection")
		if (rejections > 0) != (p.State == broker.ProposalRejected) {
			t.Errorf("%s: proposal %s is %s with %d rejections", when, p.ID, p.State, rejections)
		}
		cert, err := st.ProposalCertificate(ctx, p.ID)
		if (err == nil) != (p.State == broker.ProposalCertified) {
			t.Errorf("%s: proposal %s is %s; its certificate: %v", when, p.ID, p.State, err)
		}
		if err != nil {
			continue
		}
		want(1, "certificate.issued "+cert.ID, "every certificate was issued")
		revoked := 0
		if cert.RevokedAt != nil {
			revoked = 1
		}
		want(revoked, "certificate.revoked "+cert.ID, "revoked once, if revoked")
		executions, err := st.ListExecutions(ctx, broker.ExecutionFilter{CertificateID: cert.ID})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range executions {
			want(1, "execution.started "+e.ID, "every execution started")
			for _, s := range []broker.ExecutionState{broker.ExecutionSucceeded, broker.ExecutionRefused, broker.ExecutionFailed, broker.ExecutionInterrupted} {
				n := 0
				if e.State == s {
					n = 1
				}
				want(n, "execution."+string(s)+" "+e.ID, "one entry for the final state it is in")
			}
			switch e.State {
			case broker.ExecutionApplying, broker.ExecutionSucceeded:
				want(1, "credential.apply_issued "+e.ID, "it was allowed to apply")
			case broker.ExecutionRefused:
				want(0, "credential.apply_issued "+e.ID, "it was refused")
			}
		}
	}
	revocation, err := st.RevocationEpoch(ctx, "sandbox")
	if err != nil {
		t.Fatal(err)
	}
	want(int(revocation), "workspace.revoked_all sandbox", "one per revocation epoch")
	held := 0
	if _, err := st.WorkspaceHold(ctx, "sandbox"); err == nil {
		held = 1
	}
	if n := count["workspace.held sandbox"] - count["workspace.reconciled sandbox"]; n != held {
		t.Errorf("%s: %d holds audited and not reconciled, but the workspace has %d", when, n, held)
	}
}

// reportGate passes a runner's reports to the broker through
// world.atomically: every store call a report makes is failed once, and
// the runner sees only the report that finally went through.
type reportGate struct {
	runner.Broker
	w *world
}

func (g *reportGate) ReportPlan(ctx context.Context, id string, token int64, r broker.PlanReport) (*broker.PlanVerdict, error) {
	var v *broker.PlanVerdict
	err := g.w.atomically(ctx, "the plan report of "+id, func(ctx context.Context) error {
		var err error
		v, err = g.Broker.ReportPlan(ctx, id, token, r)
		return err
	})
	return v, err
}

func (g *reportGate) ReportApply(ctx context.Context, id string, token int64, r broker.ApplyReport) error {
	return g.w.atomically(ctx, "the apply report of "+id, func(ctx context.Context) error {
		return g.Broker.ReportApply(ctx, id, token, r)
	})
}

// TestDecisionsAtomic fails, in turn, every store call of every use case
// that decides something — admission, seb's verification and
// certification, reviews, the start, acceptance and end of an execution,
// a refused execution, revocation, cancellation, reconciliation — and
// checks that a failure leaves nothing behind, and that a decision and
// its audit entry are always stored together.
func TestDecisionsAtomic(t *testing.T) {
	ctx := context.Background()
	gate := &reportGate{}
	w := newWorldWith(t, worldOptions{
		configure:  func(ws *broker.Workspace) { ws.ApprovalsRequired = 0 },
		wrapStore:  func(s broker.Store) broker.Store { return &faultStore{s} },
		wrapBroker: func(b runner.Broker) runner.Broker { gate.Broker = b; return gate },
	})
	gate.w = w
	submit := func(replicas string) *broker.Proposal {
		t.Helper()
		var p *broker.Proposal
		err := w.atomically(ctx, "Submit", func(ctx context.Context) error {
			var err error
			p, err = w.svc.Submit(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Rationale: "scale web",
				Bundle: bundle(t, "scale"), Vars: map[string]string{"replicas": replicas}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Admission, then seb's plan (through the gate): certified at once.
	p := submit("3")
	p, cert, err := w.svc.Verify(ctx, p.ID)
	if err != nil || cert == nil {
		t.Fatalf("verify: %+v, %v, %v", p, cert, err)
	}

	// The execution: begun, accepted and applied (through the gate).
	var e *broker.Execution
	err = w.atomically(ctx, "Begin", func(ctx context.Context) error {
		var err error
		e, _, err = w.svc.Begin(ctx, broker.ExecuteRequest{Envelope: cert.Envelope, Actor: "ci"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if e, err = w.svc.WaitExecution(ctx, e.ID); err != nil || e.State != broker.ExecutionSucceeded {
		t.Fatalf("execution %+v, %v", e, err)
	}

	// A refused execution is audited, or not refused.
	err = w.atomically(ctx, "Begin with a used certificate", func(ctx context.Context) error {
		_, _, err := w.svc.Begin(ctx, broker.ExecuteRequest{Envelope: cert.Envelope, Actor: "ci"})
		return err
	})
	if broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("a used certificate: %v", err)
	}

	// An execution rejected for drift.
	p = submit("4")
	if _, cert, err = w.svc.Verify(ctx, p.ID); err != nil || cert == nil {
		t.Fatalf("verify: %v, %v", cert, err)
	}
	w.sb.Scale(w.sb.Service("sandbox", "web").ID, 7)
	if _, err := w.svc.Execute(ctx, broker.ExecuteRequest{Envelope: cert.Envelope, Actor: "ci"}); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("an execution against drift: %v", err)
	}

	// Revocation, of one certificate and of all.
	p = submit("5")
	if _, cert, err = w.svc.Verify(ctx, p.ID); err != nil || cert == nil {
		t.Fatalf("verify: %v, %v", cert, err)
	}
	if err := w.atomically(ctx, "Revoke", func(ctx context.Context) error { return w.svc.Revoke(ctx, cert.ID, "admin") }); err != nil {
		t.Error(err)
	}
	if err := w.atomically(ctx, "RevokeAll", func(ctx context.Context) error {
		_, err := w.svc.RevokeAll(ctx, "sandbox", "admin")
		return err
	}); err != nil {
		t.Error(err)
	}
	if err := w.atomically(ctx, "LoadPolicy", func(ctx context.Context) error {
		_, err := w.svc.LoadPolicy(ctx, "sha256:another-configuration")
		return err
	}); err != nil {
		t.Error(err)
	}

	// A hold, reconciled.
	err = w.store.Tx(ctx, func(tx broker.Store) error {
		if err := tx.HoldWorkspace(ctx, broker.Hold{Workspace: "sandbox", Execution: e.ID, Reason: "test", Since: time.Now()}); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, func(last *broker.AuditEntry) (*broker.AuditEntry, error) {
			return w.signer.SealAudit(last, broker.AuditEntry{Time: time.Now(), Actor: "seb", Action: "workspace.held", Subject: "sandbox", Details: json.RawMessage(`{}`)})
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.atomically(ctx, "Reconcile", func(ctx context.Context) error { return w.svc.Reconcile(ctx, "sandbox", "admin", "checked") }); err != nil {
		t.Error(err)
	}

	// API tokens, made and revoked.
	if err := w.atomically(ctx, "CreateAPIToken", func(ctx context.Context) error {
		_, _, err := w.svc.CreateAPIToken(ctx, "bob", broker.RoleReviewer, broker.TokenScope{Workspaces: []string{"sandbox"}}, "admin")
		return err
	}); err != nil {
		t.Error(err)
	}
	if err := w.atomically(ctx, "RevokeAPIToken", func(ctx context.Context) error { return w.svc.RevokeAPIToken(ctx, "bob", "admin") }); err != nil {
		t.Error(err)
	}

	// A cancelled verification refuses its proposal in the same
	// transaction.
	w.stopRunner()
	p = submit("6")
	if err := w.atomically(ctx, "CancelJob", func(ctx context.Context) error { return w.svc.CancelJob(ctx, "job-"+p.ID, "admin") }); err != nil {
		t.Error(err)
	}
	if p, err = w.store.Proposal(ctx, p.ID); err != nil || p.State != broker.ProposalRefused {
		t.Errorf("after the cancel: %+v, %v", p, err)
	}
}

// TestReviewsAtomic does the same for reviews: a rejection, an approval
// that certifies, and an approval that loses the race to another.
func TestReviewsAtomic(t *testing.T) {
	ctx := context.Background()
	w := newWorldWith(t, worldOptions{
		configure: func(ws *broker.Workspace) { ws.ApprovalsRequired = 1 },
		wrapStore: func(s broker.Store) broker.Store { return &faultStore{s} },
	})
	review := func(p *broker.Proposal, reviewer string, d broker.Decision) (*broker.Certificate, error) {
		var cert *broker.Certificate
		err := w.atomically(ctx, "Review", func(ctx context.Context) error {
			var err error
			_, cert, err = w.svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: reviewer, Decision: d, Comment: "checked"})
			return err
		})
		return cert, err
	}
	if _, err := review(w.propose("3"), "alice", broker.Reject); err != nil {
		t.Error(err)
	}
	p := w.propose("4")
	if cert, err := review(p, "alice", broker.Approve); err != nil || cert == nil {
		t.Errorf("approval: %v, %v", cert, err)
	}
	// Approving a certified proposal records nothing.
	if _, err := review(p, "bob", broker.Approve); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("a late approval: %v", err)
	}
	if reviews, _ := w.store.Reviews(ctx, p.ID); len(reviews) != 1 {
		t.Errorf("reviews %+v: the late approval was stored", reviews)
	}

	// Two reviewers at once: one certifies, the other stores nothing.
	p = w.propose("5")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, reviewer := range []string{"alice", "bob"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = w.svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: reviewer, Decision: broker.Approve})
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Errorf("two approvals at once: %v, %v; want exactly one to succeed", errs[0], errs[1])
	}
	if reviews, _ := w.store.Reviews(ctx, p.ID); len(reviews) != 1 {
		t.Errorf("reviews %+v: the losing approval was stored", reviews)
	}
	w.consistent("after two approvals at once")
}

// Every other call of the Store can fail too.

func (s *faultStore) ListAPITokens(ctx context.Context) ([]*broker.APIToken, error) {
	if err := hit(ctx, "ListAPITokens"); err != nil {
		return nil, err
	}
	return s.Store.ListAPITokens(ctx)
}

func (s *faultStore) ProposerBundleBytes(ctx context.Context, proposer string, since time.Time) (int64, error) {
	if err := hit(ctx, "ProposerBundleBytes"); err != nil {
		return 0, err
	}
	return s.Store.ProposerBundleBytes(ctx, proposer, since)
}

func (s *faultStore) PutBundle(ctx context.Context, digest string, data []byte) error {
	if err := hit(ctx, "PutBundle"); err != nil {
		return err
	}
	return s.Store.PutBundle(ctx, digest, data)
}

func (s *faultStore) Bundle(ctx context.Context, digest string) ([]byte, error) {
	if err := hit(ctx, "Bundle"); err != nil {
		return nil, err
	}
	return s.Store.Bundle(ctx, digest)
}

func (s *faultStore) CreateProposal(ctx context.Context, p *broker.Proposal) error {
	if err := hit(ctx, "CreateProposal"); err != nil {
		return err
	}
	return s.Store.CreateProposal(ctx, p)
}

func (s *faultStore) Proposal(ctx context.Context, id string) (*broker.Proposal, error) {
	if err := hit(ctx, "Proposal"); err != nil {
		return nil, err
	}
	return s.Store.Proposal(ctx, id)
}

func (s *faultStore) ListProposals(ctx context.Context, f broker.ProposalFilter) ([]*broker.Proposal, error) {
	if err := hit(ctx, "ListProposals"); err != nil {
		return nil, err
	}
	return s.Store.ListProposals(ctx, f)
}

func (s *faultStore) CompleteVerification(ctx context.Context, p *broker.Proposal) error {
	if err := hit(ctx, "CompleteVerification"); err != nil {
		return err
	}
	return s.Store.CompleteVerification(ctx, p)
}

func (s *faultStore) SetProposalState(ctx context.Context, id string, from broker.ProposalState, to broker.ProposalState, at time.Time) error {
	if err := hit(ctx, "SetProposalState"); err != nil {
		return err
	}
	return s.Store.SetProposalState(ctx, id, from, to, at)
}

func (s *faultStore) AddReview(ctx context.Context, r broker.Review) error {
	if err := hit(ctx, "AddReview"); err != nil {
		return err
	}
	return s.Store.AddReview(ctx, r)
}

func (s *faultStore) Reviews(ctx context.Context, proposalID string) ([]broker.Review, error) {
	if err := hit(ctx, "Reviews"); err != nil {
		return nil, err
	}
	return s.Store.Reviews(ctx, proposalID)
}

func (s *faultStore) CreateCertificate(ctx context.Context, c *broker.Certificate) error {
	if err := hit(ctx, "CreateCertificate"); err != nil {
		return err
	}
	return s.Store.CreateCertificate(ctx, c)
}

func (s *faultStore) Certificate(ctx context.Context, id string) (*broker.Certificate, error) {
	if err := hit(ctx, "Certificate"); err != nil {
		return nil, err
	}
	return s.Store.Certificate(ctx, id)
}

func (s *faultStore) ProposalCertificate(ctx context.Context, proposalID string) (*broker.Certificate, error) {
	if err := hit(ctx, "ProposalCertificate"); err != nil {
		return nil, err
	}
	return s.Store.ProposalCertificate(ctx, proposalID)
}

func (s *faultStore) RevokeCertificate(ctx context.Context, id string, by string, at time.Time) error {
	if err := hit(ctx, "RevokeCertificate"); err != nil {
		return err
	}
	return s.Store.RevokeCertificate(ctx, id, by, at)
}

func (s *faultStore) ConsumeCertificate(ctx context.Context, certificateID string, e *broker.Execution) error {
	if err := hit(ctx, "ConsumeCertificate"); err != nil {
		return err
	}
	return s.Store.ConsumeCertificate(ctx, certificateID, e)
}

func (s *faultStore) UpdateExecution(ctx context.Context, e *broker.Execution, from broker.ExecutionState) error {
	if err := hit(ctx, "UpdateExecution"); err != nil {
		return err
	}
	return s.Store.UpdateExecution(ctx, e, from)
}

func (s *faultStore) Execution(ctx context.Context, id string) (*broker.Execution, error) {
	if err := hit(ctx, "Execution"); err != nil {
		return nil, err
	}
	return s.Store.Execution(ctx, id)
}

func (s *faultStore) ListExecutions(ctx context.Context, f broker.ExecutionFilter) ([]*broker.Execution, error) {
	if err := hit(ctx, "ListExecutions"); err != nil {
		return nil, err
	}
	return s.Store.ListExecutions(ctx, f)
}

func (s *faultStore) PolicyEpoch(ctx context.Context) (int64, error) {
	if err := hit(ctx, "PolicyEpoch"); err != nil {
		return 0, err
	}
	return s.Store.PolicyEpoch(ctx)
}

func (s *faultStore) SetPolicyEpoch(ctx context.Context, configDigest string) (int64, error) {
	if err := hit(ctx, "SetPolicyEpoch"); err != nil {
		return 0, err
	}
	return s.Store.SetPolicyEpoch(ctx, configDigest)
}

func (s *faultStore) RevocationEpoch(ctx context.Context, workspace string) (int64, error) {
	if err := hit(ctx, "RevocationEpoch"); err != nil {
		return 0, err
	}
	return s.Store.RevocationEpoch(ctx, workspace)
}

func (s *faultStore) BumpRevocationEpoch(ctx context.Context, workspace string) (int64, error) {
	if err := hit(ctx, "BumpRevocationEpoch"); err != nil {
		return 0, err
	}
	return s.Store.BumpRevocationEpoch(ctx, workspace)
}

func (s *faultStore) PutArtifact(ctx context.Context, a *broker.Artifact) error {
	if err := hit(ctx, "PutArtifact"); err != nil {
		return err
	}
	return s.Store.PutArtifact(ctx, a)
}

func (s *faultStore) Artifact(ctx context.Context, id string) (*broker.Artifact, error) {
	if err := hit(ctx, "Artifact"); err != nil {
		return nil, err
	}
	return s.Store.Artifact(ctx, id)
}

func (s *faultStore) AppendAudit(ctx context.Context, seal func(last *broker.AuditEntry) (*broker.AuditEntry, error)) (*broker.AuditEntry, error) {
	if err := hit(ctx, "AppendAudit"); err != nil {
		return nil, err
	}
	return s.Store.AppendAudit(ctx, seal)
}

func (s *faultStore) AuditEntries(ctx context.Context, after int64, limit int) ([]*broker.AuditEntry, error) {
	if err := hit(ctx, "AuditEntries"); err != nil {
		return nil, err
	}
	return s.Store.AuditEntries(ctx, after, limit)
}

func (s *faultStore) CreateAPIToken(ctx context.Context, t *broker.APIToken) error {
	if err := hit(ctx, "CreateAPIToken"); err != nil {
		return err
	}
	return s.Store.CreateAPIToken(ctx, t)
}

func (s *faultStore) APITokenByHash(ctx context.Context, hash string) (*broker.APIToken, error) {
	if err := hit(ctx, "APITokenByHash"); err != nil {
		return nil, err
	}
	return s.Store.APITokenByHash(ctx, hash)
}

func (s *faultStore) DeleteAPIToken(ctx context.Context, name string) error {
	if err := hit(ctx, "DeleteAPIToken"); err != nil {
		return err
	}
	return s.Store.DeleteAPIToken(ctx, name)
}

func (s *faultStore) EnqueueJob(ctx context.Context, j *broker.Job) error {
	if err := hit(ctx, "EnqueueJob"); err != nil {
		return err
	}
	return s.Store.EnqueueJob(ctx, j)
}

func (s *faultStore) LeaseJob(ctx context.Context, runner string, now time.Time, ttl time.Duration) (*broker.Job, error) {
	if err := hit(ctx, "LeaseJob"); err != nil {
		return nil, err
	}
	return s.Store.LeaseJob(ctx, runner, now, ttl)
}

func (s *faultStore) UpdateJob(ctx context.Context, j *broker.Job, now time.Time) error {
	if err := hit(ctx, "UpdateJob"); err != nil {
		return err
	}
	return s.Store.UpdateJob(ctx, j, now)
}

func (s *faultStore) RenewJob(ctx context.Context, id string, token int64, runner string, expires time.Time, now time.Time) (*broker.Job, error) {
	if err := hit(ctx, "RenewJob"); err != nil {
		return nil, err
	}
	return s.Store.RenewJob(ctx, id, token, runner, expires, now)
}

func (s *faultStore) EndJob(ctx context.Context, id string, state broker.JobState, reason string, at time.Time) error {
	if err := hit(ctx, "EndJob"); err != nil {
		return err
	}
	return s.Store.EndJob(ctx, id, state, reason, at)
}

func (s *faultStore) Job(ctx context.Context, id string) (*broker.Job, error) {
	if err := hit(ctx, "Job"); err != nil {
		return nil, err
	}
	return s.Store.Job(ctx, id)
}

func (s *faultStore) StaleJobs(ctx context.Context, now time.Time) ([]*broker.Job, error) {
	if err := hit(ctx, "StaleJobs"); err != nil {
		return nil, err
	}
	return s.Store.StaleJobs(ctx, now)
}

func (s *faultStore) AppendJobLog(ctx context.Context, id string, token int64, phase string, data []byte, now time.Time) error {
	if err := hit(ctx, "AppendJobLog"); err != nil {
		return err
	}
	return s.Store.AppendJobLog(ctx, id, token, phase, data, now)
}

func (s *faultStore) JobLog(ctx context.Context, id string, phase string) ([]byte, error) {
	if err := hit(ctx, "JobLog"); err != nil {
		return nil, err
	}
	return s.Store.JobLog(ctx, id, phase)
}

func (s *faultStore) HoldWorkspace(ctx context.Context, h broker.Hold) error {
	if err := hit(ctx, "HoldWorkspace"); err != nil {
		return err
	}
	return s.Store.HoldWorkspace(ctx, h)
}

func (s *faultStore) WorkspaceHold(ctx context.Context, workspace string) (*broker.Hold, error) {
	if err := hit(ctx, "WorkspaceHold"); err != nil {
		return nil, err
	}
	return s.Store.WorkspaceHold(ctx, workspace)
}

func (s *faultStore) ReleaseWorkspace(ctx context.Context, workspace string) error {
	if err := hit(ctx, "ReleaseWorkspace"); err != nil {
		return err
	}
	return s.Store.ReleaseWorkspace(ctx, workspace)
}

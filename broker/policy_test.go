package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/policy"
)

// policyWorld is a world whose workspace runs the example policies of
// fixtures/policy.
func policyWorld(t *testing.T, dir string) *world {
	t.Helper()
	set, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return newWorld(t, func(ws *broker.Workspace) { ws.Policy = set })
}

// proposeBundle proposes a bundle with variables as agent-1.
func (w *world) proposeBundle(bundle []byte, vars map[string]string) (*broker.Proposal, *broker.Certificate, error) {
	w.t.Helper()
	return w.svc.Propose(context.Background(), broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Rationale: "policy", Bundle: bundle, Vars: vars})
}

func (w *world) review(p *broker.Proposal, reviewer string, groups ...string) (*broker.Certificate, error) {
	w.t.Helper()
	_, cert, err := w.svc.Review(context.Background(), broker.ReviewRequest{ProposalID: p.ID, Reviewer: reviewer, Decision: broker.Approve, Groups: groups})
	return cert, err
}

// TestPolicyAutoCertifies: scaling within bounds is certified without a
// human, by the policy, and the certificate names the policy and its
// decision; beyond bounds a reviewer must approve.
func TestPolicyAutoCertifies(t *testing.T) {
	w := policyWorld(t, "../fixtures/policy")
	first := w.propose("3") // a create: a human approves
	if first.State != broker.ProposalPending || first.Policy == nil || first.Policy.AutoCertify {
		t.Fatalf("creating the service: %+v", first)
	}
	if _, err := w.execute(w.approve(first, "alice")); err != nil {
		t.Fatal(err)
	}
	p, cert, err := w.proposeBundle(bundle(t, "scale"), map[string]string{"replicas": "5"})
	if err != nil || cert == nil || p.State != broker.ProposalCertified {
		t.Fatalf("scaling 3 -> 5: %+v, %v, %v", p, cert, err)
	}
	if cert.Policy == nil || !cert.Policy.AutoCertify || cert.Policy.PolicyDigest != w.ws.Policy.Digest || len(cert.Approvals) != 0 {
		t.Errorf("the certificate does not name the policy's decision: %+v", cert.Policy)
	}
	verified, err := broker.VerifyCertificate(cert.Envelope, w.signer.PublicKey())
	if err != nil || verified.Policy == nil || verified.Policy.PolicyDigest != w.ws.Policy.Digest {
		t.Errorf("the signed payload lacks the policy: %+v, %v", verified, err)
	}
	if e, err := w.execute(cert); err != nil || e.State != broker.ExecutionSucceeded {
		t.Fatalf("executing the auto-certified diff: %+v, %v", e, err)
	}
	p, cert, err = w.proposeBundle(bundle(t, "scale"), map[string]string{"replicas": "11"})
	if err != nil || cert != nil || p.State != broker.ProposalPending {
		t.Errorf("scaling 5 -> 11: %+v, %v, %v", p, cert, err)
	}
}

// TestPolicyDenies: an ingress rule open to 0.0.0.0/0 is refused at
// verification, with the policy's message; the egress one is not.
func TestPolicyDenies(t *testing.T) {
	w := policyWorld(t, "../fixtures/policy")
	open := bundleVariant(t, func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "main.tf"), []byte(`resource "sandbox_firewall_rule" "ssh" {
  direction = "ingress"
  cidr      = "0.0.0.0/0"
  from_port = 22
  to_port   = 22
}
`), 0o644)
	})
	p, cert, err := w.proposeBundle(open, nil)
	if broker.ErrorCode(err) != broker.EINVALID || cert != nil || p.State != broker.ProposalRefused ||
		!strings.Contains(p.Reason, "denied by the policy of workspace sandbox: sandbox_firewall_rule.ssh opens ingress to 0.0.0.0/0 (ports 22-22)") {
		t.Fatalf("an open ingress rule: %+v, %v", p, err)
	}
	if p.Policy == nil || len(p.Policy.Deny) != 1 {
		t.Errorf("the refusal does not keep the decision: %+v", p.Policy)
	}
	p, _, err = w.proposeBundle(bundle(t, "firewall"), nil)
	if err != nil || p.State != broker.ProposalPending || len(p.Policy.Deny) != 0 {
		t.Errorf("the firewall fixture (egress to 0.0.0.0/0): %+v, %v", p, err)
	}
}

// TestPolicyGroups: deleting a bucket needs two approvals from security:
// an approval from outside the group and one from inside certify nothing,
// the second from security does; the proposer never approves.
func TestPolicyGroups(t *testing.T) {
	w := policyWorld(t, "../fixtures/policy")
	p, _, err := w.proposeBundle(bundle(t, "bucket"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.execute(w.approve(p, "alice")); err != nil {
		t.Fatal(err)
	}
	empty := bundleVariant(t, func(dir string) error { return os.Remove(filepath.Join(dir, "main.tf")) })
	p, _, err = w.proposeBundle(empty, nil)
	if err != nil || p.State != broker.ProposalPending {
		t.Fatalf("deleting the bucket: %+v, %v", p, err)
	}
	if a := p.Policy.Approvals; a == nil || a.Count != 2 || a.Groups[0] != "security" || len(p.Policy.Warn) != 1 {
		t.Errorf("decision %+v", p.Policy)
	}
	if _, err := w.review(p, "agent-1", "security"); broker.ErrorCode(err) != broker.EFORBIDDEN {
		t.Errorf("the proposer approved: %v", err)
	}
	for _, r := range []struct {
		reviewer string
		groups   []string
	}{{"alice", nil}, {"carol", []string{"security"}}} {
		if cert, err := w.review(p, r.reviewer, r.groups...); err != nil || cert != nil {
			t.Fatalf("%s's approval: %v, %v", r.reviewer, cert, err)
		}
	}
	cert, err := w.review(p, "dave", "sre", "security")
	if err != nil || cert == nil || len(cert.Approvals) != 3 || cert.Policy.Approvals.Count != 2 {
		t.Fatalf("the second approval from security: %+v, %v", cert, err)
	}
	reviews, _ := w.store.Reviews(context.Background(), p.ID)
	if len(reviews) != 3 || !slices.Equal(reviews[2].Groups, []string{"sre", "security"}) || reviews[0].Groups != nil {
		t.Errorf("reviews %+v", reviews)
	}
}

// TestPolicyChangeRefusesCertificates: the policy's digest is part of
// the configuration's; a certificate issued under one policy is refused at
// execution once seb runs another.
func TestPolicyChangeRefusesCertificates(t *testing.T) {
	w := policyWorld(t, "../fixtures/policy")
	ctx := context.Background()
	// seb.hcl, with the policy as it is, then with one file added.
	dir := t.TempDir()
	conf := filepath.Join(dir, "seb.hcl")
	os.WriteFile(conf, []byte("workspace \"sandbox\" {\n  policy = \"policy\"\n  credentials {\n    audience = \"a\"\n    token_file_env = [\"T\"]\n  }\n}\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "policy"), 0o755)
	for _, f := range w.ws.Policy.Files {
		data, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(dir, "policy", filepath.Base(f)), data, 0o644)
	}
	before, err := broker.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "policy", "extra.rego"), []byte("package seb\n\nwarn contains \"changed\" if false\n"), 0o644)
	after, err := broker.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if before.Digest == after.Digest {
		t.Fatal("changing the policy's files did not change the configuration's digest")
	}
	if _, err := w.svc.LoadPolicy(ctx, before.Digest); err != nil {
		t.Fatal(err)
	}
	cert := w.approve(w.propose("3"), "alice")
	// seb restarts with the changed policy.
	if _, err := w.svc.LoadPolicy(ctx, after.Digest); err != nil {
		t.Fatal(err)
	}
	if e, err := w.execute(cert); err == nil || !strings.Contains(broker.ErrorMessage(err), "is from policy epoch") {
		t.Errorf("a certificate from the old policy executed: %+v, %v", e, err)
	}
}

// TestBadPolicyNeverCertifies: a policy that cannot decide refuses the
// proposal and certifies nothing.
func TestBadPolicyNeverCertifies(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package seb\n\napprovals := \"two\"\n\nauto_certify := true\n"), 0o644)
	w := policyWorld(t, dir)
	p, cert, err := w.proposeBundle(bundle(t, "scale"), map[string]string{"replicas": "3"})
	if broker.ErrorCode(err) != broker.EINVALID || cert != nil || p.State != broker.ProposalRefused ||
		!strings.Contains(p.Reason, "could not decide: approvals count is the string \"two\"") {
		t.Errorf("a policy that cannot decide: %+v, %v, %v", p, cert, err)
	}
}

// TestAutoCertifyYields: a policy that both certifies automatically and
// asks for approvals (two files of one policy, say) gets the approvals: of
// two rules, the stricter holds.
func TestAutoCertifyYields(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "auto.rego"), []byte("package seb\n\nauto_certify := true\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "strict.rego"), []byte("package seb\n\napprovals := {\"count\": 1, \"groups\": [\"security\"]}\n"), 0o644)
	w := policyWorld(t, dir)
	p, cert, err := w.proposeBundle(bundle(t, "scale"), map[string]string{"replicas": "3"})
	if err != nil || cert != nil || p.State != broker.ProposalPending {
		t.Fatalf("auto_certify beside approvals certified without a human: %+v, %v, %v", p, cert, err)
	}
	if cert, err := w.review(p, "alice"); err != nil || cert != nil {
		t.Fatalf("an approval from outside security: %v, %v", cert, err)
	}
	if cert, err := w.review(p, "carol", "security"); err != nil || cert == nil {
		t.Fatalf("the approval from security: %v, %v", cert, err)
	}
}

// racingReviews adds a review, once armed, right after the broker reads
// the reviews outside its transaction: another reviewer's approval landing
// while the policy decides.
type racingReviews struct {
	broker.Store
	armed  atomic.Bool
	inject func()
}

func (s *racingReviews) Reviews(ctx context.Context, id string) ([]broker.Review, error) {
	reviews, err := s.Store.Reviews(ctx, id)
	if s.armed.CompareAndSwap(true, false) {
		s.inject()
	}
	return reviews, err
}

// TestPolicyDecidesOnTheReviewsThatCount: the policy decides on an
// approval before the transaction; a review that lands meanwhile makes it
// decide again on every review, and its denial holds.
func TestPolicyDecidesOnTheReviewsThatCount(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte(`package seb

deny contains "carol's approval is not accepted here" if {
	some r in input.reviews
	r.reviewer == "carol"
}
`), 0o644)
	set, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var race *racingReviews
	w := newWorldWith(t, worldOptions{
		configure: func(ws *broker.Workspace) { ws.Policy = set },
		wrapStore: func(s broker.Store) broker.Store { race = &racingReviews{Store: s}; return race },
	})
	p := w.propose("3")
	race.inject = func() {
		err := w.store.AddReview(context.Background(), broker.Review{ProposalID: p.ID, Reviewer: "carol", Decision: broker.Approve, At: time.Now()})
		if err != nil {
			t.Error(err)
		}
	}
	race.armed.Store(true)
	cert, err := w.review(p, "alice")
	if cert != nil || broker.ErrorCode(err) != broker.ECONFLICT || !strings.Contains(broker.ErrorMessage(err), "carol's approval is not accepted here") {
		t.Errorf("alice's approval, with carol's landing meanwhile: %v, %v", cert, err)
	}
	if got, _ := w.store.Proposal(context.Background(), p.ID); got.State != broker.ProposalPending {
		t.Errorf("proposal %s", got.State)
	}
}

// racingTokens remakes the proposer's token, once armed, right after the
// broker reads the tokens outside its transaction: an admin changing it
// while the policy decides.
type racingTokens struct {
	broker.Store
	armed  atomic.Bool
	remake func()
}

func (s *racingTokens) APITokenByName(ctx context.Context, name string) (*broker.APIToken, error) {
	token, err := s.Store.APITokenByName(ctx, name)
	if s.armed.CompareAndSwap(true, false) {
		s.remake()
	}
	return token, err
}

// TestPolicyDecidesOnTheProposerThatIs: a decision made on the proposer's
// token as it was does not stand once the token changed before the
// transaction: the policy decides again.
func TestPolicyDecidesOnTheProposerThatIs(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package seb\n\nauto_certify if \"trusted\" in input.proposer.groups\n"), 0o644)
	set, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var race *racingTokens
	w := newWorldWith(t, worldOptions{
		configure: func(ws *broker.Workspace) { ws.Policy = set },
		wrapStore: func(s broker.Store) broker.Store { race = &racingTokens{Store: s}; return race },
	})
	ctx := context.Background()
	_, trusted, _ := broker.NewAPIToken("agent-1", broker.RoleAgent, time.Now())
	trusted.Groups = []string{"trusted"}
	if err := w.store.CreateAPIToken(ctx, trusted); err != nil {
		t.Fatal(err)
	}
	race.remake = func() {
		if err := w.store.DeleteAPIToken(ctx, "agent-1"); err != nil {
			t.Error(err)
		}
		_, plain, _ := broker.NewAPIToken("agent-1", broker.RoleAgent, time.Now())
		if err := w.store.CreateAPIToken(ctx, plain); err != nil {
			t.Error(err)
		}
	}
	race.armed.Store(true)
	p, cert, err := w.proposeBundle(bundle(t, "scale"), map[string]string{"replicas": "3"})
	if err != nil || cert != nil || p.State != broker.ProposalPending || p.Policy == nil || p.Policy.AutoCertify {
		t.Errorf("certified on the proposer's old token: %+v, %v, %v", p, cert, err)
	}
}

// TestAutoCertifyProtected: auto_certify never covers a protected action
// (deleting a bucket) unless the workspace sets auto_certify_protected.
func TestAutoCertifyProtected(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package seb\n\nauto_certify := true\n"), 0o644)
	for _, allowed := range []bool{false, true} {
		set, err := policy.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		w := newWorld(t, func(ws *broker.Workspace) { ws.Policy, ws.AutoCertifyProtected = set, allowed })
		p, cert, err := w.proposeBundle(bundle(t, "bucket"), nil)
		if err != nil || cert == nil {
			t.Fatalf("creating the bucket (not protected): %+v, %v, %v", p, cert, err)
		}
		if _, err := w.execute(cert); err != nil {
			t.Fatal(err)
		}
		empty := bundleVariant(t, func(dir string) error { return os.Remove(filepath.Join(dir, "main.tf")) })
		p, cert, err = w.proposeBundle(empty, nil)
		if err != nil {
			t.Fatal(err)
		}
		if certified := cert != nil && p.State == broker.ProposalCertified; certified != allowed {
			t.Errorf("auto_certify_protected = %t: deleting the bucket certified without a human: %t (%s)", allowed, certified, p.State)
		}
	}
}

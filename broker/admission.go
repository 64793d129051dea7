package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

// Plan makes a speculative plan of a bundle against the workspace's live
// state with a plan-phase credential, for an agent with no Terraform of its
// own: a runner plans it, and Plan waits for it. Nothing but the bundle
// is kept; the plan is a preview, not a proposal. A refused bundle or a
// failing plan is EINVALID.
func (b *Service) Plan(ctx context.Context, agent, workspace string, bundle []byte, vars map[string]string) (*drift.PlanResult, error) {
	ws, err := b.Workspace(workspace)
	if err != nil {
		return nil, err
	}
	if err := CheckVars(vars); err != nil {
		return nil, err
	}
	if err := b.bundleRoom(ctx, agent, len(bundle)); err != nil {
		return nil, err
	}
	digest, err := b.checkBundle(ctx, bundle)
	if err != nil {
		return nil, err
	}
	if err := b.opts.Store.PutBundle(ctx, digest, bundle); err != nil {
		return nil, err
	}
	j := &Job{ID: newID("job-plan"), Kind: JobPlan, Workspace: ws.Name, Owner: agent, ConfigDigest: digest, Vars: vars, MaxAttempts: planAttempts}
	if err := b.enqueue(ctx, j); err != nil {
		return nil, err
	}
	done, err := b.waitJob(ctx, j.ID)
	if err != nil {
		// Nobody waits for it any more.
		b.opts.Store.EndJob(context.WithoutCancel(ctx), j.ID, JobCancelled, "the agent stopped waiting", b.now())
		return nil, err
	}
	switch {
	case done.State == JobDone && done.Error != "":
		return nil, Errorf(EINVALID, "seb's plan failed: %s", done.Error)
	case done.State != JobDone:
		return nil, fmt.Errorf("speculative plan %s %s: %s", j.ID, done.State, done.Error)
	}
	plan, err := planparse.Parse(bytes.NewReader(done.Result), planparse.Options{SensitiveKey: b.opts.SensitiveKey})
	if err != nil {
		return nil, Errorf(EINVALID, "seb's plan could not be read: %v", err)
	}
	if reason, err := RefusedByTerraformsReading(done.Result); err != nil || reason != "" {
		return nil, Errorf(EINVALID, "%s", reason)
	}
	return &drift.PlanResult{Plan: plan, JSON: done.Result, HasChanges: len(plan.Summary.Resources) > 0 || len(plan.Summary.Outputs) > 0}, nil
}

// bundleRoom refuses (EBUSY) a bundle that would take an agent past what
// one agent may store in a day, counting the bundles of its proposals and
// of its speculative plans: both are kept, and neither may fill the
// broker's store.
func (b *Service) bundleRoom(ctx context.Context, agent string, size int) error {
	stored, err := b.opts.Store.ProposerBundleBytes(ctx, agent, b.now().Add(-agentBundleWindow))
	if err != nil {
		return err
	}
	if stored+int64(size) > b.opts.MaxAgentBundleBytes {
		return Errorf(EBUSY, "%s stored %d MiB of bundles in the last 24 hours; this %d KiB bundle would pass the %d MiB one agent may store in a day",
			agent, stored>>20, size>>10, b.opts.MaxAgentBundleBytes>>20)
	}
	return nil
}

// checkBundle runs admission's checks on a bundle (unpacked, never run)
// and returns its digest. A refusal is EINVALID. A bundle the store
// already holds is checked again: it was checked by the seb that stored
// it, whose checks may have admitted what these refuse.
func (b *Service) checkBundle(ctx context.Context, bundle []byte) (string, error) {
	digest, err := drift.CheckBundle(bytes.NewReader(bundle), b.opts.BundleLimits)
	if drift.IsRefusal(err) {
		return "", Errorf(EINVALID, "%v", err)
	}
	if err != nil {
		return "", fmt.Errorf("check the configuration: %w", err)
	}
	return digest, nil
}

// WorkspaceState returns the workspace's current Terraform state, nil if
// it has none: served read-only, so that an agent can plan locally against
// it. It never leaves the broker writable.
func (b *Service) WorkspaceState(ctx context.Context, workspace string) ([]byte, error) {
	if _, err := b.Workspace(workspace); err != nil {
		return nil, err
	}
	return b.opts.Store.CurrentState(ctx, workspace)
}

// PlanCredential mints a plan-phase (read-only) credential of the
// workspace for an agent that runs Terraform itself, and audits it. Agents
// never receive apply-phase credentials.
func (b *Service) PlanCredential(ctx context.Context, workspace, who string) (Credential, error) {
	ws, err := b.Workspace(workspace)
	if err != nil {
		return Credential{}, err
	}
	if len(ws.Credentials.TokenFileEnv) == 0 {
		return Credential{}, Errorf(EINVALID, "workspace %s uses static secrets; there is no token to hand out", ws.Name)
	}
	cred, err := b.opts.Issuer.MintCredential(CredentialRequest{Workspace: ws.Name, Audience: ws.Credentials.Audience, Phase: PhasePlan, Lifetime: ws.Credentials.Lifetime})
	if err != nil {
		return Credential{}, err
	}
	return cred, b.audit(ctx, b.opts.Store, who, "credential.plan_issued", ws.Name, map[string]any{"expires_at": cred.ExpiresAt, "jti": cred.Claims.ID})
}

// A ProposalRequest is what an agent submits.
type ProposalRequest struct {
	Workspace string
	Proposer  string
	Rationale string
	// Bundle is the configuration: a gzip'd tar of a module tree.
	Bundle []byte
	Vars   map[string]string
	// AgentPlan is the plan JSON the agent made itself, if it did: a
	// claim seb checks against its own plan, never evidence.
	AgentPlan []byte
}

// agentBundleWindow is the period MaxAgentBundleBytes counts.
const agentBundleWindow = 24 * time.Hour

// varName is a Terraform variable name.
var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// CheckVars refuses variables Terraform could not be given exactly: a
// name that is not an identifier, a value with NUL or another control
// character (tab, newline and carriage return are fine), or text that is
// not UTF-8. The error names the variable.
func CheckVars(vars map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		if !varName.MatchString(name) || len(name) > 128 {
			return Errorf(EINVALID, "variable %q: a name is letters, digits, _ and -, starting with a letter or _", name)
		}
		if err := checkText(vars[name]); err != nil {
			return Errorf(EINVALID, "variable %s: %v", name, err)
		}
	}
	return nil
}

// checkText refuses text that is not UTF-8 or holds control characters
// other than tab, newline and carriage return.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return fmt.Errorf("control character %U at byte %d", r, i)
		}
	}
	return nil
}

// Propose admits a proposal and verifies it at once: Submit, then Verify.
func (b *Service) Propose(ctx context.Context, req ProposalRequest) (*Proposal, *Certificate, error) {
	p, err := b.Submit(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return b.Verify(ctx, p.ID)
}

// Submit admits a proposal — the fast, synchronous part: the workspace,
// the bundle (unpacked and checked, then stored by digest), the agent's
// plan when it sent one (parsed and kept as a signed artifact), the
// proposal in state verifying, and the audit entry. seb's own plan of it
// runs afterwards, in Verify.
func (b *Service) Submit(ctx context.Context, req ProposalRequest) (*Proposal, error) {
	ws, err := b.Workspace(req.Workspace)
	if err != nil {
		return nil, err
	}
	if req.Proposer == "" {
		return nil, Errorf(EINVALID, "a proposal needs a proposer")
	}
	if err := CheckVars(req.Vars); err != nil {
		return nil, err
	}
	if err := checkText(req.Rationale); err != nil {
		return nil, Errorf(EINVALID, "rationale: %v", err)
	}
	// One agent cannot fill the runners' queue for everyone else.
	waiting, err := b.opts.Store.ListProposals(ctx, ProposalFilter{State: ProposalVerifying, Proposer: req.Proposer, Limit: b.opts.MaxVerifying})
	if err != nil {
		return nil, err
	}
	if len(waiting) >= b.opts.MaxVerifying {
		return nil, Errorf(EBUSY, "%s already has %d proposals waiting for seb's plan, the most one agent may; propose again once they are verified", req.Proposer, len(waiting))
	}
	if err := b.bundleRoom(ctx, req.Proposer, len(req.Bundle)); err != nil {
		return nil, err
	}
	var agent *planparse.Plan
	if len(req.AgentPlan) > 0 {
		agent, err = planparse.Parse(bytes.NewReader(req.AgentPlan), planparse.Options{SensitiveKey: b.opts.SensitiveKey})
		if err != nil {
			return nil, Errorf(EINVALID, "the agent's plan: %v", err)
		}
	}
	configDigest, err := b.checkBundle(ctx, req.Bundle)
	if err != nil {
		return nil, err
	}
	now := b.now()
	p := &Proposal{
		ID:           newID("prop"),
		Workspace:    ws.Name,
		ConfigDigest: configDigest,
		Vars:         maps.Clone(req.Vars),
		Rationale:    req.Rationale,
		Proposer:     req.Proposer,
		State:        ProposalVerifying,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	var agentPlan *Artifact
	if agent != nil {
		p.AgentDigest = agent.Digest
		agentPlan = &Artifact{ID: agentPlanArtifact(p.ID), Kind: "agent-plan", Data: req.AgentPlan, CreatedAt: now}
		b.opts.Signer.SignArtifact(agentPlan)
	}
	details := map[string]any{"workspace": p.Workspace, "config_digest": p.ConfigDigest, "vars_digest": VarsDigest(p.Vars), "agent_digest": p.AgentDigest}
	entry, err := b.auditEntry(p.Proposer, "proposal.received", p.ID, details)
	if err != nil {
		return nil, err
	}
	// The proposal, its bundle, the agent's claim, the audit entry and the
	// verification's job are stored together, in one transaction.
	err = b.opts.Store.Tx(ctx, func(tx Store) error {
		if err := tx.PutBundle(ctx, p.ConfigDigest, req.Bundle); err != nil {
			return err
		}
		if agentPlan != nil {
			if err := tx.PutArtifact(ctx, agentPlan); err != nil {
				return err
			}
		}
		if err := tx.CreateProposal(ctx, p); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(ctx, func(last *AuditEntry) (*AuditEntry, error) { return b.opts.Signer.SealAudit(last, entry) }); err != nil {
			return err
		}
		return b.queueVerificationIn(ctx, tx, p)
	})
	if err != nil {
		return nil, err
	}
	b.queue.signal()
	return p, nil
}

func agentPlanArtifact(proposalID string) string { return "agent-plan-" + proposalID }

// Verify waits until seb's own plan of a proposal is done — a runner
// plans it against live state with a plan-phase credential — and returns
// the proposal and, when it was certified at once, its certificate. A
// refused proposal is EINVALID with the reason.
func (b *Service) Verify(ctx context.Context, id string) (*Proposal, *Certificate, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		p, err := b.opts.Store.Proposal(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		switch p.State {
		case ProposalVerifying:
		case ProposalRefused:
			return p, nil, Errorf(EINVALID, "%s", p.Reason)
		case ProposalCertified:
			// Certified with its certificate, in one transaction.
			cert, err := b.opts.Store.ProposalCertificate(ctx, p.ID)
			return p, cert, err
		default:
			return p, nil, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// completeVerify records seb's plan of a verifying proposal: that plan's
// summary is what reviewers see and what gets certified. The agent's plan,
// when it sent one, is compared with it: a mismatch marks the proposal
// diverged, and it can never be approved. A plan that changes nothing is
// refused. With no approvals required and no protected action in the
// diff, the proposal is certified at once. Everything it records goes
// through st, which must be a transaction (Store.Tx): the outcome, its
// audit entry and the certificate commit together.
//
// What reviewers cannot read is disclosed with it: hidden values, and
// whether the provider or the configuration hid them (schemas, from the
// runner), and values known only after apply, with the references of
// their expressions. A resource value the configuration hid is refused
// unless the workspace allows hidden values.
//
// decided is what the workspace's policy decided of seb's plan, before the
// transaction.
func (b *Service) completeVerify(ctx context.Context, st Store, p *Proposal, plan *planparse.Plan, planJSON []byte, schemas planparse.Schemas, decided decision) (*Proposal, *Certificate, error) {
	ws, err := b.Workspace(p.Workspace)
	if err != nil {
		return nil, nil, b.refuse(ctx, st, p, err.Error())
	}
	summary := plan.Summary
	if len(summary.Resources) == 0 && len(summary.Outputs) == 0 {
		return p, nil, b.refuse(ctx, st, p, "the proposal changes nothing: seb's plan of it against live state has no changes")
	}
	if p.Disclosure, err = planparse.Disclose(planJSON, summary, schemas); err != nil {
		return p, nil, b.refuse(ctx, st, p, "seb's plan could not be read: "+err.Error())
	}
	if hidden := p.Disclosure.HiddenByConfig(); len(hidden) > 0 && !ws.AllowHiddenValues {
		p.Summary, p.Digest, p.Drift = summary, plan.Digest, plan.Drift
		return p, nil, b.refuse(ctx, st, p, fmt.Sprintf("%s %s is hidden by the configuration (sensitive() or a sensitive variable), "+
			"and its provider does not consider it sensitive: reviewers would certify a value they cannot see "+
			"(%d such value(s); workspace %s does not set allow_hidden_values)", hidden[0].Address, hidden[0].Path, len(hidden), ws.Name))
	}
	planDigest := sha256.Sum256(planJSON)
	p.Summary, p.Digest, p.Drift = summary, plan.Digest, plan.Drift
	p.PlanDigest = "sha256:" + hex.EncodeToString(planDigest[:])
	p.State, p.UpdatedAt = ProposalPending, b.now()
	if p.AgentDigest != "" {
		a, err := st.Artifact(ctx, agentPlanArtifact(p.ID))
		if err != nil {
			return nil, nil, err
		}
		agent, err := planparse.Parse(bytes.NewReader(a.Data), planparse.Options{SensitiveKey: b.opts.SensitiveKey})
		if err != nil {
			return nil, nil, err
		}
		if d := planparse.Compare(summary, agent.Summary); !d.Empty() {
			p.Divergence, p.State = d, ProposalDiverged
		}
	}
	if p.State == ProposalPending && ws.Policy != nil {
		// The policy decides only on seb's plan of a proposal the agent's
		// plan does not contradict: a diverged one is never approved. It
		// decided before the transaction, on the proposer's token as it
		// was then.
		if err := b.stands(ctx, st, p, decided, nil); err != nil {
			return nil, nil, err
		}
		if p.Policy, err = decided.Decision, decided.Err; err != nil {
			return p, nil, b.refuse(ctx, st, p, ErrorMessage(err))
		}
		if reason := denied(ws, p.Policy); reason != "" {
			return p, nil, b.refuse(ctx, st, p, reason)
		}
	}
	action, details := "proposal.verified", map[string]any{"diff_digest": p.Digest}
	if p.Policy != nil {
		details["policy"] = p.Policy
	}
	if p.State == ProposalDiverged {
		action, details = "proposal.diverged", map[string]any{"seb_digest": p.Digest, "agent_digest": p.AgentDigest}
	}
	if err := b.completeVerification(ctx, st, p, action, details); err != nil {
		return nil, nil, err
	}
	if p.State == ProposalDiverged {
		return p, nil, nil
	}
	if required(ws, summary, p.Policy).Auto {
		cert, err := b.certify(ctx, st, p, ws, nil, 0, p.Policy)
		if err != nil {
			return nil, nil, err
		}
		p.State = ProposalCertified
		return p, cert, nil
	}
	return p, nil, nil
}

// refuse records through st that seb's verification refused a proposal,
// and returns the refusal as an EINVALID error.
func (b *Service) refuse(ctx context.Context, st Store, p *Proposal, reason string) error {
	p.State, p.Reason, p.UpdatedAt = ProposalRefused, reason, b.now()
	details := map[string]any{"reason": reason}
	if p.Policy != nil {
		details["policy"] = p.Policy
	}
	if err := b.completeVerification(ctx, st, p, "proposal.refused", details); err != nil {
		return err
	}
	return Errorf(EINVALID, "%s", reason)
}

// completeVerification stores the outcome of seb's plan of p together with
// its audit entry: a reader never sees the one without the other.
func (b *Service) completeVerification(ctx context.Context, st Store, p *Proposal, action string, details any) error {
	entry, err := b.auditEntry("seb", action, p.ID, details)
	if err != nil {
		return err
	}
	return st.Tx(ctx, func(tx Store) error {
		if err := tx.CompleteVerification(ctx, p); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, func(last *AuditEntry) (*AuditEntry, error) { return b.opts.Signer.SealAudit(last, entry) })
		return err
	})
}

// VarsDigest returns sha256:<hex> of variables: name=value lines, sorted,
// with lengths, so no two sets of variables share a digest.
func VarsDigest(vars map[string]string) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		fmt.Fprintf(h, "%d:%s=%d:%s\n", len(name), name, len(vars[name]), vars[name])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// protectedIn returns the protected actions the summary contains.
func protectedIn(ws Workspace, s *planparse.Summary) []planparse.Action {
	var found []planparse.Action
	for _, r := range s.Resources {
		if slices.Contains(ws.ProtectedActions, r.Action) && !slices.Contains(found, r.Action) {
			found = append(found, r.Action)
		}
	}
	return found
}

// A ReviewRequest is a reviewer's verdict on a proposal.
type ReviewRequest struct {
	ProposalID string
	Reviewer   string
	Decision   Decision
	Comment    string
	// Validity shortens the certificate's validity window; 0 keeps the
	// workspace's default.
	Validity time.Duration
	// Groups are the reviewer's groups (from their token), which a policy
	// may require approvals from.
	Groups []string
}

// Review records a reviewer's verdict. A proposer can never review their
// own proposal (EFORBIDDEN), nor anyone review twice (ECONFLICT), nor a
// diverged or decided proposal be reviewed (ECONFLICT). On the final
// approval the proposal is certified and the certificate returned. The
// review, its audit entry and the certificate commit together or not at
// all: a reviewer who loses a race records nothing.
func (b *Service) Review(ctx context.Context, req ReviewRequest) (p *Proposal, cert *Certificate, err error) {
	if req.Decision != Approve && req.Decision != Reject {
		return nil, nil, Errorf(EINVALID, "decision %q is neither approve nor reject", req.Decision)
	}
	if req.Validity < 0 {
		return nil, nil, Errorf(EINVALID, "validity must not be negative")
	}
	// The policy decides before the transaction, on the reviews as they
	// are then and this one; the transaction checks that no review came
	// meanwhile, or decides again.
	err = untilDecisionStands("proposal "+req.ProposalID, func() error {
		pre, err := b.decideOnReview(ctx, req)
		if err != nil {
			return err
		}
		return b.opts.Store.Tx(ctx, func(tx Store) error {
			p, cert, err = b.review(ctx, tx, req, pre)
			return err
		})
	})
	if err != nil {
		return nil, nil, err
	}
	return p, cert, nil
}

// review is Review inside its transaction, with what the policy decided
// before it.
func (b *Service) review(ctx context.Context, tx Store, req ReviewRequest, pre decision) (*Proposal, *Certificate, error) {
	p, err := tx.Proposal(ctx, req.ProposalID)
	if err != nil {
		return nil, nil, err
	}
	ws, err := b.Workspace(p.Workspace)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case req.Reviewer == "":
		return nil, nil, Errorf(EINVALID, "a review needs a reviewer")
	case req.Reviewer == p.Proposer:
		return nil, nil, Errorf(EFORBIDDEN, "%s proposed %s and cannot review it", req.Reviewer, p.ID)
	case p.State == ProposalDiverged:
		return nil, nil, Errorf(ECONFLICT, "proposal %s diverged: the agent's plan is not seb's, so it cannot be approved", p.ID)
	case p.State != ProposalPending:
		return nil, nil, Errorf(ECONFLICT, "proposal %s is already %s", p.ID, p.State)
	}
	now := b.now()
	err = tx.AddReview(ctx, Review{ProposalID: p.ID, Reviewer: req.Reviewer, Decision: req.Decision, Comment: req.Comment, At: now, Groups: req.Groups})
	if err != nil {
		return nil, nil, err
	}
	if req.Decision == Reject {
		if err := tx.SetProposalState(ctx, p.ID, ProposalPending, ProposalRejected, now); err != nil {
			return nil, nil, err
		}
		p.State = ProposalRejected
		return p, nil, b.audit(ctx, tx, req.Reviewer, "proposal.rejected", p.ID, map[string]any{"comment": req.Comment})
	}
	if err := b.audit(ctx, tx, req.Reviewer, "proposal.approved", p.ID, map[string]any{"comment": req.Comment, "diff_digest": p.Digest}); err != nil {
		return nil, nil, err
	}
	reviews, err := tx.Reviews(ctx, p.ID)
	if err != nil {
		return nil, nil, err
	}
	// The policy decided again with the reviews so far (what it requires
	// may depend on who approved), before the transaction: only if no
	// other review came since does that decision stand.
	var decision *policy.Decision
	if ws.Policy != nil {
		if err := b.stands(ctx, tx, p, pre, reviews); err != nil {
			return nil, nil, err
		}
		if decision, err = pre.Decision, pre.Err; err != nil {
			return nil, nil, err
		}
	}
	if reason := denied(ws, decision); reason != "" {
		return nil, nil, Errorf(ECONFLICT, "%s", reason)
	}
	var approvals []Approval
	for _, r := range reviews {
		if r.Decision == Approve {
			approvals = append(approvals, Approval{Reviewer: r.Reviewer, At: r.At})
		}
	}
	if ok, _ := required(ws, p.Summary, decision).met(reviews); !ok {
		return p, nil, nil
	}
	cert, err := b.certify(ctx, tx, p, ws, approvals, req.Validity, decision)
	if err != nil {
		return nil, nil, err
	}
	p.State = ProposalCertified
	return p, cert, nil
}

// certify issues the certificate of a proposal: the exact diff digest, the
// configuration digest, a validity window, the current epochs and the
// approvals, signed in a DSSE envelope; stored, with the proposal's new
// state and the audit entry, through st, the caller's transaction.
func (b *Service) certify(ctx context.Context, st Store, p *Proposal, ws Workspace, approvals []Approval, validity time.Duration, decision *policy.Decision) (*Certificate, error) {
	policy, err := b.policyEpoch(ctx, st)
	if err != nil {
		return nil, err
	}
	revocation, err := st.RevocationEpoch(ctx, ws.Name)
	if err != nil {
		return nil, err
	}
	lifetime := ws.CertificateLifetime
	if validity > 0 && validity < lifetime {
		lifetime = validity
	}
	now := b.now()
	if approvals == nil {
		approvals = []Approval{}
	}
	c := &Certificate{CertificatePayload: CertificatePayload{
		ID:              newID("cert"),
		Workspace:       ws.Name,
		ProposalID:      p.ID,
		ConfigDigest:    p.ConfigDigest,
		VarsDigest:      VarsDigest(p.Vars),
		DiffDigest:      p.Digest,
		PlanDigest:      p.PlanDigest,
		Summary:         p.Summary,
		NotBefore:       now,
		NotAfter:        now.Add(lifetime),
		PolicyEpoch:     policy,
		RevocationEpoch: revocation,
		Approvals:       approvals,
		IssuerKeyID:     b.opts.Signer.KeyID(),
		SingleUse:       true,
		Drift:           p.Drift,
		Policy:          decision,
	}}
	c.Envelope, err = b.opts.Signer.SignCertificate(&c.CertificatePayload)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	if err := st.SetProposalState(ctx, p.ID, ProposalPending, ProposalCertified, now); err != nil {
		return nil, err
	}
	if err := st.CreateCertificate(ctx, c); err != nil {
		return nil, err
	}
	return c, b.audit(ctx, st, "seb", "certificate.issued", c.ID, map[string]any{
		"proposal": p.ID, "workspace": ws.Name, "diff_digest": c.DiffDigest, "config_digest": c.ConfigDigest,
		"not_before": c.NotBefore, "not_after": c.NotAfter, "policy_epoch": policy, "revocation_epoch": revocation,
		"policy_digest": decision.DigestOrEmpty(),
	})
}

// Revoke revokes one certificate.
func (b *Service) Revoke(ctx context.Context, certificateID, by string) error {
	return b.opts.Store.Tx(ctx, func(tx Store) error {
		if err := tx.RevokeCertificate(ctx, certificateID, by, b.now()); err != nil {
			return err
		}
		return b.audit(ctx, tx, by, "certificate.revoked", certificateID, map[string]any{})
	})
}

// RevokeAll bumps a workspace's revocation epoch: every certificate issued
// for it before is dead.
func (b *Service) RevokeAll(ctx context.Context, workspace, by string) (int64, error) {
	if _, err := b.Workspace(workspace); err != nil {
		return 0, err
	}
	var epoch int64
	err := b.opts.Store.Tx(ctx, func(tx Store) error {
		var err error
		if epoch, err = tx.BumpRevocationEpoch(ctx, workspace); err != nil {
			return err
		}
		return b.audit(ctx, tx, by, "workspace.revoked_all", workspace, map[string]any{"revocation_epoch": epoch})
	})
	if err != nil {
		return 0, err
	}
	return epoch, nil
}

// LoadPolicy records the digest of the configuration that governs
// admission; a new digest bumps the policy epoch, and certificates from
// the old epoch are dead.
func (b *Service) LoadPolicy(ctx context.Context, configDigest string) (int64, error) {
	var epoch int64
	err := b.opts.Store.Tx(ctx, func(tx Store) error {
		before, err := tx.PolicyEpoch(ctx)
		if err != nil {
			return err
		}
		if epoch, err = tx.SetPolicyEpoch(ctx, configDigest); err != nil || epoch == before {
			return err
		}
		return b.audit(ctx, tx, "seb", "policy.loaded", configDigest, map[string]any{"policy_epoch": epoch})
	})
	if err != nil {
		return 0, err
	}
	b.loaded.Store(epoch)
	return epoch, nil
}

// policyEpoch returns the current policy epoch through st. A broker whose
// configuration is not the one that began it refuses: a replica left
// running with an old seb.hcl, beside one started with another, would
// certify or execute under rules that are no longer the policy. It
// certifies and executes nothing until it is restarted with the current
// configuration.
func (b *Service) policyEpoch(ctx context.Context, st Store) (int64, error) {
	epoch, err := st.PolicyEpoch(ctx)
	if err != nil {
		return 0, err
	}
	if loaded := b.loaded.Load(); loaded != 0 && loaded != epoch {
		return 0, Errorf(ECONFLICT, "this seb runs the configuration of policy epoch %d, and another seb sharing its store has since loaded another (the policy is at epoch %d): restart this one with the current seb.hcl", loaded, epoch)
	}
	return epoch, nil
}

// ProposeAgain submits a new proposal of the same bundle, variables and
// rationale as an earlier one — what to do once an execution was refused
// because live state moved on: seb plans it afresh against live state, and
// reviewers review that. Only the earlier proposal's proposer may.
func (b *Service) ProposeAgain(ctx context.Context, id, proposer string) (*Proposal, error) {
	p, err := b.opts.Store.Proposal(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.Proposer != proposer {
		return nil, Errorf(EFORBIDDEN, "%s proposed %s; only they may propose it again", p.Proposer, p.ID)
	}
	bundle, err := b.opts.Store.Bundle(ctx, p.ConfigDigest)
	if err != nil {
		return nil, err
	}
	return b.Submit(ctx, ProposalRequest{Workspace: p.Workspace, Proposer: proposer, Rationale: p.Rationale + " (again, after " + p.ID + ")",
		Bundle: bundle, Vars: p.Vars})
}

package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

// policyDecision evaluates the workspace's policy on a proposal, with the reviews
// so far; nil without a policy. A policy that cannot decide is an
// EINVALID error saying so: the proposal is refused, never certified.
func (b *Service) policyDecision(ctx context.Context, st Store, p *Proposal, ws Workspace, reviews []Review) (decision, error) {
	if ws.Policy == nil {
		return decision{}, nil
	}
	proposer, err := b.principal(ctx, st, p.Proposer)
	if err != nil {
		return decision{}, err
	}
	in := &policy.Input{
		Workspace: ws.Name, Summary: p.Summary, DiffDigest: p.Digest, ConfigDigest: p.ConfigDigest,
		Proposer: proposer, AgentPlan: p.AgentDigest != "", Drift: p.Drift,
		Variables: slices.Sorted(maps.Keys(p.Vars)),
	}
	for _, r := range reviews {
		in.Reviews = append(in.Reviews, policy.Review{Reviewer: r.Reviewer, Decision: string(r.Decision), Groups: r.Groups})
	}
	d, err := ws.Policy.Eval(ctx, in)
	var ee *policy.EvalError
	if errors.As(err, &ee) {
		return decision{Err: Errorf(EINVALID, "the policy of workspace %s (%s) could not decide: %v", ws.Name, ws.Policy.Digest, ee.Err), proposer: proposer}, nil
	}
	if err != nil {
		return decision{}, err
	}
	return decision{Decision: d, proposer: proposer}, nil
}

// A decision is what a policy decided, or why it could not (an EINVALID
// error), and the proposer as it saw them.
type decision struct {
	Decision *policy.Decision
	Err      error
	proposer policy.Principal
}

// errDecisionStale says what a policy decided on, outside the transaction,
// changed before the transaction: the caller decides again.
var errDecisionStale = errors.New("what the policy decided on changed while it decided")

// current reports whether the proposer the decision saw is still the
// proposer's token, as st reads it now: revoking or remaking a token
// while the policy decides must not let the old decision stand.
func (b *Service) current(ctx context.Context, st Store, p *Proposal, d decision) error {
	now, err := b.principal(ctx, st, p.Proposer)
	if err != nil {
		return err
	}
	if now.Name != d.proposer.Name || now.Role != d.proposer.Role || !slices.Equal(now.Groups, d.proposer.Groups) {
		return errDecisionStale
	}
	return nil
}

// decideOnPlan evaluates the workspace's policy on seb's plan of a
// verifying proposal, outside any transaction: the proposal's fields it
// reads do not change while it verifies.
func (b *Service) decideOnPlan(ctx context.Context, id string, plan *planparse.Plan) decision {
	p, err := b.opts.Store.Proposal(ctx, id)
	if err != nil {
		return decision{Err: err}
	}
	ws, err := b.Workspace(p.Workspace)
	if err != nil {
		return decision{} // the transaction refuses the proposal, saying why
	}
	p.Summary, p.Digest, p.Drift = plan.Summary, plan.Digest, plan.Drift
	d, err := b.policyDecision(ctx, b.opts.Store, p, ws, nil)
	if err != nil {
		return decision{Err: err}
	}
	return d
}

// A reviewDecision is what the policy decided of an approval before its
// transaction, and the reviews it decided on.
type reviewDecision struct {
	decision
	// reviews are the reviews the policy saw, this one last; none without
	// a policy or for a rejection.
	reviews []Review
	decided bool
}

// errReviewsMoved says another review came between the policy's decision
// and the transaction: Review decides again.
var errReviewsMoved = errors.New("the reviews changed while the policy decided")

// decideOnReview evaluates the policy on an approval, with the reviews so
// far and this one, outside any transaction.
func (b *Service) decideOnReview(ctx context.Context, req ReviewRequest) (reviewDecision, error) {
	if req.Decision != Approve {
		return reviewDecision{}, nil
	}
	p, err := b.opts.Store.Proposal(ctx, req.ProposalID)
	if err != nil {
		return reviewDecision{}, err
	}
	ws, err := b.Workspace(p.Workspace)
	if err != nil || ws.Policy == nil || p.State != ProposalPending {
		return reviewDecision{}, nil // the transaction says why, if anything is wrong
	}
	reviews, err := b.opts.Store.Reviews(ctx, p.ID)
	if err != nil {
		return reviewDecision{}, err
	}
	reviews = append(reviews, Review{ProposalID: p.ID, Reviewer: req.Reviewer, Decision: Approve, Groups: req.Groups})
	d, err := b.policyDecision(ctx, b.opts.Store, p, ws, reviews)
	if err != nil {
		return reviewDecision{}, err
	}
	return reviewDecision{decision: d, reviews: reviews, decided: true}, nil
}

// saw reports whether the decision was made on these reviews (reviewer,
// verdict and groups; their times aside).
func (r reviewDecision) saw(reviews []Review) bool {
	key := func(list []Review) []string {
		out := make([]string, len(list))
		for i, rv := range list {
			out[i] = rv.Reviewer + "\x00" + string(rv.Decision) + "\x00" + strings.Join(rv.Groups, ",")
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(reviews), key(r.reviews))
}

// principal is a token holder as a policy sees it; a token revoked since
// keeps its name and nothing else.
func (b *Service) principal(ctx context.Context, st Store, name string) (policy.Principal, error) {
	tokens, err := st.ListAPITokens(ctx)
	if err != nil {
		return policy.Principal{}, err
	}
	for _, t := range tokens {
		if t.Name == name {
			return policy.Principal{Name: name, Role: string(t.Role), Groups: t.Groups}, nil
		}
	}
	return policy.Principal{Name: name}, nil
}

// denied says why a decision refuses a proposal; "" when it does not.
func denied(ws Workspace, d *policy.Decision) string {
	if d == nil || len(d.Deny) == 0 {
		return ""
	}
	return fmt.Sprintf("denied by the policy of workspace %s: %s", ws.Name, strings.Join(d.Deny, "; "))
}

// A requirement is what certifying a proposal takes: how many distinct
// reviewers must approve, and how many of them from Groups.
type requirement struct {
	Approvals int
	// FromGroups of the approvals must come from reviewers in one of
	// Groups.
	FromGroups int
	Groups     []string
	// Auto certifies without a human.
	Auto bool
}

// required is what certifying a diff takes: the workspace's approvals, or
// the policy's when it asks for more, at least one human for a protected
// action, and none when the policy certifies automatically. auto_certify
// yields to the policy's own approvals (of two rules, the stricter holds)
// and never covers a protected action unless the workspace allows it.
// Separation of duties is not the policy's: a proposer never approves
// their own proposal.
func required(ws Workspace, s *planparse.Summary, d *policy.Decision) requirement {
	r := requirement{Approvals: ws.ApprovalsRequired}
	if d != nil && d.Approvals != nil {
		r.Approvals = max(r.Approvals, d.Approvals.Count)
		if len(d.Approvals.Groups) > 0 {
			r.FromGroups, r.Groups = d.Approvals.Count, d.Approvals.Groups
		}
	}
	protected := len(protectedIn(ws, s)) > 0
	if protected {
		r.Approvals = max(r.Approvals, 1)
	}
	asks := d != nil && d.Approvals != nil && d.Approvals.Count > 0
	if d != nil && d.AutoCertify && !asks && (!protected || ws.AutoCertifyProtected) {
		return requirement{Auto: true}
	}
	r.Auto = r.Approvals == 0
	return r
}

// StillNeeded says which approvals a pending proposal still needs, by
// the policy's decision at verification and the reviews so far ("" when
// none, or when it is not pending): what reviewers are shown.
func (b *Service) StillNeeded(p *Proposal, reviews []Review) string {
	ws, err := b.Workspace(p.Workspace)
	if err != nil || p.State != ProposalPending {
		return ""
	}
	_, missing := required(ws, p.Summary, p.Policy).met(reviews)
	return missing
}

// met reports whether the approvals among reviews meet r, and what is
// still missing when they do not.
func (r requirement) met(reviews []Review) (bool, string) {
	approvals, fromGroups := 0, 0
	for _, rv := range reviews {
		if rv.Decision != Approve {
			continue
		}
		approvals++
		if slices.ContainsFunc(rv.Groups, func(g string) bool { return slices.Contains(r.Groups, g) }) {
			fromGroups++
		}
	}
	var missing []string
	if approvals < r.Approvals {
		missing = append(missing, fmt.Sprintf("%d more approval(s)", r.Approvals-approvals))
	}
	if fromGroups < r.FromGroups {
		missing = append(missing, fmt.Sprintf("%d more from %s", r.FromGroups-fromGroups, strings.Join(r.Groups, " or ")))
	}
	return len(missing) == 0, strings.Join(missing, ", ")
}

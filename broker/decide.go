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

// policyDecision evaluates the workspace's policy on a proposal, with the
// reviews so far; a zero decision without a policy. A policy that cannot
// decide is a decision whose Err is EINVALID, saying so: the proposal is
// refused, never certified. The error is the store's.
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
	d := decision{made: true, proposer: proposer, reviews: reviews}
	d.Decision, err = ws.Policy.Eval(ctx, in)
	var ee *policy.EvalError
	if errors.As(err, &ee) {
		d.Decision, d.Err = nil, Errorf(EINVALID, "the policy of workspace %s (%s) could not decide: %v", ws.Name, ws.Policy.Digest, ee.Err)
	} else if err != nil {
		return decision{}, err
	}
	return d, nil
}

// A decision is what a policy decided before the transaction that acts on
// it, or why it could not (an EINVALID Err), with what it decided on that
// may change meanwhile: the proposer's token and the reviews.
type decision struct {
	Decision *policy.Decision
	Err      error
	made     bool // false: there was no policy, or nothing to decide yet
	proposer policy.Principal
	reviews  []Review
}

// errDecisionStale says what a policy decided on changed between its
// decision and the transaction: the caller decides again.
var errDecisionStale = errors.New("what the policy decided on changed while it decided")

// untilDecisionStands runs attempt (a policy's decision, then the
// transaction acting on it) again while what the policy decided on
// changed meanwhile, at most five times; then it is ECONFLICT.
func untilDecisionStands(what string, attempt func() error) error {
	for i := 1; ; i++ {
		err := attempt()
		if !errors.Is(err, errDecisionStale) {
			return err
		}
		if i == 5 {
			return Errorf(ECONFLICT, "%s: what the policy decides on kept changing while it decided; try again", what)
		}
	}
}

// stands checks, inside the transaction st, that a decision was made on
// what is there now: the proposer's token as it is, and these reviews
// (reviewer, verdict and groups; their times aside). Revoking or remaking
// a token, or another review landing, while the policy decides must not
// let the old decision stand: errDecisionStale.
func (b *Service) stands(ctx context.Context, st Store, p *Proposal, d decision, reviews []Review) error {
	if !d.made {
		return errDecisionStale
	}
	now, err := b.principal(ctx, st, p.Proposer)
	if err != nil {
		return err
	}
	key := func(list []Review) []string {
		out := make([]string, len(list))
		for i, rv := range list {
			out[i] = rv.Reviewer + "\x00" + string(rv.Decision) + "\x00" + strings.Join(rv.Groups, ",")
		}
		slices.Sort(out)
		return out
	}
	if now.Name != d.proposer.Name || now.Role != d.proposer.Role || !slices.Equal(now.Groups, d.proposer.Groups) ||
		!slices.Equal(key(reviews), key(d.reviews)) {
		return errDecisionStale
	}
	return nil
}

// decideOnPlan evaluates the workspace's policy on seb's plan of a
// verifying proposal, outside any transaction: the proposal's fields it
// reads do not change while it verifies.
func (b *Service) decideOnPlan(ctx context.Context, id string, plan *planparse.Plan) (decision, error) {
	p, err := b.opts.Store.Proposal(ctx, id)
	if err != nil {
		return decision{}, err
	}
	ws, err := b.Workspace(p.Workspace)
	if err != nil {
		return decision{}, nil // the transaction refuses the proposal, saying why
	}
	p.Summary, p.Digest, p.Drift = plan.Summary, plan.Digest, plan.Drift
	return b.policyDecision(ctx, b.opts.Store, p, ws, nil)
}

// decideOnReview evaluates the policy on an approval, with the reviews so
// far and this one, outside any transaction; nothing for a rejection, or
// when there is nothing to decide yet (the transaction says why).
func (b *Service) decideOnReview(ctx context.Context, req ReviewRequest) (decision, error) {
	if req.Decision != Approve {
		return decision{}, nil
	}
	p, err := b.opts.Store.Proposal(ctx, req.ProposalID)
	if err != nil {
		return decision{}, err
	}
	ws, err := b.Workspace(p.Workspace)
	if err != nil || ws.Policy == nil || p.State != ProposalPending {
		return decision{}, nil
	}
	reviews, err := b.opts.Store.Reviews(ctx, p.ID)
	if err != nil {
		return decision{}, err
	}
	reviews = append(reviews, Review{ProposalID: p.ID, Reviewer: req.Reviewer, Decision: Approve, Groups: req.Groups})
	return b.policyDecision(ctx, b.opts.Store, p, ws, reviews)
}

// principal is a token holder as a policy sees it; a token revoked since
// keeps its name and nothing else.
func (b *Service) principal(ctx context.Context, st Store, name string) (policy.Principal, error) {
	t, err := st.APITokenByName(ctx, name)
	switch {
	case ErrorCode(err) == ENOTFOUND:
		return policy.Principal{Name: name}, nil
	case err != nil:
		return policy.Principal{}, err
	}
	return policy.Principal{Name: name, Role: string(t.Role), Groups: t.Groups}, nil
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

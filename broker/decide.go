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
func (b *Service) policyDecision(ctx context.Context, st Store, p *Proposal, ws Workspace, reviews []Review) (*policy.Decision, error) {
	if ws.Policy == nil {
		return nil, nil
	}
	proposer, err := b.principal(ctx, st, p.Proposer)
	if err != nil {
		return nil, err
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
		return nil, Errorf(EINVALID, "the policy of workspace %s (%s) could not decide: %v", ws.Name, ws.Policy.Digest, ee.Err)
	}
	return d, err
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

package drift

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/seb-broker/seb/planparse"
)

// Mode is a workspace's rule for drift: changes made outside Terraform.
type Mode string

// The drift modes. In the default mode a live plan is refused when its
// digest differs from the certified one, or when drift touches a resource
// the certified diff changes. In strict mode any drift at all refuses it.
const (
	ModeDefault Mode = "default"
	ModeStrict  Mode = "strict"
)

// A Decision says whether a live plan may be applied in place of the
// certified diff, and if not, exactly why.
type Decision struct {
	Accepted bool `json:"accepted"`
	// Reason says in one sentence why a plan was refused.
	Reason string `json:"reason,omitempty"`
	// Divergence is the structured difference between the certified and
	// the live summaries; empty when their digests match.
	Divergence *planparse.Divergence `json:"divergence,omitempty"`
	// Drift lists the changes made outside Terraform since the
	// certification that count under the workspace's rule, each with its
	// before and after values: what refused the plan, or what made it
	// diverge.
	Drift []planparse.ResourceChange `json:"drift,omitempty"`
}

// Decide compares a live plan with a certified summary under mode.
// Drift entries equal to acknowledged ones — drift reviewers already saw
// in the plan they certified — do not count: only drift since the
// certification does, since Terraform reports drift against the last
// stored state, not against the certified plan.
func Decide(certified *planparse.Summary, live *planparse.Plan, mode Mode, acknowledged []planparse.ResourceChange) Decision {
	d := Decision{Divergence: planparse.Compare(certified, live.Summary)}
	touched := map[string]bool{}
	for _, r := range certified.Resources {
		touched[r.Address] = true
	}
	seen := map[string]bool{}
	for _, r := range acknowledged {
		seen[string(driftKey(r))] = true
	}
	for _, r := range live.Drift {
		if seen[string(driftKey(r))] {
			continue
		}
		if mode == ModeStrict || touched[r.Address] {
			d.Drift = append(d.Drift, r)
		}
	}
	if !d.Divergence.Empty() {
		// The drift, if any, is why: it is kept beside the divergence.
		d.Reason = fmt.Sprintf("the live plan (%s) differs from the certified diff (%s)", d.Divergence.LiveDigest, d.Divergence.CertifiedDigest)
		if len(d.Drift) > 0 {
			d.Reason += fmt.Sprintf(": %d resource(s) changed outside Terraform since the certification", len(d.Drift))
		}
		return d
	}
	if len(d.Drift) > 0 {
		if mode == ModeStrict {
			d.Reason = fmt.Sprintf("%d resource(s) changed outside Terraform, and the workspace is strict", len(d.Drift))
		} else {
			d.Reason = fmt.Sprintf("%d certified resource(s) changed outside Terraform since they were certified", len(d.Drift))
		}
		return d
	}
	d.Accepted = true
	return d
}

// driftKey is the canonical JSON of a drift entry: equal entries, equal
// keys.
func driftKey(r planparse.ResourceChange) []byte {
	key, _ := r.MarshalJSON()
	return key
}

// An ExecuteRequest is one execution of a certified diff.
type ExecuteRequest struct {
	Workspace string
	Vars      map[string]string
	// Certified is the summary the certificate binds.
	Certified *planparse.Summary
	Mode      Mode
	// AcknowledgedDrift is the drift of the certified plan, which its
	// reviewers saw.
	AcknowledgedDrift []planparse.ResourceChange
	// Credentials mint the plan- and apply-phase credentials.
	Credentials Credentials
	// State is the broker's state store; the run holds the workspace's
	// lock from before the plan until the new state is stored.
	State StateStore
	// OnStage, when set, is called as the run enters each stage, so that
	// the caller can record it.
	OnStage func(Stage)
	// BeforeApply, when set, is called after the live plan was accepted
	// and right before the apply, under the workspace lock: an error
	// refuses the run (wrapped in ErrRefused). The broker re-checks there
	// that the certificate is still valid and not revoked, since a run may
	// have waited for the lock.
	BeforeApply func(ctx context.Context) error
}

// Stage is where an execution stopped.
type Stage string

// Stages of an execution, in order.
const (
	StagePlanning  Stage = "planning"
	StageComparing Stage = "comparing"
	StageApplying  Stage = "applying"
	StageDone      Stage = "done"
)

// An ExecuteResult is what an execution did.
type ExecuteResult struct {
	// Stage is where it stopped: StageComparing when it was refused.
	Stage    Stage
	Plan     *PlanResult
	Decision Decision
	// Apply is nil when nothing was applied.
	Apply *ApplyResult
	// StateVersion is the state stored after the apply.
	StateVersion *StateVersion
	Timings      Timings
}

// Timings of an execution. Window is the time between the end of the
// refresh and the start of the apply: the only moment an out-of-band
// change could slip in unseen.
type Timings struct {
	Lock, Plan, Show, Compare, Apply, Window time.Duration
}

// ErrRefused is wrapped by Execute's error when the live plan diverges
// from the certified one; the result's Decision says why.
var ErrRefused = errors.New("execution refused")

// Execute runs a certified diff under the workspace lock: it plans against
// live state with a plan-phase credential, decides whether the live plan is
// exactly the certified one, and only then applies that saved plan with a
// fresh apply-phase credential, and stores the resulting state. A refused
// run applies nothing and returns ErrRefused with the decision in the
// result.
func (w *Workdir) Execute(ctx context.Context, req ExecuteRequest) (*ExecuteResult, error) {
	now := w.r.opts.Now
	res := &ExecuteResult{}
	enter := func(stage Stage) {
		res.Stage = stage
		if req.OnStage != nil {
			req.OnStage(stage)
		}
	}
	enter(StagePlanning)
	start := now()
	unlock, err := req.State.Lock(ctx, req.Workspace)
	if err != nil {
		return res, err
	}
	defer unlock()
	res.Timings.Lock = now().Sub(start)
	state, err := req.State.Current(ctx, req.Workspace)
	if err != nil {
		return res, err
	}
	planStart := now()
	res.Plan, err = w.Plan(ctx, PlanRequest{Vars: req.Vars, State: state, Credentials: req.Credentials})
	if err != nil {
		return res, err
	}
	res.Timings.Plan = res.Plan.RefreshedAt.Sub(planStart)
	res.Timings.Show = res.Plan.ShownAt.Sub(res.Plan.RefreshedAt)

	enter(StageComparing)
	res.Decision = Decide(req.Certified, res.Plan.Plan, req.Mode, req.AcknowledgedDrift)
	res.Timings.Compare = now().Sub(res.Plan.ShownAt)
	if !res.Decision.Accepted {
		return res, fmt.Errorf("%w: %s", ErrRefused, res.Decision.Reason)
	}
	if req.BeforeApply != nil {
		if err := req.BeforeApply(ctx); err != nil {
			res.Decision.Accepted = false
			res.Decision.Reason = err.Error()
			return res, fmt.Errorf("%w: %s", ErrRefused, err)
		}
	}

	enter(StageApplying)
	res.Apply, err = w.Apply(ctx, res.Plan, req.Credentials)
	if err != nil {
		return res, err
	}
	res.Timings.Window = res.Apply.StartedAt.Sub(res.Plan.RefreshedAt)
	res.Timings.Apply = res.Apply.EndedAt.Sub(res.Apply.StartedAt)
	if res.Apply.State != nil && !bytes.Equal(res.Apply.State, state) {
		// Stored whatever the outcome: a failed or interrupted apply may
		// still have changed real resources. Not under ctx, which may be
		// the cancellation that interrupted the apply.
		v, err := req.State.Put(context.WithoutCancel(ctx), req.Workspace, res.Apply.State)
		if err != nil {
			return res, fmt.Errorf("store the state after apply: %w", err)
		}
		res.StateVersion = &v
	}
	enter(StageDone)
	if res.Apply.Outcome != Succeeded {
		return res, fmt.Errorf("apply %s: %w", res.Apply.Outcome, res.Apply.Err)
	}
	return res, nil
}

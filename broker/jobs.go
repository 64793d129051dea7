package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/planparse"
)

// The broker never runs Terraform. It queues jobs in its store, and
// runners (`seb runner`) lease them, run Terraform in a sandbox and report
// back: seb's plan of a proposal (verify), a speculative plan for an
// agent (plan), and an execution. Every decision stays here: the runner
// returns a plan; the broker parses and compares it, and only when it
// accepts an execution's plan does it mint the apply-phase credential.

// Attempts a job may take: a verification or a speculative plan that
// fails for the runner's reasons is tried again, a bounded number of
// times; an execution never is.
const (
	verifyAttempts  = 3
	planAttempts    = 2
	executeAttempts = 1
)

// A Lease is a job as a runner receives it: what the job needs, and
// nothing else.
type Lease struct {
	Job       string  `json:"job"`
	Kind      JobKind `json:"kind"`
	Workspace string  `json:"workspace"`
	// Token fences the runner's reports: once the lease is lost, they are
	// refused.
	Token     int64     `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	// Heartbeat is how often the runner must renew the lease.
	Heartbeat time.Duration     `json:"heartbeat"`
	Bundle    []byte            `json:"bundle"`
	Vars      map[string]string `json:"vars"`
	// State is the workspace's current state; nil for none.
	State []byte `json:"state,omitempty"`
	// Credentials are the plan-phase credential of this job.
	Credentials *Grant `json:"credentials"`
}

// A PlanReport is what a runner's plan gave: the plan JSON, or why it
// failed. Refused says the failure is the configuration's (Terraform or
// the bundle checks refused it), not the runner's.
type PlanReport struct {
	Plan       []byte `json:"plan,omitempty"`
	HasChanges bool   `json:"has_changes"`
	Error      string `json:"error,omitempty"`
	Refused    bool   `json:"refused,omitempty"`
	// Schemas are the provider schemas of a verification's changed
	// resource types: which values are sensitive by nature.
	Schemas planparse.Schemas `json:"schemas,omitempty"`
}

// A PlanVerdict is the broker's answer to an execution's plan: apply it,
// with this apply-phase credential, or not.
type PlanVerdict struct {
	Apply       bool   `json:"apply"`
	Reason      string `json:"reason,omitempty"`
	Credentials *Grant `json:"credentials,omitempty"`
}

// An ApplyReport is how a runner's apply ended and the state it left.
type ApplyReport struct {
	Outcome drift.Outcome `json:"outcome"`
	Error   string        `json:"error,omitempty"`
	State   []byte        `json:"state,omitempty"`
}

// jobQueue wakes runners waiting for a lease when a job is queued.
type jobQueue struct {
	mu      sync.Mutex
	changed chan struct{}
}

func (q *jobQueue) wait() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.changed == nil {
		q.changed = make(chan struct{})
	}
	return q.changed
}

func (q *jobQueue) signal() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.changed != nil {
		close(q.changed)
	}
	q.changed = make(chan struct{})
}

func jobIDFor(subject string) string { return "job-" + subject }

// enqueue queues a job now and wakes the runners.
func (b *Service) enqueue(ctx context.Context, j *Job) error {
	if err := b.enqueueIn(ctx, b.opts.Store, j); err != nil {
		return err
	}
	b.queue.signal()
	return nil
}

// enqueueIn queues a job through st; the caller wakes the runners once
// st's transaction commits.
func (b *Service) enqueueIn(ctx context.Context, st Store, j *Job) error {
	j.State, j.CreatedAt, j.UpdatedAt = JobQueued, b.now(), b.now()
	return st.EnqueueJob(ctx, j)
}

// LeaseJob leases the next job to the runner, waiting up to wait for one
// to be queued: ENOTFOUND when none came. The lease carries the job's
// bundle, variables, the workspace's state and a plan-phase credential
// minted for this job.
func (b *Service) LeaseJob(ctx context.Context, runner string, wait time.Duration) (*Lease, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		woken := b.queue.wait()
		j, err := b.opts.Store.LeaseJob(ctx, runner, b.now(), b.opts.JobLease)
		if err == nil {
			lease, err := b.leaseOf(ctx, j)
			if err != nil {
				// A job that cannot even be handed out fails; the runner
				// asks again.
				if ferr := b.failJob(context.WithoutCancel(ctx), b.opts.Store, j, "seb could not prepare the job: "+ErrorMessage(err)); ferr != nil {
					b.opts.Logger.Error("fail a job", "job", j.ID, "error", ferr)
				}
				continue
			}
			return lease, nil
		}
		if ErrorCode(err) != ENOTFOUND {
			return nil, err
		}
		select {
		case <-woken:
		case <-time.After(time.Second):
		case <-deadline.C:
			return nil, Errorf(ENOTFOUND, "no job to run")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// leaseOf gathers what a leased job needs.
func (b *Service) leaseOf(ctx context.Context, j *Job) (*Lease, error) {
	ws, err := b.Workspace(j.Workspace)
	if err != nil {
		return nil, err
	}
	bundle, err := b.opts.Store.Bundle(ctx, j.ConfigDigest)
	if err != nil {
		return nil, err
	}
	state, err := b.opts.Store.CurrentState(ctx, ws.Name)
	if err != nil {
		return nil, err
	}
	creds := RunCredentials{Issuer: b.opts.Issuer, Profile: ws.Credentials, Workspace: ws.Name}
	if j.Kind == JobExecute {
		e, err := b.opts.Store.Execution(ctx, j.Subject)
		if err != nil {
			return nil, err
		}
		creds.ExecutionID, creds.CertificateID = e.ID, e.CertificateID
		e.State, e.UpdatedAt = ExecutionPlanning, b.now()
		if err := b.opts.Store.UpdateExecution(ctx, e, ExecutionQueued); err != nil {
			return nil, err
		}
	}
	grant, err := creds.Grant(drift.PhasePlan)
	if err != nil {
		return nil, err
	}
	return &Lease{Job: j.ID, Kind: j.Kind, Workspace: j.Workspace, Token: j.Token, ExpiresAt: j.LeaseExpires,
		Heartbeat: b.opts.JobLease / 3, Bundle: bundle, Vars: j.Vars, State: state, Credentials: grant}, nil
}

type runnerKey struct{}

// AsRunner returns a context for the reports of the runner authenticated
// as name: a report on a job leased to another runner is refused even with
// the right token. Runners in the broker's own process report without it.
func AsRunner(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, runnerKey{}, name)
}

// leased returns the job if token holds its lease, renewing it, and if
// the runner of ctx (see AsRunner) is the one it was leased to.
// Renewing changes nothing else of the job, so that a heartbeat never
// undoes what a report beside it records.
func (b *Service) leased(ctx context.Context, id string, token int64) (*Job, error) {
	return b.leasedIn(ctx, b.opts.Store, id, token)
}

// leasedIn is leased on st: a Tx's Store, so that the lease fences what
// the Tx writes.
func (b *Service) leasedIn(ctx context.Context, st Store, id string, token int64) (*Job, error) {
	// The lease is renewed only with its token (a runner that leased the
	// job again since holds another), and only for the runner holding it:
	// another cannot keep alive the lease of a job whose runner died.
	runner, _ := ctx.Value(runnerKey{}).(string)
	j, err := st.RenewJob(ctx, id, token, runner, b.now().Add(b.opts.JobLease), b.now())
	if ErrorCode(err) == ENOTFOUND {
		return nil, Errorf(ECONFLICT, "job %s: this runner holds no lease on it", id)
	}
	return j, err
}

// Heartbeat renews a runner's lease; ECONFLICT when it was lost, and the
// runner must stop the job.
func (b *Service) Heartbeat(ctx context.Context, id string, token int64) error {
	_, err := b.leased(ctx, id, token)
	return err
}

// AppendLog stores a chunk of a job's Terraform log, as the runner sends
// it while Terraform writes it.
func (b *Service) AppendLog(ctx context.Context, id string, token int64, phase string, data []byte) error {
	if phase != string(drift.PhasePlan) && phase != string(drift.PhaseApply) {
		return Errorf(EINVALID, "log phase %q is neither plan nor apply", phase)
	}
	if _, err := b.leased(ctx, id, token); err != nil {
		return err
	}
	return b.opts.Store.AppendJobLog(ctx, id, token, phase, data, b.now())
}

// ReportPlan takes a runner's plan. For a verification it completes the
// proposal; for a speculative plan it keeps the plan for the agent; for an
// execution it decides — the live plan against the certificate — and
// answers with the apply-phase credential only when it accepts.
func (b *Service) ReportPlan(ctx context.Context, id string, token int64, r PlanReport) (*PlanVerdict, error) {
	j, err := b.leased(ctx, id, token)
	if err != nil {
		return nil, err
	}
	if r.Error != "" && !r.Refused {
		return nil, b.retryOrFail(ctx, j, r.Error)
	}
	switch j.Kind {
	case JobVerify:
		return &PlanVerdict{}, b.verified(ctx, j, r)
	case JobPlan:
		if r.Error != "" {
			// Done: the configuration, not the runner, failed.
			return &PlanVerdict{}, b.endJob(ctx, b.opts.Store, j, JobDone, r.Error)
		}
		j.Result, j.State = r.Plan, JobDone
		return &PlanVerdict{}, b.opts.Store.UpdateJob(ctx, j, b.now())
	default:
		if j.Phase != string(drift.PhasePlan) {
			return nil, Errorf(ECONFLICT, "job %s already reported its plan", j.ID)
		}
		return b.decide(ctx, j, r)
	}
}

// endJob ends a leased job, through st.
func (b *Service) endJob(ctx context.Context, st Store, j *Job, state JobState, reason string) error {
	j.State, j.Error = state, reason
	return st.UpdateJob(ctx, j, b.now())
}

// retryOrFail handles a job that failed for the runner's reasons: queued
// again while it has attempts left, else failed (a verification's
// proposal refused with the reason); an execution is never retried.
func (b *Service) retryOrFail(ctx context.Context, j *Job, reason string) error {
	if j.Kind != JobExecute && j.Attempts < j.MaxAttempts {
		// Tried again after 5 s, then 20 s, …: a broken runner or a
		// passing outage does not spin.
		j.State, j.Error = JobQueued, reason
		j.NotBefore = b.now().Add(5 * time.Second << (2 * (j.Attempts - 1)))
		if err := b.opts.Store.UpdateJob(ctx, j, b.now()); err != nil {
			return err
		}
		b.queue.signal()
		return nil
	}
	return b.failJob(ctx, b.opts.Store, j, reason)
}

// failStale fails a job the sweep found with its lease expired, unless by
// the time its transaction holds the write lock the job was renewed,
// leased again or ended: the sweep read it before, outside.
func (b *Service) failStale(ctx context.Context, j *Job, reason string) error {
	return b.opts.Store.Tx(ctx, func(tx Store) error {
		current, err := tx.Job(ctx, j.ID)
		if err != nil {
			return err
		}
		if current.State != JobLeased || current.Token != j.Token || !current.LeaseExpires.Before(b.now()) {
			return nil
		}
		return b.failJob(ctx, tx, current, reason)
	})
}

// failJob fails a job for good, through st, and records what that means
// for its subject.
func (b *Service) failJob(ctx context.Context, st Store, j *Job, reason string) error {
	return st.Tx(ctx, func(tx Store) error {
		if err := tx.EndJob(ctx, j.ID, JobFailed, reason, b.now()); err != nil && ErrorCode(err) != ECONFLICT {
			return err
		}
		return b.jobEnded(ctx, tx, j, fmt.Sprintf("seb could not plan it after %d attempt(s): %s", j.Attempts, reason), reason)
	})
}

// jobEnded records what the end of a job that produced nothing means for
// its subject: a verifying proposal is refused with refusal, an execution
// interrupted with interruption. It records through st.
func (b *Service) jobEnded(ctx context.Context, st Store, j *Job, refusal, interruption string) error {
	switch j.Kind {
	case JobVerify:
		p, err := st.Proposal(ctx, j.Subject)
		if err != nil || p.State != ProposalVerifying {
			return err
		}
		return ignoreRefusal(b.refuse(ctx, st, p, refusal))
	case JobExecute:
		return b.interrupted(ctx, st, j, interruption)
	}
	return nil
}

// verified completes a proposal with seb's plan of it: refused when the
// plan failed or changes nothing, diverged when the agent's plan differs,
// else pending — and certified at once when no approval is needed.
//
// The job's end, the proposal's outcome, its audit entry and any
// certificate commit in one transaction: a failure leaves the job leased
// and the proposal verifying, and the runner's report is tried again.
func (b *Service) verified(ctx context.Context, j *Job, r PlanReport) error {
	// The plan is read before the transaction, which must stay short.
	var (
		plan    *planparse.Plan
		refusal string
	)
	if r.Error != "" {
		refusal = "seb's plan failed: " + r.Error
	} else if parsed, err := planparse.Parse(bytes.NewReader(r.Plan), planparse.Options{SensitiveKey: b.opts.SensitiveKey}); err != nil {
		refusal = "seb's plan could not be read: " + err.Error()
	} else if reason, err := RefusedByTerraformsReading(r.Plan); err != nil {
		refusal = err.Error()
	} else if reason != "" {
		refusal = reason
	} else {
		plan = parsed
	}
	// The policy decides before the transaction too: a slow policy must
	// not hold every replica's writes. If what it decided on changed
	// meanwhile, it decides again.
	return untilDecisionStands("proposal "+j.Subject, func() error {
		var decided decision
		if plan != nil {
			var err error
			if decided, err = b.decideOnPlan(ctx, j.Subject, plan); err != nil {
				return err // the store failed: the report fails
			}
		}
		return b.opts.Store.Tx(ctx, func(tx Store) error {
			p, err := tx.Proposal(ctx, j.Subject)
			if err != nil {
				return err
			}
			if err := b.endJob(ctx, tx, j, JobDone, r.Error); err != nil {
				return err
			}
			switch {
			case p.State != ProposalVerifying:
				return nil
			case refusal != "":
				return ignoreRefusal(b.refuse(ctx, tx, p, refusal))
			}
			_, _, err = b.completeVerify(ctx, tx, p, plan, r.Plan, r.Schemas, decided)
			return ignoreRefusal(err)
		})
	})
}

// ignoreRefusal drops the EINVALID error refuse returns: for a runner's
// report, a refused proposal is an outcome, not an error.
func ignoreRefusal(err error) error {
	if ErrorCode(err) == EINVALID {
		return nil
	}
	return err
}

// waitJob waits until a job ends and returns it.
func (b *Service) waitJob(ctx context.Context, id string) (*Job, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		j, err := b.opts.Store.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		if j.State.Final() {
			return j, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// CancelJob cancels a job that has not ended; its runner's next report is
// refused and it stops. A cancelled verification refuses its proposal; a
// cancelled execution is interrupted.
func (b *Service) CancelJob(ctx context.Context, id, by string) error {
	j, err := b.opts.Store.Job(ctx, id)
	if err != nil {
		return err
	}
	reason := "cancelled by " + by
	return b.opts.Store.Tx(ctx, func(tx Store) error {
		if err := tx.EndJob(ctx, id, JobCancelled, reason, b.now()); err != nil {
			return err
		}
		if err := b.audit(ctx, tx, by, "job.cancelled", id, map[string]any{"kind": j.Kind, "subject": j.Subject}); err != nil {
			return err
		}
		return b.jobEnded(ctx, tx, j, "its verification was "+reason, "the execution was "+reason)
	})
}

// SweepJobs ends the jobs whose runner stopped renewing its lease: a
// verification or plan with attempts left is leased again, one without
// fails; an execution is interrupted, never retried, and when it was
// applying its workspace is held for reconciliation. It also queues the
// verification of any proposal left verifying without a job. Call it
// periodically; it is safe on any number of brokers at once.
func (b *Service) SweepJobs(ctx context.Context) error {
	stale, err := b.opts.Store.StaleJobs(ctx, b.now())
	if err != nil {
		return err
	}
	var errs []error
	for _, j := range stale {
		if j.Kind != JobExecute && j.Attempts < j.MaxAttempts {
			continue
		}
		errs = append(errs, b.failStale(ctx, j, fmt.Sprintf("runner %s stopped answering (its lease expired at %s)",
			j.Runner, j.LeaseExpires.Format(time.RFC3339))))
	}
	waiting, err := b.opts.Store.ListProposals(ctx, ProposalFilter{State: ProposalVerifying, OldestFirst: true, Limit: 500})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, p := range waiting {
		j, err := b.opts.Store.Job(ctx, jobIDFor(p.ID))
		switch {
		case ErrorCode(err) == ENOTFOUND:
			errs = append(errs, b.queueVerification(ctx, p))
		case err != nil:
			errs = append(errs, err)
		case j.State.Final():
			// The job ended but recording its outcome failed: the
			// proposal must not wait for ever.
			errs = append(errs, ignoreRefusal(b.refuse(ctx, b.opts.Store, p, "its verification ended without an outcome: "+j.Error)))
		}
	}
	return errors.Join(errs...)
}

// queueVerification queues seb's plan of a proposal.
func (b *Service) queueVerification(ctx context.Context, p *Proposal) error {
	if err := b.queueVerificationIn(ctx, b.opts.Store, p); err != nil {
		return err
	}
	b.queue.signal()
	return nil
}

// queueVerificationIn queues it through st; queued already is not an
// error.
func (b *Service) queueVerificationIn(ctx context.Context, st Store, p *Proposal) error {
	err := b.enqueueIn(ctx, st, &Job{ID: jobIDFor(p.ID), Kind: JobVerify, Workspace: p.Workspace, Subject: p.ID, Owner: p.Proposer,
		ConfigDigest: p.ConfigDigest, Vars: p.Vars, MaxAttempts: verifyAttempts})
	if ErrorCode(err) == ECONFLICT {
		return nil
	}
	return err
}

// RecoverJobs ends, as SweepJobs does, every job leased to runner (a
// runner name, or the name's prefix before "/") when the broker started:
// the broker's own embedded runner died with the process before it, so
// its jobs are orphans now, not when their leases expire. Jobs of other
// runners are left to SweepJobs: they may still be working.
func (b *Service) RecoverJobs(ctx context.Context, runner string) error {
	stale, err := b.opts.Store.StaleJobs(ctx, b.now().Add(100*365*24*time.Hour))
	if err != nil {
		return err
	}
	var errs []error
	for _, j := range stale {
		if j.Runner == runner || strings.HasPrefix(j.Runner, runner+"/") {
			errs = append(errs, b.failJob(ctx, b.opts.Store, j, "the broker and its runner stopped while the job ran"))
		}
	}
	return errors.Join(errs...)
}

// Background sweeps jobs every interval until ctx ends, while this
// process leads (Options.Leader) the brokers sharing its store.
func (b *Service) Background(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if b.opts.Leader != nil && !b.opts.Leader.Lead(ctx) {
				continue
			}
			if err := b.SweepJobs(ctx); err != nil && ctx.Err() == nil {
				b.opts.Logger.Error("sweep jobs", "error", err)
			}
		}
	}
}

package broker

import "time"

// JobKind is what a runner does for a job.
type JobKind string

// The kinds of jobs: seb's own plan of a proposal, a speculative plan for
// an agent, and an execution of a certificate.
const (
	JobVerify  JobKind = "verify"
	JobPlan    JobKind = "plan"
	JobExecute JobKind = "execute"
)

// JobState is where a job stands in the queue.
type JobState string

// Job states: queued until a runner leases it, leased while it runs, then
// done, failed or cancelled.
const (
	JobQueued    JobState = "queued"
	JobLeased    JobState = "leased"
	JobDone      JobState = "done"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Final reports whether the state is an end state.
func (s JobState) Final() bool { return s == JobDone || s == JobFailed || s == JobCancelled }

// A Job is one piece of Terraform work in the queue that runners lease.
type Job struct {
	ID        string
	Kind      JobKind
	Workspace string
	// Subject is what the job is for: the proposal of a verify job, the
	// execution of an execute job; "" for a speculative plan.
	Subject string
	// Owner is who asked: the proposer of a verification, the agent of a
	// speculative plan; "" for an execution. A verify or plan job is
	// leased only while its owner holds no other lease: one agent's slow
	// plans take at most one runner slot.
	Owner string
	// ConfigDigest names the bundle, Vars the variables it is planned with.
	ConfigDigest string
	Vars         map[string]string
	State        JobState
	// Attempts counts the leases so far; a job that needed more than
	// MaxAttempts fails. Executions get one: they are never retried.
	Attempts, MaxAttempts int
	// Runner holds the lease until LeaseExpires; Token fences its writes:
	// a runner whose lease was lost can no longer change anything.
	Runner       string
	Token        int64
	LeaseExpires time.Time
	// NotBefore keeps a job queued to be tried again from being leased
	// before then (zero: at once).
	NotBefore time.Time
	// Phase is plan until the broker accepts an execution's plan, then
	// apply.
	Phase string
	// Result is the plan JSON of a verify or plan job.
	Result []byte
	// Error says why the job failed, was cancelled or was interrupted.
	Error     string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// A Hold keeps a workspace from executing until an admin reconciles it:
// an apply ended without seb being sure the state it holds is complete.
type Hold struct {
	Workspace string
	Execution string
	Reason    string
	Since     time.Time
}

package broker

import (
	"context"
	"time"

	"github.com/seb-broker/seb/drift"
)

// A Store keeps the broker's records. Implementations translate their
// driver's errors once: a missing row is ENOTFOUND, a violated uniqueness
// or a failed condition ECONFLICT; nothing else of the driver shows. All
// times are stored with at least millisecond precision, in UTC.
type Store interface {
	// PutBundle stores a configuration bundle under its digest; storing
	// the same digest twice is not an error.
	PutBundle(ctx context.Context, digest string, data []byte) error
	// Bundle returns a stored bundle, or ENOTFOUND.
	Bundle(ctx context.Context, digest string) ([]byte, error)

	// CreateProposal stores a new proposal; ECONFLICT if the id exists.
	CreateProposal(ctx context.Context, p *Proposal) error
	// Proposal returns a proposal, or ENOTFOUND.
	Proposal(ctx context.Context, id string) (*Proposal, error)
	// ProposerBundleBytes returns the total size of the distinct bundles
	// of proposer's proposals, and of the jobs it owns (its speculative
	// plans), created at or after since.
	ProposerBundleBytes(ctx context.Context, proposer string, since time.Time) (int64, error)
	// ListProposals returns proposals matching the filter, newest first.
	ListProposals(ctx context.Context, f ProposalFilter) ([]*Proposal, error)
	// CompleteVerification records the outcome of seb's plan of a
	// verifying proposal: its summary, digests, drift, divergence,
	// disclosure, state, reason and update time; ECONFLICT if it is not
	// verifying. (Its audit entry is appended in the same Tx.)
	CompleteVerification(ctx context.Context, p *Proposal) error
	// SetProposalState moves a proposal from state from to state to at
	// time at; ECONFLICT if it is not in state from.
	SetProposalState(ctx context.Context, id string, from, to ProposalState, at time.Time) error

	// AddReview stores a reviewer's verdict; ECONFLICT if that reviewer
	// already reviewed the proposal.
	AddReview(ctx context.Context, r Review) error
	// Reviews returns a proposal's reviews, oldest first.
	Reviews(ctx context.Context, proposalID string) ([]Review, error)

	// CreateCertificate stores an issued certificate.
	CreateCertificate(ctx context.Context, c *Certificate) error
	// Certificate returns a certificate, or ENOTFOUND.
	Certificate(ctx context.Context, id string) (*Certificate, error)
	// ProposalCertificate returns the certificate issued for a proposal,
	// or ENOTFOUND.
	ProposalCertificate(ctx context.Context, proposalID string) (*Certificate, error)
	// RevokeCertificate marks a certificate revoked; ECONFLICT if it
	// already is.
	RevokeCertificate(ctx context.Context, id, by string, at time.Time) error
	// ConsumeCertificate atomically marks the certificate used by the
	// execution and stores the execution: of any number of concurrent
	// calls for one certificate exactly one succeeds, the others get
	// ECONFLICT. A revoked certificate cannot be consumed (ECONFLICT).
	ConsumeCertificate(ctx context.Context, certificateID string, e *Execution) error

	// UpdateExecution stores an execution's new state, reason, divergence,
	// log ids and update time if it is in state from (ECONFLICT if not):
	// a final state is never overwritten.
	UpdateExecution(ctx context.Context, e *Execution, from ExecutionState) error
	// Execution returns an execution, or ENOTFOUND.
	Execution(ctx context.Context, id string) (*Execution, error)
	// ListExecutions returns executions matching the filter, newest first.
	ListExecutions(ctx context.Context, f ExecutionFilter) ([]*Execution, error)

	// PolicyEpoch returns the current policy epoch (0 before any).
	PolicyEpoch(ctx context.Context) (int64, error)
	// SetPolicyEpoch records the policy epoch for a configuration digest:
	// if digest differs from the last one recorded, the epoch is bumped.
	// It returns the current epoch.
	SetPolicyEpoch(ctx context.Context, configDigest string) (int64, error)
	// RevocationEpoch returns a workspace's revocation epoch (0 before any).
	RevocationEpoch(ctx context.Context, workspace string) (int64, error)
	// BumpRevocationEpoch increments it (revoke-all) and returns the new one.
	BumpRevocationEpoch(ctx context.Context, workspace string) (int64, error)

	// PutArtifact stores a signed artifact.
	PutArtifact(ctx context.Context, a *Artifact) error
	// Artifact returns an artifact, or ENOTFOUND.
	Artifact(ctx context.Context, id string) (*Artifact, error)

	// AppendAudit appends an entry to the audit log atomically: it calls
	// seal with the last entry (nil for the first) and stores the entry
	// seal returns, whose Seq must be the last Seq + 1. Concurrent appends
	// are serialized.
	AppendAudit(ctx context.Context, seal func(last *AuditEntry) (*AuditEntry, error)) (*AuditEntry, error)
	// LastAuditEntry returns the log's last entry, nil when it is empty.
	LastAuditEntry(ctx context.Context) (*AuditEntry, error)
	// AuditEntries returns up to limit entries with Seq > after, in order.
	AuditEntries(ctx context.Context, after int64, limit int) ([]*AuditEntry, error)

	// CreateAPIToken stores a token's record; ECONFLICT if the name is taken.
	CreateAPIToken(ctx context.Context, t *APIToken) error
	// APITokenByHash returns the token with that hash, or ENOTFOUND.
	APITokenByHash(ctx context.Context, hash string) (*APIToken, error)
	// APITokenByName returns the token named name, or ENOTFOUND.
	APITokenByName(ctx context.Context, name string) (*APIToken, error)
	// ListAPITokens returns every token's record, by name.
	ListAPITokens(ctx context.Context) ([]*APIToken, error)
	// DeleteAPIToken deletes the token named name: it no longer
	// authenticates. ENOTFOUND if there is none.
	DeleteAPIToken(ctx context.Context, name string) error

	// EnqueueJob stores a queued job; ECONFLICT if the id exists.
	EnqueueJob(ctx context.Context, j *Job) error
	// LeaseJob leases to runner, until now+ttl, the oldest job it may run:
	// a queued one whose NotBefore has come, or a verify or plan job whose lease expired with
	// attempts left. An execute job waits while another execute job of its
	// workspace is leased (one execution per workspace at a time) and
	// while its workspace is held; a verify or plan job waits while
	// another of its Owner's holds an unexpired lease. The
	// lease gets a fencing token greater than any before. ENOTFOUND when
	// there is nothing to run.
	LeaseJob(ctx context.Context, runner string, now time.Time, ttl time.Duration) (*Job, error)
	// UpdateJob stores a leased job's state, phase, result, error, lease
	// expiry and not-before, if j.Token still holds a lease that has not expired at
	// now; ECONFLICT otherwise (the lease was lost).
	UpdateJob(ctx context.Context, j *Job, now time.Time) error
	// RenewJob extends a leased job's lease to expires, if token still
	// holds it at now and it is leased to runner (or to one of its slots,
	// runner/slot; "" for any), changing nothing else, and returns the
	// job; ECONFLICT otherwise.
	RenewJob(ctx context.Context, id string, token int64, runner string, expires, now time.Time) (*Job, error)
	// EndJob moves a job that is not final to state (final) with reason,
	// whoever holds it; ECONFLICT if it already ended.
	EndJob(ctx context.Context, id string, state JobState, reason string, at time.Time) error
	// Job returns a job, or ENOTFOUND.
	Job(ctx context.Context, id string) (*Job, error)
	// StaleJobs returns the leased jobs whose lease ended before now.
	StaleJobs(ctx context.Context, now time.Time) ([]*Job, error)
	// AppendJobLog appends a chunk of a job's log for a phase, if token
	// holds the job's lease at now; ECONFLICT otherwise.
	AppendJobLog(ctx context.Context, id string, token int64, phase string, data []byte, now time.Time) error
	// JobLog returns a job's log of a phase, its chunks in order.
	JobLog(ctx context.Context, id, phase string) ([]byte, error)

	// HoldWorkspace holds a workspace for reconciliation; holding a held
	// one keeps the first hold.
	HoldWorkspace(ctx context.Context, h Hold) error
	// WorkspaceHold returns a workspace's hold, or ENOTFOUND.
	WorkspaceHold(ctx context.Context, workspace string) (*Hold, error)
	// ReleaseWorkspace ends a hold; ENOTFOUND if there is none.
	ReleaseWorkspace(ctx context.Context, workspace string) error

	// PutState stores state as a workspace's next version (serial 1, 2,
	// 3… per workspace) at time at, and returns that version. Inside the
	// Tx that checks a runner's lease, the lease fences the write.
	PutState(ctx context.Context, workspace string, state []byte, at time.Time) (drift.StateVersion, error)
	// CurrentState returns a workspace's latest state, nil when it has
	// none.
	CurrentState(ctx context.Context, workspace string) ([]byte, error)

	// CreateSession stores a UI session, and deletes the sessions that
	// expired before its creation.
	CreateSession(ctx context.Context, s *Session, now time.Time) error
	// Session returns the session with that id hash, ENOTFOUND when there
	// is none or it expired before now.
	Session(ctx context.Context, idHash string, now time.Time) (*Session, error)
	// DeleteSession ends a session; ending one that is gone is not an
	// error.
	DeleteSession(ctx context.Context, idHash string) error

	// Tx runs fn with a Store bound to one transaction and commits what fn
	// wrote through it if fn returns nil; an error of fn rolls it all back
	// and is returned as it is. Each method called inside fn is atomic on
	// its own (a failed one undoes only itself), a Tx inside fn joins the
	// outer one, and fn must use no other Store. A use case runs in one Tx
	// so that its decision and its audit entry commit together or not at
	// all.
	Tx(ctx context.Context, fn func(tx Store) error) error

	Close() error
}

// ProposalFilter selects proposals; zero fields match everything.
type ProposalFilter struct {
	Workspace string
	// Workspaces, when set, keeps only proposals of these workspaces.
	Workspaces []string
	State      ProposalState
	Proposer   string
	// OldestFirst orders by creation ascending; the default is newest
	// first.
	OldestFirst bool
	Limit       int
	// After, a proposal's id, starts the list just after it in the
	// order: the cursor of the next page. ENOTFOUND if there is none.
	After string
}

// ExecutionFilter selects executions; zero fields match everything.
type ExecutionFilter struct {
	Workspace     string
	CertificateID string
	// Running selects executions not in a final state.
	Running bool
	Limit   int
}

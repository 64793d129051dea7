package broker

import (
	"encoding/json"
	"time"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

// A Workspace is one target environment: how credentials reach Terraform,
// the drift rule, and what admission requires.
type Workspace struct {
	Name string
	// Credentials say how a run's credential reaches Terraform.
	Credentials CredentialProfile
	// DriftMode is the execution rule for drift (default or strict).
	DriftMode drift.Mode
	// CertificateLifetime is how long a certificate is valid by default.
	CertificateLifetime time.Duration
	// ApprovalsRequired is how many distinct reviewers must approve; 0
	// certifies automatically, unless a protected action is in the diff.
	ApprovalsRequired int
	// ProtectedActions always need a human (e.g. delete, replace).
	ProtectedActions []planparse.Action
	// AllowHiddenValues admits proposals whose configuration hides a
	// resource value the provider does not consider sensitive
	// (sensitive(), a sensitive variable). By default they are refused:
	// reviewers would certify a value they cannot see.
	AllowHiddenValues bool
	// Policy, when set, decides what is refused, who must approve and what
	// is certified without a human (package policy). Its digest is part of
	// the configuration's, so changing it moves the policy epoch.
	Policy *policy.Set
	// AutoCertifyProtected lets a policy's auto_certify certify a diff
	// with a protected action; without it a protected action always needs
	// a human.
	AutoCertifyProtected bool
}

// ProposalState is where a proposal stands.
type ProposalState string

// Proposal states. A proposal is verifying until seb's own plan of it is
// done, then pending until certified or rejected; a diverged proposal (the
// agent's plan is not seb's) can never be approved, and a refused one
// (seb's plan failed, or changes nothing) says why in Reason.
const (
	ProposalVerifying ProposalState = "verifying"
	ProposalRefused   ProposalState = "refused"
	ProposalPending   ProposalState = "pending"
	ProposalDiverged  ProposalState = "diverged"
	ProposalCertified ProposalState = "certified"
	ProposalRejected  ProposalState = "rejected"
)

// A Proposal is an agent's request to change a workspace: a configuration
// bundle and variables, and what seb's own plan of it says.
type Proposal struct {
	ID        string
	Workspace string
	// ConfigDigest identifies the bundle (sha256 of its gzip'd tar).
	ConfigDigest string
	Vars         map[string]string
	Rationale    string
	Proposer     string
	// Summary is seb's own plan of the bundle against live state: what
	// reviewers see and what gets certified. Digest is its digest, and
	// PlanDigest the sha256 of that plan's JSON.
	Summary    *planparse.Summary
	Digest     string
	PlanDigest string
	// Drift is the drift seb's plan found (changes made outside
	// Terraform since the last apply), which reviewers see.
	Drift []planparse.ResourceChange
	// AgentDigest is the digest of the plan the agent sent, if any;
	// Divergence how it differs from seb's (nil when it matches).
	AgentDigest string
	Divergence  *planparse.Divergence
	// Disclosure lists what reviewers cannot read in the diff: hidden
	// values and who hid them, values known only after apply and what
	// they come from (nil before verification).
	Disclosure *planparse.Disclosure
	// Policy is what the workspace's policy decided at verification (nil
	// without a policy).
	Policy *policy.Decision
	State  ProposalState
	// Reason says why a proposal was refused.
	Reason    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Decision is a reviewer's verdict.
type Decision string

// The two verdicts.
const (
	Approve Decision = "approve"
	Reject  Decision = "reject"
)

// A Review is one reviewer's verdict on a proposal.
type Review struct {
	ProposalID string
	Reviewer   string
	Decision   Decision
	Comment    string
	At         time.Time
	// Groups are the reviewer's groups when they reviewed.
	Groups []string
}

// An Approval, as a certificate records it.
type Approval struct {
	Reviewer string    `json:"reviewer"`
	At       time.Time `json:"at"`
}

// CertificatePayload is the statement a certificate's envelope signs.
type CertificatePayload struct {
	ID           string `json:"id"`
	Workspace    string `json:"workspace"`
	ProposalID   string `json:"proposal_id"`
	ConfigDigest string `json:"config_digest"`
	// VarsDigest binds the root module variables the diff was planned with.
	VarsDigest      string             `json:"vars_digest"`
	DiffDigest      string             `json:"diff_digest"`
	PlanDigest      string             `json:"plan_digest"`
	Summary         *planparse.Summary `json:"summary"`
	NotBefore       time.Time          `json:"not_before"`
	NotAfter        time.Time          `json:"not_after"`
	PolicyEpoch     int64              `json:"policy_epoch"`
	RevocationEpoch int64              `json:"revocation_epoch"`
	Approvals       []Approval         `json:"approvals"`
	IssuerKeyID     string             `json:"issuer_key_id"`
	SingleUse       bool               `json:"single_use"`
	// Drift is the drift the certified plan showed its reviewers: the same
	// drift at execution time is not new.
	Drift []planparse.ResourceChange `json:"drift,omitempty"`
	// Policy is what the workspace's policy decided when the certificate
	// was issued, naming the policy by digest (absent without a policy).
	Policy *policy.Decision `json:"policy,omitempty"`
}

// A Certificate is a signed statement that one exact diff may be applied
// to a workspace, within a validity window, once.
type Certificate struct {
	CertificatePayload
	// Envelope is the DSSE envelope (JSON) whose payload is the statement.
	Envelope []byte
	// RevokedAt is set when the certificate was revoked, by RevokedBy.
	RevokedAt *time.Time
	RevokedBy string
	// ConsumedBy is the execution that used the certificate, if any.
	ConsumedBy string
}

// ExecutionState is where an execution stands.
type ExecutionState string

// Execution states: queued → verifying → planning → comparing → applying →
// one of succeeded, refused, failed, interrupted (the broker died
// mid-run; never silently retried).
const (
	ExecutionQueued    ExecutionState = "queued"
	ExecutionVerifying ExecutionState = "verifying"
	ExecutionPlanning  ExecutionState = "planning"
	ExecutionComparing ExecutionState = "comparing"
	ExecutionApplying  ExecutionState = "applying"
	ExecutionSucceeded ExecutionState = "succeeded"
	// ExecutionRefused: seb refused to apply, because the live plan was
	// not the certified diff or the certificate no longer stood. (A
	// reviewer rejects a proposal; seb refuses.)
	ExecutionRefused     ExecutionState = "refused"
	ExecutionFailed      ExecutionState = "failed"
	ExecutionInterrupted ExecutionState = "interrupted"
)

// Final reports whether the state is an end state.
func (s ExecutionState) Final() bool {
	switch s {
	case ExecutionSucceeded, ExecutionRefused, ExecutionFailed, ExecutionInterrupted:
		return true
	}
	return false
}

// An Execution is one attempt to apply a certificate's diff.
type Execution struct {
	ID            string
	CertificateID string
	Workspace     string
	State         ExecutionState
	// Reason says why it was refused, failed or interrupted.
	Reason string
	// Divergence is the decision's detail on refusal (JSON of
	// drift.Decision).
	Divergence json.RawMessage
	// PlanLogID and ApplyLogID name the signed log artifacts.
	PlanLogID  string
	ApplyLogID string
	StartedAt  time.Time
	UpdatedAt  time.Time
}

// An Artifact is a stored, signed blob: an execution's plan or apply log.
type Artifact struct {
	ID   string
	Kind string // "plan-log", "apply-log", "plan-json", "agent-plan"
	// Digest is sha256:<hex> of Data; Signature is the DSSE signature
	// (ed25519, base64) of Kind's payload type and Data with the key
	// KeyID: Envelope is the artifact as a DSSE envelope.
	Digest    string
	Data      []byte
	Signature string
	KeyID     string
	CreatedAt time.Time
}

// An AuditEntry is one link of the hash-chained, signed audit log.
type AuditEntry struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Subject string    `json:"subject"`
	// DetailsDigest is sha256:<hex> of the entry's details (canonical
	// JSON), kept beside it.
	DetailsDigest string          `json:"details_digest"`
	Details       json.RawMessage `json:"details,omitempty"`
	PrevHash      string          `json:"prev_hash"`
	Hash          string          `json:"hash"`
	Signature     string          `json:"signature"`
	KeyID         string          `json:"key_id"`
}

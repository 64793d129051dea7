package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/seb-broker/seb/drift"
)

// A Leader elects one of the brokers sharing a store to run the
// background work.
type Leader interface {
	// Lead reports whether this broker leads now, taking the lead when
	// nobody holds it.
	Lead(ctx context.Context) bool
}

// Options configure the broker's services.
type Options struct {
	// Store keeps the broker's records, workspaces' Terraform state
	// included.
	Store Store
	// Leader, when set, says whether this broker leads the brokers sharing
	// its store, and so runs the background sweeps (one at a time; when
	// the leader dies another takes over). Nil: it always does.
	Leader Leader
	// JobLease is how long a runner's lease on a job lasts without a
	// heartbeat; 0 means 30 seconds.
	JobLease time.Duration
	// BundleLimits bound what a bundle may unpack to; zero means
	// drift.DefaultBundleLimits.
	BundleLimits drift.BundleLimits
	// MaxVerifying is how many of one agent's proposals may wait for
	// seb's plan at once; more are refused (EBUSY). 0 means 8.
	MaxVerifying int
	// MaxAgentBundleBytes is how many bytes of bundles one agent may
	// store in 24 hours; more is refused (EBUSY). 0 means 1 GiB.
	MaxAgentBundleBytes int64
	// Signer signs certificates, logs and the audit log.
	Signer *Signer
	// Issuer mints the scoped credentials of each run.
	Issuer *Issuer
	// Workspaces are the configured workspaces.
	Workspaces []Workspace
	// SensitiveKey is the HMAC key of summaries; it must be the runner's.
	SensitiveKey []byte
	// ClockSkew is allowed around a certificate's validity window.
	ClockSkew time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
}

// Valid reports whether the options can be used.
func (o Options) Valid() error {
	switch {
	case o.Store == nil:
		return errors.New("broker: Options.Store is nil")
	case o.JobLease < 0:
		return errors.New("broker: Options.JobLease is negative")
	case o.Signer == nil:
		return errors.New("broker: Options.Signer is nil")
	case o.Issuer == nil:
		return errors.New("broker: Options.Issuer is nil")
	case len(o.SensitiveKey) == 0:
		return errors.New("broker: Options.SensitiveKey is empty")
	case o.ClockSkew < 0 || o.ClockSkew > 5*time.Minute:
		return errors.New("broker: Options.ClockSkew must be between 0 and 5m")
	}
	return nil
}

// Service holds the admission (SAB) and execution (SEB) services over one
// store and signer; runners do the Terraform work it queues.
type Service struct {
	opts       Options
	workspaces map[string]Workspace
	queue      jobQueue
	// loaded is the policy epoch of the configuration LoadPolicy recorded
	// (0 before any).
	loaded atomic.Int64
}

// New returns the broker's services.
func New(opts Options) (*Service, error) {
	if err := opts.Valid(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.JobLease == 0 {
		opts.JobLease = 30 * time.Second
	}
	if opts.MaxAgentBundleBytes == 0 {
		opts.MaxAgentBundleBytes = 1 << 30
	}
	if opts.MaxVerifying == 0 {
		opts.MaxVerifying = 8
	}
	b := &Service{opts: opts, workspaces: map[string]Workspace{}}
	for _, w := range opts.Workspaces {
		if err := drift.ValidWorkspace(w.Name); err != nil {
			return nil, err
		}
		b.workspaces[w.Name] = w
	}
	return b, nil
}

// Workspace returns a configured workspace, or ENOTFOUND.
func (b *Service) Workspace(name string) (Workspace, error) {
	w, ok := b.workspaces[name]
	if !ok {
		return Workspace{}, Errorf(ENOTFOUND, "no workspace %q", name)
	}
	return w, nil
}

// Workspaces returns the configured workspaces.
func (b *Service) Workspaces() []Workspace { return slices.Clone(b.opts.Workspaces) }

// PublicKey returns, as PEM, the keys that verify certificates, logs,
// checkpoints and the audit log: the signer's current key first, then
// those it replaced.
func (b *Service) PublicKey() []byte { return b.opts.Signer.PublicKeysPEM() }

func (b *Service) now() time.Time { return b.opts.Now().UTC() }

// newID returns a random id with a prefix, e.g. "cert-3f9a…".
func newID(prefix string) string {
	var buf [12]byte
	rand.Read(buf[:])
	return prefix + "-" + hex.EncodeToString(buf[:])
}

// auditEntry returns an audit entry for a decision, ready to be sealed.
func (b *Service) auditEntry(actor, action, subject string, details any) (AuditEntry, error) {
	raw, err := json.Marshal(details)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("audit %s: %w", action, err)
	}
	return AuditEntry{Time: b.now(), Actor: actor, Action: action, Subject: subject, Details: raw}, nil
}

// audit appends a decision to the signed, hash-chained audit log.
func (b *Service) audit(ctx context.Context, st Store, actor, action, subject string, details any) error {
	entry, err := b.auditEntry(actor, action, subject, details)
	if err != nil {
		return err
	}
	_, err = st.AppendAudit(ctx, func(last *AuditEntry) (*AuditEntry, error) {
		return b.opts.Signer.SealAudit(last, entry)
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

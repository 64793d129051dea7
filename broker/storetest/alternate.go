package storetest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/seb-broker/seb/broker"
)

// Alternate is two Stores on one database, as two broker processes (two
// replicas, or a broker and an admin command) hold it: the atomic methods
// alternate between them, so the conformance suite's concurrency tests
// contend through the database's locks and not only through one Store's
// connections. The rest goes to a.
func Alternate(a, b broker.Store) broker.Store {
	return &alternate{Store: a, other: b}
}

type alternate struct {
	broker.Store
	other broker.Store
	n     atomic.Int64
}

func (s *alternate) pick() broker.Store {
	if s.n.Add(1)%2 == 0 {
		return s.other
	}
	return s.Store
}

func (s *alternate) ConsumeCertificate(ctx context.Context, certificateID string, e *broker.Execution) error {
	return s.pick().ConsumeCertificate(ctx, certificateID, e)
}

func (s *alternate) AppendAudit(ctx context.Context, seal func(*broker.AuditEntry) (*broker.AuditEntry, error)) (*broker.AuditEntry, error) {
	return s.pick().AppendAudit(ctx, seal)
}

func (s *alternate) SetPolicyEpoch(ctx context.Context, digest string) (int64, error) {
	return s.pick().SetPolicyEpoch(ctx, digest)
}

func (s *alternate) BumpRevocationEpoch(ctx context.Context, workspace string) (int64, error) {
	return s.pick().BumpRevocationEpoch(ctx, workspace)
}

func (s *alternate) LeaseJob(ctx context.Context, runner string, now time.Time, ttl time.Duration) (*broker.Job, error) {
	return s.pick().LeaseJob(ctx, runner, now, ttl)
}

func (s *alternate) Tx(ctx context.Context, fn func(broker.Store) error) error {
	return s.pick().Tx(ctx, fn)
}

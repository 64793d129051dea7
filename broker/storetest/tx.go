package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/seb-broker/seb/broker"
)

// testTx: what a function writes through Tx's store commits all together
// or not at all, it reads its own writes, a failed method inside undoes
// only itself, and nothing shows outside before the commit.
func testTx(t *testing.T, s broker.Store) {
	ctx := context.Background()
	withProposal(t, s, "prop-1")

	// An error rolls back everything the function wrote, the audit entry
	// included, and comes back as it is.
	boom := errors.New("boom")
	err := s.Tx(ctx, func(tx broker.Store) error {
		must(t, "SetProposalState", tx.SetProposalState(ctx, "prop-1", broker.ProposalPending, broker.ProposalCertified, at(1)))
		must(t, "CreateCertificate", tx.CreateCertificate(ctx, certificate(t, "cert-1", "prop-1")))
		if _, err := tx.AppendAudit(ctx, seal("alice", 1)); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
		// Its own writes are visible to it.
		if p, err := tx.Proposal(ctx, "prop-1"); err != nil || p.State != broker.ProposalCertified {
			t.Fatalf("inside: proposal %+v, %v", p, err)
		}
		if _, err := tx.Certificate(ctx, "cert-1"); err != nil {
			t.Fatalf("inside: certificate: %v", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx returned %v, want the function's error", err)
	}
	if p, err := s.Proposal(ctx, "prop-1"); err != nil || p.State != broker.ProposalPending {
		t.Fatalf("after rollback: proposal %+v, %v", p, err)
	}
	_, err = s.Certificate(ctx, "cert-1")
	wantCode(t, "Certificate after rollback", err, broker.ENOTFOUND, "cert-1")
	if entries, err := s.AuditEntries(ctx, 0, 10); err != nil || len(entries) != 0 {
		t.Fatalf("after rollback: %d audit entries, %v", len(entries), err)
	}

	// A failed method undoes only itself: the function may go on.
	err = s.Tx(ctx, func(tx broker.Store) error {
		must(t, "SetProposalState", tx.SetProposalState(ctx, "prop-1", broker.ProposalPending, broker.ProposalCertified, at(2)))
		err := tx.SetProposalState(ctx, "prop-1", broker.ProposalPending, broker.ProposalRejected, at(2))
		wantCode(t, "SetProposalState from a state it left", err, broker.ECONFLICT, "prop-1")
		err = tx.CreateProposal(ctx, proposal(t, "prop-1", 0))
		wantCode(t, "CreateProposal of an existing id", err, broker.ECONFLICT, "prop-1")
		must(t, "CreateCertificate", tx.CreateCertificate(ctx, certificate(t, "cert-1", "prop-1")))
		// A nested Tx joins this one.
		return tx.Tx(ctx, func(inner broker.Store) error {
			_, err := inner.AppendAudit(ctx, seal("alice", 2))
			return err
		})
	})
	must(t, "Tx", err)
	if p, err := s.Proposal(ctx, "prop-1"); err != nil || p.State != broker.ProposalCertified {
		t.Fatalf("after commit: proposal %+v, %v", p, err)
	}
	if _, err := s.Certificate(ctx, "cert-1"); err != nil {
		t.Fatalf("after commit: certificate: %v", err)
	}
	if entries, err := s.AuditEntries(ctx, 0, 10); err != nil || len(entries) != 1 {
		t.Fatalf("after commit: %d audit entries, %v", len(entries), err)
	}

	// A reader outside never sees what is not committed.
	withProposal(t, s, "prop-2")
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Tx(ctx, func(tx broker.Store) error {
			if err := tx.SetProposalState(ctx, "prop-2", broker.ProposalPending, broker.ProposalRejected, at(3)); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	p, err := s.Proposal(ctx, "prop-2")
	close(release)
	if err != nil || p.State != broker.ProposalPending {
		t.Errorf("outside, before the commit: proposal %+v, %v", p, err)
	}
	must(t, "Tx", <-done)
	if p, err := s.Proposal(ctx, "prop-2"); err != nil || p.State != broker.ProposalRejected {
		t.Fatalf("outside, after the commit: proposal %+v, %v", p, err)
	}
}

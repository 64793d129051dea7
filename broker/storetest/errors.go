package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

// DriverErrorsHidden checks that the errors the contract names reach the
// caller as broker errors, never as the driver's: a duplicate is
// ECONFLICT, a dangling reference ENOTFOUND naming what it refers to, a
// missing record ENOTFOUND. leaks reports whether an error is or wraps the
// driver's own type. It leaves proposal p1 pending, for the store's own
// checks of what only it can cause (a lock held past a timeout).
func DriverErrorsHidden(t *testing.T, s broker.Store, leaks func(error) bool) {
	t.Helper()
	ctx := context.Background()
	hidden := func(what string, err error) {
		t.Helper()
		if leaks(err) {
			t.Errorf("%s: error %v leaks the driver's own error type", what, err)
		}
	}
	p := &broker.Proposal{ID: "p1", Workspace: "w", State: broker.ProposalPending, CreatedAt: time.Now()}
	if err := s.CreateProposal(ctx, p); err != nil {
		t.Fatal(err)
	}
	err := s.CreateProposal(ctx, p)
	hidden("duplicate proposal", err)
	if broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("duplicate proposal: %v, want ECONFLICT", err)
	}
	err = s.AddReview(ctx, broker.Review{ProposalID: "p-missing", Reviewer: "alice", Decision: broker.Approve})
	hidden("review of a missing proposal", err)
	if broker.ErrorCode(err) != broker.ENOTFOUND || !strings.Contains(broker.ErrorMessage(err), "p-missing") {
		t.Errorf("review of a missing proposal: %v, want ENOTFOUND naming it", err)
	}
	_, err = s.Proposal(ctx, "p-missing")
	hidden("missing proposal", err)
	if broker.ErrorCode(err) != broker.ENOTFOUND {
		t.Errorf("missing proposal: %v, want ENOTFOUND", err)
	}
}

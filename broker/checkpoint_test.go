package broker_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

// TestCheckpoints: a checkpoint verifies with the public key alone; a log
// cut below a checkpoint saved earlier, or rewritten up to it (even by
// someone holding the key), fails against it, though its chain verifies.
func TestCheckpoints(t *testing.T) {
	s := newTestSigner(t)
	chain := sealAuditChain(t, s, 6)
	at5 := broker.Checkpoint{Count: 5, Head: chain[4].Hash, Time: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	env, err := s.SignCheckpoint(at5)
	if err != nil {
		t.Fatal(err)
	}
	c, err := broker.VerifyCheckpoint(env, s.PublicKey())
	if err != nil || c.Count != 5 || c.Head != chain[4].Hash || c.KeyID != s.KeyID() {
		t.Fatalf("VerifyCheckpoint = %+v, %v", c, err)
	}
	if _, err := broker.VerifyCheckpoint(env, newTestSigner(t).PublicKey()); broker.ErrorCode(err) != broker.EINVALID {
		t.Errorf("another key: %v", err)
	}
	forged := strings.Replace(string(env), `"payload":"`, `"payload":"x`, 1)
	if _, err := broker.VerifyCheckpoint([]byte(forged), s.PublicKey()); broker.ErrorCode(err) != broker.EINVALID {
		t.Errorf("a changed payload: %v", err)
	}

	if n, head, err := broker.VerifyAuditAgainst(auditEntriesOf(chain), s.PublicKeys(), c); err != nil || n != 6 || head != chain[5].Hash {
		t.Errorf("the whole log: %d, %s, %v", n, head, err)
	}
	// Cut to 3 entries: the chain verifies, the checkpoint does not.
	if n, err := broker.VerifyAudit(auditEntriesOf(chain[:3]), s.PublicKey()); n != 3 || err != nil {
		t.Fatalf("a cut chain alone: %d, %v", n, err)
	}
	var brk *broker.CheckpointBreak
	if _, _, err := broker.VerifyAuditAgainst(auditEntriesOf(chain[:3]), s.PublicKeys(), c); !errors.As(err, &brk) || !strings.Contains(err.Error(), "it was cut") {
		t.Errorf("cut below the checkpoint: %v", err)
	}
	// Cut to exactly the checkpoint: still holds.
	if _, _, err := broker.VerifyAuditAgainst(auditEntriesOf(chain[:5]), s.PublicKeys(), c); err != nil {
		t.Errorf("cut at the checkpoint: %v", err)
	}
	// Another history, sealed with the same key: rewritten.
	other := sealAuditChain(t, s, 7)
	other[1].Details = json.RawMessage(`{}`)
	other = resealed(t, s, other)
	if _, _, err := broker.VerifyAuditAgainst(auditEntriesOf(other), s.PublicKeys(), c); !errors.As(err, &brk) || !strings.Contains(err.Error(), "rewritten") {
		t.Errorf("rewritten: %v", err)
	}
}

// resealed seals the entries again, in order, as someone holding the key
// can: a consistent chain with another history.
func resealed(t *testing.T, s *broker.Signer, entries []*broker.AuditEntry) []*broker.AuditEntry {
	t.Helper()
	var out []*broker.AuditEntry
	var last *broker.AuditEntry
	for _, e := range entries {
		sealed, err := s.SealAudit(last, broker.AuditEntry{Time: e.Time, Actor: e.Actor, Action: e.Action, Subject: e.Subject + "-x", Details: e.Details})
		if err != nil {
			t.Fatal(err)
		}
		out, last = append(out, sealed), sealed
	}
	return out
}

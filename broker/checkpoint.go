package broker

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"

	"fmt"

	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// A chain alone cannot show that its tail was cut: the entries before the
// cut still verify. A checkpoint, like a transparency log's signed tree
// head, is the broker's signed statement of how long the log was and what
// its last entry's hash was. Whoever saved one earlier can prove a later
// log holds at least that many entries, the same up to there.

// CheckpointPayloadType is the DSSE payload type of a checkpoint.
const CheckpointPayloadType = "application/vnd.seb.checkpoint+json"

// A Checkpoint is the audit log's length and head at a time.
type Checkpoint struct {
	// Count is the number of entries; Head the hash of the last one
	// (AuditGenesisHash for an empty log).
	Count int64     `json:"count"`
	Head  string    `json:"head"`
	Time  time.Time `json:"time"`
	KeyID string    `json:"key_id"`
}

// SignCheckpoint returns c as a DSSE envelope signed by s.
func (s *Signer) SignCheckpoint(c Checkpoint) ([]byte, error) {
	c.Time, c.KeyID = c.Time.UTC().Truncate(time.Second), s.keyID
	payload, err := canonicalJSONOf(c)
	if err != nil {
		return nil, err
	}
	signer, err := dsse.NewEnvelopeSigner(s.DSSE())
	if err != nil {
		return nil, err
	}
	env, err := signer.SignPayload(context.Background(), CheckpointPayloadType, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(env)
}

// VerifyCheckpoint checks a checkpoint envelope with pub alone.
func VerifyCheckpoint(envelope []byte, keys ...ed25519.PublicKey) (*Checkpoint, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil || env.PayloadType != CheckpointPayloadType {
		return nil, Errorf(EINVALID, "not a checkpoint envelope")
	}
	verified := false
	for _, pub := range keys {
		verifier, err := dsse.NewEnvelopeVerifier(verifierOf(pub))
		if err != nil {
			return nil, err
		}
		if _, err := verifier.Verify(context.Background(), &env); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, Errorf(EINVALID, "the checkpoint's signature is not %s's", keyIDs(keys))
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, Errorf(EINVALID, "the checkpoint's payload is not base64")
	}
	var c Checkpoint
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Count < 0 || !sha256DigestPattern.MatchString(c.Head) {
		return nil, Errorf(EINVALID, "the checkpoint's payload is malformed")
	}
	return &c, nil
}

// Checkpoint signs the audit log's current length and head.
func (b *Service) Checkpoint(ctx context.Context) ([]byte, *Checkpoint, error) {
	c := Checkpoint{Head: AuditGenesisHash, Time: b.now()}
	last, err := b.opts.Store.LastAuditEntry(ctx)
	if err != nil {
		return nil, nil, err
	}
	if last != nil {
		c.Count, c.Head = last.Seq, last.Hash
	}
	env, err := b.opts.Signer.SignCheckpoint(c)
	if err != nil {
		return nil, nil, err
	}
	c.KeyID = b.opts.Signer.KeyID()
	return env, &c, nil
}

// A CheckpointBreak says how a log fails a checkpoint saved earlier.
type CheckpointBreak struct{ Reason string }

func (b *CheckpointBreak) Error() string { return b.Reason }

// VerifyAuditAgainst verifies an audit log as VerifyAudit does and, for
// each checkpoint, that the log reaches its count and that its entry at
// that count has the checkpoint's head: a log cut below a checkpoint, or
// rewritten up to it, fails with a *CheckpointBreak.
func VerifyAuditAgainst(next func() (*AuditEntry, error), keys []ed25519.PublicKey, checkpoints ...*Checkpoint) (int64, string, error) {
	heads := map[int64]string{}
	for _, c := range checkpoints {
		heads[c.Count] = c.Head
	}
	head := AuditGenesisHash
	seen := map[int64]string{0: AuditGenesisHash}
	count, err := VerifyAudit(func() (*AuditEntry, error) {
		e, err := next()
		if e != nil && err == nil {
			if _, ok := heads[e.Seq]; ok {
				seen[e.Seq] = e.Hash
			}
			head = e.Hash
		}
		return e, err
	}, keys...)
	if err != nil {
		return count, head, err
	}
	for _, c := range checkpoints {
		got, ok := seen[c.Count]
		switch {
		case !ok || count < c.Count:
			return count, head, &CheckpointBreak{Reason: fmt.Sprintf("the log has %d entries, but a checkpoint of %s says it had %d: it was cut", count, c.Time.Format(time.RFC3339), c.Count)}
		case got != c.Head:
			return count, head, &CheckpointBreak{Reason: fmt.Sprintf("entry %d's hash is not the head of the checkpoint of %s: the log was rewritten", c.Count, c.Time.Format(time.RFC3339))}
		}
	}
	return count, head, nil
}

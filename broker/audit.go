package broker

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// AuditGenesisHash is the previous hash of the first audit entry.
const AuditGenesisHash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

// maxAuditLineBytes bounds one line of an audit log in JSON Lines.
const maxAuditLineBytes = 16 << 20

// auditHashInput is what an audit entry's hash covers: its canonical JSON
// (RFC 8785), e.g.
//
//	{"action":"certificate.issued","actor":"seb","details_digest":"sha256:…","prev_hash":"sha256:…","seq":7,"subject":"cert-…","time":"2030-01-02T03:04:05.123456Z"}
//
// with time in UTC, RFC 3339 with up to microseconds (trailing zeros
// dropped, as time.RFC3339Nano writes it).
type auditHashInput struct {
	Seq           int64  `json:"seq"`
	Time          string `json:"time"`
	Actor         string `json:"actor"`
	Action        string `json:"action"`
	Subject       string `json:"subject"`
	DetailsDigest string `json:"details_digest"`
	PrevHash      string `json:"prev_hash"`
}

// auditHash returns "sha256:<hex>" of the canonical JSON of e's hashed
// fields.
func auditHash(e *AuditEntry) (string, error) {
	data, err := canonicalJSONOf(auditHashInput{
		Seq:           e.Seq,
		Time:          e.Time.UTC().Format(time.RFC3339Nano),
		Actor:         e.Actor,
		Action:        e.Action,
		Subject:       e.Subject,
		DetailsDigest: e.DetailsDigest,
		PrevHash:      e.PrevHash,
	})
	if err != nil {
		return "", err
	}
	return sha256DigestOf(data), nil
}

// SealAudit returns e as the audit entry that follows last (nil when e is
// the first): Seq is last.Seq+1 (1 for the first); PrevHash is last.Hash
// (AuditGenesisHash for the first); Time is e.Time in UTC truncated to
// microseconds; Details are e.Details in canonical JSON (RFC 8785), "{}"
// when empty or null, and DetailsDigest is "sha256:<hex>" of them; Hash is
// "sha256:<hex>" of the canonical JSON of seq, time, actor, action,
// subject, details_digest and prev_hash; Signature is the base64 ed25519
// signature of the Hash string; KeyID is s.KeyID(). e's own Seq, hashes
// and signature are ignored.
//
// It is the seal function Store.AppendAudit takes, once e is bound:
//
//	func(last *AuditEntry) (*AuditEntry, error) { return s.SealAudit(last, e) }
//
// SealAudit returns an EINVALID error if e has no time, actor or action or
// its details are not a JSON object, and an error if last has no sequence
// number or hash.
func (s *Signer) SealAudit(last *AuditEntry, e AuditEntry) (*AuditEntry, error) {
	switch {
	case e.Time.IsZero():
		return nil, Errorf(EINVALID, "audit entry has no time")
	case e.Actor == "":
		return nil, Errorf(EINVALID, "audit entry has no actor")
	case e.Action == "":
		return nil, Errorf(EINVALID, "audit entry has no action")
	}
	sealed := &AuditEntry{
		Seq:      1,
		Time:     e.Time.UTC().Truncate(time.Microsecond),
		Actor:    e.Actor,
		Action:   e.Action,
		Subject:  e.Subject,
		PrevHash: AuditGenesisHash,
		KeyID:    s.keyID,
	}
	if last != nil {
		if last.Seq < 1 || !sha256DigestPattern.MatchString(last.Hash) {
			return nil, fmt.Errorf("seal audit entry: the last entry (seq %d) has no valid sequence number or hash", last.Seq)
		}
		sealed.Seq = last.Seq + 1
		sealed.PrevHash = last.Hash
	}
	details := bytes.TrimSpace(e.Details)
	if len(details) == 0 || string(details) == "null" {
		details = []byte("{}")
	}
	details, err := canonicalizeJSON(details)
	if err != nil {
		return nil, Errorf(EINVALID, "audit entry details: %v", err)
	}
	if details[0] != '{' {
		return nil, Errorf(EINVALID, "audit entry details are not a JSON object")
	}
	sealed.Details = details
	sealed.DetailsDigest = sha256DigestOf(details)
	if sealed.Hash, err = auditHash(sealed); err != nil {
		return nil, fmt.Errorf("seal audit entry: %w", err)
	}
	sealed.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(s.private, []byte(sealed.Hash)))
	return sealed, nil
}

// An AuditBreak is where an audit log stops verifying: the sequence number
// the entry at that position should have, and why it does not verify.
type AuditBreak struct {
	Seq    int64
	Reason string
}

// Error returns e.g. "audit entry 7: hash does not match its contents".
func (b *AuditBreak) Error() string {
	return fmt.Sprintf("audit entry %d: %s", b.Seq, b.Reason)
}

// VerifyAudit reads an audit log with next, in order, until next returns
// io.EOF, and returns how many entries verified. Each entry must have the
// next sequence number (from 1), link to the previous entry's hash (the
// first to AuditGenesisHash), have details (every sealed entry has them)
// matching their digest, a hash matching its contents, and pub's
// signature of that hash. Any change, deletion, insertion or reordering of
// entries breaks one of these at the first entry affected.
//
// At the first entry that fails, VerifyAudit returns the count of entries
// before it and an *AuditBreak whose Seq is the position's expected
// sequence number: for a deleted entry, its own Seq; for two swapped
// entries, the Seq of the first; for an inserted one, the Seq it claims
// (or the position it took). An error from next is returned as it is.
//
// A log cut short after its last good entry still verifies: compare the
// count with the head you expect (the store's last Seq, or one recorded
// elsewhere) to detect truncation.
//
// keys are the signer's public keys, current and retired: an entry must
// be signed by the key its KeyID names, one of them, so a log that spans a
// rotation verifies.
func VerifyAudit(next func() (*AuditEntry, error), keys ...ed25519.PublicKey) (count int64, err error) {
	prevHash := AuditGenesisHash
	for {
		e, err := next()
		if errors.Is(err, io.EOF) {
			return count, nil
		}
		if err != nil {
			return count, err
		}
		seq := count + 1
		if reason := auditEntryProblem(e, seq, prevHash, keys); reason != "" {
			return count, &AuditBreak{Seq: seq, Reason: reason}
		}
		count, prevHash = seq, e.Hash
	}
}

// auditEntryProblem returns why e cannot be the entry seq of a log whose
// previous entry has hash prevHash, or "".
func auditEntryProblem(e *AuditEntry, seq int64, prevHash string, keys []ed25519.PublicKey) string {
	if e == nil {
		return "missing"
	}
	if e.Seq != seq {
		return fmt.Sprintf("sequence number is %d: entries are missing, inserted or out of order", e.Seq)
	}
	if e.PrevHash != prevHash {
		if seq == 1 {
			return "previous hash is not the genesis hash"
		}
		return fmt.Sprintf("previous hash does not match the hash of entry %d", seq-1)
	}
	// Every sealed entry has details ("{}" at least): missing details are
	// erased details, never an option.
	if len(bytes.TrimSpace(e.Details)) == 0 || string(bytes.TrimSpace(e.Details)) == "null" {
		return "details are missing: they were erased"
	}
	details, err := canonicalizeJSON(e.Details)
	if err != nil {
		return "details are not valid JSON"
	}
	if sha256DigestOf(details) != e.DetailsDigest {
		return "details do not match their digest"
	}
	hash, err := auditHash(e)
	if err != nil || hash != e.Hash {
		return "hash does not match its contents"
	}
	pub := keyByID(keys, e.KeyID)
	if pub == nil {
		return fmt.Sprintf("signed by key %q, not %s", e.KeyID, keyIDs(keys))
	}
	if !verifyBase64Signature(pub, []byte(e.Hash), e.Signature) {
		return "signature is invalid"
	}
	return ""
}

// WriteAuditJSONL writes entries to w as JSON Lines: one entry per line,
// as AuditEntry's JSON, what AuditJSONLReader reads.
func WriteAuditJSONL(w io.Writer, entries []*AuditEntry) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i, e := range entries {
		if e == nil {
			return fmt.Errorf("write audit log: entry %d is nil", i)
		}
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("write audit log: entry %d: %w", e.Seq, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write audit log: %w", err)
	}
	return nil
}

// AuditJSONLReader returns a function that reads the next entry of an
// audit log in JSON Lines from r, for VerifyAudit; it returns io.EOF at the
// end. A line that is empty, too long (over 16 MiB), not JSON, or has
// members an AuditEntry does not is an *AuditBreak naming the line, with
// the Seq that follows the previous line's. A read error is returned
// wrapped. After an error, every call returns it again.
func AuditJSONLReader(r io.Reader) func() (*AuditEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxAuditLineBytes)
	var line, lastSeq int64
	var failed error
	bad := func(reason string, args ...any) error {
		return &AuditBreak{Seq: lastSeq + 1, Reason: fmt.Sprintf("line %d ", line) + fmt.Sprintf(reason, args...)}
	}
	read := func() (*AuditEntry, error) {
		if !sc.Scan() {
			switch err := sc.Err(); {
			case err == nil:
				return nil, io.EOF
			case errors.Is(err, bufio.ErrTooLong):
				line++
				return nil, bad("is longer than %d bytes", maxAuditLineBytes)
			default:
				return nil, fmt.Errorf("read audit log after line %d: %w", line, err)
			}
		}
		line++
		text := sc.Bytes()
		if len(bytes.TrimSpace(text)) == 0 {
			return nil, bad("is empty")
		}
		var e AuditEntry
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, bad("is not an audit entry: %v", err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, bad("is not an audit entry: data after the entry")
		}
		lastSeq = e.Seq
		return &e, nil
	}
	return func() (*AuditEntry, error) {
		if failed != nil {
			return nil, failed
		}
		e, err := read()
		if err != nil {
			failed = err
		}
		return e, err
	}
}

package broker_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

const auditTestLength = 10

// auditTestEntry is the unsealed entry i of a test chain: its time has
// nanoseconds, its details spacing and an unsorted key order.
func auditTestEntry(i int) broker.AuditEntry {
	return broker.AuditEntry{
		Time:    time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CET", 3600)).Add(time.Duration(i) * time.Second),
		Actor:   fmt.Sprintf("user-%d", i),
		Action:  "proposal.approved",
		Subject: fmt.Sprintf("prop-%d", i),
		Details: json.RawMessage(fmt.Sprintf(`{ "n": %d, "b": "<x>" }`, i)),
	}
}

// sealAuditChain returns a chain of n entries sealed by s.
func sealAuditChain(t *testing.T, s *broker.Signer, n int) []*broker.AuditEntry {
	t.Helper()
	var chain []*broker.AuditEntry
	var last *broker.AuditEntry
	for i := range n {
		e, err := s.SealAudit(last, auditTestEntry(i))
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, e)
		last = e
	}
	return chain
}

// cloneAuditChain copies the entries, so a test can change them.
func cloneAuditChain(chain []*broker.AuditEntry) []*broker.AuditEntry {
	out := make([]*broker.AuditEntry, len(chain))
	for i, e := range chain {
		c := *e
		c.Details = bytes.Clone(e.Details)
		out[i] = &c
	}
	return out
}

// auditEntriesOf returns a VerifyAudit reader of entries.
func auditEntriesOf(entries []*broker.AuditEntry) func() (*broker.AuditEntry, error) {
	i := 0
	return func() (*broker.AuditEntry, error) {
		if i == len(entries) {
			return nil, io.EOF
		}
		i++
		return entries[i-1], nil
	}
}

// requireAuditBreak fails unless err is an *AuditBreak at seq whose reason
// contains reason, and count is seq-1.
func requireAuditBreak(t *testing.T, count int64, err error, seq int64, reason string) {
	t.Helper()
	var b *broker.AuditBreak
	if !errors.As(err, &b) {
		t.Fatalf("VerifyAudit = %d, %v; want an AuditBreak at %d", count, err, seq)
	}
	if b.Seq != seq || !strings.Contains(b.Reason, reason) {
		t.Fatalf("VerifyAudit broke at %d (%q), want at %d with %q", b.Seq, b.Reason, seq, reason)
	}
	if count != seq-1 {
		t.Errorf("VerifyAudit counted %d entries before the break at %d", count, seq)
	}
}

func TestSealAudit(t *testing.T) {
	s := newTestSigner(t)
	first, err := s.SealAudit(nil, auditTestEntry(0))
	if err != nil {
		t.Fatal(err)
	}
	if first.Seq != 1 || first.PrevHash != broker.AuditGenesisHash || first.PrevHash != "sha256:"+strings.Repeat("0", 64) {
		t.Errorf("first entry: seq %d, prev hash %s; want 1 and the genesis hash", first.Seq, first.PrevHash)
	}
	wantTime := time.Date(2030, 1, 2, 2, 4, 5, 123456000, time.UTC)
	if !first.Time.Equal(wantTime) || first.Time.Location() != time.UTC {
		t.Errorf("time = %v, want %v (UTC, microseconds)", first.Time, wantTime)
	}
	if string(first.Details) != `{"b":"<x>","n":0}` {
		t.Errorf("details = %s, want canonical JSON", first.Details)
	}
	sum := sha256.Sum256(first.Details)
	if want := "sha256:" + hex.EncodeToString(sum[:]); first.DetailsDigest != want {
		t.Errorf("details digest = %s, want %s", first.DetailsDigest, want)
	}
	// The exact hash input, pinned: an offline verifier must rebuild it.
	input := `{"action":"proposal.approved","actor":"user-0","details_digest":"` + first.DetailsDigest +
		`","prev_hash":"` + broker.AuditGenesisHash + `","seq":1,"subject":"prop-0","time":"2030-01-02T02:04:05.123456Z"}`
	sum = sha256.Sum256([]byte(input))
	if want := "sha256:" + hex.EncodeToString(sum[:]); first.Hash != want {
		t.Errorf("hash = %s, want %s, the sha256 of %s", first.Hash, want, input)
	}
	sig, err := base64.StdEncoding.DecodeString(first.Signature)
	if err != nil || !ed25519.Verify(s.PublicKey(), []byte(first.Hash), sig) {
		t.Errorf("signature is not base64 ed25519 over the hash string (%v)", err)
	}
	if first.KeyID != s.KeyID() {
		t.Errorf("key id = %s, want %s", first.KeyID, s.KeyID())
	}

	// Seq, hashes and signature given are ignored.
	e := auditTestEntry(1)
	e.Seq, e.PrevHash, e.Hash, e.Signature, e.DetailsDigest, e.KeyID = 99, "x", "y", "z", "w", "v"
	second, err := s.SealAudit(first, e)
	if err != nil {
		t.Fatal(err)
	}
	if second.Seq != 2 || second.PrevHash != first.Hash || second.KeyID != s.KeyID() {
		t.Errorf("second entry: seq %d, prev hash %s, key %s; want 2, %s, %s", second.Seq, second.PrevHash, second.KeyID, first.Hash, s.KeyID())
	}
	if n, err := broker.VerifyAudit(auditEntriesOf([]*broker.AuditEntry{first, second}), s.PublicKey()); n != 2 || err != nil {
		t.Errorf("VerifyAudit = %d, %v; want 2, nil", n, err)
	}

	for _, details := range []string{"", "null", "  ", "{ }"} {
		e := auditTestEntry(0)
		e.Details = json.RawMessage(details)
		got, err := s.SealAudit(nil, e)
		if err != nil {
			t.Fatalf("details %q: %v", details, err)
		}
		if string(got.Details) != "{}" {
			t.Errorf("details %q sealed as %s, want {}", details, got.Details)
		}
	}
}

func TestSealAuditRefuses(t *testing.T) {
	s := newTestSigner(t)
	first, err := s.SealAudit(nil, auditTestEntry(0))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		last     *broker.AuditEntry
		spoil    func(e *broker.AuditEntry)
		wantCode string
		wantErr  string
	}{
		{"no time", nil, func(e *broker.AuditEntry) { e.Time = time.Time{} }, broker.EINVALID, "no time"},
		{"no actor", nil, func(e *broker.AuditEntry) { e.Actor = "" }, broker.EINVALID, "no actor"},
		{"no action", nil, func(e *broker.AuditEntry) { e.Action = "" }, broker.EINVALID, "no action"},
		{"details an array", nil, func(e *broker.AuditEntry) { e.Details = json.RawMessage(`[1]`) }, broker.EINVALID, "not a JSON object"},
		{"details a string", nil, func(e *broker.AuditEntry) { e.Details = json.RawMessage(`"x"`) }, broker.EINVALID, "not a JSON object"},
		{"details not JSON", nil, func(e *broker.AuditEntry) { e.Details = json.RawMessage(`{"a":`) }, broker.EINVALID, "details"},
		{"details with a duplicate key", nil, func(e *broker.AuditEntry) { e.Details = json.RawMessage(`{"a":1,"a":2}`) }, broker.EINVALID, "details"},
		{"last without hash", &broker.AuditEntry{Seq: 1}, func(e *broker.AuditEntry) {}, broker.EINTERNAL, "no valid sequence number or hash"},
		{"last without seq", &broker.AuditEntry{Hash: first.Hash}, func(e *broker.AuditEntry) {}, broker.EINTERNAL, "no valid sequence number or hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := auditTestEntry(1)
			tt.spoil(&e)
			_, err := s.SealAudit(tt.last, e)
			if broker.ErrorCode(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SealAudit = %v, want %s containing %q", err, tt.wantCode, tt.wantErr)
			}
		})
	}
}

func TestVerifyAuditChain(t *testing.T) {
	s := newTestSigner(t)
	chain := sealAuditChain(t, s, auditTestLength)
	pub, err := broker.ParsePublicKeyPEM(s.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := broker.VerifyAudit(auditEntriesOf(chain), pub); n != auditTestLength || err != nil {
		t.Fatalf("VerifyAudit = %d, %v; want %d, nil", n, err, auditTestLength)
	}
	if n, err := broker.VerifyAudit(auditEntriesOf(nil), pub); n != 0 || err != nil {
		t.Errorf("VerifyAudit(empty log) = %d, %v; want 0, nil", n, err)
	}
	// Details erased from any entry (NULL in the database, removed from
	// an export) break the log at that entry, naming it.
	for k := 1; k <= auditTestLength; k++ {
		for _, erased := range []json.RawMessage{nil, json.RawMessage("null"), json.RawMessage(" ")} {
			withoutDetails := cloneAuditChain(chain)
			withoutDetails[k-1].Details = erased
			n, err := broker.VerifyAudit(auditEntriesOf(withoutDetails), pub)
			var brk *broker.AuditBreak
			if n != int64(k-1) || !errors.As(err, &brk) || brk.Seq != int64(k) || !strings.Contains(brk.Reason, "details are missing") {
				t.Errorf("details of entry %d erased (%q): VerifyAudit = %d, %v", k, erased, n, err)
			}
		}
	}
	readErr := errors.New("disk on fire")
	failing := func() (*broker.AuditEntry, error) { return nil, readErr }
	if _, err := broker.VerifyAudit(failing, pub); !errors.Is(err, readErr) {
		t.Errorf("VerifyAudit(failing reader) = %v, want %v", err, readErr)
	}
}

// TestVerifyAuditDetectsTampering changes, deletes, swaps and inserts
// entries at every position of a 10-entry chain. Each must break at the
// seq of the entry touched:
//
//   - a changed entry k breaks at k;
//   - deleting entry k (k < 10) breaks at k: entry k+1 sits where k
//     should be;
//   - swapping entries k and k+1 breaks at k, whether or not their seq
//     numbers are swapped back;
//   - an entry forged at position k (1..11), with the seq and previous hash
//     it would need, breaks at k: the forger cannot sign;
//   - replaying entry k right after itself breaks at k+1.
//
// Deleting the last entry is truncation, which a chain alone cannot show:
// the log verifies with 9 entries, and the caller must compare the count
// with the head it expects.
func TestVerifyAuditDetectsTampering(t *testing.T) {
	s := newTestSigner(t)
	forger := newTestSigner(t)
	chain := sealAuditChain(t, s, auditTestLength)

	// rehash recomputes e's details digest and hash, as a forger without
	// the key can.
	rehash := func(t *testing.T, e *broker.AuditEntry) {
		t.Helper()
		var last *broker.AuditEntry
		if e.Seq > 1 {
			last = &broker.AuditEntry{Seq: e.Seq - 1, Hash: e.PrevHash}
		}
		sealed, err := forger.SealAudit(last, *e)
		if err != nil {
			t.Fatal(err)
		}
		e.Details, e.DetailsDigest, e.Time, e.Hash = sealed.Details, sealed.DetailsDigest, sealed.Time, sealed.Hash
	}

	changes := []struct {
		name   string
		change func(t *testing.T, e *broker.AuditEntry)
		reason string
	}{
		{"actor", func(t *testing.T, e *broker.AuditEntry) { e.Actor = "mallory" }, "hash does not match its contents"},
		{"action", func(t *testing.T, e *broker.AuditEntry) { e.Action = "proposal.rejected" }, "hash does not match its contents"},
		{"subject", func(t *testing.T, e *broker.AuditEntry) { e.Subject = "prop-x" }, "hash does not match its contents"},
		{"details", func(t *testing.T, e *broker.AuditEntry) { e.Details = json.RawMessage(`{"b":"<y>","n":0}`) }, "details do not match their digest"},
		{"details and their digest", func(t *testing.T, e *broker.AuditEntry) {
			e.Details = json.RawMessage(`{"b":"<y>"}`)
			sum := sha256.Sum256(e.Details)
			e.DetailsDigest = "sha256:" + hex.EncodeToString(sum[:])
		}, "hash does not match its contents"},
		{"details digest without details", func(t *testing.T, e *broker.AuditEntry) {
			e.Details = nil
			e.DetailsDigest = "sha256:" + strings.Repeat("1", 64)
		}, "details are missing"},
		{"time by a microsecond", func(t *testing.T, e *broker.AuditEntry) { e.Time = e.Time.Add(time.Microsecond) }, "hash does not match its contents"},
		{"time by a nanosecond", func(t *testing.T, e *broker.AuditEntry) { e.Time = e.Time.Add(time.Nanosecond) }, "hash does not match its contents"},
		{"hash", func(t *testing.T, e *broker.AuditEntry) { e.Hash = "sha256:" + strings.Repeat("2", 64) }, "hash does not match its contents"},
		{"prev hash", func(t *testing.T, e *broker.AuditEntry) { e.PrevHash = "sha256:" + strings.Repeat("3", 64) }, "previous hash"},
		{"seq", func(t *testing.T, e *broker.AuditEntry) { e.Seq += 100 }, "sequence number is"},
		{"actor, rehashed", func(t *testing.T, e *broker.AuditEntry) { e.Actor = "mallory"; rehash(t, e) }, "signature is invalid"},
		{"details, rehashed", func(t *testing.T, e *broker.AuditEntry) { e.Details = json.RawMessage(`{"n":-1}`); rehash(t, e) }, "signature is invalid"},
		{"time, rehashed", func(t *testing.T, e *broker.AuditEntry) { e.Time = e.Time.Add(-time.Hour); rehash(t, e) }, "signature is invalid"},
		{"signature", func(t *testing.T, e *broker.AuditEntry) {
			e.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(ed25519.NewKeyFromSeed(make([]byte, 32)), []byte(e.Hash)))
		}, "signature is invalid"},
		{"key id", func(t *testing.T, e *broker.AuditEntry) { e.KeyID = forger.KeyID() }, "signed by key"},
	}
	for _, c := range changes {
		for k := int64(1); k <= auditTestLength; k++ {
			t.Run(fmt.Sprintf("change %s of %d", c.name, k), func(t *testing.T) {
				entries := cloneAuditChain(chain)
				c.change(t, entries[k-1])
				n, err := broker.VerifyAudit(auditEntriesOf(entries), s.PublicKey())
				requireAuditBreak(t, n, err, k, c.reason)
			})
		}
	}

	for k := int64(1); k <= auditTestLength; k++ {
		t.Run(fmt.Sprintf("delete %d", k), func(t *testing.T) {
			entries := cloneAuditChain(chain)
			entries = append(entries[:k-1], entries[k:]...)
			n, err := broker.VerifyAudit(auditEntriesOf(entries), s.PublicKey())
			if k == auditTestLength {
				// Truncation: only a count below the expected head shows it.
				if n != auditTestLength-1 || err != nil {
					t.Fatalf("VerifyAudit(without the last) = %d, %v; want %d, nil", n, err, auditTestLength-1)
				}
				return
			}
			requireAuditBreak(t, n, err, k, fmt.Sprintf("sequence number is %d", k+1))
		})
	}

	for k := int64(1); k < auditTestLength; k++ {
		t.Run(fmt.Sprintf("swap %d and %d", k, k+1), func(t *testing.T) {
			entries := cloneAuditChain(chain)
			entries[k-1], entries[k] = entries[k], entries[k-1]
			n, err := broker.VerifyAudit(auditEntriesOf(entries), s.PublicKey())
			requireAuditBreak(t, n, err, k, fmt.Sprintf("sequence number is %d", k+1))
		})
		t.Run(fmt.Sprintf("swap %d and %d, renumbered", k, k+1), func(t *testing.T) {
			entries := cloneAuditChain(chain)
			entries[k-1], entries[k] = entries[k], entries[k-1]
			entries[k-1].Seq, entries[k].Seq = k, k+1
			n, err := broker.VerifyAudit(auditEntriesOf(entries), s.PublicKey())
			requireAuditBreak(t, n, err, k, "previous hash")
		})
	}

	for k := int64(1); k <= auditTestLength+1; k++ {
		// forged is a well-formed entry k, linked to entry k-1 but sealed
		// by the forger.
		forge := func(t *testing.T) *broker.AuditEntry {
			var last *broker.AuditEntry
			if k > 1 {
				last = chain[k-2]
			}
			forged, err := forger.SealAudit(last, broker.AuditEntry{Time: time.Now(), Actor: "mallory", Action: "certificate.issued"})
			if err != nil {
				t.Fatal(err)
			}
			return forged
		}
		insert := func(entries []*broker.AuditEntry, e *broker.AuditEntry) []*broker.AuditEntry {
			return append(entries[:k-1:k-1], append([]*broker.AuditEntry{e}, entries[k-1:]...)...)
		}
		t.Run(fmt.Sprintf("insert forged at %d", k), func(t *testing.T) {
			entries := insert(cloneAuditChain(chain), forge(t))
			n, err := broker.VerifyAudit(auditEntriesOf(entries), s.PublicKey())
			requireAuditBreak(t, n, err, k, "signed by key")
		})
		t.Run(fmt.Sprintf("insert forged at %d, claiming the broker's key", k), func(t *testing.T) {
			forged := forge(t)
			forged.KeyID = s.KeyID()
			entries := insert(cloneAuditChain(chain), forged)
			n, err := broker.VerifyAudit(auditEntriesOf(entries), s.PublicKey())
			requireAuditBreak(t, n, err, k, "signature is invalid")
		})
		if k <= auditTestLength {
			t.Run(fmt.Sprintf("replay %d", k), func(t *testing.T) {
				entries := cloneAuditChain(chain)
				entries = append(entries[:k:k], append([]*broker.AuditEntry{entries[k-1]}, entries[k:]...)...)
				n, err := broker.VerifyAudit(auditEntriesOf(entries), s.PublicKey())
				requireAuditBreak(t, n, err, k+1, fmt.Sprintf("sequence number is %d", k))
			})
		}
	}

	t.Run("nil entry", func(t *testing.T) {
		entries := cloneAuditChain(chain)
		entries[4] = nil
		n, err := broker.VerifyAudit(auditEntriesOf(entries), s.PublicKey())
		requireAuditBreak(t, n, err, 5, "missing")
	})
}

func TestVerifyAuditAnotherKey(t *testing.T) {
	s := newTestSigner(t)
	other := newTestSigner(t)
	chain := sealAuditChain(t, other, auditTestLength)
	n, err := broker.VerifyAudit(auditEntriesOf(chain), s.PublicKey())
	requireAuditBreak(t, n, err, 1, "signed by key")

	for _, e := range chain {
		e.KeyID = s.KeyID()
	}
	n, err = broker.VerifyAudit(auditEntriesOf(chain), s.PublicKey())
	requireAuditBreak(t, n, err, 1, "signature is invalid")
}

func TestAuditBreakError(t *testing.T) {
	var err error = &broker.AuditBreak{Seq: 7, Reason: "hash does not match its contents"}
	if got, want := err.Error(), "audit entry 7: hash does not match its contents"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestAuditJSONLRoundTrip(t *testing.T) {
	s := newTestSigner(t)
	chain := sealAuditChain(t, s, auditTestLength)
	var buf bytes.Buffer
	if err := broker.WriteAuditJSONL(&buf, chain); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != auditTestLength {
		t.Fatalf("wrote %d lines, want %d:\n%s", len(lines), auditTestLength, buf.String())
	}
	if !strings.Contains(lines[0], `"details":{"b":"<x>","n":0}`) {
		t.Errorf("line 1 = %s, want the details as they are, unescaped", lines[0])
	}

	var read []*broker.AuditEntry
	next := broker.AuditJSONLReader(bytes.NewReader(buf.Bytes()))
	for {
		e, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		read = append(read, e)
	}
	if !reflect.DeepEqual(read, chain) {
		t.Errorf("read back entries differ:\n%+v\nwant\n%+v", read, chain)
	}

	pub, err := broker.ParsePublicKeyPEM(s.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := broker.VerifyAudit(broker.AuditJSONLReader(bytes.NewReader(buf.Bytes())), pub); n != auditTestLength || err != nil {
		t.Errorf("VerifyAudit(JSONL) = %d, %v; want %d, nil", n, err, auditTestLength)
	}
	if err := broker.WriteAuditJSONL(io.Discard, []*broker.AuditEntry{nil}); err == nil {
		t.Error("WriteAuditJSONL wrote a nil entry")
	}
}

func TestAuditJSONLCorruptLine(t *testing.T) {
	s := newTestSigner(t)
	chain := sealAuditChain(t, s, auditTestLength)
	var buf bytes.Buffer
	if err := broker.WriteAuditJSONL(&buf, chain); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	lines = lines[:len(lines)-1] // the empty string after the final newline

	const k = 4 // the line spoiled, holding entry 4
	tests := []struct {
		name   string
		spoil  func(line string) string
		reason string
	}{
		{"not JSON", func(string) string { return "garbage\n" }, "line 4 is not an audit entry"},
		{"cut short", func(line string) string { return line[:len(line)/2] + "\n" }, "line 4 is not an audit entry"},
		{"unknown member", func(line string) string { return strings.Replace(line, `{"seq"`, `{"admin":true,"seq"`, 1) }, "line 4 is not an audit entry"},
		{"two entries", func(line string) string { return strings.TrimSuffix(line, "\n") + line }, "line 4 is not an audit entry"},
		{"empty", func(string) string { return "\n" }, "line 4 is empty"},
		{"actor edited", func(line string) string { return strings.Replace(line, `"actor":"user-3"`, `"actor":"mallory"`, 1) }, "hash does not match its contents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spoiled := append([]string(nil), lines...)
			spoiled[k-1] = tt.spoil(lines[k-1])
			if spoiled[k-1] == lines[k-1] {
				t.Fatal("the line did not change")
			}
			n, err := broker.VerifyAudit(broker.AuditJSONLReader(strings.NewReader(strings.Join(spoiled, ""))), s.PublicKey())
			requireAuditBreak(t, n, err, k, tt.reason)
		})
	}

	t.Run("errors stay", func(t *testing.T) {
		next := broker.AuditJSONLReader(strings.NewReader("garbage\n"))
		_, err1 := next()
		_, err2 := next()
		if err1 == nil || err1 != err2 {
			t.Errorf("errors %v then %v, want the same error twice", err1, err2)
		}
	})
	t.Run("read error", func(t *testing.T) {
		readErr := errors.New("disk on fire")
		next := broker.AuditJSONLReader(io.MultiReader(strings.NewReader(lines[0]), &auditTestFailingReader{err: readErr}))
		if _, err := next(); err != nil {
			t.Fatal(err)
		}
		_, err := next()
		var b *broker.AuditBreak
		if !errors.Is(err, readErr) || errors.As(err, &b) {
			t.Errorf("next() = %v, want the read error, not a break", err)
		}
	})
}

type auditTestFailingReader struct{ err error }

func (r *auditTestFailingReader) Read([]byte) (int, error) { return 0, r.err }

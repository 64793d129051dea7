package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/seb-broker/seb/broker"
)

// PutArtifact stores a signed artifact; ECONFLICT if the id exists,
// EINVALID for an empty id.
func (s *Store) PutArtifact(ctx context.Context, a *broker.Artifact) error {
	return s.write(ctx, target{kind: "artifact", id: a.ID}, func(tx conn) error { return s.insertArtifact(ctx, tx, a) })
}

func (s *Store) insertArtifact(ctx context.Context, x conn, a *broker.Artifact) error {
	if a.ID == "" {
		return broker.Errorf(broker.EINVALID, "artifact id is empty")
	}
	_, err := x.ExecContext(ctx, `INSERT INTO artifacts (id, kind, digest, data, signature, key_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.Kind, a.Digest, blob(a.Data), a.Signature, a.KeyID, formatTime(a.CreatedAt))
	return s.formatError(err, target{kind: "artifact", id: a.ID})
}

// Artifact returns an artifact, or ENOTFOUND.
func (s *Store) Artifact(ctx context.Context, id string) (*broker.Artifact, error) {
	var (
		a         broker.Artifact
		createdAt string
	)
	err := s.rd().QueryRowContext(ctx, "SELECT id, kind, digest, data, signature, key_id, created_at FROM artifacts WHERE id = ?", id).
		Scan(&a.ID, &a.Kind, &a.Digest, &a.Data, &a.Signature, &a.KeyID, &createdAt)
	if err == nil {
		a.CreatedAt, err = parseTime(createdAt)
	}
	if err != nil {
		return nil, s.formatError(err, target{kind: "artifact", id: id})
	}
	return &a, nil
}

const auditColumns = "seq, time, actor, action, subject, details_digest, details, prev_hash, hash, signature, key_id"

func scanAuditEntry(row scanner) (*broker.AuditEntry, error) {
	var (
		e       broker.AuditEntry
		at      string
		details sql.NullString
	)
	err := row.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Subject, &e.DetailsDigest, &details,
		&e.PrevHash, &e.Hash, &e.Signature, &e.KeyID)
	if err != nil {
		return nil, err
	}
	if details.Valid {
		e.Details = json.RawMessage(details.String)
	}
	if e.Time, err = parseTime(at); err != nil {
		return nil, err
	}
	return &e, nil
}

// AppendAudit appends an entry to the audit log: in one write transaction
// it reads the last entry, calls seal with it (nil for the first) and
// stores the entry seal returns. Appends are serialized by the writer
// connection, so seal always sees the true last entry; seal must not call
// the store's write methods (it would wait for itself).
//
// An error of seal is returned as it is and nothing is stored. An entry
// whose Seq is not the last Seq + 1, or whose Details are not JSON, is an
// internal error: the caller's seal is broken.
func (s *Store) AppendAudit(ctx context.Context, seal func(last *broker.AuditEntry) (*broker.AuditEntry, error)) (*broker.AuditEntry, error) {
	var sealed *broker.AuditEntry
	err := s.write(ctx, target{kind: "audit entry"}, func(tx conn) error {
		var err error
		sealed, err = s.appendAudit(ctx, tx, seal)
		return err
	})
	var se sealError
	if errors.As(err, &se) {
		return nil, se.err
	}
	return sealed, err
}

// appendAudit appends the entry seal makes after the last one, inside tx.
func (s *Store) appendAudit(ctx context.Context, tx conn, seal func(last *broker.AuditEntry) (*broker.AuditEntry, error)) (*broker.AuditEntry, error) {
	var sealed *broker.AuditEntry
	err := func() error {
		last, err := scanAuditEntry(tx.QueryRowContext(ctx, "SELECT "+auditColumns+" FROM audit_log ORDER BY seq DESC LIMIT 1"))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			last = nil
		case err != nil:
			return s.formatError(err, target{kind: "last audit entry"})
		}
		var want int64 = 1
		if last != nil {
			want = last.Seq + 1
		}
		e, err := seal(last)
		if err != nil {
			return sealError{err}
		}
		switch {
		case e == nil:
			return errors.New("seal returned no entry")
		case e.Seq != want:
			return fmt.Errorf("seal returned entry %d after entry %d", e.Seq, want-1)
		case len(e.Details) > 0 && !json.Valid(e.Details):
			return fmt.Errorf("entry %d: details are not valid JSON", e.Seq)
		}
		entry := *e
		entry.Time = e.Time.UTC()
		_, err = tx.ExecContext(ctx, "INSERT INTO audit_log ("+auditColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			entry.Seq, formatTime(entry.Time), entry.Actor, entry.Action, entry.Subject, entry.DetailsDigest,
			nullText(entry.Details), entry.PrevHash, entry.Hash, entry.Signature, entry.KeyID)
		if err != nil {
			return s.formatError(err, target{kind: "audit entry", id: strconv.FormatInt(e.Seq, 10)})
		}
		sealed = &entry
		return nil
	}()
	return sealed, err
}

// sealError carries seal's own error through the transaction unchanged.
type sealError struct{ err error }

func (e sealError) Error() string { return e.err.Error() }

// LastAuditEntry implements broker.Store.
func (s *Store) LastAuditEntry(ctx context.Context) (*broker.AuditEntry, error) {
	e, err := scanAuditEntry(s.rd().QueryRowContext(ctx, "SELECT "+auditColumns+" FROM audit_log ORDER BY seq DESC LIMIT 1"))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, s.formatError(err, target{kind: "last audit entry"})
	}
	return e, nil
}

// AuditEntries returns up to limit entries with Seq > after, in order;
// EINVALID unless limit is positive.
func (s *Store) AuditEntries(ctx context.Context, after int64, limit int) ([]*broker.AuditEntry, error) {
	if limit <= 0 {
		return nil, broker.Errorf(broker.EINVALID, "limit %d is not positive", limit)
	}
	t := target{kind: "audit entries"}
	rows, err := s.rd().QueryContext(ctx, "SELECT "+auditColumns+" FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)
	if err != nil {
		return nil, s.formatError(err, t)
	}
	defer rows.Close()
	out := []*broker.AuditEntry{}
	for rows.Next() {
		e, err := scanAuditEntry(rows)
		if err != nil {
			return nil, s.formatError(err, t)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.formatError(err, t)
	}
	return out, nil
}

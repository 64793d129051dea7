package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
)

// PutState implements broker.Store.
func (s *Store) PutState(ctx context.Context, workspace string, state []byte, at time.Time) (drift.StateVersion, error) {
	if err := drift.ValidWorkspace(workspace); err != nil {
		return drift.StateVersion{}, broker.Errorf(broker.EINVALID, "%v", err)
	}
	sum := sha256.Sum256(state)
	v := drift.StateVersion{Workspace: workspace, Digest: "sha256:" + hex.EncodeToString(sum[:])}
	err := s.write(ctx, target{kind: "state of workspace", id: workspace}, func(tx conn) error {
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(serial), 0) + 1 FROM state_versions WHERE workspace = ?", workspace).Scan(&v.Serial); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO state_versions (workspace, serial, digest, data, created_at) VALUES (?, ?, ?, ?, ?)",
			workspace, v.Serial, v.Digest, blob(state), formatTime(at))
		return err
	})
	if err != nil {
		return drift.StateVersion{}, err
	}
	return v, nil
}

// CurrentState implements broker.Store.
func (s *Store) CurrentState(ctx context.Context, workspace string) ([]byte, error) {
	var data []byte
	err := s.rd().QueryRowContext(ctx, "SELECT data FROM state_versions WHERE workspace = ? ORDER BY serial DESC LIMIT 1", workspace).Scan(&data)
	if err != nil {
		if err = s.formatError(err, target{kind: "state of workspace", id: workspace}); broker.ErrorCode(err) == broker.ENOTFOUND {
			return nil, nil
		}
		return nil, err
	}
	return data, nil
}

// CreateSession implements broker.Store.
func (s *Store) CreateSession(ctx context.Context, sess *broker.Session, now time.Time) error {
	if sess.IDHash == "" || sess.TokenHash == "" {
		return broker.Errorf(broker.EINVALID, "a session needs an id hash and a token hash")
	}
	return s.write(ctx, target{kind: "session"}, func(tx conn) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE expires < ?", formatTime(now)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO sessions (id_hash, token_hash, csrf, expires) VALUES (?, ?, ?, ?)",
			sess.IDHash, sess.TokenHash, sess.CSRF, formatTime(sess.Expires))
		return err
	})
}

// Session implements broker.Store.
func (s *Store) Session(ctx context.Context, idHash string, now time.Time) (*broker.Session, error) {
	sess := broker.Session{IDHash: idHash}
	var expires string
	err := s.rd().QueryRowContext(ctx, "SELECT token_hash, csrf, expires FROM sessions WHERE id_hash = ? AND expires >= ?",
		idHash, formatTime(now)).Scan(&sess.TokenHash, &sess.CSRF, &expires)
	if err != nil {
		return nil, s.formatError(err, target{kind: "session"})
	}
	if sess.Expires, err = parseTime(expires); err != nil {
		return nil, s.formatError(err, target{kind: "session"})
	}
	return &sess, nil
}

// DeleteSession implements broker.Store.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	return s.exec(ctx, target{kind: "session"}, "DELETE FROM sessions WHERE id_hash = ?", idHash)
}

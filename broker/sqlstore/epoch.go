package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/seb-broker/seb/broker"
)

// PolicyEpoch returns the current policy epoch (0 before any).
func (s *Store) PolicyEpoch(ctx context.Context) (int64, error) {
	var epoch int64
	err := s.rd().QueryRowContext(ctx, "SELECT coalesce(max(epoch), 0) FROM policy_epochs").Scan(&epoch)
	return epoch, s.formatError(err, target{kind: "policy epoch"})
}

// SetPolicyEpoch records the policy epoch for a configuration digest: if
// configDigest differs from the last one recorded (or none is), a new
// epoch begins, recorded with the digest and the time. It returns the
// current epoch; EINVALID for an empty digest.
func (s *Store) SetPolicyEpoch(ctx context.Context, configDigest string) (int64, error) {
	if configDigest == "" {
		return 0, broker.Errorf(broker.EINVALID, "policy configuration digest is empty")
	}
	var epoch int64
	err := s.write(ctx, target{kind: "policy epoch"}, func(tx conn) error {
		var last string
		err := tx.QueryRowContext(ctx, "SELECT epoch, config_digest FROM policy_epochs ORDER BY epoch DESC LIMIT 1").Scan(&epoch, &last)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case last == configDigest:
			return nil
		}
		epoch++
		_, err = tx.ExecContext(ctx, "INSERT INTO policy_epochs (epoch, config_digest, at) VALUES (?, ?, ?)",
			epoch, configDigest, formatTime(s.now()))
		return err
	})
	if err != nil {
		return 0, err
	}
	return epoch, nil
}

// RevocationEpoch returns a workspace's revocation epoch (0 before any).
func (s *Store) RevocationEpoch(ctx context.Context, workspace string) (int64, error) {
	var epoch int64
	err := s.rd().QueryRowContext(ctx, "SELECT coalesce(max(epoch), 0) FROM revocation_epochs WHERE workspace = ?", workspace).Scan(&epoch)
	return epoch, s.formatError(err, target{kind: "revocation epoch of workspace", id: workspace})
}

// BumpRevocationEpoch increments a workspace's revocation epoch (revoking
// every certificate issued before) and returns the new one.
func (s *Store) BumpRevocationEpoch(ctx context.Context, workspace string) (int64, error) {
	var epoch int64
	err := s.write(ctx, target{kind: "revocation epoch of workspace", id: workspace}, func(tx conn) error {
		return tx.QueryRowContext(ctx, `INSERT INTO revocation_epochs (workspace, epoch, updated_at) VALUES (?, 1, ?)
			ON CONFLICT (workspace) DO UPDATE SET epoch = revocation_epochs.epoch + 1, updated_at = excluded.updated_at
			RETURNING epoch`, workspace, formatTime(s.now())).Scan(&epoch)
	})
	return epoch, err
}

package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/seb-broker/seb/broker"
)

const jobColumns = `id, kind, workspace, subject, owner, config_digest, vars, state, attempts, max_attempts,
	runner, token, lease_expires, not_before, phase, result, error, created_at, updated_at`

// EnqueueJob implements broker.Store.
func (s *Store) EnqueueJob(ctx context.Context, j *broker.Job) error {
	vars, err := json.Marshal(j.Vars)
	if err != nil {
		return err
	}
	if j.Phase == "" {
		j.Phase = "plan"
	}
	t := target{kind: "job", id: j.ID}
	return s.write(ctx, t, func(tx conn) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO jobs (id, kind, workspace, subject, owner, config_digest, vars, state, attempts,
			max_attempts, phase, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)`,
			j.ID, j.Kind, j.Workspace, j.Subject, j.Owner, j.ConfigDigest, string(vars), broker.JobQueued, j.MaxAttempts, j.Phase,
			formatTime(j.CreatedAt), formatTime(j.CreatedAt))
		return err
	})
}

// LeaseJob implements broker.Store.
func (s *Store) LeaseJob(ctx context.Context, runner string, now time.Time, ttl time.Duration) (*broker.Job, error) {
	var leased *broker.Job
	at := formatTime(now)
	err := s.write(ctx, target{kind: "job"}, func(tx conn) error {
		row := tx.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs j
			WHERE ((j.state = 'queued' AND j.not_before <= ?) OR (j.state = 'leased' AND j.lease_expires < ? AND j.kind != 'execute' AND j.attempts < j.max_attempts))
			AND NOT (j.kind = 'execute' AND EXISTS (SELECT 1 FROM jobs o WHERE o.kind = 'execute' AND o.workspace = j.workspace
				AND o.state = 'leased' AND o.id != j.id))
			AND NOT (j.kind = 'execute' AND EXISTS (SELECT 1 FROM workspace_holds h WHERE h.workspace = j.workspace))
			AND NOT (j.kind != 'execute' AND j.owner != '' AND EXISTS (SELECT 1 FROM jobs o WHERE o.owner = j.owner
				AND o.kind != 'execute' AND o.state = 'leased' AND o.lease_expires >= ? AND o.id != j.id))
			ORDER BY j.created_at, j.id LIMIT 1`, at, at, at)
		j, err := scanJob(row)
		if err != nil {
			return err
		}
		var token int64
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(token), 0) + 1 FROM jobs").Scan(&token); err != nil {
			return err
		}
		j.State, j.Runner, j.Token, j.Attempts = broker.JobLeased, runner, token, j.Attempts+1
		j.LeaseExpires, j.UpdatedAt = now.Add(ttl).UTC(), now.UTC()
		_, err = tx.ExecContext(ctx, `UPDATE jobs SET state = ?, runner = ?, token = ?, attempts = ?, lease_expires = ?, updated_at = ?
			WHERE id = ?`, j.State, j.Runner, j.Token, j.Attempts, formatTime(j.LeaseExpires), at, j.ID)
		leased = j
		return err
	})
	if err != nil {
		return nil, err
	}
	return leased, nil
}

// UpdateJob implements broker.Store.
func (s *Store) UpdateJob(ctx context.Context, j *broker.Job, now time.Time) error {
	t := target{kind: "job", id: j.ID}
	return s.write(ctx, t, func(tx conn) error {
		notBefore := ""
		if !j.NotBefore.IsZero() {
			notBefore = formatTime(j.NotBefore)
		}
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET state = ?, phase = ?, result = ?, error = ?, lease_expires = ?, not_before = ?, updated_at = ?
			WHERE id = ? AND state = 'leased' AND token = ? AND lease_expires >= ?`,
			j.State, j.Phase, j.Result, j.Error, formatTime(j.LeaseExpires), notBefore, formatTime(now), j.ID, j.Token, formatTime(now))
		if err != nil {
			return err
		}
		return leaseHeld(res, j.ID)
	})
}

// leaseHeld turns an update guarded by a lease that touched no row into
// ECONFLICT.
func leaseHeld(res sql.Result, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return broker.Errorf(broker.ECONFLICT, "job %s: this runner's lease was lost (expired, cancelled or taken over)", id)
	}
	return nil
}

// RenewJob implements broker.Store.
func (s *Store) RenewJob(ctx context.Context, id string, token int64, runner string, expires, now time.Time) (*broker.Job, error) {
	var j *broker.Job
	err := s.write(ctx, target{kind: "job", id: id}, func(tx conn) error {
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET lease_expires = ?, updated_at = ?
			WHERE id = ? AND state = 'leased' AND token = ? AND lease_expires >= ?
			AND (? = '' OR runner = ? OR substr(runner, 1, ?) = ?)`,
			formatTime(expires), formatTime(now), id, token, formatTime(now),
			runner, runner, len(runner)+1, runner+"/")
		if err != nil {
			return err
		}
		if err := leaseHeld(res, id); err != nil {
			return err
		}
		j, err = scanJob(tx.QueryRowContext(ctx, "SELECT "+jobColumns+" FROM jobs WHERE id = ?", id))
		return err
	})
	if err != nil {
		return nil, err
	}
	return j, nil
}

// EndJob implements broker.Store.
func (s *Store) EndJob(ctx context.Context, id string, state broker.JobState, reason string, at time.Time) error {
	if !state.Final() {
		return broker.Errorf(broker.EINVALID, "job state %q is not final", state)
	}
	return s.write(ctx, target{kind: "job", id: id}, func(tx conn) error {
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET state = ?, error = ?, updated_at = ? WHERE id = ? AND state IN ('queued', 'leased')`,
			state, reason, formatTime(at), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		var current string
		if err := tx.QueryRowContext(ctx, "SELECT state FROM jobs WHERE id = ?", id).Scan(&current); err != nil {
			return err
		}
		return broker.Errorf(broker.ECONFLICT, "job %s already ended: %s", id, current)
	})
}

// Job implements broker.Store.
func (s *Store) Job(ctx context.Context, id string) (*broker.Job, error) {
	j, err := scanJob(s.rd().QueryRowContext(ctx, "SELECT "+jobColumns+" FROM jobs WHERE id = ?", id))
	if err != nil {
		return nil, s.formatError(err, target{kind: "job", id: id})
	}
	return j, nil
}

// StaleJobs implements broker.Store.
func (s *Store) StaleJobs(ctx context.Context, now time.Time) ([]*broker.Job, error) {
	rows, err := s.rd().QueryContext(ctx, "SELECT "+jobColumns+" FROM jobs WHERE state = 'leased' AND lease_expires < ? ORDER BY created_at",
		formatTime(now))
	if err != nil {
		return nil, s.formatError(err, target{kind: "job"})
	}
	defer rows.Close()
	var out []*broker.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, s.formatError(err, target{kind: "job"})
		}
		out = append(out, j)
	}
	return out, s.formatError(rows.Err(), target{kind: "job"})
}

// AppendJobLog implements broker.Store.
func (s *Store) AppendJobLog(ctx context.Context, id string, token int64, phase string, data []byte, now time.Time) error {
	return s.write(ctx, target{kind: "job", id: id}, func(tx conn) error {
		res, err := tx.ExecContext(ctx, "UPDATE jobs SET updated_at = ? WHERE id = ? AND state = 'leased' AND token = ? AND lease_expires >= ?",
			formatTime(now), id, token, formatTime(now))
		if err != nil {
			return err
		}
		if err := leaseHeld(res, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO job_logs (job_id, seq, phase, data)
			VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_logs WHERE job_id = ?), ?, ?)`, id, id, phase, blob(data))
		return err
	})
}

// JobLog implements broker.Store.
func (s *Store) JobLog(ctx context.Context, id, phase string) ([]byte, error) {
	rows, err := s.rd().QueryContext(ctx, "SELECT data FROM job_logs WHERE job_id = ? AND phase = ? ORDER BY seq", id, phase)
	if err != nil {
		return nil, s.formatError(err, target{kind: "job", id: id})
	}
	defer rows.Close()
	var out []byte
	for rows.Next() {
		var chunk []byte
		if err := rows.Scan(&chunk); err != nil {
			return nil, s.formatError(err, target{kind: "job", id: id})
		}
		out = append(out, chunk...)
	}
	return out, s.formatError(rows.Err(), target{kind: "job", id: id})
}

func scanJob(row scanner) (*broker.Job, error) {
	var (
		j                                broker.Job
		vars, leaseExpires, created, upd string
		notBefore                        string
		result                           []byte
	)
	err := row.Scan(&j.ID, &j.Kind, &j.Workspace, &j.Subject, &j.Owner, &j.ConfigDigest, &vars, &j.State, &j.Attempts, &j.MaxAttempts,
		&j.Runner, &j.Token, &leaseExpires, &notBefore, &j.Phase, &result, &j.Error, &created, &upd)
	if err != nil {
		return nil, err
	}
	j.Result = result
	if err := json.Unmarshal([]byte(vars), &j.Vars); err != nil {
		return nil, err
	}
	if leaseExpires != "" {
		if j.LeaseExpires, err = parseTime(leaseExpires); err != nil {
			return nil, err
		}
	}
	if notBefore != "" {
		if j.NotBefore, err = parseTime(notBefore); err != nil {
			return nil, err
		}
	}
	if j.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if j.UpdatedAt, err = parseTime(upd); err != nil {
		return nil, err
	}
	return &j, nil
}

// HoldWorkspace implements broker.Store.
func (s *Store) HoldWorkspace(ctx context.Context, h broker.Hold) error {
	return s.write(ctx, target{kind: "workspace", id: h.Workspace}, func(tx conn) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO workspace_holds (workspace, execution, reason, since) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
			h.Workspace, h.Execution, h.Reason, formatTime(h.Since))
		return err
	})
}

// WorkspaceHold implements broker.Store.
func (s *Store) WorkspaceHold(ctx context.Context, workspace string) (*broker.Hold, error) {
	h := broker.Hold{Workspace: workspace}
	var since string
	err := s.rd().QueryRowContext(ctx, "SELECT execution, reason, since FROM workspace_holds WHERE workspace = ?", workspace).
		Scan(&h.Execution, &h.Reason, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, broker.Errorf(broker.ENOTFOUND, "workspace %s is not held", workspace)
	}
	if err != nil {
		return nil, s.formatError(err, target{kind: "workspace", id: workspace})
	}
	if h.Since, err = parseTime(since); err != nil {
		return nil, err
	}
	return &h, nil
}

// ReleaseWorkspace implements broker.Store.
func (s *Store) ReleaseWorkspace(ctx context.Context, workspace string) error {
	return s.write(ctx, target{kind: "workspace", id: workspace}, func(tx conn) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM workspace_holds WHERE workspace = ?", workspace)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		return broker.Errorf(broker.ENOTFOUND, "workspace %s is not held", workspace)
	})
}

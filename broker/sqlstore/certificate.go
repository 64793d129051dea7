package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/policy"
)

// CreateCertificate stores an issued certificate; ECONFLICT if the id
// exists, ENOTFOUND if its proposal does not, EINVALID for an empty id,
// a summary that does not validate, or a certificate that claims to be
// consumed already (only ConsumeCertificate consumes).
func (s *Store) CreateCertificate(ctx context.Context, c *broker.Certificate) error {
	t := target{kind: "certificate", id: c.ID, refKind: "proposal", refID: c.ProposalID}
	if c.ID == "" {
		return broker.Errorf(broker.EINVALID, "certificate id is empty")
	}
	if c.ConsumedBy != "" {
		return broker.Errorf(broker.EINVALID, "a new certificate cannot be consumed already")
	}
	sum, err := encodeSummary(c.Summary)
	if err != nil {
		return err
	}
	var approvals []broker.Approval // nil stays nil
	for _, a := range c.Approvals {
		approvals = append(approvals, broker.Approval{Reviewer: a.Reviewer, At: a.At.UTC()})
	}
	approvalsJSON, err := json.Marshal(approvals)
	if err != nil {
		return s.formatError(err, t)
	}
	var decision sql.NullString
	if c.Policy != nil {
		data, err := json.Marshal(c.Policy)
		if err != nil {
			return s.formatError(err, t)
		}
		decision = sql.NullString{String: string(data), Valid: true}
	}
	var revokedAt sql.NullString
	if c.RevokedAt != nil {
		revokedAt = sql.NullString{String: formatTime(*c.RevokedAt), Valid: true}
	}
	return s.exec(ctx, t, `INSERT INTO certificates (id, workspace, proposal_id, config_digest, diff_digest,
		plan_digest, summary, not_before, not_after, policy_epoch, revocation_epoch, approvals, issuer_key_id,
		single_use, envelope, revoked_at, revoked_by, policy)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Workspace, c.ProposalID, c.ConfigDigest, c.DiffDigest,
		c.PlanDigest, sum, formatTime(c.NotBefore), formatTime(c.NotAfter), c.PolicyEpoch, c.RevocationEpoch,
		string(approvalsJSON), c.IssuerKeyID, c.SingleUse, blob(c.Envelope), revokedAt, c.RevokedBy, decision)
}

// Certificate returns a certificate, or ENOTFOUND.
func (s *Store) Certificate(ctx context.Context, id string) (*broker.Certificate, error) {
	c, err := s.certificate(ctx, s.rd(), id)
	if err != nil {
		return nil, s.formatError(err, target{kind: "certificate", id: id})
	}
	return c, nil
}

// ProposalCertificate returns the certificate issued for a proposal, or
// ENOTFOUND.
func (s *Store) ProposalCertificate(ctx context.Context, proposalID string) (*broker.Certificate, error) {
	var id string
	err := s.rd().QueryRowContext(ctx, "SELECT id FROM certificates WHERE proposal_id = ? ORDER BY not_before DESC LIMIT 1", proposalID).Scan(&id)
	if err != nil {
		return nil, s.formatError(err, target{kind: "certificate of proposal", id: proposalID})
	}
	return s.Certificate(ctx, id)
}

// querier is a *sql.DB or *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) certificate(ctx context.Context, q querier, id string) (*broker.Certificate, error) {
	var (
		c                             broker.Certificate
		sum, revokedAt, consumedBy    sql.NullString
		decision                      sql.NullString
		notBefore, notAfter, approval string
	)
	err := q.QueryRowContext(ctx, `SELECT id, workspace, proposal_id, config_digest, diff_digest, plan_digest, summary,
		not_before, not_after, policy_epoch, revocation_epoch, approvals, issuer_key_id, single_use, envelope,
		revoked_at, revoked_by, consumed_by, policy FROM certificates WHERE id = ?`, id).Scan(
		&c.ID, &c.Workspace, &c.ProposalID, &c.ConfigDigest, &c.DiffDigest, &c.PlanDigest, &sum,
		&notBefore, &notAfter, &c.PolicyEpoch, &c.RevocationEpoch, &approval, &c.IssuerKeyID, &c.SingleUse, &c.Envelope,
		&revokedAt, &c.RevokedBy, &consumedBy, &decision)
	if err != nil {
		return nil, err
	}
	if decision.Valid {
		c.Policy = &policy.Decision{}
		if err := json.Unmarshal([]byte(decision.String), c.Policy); err != nil {
			return nil, fmt.Errorf("stored policy decision: %v", err)
		}
	}
	if c.Summary, err = decodeSummaryColumn(sum); err != nil {
		return nil, err
	}
	if c.NotBefore, err = parseTime(notBefore); err != nil {
		return nil, err
	}
	if c.NotAfter, err = parseTime(notAfter); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(approval), &c.Approvals); err != nil {
		return nil, fmt.Errorf("stored approvals: %v", err)
	}
	for i := range c.Approvals {
		c.Approvals[i].At = c.Approvals[i].At.UTC()
	}
	if revokedAt.Valid {
		at, err := parseTime(revokedAt.String)
		if err != nil {
			return nil, err
		}
		c.RevokedAt = &at
	}
	c.ConsumedBy = consumedBy.String
	return &c, nil
}

// RevokeCertificate marks a certificate revoked by by at time at;
// ECONFLICT if it already is, ENOTFOUND if it does not exist. A consumed
// certificate can still be revoked: that records the revocation and
// changes nothing else.
func (s *Store) RevokeCertificate(ctx context.Context, id, by string, at time.Time) error {
	return s.write(ctx, target{kind: "certificate", id: id}, func(tx conn) error {
		res, err := tx.ExecContext(ctx, "UPDATE certificates SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
			formatTime(at), by, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var revokedBy string
		if err := tx.QueryRowContext(ctx, "SELECT revoked_by FROM certificates WHERE id = ?", id).Scan(&revokedBy); err != nil {
			return err
		}
		return broker.Errorf(broker.ECONFLICT, "certificate %s is already revoked (by %s)", id, revokedBy)
	})
}

// ConsumeCertificate atomically marks the certificate used by execution e
// and stores e, in one transaction: the conditional UPDATE succeeds for
// one caller only, and the INSERT of the execution commits with it or not
// at all. Other callers get ECONFLICT saying which execution used the
// certificate or that it is revoked; ENOTFOUND if it does not exist;
// ECONFLICT if e's id exists (the certificate then stays unused). An
// empty e.CertificateID is set to certificateID; a different one is
// EINVALID.
//
// Consumption does not look at SingleUse, nor at the validity window:
// every certificate is consumed once, and time is the caller's to check.
func (s *Store) ConsumeCertificate(ctx context.Context, certificateID string, e *broker.Execution) error {
	if e.ID == "" {
		return broker.Errorf(broker.EINVALID, "execution id is empty")
	}
	switch e.CertificateID {
	case certificateID:
	case "":
		e.CertificateID = certificateID
	default:
		return broker.Errorf(broker.EINVALID, "execution %s is for certificate %s, not %s", e.ID, e.CertificateID, certificateID)
	}
	if err := validExecutionState(e.State); err != nil {
		return err
	}
	if err := validJSON("execution divergence", e.Divergence); err != nil {
		return err
	}
	return s.write(ctx, target{kind: "certificate", id: certificateID}, func(tx conn) error {
		res, err := tx.ExecContext(ctx, "UPDATE certificates SET consumed_by = ? WHERE id = ? AND consumed_by IS NULL AND revoked_at IS NULL",
			e.ID, certificateID)
		if err != nil {
			return s.formatError(err, target{kind: "certificate", id: certificateID, conflict: "execution " + e.ID + " already exists"})
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			var consumedBy, revokedAt sql.NullString
			var revokedBy string
			err := tx.QueryRowContext(ctx, "SELECT consumed_by, revoked_at, revoked_by FROM certificates WHERE id = ?", certificateID).
				Scan(&consumedBy, &revokedAt, &revokedBy)
			switch {
			case err != nil:
				return err
			case consumedBy.Valid:
				return broker.Errorf(broker.ECONFLICT, "certificate %s was already used by execution %s", certificateID, consumedBy.String)
			case revokedAt.Valid:
				at, err := parseTime(revokedAt.String)
				if err != nil {
					return err
				}
				return broker.Errorf(broker.ECONFLICT, "certificate %s was revoked at %s by %s", certificateID, at.Format(time.RFC3339), revokedBy)
			default:
				return fmt.Errorf("certificate %s: conditional update matched no row", certificateID)
			}
		}
		return s.formatError(insertExecution(ctx, tx, e), target{kind: "execution", id: e.ID, refKind: "certificate", refID: certificateID})
	})
}

// executionStates are all the execution states.
var executionStates = []broker.ExecutionState{
	broker.ExecutionQueued, broker.ExecutionVerifying, broker.ExecutionPlanning, broker.ExecutionComparing,
	broker.ExecutionApplying, broker.ExecutionSucceeded, broker.ExecutionRefused, broker.ExecutionFailed,
	broker.ExecutionInterrupted,
}

func validExecutionState(st broker.ExecutionState) error {
	if !slices.Contains(executionStates, st) {
		return broker.Errorf(broker.EINVALID, "unknown execution state %q", st)
	}
	return nil
}

func validJSON(what string, raw json.RawMessage) error {
	if len(raw) > 0 && !json.Valid(raw) {
		return broker.Errorf(broker.EINVALID, "%s is not valid JSON", what)
	}
	return nil
}

func insertExecution(ctx context.Context, tx conn, e *broker.Execution) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO executions (id, certificate_id, workspace, state, reason, divergence,
		plan_log_id, apply_log_id, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.CertificateID, e.Workspace, string(e.State), e.Reason, nullText(e.Divergence),
		e.PlanLogID, e.ApplyLogID, formatTime(e.StartedAt), formatTime(e.UpdatedAt))
	return err
}

// UpdateExecution stores an execution's new state, reason, divergence,
// log ids and update time if it is in state from; ENOTFOUND if it does not
// exist, ECONFLICT if it is in another state, EINVALID for an unknown
// state or a divergence that is not JSON. Its other fields are not
// changed.
func (s *Store) UpdateExecution(ctx context.Context, e *broker.Execution, from broker.ExecutionState) error {
	if err := validExecutionState(e.State); err != nil {
		return err
	}
	if err := validJSON("execution divergence", e.Divergence); err != nil {
		return err
	}
	return s.write(ctx, target{kind: "execution", id: e.ID}, func(tx conn) error {
		res, err := tx.ExecContext(ctx, `UPDATE executions SET state = ?, reason = ?, divergence = ?, plan_log_id = ?,
			apply_log_id = ?, updated_at = ? WHERE id = ? AND state = ?`,
			string(e.State), e.Reason, nullText(e.Divergence), e.PlanLogID, e.ApplyLogID, formatTime(e.UpdatedAt), e.ID, string(from))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var state string
		if err := tx.QueryRowContext(ctx, "SELECT state FROM executions WHERE id = ?", e.ID).Scan(&state); err != nil {
			return err
		}
		return broker.Errorf(broker.ECONFLICT, "execution %s is %s, not %s", e.ID, state, from)
	})
}

const executionColumns = `id, certificate_id, workspace, state, reason, divergence, plan_log_id, apply_log_id, started_at, updated_at`

func scanExecution(row scanner) (*broker.Execution, error) {
	var (
		e                    broker.Execution
		state                string
		divergence           sql.NullString
		startedAt, updatedAt string
	)
	err := row.Scan(&e.ID, &e.CertificateID, &e.Workspace, &state, &e.Reason, &divergence,
		&e.PlanLogID, &e.ApplyLogID, &startedAt, &updatedAt)
	if err != nil {
		return nil, err
	}
	e.State = broker.ExecutionState(state)
	if divergence.Valid {
		e.Divergence = json.RawMessage(divergence.String)
	}
	if e.StartedAt, err = parseTime(startedAt); err != nil {
		return nil, err
	}
	if e.UpdatedAt, err = parseTime(updatedAt); err != nil {
		return nil, err
	}
	return &e, nil
}

// Execution returns an execution, or ENOTFOUND.
func (s *Store) Execution(ctx context.Context, id string) (*broker.Execution, error) {
	e, err := scanExecution(s.rd().QueryRowContext(ctx, "SELECT "+executionColumns+" FROM executions WHERE id = ?", id))
	if err != nil {
		return nil, s.formatError(err, target{kind: "execution", id: id})
	}
	return e, nil
}

// finalStates lists the final execution states as SQL literals, as
// ExecutionState.Final decides them.
var finalStates = func() string {
	var quoted []string
	for _, st := range executionStates {
		if st.Final() {
			quoted = append(quoted, "'"+string(st)+"'")
		}
	}
	return strings.Join(quoted, ", ")
}()

// ListExecutions returns the executions matching f, newest (by StartedAt)
// first; EINVALID for a negative limit.
func (s *Store) ListExecutions(ctx context.Context, f broker.ExecutionFilter) ([]*broker.Execution, error) {
	t := target{kind: "executions"}
	var (
		where []string
		args  []any
	)
	if f.Workspace != "" {
		where, args = append(where, "workspace = ?"), append(args, f.Workspace)
	}
	if f.CertificateID != "" {
		where, args = append(where, "certificate_id = ?"), append(args, f.CertificateID)
	}
	if f.Running {
		where = append(where, "state NOT IN ("+finalStates+")")
	}
	limit, err := limitClause(f.Limit)
	if err != nil {
		return nil, err
	}
	query := "SELECT " + executionColumns + " FROM executions" + whereClause(where) + " ORDER BY started_at DESC, rowid DESC" + limit
	rows, err := s.rd().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.formatError(err, t)
	}
	defer rows.Close()
	out := []*broker.Execution{}
	for rows.Next() {
		e, err := scanExecution(rows)
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

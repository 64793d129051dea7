package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

// PutBundle stores a configuration bundle under its digest. Storing a
// digest again is not an error and keeps the first bytes: the digest
// names the content.
func (s *Store) PutBundle(ctx context.Context, digest string, data []byte) error {
	return s.write(ctx, target{kind: "bundle", id: digest}, func(tx conn) error { return s.insertBundle(ctx, tx, digest, data) })
}

func (s *Store) insertBundle(ctx context.Context, x conn, digest string, data []byte) error {
	t := target{kind: "bundle", id: digest}
	if digest == "" {
		return broker.Errorf(broker.EINVALID, "bundle digest is empty")
	}
	_, err := x.ExecContext(ctx, "INSERT INTO bundles (digest, data) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING", digest, blob(data))
	return s.formatError(err, t)
}

// Bundle returns a stored bundle, or ENOTFOUND.
func (s *Store) Bundle(ctx context.Context, digest string) ([]byte, error) {
	var data []byte
	err := s.rd().QueryRowContext(ctx, "SELECT data FROM bundles WHERE digest = ?", digest).Scan(&data)
	if err != nil {
		return nil, s.formatError(err, target{kind: "bundle", id: digest})
	}
	return data, nil
}

func validProposalState(st broker.ProposalState) error {
	switch st {
	case broker.ProposalVerifying, broker.ProposalPending, broker.ProposalDiverged, broker.ProposalCertified,
		broker.ProposalRejected, broker.ProposalRefused:
		return nil
	}
	return broker.Errorf(broker.EINVALID, "unknown proposal state %q", st)
}

// encodeSummary returns a summary's canonical JSON, or NULL for nil. It
// refuses a summary that would not read back.
func encodeSummary(sum *planparse.Summary) (sql.NullString, error) {
	if sum == nil {
		return sql.NullString{}, nil
	}
	if err := sum.Validate(); err != nil {
		return sql.NullString{}, broker.Errorf(broker.EINVALID, "summary: %v", err)
	}
	return sql.NullString{String: string(sum.Canonical()), Valid: true}, nil
}

func decodeSummaryColumn(col sql.NullString) (*planparse.Summary, error) {
	if !col.Valid {
		return nil, nil
	}
	var sum planparse.Summary
	if err := json.Unmarshal([]byte(col.String), &sum); err != nil {
		return nil, fmt.Errorf("stored summary: %v", err)
	}
	return &sum, nil
}

// CreateProposal stores a new proposal; ECONFLICT if the id exists,
// EINVALID for an empty id, an unknown state or a summary that does not
// validate.
func (s *Store) CreateProposal(ctx context.Context, p *broker.Proposal) error {
	return s.write(ctx, target{kind: "proposal", id: p.ID}, func(tx conn) error { return s.insertProposal(ctx, tx, p) })
}

func (s *Store) insertProposal(ctx context.Context, x conn, p *broker.Proposal) error {
	t := target{kind: "proposal", id: p.ID}
	if p.ID == "" {
		return broker.Errorf(broker.EINVALID, "proposal id is empty")
	}
	if err := validProposalState(p.State); err != nil {
		return err
	}
	vars, err := json.Marshal(p.Vars)
	if err != nil {
		return s.formatError(err, t)
	}
	sum, divergence, driftJSON, disclosure, decision, err := s.encodeVerification(p)
	if err != nil {
		return err
	}
	_, err = x.ExecContext(ctx, `INSERT INTO proposals (id, workspace, config_digest, vars, rationale, proposer,
		summary, digest, plan_digest, agent_digest, divergence, drift, disclosure, policy, state, reason, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.Workspace, p.ConfigDigest, string(vars), p.Rationale, p.Proposer,
		sum, p.Digest, p.PlanDigest, p.AgentDigest, divergence, string(driftJSON), disclosure, decision, string(p.State), p.Reason,
		formatTime(p.CreatedAt), formatTime(p.UpdatedAt))
	return s.formatError(err, t)
}

const proposalColumns = `id, workspace, config_digest, vars, rationale, proposer, summary, digest,
	plan_digest, agent_digest, divergence, drift, disclosure, policy, state, reason, created_at, updated_at`

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanProposal(row scanner) (*broker.Proposal, error) {
	var (
		p                    broker.Proposal
		vars, state, drift   string
		sum, divergence      sql.NullString
		disclosure, decision sql.NullString
		createdAt, updatedAt string
	)
	err := row.Scan(&p.ID, &p.Workspace, &p.ConfigDigest, &vars, &p.Rationale, &p.Proposer, &sum, &p.Digest,
		&p.PlanDigest, &p.AgentDigest, &divergence, &drift, &disclosure, &decision, &state, &p.Reason, &createdAt, &updatedAt)
	if err != nil {
		return nil, err
	}
	p.State = broker.ProposalState(state)
	if err := json.Unmarshal([]byte(vars), &p.Vars); err != nil {
		return nil, fmt.Errorf("stored vars: %v", err)
	}
	if p.Summary, err = decodeSummaryColumn(sum); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(drift), &p.Drift); err != nil {
		return nil, fmt.Errorf("stored drift: %v", err)
	}
	if len(p.Drift) == 0 {
		p.Drift = nil
	}
	if divergence.Valid {
		if p.Divergence, err = decodeDivergence([]byte(divergence.String)); err != nil {
			return nil, fmt.Errorf("stored %v", err)
		}
	}
	if disclosure.Valid {
		p.Disclosure = &planparse.Disclosure{}
		if err := json.Unmarshal([]byte(disclosure.String), p.Disclosure); err != nil {
			return nil, fmt.Errorf("stored disclosure: %v", err)
		}
	}
	if decision.Valid {
		p.Policy = &policy.Decision{}
		if err := json.Unmarshal([]byte(decision.String), p.Policy); err != nil {
			return nil, fmt.Errorf("stored policy decision: %v", err)
		}
	}
	if p.CreatedAt, err = parseTime(createdAt); err != nil {
		return nil, err
	}
	if p.UpdatedAt, err = parseTime(updatedAt); err != nil {
		return nil, err
	}
	return &p, nil
}

// ProposerBundleBytes implements broker.Store.
func (s *Store) ProposerBundleBytes(ctx context.Context, proposer string, since time.Time) (int64, error) {
	var n int64
	err := s.rd().QueryRowContext(ctx, `SELECT CAST(coalesce(sum(length(b.data)), 0) AS BIGINT) FROM bundles b
		WHERE b.digest IN (SELECT config_digest FROM proposals WHERE proposer = ? AND created_at >= ?
			UNION SELECT config_digest FROM jobs WHERE owner = ? AND created_at >= ?)`,
		proposer, formatTime(since), proposer, formatTime(since)).Scan(&n)
	if err != nil {
		return 0, s.formatError(err, target{kind: "bundles of", id: proposer})
	}
	return n, nil
}

// Proposal returns a proposal, or ENOTFOUND.
func (s *Store) Proposal(ctx context.Context, id string) (*broker.Proposal, error) {
	p, err := scanProposal(s.rd().QueryRowContext(ctx, "SELECT "+proposalColumns+" FROM proposals WHERE id = ?", id))
	if err != nil {
		return nil, s.formatError(err, target{kind: "proposal", id: id})
	}
	return p, nil
}

// ListProposals returns the proposals matching f, newest (by CreatedAt)
// first; EINVALID for a negative limit or an unknown state.
func (s *Store) ListProposals(ctx context.Context, f broker.ProposalFilter) ([]*broker.Proposal, error) {
	t := target{kind: "proposals"}
	var (
		where []string
		args  []any
	)
	if f.Workspace != "" {
		where, args = append(where, "workspace = ?"), append(args, f.Workspace)
	}
	if len(f.Workspaces) > 0 {
		where = append(where, "workspace IN ("+strings.Repeat("?, ", len(f.Workspaces)-1)+"?)")
		for _, w := range f.Workspaces {
			args = append(args, w)
		}
	}
	if f.State != "" {
		if err := validProposalState(f.State); err != nil {
			return nil, err
		}
		where, args = append(where, "state = ?"), append(args, string(f.State))
	}
	if f.Proposer != "" {
		where, args = append(where, "proposer = ?"), append(args, f.Proposer)
	}
	if f.After != "" {
		var n int
		if err := s.rd().QueryRowContext(ctx, "SELECT count(*) FROM proposals WHERE id = ?", f.After).Scan(&n); err != nil {
			return nil, s.formatError(err, t)
		}
		if n == 0 {
			return nil, broker.Errorf(broker.ENOTFOUND, "no proposal %s to list after", f.After)
		}
		cmp := "<"
		if f.OldestFirst {
			cmp = ">"
		}
		where = append(where, "(created_at, rowid) "+cmp+" (SELECT created_at, rowid FROM proposals WHERE id = ?)")
		args = append(args, f.After)
	}
	limit, err := limitClause(f.Limit)
	if err != nil {
		return nil, err
	}
	// rowid breaks ties of CreatedAt: the later insert is the newer.
	order := " ORDER BY created_at DESC, rowid DESC"
	if f.OldestFirst {
		order = " ORDER BY created_at ASC, rowid ASC"
	}
	query := "SELECT " + proposalColumns + " FROM proposals" + whereClause(where) + order + limit
	rows, err := s.rd().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.formatError(err, t)
	}
	defer rows.Close()
	out := []*broker.Proposal{}
	for rows.Next() {
		p, err := scanProposal(rows)
		if err != nil {
			return nil, s.formatError(err, t)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.formatError(err, t)
	}
	return out, nil
}

func whereClause(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// SetProposalState moves a proposal from state from to state to at time
// at; ECONFLICT (naming the state it is in) if it is not in state from,
// ENOTFOUND if it does not exist.
func (s *Store) SetProposalState(ctx context.Context, id string, from, to broker.ProposalState, at time.Time) error {
	if err := validProposalState(from); err != nil {
		return err
	}
	if err := validProposalState(to); err != nil {
		return err
	}
	return s.write(ctx, target{kind: "proposal", id: id}, func(tx conn) error {
		res, err := tx.ExecContext(ctx, "UPDATE proposals SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
			string(to), formatTime(at), id, string(from))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var state string
		if err := tx.QueryRowContext(ctx, "SELECT state FROM proposals WHERE id = ?", id).Scan(&state); err != nil {
			return err
		}
		return broker.Errorf(broker.ECONFLICT, "proposal %s is %s, not %s", id, state, from)
	})
}

// encodeVerification encodes what seb's plan of a proposal found: its
// summary, the divergence from the agent's plan, the drift, and what
// reviewers cannot read, and what its workspace's policy decided.
func (s *Store) encodeVerification(p *broker.Proposal) (sum, divergence sql.NullString, drift []byte, disclosure, decision sql.NullString, err error) {
	if sum, err = encodeSummary(p.Summary); err != nil {
		return sum, divergence, nil, disclosure, decision, err
	}
	if p.Divergence != nil {
		data, err := encodeDivergence(p.Divergence)
		if err != nil {
			return sum, divergence, nil, disclosure, decision, broker.Errorf(broker.EINVALID, "proposal %s: %v", p.ID, err)
		}
		divergence = sql.NullString{String: string(data), Valid: true}
	}
	changes := p.Drift
	if changes == nil {
		changes = []planparse.ResourceChange{}
	}
	if drift, err = json.Marshal(changes); err != nil {
		return sum, divergence, nil, disclosure, decision, s.formatError(err, target{kind: "proposal", id: p.ID})
	}
	if p.Disclosure != nil {
		data, err := json.Marshal(p.Disclosure)
		if err != nil {
			return sum, divergence, nil, disclosure, decision, s.formatError(err, target{kind: "proposal", id: p.ID})
		}
		disclosure = sql.NullString{String: string(data), Valid: true}
	}
	if p.Policy != nil {
		data, err := json.Marshal(p.Policy)
		if err != nil {
			return sum, divergence, nil, disclosure, decision, s.formatError(err, target{kind: "proposal", id: p.ID})
		}
		decision = sql.NullString{String: string(data), Valid: true}
	}
	return sum, divergence, drift, disclosure, decision, nil
}

// CompleteVerification records the outcome of seb's plan of a verifying
// proposal; ECONFLICT if it is not verifying.
func (s *Store) CompleteVerification(ctx context.Context, p *broker.Proposal) error {
	t := target{kind: "proposal", id: p.ID}
	if err := validProposalState(p.State); err != nil {
		return err
	}
	sum, divergence, driftJSON, disclosure, decision, err := s.encodeVerification(p)
	if err != nil {
		return err
	}
	return s.write(ctx, t, func(tx conn) error {
		res, err := tx.ExecContext(ctx, `UPDATE proposals SET summary = ?, digest = ?, plan_digest = ?, divergence = ?, drift = ?,
			disclosure = ?, policy = ?, state = ?, reason = ?, updated_at = ? WHERE id = ? AND state = 'verifying'`,
			sum, p.Digest, p.PlanDigest, divergence, string(driftJSON), disclosure, decision, string(p.State), p.Reason, formatTime(p.UpdatedAt), p.ID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n != 1 {
			var state string
			if err := tx.QueryRowContext(ctx, "SELECT state FROM proposals WHERE id = ?", p.ID).Scan(&state); err != nil {
				return err
			}
			return broker.Errorf(broker.ECONFLICT, "proposal %s is %s, not verifying", p.ID, state)
		}
		return nil
	})
}

// AddReview stores a reviewer's verdict; ECONFLICT if that reviewer
// already reviewed the proposal, ENOTFOUND if the proposal does not exist,
// EINVALID for an empty reviewer or an unknown decision.
func (s *Store) AddReview(ctx context.Context, r broker.Review) error {
	if r.Reviewer == "" {
		return broker.Errorf(broker.EINVALID, "reviewer is empty")
	}
	if r.Decision != broker.Approve && r.Decision != broker.Reject {
		return broker.Errorf(broker.EINVALID, "unknown decision %q", r.Decision)
	}
	t := target{
		kind: "review of proposal " + r.ProposalID + " by", id: r.Reviewer,
		refKind: "proposal", refID: r.ProposalID,
		conflict: r.Reviewer + " already reviewed proposal " + r.ProposalID,
	}
	groups, err := json.Marshal(append([]string{}, r.Groups...))
	if err != nil {
		return s.formatError(err, t)
	}
	return s.exec(ctx, t, "INSERT INTO reviews (proposal_id, reviewer, decision, comment, at, groups) VALUES (?, ?, ?, ?, ?, ?)",
		r.ProposalID, r.Reviewer, string(r.Decision), r.Comment, formatTime(r.At), string(groups))
}

// Reviews returns a proposal's reviews, oldest first; none (not ENOTFOUND)
// for a proposal that does not exist.
func (s *Store) Reviews(ctx context.Context, proposalID string) ([]broker.Review, error) {
	t := target{kind: "reviews of proposal", id: proposalID}
	rows, err := s.rd().QueryContext(ctx, "SELECT reviewer, decision, comment, at, groups FROM reviews WHERE proposal_id = ? ORDER BY at, rowid", proposalID)
	if err != nil {
		return nil, s.formatError(err, t)
	}
	defer rows.Close()
	out := []broker.Review{}
	for rows.Next() {
		r := broker.Review{ProposalID: proposalID}
		var decision, at, groups string
		if err := rows.Scan(&r.Reviewer, &decision, &r.Comment, &at, &groups); err != nil {
			return nil, s.formatError(err, t)
		}
		r.Decision = broker.Decision(decision)
		if err := json.Unmarshal([]byte(groups), &r.Groups); err != nil {
			return nil, s.formatError(fmt.Errorf("stored groups: %v", err), t)
		}
		if len(r.Groups) == 0 {
			r.Groups = nil
		}
		if r.At, err = parseTime(at); err != nil {
			return nil, s.formatError(err, t)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.formatError(err, t)
	}
	return out, nil
}

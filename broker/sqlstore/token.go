package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/seb-broker/seb/broker"
)

// CreateAPIToken stores a token's record; ECONFLICT if the name is taken.
func (s *Store) CreateAPIToken(ctx context.Context, t *broker.APIToken) error {
	target := target{kind: "API token", id: t.Name, conflict: "an API token named " + t.Name + " already exists"}
	if err := t.Role.Valid(); err != nil {
		return err
	}
	scope, err := json.Marshal(append([]string{}, t.Workspaces...))
	if err != nil {
		return s.formatError(err, target)
	}
	groups, err := json.Marshal(append([]string{}, t.Groups...))
	if err != nil {
		return s.formatError(err, target)
	}
	return s.exec(ctx, target, "INSERT INTO api_tokens (id, name, role, hash, created_at, workspaces, groups) VALUES (?, ?, ?, ?, ?, ?, ?)",
		t.ID, t.Name, string(t.Role), t.Hash, formatTime(t.CreatedAt), string(scope), string(groups))
}

// APITokenByHash returns the token with that hash, or ENOTFOUND.
func (s *Store) APITokenByHash(ctx context.Context, hash string) (*broker.APIToken, error) {
	t, err := scanAPIToken(s.rd().QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM api_tokens WHERE hash = ?", hash))
	if err != nil {
		return nil, s.formatError(err, target{kind: "API token", id: "with that hash"})
	}
	return t, nil
}

// APITokenByName implements broker.Store.
func (s *Store) APITokenByName(ctx context.Context, name string) (*broker.APIToken, error) {
	t, err := scanAPIToken(s.rd().QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM api_tokens WHERE name = ?", name))
	if err != nil {
		return nil, s.formatError(err, target{kind: "API token", id: name})
	}
	return t, nil
}

// ListAPITokens implements broker.Store.
func (s *Store) ListAPITokens(ctx context.Context) ([]*broker.APIToken, error) {
	rows, err := s.rd().QueryContext(ctx, "SELECT "+tokenColumns+" FROM api_tokens ORDER BY name")
	if err != nil {
		return nil, s.formatError(err, target{kind: "API tokens"})
	}
	defer rows.Close()
	var out []*broker.APIToken
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, s.formatError(err, target{kind: "API tokens"})
		}
		out = append(out, t)
	}
	return out, s.formatError(rows.Err(), target{kind: "API tokens"})
}

const tokenColumns = "id, name, role, hash, created_at, workspaces, groups"

func scanAPIToken(row scanner) (*broker.APIToken, error) {
	var (
		t               broker.APIToken
		role, at, scope string
		groups          string
	)
	if err := row.Scan(&t.ID, &t.Name, &role, &t.Hash, &at, &scope, &groups); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(groups), &t.Groups); err != nil {
		return nil, fmt.Errorf("stored token groups: %v", err)
	}
	if len(t.Groups) == 0 {
		t.Groups = nil
	}
	t.Role = broker.Role(role)
	if err := json.Unmarshal([]byte(scope), &t.Workspaces); err != nil {
		return nil, fmt.Errorf("stored token workspaces: %v", err)
	}
	if len(t.Workspaces) == 0 {
		t.Workspaces = nil
	}
	var err error
	if t.CreatedAt, err = parseTime(at); err != nil {
		return nil, err
	}
	return &t, nil
}

// DeleteAPIToken implements broker.Store.
func (s *Store) DeleteAPIToken(ctx context.Context, name string) error {
	return s.write(ctx, target{kind: "API token", id: name}, func(tx conn) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM api_tokens WHERE name = ?", name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		return broker.Errorf(broker.ENOTFOUND, "no API token named %s", name)
	})
}

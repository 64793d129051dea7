package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Role is what an API token may do.
type Role string

// The roles: agents propose and read their own; reviewers approve or
// reject (never their own); CI executes and reads; admins manage
// workspaces, revocation, epochs and keys; runners lease jobs and report
// on them, and can do nothing else.
const (
	RoleAgent    Role = "agent"
	RoleReviewer Role = "reviewer"
	RoleCI       Role = "ci"
	RoleAdmin    Role = "admin"
	RoleRunner   Role = "runner"
)

// Valid reports whether r is a known role.
func (r Role) Valid() error {
	switch r {
	case RoleAgent, RoleReviewer, RoleCI, RoleAdmin, RoleRunner:
		return nil
	}
	return Errorf(EINVALID, "role %q is not one of agent, reviewer, ci, admin, runner", r)
}

// An APIToken is a bearer token for seb's API. Only its hash is stored.
type APIToken struct {
	ID        string
	Name      string
	Role      Role
	Hash      string
	CreatedAt time.Time
	// Workspaces limits the token to these workspaces; empty: all. A
	// token for team A's workspaces cannot propose to, read or execute in
	// team B's.
	Workspaces []string
	// Groups are the groups its holder belongs to, which a policy may
	// require approvals from (e.g. security).
	Groups []string
}

// A Session is a UI sign-in: a cookie's id, of which only the hash is
// stored, bound to the API token it was made with. Any replica serves it.
type Session struct {
	IDHash string
	// TokenHash names the API token; the token is read again at every
	// request, so revoking it ends its sessions.
	TokenHash string
	// CSRF is the session's form token.
	CSRF    string
	Expires time.Time
}

// Allows reports whether the token may act on workspace.
func (t *APIToken) Allows(workspace string) bool {
	return len(t.Workspaces) == 0 || slices.Contains(t.Workspaces, workspace)
}

// apiTokenPrefix marks seb tokens, so that secret scanners can find leaked
// ones.
const apiTokenPrefix = "seb_"

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// NewAPIToken returns a fresh random token (shown once, never stored) and
// the record to store for it.
func NewAPIToken(name string, role Role, now time.Time) (string, *APIToken, error) {
	if !tokenName.MatchString(name) {
		return "", nil, Errorf(EINVALID, "token name %q: letters, digits, '.', '_', '@' and '-', at most 64", name)
	}
	if err := role.Valid(); err != nil {
		return "", nil, err
	}
	var secret [32]byte
	rand.Read(secret[:])
	token := apiTokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	return token, &APIToken{ID: newID("tok"), Name: name, Role: role, Hash: HashAPIToken(token), CreatedAt: now.UTC()}, nil
}

// HashAPIToken returns the stored form of a token: its SHA-256. Tokens are
// 256 random bits, so a fast hash is enough; there is nothing to guess.
func HashAPIToken(token string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CreateAPIToken makes a token named name with role for by and stores its
// record with the audit entry saying so, in one transaction; it returns
// the token, which is shown once and never stored. A taken name is
// ECONFLICT. It needs no running broker: `seb tokens create` calls it on
// the store and signer directly.
//
// scope.Workspaces limits the token to them (none: all); each must be one
// of known. scope.Groups are its holder's groups.
func CreateAPIToken(ctx context.Context, st Store, signer *Signer, name string, role Role, scope TokenScope, known []string, by string, now time.Time) (string, *APIToken, error) {
	token, record, err := NewAPIToken(name, role, now)
	if err != nil {
		return "", nil, err
	}
	for _, w := range scope.Workspaces {
		if !slices.Contains(known, w) {
			return "", nil, Errorf(EINVALID, "workspace %q is not configured", w)
		}
	}
	for _, g := range scope.Groups {
		if !groupName.MatchString(g) {
			return "", nil, Errorf(EINVALID, "group %q: use lower-case letters, digits, - and _ (at most 64)", g)
		}
	}
	record.Workspaces = slices.Compact(slices.Sorted(slices.Values(scope.Workspaces)))
	record.Groups = slices.Compact(slices.Sorted(slices.Values(scope.Groups)))
	entry := AuditEntry{Time: now, Actor: by, Action: "token.created", Subject: name}
	details := map[string]any{"role": role, "id": record.ID, "workspaces": append([]string{}, record.Workspaces...)}
	if len(record.Groups) > 0 {
		details["groups"] = record.Groups
	}
	entry.Details, _ = json.Marshal(details)
	err = st.Tx(ctx, func(tx Store) error {
		if err := tx.CreateAPIToken(ctx, record); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, func(last *AuditEntry) (*AuditEntry, error) { return signer.SealAudit(last, entry) })
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return token, record, nil
}

// TokenScope is what a new token is limited to and who holds it.
type TokenScope struct {
	// Workspaces limits the token to them; none: all.
	Workspaces []string
	// Groups are its holder's groups, which a policy may require
	// approvals from.
	Groups []string
}

// groupName is what a group's name must look like.
var groupName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// RevokeAPIToken deletes the token named name, with the audit entry
// saying who did, in one transaction: it authenticates nothing from its
// next request on, and the UI sessions it opened end. ENOTFOUND if there
// is none.
func RevokeAPIToken(ctx context.Context, st Store, signer *Signer, name, by string, now time.Time) error {
	entry := AuditEntry{Time: now, Actor: by, Action: "token.revoked", Subject: name, Details: json.RawMessage(`{}`)}
	return st.Tx(ctx, func(tx Store) error {
		if err := tx.DeleteAPIToken(ctx, name); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, func(last *AuditEntry) (*AuditEntry, error) { return signer.SealAudit(last, entry) })
		return err
	})
}

// CreateAPIToken is CreateAPIToken on the broker's store and signer.
func (b *Service) CreateAPIToken(ctx context.Context, name string, role Role, scope TokenScope, by string) (string, *APIToken, error) {
	var known []string
	for _, w := range b.Workspaces() {
		known = append(known, w.Name)
	}
	return CreateAPIToken(ctx, b.opts.Store, b.opts.Signer, name, role, scope, known, by, b.now())
}

// RevokeAPIToken is RevokeAPIToken on the broker's store and signer.
func (b *Service) RevokeAPIToken(ctx context.Context, name, by string) error {
	return RevokeAPIToken(ctx, b.opts.Store, b.opts.Signer, name, by, b.now())
}

// APITokens lists the API tokens (never their secrets), by name.
func (b *Service) APITokens(ctx context.Context) ([]*APIToken, error) {
	return b.opts.Store.ListAPITokens(ctx)
}

// RecordRefusedAuthentications audits, in one entry, how many requests
// were refused for their token since a time, by reason ("missing",
// "unknown"): what a probe for tokens looks like, without one entry per
// request.
func (b *Service) RecordRefusedAuthentications(ctx context.Context, counts map[string]int, since time.Time) error {
	return b.audit(ctx, b.opts.Store, "seb", "auth.refused", "api", map[string]any{"counts": counts, "since": since.UTC()})
}

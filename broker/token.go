package broker

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"regexp"
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

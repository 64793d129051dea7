package broker

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/go-jose/go-jose/v4"
)

// A Phase is what a credential is minted for: planning or applying.
type Phase string

// The phases of a credential. A plan-phase credential is read-only by
// contract: the broker cannot stop its holder from sending a mutating
// request, so every resource API that trusts the broker must refuse one
// (fixtures/sandboxcloud answers 403). Only an apply-phase credential may
// mutate, and the broker mints one only for an execution of a certified
// change.
const (
	PhasePlan  Phase = "plan"
	PhaseApply Phase = "apply"
)

// Valid returns an error unless p is PhasePlan or PhaseApply.
func (p Phase) Valid() error {
	if p != PhasePlan && p != PhaseApply {
		return fmt.Errorf("phase %q is neither %q nor %q", string(p), PhasePlan, PhaseApply)
	}
	return nil
}

// Credential lifetimes: a credential lives minutes, long enough for one
// Terraform run's API calls, not for a session.
const (
	DefaultCredentialLifetime = 5 * time.Minute
	MinCredentialLifetime     = 30 * time.Second
	MaxCredentialLifetime     = 15 * time.Minute
)

// Subject returns the subject of a credential for workspace and phase:
// "workspace:<name>:phase:<plan|apply>".
func Subject(workspace string, phase Phase) string {
	return "workspace:" + workspace + ":phase:" + string(phase)
}

// workspaceNamePattern is what a workspace name may be. It cannot contain
// ':', so a subject always splits back into workspace and phase.
var workspaceNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// issuerPathPattern is what the path of an issuer URL may be; it becomes
// part of the routes of Handler.
var issuerPathPattern = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)*$`)

// Limits on the free-form strings a credential carries.
const (
	maxAudienceBytes = 512
	maxIDBytes       = 128
)

// ErrInvalidCredentialRequest is wrapped by the error MintCredential
// returns for a request it refuses; the rest of the message says why, in
// words fit for the requester.
var ErrInvalidCredentialRequest = errors.New("invalid credential request")

// IssuerOptions configure an Issuer.
type IssuerOptions struct {
	// URL is the issuer identifier: the "iss" of every credential, and the
	// base of the discovery document and JWKS URLs, e.g.
	// "http://127.0.0.1:8080". It must be an absolute http or https URL
	// without query or fragment; a trailing slash is dropped. Real clouds
	// accept only https issuers.
	URL string
	// Keys sign the credentials.
	Keys *KeySet
	// Now is the clock for issue and expiry times; nil means time.Now.
	Now func() time.Time
	// DefaultLifetime is the lifetime of a credential whose request names
	// none. Zero means DefaultCredentialLifetime; otherwise it must be
	// between MinCredentialLifetime and MaxCredentialLifetime.
	DefaultLifetime time.Duration
}

// Valid returns an error if the options cannot be used.
func (o IssuerOptions) Valid() error {
	if err := validIssuerURL(o.URL); err != nil {
		return fmt.Errorf("IssuerOptions.URL: %w", err)
	}
	if o.Keys == nil {
		return errors.New("IssuerOptions.Keys is nil")
	}
	if o.DefaultLifetime != 0 {
		if err := validLifetime(o.DefaultLifetime); err != nil {
			return fmt.Errorf("IssuerOptions.DefaultLifetime: %w", err)
		}
	}
	return nil
}

func validIssuerURL(raw string) error {
	if raw == "" {
		return errors.New("empty")
	}
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not an http or https URL", raw)
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q has no host", raw)
	case u.User != nil:
		return fmt.Errorf("%q carries user information", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("%q has a query or fragment", raw)
	case !issuerPathPattern.MatchString(u.EscapedPath()):
		return fmt.Errorf("%q has a path that is not plain path segments", raw)
	}
	return nil
}

// An Issuer mints the broker's scoped credentials and publishes the keys
// that verify them (see Handler).
type Issuer struct {
	url             string
	path            string // the path of url, "" at the server root
	keys            *KeySet
	now             func() time.Time
	defaultLifetime time.Duration
}

// NewIssuer returns an issuer configured by opts, or the error of
// opts.Valid.
func NewIssuer(opts IssuerOptions) (*Issuer, error) {
	if err := opts.Valid(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DefaultLifetime == 0 {
		opts.DefaultLifetime = DefaultCredentialLifetime
	}
	issuerURL := strings.TrimSuffix(opts.URL, "/")
	u, _ := url.Parse(issuerURL) // checked by Valid
	return &Issuer{
		url:             issuerURL,
		path:            u.EscapedPath(),
		keys:            opts.Keys,
		now:             opts.Now,
		defaultLifetime: opts.DefaultLifetime,
	}, nil
}

// URL returns the issuer identifier, the "iss" of its credentials.
func (i *Issuer) URL() string { return i.url }

// A CredentialRequest asks for a credential for one workspace and phase.
type CredentialRequest struct {
	// Workspace is the workspace name the credential is scoped to.
	Workspace string
	// Audience is the API the credential is for (the workspace credential
	// profile's audience, e.g. "sts.amazonaws.com"); it is the token's
	// only "aud".
	Audience string
	// Phase is PhasePlan (read-only by contract) or PhaseApply.
	Phase Phase
	// ExecutionID and CertificateID name the execution and the certificate
	// it runs under. An apply-phase credential requires both; a plan-phase
	// one carries them when there are any.
	ExecutionID   string
	CertificateID string
	// Lifetime is how long the credential is valid: zero for the issuer's
	// default, else between MinCredentialLifetime and
	// MaxCredentialLifetime.
	Lifetime time.Duration
}

// Valid returns an error wrapping ErrInvalidCredentialRequest if the
// request cannot be granted as it stands.
func (r CredentialRequest) Valid() error {
	if err := r.valid(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCredentialRequest, err)
	}
	return nil
}

func (r CredentialRequest) valid() error {
	switch {
	case r.Workspace == "":
		return errors.New("workspace is empty")
	case !workspaceNamePattern.MatchString(r.Workspace):
		return fmt.Errorf("workspace %q is not a workspace name (lower-case letters, digits, '-' and '_', starting with a letter or digit, at most 64)", r.Workspace)
	}
	if err := r.Phase.Valid(); err != nil {
		return err
	}
	if err := validText("audience", r.Audience, maxAudienceBytes); err != nil {
		return err
	}
	if r.Phase == PhaseApply {
		if r.ExecutionID == "" {
			return errors.New("an apply-phase credential requires an execution id: apply happens only in an execution")
		}
		if r.CertificateID == "" {
			return errors.New("an apply-phase credential requires a certificate id: apply happens only for a certified change")
		}
	}
	if r.ExecutionID != "" {
		if err := validText("execution id", r.ExecutionID, maxIDBytes); err != nil {
			return err
		}
	}
	if r.CertificateID != "" {
		if err := validText("certificate id", r.CertificateID, maxIDBytes); err != nil {
			return err
		}
	}
	if r.Lifetime != 0 {
		if err := validLifetime(r.Lifetime); err != nil {
			return fmt.Errorf("lifetime: %w", err)
		}
	}
	return nil
}

// validText checks a free-form claim value: present, bounded, and free of
// spaces and control characters.
func validText(what, s string, maxBytes int) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > maxBytes:
		return fmt.Errorf("%s is longer than %d bytes", what, maxBytes)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%s %q contains spaces or control characters", what, s)
	}
	return nil
}

func validLifetime(d time.Duration) error {
	if d < MinCredentialLifetime || d > MaxCredentialLifetime {
		return fmt.Errorf("%s is outside %s..%s", d, MinCredentialLifetime, MaxCredentialLifetime)
	}
	return nil
}

// Claims are the claims of a scoped credential, as its JWT payload carries
// them. Times are JWT NumericDates: seconds since the Unix epoch.
type Claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"` // Subject(Workspace, Phase)
	Audience  []string `json:"aud"`
	ExpiresAt int64    `json:"exp"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf"` // the same as IssuedAt
	ID        string   `json:"jti"` // random, unique per credential

	Workspace     string `json:"workspace"`
	Phase         Phase  `json:"phase"`
	ExecutionID   string `json:"execution_id,omitempty"`
	CertificateID string `json:"certificate_id,omitempty"`
}

// A Credential is a signed JWT and what it says. The token is a bearer
// secret: String and LogValue leave it out, so a credential can be logged.
type Credential struct {
	Token     string    // the compact JWS
	ExpiresAt time.Time // Claims.ExpiresAt, in UTC
	KeyID     string    // the "kid" of the key that signed it
	Claims    Claims
}

// String describes the credential without its token.
func (c Credential) String() string {
	return fmt.Sprintf("credential %s for %s (audience %s), key %s, expires %s",
		c.Claims.ID, c.Claims.Subject, strings.Join(c.Claims.Audience, ","), c.KeyID, c.ExpiresAt.Format(time.RFC3339))
}

// LogValue describes the credential to log/slog without its token.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("jti", c.Claims.ID),
		slog.String("sub", c.Claims.Subject),
		slog.Any("aud", c.Claims.Audience),
		slog.String("kid", c.KeyID),
		slog.Time("expires_at", c.ExpiresAt),
	)
}

// MintCredential returns a credential for req, signed RS256 by the current
// key, with the key id in its header. Its issue time is the issuer's clock
// truncated to the second, and it expires Lifetime (or the default) later.
// A plan-phase credential is read-only by contract: resource APIs must
// refuse it any mutation. MintCredential returns an error wrapping
// ErrInvalidCredentialRequest if req is not valid.
func (i *Issuer) MintCredential(req CredentialRequest) (Credential, error) {
	if err := req.Valid(); err != nil {
		return Credential{}, err
	}
	lifetime := req.Lifetime
	if lifetime == 0 {
		lifetime = i.defaultLifetime
	}
	issued := time.Unix(i.now().Unix(), 0).UTC()
	expires := time.Unix(issued.Add(lifetime).Unix(), 0).UTC()
	claims := Claims{
		Issuer:        i.url,
		Subject:       Subject(req.Workspace, req.Phase),
		Audience:      []string{req.Audience},
		ExpiresAt:     expires.Unix(),
		IssuedAt:      issued.Unix(),
		NotBefore:     issued.Unix(),
		ID:            rand.Text(),
		Workspace:     req.Workspace,
		Phase:         req.Phase,
		ExecutionID:   req.ExecutionID,
		CertificateID: req.CertificateID,
	}
	key := i.keys.current()
	token, err := sign(key, claims)
	if err != nil {
		return Credential{}, fmt.Errorf("mint credential: %w", err)
	}
	return Credential{Token: token, ExpiresAt: expires, KeyID: key.id, Claims: claims}, nil
}

// sign returns the compact JWS of claims signed with key: header alg
// RS256, kid, typ JWT.
func sign(key signingKey, claims Claims) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key.private, KeyID: key.id}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

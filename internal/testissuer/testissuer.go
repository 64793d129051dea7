// Package testissuer is a minimal OpenID-style token issuer for tests: it
// publishes a discovery document and a JWKS over HTTP on 127.0.0.1 and
// mints RS256 credentials with the claims of seb's scoped credential.
package testissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/seb-broker/seb/fixtures/sandboxcloud"
)

// An Issuer signs tokens with its current key and publishes the public
// halves of all its keys.
type Issuer struct {
	server *httptest.Server

	mu   sync.Mutex
	keys []signingKey // the last one signs
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

// New starts an issuer with one key; it stops when the test ends.
func New(t testing.TB) *Issuer {
	t.Helper()
	iss := &Issuer{}
	iss.Rotate(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                iss.URL(),
			"jwks_uri":                              iss.URL() + "/.well-known/jwks.json",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
		})
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		iss.mu.Lock()
		defer iss.mu.Unlock()
		keys := []map[string]string{}
		for _, k := range iss.keys {
			keys = append(keys, PublicJWK(k.id, &k.key.PublicKey))
		}
		writeJSON(w, map[string]any{"keys": keys})
	})
	iss.server = httptest.NewServer(mux)
	t.Cleanup(iss.server.Close)
	return iss
}

// URL is the issuer's URL, the "iss" of its tokens.
func (iss *Issuer) URL() string { return iss.server.URL }

// Rotate adds a new signing key; older keys stay published.
func (iss *Issuer) Rotate(t testing.TB) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.keys = append(iss.keys, signingKey{id: "test-" + time.Now().Format("150405.000000000"), key: key})
}

// Token describes a credential to mint; zero fields take the defaults of a
// valid credential for Mint's workspace and phase.
type Token struct {
	Issuer   string
	Audience string
	Subject  string
	Lifetime time.Duration // negative: already expired
	// Key signs instead of the issuer's current key (a forgery), with KeyID.
	Key   *rsa.PrivateKey
	KeyID string
	// NoIssuedAt leaves out the iat claim.
	NoIssuedAt bool
}

// Mint returns a signed credential for workspace and phase.
func (iss *Issuer) Mint(t testing.TB, workspace, phase, audience string) string {
	t.Helper()
	return iss.MintWith(t, workspace, phase, Token{Audience: audience})
}

// MintWith returns a credential for workspace and phase shaped by spec.
func (iss *Issuer) MintWith(t testing.TB, workspace, phase string, spec Token) string {
	t.Helper()
	iss.mu.Lock()
	current := iss.keys[len(iss.keys)-1]
	iss.mu.Unlock()
	if spec.Issuer == "" {
		spec.Issuer = iss.URL()
	}
	if spec.Subject == "" {
		spec.Subject = sandboxcloud.Subject(workspace, phase)
	}
	if spec.Lifetime == 0 {
		spec.Lifetime = 5 * time.Minute
	}
	key, kid := current.key, current.id
	if spec.Key != nil {
		key, kid = spec.Key, spec.KeyID
	}
	now := time.Now()
	issued := now
	if spec.Lifetime < 0 {
		issued = now.Add(2 * spec.Lifetime)
	}
	claims := sandboxcloud.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    spec.Issuer,
			Subject:   spec.Subject,
			Audience:  jwt.ClaimStrings{spec.Audience},
			IssuedAt:  jwt.NewNumericDate(issued),
			NotBefore: jwt.NewNumericDate(issued),
			ExpiresAt: jwt.NewNumericDate(now.Add(spec.Lifetime)),
			ID:        rand.Text(),
		},
		Workspace:     workspace,
		Phase:         phase,
		ExecutionID:   "exec-test",
		CertificateID: "cert-test",
	}
	if spec.NoIssuedAt {
		claims.IssuedAt = nil
	}
	token := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	token.Header["kid"] = kid
	signed, err := token.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// PublicJWK returns the JWK of an RSA public key for signing with RS256.
func PublicJWK(kid string, pub *rsa.PublicKey) map[string]string {
	return map[string]string{
		"kty": "RSA",
		"kid": kid,
		"use": "sig",
		"alg": "RS256",
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

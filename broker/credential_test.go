package broker_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

const testIssuerURL = "http://127.0.0.1:8080"

func newIssuer(t *testing.T, c *clock, opts broker.IssuerOptions) *broker.Issuer {
	t.Helper()
	if opts.URL == "" {
		opts.URL = testIssuerURL
	}
	if opts.Keys == nil {
		opts.Keys = openKeySet(t, t.TempDir(), c)
	}
	opts.Now = c.Now
	iss, err := broker.NewIssuer(opts)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func mint(t *testing.T, iss *broker.Issuer, req broker.CredentialRequest) broker.Credential {
	t.Helper()
	cred, err := iss.MintCredential(req)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func applyRequest(workspace, audience string) broker.CredentialRequest {
	return broker.CredentialRequest{
		Workspace: workspace, Audience: audience, Phase: broker.PhaseApply,
		ExecutionID: "exec-1", CertificateID: "cert-1",
	}
}

func planRequest(workspace, audience string) broker.CredentialRequest {
	return broker.CredentialRequest{Workspace: workspace, Audience: audience, Phase: broker.PhasePlan}
}

// decodeSegment decodes one base64url segment of a compact JWS as JSON.
func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments, want 3", len(parts))
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("segment %d: %v", i, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("segment %d: %v: %s", i, err, data)
	}
	return m
}

func TestMintCredentialClaims(t *testing.T) {
	c := newClock()
	c.Advance(700 * time.Millisecond) // issue times are whole seconds
	keys := openKeySet(t, t.TempDir(), c)
	iss := newIssuer(t, c, broker.IssuerOptions{Keys: keys})
	now := c.Now().Unix()

	tests := []struct {
		name string
		req  broker.CredentialRequest
		want map[string]any
	}{
		{
			name: "apply",
			req:  applyRequest("prod", "sandbox"),
			want: map[string]any{
				"iss": testIssuerURL, "sub": "workspace:prod:phase:apply", "aud": []any{"sandbox"},
				"iat": json.Number(fmt.Sprint(now)), "nbf": json.Number(fmt.Sprint(now)), "exp": json.Number(fmt.Sprint(now + 300)),
				"workspace": "prod", "phase": "apply", "execution_id": "exec-1", "certificate_id": "cert-1",
			},
		},
		{
			name: "plan without an execution",
			req:  broker.CredentialRequest{Workspace: "staging_2", Audience: "sts.amazonaws.com", Phase: broker.PhasePlan, Lifetime: time.Minute},
			want: map[string]any{
				"iss": testIssuerURL, "sub": "workspace:staging_2:phase:plan", "aud": []any{"sts.amazonaws.com"},
				"iat": json.Number(fmt.Sprint(now)), "nbf": json.Number(fmt.Sprint(now)), "exp": json.Number(fmt.Sprint(now + 60)),
				"workspace": "staging_2", "phase": "plan",
			},
		},
		{
			name: "plan within an execution",
			req:  broker.CredentialRequest{Workspace: "prod", Audience: "vault", Phase: broker.PhasePlan, ExecutionID: "exec-2", CertificateID: "cert-2"},
			want: map[string]any{
				"iss": testIssuerURL, "sub": "workspace:prod:phase:plan", "aud": []any{"vault"},
				"iat": json.Number(fmt.Sprint(now)), "nbf": json.Number(fmt.Sprint(now)), "exp": json.Number(fmt.Sprint(now + 300)),
				"workspace": "prod", "phase": "plan", "execution_id": "exec-2", "certificate_id": "cert-2",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cred := mint(t, iss, tt.req)

			header := decodeSegment(t, cred.Token, 0)
			if want := map[string]any{"alg": "RS256", "kid": cred.KeyID, "typ": "JWT"}; !maps.Equal(header, want) {
				t.Errorf("header = %v, want %v", header, want)
			}
			if current := keys.Keys()[0].ID; cred.KeyID != current {
				t.Errorf("KeyID %s is not the current key %s", cred.KeyID, current)
			}

			payload := decodeSegment(t, cred.Token, 1)
			jti, _ := payload["jti"].(string)
			if len(jti) < 20 || jti != cred.Claims.ID {
				t.Errorf("jti = %q, want a random id equal to Claims.ID %q", jti, cred.Claims.ID)
			}
			delete(payload, "jti")
			if !reflect.DeepEqual(payload, tt.want) {
				t.Errorf("payload\n got %v\nwant %v", payload, tt.want)
			}

			// Claims says what the token says.
			var claims broker.Claims
			raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(cred.Token, ".")[1])
			if err := json.Unmarshal(raw, &claims); err != nil {
				t.Fatal(err)
			}
			if !equalClaims(claims, cred.Claims) {
				t.Errorf("Claims = %+v, token carries %+v", cred.Claims, claims)
			}
			if want := time.Unix(claims.ExpiresAt, 0).UTC(); !cred.ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt = %s, want %s", cred.ExpiresAt, want)
			}
		})
	}
}

func equalClaims(a, b broker.Claims) bool {
	return a.Issuer == b.Issuer && a.Subject == b.Subject && slices.Equal(a.Audience, b.Audience) &&
		a.ExpiresAt == b.ExpiresAt && a.IssuedAt == b.IssuedAt && a.NotBefore == b.NotBefore && a.ID == b.ID &&
		a.Workspace == b.Workspace && a.Phase == b.Phase && a.ExecutionID == b.ExecutionID && a.CertificateID == b.CertificateID
}

func TestMintCredentialUniqueIDs(t *testing.T) {
	c := newClock()
	iss := newIssuer(t, c, broker.IssuerOptions{})
	a := mint(t, iss, applyRequest("prod", "sandbox"))
	b := mint(t, iss, applyRequest("prod", "sandbox"))
	if a.Claims.ID == b.Claims.ID {
		t.Errorf("two credentials share the jti %s", a.Claims.ID)
	}
}

func TestMintCredentialLifetime(t *testing.T) {
	c := newClock()
	start := c.Now()
	tests := []struct {
		name            string
		defaultLifetime time.Duration
		lifetime        time.Duration
		want            time.Duration
	}{
		{"default", 0, 0, 5 * time.Minute},
		{"issuer default", 10 * time.Minute, 0, 10 * time.Minute},
		{"shortest", 0, 30 * time.Second, 30 * time.Second},
		{"longest", 0, 15 * time.Minute, 15 * time.Minute},
		{"request over issuer default", time.Minute, 2 * time.Minute, 2 * time.Minute},
		{"fractional seconds round down", 0, 90*time.Second + 900*time.Millisecond, 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss := newIssuer(t, c, broker.IssuerOptions{DefaultLifetime: tt.defaultLifetime})
			req := applyRequest("prod", "sandbox")
			req.Lifetime = tt.lifetime
			cred := mint(t, iss, req)
			if want := start.Add(tt.want); !cred.ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt = %s, want %s", cred.ExpiresAt, want)
			}
			if cred.Claims.IssuedAt != start.Unix() || cred.Claims.ExpiresAt != start.Add(tt.want).Unix() {
				t.Errorf("iat %d exp %d, want %d and %d", cred.Claims.IssuedAt, cred.Claims.ExpiresAt, start.Unix(), start.Add(tt.want).Unix())
			}
		})
	}

	// The expiry follows the injected clock.
	iss := newIssuer(t, c, broker.IssuerOptions{})
	c.Advance(42 * time.Hour)
	if cred, want := mint(t, iss, applyRequest("prod", "sandbox")), c.Now().Add(5*time.Minute); !cred.ExpiresAt.Equal(want) {
		t.Errorf("after the clock moved, ExpiresAt = %s, want %s", cred.ExpiresAt, want)
	}
}

func TestMintCredentialRefusesInvalidRequests(t *testing.T) {
	c := newClock()
	iss := newIssuer(t, c, broker.IssuerOptions{})
	tests := []struct {
		name    string
		change  func(r *broker.CredentialRequest)
		wantErr string
	}{
		{"empty workspace", func(r *broker.CredentialRequest) { r.Workspace = "" }, "workspace is empty"},
		{"upper-case workspace", func(r *broker.CredentialRequest) { r.Workspace = "Prod" }, `workspace "Prod" is not a workspace name`},
		{"workspace starting with a dash", func(r *broker.CredentialRequest) { r.Workspace = "-prod" }, "is not a workspace name"},
		{"workspace with a colon", func(r *broker.CredentialRequest) { r.Workspace = "prod:phase:apply" }, "is not a workspace name"},
		{"workspace of 65 characters", func(r *broker.CredentialRequest) { r.Workspace = strings.Repeat("a", 65) }, "is not a workspace name"},
		{"no phase", func(r *broker.CredentialRequest) { r.Phase = "" }, `phase "" is neither "plan" nor "apply"`},
		{"unknown phase", func(r *broker.CredentialRequest) { r.Phase = "admin" }, `phase "admin" is neither`},
		{"upper-case phase", func(r *broker.CredentialRequest) { r.Phase = "APPLY" }, `phase "APPLY" is neither`},
		{"no audience", func(r *broker.CredentialRequest) { r.Audience = "" }, "audience is empty"},
		{"audience with a space", func(r *broker.CredentialRequest) { r.Audience = "sandbox vault" }, "contains spaces"},
		{"audience too long", func(r *broker.CredentialRequest) { r.Audience = strings.Repeat("a", 513) }, "audience is longer than 512 bytes"},
		{"apply without execution", func(r *broker.CredentialRequest) { r.ExecutionID = "" }, "apply-phase credential requires an execution id"},
		{"apply without certificate", func(r *broker.CredentialRequest) { r.CertificateID = "" }, "apply-phase credential requires a certificate id"},
		{"execution id with a newline", func(r *broker.CredentialRequest) { r.ExecutionID = "exec\n1" }, "execution id"},
		{"certificate id too long", func(r *broker.CredentialRequest) { r.CertificateID = strings.Repeat("c", 129) }, "certificate id is longer than 128 bytes"},
		{"lifetime too short", func(r *broker.CredentialRequest) { r.Lifetime = 29 * time.Second }, "lifetime: 29s is outside 30s..15m0s"},
		{"lifetime too long", func(r *broker.CredentialRequest) { r.Lifetime = 15*time.Minute + time.Second }, "lifetime: 15m1s is outside"},
		{"negative lifetime", func(r *broker.CredentialRequest) { r.Lifetime = -time.Minute }, "lifetime: -1m0s is outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := applyRequest("prod", "sandbox")
			tt.change(&req)
			cred, err := iss.MintCredential(req)
			if err == nil {
				t.Fatalf("MintCredential(%+v) succeeded", req)
			}
			if !errors.Is(err, broker.ErrInvalidCredentialRequest) {
				t.Errorf("error %v does not wrap ErrInvalidCredentialRequest", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want one containing %q", err, tt.wantErr)
			}
			if cred.Token != "" {
				t.Errorf("a refused request returned a token")
			}
		})
	}
}

func TestNewIssuerRefusesInvalidOptions(t *testing.T) {
	c := newClock()
	keys := openKeySet(t, t.TempDir(), c)
	tests := []struct {
		name    string
		opts    broker.IssuerOptions
		wantErr string
	}{
		{"no URL", broker.IssuerOptions{Keys: keys}, "IssuerOptions.URL: empty"},
		{"relative URL", broker.IssuerOptions{URL: "127.0.0.1:8080", Keys: keys}, "IssuerOptions.URL"},
		{"not http", broker.IssuerOptions{URL: "ftp://seb.example", Keys: keys}, "not an http or https URL"},
		{"no host", broker.IssuerOptions{URL: "https://", Keys: keys}, "has no host"},
		{"query", broker.IssuerOptions{URL: "https://seb.example?x=1", Keys: keys}, "has a query or fragment"},
		{"fragment", broker.IssuerOptions{URL: "https://seb.example#top", Keys: keys}, "has a query or fragment"},
		{"user", broker.IssuerOptions{URL: "https://me@seb.example", Keys: keys}, "user information"},
		{"pattern in path", broker.IssuerOptions{URL: "https://seb.example/{x}", Keys: keys}, "not plain path segments"},
		{"no keys", broker.IssuerOptions{URL: testIssuerURL}, "IssuerOptions.Keys is nil"},
		{"default lifetime too long", broker.IssuerOptions{URL: testIssuerURL, Keys: keys, DefaultLifetime: time.Hour}, "IssuerOptions.DefaultLifetime: 1h0m0s is outside"},
		{"default lifetime too short", broker.IssuerOptions{URL: testIssuerURL, Keys: keys, DefaultLifetime: time.Second}, "IssuerOptions.DefaultLifetime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := broker.NewIssuer(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewIssuer error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}

	iss, err := broker.NewIssuer(broker.IssuerOptions{URL: "https://seb.example/oidc/", Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if iss.URL() != "https://seb.example/oidc" {
		t.Errorf("URL() = %q, want the trailing slash dropped", iss.URL())
	}
}

func TestCredentialHidesToken(t *testing.T) {
	c := newClock()
	cred := mint(t, newIssuer(t, c, broker.IssuerOptions{}), applyRequest("prod", "sandbox"))
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("minted", "credential", cred)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("minted", "credential", cred)
	for name, s := range map[string]string{
		"String": cred.String(), "%v": fmt.Sprintf("%v", cred), "%+v": fmt.Sprintf("%+v", cred), "slog": logged.String(),
	} {
		if strings.Contains(s, cred.Token) || strings.Contains(s, strings.Split(cred.Token, ".")[2]) {
			t.Errorf("%s shows the token: %s", name, s)
		}
		if !strings.Contains(s, "workspace:prod:phase:apply") {
			t.Errorf("%s does not say what the credential is for: %s", name, s)
		}
	}
}

package broker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
)

// serveIssuer starts an HTTP server for an issuer whose URL is the
// server's own URL plus path, with Handler mounted at the server root.
func serveIssuer(t *testing.T, c *clock, keys *broker.KeySet, path string) *broker.Issuer {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	iss, err := broker.NewIssuer(broker.IssuerOptions{
		URL: "http://" + srv.Listener.Addr().String() + path, Keys: keys, Now: c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	if iss.URL() != srv.URL+path {
		t.Fatalf("issuer URL %s is not the server's %s", iss.URL(), srv.URL+path)
	}
	return iss
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// send makes a request, with a bearer token unless token is empty.
func send(t *testing.T, method, url, token, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

func TestHandlerPublishesDiscoveryAndKeys(t *testing.T) {
	c := newClock()
	keys := openKeySet(t, t.TempDir(), c)
	iss := serveIssuer(t, c, keys, "")

	resp := send(t, "GET", iss.URL()+"/.well-known/openid-configuration", "", "")
	if resp.status != http.StatusOK {
		t.Fatalf("discovery: %d %s", resp.status, resp.body)
	}
	var doc map[string]any
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                iss.URL(),
		"jwks_uri":                              iss.URL() + "/.well-known/jwks.json",
		"id_token_signing_alg_values_supported": []any{"RS256"},
		"response_types_supported":              []any{"id_token"},
		"subject_types_supported":               []any{"public"},
		"claims_supported":                      []any{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "workspace", "phase", "execution_id", "certificate_id"},
	}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("discovery document\n got %v\nwant %v", doc, want)
	}
	if iss.JWKSURL() != want["jwks_uri"] {
		t.Errorf("JWKSURL() = %s, want %s", iss.JWKSURL(), want["jwks_uri"])
	}

	jwks := send(t, "GET", doc["jwks_uri"].(string), "", "")
	if jwks.status != http.StatusOK {
		t.Fatalf("JWKS: %d %s", jwks.status, jwks.body)
	}
	published := decodeJWKS(t, jwks.body)
	if len(published) != 1 || published[0].Kid != keys.Keys()[0].ID || published[0].Alg != "RS256" || published[0].Use != "sig" {
		t.Errorf("JWKS = %+v, want the current key", published)
	}

	for _, r := range []response{resp, jwks} {
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
		if cc := r.header.Get("Cache-Control"); cc != "public, max-age=300" {
			t.Errorf("Cache-Control = %q, want public, max-age=300", cc)
		}
	}

	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", http.StatusNotFound},
		{"GET", "/.well-known/", http.StatusNotFound},
		{"GET", "/.well-known/openid-configuration/more", http.StatusNotFound},
		{"GET", "/jwks.json", http.StatusNotFound},
		{"HEAD", "/.well-known/jwks.json", http.StatusOK},
		{"POST", "/.well-known/jwks.json", http.StatusMethodNotAllowed},
		{"DELETE", "/.well-known/openid-configuration", http.StatusMethodNotAllowed},
	} {
		if got := send(t, tt.method, iss.URL()+tt.path, "", "").status; got != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestHandlerForIssuerWithPath(t *testing.T) {
	c := newClock()
	iss := serveIssuer(t, c, openKeySet(t, t.TempDir(), c), "/oidc")
	resp := send(t, "GET", iss.URL()+"/.well-known/openid-configuration", "", "")
	if resp.status != http.StatusOK {
		t.Fatalf("discovery under the issuer path: %d", resp.status)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != iss.URL() || !strings.HasSuffix(doc.JWKSURI, "/oidc/.well-known/jwks.json") {
		t.Errorf("discovery = %+v", doc)
	}
	if got := send(t, "GET", doc.JWKSURI, "", "").status; got != http.StatusOK {
		t.Errorf("JWKS at %s: %d", doc.JWKSURI, got)
	}
	root := strings.TrimSuffix(iss.URL(), "/oidc")
	if got := send(t, "GET", root+"/.well-known/openid-configuration", "", "").status; got != http.StatusNotFound {
		t.Errorf("discovery at the host root for an issuer at /oidc: %d, want 404", got)
	}
}

// servedKeySet reads the issuer's JWKS as go-jose does.
func servedKeySet(t *testing.T, iss *broker.Issuer) jose.JSONWebKeySet {
	t.Helper()
	resp := send(t, "GET", iss.JWKSURL(), "", "")
	if resp.status != http.StatusOK {
		t.Fatalf("JWKS: %d", resp.status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(resp.body, &set); err != nil {
		t.Fatalf("go-jose cannot read the JWKS: %v", err)
	}
	return set
}

// verifyWithGoJose checks token's signature against set and returns its
// claims.
func verifyWithGoJose(token string, set jose.JSONWebKeySet) (josejwt.Claims, broker.Claims, error) {
	var std josejwt.Claims
	var ours broker.Claims
	tok, err := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return std, ours, err
	}
	err = tok.Claims(set, &std, &ours)
	return std, ours, err
}

func TestGoJoseVerifiesCredential(t *testing.T) {
	c := newClock()
	keys := openKeySet(t, t.TempDir(), c)
	iss := serveIssuer(t, c, keys, "")
	cred := mint(t, iss, applyRequest("prod", "sandbox"))
	set := servedKeySet(t, iss)
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() || k.Algorithm != "RS256" || k.Use != "sig" {
			t.Errorf("served key %s: valid %v, public %v, alg %s, use %s", k.KeyID, k.Valid(), k.IsPublic(), k.Algorithm, k.Use)
		}
	}

	std, ours, err := verifyWithGoJose(cred.Token, set)
	if err != nil {
		t.Fatalf("go-jose refuses the credential: %v", err)
	}
	if !equalClaims(ours, cred.Claims) {
		t.Errorf("verified claims %+v, want %+v", ours, cred.Claims)
	}
	expected := josejwt.Expected{
		Issuer: iss.URL(), Subject: "workspace:prod:phase:apply", AnyAudience: josejwt.Audience{"sandbox"}, Time: c.Now(),
	}
	if err := std.ValidateWithLeeway(expected, 0); err != nil {
		t.Errorf("go-jose validation: %v", err)
	}
	expected.Time = cred.ExpiresAt.Add(time.Second)
	if err := std.ValidateWithLeeway(expected, 0); err != josejwt.ErrExpired {
		t.Errorf("validation after expiry: %v, want ErrExpired", err)
	}

	// A changed payload, and a token of another issuer's key, do not verify.
	parts := strings.Split(cred.Token, ".")
	forged := strings.Replace(string(must(base64.RawURLEncoding.DecodeString(parts[1]))), `"phase":"apply"`, `"phase":"admin"`, 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
	if _, _, err := verifyWithGoJose(tampered, set); err == nil {
		t.Error("go-jose accepts a tampered payload")
	}
	other := newIssuer(t, c, broker.IssuerOptions{URL: iss.URL()})
	if _, _, err := verifyWithGoJose(mint(t, other, applyRequest("prod", "sandbox")).Token, set); err == nil {
		t.Error("go-jose accepts a token signed by a key the issuer does not publish")
	}
}

// sandbox is the fixture cloud, trusting iss, on the test clock.
type sandbox struct {
	t   *testing.T
	url string
}

func startSandbox(t *testing.T, c *clock, iss *broker.Issuer) *sandbox {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := sandboxcloud.New(ctx, sandboxcloud.Options{
		Issuer: iss.URL(), Audience: "sandbox", AdminToken: "sandbox-admin-token-for-broker-tests", Now: c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &sandbox{t: t, url: hs.URL}
}

// createService creates a service with the credential and returns the
// answer.
func (sb *sandbox) createService(cred broker.Credential, name string) response {
	sb.t.Helper()
	return send(sb.t, "POST", sb.url+"/v1/services", cred.Token,
		fmt.Sprintf(`{"name":%q,"image":"nginx:1.27","replicas":2,"port":8080}`, name))
}

func TestSandboxAcceptsBrokerCredentials(t *testing.T) {
	c := newClock()
	iss := serveIssuer(t, c, openKeySet(t, t.TempDir(), c), "")
	sb := startSandbox(t, c, iss)

	created := sb.createService(mint(t, iss, applyRequest("prod", "sandbox")), "web")
	if created.status != http.StatusCreated {
		t.Fatalf("apply credential creates a service: %d %s, want 201", created.status, created.body)
	}
	var svc struct{ ID, Workspace string }
	if err := json.Unmarshal(created.body, &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Workspace != "prod" {
		t.Errorf("the service went to workspace %q, want the credential's prod", svc.Workspace)
	}

	plan := mint(t, iss, planRequest("prod", "sandbox"))
	vault := mint(t, iss, applyRequest("prod", "vault"))
	staging := mint(t, iss, applyRequest("staging", "sandbox"))
	tests := []struct {
		name       string
		resp       response
		wantStatus int
		wantMsg    string
	}{
		{"plan credential creates", sb.createService(plan, "api"), http.StatusForbidden, "read-only"},
		{"plan credential reads", send(t, "GET", sb.url+"/v1/services/"+svc.ID, plan.Token, ""), http.StatusOK, svc.ID},
		{"credential for another audience", sb.createService(vault, "api"), http.StatusUnauthorized, "does not include this API's audience"},
		{"credential for another workspace", send(t, "GET", sb.url+"/v1/services/"+svc.ID, staging.Token, ""), http.StatusForbidden, "another workspace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.resp.status != tt.wantStatus || !strings.Contains(string(tt.resp.body), tt.wantMsg) {
				t.Errorf("got %d %s, want %d and %q", tt.resp.status, tt.resp.body, tt.wantStatus, tt.wantMsg)
			}
		})
	}

	// The sandbox checks expiry on the same clock.
	expiring := mint(t, iss, broker.CredentialRequest{
		Workspace: "prod", Audience: "sandbox", Phase: broker.PhaseApply, ExecutionID: "e", CertificateID: "c", Lifetime: time.Minute,
	})
	c.Advance(2 * time.Minute)
	if r := sb.createService(expiring, "late"); r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "expired") {
		t.Errorf("expired credential: %d %s, want 401 expired", r.status, r.body)
	}
}

func TestRotationEndToEnd(t *testing.T) {
	c := newClock()
	keys := openKeySet(t, t.TempDir(), c)
	iss := serveIssuer(t, c, keys, "")
	sb := startSandbox(t, c, iss)

	before := mint(t, iss, applyRequest("prod", "sandbox"))
	if r := sb.createService(before, "one"); r.status != http.StatusCreated {
		t.Fatalf("before rotation: %d %s", r.status, r.body)
	}

	c.Advance(time.Minute)
	retiredAt := c.Now()
	if err := keys.Rotate(retiredAt); err != nil {
		t.Fatal(err)
	}
	after := mint(t, iss, applyRequest("prod", "sandbox"))
	if after.KeyID == before.KeyID {
		t.Fatalf("the credential minted after Rotate is signed by the old key %s", after.KeyID)
	}

	// The sandbox has cached the old key only: the new kid makes it
	// refresh the JWKS.
	if r := sb.createService(after, "two"); r.status != http.StatusCreated {
		t.Fatalf("new key after rotation: %d %s", r.status, r.body)
	}
	if r := sb.createService(before, "three"); r.status != http.StatusCreated {
		t.Fatalf("old key's unexpired credential after rotation: %d %s", r.status, r.body)
	}
	set := servedKeySet(t, iss)
	if got := []string{set.Keys[0].KeyID, set.Keys[1].KeyID}; len(set.Keys) != 2 || got[0] != after.KeyID || got[1] != before.KeyID {
		t.Fatalf("served keys after rotation: %d, want [%s %s]", len(set.Keys), after.KeyID, before.KeyID)
	}
	for name, cred := range map[string]broker.Credential{"old key": before, "new key": after} {
		if _, _, err := verifyWithGoJose(cred.Token, set); err != nil {
			t.Errorf("%s after rotation: go-jose: %v", name, err)
		}
	}

	// Once every token of the old key has expired, it is no longer served.
	c.Set(retiredAt.Add(broker.MaxCredentialLifetime))
	if set := servedKeySet(t, iss); len(set.Keys) != 2 {
		t.Errorf("at the end of the retention %d keys are served, want 2", len(set.Keys))
	}
	c.Advance(time.Second)
	set = servedKeySet(t, iss)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != after.KeyID {
		t.Fatalf("past the retention the served keys are %d, want only %s", len(set.Keys), after.KeyID)
	}
	if _, _, err := verifyWithGoJose(before.Token, set); err == nil {
		t.Error("the old key's token still verifies after its key was pruned")
	}
	if r := sb.createService(mint(t, iss, applyRequest("prod", "sandbox")), "four"); r.status != http.StatusCreated {
		t.Errorf("new key after pruning: %d %s", r.status, r.body)
	}
}

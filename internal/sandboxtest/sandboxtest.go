// Package sandboxtest runs the sandbox cloud on 127.0.0.1 for tests and
// drives its console: the out-of-band changes and the request log.
package sandboxtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
)

// Audience is the audience of the sandboxes this package starts.
const Audience = "sandbox"

// AdminToken guards their consoles.
const AdminToken = "sandbox-admin-token-for-tests"

// A Sandbox is a running sandbox cloud.
type Sandbox struct {
	t     testing.TB
	URL   string
	close func()
}

// StartWith runs a sandbox with opts; Audience and AdminToken default to
// this package's.
func StartWith(t testing.TB, opts sandboxcloud.Options) *Sandbox {
	t.Helper()
	if opts.Audience == "" {
		opts.Audience = Audience
	}
	if opts.AdminToken == "" {
		opts.AdminToken = AdminToken
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := sandboxcloud.New(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	var once sync.Once
	sb := &Sandbox{t: t, URL: hs.URL, close: func() { once.Do(func() { hs.Close(); cancel() }) }}
	t.Cleanup(sb.close)
	return sb
}

// Close stops the sandbox.
func (sb *Sandbox) Close() { sb.close() }

// Console sends a console request with the admin token and decodes the
// JSON answer into out (when not nil). It returns the status.
func (sb *Sandbox) Console(method, path string, body, out any) int {
	sb.t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			sb.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, sb.URL+"/console/v1/"+path, r)
	if err != nil {
		sb.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		sb.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil && err != io.EOF {
			sb.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// Services returns every service in the sandbox.
func (sb *Sandbox) Services() []sandboxcloud.Service {
	sb.t.Helper()
	var list struct{ Items []sandboxcloud.Service }
	sb.Console("GET", "services", nil, &list)
	return list.Items
}

// Service returns the service named name in workspace, failing the test if
// there is none.
func (sb *Sandbox) Service(workspace, name string) sandboxcloud.Service {
	sb.t.Helper()
	for _, s := range sb.Services() {
		if s.Workspace == workspace && s.Name == name {
			return s
		}
	}
	sb.t.Fatalf("no service %q in workspace %s", name, workspace)
	return sandboxcloud.Service{}
}

// Scale changes a service's replicas behind Terraform's back.
func (sb *Sandbox) Scale(id string, replicas int) {
	sb.t.Helper()
	if status := sb.Console("PATCH", "services/"+id, map[string]any{"replicas": replicas}, nil); status != http.StatusOK {
		sb.t.Fatalf("scale %s: %d", id, status)
	}
}

// Requests returns the API's request log.
func (sb *Sandbox) Requests() []sandboxcloud.Request {
	sb.t.Helper()
	var log struct{ Items []sandboxcloud.Request }
	sb.Console("GET", "requests", nil, &log)
	return log.Items
}

// StartIssuer runs seb's own token issuer on 127.0.0.1 with a fresh key
// set under the test's temp dir; it stops when the test ends.
func StartIssuer(t testing.TB) *broker.Issuer {
	t.Helper()
	var handler http.Handler = http.NotFoundHandler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(hs.Close)
	keys, err := broker.OpenKeySet(t.TempDir(), broker.KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := broker.NewIssuer(broker.IssuerOptions{URL: hs.URL, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	handler = issuer.Handler()
	return issuer
}

// Credentials returns run credentials for workspace that reach the
// sandbox as its provider expects: SANDBOX_ENDPOINT and a token file.
func (sb *Sandbox) Credentials(issuer *broker.Issuer, workspace string) broker.RunCredentials {
	return broker.RunCredentials{
		Issuer: issuer,
		Profile: broker.CredentialProfile{
			Audience:     Audience,
			TokenFileEnv: []string{"SANDBOX_TOKEN_FILE"},
			Env:          map[string]string{"SANDBOX_ENDPOINT": sb.URL},
		},
		Workspace:     workspace,
		ExecutionID:   "exec-" + workspace,
		CertificateID: "cert-" + workspace,
	}
}

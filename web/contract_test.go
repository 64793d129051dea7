package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/seb-broker/seb/fixtures/sandboxcloud"
	"github.com/seb-broker/seb/web"
)

// routePattern turns "/proposals/:id" into a pattern of the concrete
// paths it serves.
func routePattern(path string) *regexp.Regexp {
	return regexp.MustCompile("^/api/v1" + regexp.MustCompile(`:[a-z_]+`).ReplaceAllString(regexp.QuoteMeta(path), "[^/]+") + "$")
}

// TestAPIContract runs the seed scenario, the rest of the API and its
// errors, and holds every exchange to the API's documentation: each
// request to its route's schema, each success to a documented status,
// media type and schema (line by line for JSON Lines), each error to the
// error body. Every documented route must have been served.
func TestAPIContract(t *testing.T) {
	// A slow cloud, so that an execution can be caught applying.
	s := newSite(t, func(o *sandboxcloud.Options) { o.MutationDelay = 2 * time.Second })
	cert := s.approve(s.propose("3").ID)
	var done execution
	if done = s.execute(cert); done.State != "succeeded" {
		t.Fatalf("apply: %+v", done)
	}
	p := s.propose("5")
	s.call("alice", "GET", "/api/v1/proposals/"+p.ID, "", nil, nil)
	s.call("alice", "GET", "/api/v1/proposals?limit=1", "", nil, nil)
	s.call("alice", "GET", "/api/v1/certificates/"+cert, "", nil, nil)
	s.call("alice", "GET", "/api/v1/workspaces", "", nil, nil)
	s.call("alice", "GET", "/api/v1/workspaces/sandbox", "", nil, nil)
	s.call("alice", "GET", "/api/v1/workspaces/sandbox/state", "", nil, nil)
	s.call("agent-1", "POST", "/api/v1/workspaces/sandbox/state", "application/json", strings.NewReader("{}"), nil)
	s.call("agent-1", "DELETE", "/api/v1/workspaces/sandbox/state", "", nil, nil)
	s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/plan", map[string]any{"bundle": bundle(t, "scale"), "vars": map[string]any{"replicas": 6}}, nil)
	s.json("root", "POST", "/api/v1/tokens", map[string]any{"name": "contract", "role": "agent", "workspaces": []string{"sandbox"}}, nil)
	s.call("root", "GET", "/api/v1/tokens", "", nil, nil)
	s.call("root", "DELETE", "/api/v1/tokens/contract", "", nil, nil)
	s.json("alice", "POST", "/api/v1/proposals/"+p.ID+"/reject", map[string]string{"comment": "no"}, nil)
	var again proposal
	s.call("agent-1", "POST", "/api/v1/proposals/"+p.ID+"/again", "", nil, &again)
	s.verified(again.ID)
	s.call("agent-1", "POST", "/api/v1/workspaces/sandbox/credentials", "", nil, nil)
	s.call("root", "POST", "/api/v1/certificates/"+s.approve(s.propose("7").ID)+"/revoke", "", nil, nil)
	s.call("root", "POST", "/api/v1/workspaces/sandbox/revoke-all", "", nil, nil)
	s.call("root", "GET", "/api/v1/audit?limit=5", "", nil, nil)
	s.call("root", "GET", "/api/v1/audit/verify", "", nil, nil)
	s.call("root", "GET", "/api/v1/audit/export", "", nil, nil)
	s.call("ci", "GET", "/api/v1/executions/"+done.ID+"/logs", "", nil, nil)
	var ended struct {
		PlanLogID string `json:"plan_log_id"`
	}
	s.call("ci", "GET", "/api/v1/executions/"+done.ID, "", nil, &ended)
	s.call("ci", "GET", "/api/v1/artifacts/"+ended.PlanLogID, "", nil, nil)
	s.call("", "GET", "/api/v1/keys/signing", "", nil, nil)
	s.call("", "GET", "/api/v1/audit/checkpoint", "", nil, nil)
	s.call("", "GET", "/api/v1/openapi.json", "", nil, nil)
	// An execution cancelled while it applies: its log followed meanwhile,
	// its workspace held, then reconciled.
	p = s.propose("4")
	var running execution
	if status, body := s.json("ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": s.approve(p.ID)}, &running); status != http.StatusAccepted {
		t.Fatalf("execute: %d %s", status, body)
	}
	following := make(chan struct{})
	go func() {
		defer close(following)
		req, _ := http.NewRequest("GET", s.url+"/api/v1/executions/"+running.ID+"/logs?follow=true", nil)
		req.Header.Set("Authorization", "Bearer "+s.tokens["ci"])
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	for deadline := time.Now().Add(time.Minute); running.State != "applying"; time.Sleep(50 * time.Millisecond) {
		if s.call("ci", "GET", "/api/v1/executions/"+running.ID, "", nil, &running); running.Final || time.Now().After(deadline) {
			t.Fatalf("the execution was never seen applying: %+v", running)
		}
	}
	// A heartbeat as the runner holding the lease, as its own would be.
	job, err := s.store.Job(context.Background(), "job-"+running.ID)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := s.json("runner", "POST", "/api/v1/runner/jobs/"+job.ID+"/heartbeat", map[string]any{"token": job.Token}, nil); status != http.StatusNoContent {
		t.Fatalf("heartbeat: %d %s", status, body)
	}
	if status, body := s.call("root", "POST", "/api/v1/jobs/job-"+running.ID+"/cancel", "", nil, nil); status != http.StatusNoContent {
		t.Fatalf("cancel: %d %s", status, body)
	}
	<-following
	if status, body := s.json("root", "POST", "/api/v1/workspaces/sandbox/reconcile", map[string]string{"note": "checked the cloud by hand"}, nil); status != http.StatusNoContent {
		t.Fatalf("reconcile: %d %s", status, body)
	}
	// Errors.
	s.call("alice", "GET", "/api/v1/proposals/prop-nope", "", nil, nil)
	s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", map[string]any{"bundel": "x"}, nil)
	s.call("", "GET", "/api/v1/proposals", "", nil, nil)
	s.call("agent-1", "GET", "/api/v1/tokens", "", nil, nil)
	s.json("runner-1", "POST", "/api/v1/runner/jobs/job-nope/fail", map[string]any{"token": 1, "reason": "x"}, nil)

	docs, err := web.Documented()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]int{}
	for _, x := range s.served.all() {
		route := ""
		for r := range docs {
			method, path, _ := strings.Cut(r, " ")
			if method == x.method && routePattern(path).MatchString(x.path) && (route == "" || len(path) < len(route)) {
				route = r
			}
		}
		if route == "" {
			t.Errorf("%s %s: served, but no documented route matches it", x.method, x.path)
			continue
		}
		served[route]++
		doc := docs[route]
		if x.status >= 400 {
			validate(t, fmt.Sprintf("%s %s: %d", x.method, x.path, x.status), web.ErrorSchema(), x.response)
			served["errors"]++
			continue
		}
		// A request the server took is one its schema describes.
		if len(x.request) > 0 && doc.Request != nil {
			validate(t, route+" request", doc.Request, x.request)
			served["requests"]++
		}
		if !slices.Contains(doc.Statuses, x.status) {
			t.Errorf("%s %s: %d is not a documented status (%v)", x.method, x.path, x.status, doc.Statuses)
			continue
		}
		if x.status == http.StatusNoContent {
			if len(x.response) > 0 {
				t.Errorf("%s %s: 204 with a body", x.method, x.path)
			}
			continue
		}
		if media, _, _ := strings.Cut(x.contentType, ";"); media != doc.Media {
			t.Errorf("%s %s: media type %q, documented %q", x.method, x.path, x.contentType, doc.Media)
		}
		switch {
		case doc.Answer == nil:
			t.Errorf("%s %s: answered %d with no documented body", x.method, x.path, x.status)
		case doc.Lines:
			for line := range bytes.Lines(x.response) {
				validate(t, route+" line", doc.Answer, line)
			}
		case doc.Media == "application/x-pem-file":
			validate(t, route, doc.Answer, strconv.AppendQuote(nil, string(x.response)))
		default:
			validate(t, route, doc.Answer, x.response)
		}
	}
	for r := range docs {
		if served[r] == 0 {
			t.Errorf("%s was never served", r)
		}
	}
	if served["errors"] == 0 || served["requests"] == 0 {
		t.Errorf("no error or no request was checked: %v", served)
	}
}

// validate holds data, a JSON value, to schema.
func validate(t *testing.T, what string, schema *jsonschema.Schema, data []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Errorf("%s: not JSON: %v\n%.200s", what, err, data)
		return
	}
	resolved, err := schema.Resolve(nil)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := resolved.Validate(v); err != nil {
		t.Errorf("%s breaks its schema: %v\n%.500s", what, err, data)
	}
}

package web_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/seb-broker/seb/web"
)

// routePattern turns "/proposals/:id" into a pattern of the concrete
// paths it serves.
func routePattern(path string) *regexp.Regexp {
	return regexp.MustCompile("^/api/v1" + regexp.MustCompile(`:[a-z_]+`).ReplaceAllString(regexp.QuoteMeta(path), "[^/]+") + "$")
}

// TestAPIContract runs the seed scenario, and the errors of the API, and
// holds every answer to the API's documented schemas: each 2XX body to
// its route's, each error to {"error": {"code", "message"}}.
func TestAPIContract(t *testing.T) {
	s := newSite(t)
	cert := s.approve(s.propose("3").ID)
	if e := s.execute(cert); e.State != "succeeded" {
		t.Fatalf("apply: %+v", e)
	}
	p := s.propose("5")
	s.call("alice", "GET", "/api/v1/proposals/"+p.ID, "", nil, nil)
	s.call("alice", "GET", "/api/v1/proposals?limit=1", "", nil, nil)
	s.call("alice", "GET", "/api/v1/certificates/"+cert, "", nil, nil)
	s.call("alice", "GET", "/api/v1/workspaces", "", nil, nil)
	s.call("alice", "GET", "/api/v1/workspaces/sandbox", "", nil, nil)
	s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/plan", map[string]any{"bundle": bundle(t, "scale"), "vars": map[string]any{"replicas": 6}}, nil)
	s.json("root", "POST", "/api/v1/tokens", map[string]any{"name": "contract", "role": "agent", "workspaces": []string{"sandbox"}}, nil)
	s.call("root", "GET", "/api/v1/tokens", "", nil, nil)
	s.json("alice", "POST", "/api/v1/proposals/"+p.ID+"/reject", map[string]string{"comment": "no"}, nil)
	s.call("agent-1", "POST", "/api/v1/workspaces/sandbox/credentials", "", nil, nil)
	s.call("root", "POST", "/api/v1/certificates/"+s.approve(s.propose("7").ID)+"/revoke", "", nil, nil)
	s.call("root", "POST", "/api/v1/workspaces/sandbox/revoke-all", "", nil, nil)
	s.call("root", "GET", "/api/v1/audit?limit=5", "", nil, nil)
	s.call("root", "GET", "/api/v1/audit/verify", "", nil, nil)
	// Errors.
	s.call("alice", "GET", "/api/v1/proposals/prop-nope", "", nil, nil)
	s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals", map[string]any{"bundel": "x"}, nil)
	s.call("", "GET", "/api/v1/proposals", "", nil, nil)
	s.call("agent-1", "GET", "/api/v1/tokens", "", nil, nil)

	checked := map[string]int{}
	// What the server served: the test's calls and its runner's reports.
	for _, x := range s.served.all() {
		if !strings.HasPrefix(x.path, "/api/v1/") || strings.HasSuffix(x.path, "/logs") || strings.HasPrefix(x.path, "/api/v1/artifacts/") {
			continue
		}
		var body any
		if len(x.response) > 0 {
			if err := json.Unmarshal(x.response, &body); err != nil {
				t.Errorf("%s %s: %d, not JSON: %.200s", x.method, x.path, x.status, x.response)
				continue
			}
		}
		if x.status >= 400 {
			e, _ := body.(map[string]any)["error"].(map[string]any)
			if e == nil || e["code"] == nil || e["message"] == nil {
				t.Errorf("%s %s: %d is not an error body: %s", x.method, x.path, x.status, x.response)
			}
			checked["errors"]++
			continue
		}
		route := ""
		for _, r := range web.DocumentedRoutes() {
			if strings.HasPrefix(r, x.method+" ") && routePattern(strings.TrimPrefix(r, x.method+" ")).MatchString(x.path) {
				route = strings.TrimPrefix(r, x.method+" ")
			}
		}
		if route == "" {
			continue
		}
		schema, err := web.BodySchema(x.method, route)
		if err != nil {
			t.Fatal(err)
		}
		if schema != nil && x.status != http.StatusNoContent {
			resolved, err := schema.Resolve(nil)
			if err != nil {
				t.Fatalf("%s %s: %v", x.method, route, err)
			}
			if err := resolved.Validate(body); err != nil {
				t.Errorf("%s %s (%s): the answer breaks its schema: %v\n%.500s", x.method, x.path, route, err, x.response)
			}
		}
		checked[x.method+" "+route]++
		// The request the server took is one its schema describes.
		if in, err := web.RequestSchema(x.method, route); err == nil && in != nil && len(x.request) > 0 {
			var sent any
			if err := json.Unmarshal(x.request, &sent); err != nil {
				t.Fatal(err)
			}
			resolvedIn, err := in.Resolve(nil)
			if err != nil {
				t.Fatalf("%s %s request: %v", x.method, route, err)
			}
			if err := resolvedIn.Validate(sent); err != nil {
				t.Errorf("%s %s: a request the server took breaks its schema: %v\n%.300s", x.method, route, err, x.request)
			}
			checked["requests"]++
		}
	}
	for _, want := range []string{"POST /workspaces/:workspace/proposals", "GET /proposals/:id", "POST /proposals/:id/approve",
		"POST /executions", "GET /executions/:id", "GET /certificates/:id", "GET /proposals", "GET /workspaces", "POST /workspaces/:workspace/plan",
		"POST /tokens", "GET /tokens", "POST /proposals/:id/reject", "POST /workspaces/:workspace/credentials",
		"POST /certificates/:id/revoke", "POST /workspaces/:workspace/revoke-all", "GET /audit", "GET /audit/verify", "errors", "requests",
		"POST /runner/lease", "POST /runner/jobs/:id/plan"} {
		if checked[want] == 0 {
			t.Errorf("no answer of %s was checked (checked: %v)", want, checked)
		}
	}
}

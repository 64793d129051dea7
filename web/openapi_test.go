package web_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/web"
)

// TestOpenAPIMatchesRoutes: the served document lists exactly the routes
// the server answers under /api/v1, itself and the public ones included.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	srv, err := web.New(web.Options{Broker: nilBroker{}, Records: nilRecords{}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/openapi.json", nil))
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != 200 || doc.OpenAPI == "" {
		t.Fatalf("%d %v %s", rec.Code, err, rec.Body)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	var registered []string
	for _, r := range srv.RegisteredRoutes() {
		if !strings.Contains(r, " /api/v1/") {
			continue
		}
		registered = append(registered, r)
	}
	sort.Strings(documented)
	sort.Strings(registered)
	if strings.Join(documented, "\n") != strings.Join(registered, "\n") {
		t.Errorf("documented:\n%s\nregistered:\n%s", strings.Join(documented, "\n"), strings.Join(registered, "\n"))
	}
}

// nilBroker and nilRecords satisfy the interfaces for a server that only
// serves its OpenAPI document.
type nilBroker struct{ web.Broker }
type nilRecords struct{ web.Records }

func (nilRecords) ListProposals(context.Context, broker.ProposalFilter) ([]*broker.Proposal, error) {
	return nil, nil
}

// downRecords is a store that cannot be reached.
type downRecords struct{ nilRecords }

func (downRecords) PolicyEpoch(context.Context) (int64, error) {
	return 0, broker.Errorf(broker.EINTERNAL, "connection refused")
}

// TestReadyWithoutStore: /readyz, what a load balancer asks, is 503 while
// the store cannot be reached, and 200 when it can; /healthz stays 200.
func TestReadyWithoutStore(t *testing.T) {
	for _, tt := range []struct {
		records web.Records
		ready   int
	}{{downRecords{}, 503}, {nilRecords{}, 200}} {
		srv, err := web.New(web.Options{Broker: nilBroker{}, Records: tt.records})
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]int{"/readyz": tt.ready, "/healthz": 200} {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if rec.Code != want {
				t.Errorf("%T %s: %d, want %d", tt.records, path, rec.Code, want)
			}
		}
	}
}

func (nilRecords) PolicyEpoch(context.Context) (int64, error) { return 1, nil }

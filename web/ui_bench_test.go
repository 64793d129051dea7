package web_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/seb-broker/seb/planparse"
)

// BenchmarkProposalPage500 renders, server-side and over HTTP, the page of
// a proposal changing 500 resources (target: under 200 ms).
func BenchmarkProposalPage500(b *testing.B) {
	s := newSite(b)
	p := s.propose("3")
	stored, err := s.store.Proposal(context.Background(), p.ID)
	if err != nil {
		b.Fatal(err)
	}
	var changes []string
	for i := range 500 {
		changes = append(changes, fmt.Sprintf(`{"address":"sandbox_service.svc[%d]","mode":"managed","type":"sandbox_service","name":"svc","index":%d,
		  "provider_name":"registry.seb.invalid/seb/sandbox","change":{"actions":["update"],
		  "before":{"name":"svc-%d","image":"nginx:1.26","replicas":3,"port":8080,"labels":{"team":"web","tier":"front"}},
		  "after":{"name":"svc-%d","image":"nginx:1.27","replicas":5,"port":8080,"labels":{"team":"web","tier":"edge"}},
		  "after_unknown":{},"before_sensitive":{},"after_sensitive":{}}}`, i, i, i, i))
	}
	plan, err := planparse.Parse(strings.NewReader(`{"format_version":"1.2","resource_changes":[`+strings.Join(changes, ",")+`]}`),
		planparse.Options{SensitiveKey: []byte("web bench key")})
	if err != nil {
		b.Fatal(err)
	}
	big := *stored
	big.ID, big.Summary, big.Digest = "prop-five-hundred", plan.Summary, plan.Digest
	if err := s.store.CreateProposal(context.Background(), &big); err != nil {
		b.Fatal(err)
	}
	br := newBrowser(b, s)
	br.signIn("alice")
	resp, body := br.get("/proposals/" + big.ID)
	if resp.StatusCode != http.StatusOK || strings.Count(body, `<details class="resource`) != 500 {
		b.Fatalf("page: %d, %d resources", resp.StatusCode, strings.Count(body, `<details class="resource`))
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		br.get("/proposals/" + big.ID)
	}
}

package web_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/policy"
)

// proposalWithPolicy is what the API answers of a proposal's policy.
type proposalWithPolicy struct {
	ID            string           `json:"id"`
	State         string           `json:"state"`
	Reason        string           `json:"reason"`
	CertificateID string           `json:"certificate_id"`
	Policy        *policy.Decision `json:"policy"`
	StillNeeded   string           `json:"still_needed"`
}

// TestPolicyOverAPI: with the example policies, deleting a bucket needs
// two approvals from security, which the API and the proposal page say as
// they are given; scaling within bounds is certified without a human; an
// open ingress rule is refused with the policy's message; tokens carry
// their groups.
func TestPolicyOverAPI(t *testing.T) {
	set, err := policy.Load("../fixtures/policy")
	if err != nil {
		t.Fatal(err)
	}
	s := newSiteFrom(t, siteOptions{broker: func(o *broker.Options) { o.Workspaces[0].Policy = set }})
	for _, name := range []string{"sec-1", "sec-2"} {
		var tok struct {
			Token  string   `json:"token"`
			Groups []string `json:"groups"`
		}
		if status, body := s.json("root", "POST", "/api/v1/tokens", map[string]any{"name": name, "role": "reviewer", "groups": []string{"security"}}, &tok); status != http.StatusCreated || len(tok.Groups) != 1 {
			t.Fatalf("token %s: %d %s", name, status, body)
		}
		s.tokens[name] = tok.Token
	}
	if status, body := s.json("root", "POST", "/api/v1/tokens", map[string]any{"name": "bad", "role": "reviewer", "groups": []string{"Not A Group"}}, nil); status != http.StatusBadRequest {
		t.Errorf("a bad group name: %d %s", status, body)
	}

	propose := func(dir string) proposalWithPolicy {
		t.Helper()
		var buf bytes.Buffer
		if _, err := drift.BundleDirectory(dir, &buf); err != nil {
			t.Fatal(err)
		}
		var p proposalWithPolicy
		if status, body := s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals",
			map[string]any{"bundle": base64.StdEncoding.EncodeToString(buf.Bytes())}, &p); status != http.StatusAccepted {
			t.Fatalf("propose: %d %s", status, body)
		}
		s.verified(p.ID)
		s.call("alice", "GET", "/api/v1/proposals/"+p.ID, "", nil, &p)
		return p
	}
	approve := func(p proposalWithPolicy, who string) proposalWithPolicy {
		t.Helper()
		var got proposalWithPolicy
		if status, body := s.json(who, "POST", "/api/v1/proposals/"+p.ID+"/approve", map[string]string{}, &got); status != http.StatusOK {
			t.Fatalf("%s approves: %d %s", who, status, body)
		}
		return got
	}

	created := propose("../fixtures/terraform/bucket")
	if created.Policy == nil || len(created.Policy.Deny) != 0 || created.StillNeeded != "1 more approval(s)" {
		t.Fatalf("creating the bucket: %+v", created)
	}
	if e := s.execute(approve(created, "alice").CertificateID); e.State != "succeeded" {
		t.Fatalf("apply: %+v", e)
	}

	dir := t.TempDir()
	versions, _ := os.ReadFile("../fixtures/terraform/bucket/versions.tf")
	os.WriteFile(filepath.Join(dir, "versions.tf"), versions, 0o644)
	deletion := propose(dir)
	if a := deletion.Policy.Approvals; a == nil || a.Count != 2 || deletion.StillNeeded != "2 more approval(s), 2 more from security" {
		t.Fatalf("deleting the bucket: %+v (%+v)", deletion, deletion.Policy)
	}
	for _, step := range []struct{ who, still string }{{"alice", "1 more approval(s), 2 more from security"}, {"sec-1", "1 more from security"}} {
		if got := approve(deletion, step.who); got.State != "pending" || got.StillNeeded != step.still {
			t.Errorf("after %s: %q (%s), want %q", step.who, got.StillNeeded, got.State, step.still)
		}
	}
	b := newBrowser(t, s)
	b.signIn("alice")
	_, page := b.get("/proposals/" + deletion.ID)
	for _, want := range []string{"It asks for 2 approval(s) from reviewers in <strong>security</strong>",
		"Warning: sandbox_bucket.logs will be deleted: what it holds is lost", "still needed: <strong>1 more from security</strong>",
		"<strong>sec-1</strong> (security)", set.Digest} {
		if !strings.Contains(page, want) {
			t.Errorf("the proposal page lacks %q", want)
		}
	}
	deleted := approve(deletion, "sec-2")
	if deleted.State != "certified" || deleted.CertificateID == "" || deleted.StillNeeded != "" {
		t.Fatalf("after the second from security: %+v", deleted)
	}
	if e := s.execute(deleted.CertificateID); e.State != "succeeded" {
		t.Fatalf("deleting the bucket: %+v", e)
	}

	// Scaling within bounds is certified by the policy alone.
	scale := func(replicas string) proposalWithPolicy {
		t.Helper()
		var p proposalWithPolicy
		if status, body := s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals",
			map[string]any{"bundle": bundle(t, "scale"), "vars": map[string]any{"replicas": replicas}}, &p); status != http.StatusAccepted {
			t.Fatalf("propose: %d %s", status, body)
		}
		s.verified(p.ID)
		s.call("alice", "GET", "/api/v1/proposals/"+p.ID, "", nil, &p)
		return p
	}
	if e := s.execute(approve(scale("3"), "alice").CertificateID); e.State != "succeeded" {
		t.Fatalf("creating the service: %+v", e)
	}
	auto := scale("5")
	if auto.State != "certified" || auto.CertificateID == "" || auto.Policy == nil || !auto.Policy.AutoCertify {
		t.Fatalf("scaling 3 -> 5: %+v", auto)
	}
	if e := s.execute(auto.CertificateID); e.State != "succeeded" {
		t.Errorf("executing the auto-certified diff: %+v", e)
	}

	open := t.TempDir()
	os.WriteFile(filepath.Join(open, "versions.tf"), versions, 0o644)
	os.WriteFile(filepath.Join(open, "main.tf"), []byte("resource \"sandbox_firewall_rule\" \"any\" {\n  direction = \"ingress\"\n  cidr = \"0.0.0.0/0\"\n  from_port = 1\n  to_port = 65535\n}\n"), 0o644)
	refused := propose(open)
	if refused.State != "refused" || !strings.Contains(refused.Reason, "denied by the policy of workspace sandbox: sandbox_firewall_rule.any opens ingress to 0.0.0.0/0") ||
		refused.Policy == nil || len(refused.Policy.Deny) != 1 {
		t.Errorf("an open ingress rule: %+v", refused)
	}
	_, page = b.get("/proposals/" + refused.ID)
	if !strings.Contains(page, "Denied: sandbox_firewall_rule.any opens ingress") {
		t.Errorf("the refused proposal's page does not show the denial")
	}
}

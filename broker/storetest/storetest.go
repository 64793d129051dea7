// Package storetest is the conformance suite of broker.Store: every store
// (SQLite, PostgreSQL) runs the same tests against a real database.
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) broker.Store { return openTestStore(t) })
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

// Run runs the conformance suite. open must return a new, empty store for
// the test it is given, and close it when that test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) broker.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s broker.Store)
	}{
		{"Bundles", testBundles},
		{"ProposalRoundTrip", testProposalRoundTrip},
		{"ProposalMinimal", testProposalMinimal},
		{"ProposalDuplicate", testProposalDuplicate},
		{"ListProposals", testListProposals},
		{"SetProposalState", testSetProposalState},
		{"Reviews", testReviews},
		{"CertificateRoundTrip", testCertificateRoundTrip},
		{"RevokeCertificate", testRevokeCertificate},
		{"ConsumeCertificate", testConsumeCertificate},
		{"ConsumeCertificateConcurrently", testConsumeConcurrently},
		{"Executions", testExecutions},
		{"ListExecutions", testListExecutions},
		{"PolicyEpoch", testPolicyEpoch},
		{"RevocationEpoch", testRevocationEpoch},
		{"Artifacts", testArtifacts},
		{"AuditChain", testAuditChain},
		{"AuditSealFailures", testAuditSealFailures},
		{"AuditConcurrently", testAuditConcurrently},
		{"AuditEntries", testAuditEntries},
		{"APITokens", testAPITokens},
		{"CompleteVerification", testCompleteVerification},
		{"JobLeases", testJobLeases},
		{"ExecuteJobsSerialized", testExecuteJobsSerialized},
		{"LeaseConcurrently", testLeaseConcurrently},
		{"JobLogs", testJobLogs},
		{"WorkspaceHolds", testWorkspaceHolds},
		{"DeleteAPIToken", testDeleteAPIToken},
		{"RenewJob", testRenewJob},
		{"HeldWorkspaceNotLeased", testHeldWorkspaceNotLeased},
		{"JobNotBefore", testJobNotBefore},
		{"Tx", testTx},
		{"JobOwnersShareSlots", testJobOwnersShareSlots},
		{"ProposerBundleBytes", testProposerBundleBytes},
		{"StateVersions", testStateVersions},
		{"StateVersionsConcurrently", testStateVersionsConcurrently},
		{"Sessions", testSessions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, open(t)) })
	}
}

// base is a time with nanoseconds, away from UTC: stores keep at least
// milliseconds and return UTC.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535_897_932, time.FixedZone("UTC+2", 2*60*60))

func at(minutes int) time.Time { return base.Add(time.Duration(minutes) * time.Minute) }

// sameTime reports whether got is want, in UTC, to the millisecond.
func sameTime(got, want time.Time) bool {
	return got.Location() == time.UTC && got.Truncate(time.Millisecond).Equal(want.Truncate(time.Millisecond))
}

func checkTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !sameTime(got, want) {
		t.Errorf("%s = %v (%v), want %v in UTC", what, got, got.Location(), want.UTC())
	}
}

// wantCode fails the test unless err has the broker error code code and,
// if contains is not empty, a message containing it.
func wantCode(t *testing.T, what string, err error, code, contains string) {
	t.Helper()
	if got := broker.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v has code %q, want %q", what, err, got, code)
	}
	if contains != "" && !strings.Contains(broker.ErrorMessage(err), contains) {
		t.Errorf("%s: message %q does not say %q", what, broker.ErrorMessage(err), contains)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

const (
	certifiedPlan = `{"format_version":"1.2","resource_changes":[
	  {"address":"aws_instance.web","mode":"managed","type":"aws_instance","name":"web","provider_name":"registry.terraform.io/hashicorp/aws",
	   "change":{"actions":["update"],
	     "before":{"ami":"ami-1","tags":{"Name":"web","$env":"prod"},"password":"s3cret","ports":[80,443]},
	     "after":{"ami":"ami-2","tags":{"Name":"web","$env":"prod"},"password":"n3w","ports":[80,8443]},
	     "after_unknown":{"arn":true},"before_sensitive":{"password":true},"after_sensitive":{"password":true}}}],
	 "output_changes":{"ip":{"actions":["create"],"before":null,"after":"10.0.0.1","after_unknown":false}}}`
	livePlan = `{"format_version":"1.2","resource_changes":[
	  {"address":"aws_instance.web","mode":"managed","type":"aws_instance","name":"web","provider_name":"registry.terraform.io/hashicorp/aws",
	   "action_reason":"replace_because_cannot_update",
	   "change":{"actions":["delete","create"],
	     "before":{"ami":"ami-1","tags":{"Name":"web","$env":"prod"},"password":"s3cret","ports":[80,443]},
	     "after":{"ami":"ami-3","tags":{"Name":"web","$env":"prod"},"password":"n3w","ports":[80,8443]},
	     "after_unknown":{"arn":true},"before_sensitive":{"password":true},"after_sensitive":{"password":true},
	     "replace_paths":[["ami"],["ports",1]]}},
	  {"address":"aws_s3_bucket.logs[\"eu\"]","mode":"managed","type":"aws_s3_bucket","name":"logs","index":"eu","provider_name":"registry.terraform.io/hashicorp/aws",
	   "change":{"actions":["create"],"before":null,"after":{"bucket":"logs-eu","size":1.5e3},"after_unknown":{"id":true}}}],
	 "output_changes":{"ip":{"actions":["create"],"before":null,"after":"10.0.0.2","after_unknown":false}}}`
)

// summary parses one of the plans above.
func summary(t *testing.T, plan string) *planparse.Summary {
	t.Helper()
	p, err := planparse.Parse(strings.NewReader(plan), planparse.Options{SensitiveKey: []byte("storetest")})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p.Summary
}

// proposal returns a proposal with every field set; id and minute vary it.
func proposal(t *testing.T, id string, minute int) *broker.Proposal {
	t.Helper()
	certified, live := summary(t, certifiedPlan), summary(t, livePlan)
	// The live plan's resources stand in for drift: any summarized changes.
	drift := live.Resources
	return &broker.Proposal{
		ID:           id,
		Workspace:    "prod",
		ConfigDigest: "sha256:c0nf19",
		Vars:         map[string]string{"region": "eu-west-1", "empty": "", "quote": `"'\`},
		Rationale:    "upgrade the AMI\nand add logs",
		Proposer:     "agent-7",
		Summary:      certified,
		Digest:       certified.Digest(),
		PlanDigest:   "sha256:9la9",
		AgentDigest:  live.Digest(),
		Divergence:   planparse.Compare(certified, live),
		Drift:        drift,
		Disclosure: &planparse.Disclosure{
			Hidden:  []planparse.HiddenValue{{Address: "aws_db.main", Path: "password", By: planparse.HiddenByProvider}},
			Unknown: []planparse.UnknownValue{{Address: "aws_db.main", Path: "endpoint", References: []string{"aws_vpc.main.id"}}},
		},
		State:     broker.ProposalPending,
		CreatedAt: at(minute),
		UpdatedAt: at(minute + 1),
	}
}

func testBundles(t *testing.T, s broker.Store) {
	ctx := context.Background()
	data := []byte("\x1f\x8b\x00gzip\x00bytes\xff")
	must(t, "PutBundle", s.PutBundle(ctx, "sha256:b1", data))
	must(t, "PutBundle again", s.PutBundle(ctx, "sha256:b1", data))
	got, err := s.Bundle(ctx, "sha256:b1")
	must(t, "Bundle", err)
	if !bytes.Equal(got, data) {
		t.Errorf("Bundle = %q, want %q", got, data)
	}
	_, err = s.Bundle(ctx, "sha256:missing")
	wantCode(t, "Bundle of a missing digest", err, broker.ENOTFOUND, "sha256:missing")
}

// checkProposal compares every field of got with want.
func checkProposal(t *testing.T, got, want *broker.Proposal) {
	t.Helper()
	if got.ID != want.ID || got.Workspace != want.Workspace || got.ConfigDigest != want.ConfigDigest ||
		got.Rationale != want.Rationale || got.Proposer != want.Proposer || got.Digest != want.Digest ||
		got.PlanDigest != want.PlanDigest || got.AgentDigest != want.AgentDigest || got.State != want.State {
		t.Errorf("proposal = %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(got.Vars, want.Vars) {
		t.Errorf("Vars = %#v, want %#v", got.Vars, want.Vars)
	}
	switch {
	case (got.Summary == nil) != (want.Summary == nil):
		t.Errorf("Summary = %v, want %v", got.Summary, want.Summary)
	case want.Summary != nil && got.Summary.Digest() != want.Summary.Digest():
		t.Errorf("Summary digest = %s, want %s\n%s", got.Summary.Digest(), want.Summary.Digest(), got.Summary.Canonical())
	}
	checkJSON(t, "Divergence", got.Divergence, want.Divergence)
	checkJSON(t, "Drift", got.Drift, want.Drift)
	checkJSON(t, "Disclosure", got.Disclosure, want.Disclosure)
	checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

// checkJSON compares got and want by their JSON: what a store keeps of a
// value it stores as JSON.
func checkJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s = %s\nwant %s", what, g, w)
	}
}

func testProposalRoundTrip(t *testing.T, s broker.Store) {
	ctx := context.Background()
	want := proposal(t, "prop-1", 0)
	d := want.Divergence
	if len(d.OnlyLive) == 0 || len(d.Resources) == 0 || len(d.Resources[0].Fields) == 0 ||
		len(d.Resources[0].Attributes) == 0 || len(d.Outputs) == 0 {
		t.Fatalf("the test divergence misses a part: %+v", d)
	}
	must(t, "CreateProposal", s.CreateProposal(ctx, want))
	got, err := s.Proposal(ctx, "prop-1")
	must(t, "Proposal", err)
	checkProposal(t, got, want)
	// The divergence must also be usable as planparse's own value.
	var buf bytes.Buffer
	must(t, "RenderDivergence", planparse.RenderDivergence(&buf, got.Divergence, planparse.RenderOptions{}))

	_, err = s.Proposal(ctx, "prop-missing")
	wantCode(t, "Proposal of a missing id", err, broker.ENOTFOUND, "prop-missing")
}

func testProposalMinimal(t *testing.T, s broker.Store) {
	ctx := context.Background()
	want := &broker.Proposal{ID: "prop-min", Workspace: "dev", State: broker.ProposalDiverged, CreatedAt: at(0), UpdatedAt: at(0)}
	must(t, "CreateProposal", s.CreateProposal(ctx, want))
	got, err := s.Proposal(ctx, "prop-min")
	must(t, "Proposal", err)
	checkProposal(t, got, want)
	if got.Summary != nil || got.Divergence != nil || len(got.Vars) != 0 {
		t.Errorf("empty fields came back set: %+v", got)
	}
}

func testProposalDuplicate(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "CreateProposal", s.CreateProposal(ctx, proposal(t, "prop-1", 0)))
	err := s.CreateProposal(ctx, proposal(t, "prop-1", 5))
	wantCode(t, "CreateProposal of an existing id", err, broker.ECONFLICT, "prop-1")
}

func ids[T any](items []T, id func(T) string) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, id(it))
	}
	return out
}

func proposalID(p *broker.Proposal) string { return p.ID }

func testListProposals(t *testing.T, s broker.Store) {
	ctx := context.Background()
	for _, p := range []struct {
		id, workspace, proposer string
		state                   broker.ProposalState
		minute                  int
	}{
		{"p1", "prod", "alice", broker.ProposalPending, 1},
		{"p3", "prod", "bob", broker.ProposalCertified, 3},
		{"p2", "dev", "alice", broker.ProposalPending, 2},
		{"p4", "dev", "alice", broker.ProposalRejected, 4},
		{"p5", "prod", "alice", broker.ProposalPending, 5},
	} {
		pr := proposal(t, p.id, p.minute)
		pr.Workspace, pr.Proposer, pr.State = p.workspace, p.proposer, p.state
		must(t, "CreateProposal", s.CreateProposal(ctx, pr))
	}
	tests := []struct {
		name   string
		filter broker.ProposalFilter
		want   []string
	}{
		{"all, newest first", broker.ProposalFilter{}, []string{"p5", "p4", "p3", "p2", "p1"}},
		{"workspace", broker.ProposalFilter{Workspace: "prod"}, []string{"p5", "p3", "p1"}},
		{"state", broker.ProposalFilter{State: broker.ProposalPending}, []string{"p5", "p2", "p1"}},
		{"proposer", broker.ProposalFilter{Proposer: "bob"}, []string{"p3"}},
		{"all three", broker.ProposalFilter{Workspace: "dev", State: broker.ProposalPending, Proposer: "alice"}, []string{"p2"}},
		{"limit", broker.ProposalFilter{Limit: 2}, []string{"p5", "p4"}},
		{"limit with workspace", broker.ProposalFilter{Workspace: "prod", Limit: 2}, []string{"p5", "p3"}},
		{"oldest first", broker.ProposalFilter{State: broker.ProposalPending, OldestFirst: true, Limit: 2}, []string{"p1", "p2"}},
		{"no match", broker.ProposalFilter{Workspace: "staging"}, []string{}},
		{"a page after", broker.ProposalFilter{After: "p4", Limit: 2}, []string{"p3", "p2"}},
		{"any of workspaces", broker.ProposalFilter{Workspaces: []string{"dev", "staging"}}, []string{"p4", "p2"}},
		{"any of workspaces, after", broker.ProposalFilter{Workspaces: []string{"prod"}, After: "p5", Limit: 1}, []string{"p3"}},
		{"the last page", broker.ProposalFilter{After: "p2", Limit: 2}, []string{"p1"}},
		{"after, with a filter", broker.ProposalFilter{After: "p5", Workspace: "prod"}, []string{"p3", "p1"}},
		{"after, oldest first", broker.ProposalFilter{After: "p2", OldestFirst: true}, []string{"p3", "p4", "p5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListProposals(ctx, tt.filter)
			must(t, "ListProposals", err)
			if g := ids(got, proposalID); !reflect.DeepEqual(g, tt.want) {
				t.Errorf("ListProposals(%+v) = %v, want %v", tt.filter, g, tt.want)
			}
		})
	}
	_, err := s.ListProposals(ctx, broker.ProposalFilter{After: "p-missing"})
	wantCode(t, "ListProposals after a missing proposal", err, broker.ENOTFOUND, "p-missing")
	got, err := s.ListProposals(ctx, broker.ProposalFilter{Proposer: "bob"})
	must(t, "ListProposals", err)
	if len(got) == 1 {
		want := proposal(t, "p3", 3)
		want.Workspace, want.Proposer, want.State = "prod", "bob", broker.ProposalCertified
		checkProposal(t, got[0], want)
	}
}

func testSetProposalState(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "CreateProposal", s.CreateProposal(ctx, proposal(t, "prop-1", 0)))
	must(t, "SetProposalState", s.SetProposalState(ctx, "prop-1", broker.ProposalPending, broker.ProposalCertified, at(30)))
	got, err := s.Proposal(ctx, "prop-1")
	must(t, "Proposal", err)
	if got.State != broker.ProposalCertified {
		t.Errorf("State = %s, want certified", got.State)
	}
	checkTime(t, "UpdatedAt", got.UpdatedAt, at(30))
	checkTime(t, "CreatedAt", got.CreatedAt, at(0))

	err = s.SetProposalState(ctx, "prop-1", broker.ProposalPending, broker.ProposalRejected, at(31))
	wantCode(t, "SetProposalState from a state it is not in", err, broker.ECONFLICT, "")
	if got, _ := s.Proposal(ctx, "prop-1"); got.State != broker.ProposalCertified || !sameTime(got.UpdatedAt, at(30)) {
		t.Errorf("a refused change changed the proposal: %s at %v", got.State, got.UpdatedAt)
	}
	err = s.SetProposalState(ctx, "prop-missing", broker.ProposalPending, broker.ProposalRejected, at(31))
	wantCode(t, "SetProposalState of a missing proposal", err, broker.ENOTFOUND, "prop-missing")
}

func testReviews(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "CreateProposal", s.CreateProposal(ctx, proposal(t, "prop-1", 0)))
	must(t, "CreateProposal", s.CreateProposal(ctx, proposal(t, "prop-2", 0)))
	must(t, "CreateProposal", s.CreateProposal(ctx, proposal(t, "prop-3", 0)))
	reviews := []broker.Review{
		{ProposalID: "prop-1", Reviewer: "carol", Decision: broker.Approve, Comment: "ok", At: at(12), Groups: []string{"security", "sre"}},
		{ProposalID: "prop-1", Reviewer: "alice", Decision: broker.Reject, Comment: "", At: at(10)},
		{ProposalID: "prop-2", Reviewer: "alice", Decision: broker.Approve, At: at(11)},
		{ProposalID: "prop-1", Reviewer: "bob", Decision: broker.Approve, Comment: "lgtm\n", At: at(11)},
	}
	for _, r := range reviews {
		must(t, "AddReview", s.AddReview(ctx, r))
	}
	err := s.AddReview(ctx, broker.Review{ProposalID: "prop-1", Reviewer: "bob", Decision: broker.Reject, At: at(13)})
	wantCode(t, "AddReview by a reviewer who already reviewed", err, broker.ECONFLICT, "bob")

	got, err := s.Reviews(ctx, "prop-1")
	must(t, "Reviews", err)
	want := []broker.Review{reviews[1], reviews[3], reviews[0]} // oldest first
	if len(got) != len(want) {
		t.Fatalf("Reviews = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ProposalID != w.ProposalID || g.Reviewer != w.Reviewer || g.Decision != w.Decision || g.Comment != w.Comment || !slices.Equal(g.Groups, w.Groups) {
			t.Errorf("review %d = %+v, want %+v", i, g, w)
		}
		checkTime(t, fmt.Sprintf("review %d At", i), g.At, w.At)
	}
	if got, err := s.Reviews(ctx, "prop-3"); err != nil || len(got) != 0 {
		t.Errorf("Reviews of a proposal without reviews = %v, %v; want none", got, err)
	}
}

// certificate returns a certificate of proposal with every field set.
func certificate(t *testing.T, id, proposalID string) *broker.Certificate {
	t.Helper()
	sum := summary(t, certifiedPlan)
	return &broker.Certificate{
		CertificatePayload: broker.CertificatePayload{
			ID:              id,
			Workspace:       "prod",
			ProposalID:      proposalID,
			ConfigDigest:    "sha256:c0nf19",
			DiffDigest:      sum.Digest(),
			PlanDigest:      "sha256:9la9",
			Summary:         sum,
			NotBefore:       at(0),
			NotAfter:        at(60),
			PolicyEpoch:     3,
			RevocationEpoch: 7,
			Approvals: []broker.Approval{
				{Reviewer: "alice", At: at(-2)},
				{Reviewer: "bob", At: at(-1)},
			},
			IssuerKeyID: "key-1",
			SingleUse:   true,
		},
		Envelope: []byte(`{"payloadType":"application/vnd.seb.certificate+json","payload":"eyJ9","signatures":[{"keyid":"key-1","sig":"c2ln"}]}` + "\x00\xff"),
	}
}

// withProposal stores a proposal for certificates to refer to.
func withProposal(t *testing.T, s broker.Store, id string) {
	t.Helper()
	must(t, "CreateProposal", s.CreateProposal(context.Background(), proposal(t, id, 0)))
}

func testCertificateRoundTrip(t *testing.T, s broker.Store) {
	ctx := context.Background()
	withProposal(t, s, "prop-1")
	want := certificate(t, "cert-1", "prop-1")
	want.Policy = &policy.Decision{Deny: []string{}, Warn: []string{}, AutoCertify: true, PolicyDigest: "sha256:" + strings.Repeat("cd", 32)}
	must(t, "CreateCertificate", s.CreateCertificate(ctx, want))
	got, err := s.Certificate(ctx, "cert-1")
	must(t, "Certificate", err)
	if !reflect.DeepEqual(got.Policy, want.Policy) {
		t.Errorf("certificate's policy decision = %+v, want %+v", got.Policy, want.Policy)
	}
	if byProposal, err := s.ProposalCertificate(ctx, "prop-1"); err != nil || byProposal.ID != "cert-1" {
		t.Errorf("ProposalCertificate = %v, %v", byProposal, err)
	}
	_, err = s.ProposalCertificate(ctx, "prop-none")
	wantCode(t, "ProposalCertificate of a proposal without one", err, broker.ENOTFOUND, "")
	if got.ID != want.ID || got.Workspace != want.Workspace || got.ProposalID != want.ProposalID ||
		got.ConfigDigest != want.ConfigDigest || got.DiffDigest != want.DiffDigest || got.PlanDigest != want.PlanDigest ||
		got.PolicyEpoch != want.PolicyEpoch || got.RevocationEpoch != want.RevocationEpoch ||
		got.IssuerKeyID != want.IssuerKeyID || got.SingleUse != want.SingleUse {
		t.Errorf("certificate = %+v\nwant %+v", got.CertificatePayload, want.CertificatePayload)
	}
	if got.Summary == nil || got.Summary.Digest() != want.DiffDigest {
		t.Errorf("Summary does not have the diff digest %s", want.DiffDigest)
	}
	checkTime(t, "NotBefore", got.NotBefore, want.NotBefore)
	checkTime(t, "NotAfter", got.NotAfter, want.NotAfter)
	if len(got.Approvals) != len(want.Approvals) {
		t.Fatalf("Approvals = %+v, want %+v", got.Approvals, want.Approvals)
	}
	for i := range want.Approvals {
		if got.Approvals[i].Reviewer != want.Approvals[i].Reviewer {
			t.Errorf("approval %d = %+v, want %+v", i, got.Approvals[i], want.Approvals[i])
		}
		checkTime(t, fmt.Sprintf("approval %d At", i), got.Approvals[i].At, want.Approvals[i].At)
	}
	if !bytes.Equal(got.Envelope, want.Envelope) {
		t.Errorf("Envelope = %q, want %q", got.Envelope, want.Envelope)
	}
	if got.RevokedAt != nil || got.RevokedBy != "" || got.ConsumedBy != "" {
		t.Errorf("a new certificate is revoked or consumed: %v %q %q", got.RevokedAt, got.RevokedBy, got.ConsumedBy)
	}

	err = s.CreateCertificate(ctx, certificate(t, "cert-1", "prop-1"))
	wantCode(t, "CreateCertificate of an existing id", err, broker.ECONFLICT, "cert-1")
	_, err = s.Certificate(ctx, "cert-missing")
	wantCode(t, "Certificate of a missing id", err, broker.ENOTFOUND, "cert-missing")
}

func testRevokeCertificate(t *testing.T, s broker.Store) {
	ctx := context.Background()
	withProposal(t, s, "prop-1")
	must(t, "CreateCertificate", s.CreateCertificate(ctx, certificate(t, "cert-1", "prop-1")))
	must(t, "RevokeCertificate", s.RevokeCertificate(ctx, "cert-1", "alice", at(20)))
	got, err := s.Certificate(ctx, "cert-1")
	must(t, "Certificate", err)
	if got.RevokedAt == nil || got.RevokedBy != "alice" {
		t.Fatalf("revoked certificate has RevokedAt %v, RevokedBy %q", got.RevokedAt, got.RevokedBy)
	}
	checkTime(t, "RevokedAt", *got.RevokedAt, at(20))

	err = s.RevokeCertificate(ctx, "cert-1", "bob", at(21))
	wantCode(t, "RevokeCertificate twice", err, broker.ECONFLICT, "revoked")
	if got, _ := s.Certificate(ctx, "cert-1"); got.RevokedBy != "alice" || !sameTime(*got.RevokedAt, at(20)) {
		t.Errorf("a second revocation changed the first: %q at %v", got.RevokedBy, got.RevokedAt)
	}
	err = s.RevokeCertificate(ctx, "cert-missing", "bob", at(21))
	wantCode(t, "RevokeCertificate of a missing id", err, broker.ENOTFOUND, "cert-missing")
}

// execution returns a new execution of a certificate.
func execution(id, certificateID string, minute int) *broker.Execution {
	return &broker.Execution{
		ID: id, CertificateID: certificateID, Workspace: "prod", State: broker.ExecutionVerifying,
		StartedAt: at(minute), UpdatedAt: at(minute),
	}
}

func checkExecution(t *testing.T, got, want *broker.Execution) {
	t.Helper()
	if got.ID != want.ID || got.CertificateID != want.CertificateID || got.Workspace != want.Workspace ||
		got.State != want.State || got.Reason != want.Reason || got.PlanLogID != want.PlanLogID || got.ApplyLogID != want.ApplyLogID {
		t.Errorf("execution = %+v\nwant %+v", got, want)
	}
	if !bytes.Equal(got.Divergence, want.Divergence) {
		t.Errorf("Divergence = %s, want %s", got.Divergence, want.Divergence)
	}
	checkTime(t, "StartedAt", got.StartedAt, want.StartedAt)
	checkTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func testConsumeCertificate(t *testing.T, s broker.Store) {
	ctx := context.Background()
	withProposal(t, s, "prop-1")
	for _, id := range []string{"cert-1", "cert-2", "cert-3"} {
		must(t, "CreateCertificate", s.CreateCertificate(ctx, certificate(t, id, "prop-1")))
	}

	first := execution("exec-1", "cert-1", 30)
	must(t, "ConsumeCertificate", s.ConsumeCertificate(ctx, "cert-1", first))
	cert, err := s.Certificate(ctx, "cert-1")
	must(t, "Certificate", err)
	if cert.ConsumedBy != "exec-1" {
		t.Errorf("ConsumedBy = %q, want exec-1", cert.ConsumedBy)
	}
	got, err := s.Execution(ctx, "exec-1")
	must(t, "Execution", err)
	checkExecution(t, got, first)

	err = s.ConsumeCertificate(ctx, "cert-1", execution("exec-2", "cert-1", 31))
	wantCode(t, "ConsumeCertificate of a used certificate", err, broker.ECONFLICT, "already used")
	if !strings.Contains(broker.ErrorMessage(err), "exec-1") {
		t.Errorf("message %q does not name the execution that used the certificate", broker.ErrorMessage(err))
	}
	_, err = s.Execution(ctx, "exec-2")
	wantCode(t, "Execution refused", err, broker.ENOTFOUND, "")

	must(t, "RevokeCertificate", s.RevokeCertificate(ctx, "cert-2", "alice", at(32)))
	err = s.ConsumeCertificate(ctx, "cert-2", execution("exec-3", "cert-2", 33))
	wantCode(t, "ConsumeCertificate of a revoked certificate", err, broker.ECONFLICT, "revoked")
	if cert, _ := s.Certificate(ctx, "cert-2"); cert.ConsumedBy != "" {
		t.Errorf("a revoked certificate was consumed by %s", cert.ConsumedBy)
	}

	err = s.ConsumeCertificate(ctx, "cert-missing", execution("exec-4", "cert-missing", 34))
	wantCode(t, "ConsumeCertificate of a missing certificate", err, broker.ENOTFOUND, "cert-missing")

	// An execution id that exists cannot consume another certificate,
	// and the refusal leaves that certificate unused.
	err = s.ConsumeCertificate(ctx, "cert-3", execution("exec-1", "cert-3", 35))
	wantCode(t, "ConsumeCertificate with an existing execution id", err, broker.ECONFLICT, "")
	if cert, _ := s.Certificate(ctx, "cert-3"); cert.ConsumedBy != "" {
		t.Errorf("a refused consumption left the certificate consumed by %s", cert.ConsumedBy)
	}
	must(t, "ConsumeCertificate after a refusal", s.ConsumeCertificate(ctx, "cert-3", execution("exec-5", "cert-3", 36)))
}

func testConsumeConcurrently(t *testing.T, s broker.Store) {
	ctx := context.Background()
	withProposal(t, s, "prop-1")
	must(t, "CreateCertificate", s.CreateCertificate(ctx, certificate(t, "cert-1", "prop-1")))
	const callers = 50
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			errs[i] = s.ConsumeCertificate(ctx, "cert-1", execution(fmt.Sprintf("exec-%02d", i), "cert-1", i))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("callers %d and %d both consumed the certificate", winner, i)
		case err == nil:
			winner = i
		default:
			wantCode(t, fmt.Sprintf("caller %d", i), err, broker.ECONFLICT, "already used")
		}
	}
	if winner < 0 {
		t.Fatal("no caller consumed the certificate")
	}
	cert, err := s.Certificate(ctx, "cert-1")
	must(t, "Certificate", err)
	if want := fmt.Sprintf("exec-%02d", winner); cert.ConsumedBy != want {
		t.Errorf("ConsumedBy = %q, want the winner %s", cert.ConsumedBy, want)
	}
	execs, err := s.ListExecutions(ctx, broker.ExecutionFilter{CertificateID: "cert-1"})
	must(t, "ListExecutions", err)
	if len(execs) != 1 || execs[0].ID != cert.ConsumedBy {
		t.Errorf("executions stored = %v, want only %s", ids(execs, executionID), cert.ConsumedBy)
	}
}

func executionID(e *broker.Execution) string { return e.ID }

func testExecutions(t *testing.T, s broker.Store) {
	ctx := context.Background()
	withProposal(t, s, "prop-1")
	must(t, "CreateCertificate", s.CreateCertificate(ctx, certificate(t, "cert-1", "prop-1")))
	e := execution("exec-1", "cert-1", 30)
	must(t, "ConsumeCertificate", s.ConsumeCertificate(ctx, "cert-1", e))

	updated := *e
	updated.State = broker.ExecutionRefused
	updated.Reason = "the live plan differs from the certified diff"
	updated.Divergence = json.RawMessage(`{"divergence":{"certified_digest":"sha256:a","live_digest":"sha256:b"},"reason":"x"}`)
	updated.PlanLogID = "art-plan"
	updated.ApplyLogID = "art-apply"
	updated.UpdatedAt = at(45)
	must(t, "UpdateExecution", s.UpdateExecution(ctx, &updated, e.State))
	got, err := s.Execution(ctx, "exec-1")
	must(t, "Execution", err)
	checkExecution(t, got, &updated)

	// Clearing fields clears them.
	cleared := updated
	cleared.State, cleared.Reason, cleared.Divergence, cleared.UpdatedAt = broker.ExecutionFailed, "", nil, at(46)
	must(t, "UpdateExecution", s.UpdateExecution(ctx, &cleared, broker.ExecutionRefused))
	got, err = s.Execution(ctx, "exec-1")
	must(t, "Execution", err)
	checkExecution(t, got, &cleared)

	// The state it moves from is guarded: a stale writer changes nothing.
	stale := cleared
	stale.State, stale.Reason, stale.UpdatedAt = broker.ExecutionSucceeded, "late", at(47)
	err = s.UpdateExecution(ctx, &stale, broker.ExecutionApplying)
	wantCode(t, "UpdateExecution from a state it is not in", err, broker.ECONFLICT, "exec-1")
	got, err = s.Execution(ctx, "exec-1")
	must(t, "Execution", err)
	checkExecution(t, got, &cleared)

	err = s.UpdateExecution(ctx, execution("exec-missing", "cert-1", 0), broker.ExecutionQueued)
	wantCode(t, "UpdateExecution of a missing execution", err, broker.ENOTFOUND, "exec-missing")
	_, err = s.Execution(ctx, "exec-missing")
	wantCode(t, "Execution of a missing id", err, broker.ENOTFOUND, "exec-missing")
}

func testListExecutions(t *testing.T, s broker.Store) {
	ctx := context.Background()
	withProposal(t, s, "prop-1")
	for _, e := range []struct {
		id, cert, workspace string
		state               broker.ExecutionState
		minute              int
	}{
		{"e1", "c1", "prod", broker.ExecutionSucceeded, 1},
		{"e3", "c3", "prod", broker.ExecutionApplying, 3},
		{"e2", "c2", "dev", broker.ExecutionPlanning, 2},
		{"e4", "c4", "dev", broker.ExecutionInterrupted, 4},
		{"e5", "c5", "prod", broker.ExecutionQueued, 5},
	} {
		c := certificate(t, e.cert, "prop-1")
		c.Workspace = e.workspace
		must(t, "CreateCertificate", s.CreateCertificate(ctx, c))
		ex := execution(e.id, e.cert, e.minute)
		ex.Workspace = e.workspace
		must(t, "ConsumeCertificate", s.ConsumeCertificate(ctx, e.cert, ex))
		if e.state != ex.State {
			from := ex.State
			ex.State = e.state
			must(t, "UpdateExecution", s.UpdateExecution(ctx, ex, from))
		}
	}
	tests := []struct {
		name   string
		filter broker.ExecutionFilter
		want   []string
	}{
		{"all, newest first", broker.ExecutionFilter{}, []string{"e5", "e4", "e3", "e2", "e1"}},
		{"workspace", broker.ExecutionFilter{Workspace: "prod"}, []string{"e5", "e3", "e1"}},
		{"certificate", broker.ExecutionFilter{CertificateID: "c2"}, []string{"e2"}},
		{"running", broker.ExecutionFilter{Running: true}, []string{"e5", "e3", "e2"}},
		{"running in a workspace", broker.ExecutionFilter{Running: true, Workspace: "dev"}, []string{"e2"}},
		{"limit", broker.ExecutionFilter{Limit: 2}, []string{"e5", "e4"}},
		{"no match", broker.ExecutionFilter{CertificateID: "c9"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListExecutions(ctx, tt.filter)
			must(t, "ListExecutions", err)
			if g := ids(got, executionID); !reflect.DeepEqual(g, tt.want) {
				t.Errorf("ListExecutions(%+v) = %v, want %v", tt.filter, g, tt.want)
			}
		})
	}
}

func testPolicyEpoch(t *testing.T, s broker.Store) {
	ctx := context.Background()
	if epoch, err := s.PolicyEpoch(ctx); err != nil || epoch != 0 {
		t.Fatalf("PolicyEpoch before any = %d, %v; want 0", epoch, err)
	}
	for _, step := range []struct {
		digest string
		want   int64
	}{
		{"sha256:a", 1},
		{"sha256:a", 1}, // same configuration: same epoch
		{"sha256:b", 2},
		{"sha256:b", 2},
		{"sha256:a", 3}, // back to an earlier configuration is still a change
	} {
		epoch, err := s.SetPolicyEpoch(ctx, step.digest)
		must(t, "SetPolicyEpoch", err)
		if epoch != step.want {
			t.Errorf("SetPolicyEpoch(%s) = %d, want %d", step.digest, epoch, step.want)
		}
		if epoch, err := s.PolicyEpoch(ctx); err != nil || epoch != step.want {
			t.Errorf("PolicyEpoch = %d, %v; want %d", epoch, err, step.want)
		}
	}
}

func testRevocationEpoch(t *testing.T, s broker.Store) {
	ctx := context.Background()
	check := func(workspace string, want int64) {
		t.Helper()
		if epoch, err := s.RevocationEpoch(ctx, workspace); err != nil || epoch != want {
			t.Errorf("RevocationEpoch(%s) = %d, %v; want %d", workspace, epoch, err, want)
		}
	}
	check("prod", 0)
	for want := int64(1); want <= 3; want++ {
		epoch, err := s.BumpRevocationEpoch(ctx, "prod")
		must(t, "BumpRevocationEpoch", err)
		if epoch != want {
			t.Errorf("BumpRevocationEpoch(prod) = %d, want %d", epoch, want)
		}
	}
	check("prod", 3)
	check("dev", 0)
	epoch, err := s.BumpRevocationEpoch(ctx, "dev")
	must(t, "BumpRevocationEpoch", err)
	if epoch != 1 {
		t.Errorf("BumpRevocationEpoch(dev) = %d, want 1", epoch)
	}
	check("prod", 3)
}

func testArtifacts(t *testing.T, s broker.Store) {
	ctx := context.Background()
	data := []byte("plan log\x00\x01\xfe\xff\r\n\xe2\x82")
	sum := sha256.Sum256(data)
	want := &broker.Artifact{
		ID: "art-1", Kind: "plan-log", Digest: "sha256:" + hex.EncodeToString(sum[:]), Data: data,
		Signature: "c2lnbmF0dXJl", KeyID: "key-1", CreatedAt: at(50),
	}
	must(t, "PutArtifact", s.PutArtifact(ctx, want))
	empty := &broker.Artifact{ID: "art-empty", Kind: "apply-log", Digest: "sha256:e3b0", Data: []byte{}, CreatedAt: at(51)}
	must(t, "PutArtifact of no data", s.PutArtifact(ctx, empty))

	for _, w := range []*broker.Artifact{want, empty} {
		got, err := s.Artifact(ctx, w.ID)
		must(t, "Artifact", err)
		if got.ID != w.ID || got.Kind != w.Kind || got.Digest != w.Digest || got.Signature != w.Signature || got.KeyID != w.KeyID {
			t.Errorf("artifact = %+v\nwant %+v", got, w)
		}
		if !bytes.Equal(got.Data, w.Data) {
			t.Errorf("Data = %q, want %q", got.Data, w.Data)
		}
		checkTime(t, "CreatedAt", got.CreatedAt, w.CreatedAt)
	}
	_, err := s.Artifact(ctx, "art-missing")
	wantCode(t, "Artifact of a missing id", err, broker.ENOTFOUND, "art-missing")
}

// seal is a test seal function: it chains entries by a sha256 of the
// previous hash and the entry's own fields.
func seal(actor string, minute int) func(last *broker.AuditEntry) (*broker.AuditEntry, error) {
	return func(last *broker.AuditEntry) (*broker.AuditEntry, error) {
		e := &broker.AuditEntry{
			Seq: 1, Time: at(minute), Actor: actor, Action: "test.append", Subject: "s-" + actor,
			Details: json.RawMessage(`{"actor":"` + actor + `"}`), PrevHash: "genesis", KeyID: "key-1",
		}
		if last != nil {
			e.Seq, e.PrevHash = last.Seq+1, last.Hash
		}
		e.DetailsDigest = digest(string(e.Details))
		e.Hash = digest(fmt.Sprint(e.Seq, e.PrevHash, e.Actor, e.DetailsDigest))
		e.Signature = "sig-" + e.Hash
		return e, nil
	}
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkChain checks that entries are seqs 1…n, each linked to the one
// before.
func checkChain(t *testing.T, entries []*broker.AuditEntry, n int) {
	t.Helper()
	if len(entries) != n {
		t.Fatalf("%d entries, want %d", len(entries), n)
	}
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has Seq %d", i, e.Seq)
		}
		if i > 0 && e.PrevHash != entries[i-1].Hash {
			t.Errorf("entry %d has PrevHash %s, want the Hash of entry %d, %s", e.Seq, e.PrevHash, i, entries[i-1].Hash)
		}
		if want := digest(fmt.Sprint(e.Seq, e.PrevHash, e.Actor, e.DetailsDigest)); e.Hash != want {
			t.Errorf("entry %d has Hash %s, want %s", e.Seq, e.Hash, want)
		}
	}
}

func testAuditChain(t *testing.T, s broker.Store) {
	ctx := context.Background()
	var appended []*broker.AuditEntry
	for i, actor := range []string{"alice", "bob", "carol"} {
		e, err := s.AppendAudit(ctx, seal(actor, i))
		must(t, "AppendAudit", err)
		appended = append(appended, e)
	}
	checkChain(t, appended, 3)
	if appended[0].PrevHash != "genesis" {
		t.Errorf("the first entry's seal saw a last entry: PrevHash %s", appended[0].PrevHash)
	}
	got, err := s.AuditEntries(ctx, 0, 10)
	must(t, "AuditEntries", err)
	checkChain(t, got, 3)
	for i, g := range got {
		w := appended[i]
		if g.Actor != w.Actor || g.Action != w.Action || g.Subject != w.Subject || g.DetailsDigest != w.DetailsDigest ||
			g.Hash != w.Hash || g.Signature != w.Signature || g.KeyID != w.KeyID {
			t.Errorf("entry %d = %+v\nwant %+v", g.Seq, g, w)
		}
		if !bytes.Equal(g.Details, w.Details) {
			t.Errorf("entry %d Details = %s, want %s", g.Seq, g.Details, w.Details)
		}
		checkTime(t, fmt.Sprintf("entry %d Time", g.Seq), g.Time, at(i))
	}
}

func testAuditSealFailures(t *testing.T, s broker.Store) {
	ctx := context.Background()
	_, err := s.AppendAudit(ctx, seal("alice", 0))
	must(t, "AppendAudit", err)

	sealErr := broker.Errorf(broker.EINVALID, "audit entry has no actor")
	_, err = s.AppendAudit(ctx, func(*broker.AuditEntry) (*broker.AuditEntry, error) { return nil, sealErr })
	if !errors.Is(err, sealErr) {
		t.Errorf("AppendAudit with a failing seal = %v, want seal's error", err)
	}
	_, err = s.AppendAudit(ctx, func(last *broker.AuditEntry) (*broker.AuditEntry, error) {
		e, err := seal("mallory", 1)(last)
		e.Seq += 5
		return e, err
	})
	wantCode(t, "AppendAudit of an entry out of sequence", err, broker.EINTERNAL, "")
	_, err = s.AppendAudit(ctx, func(last *broker.AuditEntry) (*broker.AuditEntry, error) {
		e, err := seal("mallory", 1)(last)
		e.Seq = last.Seq
		return e, err
	})
	wantCode(t, "AppendAudit of an entry that repeats the last Seq", err, broker.EINTERNAL, "")

	got, err := s.AuditEntries(ctx, 0, 10)
	must(t, "AuditEntries", err)
	checkChain(t, got, 1)
	e, err := s.AppendAudit(ctx, seal("bob", 2))
	must(t, "AppendAudit after failures", err)
	if e.Seq != 2 {
		t.Errorf("Seq after failures = %d, want 2", e.Seq)
	}
}

func testAuditConcurrently(t *testing.T, s broker.Store) {
	ctx := context.Background()
	const appenders = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, appenders)
	for i := range appenders {
		wg.Go(func() {
			<-start
			_, errs[i] = s.AppendAudit(ctx, seal(fmt.Sprintf("actor-%02d", i), i))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		must(t, fmt.Sprintf("AppendAudit %d", i), err)
	}
	got, err := s.AuditEntries(ctx, 0, 100)
	must(t, "AuditEntries", err)
	checkChain(t, got, appenders)
	actors := map[string]bool{}
	for _, e := range got {
		actors[e.Actor] = true
	}
	if len(actors) != appenders {
		t.Errorf("%d distinct actors in the log, want %d", len(actors), appenders)
	}
}

func testAuditEntries(t *testing.T, s broker.Store) {
	ctx := context.Background()
	if got, err := s.AuditEntries(ctx, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("AuditEntries of an empty log = %v, %v", got, err)
	}
	if last, err := s.LastAuditEntry(ctx); err != nil || last != nil {
		t.Fatalf("LastAuditEntry of an empty log = %v, %v", last, err)
	}
	for i := range 12 {
		e, err := s.AppendAudit(ctx, seal(fmt.Sprint("actor-", i), i))
		must(t, "AppendAudit", err)
		if last, err := s.LastAuditEntry(ctx); err != nil || last.Seq != e.Seq || last.Hash != e.Hash || last.KeyID != e.KeyID {
			t.Fatalf("LastAuditEntry after entry %d = %+v, %v", e.Seq, last, err)
		}
	}
	var all []*broker.AuditEntry
	for after := int64(0); ; {
		page, err := s.AuditEntries(ctx, after, 5)
		must(t, "AuditEntries", err)
		if len(page) > 5 {
			t.Fatalf("AuditEntries(%d, 5) returned %d entries", after, len(page))
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
	checkChain(t, all, 12)
	tests := []struct {
		after    int64
		limit    int
		wantSeqs []int64
	}{
		{0, 3, []int64{1, 2, 3}},
		{10, 5, []int64{11, 12}},
		{12, 5, []int64{}},
		{100, 5, []int64{}},
		{5, 1, []int64{6}},
	}
	for _, tt := range tests {
		got, err := s.AuditEntries(ctx, tt.after, tt.limit)
		must(t, "AuditEntries", err)
		seqs := []int64{}
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if !reflect.DeepEqual(seqs, tt.wantSeqs) {
			t.Errorf("AuditEntries(%d, %d) = %v, want %v", tt.after, tt.limit, seqs, tt.wantSeqs)
		}
	}
}

func testAPITokens(t *testing.T, s broker.Store) {
	ctx := context.Background()
	secret, tok, err := broker.NewAPIToken("alice", broker.RoleReviewer, at(0))
	must(t, "NewAPIToken", err)
	if strings.Contains(tok.Hash, secret) || !strings.HasPrefix(secret, "seb_") {
		t.Fatalf("token %q, hash %q", secret, tok.Hash)
	}
	tok.Groups = []string{"security"}
	must(t, "CreateAPIToken", s.CreateAPIToken(ctx, tok))
	got, err := s.APITokenByHash(ctx, broker.HashAPIToken(secret))
	must(t, "APITokenByHash", err)
	if got.ID != tok.ID || got.Name != "alice" || got.Role != broker.RoleReviewer || !slices.Equal(got.Groups, []string{"security"}) {
		t.Errorf("token = %+v, want %+v", got, tok)
	}
	checkTime(t, "CreatedAt", got.CreatedAt, tok.CreatedAt)
	if byName, err := s.APITokenByName(ctx, "alice"); err != nil || byName.ID != tok.ID || !slices.Equal(byName.Groups, []string{"security"}) {
		t.Errorf("APITokenByName = %+v, %v", byName, err)
	}
	_, err = s.APITokenByName(ctx, "nobody")
	wantCode(t, "APITokenByName of an unknown name", err, broker.ENOTFOUND, "nobody")
	_, again, _ := broker.NewAPIToken("alice", broker.RoleAdmin, at(1))
	wantCode(t, "a second token named alice", s.CreateAPIToken(ctx, again), broker.ECONFLICT, "alice")
	_, err = s.APITokenByHash(ctx, broker.HashAPIToken("seb_wrong"))
	wantCode(t, "an unknown token", err, broker.ENOTFOUND, "")
	if _, _, err := broker.NewAPIToken("bob", broker.Role("root"), at(0)); broker.ErrorCode(err) != broker.EINVALID {
		t.Errorf("role root: %v", err)
	}
}

func testCompleteVerification(t *testing.T, s broker.Store) {
	ctx := context.Background()
	p := proposal(t, "prop-v", 0)
	want := *p
	p.State, p.Summary, p.Digest, p.PlanDigest, p.Divergence, p.Drift, p.Disclosure = broker.ProposalVerifying, nil, "", "", nil, nil, nil
	must(t, "CreateProposal", s.CreateProposal(ctx, p))
	got, err := s.Proposal(ctx, "prop-v")
	must(t, "Proposal", err)
	if got.State != broker.ProposalVerifying || got.Summary != nil || got.Digest != "" || got.Disclosure != nil {
		t.Fatalf("verifying proposal = %+v", got)
	}
	want.UpdatedAt = at(5)
	want.Policy = &policy.Decision{Deny: []string{}, Warn: []string{"drift"}, Approvals: &policy.Approvals{Count: 2, Groups: []string{"security"}},
		PolicyDigest: "sha256:" + strings.Repeat("ab", 32)}
	must(t, "CompleteVerification", s.CompleteVerification(ctx, &want))
	got, err = s.Proposal(ctx, "prop-v")
	must(t, "Proposal", err)
	checkProposal(t, got, &want)
	if !reflect.DeepEqual(got.Policy, want.Policy) {
		t.Errorf("policy decision = %+v, want %+v", got.Policy, want.Policy)
	}
	wantCode(t, "a second completion", s.CompleteVerification(ctx, &want), broker.ECONFLICT, "not verifying")
	refused := proposal(t, "prop-r", 1)
	refused.State, refused.Summary = broker.ProposalVerifying, nil
	must(t, "CreateProposal", s.CreateProposal(ctx, refused))
	refused.State, refused.Reason = broker.ProposalRefused, "the proposal changes nothing"
	must(t, "CompleteVerification", s.CompleteVerification(ctx, refused))
	if got, _ := s.Proposal(ctx, "prop-r"); got.State != broker.ProposalRefused || got.Reason != refused.Reason {
		t.Errorf("refused proposal = %+v", got)
	}
	wantCode(t, "a missing proposal", s.CompleteVerification(ctx, proposal(t, "prop-missing", 2)), broker.ENOTFOUND, "")
}

// testProposerBundleBytes: the bytes of the distinct bundles of one
// proposer's proposals since a time.
func testProposerBundleBytes(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "PutBundle", s.PutBundle(ctx, "sha256:small", make([]byte, 10)))
	must(t, "PutBundle", s.PutBundle(ctx, "sha256:large", make([]byte, 20)))
	must(t, "PutBundle", s.PutBundle(ctx, "sha256:planned", make([]byte, 40)))
	// agent-7 also planned a bundle it never proposed, at minute 8.
	planned := job("plan-1", broker.JobPlan, "w", 8, 1)
	planned.ConfigDigest, planned.Owner = "sha256:planned", "agent-7"
	must(t, "EnqueueJob", s.EnqueueJob(ctx, planned))
	for _, p := range []struct {
		id, bundle, proposer string
		minute               int
	}{
		{"p1", "sha256:small", "agent-7", 0},
		{"p2", "sha256:small", "agent-7", 5}, // the same bundle again
		{"p3", "sha256:large", "agent-7", 10},
		{"p4", "sha256:large", "agent-8", 10},
	} {
		prop := proposal(t, p.id, p.minute)
		prop.ConfigDigest, prop.Proposer = p.bundle, p.proposer
		must(t, "CreateProposal", s.CreateProposal(ctx, prop))
	}
	for _, tt := range []struct {
		proposer string
		since    int
		want     int64
	}{
		{"agent-7", 0, 70}, {"agent-7", 5, 70}, {"agent-7", 6, 60}, {"agent-7", 9, 20}, {"agent-7", 11, 0}, {"agent-8", 0, 20}, {"nobody", 0, 0},
	} {
		got, err := s.ProposerBundleBytes(ctx, tt.proposer, at(tt.since))
		must(t, "ProposerBundleBytes", err)
		if got != tt.want {
			t.Errorf("ProposerBundleBytes(%s, minute %d) = %d, want %d", tt.proposer, tt.since, got, tt.want)
		}
	}
}

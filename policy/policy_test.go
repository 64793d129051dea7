package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

// TestExamplePolicies runs the example policies' own Rego tests, as seb
// policy test does.
func TestExamplePolicies(t *testing.T) {
	results, err := policy.Test(context.Background(), "../fixtures/policy")
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 7 {
		t.Fatalf("%d Rego tests ran, want the 7 of fixtures/policy", len(results))
	}
	for _, r := range results {
		if !r.Pass() {
			t.Errorf("%s: %v", r.Name, r.Error)
		}
	}
}

func service(before, after string) planparse.ResourceChange {
	return planparse.ResourceChange{Address: "sandbox_service.web", Mode: "managed", Type: "sandbox_service", Name: "web", Action: planparse.ActionUpdate,
		Changes: []planparse.AttributeChange{{Path: planparse.Path{"replicas"}, Before: json.Number(before), After: json.Number(after)}}}
}

// TestDecisions evaluates the example policies on summaries.
func TestDecisions(t *testing.T) {
	set, err := policy.Load("../fixtures/policy")
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Files) != 3 || !strings.HasPrefix(set.Digest, "sha256:") {
		t.Errorf("loaded %v (%s): the tests are left out", set.Files, set.Digest)
	}
	ctx := context.Background()
	decide := func(rs ...planparse.ResourceChange) *policy.Decision {
		t.Helper()
		d, err := set.Eval(ctx, &policy.Input{Workspace: "sandbox", Summary: &planparse.Summary{Resources: rs}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := decide(service("3", "5")); !d.AutoCertify || len(d.Deny) != 0 || d.Approvals != nil || d.PolicyDigest != set.Digest {
		t.Errorf("scaling 3 -> 5: %+v", d)
	}
	if d := decide(service("3", "11")); d.AutoCertify {
		t.Errorf("scaling 3 -> 11: %+v", d)
	}
	// Scaling while removing something else is not only scaling.
	removing := service("3", "5")
	removing.Changes = append(removing.Changes, planparse.AttributeChange{Path: planparse.Path{"env", "AUTH_REQUIRED"}, Before: "true", After: planparse.Absent{}})
	if d := decide(removing); d.AutoCertify {
		t.Errorf("scaling and removing env[\"AUTH_REQUIRED\"] was certified without a human: %+v", d)
	}
	bucket := planparse.ResourceChange{Address: "sandbox_bucket.logs", Type: "sandbox_bucket", Action: planparse.ActionDelete,
		Changes: []planparse.AttributeChange{{Path: planparse.Path{"name"}, Before: "logs", After: planparse.Absent{}}}}
	if d := decide(bucket); d.Approvals == nil || d.Approvals.Count != 2 || len(d.Approvals.Groups) != 1 || d.Approvals.Groups[0] != "security" || len(d.Warn) != 1 {
		t.Errorf("deleting a bucket: %+v", d)
	}
	open := planparse.ResourceChange{Address: "sandbox_firewall_rule.any", Type: "sandbox_firewall_rule", Action: planparse.ActionCreate,
		Changes: []planparse.AttributeChange{
			{Path: planparse.Path{"cidr"}, Before: planparse.Absent{}, After: "0.0.0.0/0"},
			{Path: planparse.Path{"direction"}, Before: planparse.Absent{}, After: "ingress"},
			{Path: planparse.Path{"from_port"}, Before: planparse.Absent{}, After: json.Number("22")},
			{Path: planparse.Path{"to_port"}, Before: planparse.Absent{}, After: json.Number("22")},
			{Path: planparse.Path{"secret"}, Before: planparse.Absent{}, After: planparse.Sensitive{Digest: "hmac-sha256:00"}},
			{Path: planparse.Path{"id"}, Before: planparse.Absent{}, After: planparse.Unknown{}},
		}}
	if d := decide(open); len(d.Deny) != 1 || !strings.Contains(d.Deny[0], "sandbox_firewall_rule.any opens ingress to 0.0.0.0/0 (ports 22-22)") {
		t.Errorf("an open ingress rule: %+v", d)
	}
}

func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBadPoliciesRefusedAtLoad: what can be known wrong before any
// proposal refuses the load, naming the file and line.
func TestBadPoliciesRefusedAtLoad(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"syntax", "package seb\n\ndeny contains msg if {\n  msg := \n}\n", "p.rego:5"},
		{"deny not a set", "package seb\n\ndeny := \"no\"\n", "deny must be a set of messages"},
		{"warn a function", "package seb\n\nwarn(x) := x\n", "warn must be a set of messages"},
		{"approvals a set", "package seb\n\napprovals contains 2 if true\n", "approvals must be a single value"},
		{"auto_certify a function", "package seb\n\nauto_certify(x) if x\n", "auto_certify must be a single value"},
		{"other package", "package other\n\ndeny contains \"x\" if true\n", "no file is in package seb"},
		{"unsafe variable", "package seb\n\ndeny contains msg if { x > 1 }\n", "p.rego:3"},
		{"rego v0", "package seb\n\ndeny[msg] { msg := \"x\" }\n", "p.rego:3"},
		{"unknown function", "package seb\n\ndeny contains msg if { msg := nope(1) }\n", "undefined function nope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Load(write(t, map[string]string{"p.rego": tt.src}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	if _, err := policy.Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no .rego file") {
		t.Errorf("an empty directory: %v", err)
	}
}

// TestBadPoliciesRefuseTheProposal: what only evaluation finds is an
// EvalError, never a decision.
func TestBadPoliciesRefuseTheProposal(t *testing.T) {
	in := &policy.Input{Summary: &planparse.Summary{Resources: []planparse.ResourceChange{service("3", "5")}}}
	for _, tt := range []struct{ name, src, want string }{
		{"approvals a string", "package seb\n\napprovals := \"two\"\n", "approvals count is the string \"two\", not a number"},
		{"approvals too many", "package seb\n\napprovals := 11\n", "from 0 to 10"},
		{"approvals a fraction", "package seb\n\napprovals := 1.5\n", "whole number"},
		{"approvals unknown member", "package seb\n\napprovals := {\"count\": 1, \"group\": \"x\"}\n", "takes count and groups"},
		{"auto_certify a string", "package seb\n\nauto_certify := \"yes\"\n", "auto_certify is the string \"yes\", not a boolean"},
		{"deny of numbers", "package seb\n\ndeny contains 1 if true\n", "deny holds the number 1"},
		{"conflict", "package seb\n\napprovals := 1 if true\n\napprovals := 2 if true\n", "conflict"},
		{"builtin error", "package seb\n\ndeny contains msg if { x := to_number(\"many\"); msg := sprintf(\"%v\", [x]) }\n", "to_number"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set, err := policy.Load(write(t, map[string]string{"p.rego": tt.src}))
			if err != nil {
				t.Fatal(err)
			}
			d, err := set.Eval(context.Background(), in)
			var ee *policy.EvalError
			if !errors.As(err, &ee) || !strings.Contains(err.Error(), tt.want) || d != nil {
				t.Errorf("Eval = %+v, %v; want an EvalError saying %q", d, err, tt.want)
			}
		})
	}
	// A policy that does not end in time.
	set, err := policy.Load(write(t, map[string]string{"p.rego": "package seb\n\ndeny contains msg if {\n  some i in numbers.range(1, 1000000000)\n  i < 0\n  msg := \"never\"\n}\n"}))
	if err != nil {
		t.Fatal(err)
	}
	set.Timeout = 200 * time.Millisecond
	start := time.Now()
	if _, err := set.Eval(context.Background(), in); err == nil || !strings.Contains(err.Error(), "longer than 200ms") {
		t.Errorf("a slow policy: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the slow policy ran %s", time.Since(start))
	}
}

// TestDigest: the digest changes with any file's content or name, and not
// with the order files are read in.
func TestDigest(t *testing.T) {
	a, err := policy.Compile(map[string]string{"a.rego": "package seb\n\nwarn contains \"a\" if true\n", "b.rego": "package seb\n"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.Compile(map[string]string{"b.rego": "package seb\n", "a.rego": "package seb\n\nwarn contains \"a\" if true\n"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := policy.Compile(map[string]string{"a.rego": "package seb\n\nwarn contains \"b\" if true\n", "b.rego": "package seb\n"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest || a.Digest == c.Digest {
		t.Errorf("digests %s %s %s", a.Digest, b.Digest, c.Digest)
	}
}

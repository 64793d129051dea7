package policy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

// TestInputSchema: the input of every real plan, and of one with every
// kind of value, is what input.schema.json documents.
func TestInputSchema(t *testing.T) {
	var schema jsonschema.Schema
	data, err := os.ReadFile("input.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	resolved, err := schema.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, in *policy.Input) {
		t.Helper()
		v, err := in.Value()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		doc, err := ast.JSON(v)
		if err != nil {
			t.Fatal(err)
		}
		// Numbers as JSON numbers, as a policy author sees them.
		raw, _ := json.Marshal(doc)
		var generic any
		json.Unmarshal(raw, &generic)
		if err := resolved.Validate(generic); err != nil {
			t.Errorf("%s: the input breaks input.schema.json: %v\n%.600s", name, err, raw)
		}
	}
	every := planparse.ResourceChange{Address: "module.m.x.y[0]", ModuleAddress: "module.m", Mode: "managed", Type: "x", Name: "y", Index: json.Number("0"),
		Provider: "p", Action: planparse.ActionReplace, ReplaceOrder: planparse.CreateBeforeDestroy, ActionReason: "replace_because_cannot_update",
		ReplacePaths: []planparse.Path{{"name"}}, Changes: []planparse.AttributeChange{
			{Path: planparse.Path{"name"}, Before: "a", After: "b"},
			{Path: planparse.Path{"tags", "team"}, Before: planparse.Absent{}, After: "platform"},
			{Path: planparse.Path{"secret"}, Before: planparse.Sensitive{Digest: "hmac-sha256:00"}, After: planparse.Sensitive{Digest: "hmac-sha256:11"}},
			{Path: planparse.Path{"id"}, Before: "i-1", After: planparse.Unknown{}},
			{Path: planparse.Path{"rules"}, Before: nil, After: []any{planparse.Object{{Name: "port", Value: json.Number("443")}, {Name: "open", Value: true}}}},
		}}
	check("every kind of value", &policy.Input{Workspace: "w", Summary: &planparse.Summary{Resources: []planparse.ResourceChange{every},
		Outputs: []planparse.OutputChange{{Name: "o", Action: planparse.ActionUpdate, Before: "1", After: planparse.Unknown{}}}},
		Drift: []planparse.ResourceChange{every}, Variables: []string{"replicas"},
		Proposer: policy.Principal{Name: "agent-1", Role: "agent"}, Reviews: []policy.Review{{Reviewer: "alice", Decision: "approve", Groups: []string{"security"}}}})
	for _, path := range realPlans() {
		plan := parsePlan(t, path)
		check(filepath.Base(path), &policy.Input{Workspace: "prod", Summary: plan.Summary, DiffDigest: plan.Digest, Drift: plan.Drift})
	}
}

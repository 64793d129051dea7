package policy

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/seb-broker/seb/planparse"
)

// An Input is what a policy decides on (input.schema.json documents its
// form in Rego).
type Input struct {
	Workspace string
	// Summary is seb's plan of the proposal: exact, normalized, sensitive
	// values only as keyed digests.
	Summary      *planparse.Summary
	DiffDigest   string
	ConfigDigest string
	Proposer     Principal
	// AgentPlan says whether the agent sent its own plan; a proposal is
	// decided on only when that plan matches seb's.
	AgentPlan bool
	// Drift is what seb's plan saw changed outside Terraform.
	Drift []planparse.ResourceChange
	// Variables are the names of the variables the agent set (never their
	// values, which may be secrets).
	Variables []string
	// Reviews are the reviews so far (none at verification).
	Reviews []Review
}

// A Principal is who acted: a token's name, role and groups.
type Principal struct {
	Name   string
	Role   string
	Groups []string
}

// A Review is a reviewer's verdict, with the reviewer's groups.
type Review struct {
	Reviewer string
	Decision string
	Groups   []string
}

// Value converts the input to OPA's value form, once for the whole
// evaluation: straight from seb's types, without a JSON round trip.
func (in *Input) Value() (ast.Value, error) {
	summary := in.Summary
	if summary == nil {
		summary = &planparse.Summary{}
	}
	resources, err := resourcesValue(summary.Resources)
	if err != nil {
		return nil, err
	}
	outputs := make([]*ast.Term, 0, len(summary.Outputs))
	for _, o := range summary.Outputs {
		before, err := value(o.Before)
		if err != nil {
			return nil, err
		}
		after, err := value(o.After)
		if err != nil {
			return nil, err
		}
		outputs = append(outputs, ast.ObjectTerm(
			field("name", ast.String(o.Name)), field("action", ast.String(o.Action)),
			ast.Item(ast.InternedTerm("before"), ast.NewTerm(before)), ast.Item(ast.InternedTerm("after"), ast.NewTerm(after))))
	}
	drift, err := resourcesValue(in.Drift)
	if err != nil {
		return nil, err
	}
	reviews := make([]*ast.Term, 0, len(in.Reviews))
	for _, r := range in.Reviews {
		reviews = append(reviews, ast.ObjectTerm(field("reviewer", ast.String(r.Reviewer)), field("decision", ast.String(r.Decision)),
			field("groups", stringList(r.Groups))))
	}
	return ast.NewObject(
		field("workspace", ast.String(in.Workspace)),
		field("diff_digest", ast.String(in.DiffDigest)),
		field("config_digest", ast.String(in.ConfigDigest)),
		field("proposer", ast.NewObject(field("name", ast.String(in.Proposer.Name)), field("role", ast.String(in.Proposer.Role)),
			field("groups", stringList(in.Proposer.Groups)))),
		field("verification", ast.NewObject(field("agent_plan", ast.Boolean(in.AgentPlan)), field("matches", ast.Boolean(true)))),
		field("summary", ast.NewObject(
			field("resources", ast.NewArray(resources...)),
			field("outputs", ast.NewArray(outputs...)))),
		field("drift", ast.NewArray(drift...)),
		field("variables", stringList(in.Variables)),
		field("reviews", ast.NewArray(reviews...)),
	), nil
}

func field(name string, v ast.Value) [2]*ast.Term {
	return ast.Item(ast.InternedTerm(name), ast.NewTerm(v))
}

func stringList(list []string) ast.Value {
	sorted := slices.Sorted(slices.Values(list))
	terms := make([]*ast.Term, len(sorted))
	for i, s := range sorted {
		terms[i] = ast.StringTerm(s)
	}
	return ast.NewArray(terms...)
}

// resourcesValue converts resource changes. Each one's changed attributes
// are an object keyed by the attribute's path as Terraform writes it
// (replicas, tags["team"], rule[0].port): {before, after, path}.
func resourcesValue(rs []planparse.ResourceChange) ([]*ast.Term, error) {
	out := make([]*ast.Term, 0, len(rs))
	for i := range rs {
		r := &rs[i]
		changes := make([][2]*ast.Term, 0, len(r.Changes))
		for _, c := range r.Changes {
			before, err := value(c.Before)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", r.Address, c.Path, err)
			}
			after, err := value(c.After)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", r.Address, c.Path, err)
			}
			path, err := value([]any(c.Path))
			if err != nil {
				return nil, err
			}
			changes = append(changes, ast.Item(ast.StringTerm(c.Path.String()), ast.ObjectTerm(
				ast.Item(ast.InternedTerm("before"), ast.NewTerm(before)),
				ast.Item(ast.InternedTerm("after"), ast.NewTerm(after)),
				ast.Item(ast.InternedTerm("path"), ast.NewTerm(path)))))
		}
		items := [][2]*ast.Term{
			field("address", ast.String(r.Address)),
			field("mode", ast.String(r.Mode)),
			field("type", ast.String(r.Type)),
			field("name", ast.String(r.Name)),
			field("provider", ast.String(r.Provider)),
			field("action", ast.String(r.Action)),
			field("changes", ast.NewObject(changes...)),
		}
		for _, opt := range []struct{ name, v string }{{"module_address", r.ModuleAddress}, {"previous_address", r.PreviousAddress},
			{"deposed", r.Deposed}, {"replace_order", string(r.ReplaceOrder)}, {"action_reason", r.ActionReason}} {
			if opt.v != "" {
				items = append(items, field(opt.name, ast.String(opt.v)))
			}
		}
		if r.Index != nil {
			idx, err := value(r.Index)
			if err != nil {
				return nil, err
			}
			items = append(items, field("index", idx))
		}
		if len(r.ReplacePaths) > 0 {
			paths := make([]*ast.Term, len(r.ReplacePaths))
			for i, p := range r.ReplacePaths {
				paths[i] = ast.StringTerm(p.String())
			}
			items = append(items, field("replace_paths", ast.NewArray(paths...)))
		}
		if r.Importing != nil {
			items = append(items, field("importing", ast.NewObject(field("id", ast.String(r.Importing.ID)))))
		}
		out = append(out, ast.NewTerm(ast.NewObject(items...)))
	}
	return out, nil
}

// value converts a summary value. Markers become objects: a value known
// only after apply is {"unknown": true}, a sensitive one {"sensitive":
// "hmac-sha256:…"} (its digest, never the value), a member one side lacks
// {"absent": true}.
func value(v any) (ast.Value, error) {
	switch v := v.(type) {
	case nil:
		return ast.NullValue, nil
	case bool:
		return ast.Boolean(v), nil
	case string:
		return ast.String(v), nil
	case int:
		return ast.Number(fmt.Sprint(v)), nil
	case json.Number:
		return ast.Number(v), nil
	case []any:
		terms := make([]*ast.Term, len(v))
		for i, e := range v {
			ev, err := value(e)
			if err != nil {
				return nil, err
			}
			terms[i] = ast.NewTerm(ev)
		}
		return ast.NewArray(terms...), nil
	case planparse.Object:
		items := make([][2]*ast.Term, len(v))
		for i, m := range v {
			mv, err := value(m.Value)
			if err != nil {
				return nil, err
			}
			items[i] = ast.Item(ast.StringTerm(m.Name), ast.NewTerm(mv))
		}
		return ast.NewObject(items...), nil
	case planparse.Unknown:
		return ast.NewObject(field("unknown", ast.Boolean(true))), nil
	case planparse.Absent:
		return ast.NewObject(field("absent", ast.Boolean(true))), nil
	case planparse.Sensitive:
		return ast.NewObject(field("sensitive", ast.String(v.Digest))), nil
	}
	return nil, fmt.Errorf("a value of type %T", v)
}

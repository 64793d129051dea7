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
			ast.Item(ast.InternedTerm("before"), before), ast.Item(ast.InternedTerm("after"), after)))
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
		field("verification", ast.NewObject(field("agent_plan", ast.Boolean(in.AgentPlan)))),
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

// resourcesValue converts resource changes. The changed attributes are in
// before and after, keyed by the path as Terraform writes it (replicas,
// tags["team"], rule[0].port). after has a key for every changed
// attribute: one the change removes is {"absent": true}, so that a rule
// asking what changed sees removals too. before leaves out what did not
// exist (the attributes of a create).
// The strings many resources repeat (types, providers, actions) share one
// term each.
func resourcesValue(rs []planparse.ResourceChange) ([]*ast.Term, error) {
	cv := newConverter()
	str := cv.str
	out := make([]*ast.Term, 0, len(rs))
	for i := range rs {
		r := &rs[i]
		var sides [2]*ast.Term // before, after
		for i := range sides {
			mark := cv.mark()
			for _, c := range r.Changes {
				v := c.Before
				if i == 1 {
					v = c.After
				}
				if _, absent := v.(planparse.Absent); absent && i == 0 {
					continue
				}
				t, err := cv.value(v)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", r.Address, c.Path, err)
				}
				cv.push(str(c.Path.String()), t)
			}
			sides[i] = cv.build(mark)
		}
		items := [][2]*ast.Term{
			{ast.InternedTerm("address"), ast.StringTerm(r.Address)},
			{ast.InternedTerm("mode"), str(r.Mode)},
			{ast.InternedTerm("type"), str(r.Type)},
			{ast.InternedTerm("name"), str(r.Name)},
			{ast.InternedTerm("provider"), str(r.Provider)},
			{ast.InternedTerm("action"), str(string(r.Action))},
			{ast.InternedTerm("before"), sides[0]},
			{ast.InternedTerm("after"), sides[1]},
		}
		for _, opt := range []struct{ name, v string }{{"module_address", r.ModuleAddress}, {"previous_address", r.PreviousAddress},
			{"deposed", r.Deposed}, {"replace_order", string(r.ReplaceOrder)}, {"action_reason", r.ActionReason}} {
			if opt.v != "" {
				items = append(items, [2]*ast.Term{ast.InternedTerm(opt.name), str(opt.v)})
			}
		}
		if r.Index != nil {
			idx, err := cv.value(r.Index)
			if err != nil {
				return nil, err
			}
			items = append(items, [2]*ast.Term{ast.InternedTerm("index"), idx})
		}
		if len(r.ReplacePaths) > 0 {
			paths := make([]*ast.Term, len(r.ReplacePaths))
			for i, p := range r.ReplacePaths {
				paths[i] = ast.StringTerm(p.String())
			}
			items = append(items, [2]*ast.Term{ast.InternedTerm("replace_paths"), ast.ArrayTerm(paths...)})
		}
		if r.Importing != nil {
			items = append(items, [2]*ast.Term{ast.InternedTerm("importing"), ast.ObjectTerm(field("id", ast.String(r.Importing.ID)))})
		}
		out = append(out, ast.ObjectTerm(items...))
	}
	return out, nil
}

// unknownTerm and absentTerm are the one term every value known only
// after apply, and every removed member, share.
var (
	unknownTerm = ast.ObjectTerm(ast.Item(ast.InternedTerm("unknown"), ast.InternedTerm(true)))
	absentTerm  = ast.ObjectTerm(ast.Item(ast.InternedTerm("absent"), ast.InternedTerm(true)))
)

// A converter converts summary values to OPA's value form, sharing one
// term for each string it meets again (attribute names, types, repeated
// values): the input of 10,000 resources repeats most of its strings.
//
// The members of the objects being built wait on one stack, so that
// building an object leaves no slice of its own behind: OPA copies them.
type converter struct {
	strings map[string]*ast.Term
	stack   *[][2]*ast.Term
}

func newConverter() converter {
	return converter{strings: map[string]*ast.Term{}, stack: new([][2]*ast.Term)}
}

// push puts an object's member on the stack; build makes the object of
// the members pushed since mark.
func (cv converter) push(k, v *ast.Term) { *cv.stack = append(*cv.stack, [2]*ast.Term{k, v}) }

func (cv converter) mark() int { return len(*cv.stack) }

func (cv converter) build(mark int) *ast.Term {
	t := cv.object((*cv.stack)[mark:])
	clear((*cv.stack)[mark:])
	*cv.stack = (*cv.stack)[:mark]
	return t
}

func (cv converter) str(s string) *ast.Term {
	if t, ok := cv.strings[s]; ok {
		return t
	}
	t := ast.StringTerm(s)
	cv.strings[s] = t
	return t
}

// emptyObject is the one term every empty object shares: the before of
// a create, the after of a delete.
var emptyObject = ast.ObjectTerm()

func (cv converter) object(items [][2]*ast.Term) *ast.Term {
	if len(items) == 0 {
		return emptyObject
	}
	return ast.ObjectTerm(items...)
}

// value converts a summary value to OPA's value form at once.
func value(v any) (*ast.Term, error) {
	return newConverter().value(v)
}

// value converts a summary value to OPA's value form. A value known only
// after apply is {"unknown": true}, a sensitive one {"sensitive":
// "hmac-sha256:…"} (its digest, never the value), a member or attribute
// one side lacks {"absent": true}.
func (cv converter) value(v any) (*ast.Term, error) {
	switch v := v.(type) {
	case nil:
		return ast.InternedNullTerm, nil
	case bool:
		return ast.InternedTerm(v), nil
	case string:
		return cv.str(v), nil
	case int:
		return ast.InternedTerm(v), nil
	case json.Number:
		return ast.NumberTerm(v), nil
	case []any:
		terms := make([]*ast.Term, len(v))
		for i, e := range v {
			t, err := cv.value(e)
			if err != nil {
				return nil, err
			}
			terms[i] = t
		}
		return ast.ArrayTerm(terms...), nil
	case planparse.Object:
		mark := cv.mark()
		for _, m := range v {
			t, err := cv.value(m.Value)
			if err != nil {
				return nil, err
			}
			cv.push(cv.str(m.Name), t)
		}
		return cv.build(mark), nil
	case planparse.Unknown:
		return unknownTerm, nil
	case planparse.Absent:
		return absentTerm, nil
	case planparse.Sensitive:
		return ast.ObjectTerm(ast.Item(ast.InternedTerm("sensitive"), ast.StringTerm(v.Digest))), nil
	}
	return nil, fmt.Errorf("a value of type %T", v)
}

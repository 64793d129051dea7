// Package policy evaluates a workspace's policy, written in Rego, on a
// proposal: which changes are refused outright (deny), what reviewers are
// warned of (warn), how many reviewers must approve and from which groups
// (approvals), and what may be certified without a human (auto_certify).
//
// A policy is a file or a directory of .rego files (files ending in
// _test.rego are tests, for seb policy test) whose rules live in package
// seb:
//
//	deny contains msg if { ... }          # strings; any refuses the proposal
//	warn contains msg if { ... }          # strings shown to reviewers
//	approvals := 2                        # or {"count": 2, "groups": ["security"]}
//	auto_certify if { ... }               # true: no human needed
//
// Every rule is optional. The input is documented in input.schema.json
// beside this file. A Set is parsed, checked and compiled once when it is
// loaded; each evaluation converts its input to OPA's value form once, and
// every rule reads that one value.
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
)

// Package is the Rego package a policy's decision rules live in.
const Package = "seb"

// DefaultTimeout bounds one evaluation.
const DefaultTimeout = 5 * time.Second

// MaxApprovals bounds what a policy may require, as a workspace's
// approvals_required is bounded.
const MaxApprovals = 10

// A Set is a workspace's policy, compiled and ready to evaluate.
type Set struct {
	// Digest is sha256:<hex> of the policy's files, names and contents:
	// part of the configuration's digest, so that changing the policy
	// moves the policy epoch.
	Digest string
	// Files are the policy's files, as loaded.
	Files []string
	// Timeout bounds one evaluation; 0 means DefaultTimeout.
	Timeout time.Duration
	query   rego.PreparedEvalQuery
}

// DigestOrEmpty is the set's digest, "" for no set.
func (s *Set) DigestOrEmpty() string {
	if s == nil {
		return ""
	}
	return s.Digest
}

// Load reads the policy at path: one .rego file, or every .rego file of a
// directory (not its subdirectories), leaving out tests (_test.rego). It
// parses them as Rego v1, checks the decision rules' kinds, and compiles
// them; any problem is an error naming the file and line.
func Load(path string) (*Set, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var files []string
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".rego") && !strings.HasSuffix(e.Name(), "_test.rego") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("policy: %s holds no .rego file", path)
		}
	} else {
		files = []string{path}
	}
	sources := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		sources[f] = string(data)
	}
	return Compile(sources)
}

// Compile compiles a policy from its sources, by file name.
func Compile(sources map[string]string) (*Set, error) {
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range sources {
			if !yield(n) {
				return
			}
		}
	})
	h := sha256.New()
	opts := []func(*rego.Rego){rego.Query("data." + Package), rego.StrictBuiltinErrors(true)}
	decides := false
	for _, name := range names {
		src := sources[name]
		fmt.Fprintf(h, "%d:%s\n%d:%s\n", len(name), filepath.Base(name), len(src), src)
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("policy: %v", err)
		}
		if m.Package.Path.String() == "data."+Package {
			decides = true
			if err := checkRules(m); err != nil {
				return nil, err
			}
		}
		opts = append(opts, rego.ParsedModule(m))
	}
	if !decides {
		return nil, fmt.Errorf("policy: no file is in package %s, where the decision rules (deny, warn, approvals, auto_certify) live", Package)
	}
	q, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		return nil, fmt.Errorf("policy: %v", err)
	}
	return &Set{Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Files: names, query: q}, nil
}

// checkRules refuses a decision rule of the wrong kind: deny and warn are
// sets (deny contains msg if …), approvals and auto_certify single values.
func checkRules(m *ast.Module) error {
	for _, r := range m.Rules {
		name := r.Head.Name.String()
		if len(r.Head.Reference) > 0 {
			name = r.Head.Reference[0].Value.(ast.Var).String()
			if len(r.Head.Reference) > 1 && slices.Contains([]string{"deny", "warn", "approvals", "auto_certify"}, name) {
				return fmt.Errorf("policy: %s: %s must be a rule of its own, not %s", r.Location, name, r.Head.Reference)
			}
		}
		kind := r.Head.RuleKind()
		switch name {
		case "deny", "warn":
			if kind != ast.MultiValue {
				return fmt.Errorf("policy: %s: %s must be a set of messages: write %s contains msg if { ... }", r.Location, name, name)
			}
		case "approvals", "auto_certify":
			if kind != ast.SingleValue || len(r.Head.Args) > 0 {
				return fmt.Errorf("policy: %s: %s must be a single value (%s := ..., or %s if { ... })", r.Location, name, name, name)
			}
		}
	}
	return nil
}

// A Decision is what a policy says of a proposal.
type Decision struct {
	// Deny refuses the proposal, each message saying why.
	Deny []string `json:"deny"`
	// Warn is shown to reviewers.
	Warn []string `json:"warn"`
	// Approvals is how many distinct reviewers must approve, and from
	// which groups; nil when the policy leaves it to the workspace.
	Approvals *Approvals `json:"approvals,omitempty"`
	// AutoCertify certifies without a human (never a protected action,
	// unless the workspace allows it).
	AutoCertify bool `json:"auto_certify"`
	// PolicyDigest names the policy that decided.
	PolicyDigest string `json:"policy_digest"`
}

// DigestOrEmpty is the digest of the policy that decided, "" for no
// decision.
func (d *Decision) DigestOrEmpty() string {
	if d == nil {
		return ""
	}
	return d.PolicyDigest
}

// Approvals is how many distinct reviewers must approve; with Groups, only
// reviewers in one of those groups count.
type Approvals struct {
	Count  int      `json:"count"`
	Groups []string `json:"groups,omitempty"`
}

// An EvalError is a policy that could not decide: an error at run time,
// a timeout, or a decision of the wrong type. The proposal is refused.
type EvalError struct{ Err error }

func (e *EvalError) Error() string { return "the policy could not decide: " + e.Err.Error() }
func (e *EvalError) Unwrap() error { return e.Err }

// Eval evaluates the policy on input, converted to OPA's value form once
// for every rule. Its error is an *EvalError.
func (s *Set) Eval(ctx context.Context, in *Input) (*Decision, error) {
	input, err := in.Value()
	if err != nil {
		return nil, &EvalError{err}
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rs, err := s.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &EvalError{fmt.Errorf("it ran longer than %s", timeout)}
		}
		return nil, &EvalError{err}
	}
	d := &Decision{Deny: []string{}, Warn: []string{}, PolicyDigest: s.Digest}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return d, nil
	}
	doc, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return nil, &EvalError{fmt.Errorf("data.%s is not an object", Package)}
	}
	if d.Deny, err = messages(doc, "deny"); err != nil {
		return nil, &EvalError{err}
	}
	if d.Warn, err = messages(doc, "warn"); err != nil {
		return nil, &EvalError{err}
	}
	if v, ok := doc["auto_certify"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, &EvalError{fmt.Errorf("auto_certify is %s, not a boolean", describe(v))}
		}
		d.AutoCertify = b
	}
	if v, ok := doc["approvals"]; ok {
		if d.Approvals, err = approvals(v); err != nil {
			return nil, &EvalError{err}
		}
	}
	return d, nil
}

// messages reads a set of strings.
func messages(doc map[string]any, rule string) ([]string, error) {
	out := []string{}
	v, ok := doc[rule]
	if !ok {
		return out, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s is %s, not a set of messages", rule, describe(v))
	}
	for _, m := range list {
		s, ok := m.(string)
		if !ok {
			return nil, fmt.Errorf("%s holds %s, not a message (a string)", rule, describe(m))
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// approvals reads a count, or {"count": n, "groups": [...]}.
func approvals(v any) (*Approvals, error) {
	count := func(v any) (int, error) {
		n, ok := v.(interface{ Int64() (int64, error) })
		if !ok {
			return 0, fmt.Errorf("approvals count is %s, not a number", describe(v))
		}
		i, err := n.Int64()
		if err != nil || i < 0 || i > MaxApprovals {
			return 0, fmt.Errorf("approvals count is %v; it must be a whole number from 0 to %d", v, MaxApprovals)
		}
		return int(i), nil
	}
	switch v := v.(type) {
	case map[string]any:
		a := &Approvals{}
		var err error
		for k := range v {
			if k != "count" && k != "groups" {
				return nil, fmt.Errorf("approvals has %q; it takes count and groups", k)
			}
		}
		if a.Count, err = count(v["count"]); err != nil {
			return nil, err
		}
		if g, ok := v["groups"]; ok {
			list, ok := g.([]any)
			if !ok {
				return nil, fmt.Errorf("approvals groups is %s, not a list of group names", describe(g))
			}
			for _, e := range list {
				s, ok := e.(string)
				if !ok || s == "" {
					return nil, fmt.Errorf("approvals groups holds %s, not a group name", describe(e))
				}
				a.Groups = append(a.Groups, s)
			}
			slices.Sort(a.Groups)
			a.Groups = slices.Compact(a.Groups)
		}
		return a, nil
	default:
		n, err := count(v)
		if err != nil {
			return nil, err
		}
		return &Approvals{Count: n}, nil
	}
}

// describe names a decoded JSON value's type for a message.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case string:
		return fmt.Sprintf("the string %q", v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("the number %v", v)
	}
}

// Test runs the Rego unit tests (test_ rules) of the policies at paths,
// files or directories, with OPA's test runner.
func Test(ctx context.Context, paths ...string) ([]*tester.Result, error) {
	return tester.Run(ctx, paths...)
}

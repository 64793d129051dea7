package planparse_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/seb-broker/seb/planparse"
)

// sharedPlansDir holds real plan JSON written by other projects.
const sharedPlansDir = "../../shared/plans"

func goldenPlans(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "plans", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden plans: %v", err)
	}
	return paths
}

func sharedPlans(t testing.TB) []string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(sharedPlansDir, "*.json"))
	if len(paths) == 0 {
		t.Skipf("no real-world plans in %s", sharedPlansDir)
	}
	return paths
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func digestOf(t testing.TB, data []byte) string {
	t.Helper()
	plan, err := planparse.Parse(bytes.NewReader(data), testOptions)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return plan.Digest
}

func TestParseBadInput(t *testing.T) {
	valid := readFile(t, filepath.Join("testdata", "plans", "update.json"))
	tests := []struct {
		name    string
		input   []byte
		reader  io.Reader
		opts    *planparse.Options
		wantErr error
		wantMsg string
	}{
		{name: "empty", input: nil, wantErr: planparse.ErrNotJSON, wantMsg: "the input is empty"},
		{name: "whitespace only", input: []byte(" \n\t "), wantErr: planparse.ErrNotJSON, wantMsg: "the input is empty"},
		{name: "not JSON", input: []byte("Terraform will perform the following actions:"), wantErr: planparse.ErrNotJSON, wantMsg: "invalid character 'T'"},
		{name: "invalid inside", input: []byte(`{"format_version": "1.2", "resource_changes": [}`), wantErr: planparse.ErrNotJSON, wantMsg: "at byte"},
		{name: "truncated", input: valid[:len(valid)/2], wantErr: planparse.ErrTruncated, wantMsg: "inside the JSON document"},
		{name: "truncated after open brace", input: []byte(`{`), wantErr: planparse.ErrTruncated},
		{name: "saved binary plan", input: []byte("PK\x03\x04\x14\x00\x08\x00tfplan"), wantErr: planparse.ErrBinaryPlan, wantMsg: "terraform show -json"},
		{name: "top-level list", input: []byte(`[{"format_version":"1.2"}]`), wantErr: planparse.ErrNotPlan, wantMsg: "is a list, not an object"},
		{name: "top-level string", input: []byte(`"plan"`), wantErr: planparse.ErrNotPlan, wantMsg: "is a string"},
		{name: "state JSON", input: []byte(`{"format_version":"1.0","terraform_version":"1.5.7","values":{"root_module":{}}}`), wantErr: planparse.ErrNotPlan, wantMsg: "Terraform state JSON"},
		{name: "provider schemas", input: []byte(`{"format_version":"1.0","provider_schemas":{}}`), wantErr: planparse.ErrNotPlan, wantMsg: "provider schema"},
		{name: "some other object", input: []byte(`{"name":"x"}`), wantErr: planparse.ErrNotPlan, wantMsg: "no format_version"},
		{name: "missing format_version", input: []byte(`{"planned_values":{},"resource_changes":[]}`), wantErr: planparse.ErrNotPlan, wantMsg: "format_version is missing"},
		{name: "empty format_version", input: []byte(`{"format_version":"","planned_values":{}}`), wantErr: planparse.ErrNotPlan, wantMsg: "format_version is empty"},
		{name: "future format_version", input: []byte(`{"format_version":"2.0","planned_values":{}}`), wantErr: planparse.ErrUnsupportedVersion, wantMsg: `"2.0": seb reads plan format >= 0.1, < 2.0`},
		{name: "nonsense format_version", input: []byte(`{"format_version":"banana","planned_values":{}}`), wantErr: planparse.ErrUnsupportedVersion, wantMsg: `"banana"`},
		{name: "format_version not a string", input: []byte(`{"format_version":1.2}`), wantErr: planparse.ErrMalformed, wantMsg: "format_version: a JSON number cannot be read as string"},
		{name: "errored plan", input: []byte(`{"format_version":"1.2","errored":true,"planned_values":{}}`), wantErr: planparse.ErrErrored, wantMsg: "could not finish"},
		{name: "duplicate member", input: []byte(`{"format_version":"1.2","resource_changes":[],"resource_changes":[]}`), wantErr: planparse.ErrMalformed, wantMsg: `"resource_changes" appears twice`},
		{name: "resource_changes not a list", input: []byte(`{"format_version":"1.2","resource_changes":{}}`), wantErr: planparse.ErrMalformed, wantMsg: "resource_changes is \"{\", not a list"},
		{name: "resource change not an object", input: []byte(`{"format_version":"1.2","resource_changes":["x"]}`), wantErr: planparse.ErrMalformed, wantMsg: "resource_changes[0]"},
		{name: "resource change without change", input: []byte(`{"format_version":"1.2","resource_changes":[{"address":"a.b"}]}`), wantErr: planparse.ErrMalformed, wantMsg: "a.b: no change object"},
		{name: "resource change without address", input: []byte(`{"format_version":"1.2","resource_changes":[{"change":{"actions":["create"]}}]}`), wantErr: planparse.ErrMalformed, wantMsg: "without an address"},
		{name: "unknown action", input: []byte(`{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":["explode"]}}]}`), wantErr: planparse.ErrMalformed, wantMsg: "a.b: unsupported actions [explode]"},
		{name: "no actions", input: []byte(`{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":[]}}]}`), wantErr: planparse.ErrMalformed, wantMsg: "unsupported actions []"},
		{name: "duplicate address", input: []byte(`{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":["create"]}},{"address":"a.b","change":{"actions":["delete"]}}]}`), wantErr: planparse.ErrMalformed, wantMsg: "a.b appears twice"},
		{name: "absurd number", input: []byte(`{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":["create"],"after":{"n":1e999999999}}}]}`), wantErr: planparse.ErrMalformed, wantMsg: "out of range"},
		{name: "replace path not a list", input: []byte(`{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":["delete","create"],"replace_paths":["x"]}}]}`), wantErr: planparse.ErrMalformed, wantMsg: "replace path"},
		{name: "output with replace action", input: []byte(`{"format_version":"1.2","output_changes":{"o":{"actions":["delete","create"]}}}`), wantErr: planparse.ErrMalformed, wantMsg: "output o: unsupported action"},
		{name: "data after the plan", input: append(append([]byte{}, valid...), []byte(`{}`)...), wantErr: planparse.ErrNotJSON, wantMsg: "unexpected data after the plan JSON"},
		{name: "garbage after the plan", input: append(append([]byte{}, valid...), []byte(`xyz`)...), wantErr: planparse.ErrNotJSON},
		{name: "over the size limit", input: valid, opts: &planparse.Options{SensitiveKey: testKey, MaxBytes: 1000}, wantErr: planparse.ErrTooLarge, wantMsg: "over the 1000-byte limit"},
		{name: "over a MiB limit", input: bytes.Repeat([]byte(" "), 1<<20+1), opts: &planparse.Options{SensitiveKey: testKey, MaxBytes: 1 << 20}, wantErr: planparse.ErrTooLarge, wantMsg: "over the 1 MiB limit"},
		{name: "failing reader", reader: iotest.TimeoutReader(bytes.NewReader(valid)), wantMsg: "read plan: timeout"},
		{name: "no key", input: valid, opts: &planparse.Options{}, wantMsg: "SensitiveKey is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions
			if tt.opts != nil {
				opts = *tt.opts
			}
			r := tt.reader
			if r == nil {
				r = bytes.NewReader(tt.input)
			}
			plan, err := planparse.Parse(r, opts)
			if err == nil {
				t.Fatalf("Parse succeeded with digest %s", plan.Digest)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q is not %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

// TestParseEdgeCases covers plans Terraform writes rarely: deposed objects,
// moves, imports, and resources with the same address in drift and changes.
func TestParseEdgeCases(t *testing.T) {
	input := `{
	  "format_version": "1.2",
	  "resource_changes": [
	    {"address": "a.x", "mode": "managed", "type": "a", "name": "x", "provider_name": "p",
	     "change": {"actions": ["no-op"], "before": {"id": "1"}, "after": {"id": "1"}}},
	    {"address": "a.moved", "previous_address": "a.old", "mode": "managed", "type": "a", "name": "moved", "provider_name": "p",
	     "change": {"actions": ["no-op"], "before": {"id": "2"}, "after": {"id": "2"}}},
	    {"address": "a.imported", "mode": "managed", "type": "a", "name": "imported", "provider_name": "p",
	     "change": {"actions": ["no-op"], "before": {"id": "3"}, "after": {"id": "3"}, "importing": {"id": "i-3"}}},
	    {"address": "a.db", "mode": "managed", "type": "a", "name": "db", "provider_name": "p", "deposed": "00000001",
	     "change": {"actions": ["delete"], "before": {"id": "old"}, "after": null}},
	    {"address": "a.db", "mode": "managed", "type": "a", "name": "db", "provider_name": "p",
	     "change": {"actions": ["update"], "before": {"id": "new", "size": 1}, "after": {"id": "new", "size": 2}}}
	  ],
	  "resource_drift": [
	    {"address": "a.db", "mode": "managed", "type": "a", "name": "db", "provider_name": "p",
	     "change": {"actions": ["update"], "before": {"id": "new", "size": 3}, "after": {"id": "new", "size": 1}}}
	  ]
	}`
	plan, err := planparse.Parse(strings.NewReader(input), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range plan.Summary.Resources {
		keys = append(keys, r.Key())
	}
	want := []string{"a.db", "a.db (deposed 00000001)", "a.imported", "a.moved"}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("resources %q, want %q (the no-op a.x dropped, the move and import kept)", keys, want)
	}
	if r := plan.Summary.Resources[2]; r.Importing == nil || r.Importing.ID != "i-3" || r.Action != planparse.ActionNoOp {
		t.Errorf("import: %+v", r)
	}
	if r := plan.Summary.Resources[3]; r.PreviousAddress != "a.old" {
		t.Errorf("move: %+v", r)
	}
	if len(plan.Drift) != 1 || plan.Drift[0].Changes[0].Path.String() != "size" {
		t.Errorf("drift: %+v", plan.Drift)
	}
	// Drift is not part of the digest.
	noDrift := strings.Replace(input, `"size": 3}`, `"size": 9}`, 1)
	if digestOf(t, []byte(noDrift)) != plan.Digest {
		t.Error("a change to resource_drift changed the digest")
	}
}

// TestParseSharedPlans summarizes and renders every real-world plan in
// ../shared/plans: real providers, Terraform 0.12 to 1.14.
func TestParseSharedPlans(t *testing.T) {
	for _, path := range sharedPlans(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data := readFile(t, path)
			plan, err := planparse.Parse(bytes.NewReader(data), testOptions)
			if err != nil {
				t.Fatal(err)
			}
			var raw struct {
				ResourceChanges []struct {
					Change struct{ Actions []string } `json:"change"`
				} `json:"resource_changes"`
			}
			if err := json.Unmarshal(data, &raw); err != nil {
				t.Fatal(err)
			}
			changing := 0
			for _, rc := range raw.ResourceChanges {
				if len(rc.Change.Actions) != 1 || rc.Change.Actions[0] != "no-op" {
					changing++
				}
			}
			if len(plan.Summary.Resources) != changing {
				t.Errorf("%d resources in the summary, %d changing in the plan", len(plan.Summary.Resources), changing)
			}
			var out bytes.Buffer
			if err := planparse.Render(&out, plan.Summary, planparse.RenderOptions{Digest: plan.Digest}); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), plan.Digest) {
				t.Error("rendering lacks the digest")
			}
			for _, r := range plan.Summary.Resources {
				if !strings.Contains(out.String(), "# "+r.Address+" ") {
					t.Errorf("rendering lacks %s", r.Address)
				}
			}
			// The canonical bytes read back into the same summary.
			var back planparse.Summary
			if err := json.Unmarshal(plan.Summary.Canonical(), &back); err != nil {
				t.Fatal(err)
			}
			if back.Digest() != plan.Digest {
				t.Errorf("round trip digest %s, want %s", back.Digest(), plan.Digest)
			}
			if d := planparse.Compare(plan.Summary, &back); !d.Empty() {
				t.Errorf("a summary diverges from itself: %+v", d)
			}
		})
	}
}

// TestSensitiveValuesNeverInClear checks, over every plan at hand, that no
// value Terraform marked sensitive appears in the canonical summary.
func TestSensitiveValuesNeverInClear(t *testing.T) {
	paths := goldenPlans(t)
	shared, _ := filepath.Glob(filepath.Join(sharedPlansDir, "*.json"))
	for _, path := range append(paths, shared...) {
		data := readFile(t, path)
		secrets := sensitiveStrings(t, data)
		if len(secrets) == 0 {
			continue
		}
		plan, err := planparse.Parse(bytes.NewReader(data), testOptions)
		if err != nil {
			t.Fatal(err)
		}
		canonical := string(plan.Summary.Canonical())
		var text bytes.Buffer
		planparse.Render(&text, plan.Summary, planparse.RenderOptions{})
		for _, s := range secrets {
			quoted, _ := json.Marshal(s)
			if strings.Contains(canonical, string(quoted)) || strings.Contains(text.String(), string(quoted)) {
				t.Errorf("%s: sensitive value %s appears in the summary", filepath.Base(path), quoted)
			}
		}
	}
}

// sensitiveStrings returns every string leaf that a resource or output
// change marks sensitive in before_sensitive or after_sensitive.
func sensitiveStrings(t *testing.T, data []byte) []string {
	var plan struct {
		ResourceChanges []struct {
			Change changeJSON `json:"change"`
		} `json:"resource_changes"`
		OutputChanges map[string]changeJSON `json:"output_changes"`
	}
	if err := json.Unmarshal(data, &plan); err != nil {
		t.Fatal(err)
	}
	var out []string
	var collect func(v, mask any, marked bool)
	collect = func(v, mask any, marked bool) {
		if b, ok := mask.(bool); ok && b {
			marked = true
		}
		switch v := v.(type) {
		case string:
			if marked && len(v) > 2 {
				out = append(out, v)
			}
		case []any:
			m, _ := mask.([]any)
			for i, e := range v {
				var sub any
				if i < len(m) {
					sub = m[i]
				}
				collect(e, sub, marked)
			}
		case map[string]any:
			m, _ := mask.(map[string]any)
			for k, e := range v {
				collect(e, m[k], marked)
			}
		}
	}
	changes := []changeJSON{}
	for _, rc := range plan.ResourceChanges {
		changes = append(changes, rc.Change)
	}
	for _, c := range plan.OutputChanges {
		changes = append(changes, c)
	}
	for _, c := range changes {
		collect(c.Before, c.BeforeSensitive, false)
		collect(c.After, c.AfterSensitive, false)
	}
	return out
}

type changeJSON struct {
	Before          any `json:"before"`
	After           any `json:"after"`
	BeforeSensitive any `json:"before_sensitive"`
	AfterSensitive  any `json:"after_sensitive"`
}

// TestDigestInvariance: the digest depends on the planned changes, not on
// how the JSON is spelled.
func TestDigestInvariance(t *testing.T) {
	paths := goldenPlans(t)
	shared, _ := filepath.Glob(filepath.Join(sharedPlansDir, "*.json"))
	for _, path := range append(paths, shared...) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data := readFile(t, path)
			want := digestOf(t, data)
			tree := decodeTree(t, data)

			var pretty bytes.Buffer
			if err := json.Indent(&pretty, data, "\t", "\t "); err != nil {
				t.Fatal(err)
			}
			variants := map[string][]byte{
				"pretty-printed":    pretty.Bytes(),
				"compacted":         encodeTree(tree, false, nil),
				"keys reversed":     encodeTree(tree, true, nil),
				"numbers respelled": encodeTree(tree, false, respell),
				"all at once":       encodeTree(tree, true, respell),
			}
			for name, variant := range variants {
				if bytes.Equal(variant, data) && name != "compacted" {
					t.Errorf("%s: variant is identical to the input", name)
				}
				if got := digestOf(t, variant); got != want {
					t.Errorf("%s: digest %s, want %s", name, got, want)
				}
			}
		})
	}
}

// respell writes a number differently with the same value: 3 as 30e-1,
// 0.25 as 250e-3, 0 as 0.0e5.
func respell(n json.Number) string {
	s := string(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		fmt.Sscan(strings.TrimPrefix(s[i+1:], "+"), &exp)
	}
	digits := strings.Replace(mant, ".", "", 1)
	if i := strings.Index(mant, "."); i >= 0 {
		exp -= len(mant) - i - 1
	}
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0.0e5"
	}
	out := digits + "0e" + fmt.Sprint(exp-1)
	if neg {
		out = "-" + out
	}
	return out
}

func decodeTree(t testing.TB, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// encodeTree writes v as compact JSON, members in sorted or reverse-sorted
// order, numbers through spell when it is not nil.
func encodeTree(v any, reverse bool, spell func(json.Number) string) []byte {
	var buf bytes.Buffer
	var enc func(v any)
	enc = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if reverse {
				sort.Sort(sort.Reverse(sort.StringSlice(keys)))
			}
			buf.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					buf.WriteByte(',')
				}
				kb, _ := json.Marshal(k)
				buf.Write(kb)
				buf.WriteByte(':')
				enc(v[k])
			}
			buf.WriteByte('}')
		case []any:
			buf.WriteByte('[')
			for i, e := range v {
				if i > 0 {
					buf.WriteByte(',')
				}
				enc(e)
			}
			buf.WriteByte(']')
		case json.Number:
			if spell != nil {
				buf.WriteString(spell(v))
			} else {
				buf.WriteString(string(v))
			}
		default:
			b, _ := json.Marshal(v)
			buf.Write(b)
		}
	}
	enc(v)
	return buf.Bytes()
}

// TestDigestSensitivity: changing any single before or after value, action,
// address or output of a change changes the digest.
func TestDigestSensitivity(t *testing.T) {
	paths := goldenPlans(t)
	shared, _ := filepath.Glob(filepath.Join(sharedPlansDir, "*.json"))
	for _, path := range append(paths, shared...) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			data := readFile(t, path)
			base := digestOf(t, data)
			tree := decodeTree(t, data).(map[string]any)
			mutations := 0
			check := func(what string) {
				t.Helper()
				mutations++
				if got := digestOf(t, encodeTree(tree, false, nil)); got == base {
					t.Errorf("%s: the digest did not change", what)
				}
			}
			// Bound the work on large real-world plans: mutate every
			// stride-th leaf, at most about 150 per plan.
			leaves := 0
			rcs, _ := tree["resource_changes"].([]any)
			for _, rc := range rcs {
				change := rc.(map[string]any)["change"].(map[string]any)
				for _, side := range []string{"before", "after"} {
					forEachLeaf(change, side, nil, func(string, func(), func()) { leaves++ })
				}
			}
			stride := leaves/150 + 1
			leaf := 0
			for i, rc := range rcs {
				res := rc.(map[string]any)
				change := res["change"].(map[string]any)
				actions := change["actions"].([]any)
				if len(actions) == 1 && actions[0] == "no-op" {
					continue
				}
				addr := res["address"].(string)
				for _, side := range []string{"before", "after"} {
					unknown := change["after_unknown"]
					if side == "before" {
						unknown = nil
					}
					forEachLeaf(change, side, unknown, func(what string, restore func(), mutate func()) {
						leaf++
						if leaf%stride != 0 {
							return
						}
						mutate()
						check(fmt.Sprintf("resource_changes[%d] %s %s%s", i, addr, side, what))
						restore()
					})
				}
				if i%(len(rcs)/40+1) != 0 {
					continue // at most about 40 resources' addresses and actions
				}
				res["address"] = addr + "_x"
				check(addr + " address")
				res["address"] = addr
				saved := change["actions"]
				if len(actions) == 1 && actions[0] == "update" {
					change["actions"] = []any{"delete", "create"}
				} else {
					change["actions"] = []any{"update"}
				}
				check(addr + " actions")
				change["actions"] = saved
			}
			outputs, _ := tree["output_changes"].(map[string]any)
			for name, oc := range outputs {
				change := oc.(map[string]any)
				actions := change["actions"].([]any)
				if len(actions) == 1 && actions[0] == "no-op" {
					continue
				}
				forEachLeaf(change, "after", change["after_unknown"], func(what string, restore func(), mutate func()) {
					mutate()
					check("output " + name + what)
					restore()
				})
			}
			if mutations == 0 {
				t.Skip("no changes to mutate")
			}
			if digestOf(t, encodeTree(tree, false, nil)) != base {
				t.Fatal("restoring every mutation did not restore the digest")
			}
		})
	}
}

// forEachLeaf calls fn for every scalar in parent[key] that is not marked
// unknown, with functions that change it and put it back.
func forEachLeaf(parent map[string]any, key string, unknown any, fn func(what string, restore, mutate func())) {
	var walk func(get func() any, set func(any), unknown any, what string)
	walk = func(get func() any, set func(any), unknown any, what string) {
		if b, ok := unknown.(bool); ok && b {
			return
		}
		switch v := get().(type) {
		case map[string]any:
			um, _ := unknown.(map[string]any)
			for k := range v {
				walk(func() any { return v[k] }, func(n any) { v[k] = n }, um[k], what+"."+k)
			}
		case []any:
			ul, _ := unknown.([]any)
			for i := range v {
				var u any
				if i < len(ul) {
					u = ul[i]
				}
				walk(func() any { return v[i] }, func(n any) { v[i] = n }, u, fmt.Sprintf("%s[%d]", what, i))
			}
		default:
			orig := v
			var changed any
			switch v := v.(type) {
			case string:
				changed = v + "_x"
			case bool:
				changed = !v
			case json.Number:
				// A leading 1: 0 → 10, -2.5 → -12.5, 3e2 → 13e2.
				if strings.HasPrefix(string(v), "-") {
					changed = json.Number("-1" + string(v)[1:])
				} else {
					changed = json.Number("1" + string(v))
				}
			case nil:
				changed = "x"
			}
			fn(what, func() { set(orig) }, func() { set(changed) })
		}
	}
	walk(func() any { return parent[key] }, func(n any) { parent[key] = n }, unknown, "")
}

package planparse_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seb-broker/seb/planparse"
)

// scalePlan is a plan for a service whose replicas go from before to after.
func scalePlan(before, after int, extra string) string {
	return `{"format_version":"1.2","terraform_version":"1.5.7",
	  "planned_values":{},
	  "resource_changes":[
	    {"address":"sandbox_service.web","mode":"managed","type":"sandbox_service","name":"web",
	     "provider_name":"registry.seb.invalid/seb/sandbox",
	     "change":{"actions":["update"],
	       "before":{"name":"web","image":"nginx:1.27","replicas":` + itoa(before) + `},
	       "after":{"name":"web","image":"nginx:1.27","replicas":` + itoa(after) + `},
	       "after_unknown":{},"before_sensitive":{},"after_sensitive":{}}}` + extra + `
	  ]}`
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func summaryOf(t *testing.T, plan string) *planparse.Summary {
	t.Helper()
	p, err := planparse.Parse(strings.NewReader(plan), testOptions)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, plan)
	}
	return p.Summary
}

func TestCompareSame(t *testing.T) {
	a := summaryOf(t, scalePlan(3, 5, ""))
	b := summaryOf(t, scalePlan(3, 5, ""))
	d := planparse.Compare(a, b)
	if !d.Empty() || d.Resources != nil || d.OnlyCertified != nil || d.OnlyLive != nil || d.Outputs != nil {
		t.Errorf("divergence of equal summaries: %+v", d)
	}
	var out bytes.Buffer
	planparse.RenderDivergence(&out, d, planparse.RenderOptions{})
	if !strings.Contains(out.String(), "Same") {
		t.Errorf("rendering: %s", out.String())
	}
}

// TestCompareDrift is the case seb exists for: certified 3 → 5, but someone
// scaled the service to 7 by hand, so the live plan is 7 → 5.
func TestCompareDrift(t *testing.T) {
	certified := summaryOf(t, scalePlan(3, 5, ""))
	live := summaryOf(t, scalePlan(7, 5, ""))
	d := planparse.Compare(certified, live)
	if d.Empty() {
		t.Fatal("no divergence")
	}
	if len(d.Resources) != 1 || len(d.Resources[0].Attributes) != 1 || len(d.Resources[0].Fields) != 0 {
		t.Fatalf("divergence %+v, want one attribute of one resource", d)
	}
	a := d.Resources[0].Attributes[0]
	if a.Path.String() != "replicas" || planparse.FormatValue(a.Certified.Before) != "3" || planparse.FormatValue(a.Live.Before) != "7" ||
		planparse.FormatValue(a.Certified.After) != "5" || planparse.FormatValue(a.Live.After) != "5" {
		t.Errorf("attribute divergence %s: certified %+v, live %+v", a.Path, a.Certified, a.Live)
	}
	var out bytes.Buffer
	planparse.RenderDivergence(&out, d, planparse.RenderOptions{})
	if !strings.Contains(out.String(), "replicas: certified 3 -> 5, live 7 -> 5") {
		t.Errorf("rendering does not read at a glance:\n%s", out.String())
	}
	encoded, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"certified":{"after":5,"before":3,"path":["replicas"]}`, `"live":{"after":5,"before":7,"path":["replicas"]}`} {
		if !strings.Contains(string(encoded), want) {
			t.Errorf("JSON lacks %s:\n%s", want, encoded)
		}
	}
}

func TestCompareResourcesInOne(t *testing.T) {
	extra := `,{"address":"sandbox_bucket.logs","mode":"managed","type":"sandbox_bucket","name":"logs",
	  "provider_name":"registry.seb.invalid/seb/sandbox",
	  "change":{"actions":["delete"],"before":{"name":"logs"},"after":null}}`
	certified := summaryOf(t, scalePlan(3, 5, ""))
	live := summaryOf(t, scalePlan(3, 5, extra))
	d := planparse.Compare(certified, live)
	if len(d.OnlyLive) != 1 || d.OnlyLive[0].Address != "sandbox_bucket.logs" || len(d.OnlyCertified) != 0 || len(d.Resources) != 0 {
		t.Errorf("divergence %+v", d)
	}
	back := planparse.Compare(live, certified)
	if len(back.OnlyCertified) != 1 || len(back.OnlyLive) != 0 {
		t.Errorf("reverse divergence %+v", back)
	}
	var out bytes.Buffer
	planparse.RenderDivergence(&out, d, planparse.RenderOptions{})
	if !strings.Contains(out.String(), "sandbox_bucket.logs: the live plan would delete it, which was never certified") {
		t.Errorf("rendering:\n%s", out.String())
	}
}

func TestCompareFieldsAndOutputs(t *testing.T) {
	certified := summaryOf(t, `{"format_version":"1.2","resource_changes":[
	  {"address":"a.x","mode":"managed","type":"a","name":"x","provider_name":"p",
	   "change":{"actions":["delete","create"],"before":{"v":1},"after":{"v":2},"replace_paths":[["v"]]}}],
	  "output_changes":{"o":{"actions":["update"],"before":1,"after":2},"gone":{"actions":["create"],"after":"x"}}}`)
	live := summaryOf(t, `{"format_version":"1.2","resource_changes":[
	  {"address":"a.x","mode":"managed","type":"a","name":"x","provider_name":"p",
	   "change":{"actions":["create","delete"],"before":{"v":1},"after":{"v":2},"replace_paths":[["v"]]}}],
	  "output_changes":{"o":{"actions":["update"],"before":1,"after":3},"new":{"actions":["create"],"after":"y"}}}`)
	d := planparse.Compare(certified, live)
	if len(d.Resources) != 1 || len(d.Resources[0].Fields) != 1 || d.Resources[0].Fields[0].Field != "replace_order" {
		t.Fatalf("resource divergence %+v", d.Resources)
	}
	var names []string
	for _, o := range d.Outputs {
		names = append(names, o.Name)
	}
	if strings.Join(names, ",") != "gone,new,o" {
		t.Errorf("output divergences %v", names)
	}
	if d.Outputs[0].Live != nil || d.Outputs[1].Certified != nil {
		t.Errorf("outputs in one summary only: %+v", d.Outputs)
	}
}

// TestCompareFindsEveryMutation: whenever a mutation changes the digest,
// Compare names at least one difference — a reviewer is never told only
// "the digests differ".
func TestCompareFindsEveryMutation(t *testing.T) {
	for _, path := range goldenPlans(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data := readFile(t, path)
			base := summaryOf(t, string(data))
			tree := decodeTree(t, data).(map[string]any)
			rcs, _ := tree["resource_changes"].([]any)
			for _, rc := range rcs {
				change := rc.(map[string]any)["change"].(map[string]any)
				for _, side := range []string{"before", "after"} {
					forEachLeaf(change, side, change["after_unknown"], func(what string, restore, mutate func()) {
						mutate()
						defer restore()
						mutated := summaryOf(t, string(encodeTree(tree, false, nil)))
						d := planparse.Compare(base, mutated)
						if d.Empty() {
							return
						}
						if len(d.Resources)+len(d.OnlyCertified)+len(d.OnlyLive)+len(d.Outputs) == 0 {
							t.Errorf("%s%s: digests differ but Compare names nothing", side, what)
						}
					})
				}
			}
		})
	}
}

// TestDivergenceRoundTrip: a divergence stored as JSON (an execution's
// decision) reads back equal, markers and exact numbers included, so the
// UI shows what Compare found.
func TestDivergenceRoundTrip(t *testing.T) {
	withUnknown := `,{"address":"a.x[2]","mode":"managed","type":"a","name":"x","index":2,"provider_name":"p",
	  "change":{"actions":["update"],"before":{"v":[1,2],"big":12345678901234567890},"after":{"v":[1,3],"big":12345678901234567891},"after_unknown":{"id":true}}}`
	certified := summaryOf(t, scalePlan(3, 5, ""))
	live := summaryOf(t, scalePlan(7, 5, withUnknown))
	fieldsCertified := summaryOf(t, `{"format_version":"1.2","resource_changes":[
	  {"address":"a.x","mode":"managed","type":"a","name":"x","provider_name":"p",
	   "change":{"actions":["delete","create"],"before":{"v":1},"after":{"v":2},"replace_paths":[["v"]]}}],
	  "output_changes":{"o":{"actions":["update"],"before":1,"after":2}}}`)
	fieldsLive := summaryOf(t, `{"format_version":"1.2","resource_changes":[
	  {"address":"a.x","mode":"managed","type":"a","name":"x","provider_name":"p",
	   "change":{"actions":["create","delete"],"before":{"v":1},"after":{"v":2},"replace_paths":[["v"]]}}],
	  "output_changes":{"o":{"actions":["update"],"before":1,"after":{"unknown":true}}}}`)
	for _, d := range []*planparse.Divergence{planparse.Compare(certified, live), planparse.Compare(fieldsCertified, fieldsLive)} {
		data, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var back planparse.Divergence
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("unmarshal: %v\n%s", err, data)
		}
		again, _ := json.Marshal(&back)
		if !bytes.Equal(data, again) {
			t.Errorf("round trip changed the divergence:\n%s\n%s", data, again)
		}
		var want, got bytes.Buffer
		planparse.RenderDivergence(&want, d, planparse.RenderOptions{})
		planparse.RenderDivergence(&got, &back, planparse.RenderOptions{})
		if want.String() != got.String() {
			t.Errorf("rendered after the round trip:\n%s\nwant\n%s", got.String(), want.String())
		}
	}
	var ac planparse.AttributeChange
	if err := json.Unmarshal([]byte(`{"path":["v",-1],"before":1,"after":2}`), &ac); err == nil {
		t.Errorf("a negative list index decoded: %+v", ac)
	}
	if err := json.Unmarshal([]byte(`{"path":["v"],"before":1,"after":2,"extra":1}`), &ac); err == nil {
		t.Errorf("an unknown member decoded: %+v", ac)
	}
}

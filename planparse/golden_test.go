package planparse_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seb-broker/seb/internal/tftest"
	"github.com/seb-broker/seb/planparse"
)

var update = flag.Bool("update", false, "regenerate the plan JSON under testdata/plans with the real Terraform binary, and the golden summaries")

// testKey is the HMAC key of every summary under testdata.
var testKey = []byte("seb test key for sensitive values")

var testOptions = planparse.Options{SensitiveKey: testKey}

const fixturesDir = "../fixtures/builtin"

// fixtureCases lists the configurations under fixtures/builtin.
func fixtureCases(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(fixturesDir)
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, e := range entries {
		if e.IsDir() {
			cases = append(cases, e.Name())
		}
	}
	if len(cases) == 0 {
		t.Fatal("no fixture configurations")
	}
	return cases
}

func parseFile(t *testing.T, path string) *planparse.Plan {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plan, err := planparse.Parse(f, testOptions)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return plan
}

// goldenSummary is the layout of testdata/golden/<case>.json.
type goldenSummary struct {
	Digest  string             `json:"digest"`
	Summary *planparse.Summary `json:"summary"`
}

func readGolden(t *testing.T, name string) goldenSummary {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden", name+".json"))
	if err != nil {
		t.Fatalf("%v (run `go test ./planparse -run TestGolden -update` to create it)", err)
	}
	var g goldenSummary
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("golden %s: %v", name, err)
	}
	return g
}

// TestGolden summarizes the committed plan JSON of every fixture and checks
// the summary, digest and rendering against the committed golden files. With
// -update it first re-plans every fixture with the real Terraform binary.
func TestGolden(t *testing.T) {
	var bin string
	if *update {
		bin = tftest.Binary(t)
		t.Logf("regenerating plans with %s", tftest.Version(t, bin))
	}
	for _, name := range fixtureCases(t) {
		t.Run(name, func(t *testing.T) {
			planPath := filepath.Join("testdata", "plans", name+".json")
			if *update {
				writeFile(t, planPath, tftest.PlanFixture(t, bin, filepath.Join(fixturesDir, name)))
			}
			plan := parseFile(t, planPath)

			pretty, err := json.MarshalIndent(goldenSummary{Digest: plan.Digest, Summary: plan.Summary}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			var text bytes.Buffer
			if err := planparse.Render(&text, plan.Summary, planparse.RenderOptions{Digest: plan.Digest}); err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join("testdata", "golden", name+".json"), append(pretty, '\n'))
			compareGolden(t, filepath.Join("testdata", "golden", name+".txt"), text.Bytes())

			// The golden file reads back into the very same summary.
			g := readGolden(t, name)
			if got := g.Summary.Digest(); got != plan.Digest || g.Digest != plan.Digest {
				t.Errorf("golden summary digest %s (recorded %s), plan digest %s", got, g.Digest, plan.Digest)
			}
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		writeFile(t, path, got)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update if the change is intended)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLiveDigests plans every fixture with whichever Terraform or OpenTofu
// binary is present and checks that the digest equals the committed one:
// the summary is independent of the version that made the plan.
func TestLiveDigests(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Terraform")
	}
	bin := tftest.Binary(t)
	t.Logf("planning with %s (%s)", tftest.Version(t, bin), bin)
	for _, name := range fixtureCases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw := tftest.PlanFixture(t, bin, filepath.Join(fixturesDir, name))
			plan, err := planparse.Parse(bytes.NewReader(raw), testOptions)
			if err != nil {
				t.Fatal(err)
			}
			want := readGolden(t, name)
			if plan.Digest != want.Digest {
				d := planparse.Compare(want.Summary, plan.Summary)
				var report bytes.Buffer
				planparse.RenderDivergence(&report, d, planparse.RenderOptions{})
				t.Errorf("digest %s, committed %s\n%s", plan.Digest, want.Digest, report.String())
			}
		})
	}
}

// TestGoldenSemantics pins what each fixture must show, independent of the
// golden files, so that regenerating them cannot quietly accept a wrong
// summary.
func TestGoldenSemantics(t *testing.T) {
	load := func(name string) *planparse.Summary {
		return parseFile(t, filepath.Join("testdata", "plans", name+".json")).Summary
	}
	resource := func(t *testing.T, s *planparse.Summary, addr string) *planparse.ResourceChange {
		t.Helper()
		for i := range s.Resources {
			if s.Resources[i].Address == addr {
				return &s.Resources[i]
			}
		}
		t.Fatalf("no change for %s", addr)
		return nil
	}
	change := func(t *testing.T, r *planparse.ResourceChange, path string) planparse.AttributeChange {
		t.Helper()
		for _, c := range r.Changes {
			if c.Path.String() == path {
				return c
			}
		}
		t.Fatalf("%s: no change at %s in %v", r.Address, path, r.Changes)
		return planparse.AttributeChange{}
	}
	value := func(v any) string { return planparse.FormatValue(v) }

	t.Run("create", func(t *testing.T) {
		s := load("create")
		web := resource(t, s, "terraform_data.web")
		if web.Action != planparse.ActionCreate || web.Provider != "terraform.io/builtin/terraform" {
			t.Errorf("web: %s by %s", web.Action, web.Provider)
		}
		if c := change(t, web, "input"); value(c.Before) != "null" || !strings.Contains(value(c.After), `"replicas" = 3`) {
			t.Errorf("input: %s -> %s", value(c.Before), value(c.After))
		}
		if c := change(t, web, "id"); c.After != (planparse.Unknown{}) {
			t.Errorf("id after = %v, want unknown", c.After)
		}
		resource(t, s, "terraform_data.empty")
	})
	t.Run("update", func(t *testing.T) {
		web := resource(t, load("update"), "terraform_data.web")
		if web.Action != planparse.ActionUpdate {
			t.Errorf("action %s", web.Action)
		}
		if c := change(t, web, "input.replicas"); value(c.Before) != "3" || value(c.After) != "5" {
			t.Errorf("replicas: %s -> %s", value(c.Before), value(c.After))
		}
		if c := change(t, web, "input.image"); value(c.Before) != `"nginx:1.26"` || value(c.After) != `"nginx:1.27"` {
			t.Errorf("image: %s -> %s", value(c.Before), value(c.After))
		}
		for _, c := range web.Changes {
			if c.Path.String() == "input.port" || c.Path.String() == "id" {
				t.Errorf("unchanged attribute %s listed", c.Path)
			}
		}
	})
	t.Run("delete", func(t *testing.T) {
		s := load("delete")
		if len(s.Resources) != 2 {
			t.Fatalf("%d changes, want the two workers", len(s.Resources))
		}
		w := resource(t, s, "terraform_data.worker[1]")
		if w.Action != planparse.ActionDelete || w.ActionReason != "delete_because_count_index" || value(w.Index) != "1" {
			t.Errorf("worker[1]: %s because %q, index %v", w.Action, w.ActionReason, w.Index)
		}
		if c := change(t, w, "input"); value(c.Before) != `"worker-1"` || c.After != nil {
			t.Errorf("input: %s -> %s", value(c.Before), value(c.After))
		}
	})
	for name, order := range map[string]planparse.ReplaceOrder{
		"replace_delete_first": planparse.DeleteBeforeCreate,
		"replace_create_first": planparse.CreateBeforeDestroy,
	} {
		t.Run(name, func(t *testing.T) {
			s := load(name)
			r := &s.Resources[0]
			if r.Action != planparse.ActionReplace || r.ReplaceOrder != order {
				t.Errorf("%s: %s %s, want replace %s", r.Address, r.Action, r.ReplaceOrder, order)
			}
			if !r.ForcesReplacement(planparse.Path{"triggers_replace"}) {
				t.Errorf("replace paths %v lack triggers_replace", r.ReplacePaths)
			}
			if c := change(t, r, "triggers_replace"); value(c.Before) != `"r1"` || value(c.After) != `"r2"` {
				t.Errorf("triggers_replace: %s -> %s", value(c.Before), value(c.After))
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		s := load("unknown")
		subnet := resource(t, s, "terraform_data.subnet")
		c := change(t, subnet, "input")
		in, _ := c.After.(planparse.Object)
		network, _ := in.Get("network")
		cidr, _ := in.Get("cidr")
		if network != (planparse.Unknown{}) || cidr != "10.0.1.0/24" {
			t.Errorf("subnet input after = %s", value(c.After))
		}
		if zones, _ := in.Get("zones"); len(zones.([]any)) != 2 || zones.([]any)[1] != (planparse.Unknown{}) {
			t.Errorf("zones = %s", value(zones))
		}
		if len(s.Outputs) != 1 || s.Outputs[0].After != (planparse.Unknown{}) {
			t.Errorf("outputs = %+v", s.Outputs)
		}
	})
	t.Run("sensitive", func(t *testing.T) {
		plan := parseFile(t, filepath.Join("testdata", "plans", "sensitive.json"))
		raw, err := os.ReadFile(filepath.Join("testdata", "plans", "sensitive.json"))
		if err != nil {
			t.Fatal(err)
		}
		var text bytes.Buffer
		planparse.Render(&text, plan.Summary, planparse.RenderOptions{})
		for _, secret := range []string{"old-secret", "new-secret"} {
			if !bytes.Contains(raw, []byte(secret)) {
				t.Fatalf("the fixture plan should hold %q in clear, as Terraform writes it", secret)
			}
			if bytes.Contains(plan.Summary.Canonical(), []byte(secret)) || strings.Contains(text.String(), secret) {
				t.Errorf("%q appears in the summary", secret)
			}
		}
		db := resource(t, plan.Summary, "terraform_data.db")
		c := change(t, db, "input.password")
		before, okB := c.Before.(planparse.Sensitive)
		after, okA := c.After.(planparse.Sensitive)
		if !okB || !okA || before == after || !strings.HasPrefix(before.Digest, "hmac-sha256:") {
			t.Errorf("password: %#v -> %#v, want two different keyed digests", c.Before, c.After)
		}
		for _, r := range plan.Summary.Resources {
			if r.Address == "terraform_data.token" {
				t.Errorf("token did not change, yet it is listed: %+v", r)
			}
		}
		var conn *planparse.OutputChange
		for i := range plan.Summary.Outputs {
			if plan.Summary.Outputs[i].Name == "connection" {
				conn = &plan.Summary.Outputs[i]
			}
		}
		if conn == nil {
			t.Fatal("no change for output connection")
		}
		if _, ok := conn.After.(planparse.Sensitive); !ok {
			t.Errorf("output connection after = %#v, want a keyed digest", conn.After)
		}
		// Another key gives other digests: nothing is comparable across keys.
		other, err := planparse.Parse(bytes.NewReader(raw), planparse.Options{SensitiveKey: []byte("another key")})
		if err != nil {
			t.Fatal(err)
		}
		if other.Digest == plan.Digest {
			t.Error("the digest does not depend on the key")
		}
	})
	t.Run("modules", func(t *testing.T) {
		s := load("modules")
		r := resource(t, s, `module.app["eu"].module.shard[1].terraform_data.shard`)
		if r.ModuleAddress != `module.app["eu"].module.shard[1]` || r.Action != planparse.ActionCreate {
			t.Errorf("module address %q, action %s", r.ModuleAddress, r.Action)
		}
		if len(s.Resources) != 6 {
			t.Errorf("%d resources, want 6", len(s.Resources))
		}
		for i := 1; i < len(s.Resources); i++ {
			if s.Resources[i-1].Address >= s.Resources[i].Address {
				t.Errorf("not sorted: %s before %s", s.Resources[i-1].Address, s.Resources[i].Address)
			}
		}
	})
	t.Run("count_for_each", func(t *testing.T) {
		s := load("count_for_each")
		want := map[string]planparse.Action{
			"terraform_data.replica[1]":          planparse.ActionUpdate,
			"terraform_data.replica[2]":          planparse.ActionCreate,
			`terraform_data.bucket["logs"]`:      planparse.ActionUpdate,
			`terraform_data.bucket["backups"]`:   planparse.ActionCreate,
			`terraform_data.bucket["tmp files"]`: planparse.ActionDelete,
		}
		if len(s.Resources) != len(want) {
			t.Errorf("%d changes, want %d", len(s.Resources), len(want))
		}
		for addr, action := range want {
			if r := resource(t, s, addr); r.Action != action {
				t.Errorf("%s: %s, want %s", addr, r.Action, action)
			}
		}
		if r := resource(t, s, `terraform_data.bucket["tmp files"]`); r.Index != "tmp files" || r.ActionReason != "delete_because_each_key" {
			t.Errorf("tmp files: index %v, reason %q", r.Index, r.ActionReason)
		}
	})
	t.Run("outputs_only", func(t *testing.T) {
		s := load("outputs_only")
		if len(s.Resources) != 0 || len(s.Outputs) == 0 {
			t.Fatalf("%d resources, %d outputs", len(s.Resources), len(s.Outputs))
		}
		for _, o := range s.Outputs {
			if o.Name == "environment" && (o.Action != planparse.ActionUpdate || value(o.Before) != `"staging"` || value(o.After) != `"production"`) {
				t.Errorf("environment: %s %s -> %s", o.Action, value(o.Before), value(o.After))
			}
		}
	})
}

package planparse_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/seb-broker/seb/planparse"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic or hang,
// and whatever it accepts must digest the same twice and survive a round
// trip through the summary's JSON.
func FuzzParse(f *testing.F) {
	for _, path := range goldenPlans(f) {
		f.Add(readFile(f, path))
	}
	for _, seed := range []string{
		``, `{}`, `[]`, `null`, `{"format_version":"1.2"}`,
		`{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":["update"],"before":{"a":[1,{"b":null}]},"after":{"a":[1,{"b":2}]},"after_unknown":{"a":[false,{"c":true}]},"before_sensitive":{"a":true},"after_sensitive":[true]}}]}`,
		`{"format_version":"1.2","output_changes":{"o":{"actions":["create"],"after":1e400,"after_sensitive":true}}}`,
		`{"format_version":"0.1","resource_drift":[{"type":"t","name":"n","index":"k","change":{"actions":["delete"],"before":{"$unknown":true}}}]}`,
		"PK\x03\x04",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		plan, err := planparse.Parse(bytes.NewReader(data), planparse.Options{SensitiveKey: testKey, MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		again, err := planparse.Parse(bytes.NewReader(data), planparse.Options{SensitiveKey: testKey})
		if err != nil || again.Digest != plan.Digest {
			t.Fatalf("second parse: digest %v, error %v; first digest %s", again, err, plan.Digest)
		}
		if err := plan.Summary.Validate(); err != nil {
			t.Fatalf("Parse returned an invalid summary: %v", err)
		}
		var back planparse.Summary
		if err := json.Unmarshal(plan.Summary.Canonical(), &back); err != nil {
			t.Fatalf("summary does not read back: %v\n%s", err, plan.Summary.Canonical())
		}
		if back.Digest() != plan.Digest {
			t.Fatalf("round trip changed the digest")
		}
		var out bytes.Buffer
		if err := planparse.Render(&out, plan.Summary, planparse.RenderOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzSummaryJSON feeds arbitrary bytes to Summary.UnmarshalJSON: whatever
// it accepts is valid and re-encodes to a summary with the same digest.
func FuzzSummaryJSON(f *testing.F) {
	for _, path := range goldenPlans(f) {
		plan, err := planparse.Parse(bytes.NewReader(readFile(f, path)), testOptions)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(plan.Summary.Canonical())
	}
	f.Add([]byte(`{"version":1,"resources":[],"outputs":[{"name":"o","action":"create","before":null,"after":{"$$unknown":{"$unknown":true}}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s planparse.Summary
		if err := json.Unmarshal(data, &s); err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted an invalid summary: %v", err)
		}
		var again planparse.Summary
		if err := json.Unmarshal(s.Canonical(), &again); err != nil {
			t.Fatalf("canonical form does not read back: %v", err)
		}
		if again.Digest() != s.Digest() || !bytes.Equal(again.Canonical(), s.Canonical()) {
			t.Fatal("round trip changed the summary")
		}
	})
}

// TestFuzzSeedsFromSharedPlans runs the fuzz properties once over the
// real-world plans, which are too large to be fuzz seeds.
func TestFuzzSeedsFromSharedPlans(t *testing.T) {
	for _, path := range sharedPlans(t) {
		data := readFile(t, path)
		plan, err := planparse.Parse(bytes.NewReader(data), testOptions)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(path), err)
		}
		if err := plan.Summary.Validate(); err != nil {
			t.Errorf("%s: %v", filepath.Base(path), err)
		}
	}
}

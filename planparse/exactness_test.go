package planparse_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/seb-broker/seb/planparse"
)

// oneChange is a plan with one update of t.x whose change object is change.
func oneChange(change string) string {
	return `{"format_version":"1.2","resource_changes":[{"address":"t.x","mode":"managed","type":"t","name":"x","provider_name":"p","change":` + change + `}]}`
}

// TestDistinctChangesDistinctDigests: pairs of plans that differ only in
// unknown-ness, null against absent, sensitivity or import identity must
// never share a digest.
func TestDistinctChangesDistinctDigests(t *testing.T) {
	tests := []struct{ name, a, b string }{
		{"sensitive map gains a different unknown key",
			oneChange(`{"actions":["update"],"before":{"env":{"A":"x"}},"after":{"env":{"A":"x"}},"after_unknown":{"env":{"B":true}},"before_sensitive":{"env":true},"after_sensitive":{"env":true}}`),
			oneChange(`{"actions":["update"],"before":{"env":{"A":"x"}},"after":{"env":{"A":"x"}},"after_unknown":{"env":{"C":true}},"before_sensitive":{"env":true},"after_sensitive":{"env":true}}`)},
		{"sensitive map gains an unknown key or stays",
			oneChange(`{"actions":["update"],"before":{"env":{"A":"x"}},"after":{"env":{"A":"x"}},"after_unknown":{"env":{"B":true}},"before_sensitive":{"env":true},"after_sensitive":{"env":true}}`),
			oneChange(`{"actions":["update"],"before":{"env":{"A":"x"}},"after":{"env":{"A":"x"}},"after_unknown":{"env":{}},"before_sensitive":{"env":true},"after_sensitive":{"env":true}}`)},
		{"sensitive list element null or unknown",
			oneChange(`{"actions":["update"],"before":{"v":["a"]},"after":{"v":[null]},"after_unknown":{"v":[false]},"before_sensitive":{"v":true},"after_sensitive":{"v":true}}`),
			oneChange(`{"actions":["update"],"before":{"v":["a"]},"after":{"v":[null]},"after_unknown":{"v":[true]},"before_sensitive":{"v":true},"after_sensitive":{"v":true}}`)},
		{"sensitive output gains different unknown keys",
			`{"format_version":"1.2","output_changes":{"o":{"actions":["create"],"after":{"a":1},"after_unknown":{"b":true},"after_sensitive":true}}}`,
			`{"format_version":"1.2","output_changes":{"o":{"actions":["create"],"after":{"a":1},"after_unknown":{"c":true},"after_sensitive":true}}}`},
		{"map gains a null member a or b",
			oneChange(`{"actions":["update"],"before":{"m":{}},"after":{"m":{"a":null}}}`),
			oneChange(`{"actions":["update"],"before":{"m":{}},"after":{"m":{"b":null}}}`)},
		{"map member null or absent",
			oneChange(`{"actions":["update"],"before":{"m":{"k":"v"}},"after":{"m":{"k":"v","a":null}}}`),
			oneChange(`{"actions":["update"],"before":{"m":{"k":"v"}},"after":{"m":{"k":"v"}},"after_unknown":{}}`)},
		{"map loses a null member",
			oneChange(`{"actions":["update"],"before":{"m":{"a":null},"n":1},"after":{"m":{},"n":2}}`),
			oneChange(`{"actions":["update"],"before":{"m":{},"n":1},"after":{"m":{},"n":2}}`)},
		{"import by identity 1 or 2",
			oneChange(`{"actions":["no-op"],"before":{"a":1},"after":{"a":1},"importing":{"identity":{"id":"1"}}}`),
			oneChange(`{"actions":["no-op"],"before":{"a":1},"after":{"a":1},"importing":{"identity":{"id":"2"}}}`)},
		{"import by identity or by an id that looks like one",
			oneChange(`{"actions":["no-op"],"before":{"a":1},"after":{"a":1},"importing":{"identity":{"id":"1"}}}`),
			oneChange(`{"actions":["no-op"],"before":{"a":1},"after":{"a":1},"importing":{"id":"{\"id\":\"1\"}"}}`)},
		{"value marked sensitive or not",
			oneChange(`{"actions":["update"],"before":{"a":"s","b":1},"after":{"a":"s","b":2},"before_sensitive":{"a":true},"after_sensitive":{}}`),
			oneChange(`{"actions":["update"],"before":{"a":"s","b":1},"after":{"a":"s","b":2},"before_sensitive":{},"after_sensitive":{}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := summaryOf(t, tt.a), summaryOf(t, tt.b)
			if a.Digest() == b.Digest() {
				t.Fatalf("same digest for different changes:\n%s\n%s", a.Canonical(), b.Canonical())
			}
			if d := planparse.Compare(a, b); len(d.Resources)+len(d.Outputs)+len(d.OnlyCertified)+len(d.OnlyLive) == 0 {
				t.Errorf("Compare names no difference")
			}
		})
	}
}

// TestSameInputSameSummary: map iteration order must never show through.
func TestSameInputSameSummary(t *testing.T) {
	input := `{"format_version":"1.2","output_changes":{"o":{"actions":["create"],"after":{"m":1,"n":2},
	  "after_unknown":{"a":true,"b":true,"c":true,"d":true,"e":true,"f":true,"g":true,"h":true,"m":true,"x":true,"y":true,"z":true}}},
	  "resource_changes":[{"address":"t.x","mode":"managed","type":"t","name":"x","provider_name":"p",
	  "change":{"actions":["update"],"before":{"o":{"k":1}},"after":{"o":{"k":1,"m":2}},
	  "after_unknown":{"o":{"a":true,"b":true,"c":true,"d":true,"e":true,"f":true,"q":true,"r":true,"s":true}}}}]}`
	first := summaryOf(t, input)
	if err := first.Validate(); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if s := summaryOf(t, input); s.Digest() != first.Digest() {
			t.Fatalf("digests differ between parses:\n%s\n%s", first.Canonical(), s.Canonical())
		}
	}
}

// TestScrub: unmarked copies of sensitive values are hidden, but short or
// drift-only values are not, and drift never moves the digest.
func TestScrub(t *testing.T) {
	plan := func(drift string) string {
		return `{"format_version":"1.2","resource_changes":[{"address":"t.x","mode":"managed","type":"t","name":"x","provider_name":"p",
		  "change":{"actions":["update"],
		    "before":{"in":"hunter2hunter2","pin":482913,"short":"app","out":"x","n":1,"label":"app","map":{}},
		    "after":{"in":"hunter2hunter2","pin":482913,"short":"app","out":"hunter2hunter2","n":482913,"label":"app","map":{"hunter2hunter2":"v"}},
		    "before_sensitive":{"in":true,"pin":true,"short":true},"after_sensitive":{"in":true,"pin":true,"short":true}}}]` + drift + `}`
	}
	s := summaryOf(t, plan(""))
	canonical := string(s.Canonical())
	var text bytes.Buffer
	planparse.Render(&text, s, planparse.RenderOptions{})
	for _, secret := range []string{"hunter2hunter2", "482913"} {
		if strings.Contains(canonical, secret) || strings.Contains(text.String(), secret) {
			t.Errorf("%s appears in clear:\n%s\n%s", secret, canonical, text.String())
		}
	}
	if !strings.Contains(text.String(), `"app"`) && strings.Contains(canonical, `"label"`) {
		t.Errorf("the short secret hid an ordinary value:\n%s", text.String())
	}
	withDrift := summaryOf(t, plan(`,"resource_drift":[{"address":"t.y","mode":"managed","type":"t","name":"y","provider_name":"p",
	  "change":{"actions":["update"],"before":{"s":"old"},"after":{"s":"x"},"before_sensitive":{},"after_sensitive":{"s":true}}}]`))
	if withDrift.Digest() != s.Digest() {
		t.Error("a secret seen only in drift changed the digest")
	}
}

func TestParseRefusesWhatItCannotCertify(t *testing.T) {
	tests := []struct{ name, input, wantMsg string }{
		{"action invocations", `{"format_version":"1.2","resource_changes":[],"action_invocations":[{"address":"action.aws_lambda_invoke.x"}]}`, "Terraform actions"},
		{"deferred changes", `{"format_version":"1.2","resource_changes":[],"deferred_changes":[{"reason":"resource_config_unknown"}]}`, "defers changes"},
		{"incomplete", `{"format_version":"1.2","resource_changes":[],"complete":false}`, "incomplete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := planparse.Parse(strings.NewReader(tt.input), testOptions)
			if !errors.Is(err, planparse.ErrUnsupported) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %v, want ErrUnsupported saying %q", err, tt.wantMsg)
			}
		})
	}
	for _, ok := range []string{
		`{"format_version":"1.2","resource_changes":[],"action_invocations":[],"deferred_changes":null,"complete":true,"applyable":false}`,
	} {
		if _, err := planparse.Parse(strings.NewReader(ok), testOptions); err != nil {
			t.Errorf("refused %s: %v", ok, err)
		}
	}
}

func TestParseHostileShapes(t *testing.T) {
	deep := `{"format_version":"1.2","planned_values":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `,"resource_changes":[]}`
	if _, err := planparse.Parse(strings.NewReader(deep), testOptions); !errors.Is(err, planparse.ErrMalformed) || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep nesting: %v", err)
	}
	wide := oneChange(`{"actions":["update"],"before":{"l":[]},"after":{"l":[` + strings.Repeat("0,", 200000) + `0]}}`)
	opts := planparse.Options{SensitiveKey: testKey, MaxChangeBytes: 64 << 10}
	if _, err := planparse.Parse(strings.NewReader(wide), opts); !errors.Is(err, planparse.ErrTooLarge) || !strings.Contains(err.Error(), "single change") {
		t.Errorf("wide change: %v", err)
	}
	if _, err := planparse.Parse(strings.NewReader(wide), testOptions); err != nil {
		t.Errorf("the same change under the default limit: %v", err)
	}
}

func TestParseEncodings(t *testing.T) {
	valid := readFile(t, "testdata/plans/update.json")
	withBOM := append([]byte("\xef\xbb\xbf"), valid...)
	if digestOf(t, withBOM) != digestOf(t, valid) {
		t.Error("a UTF-8 byte order mark changed the digest")
	}
	utf16 := []byte("\xff\xfe{\x00}\x00")
	if _, err := planparse.Parse(bytes.NewReader(utf16), testOptions); !errors.Is(err, planparse.ErrNotJSON) || !strings.Contains(err.Error(), "UTF-16") {
		t.Errorf("UTF-16: %v", err)
	}
}

func TestSensitivityUnmarked(t *testing.T) {
	old, err := planparse.Parse(strings.NewReader(`{"format_version":"0.1","planned_values":{}}`), testOptions)
	if err != nil || !old.SensitivityUnmarked {
		t.Errorf("format 0.1: %+v, %v", old, err)
	}
	current, err := planparse.Parse(strings.NewReader(`{"format_version":"1.2","planned_values":{}}`), testOptions)
	if err != nil || current.SensitivityUnmarked {
		t.Errorf("format 1.2: %+v, %v", current, err)
	}
}

func TestRenderEscapesControlCharacters(t *testing.T) {
	s := summaryOf(t, `{"format_version":"1.2","resource_changes":[{"address":"t.x[\"\u001b[2Jboom\"]","mode":"managed","type":"t","name":"x","index":"\u001b[2Jboom","provider_name":"p",
	  "change":{"actions":["create"],"after":{"v":"\u009b31m red"}}}]}`)
	var text bytes.Buffer
	planparse.Render(&text, s, planparse.RenderOptions{})
	if strings.ContainsAny(text.String(), "\x1b\u009b") {
		t.Errorf("rendering holds raw control characters: %q", text.String())
	}
}

func TestSummaryValueMarshalsCanonically(t *testing.T) {
	s := summaryOf(t, string(readFile(t, "testdata/plans/update.json")))
	byValue, err := json.Marshal(*s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(byValue, s.Canonical()) {
		t.Errorf("json.Marshal of a Summary value is not canonical:\n%s", byValue)
	}
}

package web

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

type fuzzRequest struct {
	Bundle    []byte            `json:"bundle"`
	Vars      map[string]string `json:"vars"`
	Rationale string            `json:"rationale"`
	Plan      json.RawMessage   `json:"plan,omitempty"`
}

// FuzzUnknownMember holds the allocation-free scan for unknown members
// against encoding/json's own DisallowUnknownFields, on every input both
// can read.
func FuzzUnknownMember(f *testing.F) {
	for _, seed := range []string{
		`{"bundle":"AAAA","vars":{"a":"b"},"rationale":"x","plan":{"k":[1,"}",{"x":"\""}]}}`,
		`{"bundle":"AAAA","extra":1}`,
		`{"Bundle":"AAAA"}`,
		`{"bun\u0064le":"AAAA","r\u0061tionale":"x"}`,
		`{"plan":[{"a":"]}"}],"evil":null}`,
		` { "vars" : { } , "x" : true } `,
		`null`,
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v fuzzRequest
		if json.Unmarshal(data, &v) != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		err := dec.Decode(&fuzzRequest{})
		want := err != nil && strings.Contains(err.Error(), "unknown field")
		name, got := unknownMember(data, jsonNames(&v))
		if got != want {
			t.Errorf("%q: unknownMember says %v (%q), encoding/json %v (%v)", data, got, name, want, err)
		}
	})
}

// TestVarsJSON: each JSON form of a variable becomes the text Terraform
// reads for a variable of that type.
func TestVarsJSON(t *testing.T) {
	var v varsJSON
	err := json.Unmarshal([]byte(`{"s":"a \"b\"","n":5,"f":1.5e3,"b":true,"l":["x", 1],"o":{"k" : "v"}}`), &v)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"s": `a "b"`, "n": "5", "f": "1.5e3", "b": "true", "l": `["x",1]`, "o": `{"k":"v"}`}
	for name, value := range want {
		if v[name] != value {
			t.Errorf("%s = %q, want %q", name, v[name], value)
		}
	}
	if err := json.Unmarshal([]byte(`{"x":null}`), &v); err == nil || !strings.Contains(err.Error(), "variable x is null") {
		t.Errorf("null: %v", err)
	}
}

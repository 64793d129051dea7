package planparse

import (
	"encoding/json"
	"math"
	"math/big"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
)

func TestCanonicalNumber(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "integer", in: "3", want: "3"},
		{name: "zero", in: "0", want: "0"},
		{name: "negative zero", in: "-0", want: "0"},
		{name: "zero with fraction", in: "0.000", want: "0"},
		{name: "trailing zeros", in: "1.500", want: "1.5"},
		{name: "integer with fraction", in: "1.0", want: "1"},
		{name: "exponent", in: "1e0", want: "1"},
		{name: "upper exponent", in: "10E-1", want: "1"},
		{name: "positive exponent sign", in: "2.5e+2", want: "250"},
		{name: "negative", in: "-12.50", want: "-12.5"},
		{name: "small", in: "0.000001", want: "0.000001"},
		{name: "smaller goes exponential", in: "0.0000001", want: "1e-7"},
		{name: "large", in: "100000000000000000000", want: "100000000000000000000"},
		{name: "larger goes exponential", in: "1000000000000000000000", want: "1e+21"},
		{name: "exponential with digits", in: "1.25e30", want: "1.25e+30"},
		{name: "beyond float64 precision stays exact", in: "9007199254740993", want: "9007199254740993"},
		{name: "long decimal stays exact", in: "0.10000000000000001", want: "0.10000000000000001"},
		{name: "beyond float64 range", in: "1e400", want: "1e+400"},
		{name: "leading zero", in: "01", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "dot only", in: "1.", wantErr: true},
		{name: "exponent only", in: "1e", wantErr: true},
		{name: "letters", in: "NaN", wantErr: true},
		{name: "plus sign", in: "+1", wantErr: true},
		{name: "absurd exponent", in: "1e99999999999", wantErr: true},
		{name: "overflowing exponent", in: "1e999999999999999999999999", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := canonicalNumber(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("canonicalNumber(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("canonicalNumber(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestCanonicalNumberMatchesJCS checks that every double is laid out exactly
// as RFC 8785 lays it out: seb departs from JCS only for numbers a double
// cannot hold.
func TestCanonicalNumberMatchesJCS(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []float64{0, 1, -1, 0.1, 1e21, 1e-7, 123456789012345680000, 5e-324, math.MaxFloat64, 1.5e300, 333333333.3333333}
	for range 5000 {
		values = append(values, math.Float64frombits(r.Uint64()))
		values = append(values, float64(r.IntN(1_000_000))/float64(1+r.IntN(1000)))
	}
	for _, f := range values {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		spelled := strconv.FormatFloat(f, 'g', -1, 64)
		got, err := canonicalNumber(spelled)
		if err != nil {
			t.Fatalf("canonicalNumber(%s): %v", spelled, err)
		}
		want, err := jcs.Transform([]byte(spelled))
		if err != nil {
			t.Fatalf("jcs(%s): %v", spelled, err)
		}
		if got != string(want) {
			t.Errorf("%s: seb %s, JCS %s", spelled, got, want)
		}
	}
}

func TestAppendStringMatchesJCS(t *testing.T) {
	strs := []string{"", "plain", `quote " and \ backslash`, "\x00\x01\x1f\x7f", "\b\t\n\f\r", "<>&", "\u2028\u2029", "é日本🙂", "\ufeff"}
	for _, s := range strs {
		got := appendString(nil, s)
		encoded, _ := json.Marshal(s)
		want, err := jcs.Transform(encoded)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%q: seb %s, JCS %s", s, got, want)
		}
	}
}

func TestLessUTF16(t *testing.T) {
	// RFC 8785 section 3.2.3's example order, plus a supplementary-plane
	// character that sorts before U+FB33 in UTF-16 but after it by code point.
	want := []string{"\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001F600", "\ufb33"}
	got := append([]string(nil), want...)
	rand.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
	sort.Slice(got, func(i, j int) bool { return lessUTF16(got[i], got[j]) })
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sorted %q, want %q", got, want)
		}
	}
	if lessUTF16("a", "a") || !lessUTF16("a", "ab") || lessUTF16("ab", "a") {
		t.Error("prefix order wrong")
	}
}

// TestValueEncodingMatchesJCS encodes random value trees (without markers,
// whose "$" members JCS treats like any other) and checks the bytes are a
// fixed point of JCS.
func TestValueEncodingMatchesJCS(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	keys := []string{"a", "B", "é", "\U0001F600", "\ufb33", "$x", "", "10", "1"}
	var gen func(depth int) any
	gen = func(depth int) any {
		switch n := r.IntN(7); {
		case n == 0:
			return nil
		case n == 1:
			return r.IntN(2) == 0
		case n == 2:
			return keys[r.IntN(len(keys))] + "\n\"x"
		case n == 3:
			c, _ := canonicalNumber(strconv.FormatFloat(r.NormFloat64()*math.Pow(10, float64(r.IntN(40)-20)), 'g', -1, 64))
			return json.Number(c)
		case n == 4 && depth < 4:
			l := make([]any, r.IntN(4))
			for i := range l {
				l[i] = gen(depth + 1)
			}
			return l
		case depth < 4:
			m := map[string]any{}
			for range r.IntN(5) {
				m[keys[r.IntN(len(keys))]] = gen(depth + 1)
			}
			o, _ := objectFrom(m, func(v any) (any, error) { return v, nil })
			return o
		}
		return "leaf"
	}
	for range 2000 {
		v := gen(0)
		got := appendValue(nil, v)
		want, err := jcs.Transform(got)
		if err != nil {
			t.Fatalf("jcs(%s): %v", got, err)
		}
		if string(got) != string(want) {
			t.Fatalf("not canonical:\nseb %s\nJCS %s", got, want)
		}
	}
}

func TestMarkersCannotBeForged(t *testing.T) {
	real := Object{{Name: "$unknown", Value: true}}
	if string(appendValue(nil, real)) == string(appendValue(nil, Unknown{})) {
		t.Fatal("an object with a $unknown member encodes like the unknown marker")
	}
	back, err := decodeValue(mustDecode(t, appendValue(nil, real)))
	if err != nil {
		t.Fatal(err)
	}
	if !equalValues(back, real) {
		t.Errorf("round trip gave %#v", back)
	}
	for _, v := range []any{Unknown{}, Sensitive{Digest: "hmac-sha256:00"}} {
		back, err := decodeValue(mustDecode(t, appendValue(nil, v)))
		if err != nil || back != v {
			t.Errorf("marker %#v round trip gave %#v, %v", v, back, err)
		}
	}
}

func mustDecode(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzCanonicalNumber: whatever canonicalNumber accepts it turns into a JSON
// number with exactly the same value, and canonical spellings are fixed
// points.
func FuzzCanonicalNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.50", "1e400", "9007199254740993", "0.0000001", "-12.5E-3", "01", "1e99999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := canonicalNumber(s)
		if err != nil {
			return
		}
		if !json.Valid([]byte(got)) {
			t.Fatalf("canonicalNumber(%q) = %q, not a JSON number", s, got)
		}
		again, err := canonicalNumber(got)
		if err != nil || again != got {
			t.Fatalf("canonicalNumber(%q) = %q, but canonicalNumber(%q) = %q, %v", s, got, got, again, err)
		}
		if len(s) > 200 || strings.ContainsAny(s, "eE") {
			return // keep big.Rat cheap
		}
		in, ok1 := new(big.Rat).SetString(s)
		out, ok2 := new(big.Rat).SetString(got)
		if !ok1 || !ok2 || in.Cmp(out) != 0 {
			t.Fatalf("canonicalNumber(%q) = %q changes the value", s, got)
		}
	})
}

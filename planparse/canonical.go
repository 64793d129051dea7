package planparse

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Canonical JSON.
//
// The summary serializes as RFC 8785 (JSON Canonicalization Scheme) JSON:
// object members sorted by the UTF-16 code units of their names, no
// insignificant whitespace, strings with the minimal escaping JCS requires,
// and numbers in the ECMAScript Number-to-String layout.
//
// One deliberate extension: JCS reads every number as an IEEE double, so two
// numbers that round to the same double (2^53 and 2^53+1, or 0.1 and
// 0.10000000000000001) would serialize alike. Terraform numbers are
// arbitrary-precision decimals, and seb must tell those plans apart. seb
// therefore lays out the exact decimal value of each number with the
// ECMAScript rules. For every number that is the shortest round-trip form of a
// double — everything Terraform writes for ordinary values — the bytes are
// identical to JCS (the tests use github.com/gowebpki/jcs as the oracle).

// maxExponent bounds the decimal exponent seb accepts in a number. Terraform
// never writes anything close; the bound keeps hostile input cheap.
const maxExponent = 1 << 20

// canonicalNumber returns the canonical spelling of the JSON number s:
// "1.0", "1", "1e0" and "10E-1" all become "1"; "-0" becomes "0".
// It returns an error when s is not a JSON number or its exponent is absurd.
func canonicalNumber(s string) (string, error) {
	neg, digits, exp, err := decimalParts(s)
	if err != nil {
		return "", err
	}
	if digits == "" {
		return "0", nil
	}
	// The value is 0.digits × 10^n, with digits free of leading and
	// trailing zeros: the (k, n) of ECMAScript's Number::toString.
	n := exp + len(digits)
	k := len(digits)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case k <= n && n <= 21:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", n-k))
	case 0 < n && n <= 21:
		b.WriteString(digits[:n])
		b.WriteByte('.')
		b.WriteString(digits[n:])
	case -6 < n && n <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -n))
		b.WriteString(digits)
	default:
		b.WriteByte(digits[0])
		if k > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		if n-1 >= 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.Itoa(n - 1))
	}
	return b.String(), nil
}

// decimalParts splits a JSON number into its sign, its significant digits
// (no leading or trailing zeros; empty for zero) and the exponent that makes
// value = digits × 10^exp.
func decimalParts(s string) (neg bool, digits string, exp int, err error) {
	bad := func() (bool, string, int, error) {
		return false, "", 0, fmt.Errorf("invalid number %q", truncateForError(s))
	}
	i := 0
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	intPart := s[start:i]
	if intPart == "" || (len(intPart) > 1 && intPart[0] == '0') {
		return bad()
	}
	var frac string
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		frac = s[fs:i]
		if frac == "" {
			return bad()
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		es := i
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		ds := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if ds == i {
			return bad()
		}
		e, perr := strconv.ParseInt(s[es:i], 10, 64)
		if perr != nil || e > maxExponent || e < -maxExponent {
			return false, "", 0, fmt.Errorf("number %q is out of range", truncateForError(s))
		}
		exp = int(e)
	}
	if i != len(s) {
		return bad()
	}
	all := intPart + frac
	exp -= len(frac)
	trimmed := strings.TrimLeft(all, "0")
	if trimmed == "" {
		return false, "", 0, nil
	}
	end := len(trimmed)
	for end > 0 && trimmed[end-1] == '0' {
		end--
	}
	exp += len(trimmed) - end
	return neg, trimmed[:end], exp, nil
}

func truncateForError(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// appendString appends s as a JCS string literal.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"':
				buf = append(buf, '\\', '"')
			case c == '\\':
				buf = append(buf, '\\', '\\')
			case c >= 0x20:
				buf = append(buf, c)
			case c == '\b':
				buf = append(buf, '\\', 'b')
			case c == '\t':
				buf = append(buf, '\\', 't')
			case c == '\n':
				buf = append(buf, '\\', 'n')
			case c == '\f':
				buf = append(buf, '\\', 'f')
			case c == '\r':
				buf = append(buf, '\\', 'r')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			// Invalid UTF-8 cannot come out of encoding/json; write the
			// replacement character as the decoder would.
			buf = utf8.AppendRune(buf, utf8.RuneError)
		} else {
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}

const hexDigits = "0123456789abcdef"

// lessUTF16 orders strings by their UTF-16 code units, as RFC 8785 sorts
// object member names.
func lessUTF16(a, b string) bool {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			ua, ub := utf16Units(ra), utf16Units(rb)
			if ua != ub {
				return ua < ub
			}
			// Same leading surrogate; the trailing one decides.
			return utf16Trail(ra) < utf16Trail(rb)
		}
		a, b = a[na:], b[nb:]
	}
	return a == "" && b != ""
}

func utf16Units(r rune) rune {
	if r >= 0x10000 {
		hi, _ := utf16.EncodeRune(r)
		return hi
	}
	return r
}

func utf16Trail(r rune) rune {
	if r >= 0x10000 {
		_, lo := utf16.EncodeRune(r)
		return lo
	}
	return 0
}

// escapeKey keeps real object members apart from seb's value markers:
// a member name that starts with "$" gets one more "$".
func escapeKey(k string) string {
	if strings.HasPrefix(k, "$") {
		return "$" + k
	}
	return k
}

func unescapeKey(k string) (string, bool) {
	if strings.HasPrefix(k, "$$") {
		return k[1:], true
	}
	if strings.HasPrefix(k, "$") {
		return "", false
	}
	return k, true
}

const (
	unknownKey   = "$unknown"
	sensitiveKey = "$sensitive"
	absentKey    = "$absent"
)

// appendValue appends v, a value tree as produced by this package (nil,
// bool, string, json.Number in canonical form, []any, Object, Unknown,
// Sensitive, Absent), as canonical JSON.
func appendValue(buf []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(buf, "null"...)
	case bool:
		return strconv.AppendBool(buf, v)
	case string:
		return appendString(buf, v)
	case json.Number:
		return append(buf, v...)
	case []any:
		buf = append(buf, '[')
		for i, e := range v {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendValue(buf, e)
		}
		return append(buf, ']')
	case Object:
		// Escaping keeps the order: it only lengthens names that start
		// with "$", and those already sort among themselves.
		buf = append(buf, '{')
		for i, m := range v {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, escapeKey(m.Name))
			buf = append(buf, ':')
			buf = appendValue(buf, m.Value)
		}
		return append(buf, '}')
	case Unknown:
		return append(buf, `{"`+unknownKey+`":true}`...)
	case Absent:
		return append(buf, `{"`+absentKey+`":true}`...)
	case Sensitive:
		buf = append(buf, `{"`+sensitiveKey+`":`...)
		buf = appendString(buf, v.Digest)
		return append(buf, '}')
	default:
		// Values come only from this package's own decoding; anything else
		// is a programming error that must not yield a quiet digest.
		panic(fmt.Sprintf("planparse: cannot encode %T", v))
	}
}

// normalizeValue turns a value decoded by encoding/json with UseNumber into
// this package's value tree: numbers in canonical form, objects as sorted
// Objects. Lists are rewritten in place. It returns an error for a number
// it cannot accept.
func normalizeValue(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		c, err := canonicalNumber(string(v))
		if err != nil {
			return nil, err
		}
		return json.Number(c), nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, errors.New("number is not finite")
		}
		c, err := canonicalNumber(strconv.FormatFloat(v, 'g', -1, 64))
		if err != nil {
			return nil, err
		}
		return json.Number(c), nil
	case []any:
		for i, e := range v {
			n, err := normalizeValue(e)
			if err != nil {
				return nil, err
			}
			v[i] = n
		}
		return v, nil
	case map[string]any:
		return objectFrom(v, normalizeValue)
	default:
		return v, nil
	}
}

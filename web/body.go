package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/seb-broker/seb/broker"
)

// bindLarge decodes a large JSON body — a proposal or a plan request, up
// to MaxBundleBytes — as strictly as bind, with as few copies as it can:
// the body is read once into a buffer of its declared size and decoded
// from there (a []byte field is base64-decoded straight into its bytes,
// with no string in between), and unknown members are found by a scan
// that allocates nothing. A body costs about its size plus its decoded
// bundle in memory, instead of three or four times its size.
func bindLarge(c echo.Context, v any) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "send JSON with Content-Type: application/json")
	}
	r := c.Request()
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(r.Body); err != nil {
		if tooLarge(err) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return broker.Errorf(broker.EINVALID, "request body: %v", err)
	}
	data := buf.Bytes()
	if err := checkUTF8(data); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return broker.Errorf(broker.EINVALID, "request body: %v", err)
	}
	if name, ok := unknownMember(data, jsonNames(v)); ok {
		return broker.Errorf(broker.EINVALID, "request body: json: unknown field %q", name)
	}
	return nil
}

// jsonNames returns the JSON member names of the struct v points to.
func jsonNames(v any) []string {
	t := reflect.TypeOf(v).Elem()
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// unknownMember returns the first member of the top-level object of
// data, valid JSON, whose name is not one of known (compared without
// case, as encoding/json matches them). It allocates only for a name
// spelled with escapes.
func unknownMember(data []byte, known []string) (string, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return "", false
	}
	i++
	for {
		i = skipSpace(data, i)
		if i >= len(data) || data[i] == '}' {
			return "", false
		}
		if data[i] == ',' {
			i++
			continue
		}
		end := endOfString(data, i)
		raw := data[i:end]
		var name string
		if bytes.IndexByte(raw, '\\') < 0 {
			name = string(raw[1 : len(raw)-1])
		} else if err := json.Unmarshal(raw, &name); err != nil {
			return string(raw), true
		}
		found := false
		for _, k := range known {
			if strings.EqualFold(k, name) {
				found = true
				break
			}
		}
		if !found {
			return name, true
		}
		i = skipSpace(data, end) + 1 // the colon
		i = skipValue(data, skipSpace(data, i))
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// endOfString returns the index just after the string starting at i.
func endOfString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

// skipValue returns the index just after the value starting at i.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return endOfString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = endOfString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(data) && !strings.ContainsRune(",}] \t\r\n", rune(data[i])) {
		i++
	}
	return i
}

// varsJSON are a request's Terraform variables: each a JSON string, passed
// as it is, or a number, boolean, list or object, passed as its compact
// JSON text, which Terraform reads for a variable of that type.
type varsJSON map[string]string

func (v *varsJSON) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	out := make(varsJSON, len(raw))
	for name, value := range raw {
		value = bytes.TrimSpace(value)
		switch {
		case string(value) == "null":
			return fmt.Errorf("variable %s is null: leave it out to use its default", name)
		case len(value) > 0 && value[0] == '"':
			var s string
			if err := json.Unmarshal(value, &s); err != nil {
				return err
			}
			out[name] = s
		default:
			var compact bytes.Buffer
			if err := json.Compact(&compact, value); err != nil {
				return err
			}
			out[name] = compact.String()
		}
	}
	*v = out
	return nil
}

// checkUTF8 refuses a body that is not UTF-8, which encoding/json would
// otherwise mend silently with U+FFFD.
func checkUTF8(data []byte) error {
	if utf8.Valid(data) {
		return nil
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return broker.Errorf(broker.EINVALID, "request body: not valid UTF-8 at byte %d", i)
		}
		i += size
	}
	return nil
}

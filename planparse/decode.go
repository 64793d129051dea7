package planparse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// MarshalJSON writes the summary's canonical JSON.
func (s Summary) MarshalJSON() ([]byte, error) { return s.Canonical(), nil }

// MarshalJSON writes the resource change as it appears in canonical JSON.
func (r ResourceChange) MarshalJSON() ([]byte, error) { return r.appendCanonical(nil), nil }

// MarshalJSON writes the output change as it appears in canonical JSON.
func (o OutputChange) MarshalJSON() ([]byte, error) { return o.appendCanonical(nil), nil }

// MarshalJSON writes the attribute change as it appears in canonical JSON.
func (c AttributeChange) MarshalJSON() ([]byte, error) {
	buf := append([]byte(`{"after":`), appendValue(nil, c.After)...)
	buf = append(buf, `,"before":`...)
	buf = appendValue(buf, c.Before)
	buf = append(buf, `,"path":`...)
	buf = appendPath(buf, c.Path)
	return append(buf, '}'), nil
}

// MarshalJSON writes the absent marker.
func (Absent) MarshalJSON() ([]byte, error) { return appendValue(nil, Absent{}), nil }

// MarshalJSON writes the unknown marker.
func (Unknown) MarshalJSON() ([]byte, error) { return appendValue(nil, Unknown{}), nil }

// MarshalJSON writes the sensitive marker with its digest.
func (s Sensitive) MarshalJSON() ([]byte, error) { return appendValue(nil, s), nil }

// summaryJSON mirrors the canonical layout for decoding.
type summaryJSON struct {
	Version   *int             `json:"version"`
	Resources []ResourceChange `json:"resources"`
	Outputs   []struct {
		Name   string `json:"name"`
		Action Action `json:"action"`
		Before any    `json:"before"`
		After  any    `json:"after"`
	} `json:"outputs"`
}

// resourceJSON mirrors a resource change's canonical layout for decoding.
type resourceJSON struct {
	Address         string       `json:"address"`
	PreviousAddress string       `json:"previous_address"`
	ModuleAddress   string       `json:"module_address"`
	Mode            string       `json:"mode"`
	Type            string       `json:"type"`
	Name            string       `json:"name"`
	Index           any          `json:"index"`
	Deposed         string       `json:"deposed"`
	Provider        string       `json:"provider"`
	Action          Action       `json:"action"`
	ReplaceOrder    ReplaceOrder `json:"replace_order"`
	ActionReason    string       `json:"action_reason"`
	ReplacePaths    [][]any      `json:"replace_paths"`
	Importing       *struct {
		ID       string `json:"id"`
		Identity any    `json:"identity"`
	} `json:"importing"`
	Changes []attributeJSON `json:"changes"`
}

// UnmarshalJSON reads a resource change written by MarshalJSON and
// validates it.
func (rc *ResourceChange) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var r resourceJSON
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("resource change: %w", err)
	}
	out := ResourceChange{
		Address: r.Address, PreviousAddress: r.PreviousAddress, ModuleAddress: r.ModuleAddress,
		Mode: r.Mode, Type: r.Type, Name: r.Name, Index: r.Index, Deposed: r.Deposed,
		Provider: r.Provider, Action: r.Action, ReplaceOrder: r.ReplaceOrder,
		ActionReason: r.ActionReason,
		Changes:      make([]AttributeChange, 0, len(r.Changes)),
	}
	if r.Importing != nil {
		identity, err := decodeValue(r.Importing.Identity)
		if err != nil {
			return fmt.Errorf("%s: import identity: %w", r.Address, err)
		}
		out.Importing = &Import{ID: r.Importing.ID, Identity: identity}
	}
	for _, p := range r.ReplacePaths {
		path, err := decodePath(p)
		if err != nil {
			return fmt.Errorf("%s: replace path: %w", r.Address, err)
		}
		out.ReplacePaths = append(out.ReplacePaths, path)
	}
	for _, c := range r.Changes {
		ac, err := decodeAttribute(c)
		if err != nil {
			return fmt.Errorf("%s: %w", r.Address, err)
		}
		out.Changes = append(out.Changes, ac)
	}
	if err := out.validate(); err != nil {
		return err
	}
	*rc = out
	return nil
}

type attributeJSON struct {
	Path   []any `json:"path"`
	Before any   `json:"before"`
	After  any   `json:"after"`
}

// UnmarshalJSON reads a summary written by MarshalJSON (in any key order or
// spacing) and validates it. It returns an error for unknown members, a
// different summary version, or anything Validate refuses.
func (s *Summary) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var raw summaryJSON
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	if raw.Version == nil || *raw.Version != SummaryVersion {
		return fmt.Errorf("summary: version is not %d", SummaryVersion)
	}
	out := Summary{Resources: make([]ResourceChange, 0, len(raw.Resources)), Outputs: make([]OutputChange, 0, len(raw.Outputs))}
	out.Resources = append(out.Resources, raw.Resources...)
	for _, o := range raw.Outputs {
		before, err := decodeValue(o.Before)
		if err != nil {
			return fmt.Errorf("summary: output %s: before: %w", o.Name, err)
		}
		after, err := decodeValue(o.After)
		if err != nil {
			return fmt.Errorf("summary: output %s: after: %w", o.Name, err)
		}
		out.Outputs = append(out.Outputs, OutputChange{Name: o.Name, Action: o.Action, Before: before, After: after})
	}
	if err := out.Validate(); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	*s = out
	return nil
}

// UnmarshalJSON reads an attribute change written by MarshalJSON, so that
// a stored Divergence reads back with its markers and exact numbers.
func (c *AttributeChange) UnmarshalJSON(data []byte) error {
	var raw attributeJSON
	if err := strictDecode(data, &raw); err != nil {
		return fmt.Errorf("attribute change: %w", err)
	}
	ac, err := decodeAttribute(raw)
	if err != nil {
		return err
	}
	*c = ac
	return nil
}

// UnmarshalJSON reads an output change written by MarshalJSON.
func (o *OutputChange) UnmarshalJSON(data []byte) error {
	var raw struct {
		Name   string `json:"name"`
		Action Action `json:"action"`
		Before any    `json:"before"`
		After  any    `json:"after"`
	}
	if err := strictDecode(data, &raw); err != nil {
		return fmt.Errorf("output change: %w", err)
	}
	before, err := decodeValue(raw.Before)
	if err != nil {
		return fmt.Errorf("output %s: before: %w", raw.Name, err)
	}
	after, err := decodeValue(raw.After)
	if err != nil {
		return fmt.Errorf("output %s: after: %w", raw.Name, err)
	}
	*o = OutputChange{Name: raw.Name, Action: raw.Action, Before: before, After: after}
	return nil
}

// UnmarshalJSON reads a path written by MarshalJSON: list indexes come
// back as ints, not floats.
func (p *Path) UnmarshalJSON(data []byte) error {
	var steps []any
	if err := strictDecode(data, &steps); err != nil {
		return fmt.Errorf("path: %w", err)
	}
	path, err := decodePath(steps)
	if err != nil {
		return fmt.Errorf("path: %w", err)
	}
	*p = path
	return nil
}

// strictDecode decodes data into v keeping numbers exact and refusing
// unknown members.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func decodeAttribute(c attributeJSON) (AttributeChange, error) {
	path, err := decodePath(c.Path)
	if err != nil {
		return AttributeChange{}, fmt.Errorf("path: %w", err)
	}
	before, err := decodeValue(c.Before)
	if err != nil {
		return AttributeChange{}, fmt.Errorf("%s: before: %w", path, err)
	}
	after, err := decodeValue(c.After)
	if err != nil {
		return AttributeChange{}, fmt.Errorf("%s: after: %w", path, err)
	}
	return AttributeChange{Path: path, Before: before, After: after}, nil
}

// decodePath converts decoded JSON path steps (strings and non-negative
// integers) into a Path.
func decodePath(steps []any) (Path, error) {
	p := make(Path, len(steps))
	for i, st := range steps {
		switch st := st.(type) {
		case string:
			p[i] = st
		case json.Number:
			n, err := strconv.ParseInt(st.String(), 10, 32)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("step %q is not a list index", st.String())
			}
			p[i] = int(n)
		default:
			return nil, fmt.Errorf("step of type %T", st)
		}
	}
	return p, nil
}

// decodeValue turns a decoded canonical value back into a value tree:
// markers become Unknown and Sensitive, escaped member names lose their
// extra "$".
func decodeValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 1 {
			if u, ok := v[unknownKey]; ok {
				if b, ok := u.(bool); !ok || !b {
					return nil, fmt.Errorf("malformed unknown marker")
				}
				return Unknown{}, nil
			}
			if a, ok := v[absentKey]; ok {
				if b, ok := a.(bool); !ok || !b {
					return nil, fmt.Errorf("malformed absent marker")
				}
				return Absent{}, nil
			}
			if s, ok := v[sensitiveKey]; ok {
				digest, ok := s.(string)
				if !ok {
					return nil, fmt.Errorf("malformed sensitive marker")
				}
				return Sensitive{Digest: digest}, nil
			}
		}
		out := make(Object, 0, len(v))
		for k, e := range v {
			name, ok := unescapeKey(k)
			if !ok {
				return nil, fmt.Errorf("unexpected marker %q", k)
			}
			d, err := decodeValue(e)
			if err != nil {
				return nil, err
			}
			out = append(out, Member{Name: name, Value: d})
		}
		sortMembers(out)
		return out, nil
	case []any:
		for i, e := range v {
			d, err := decodeValue(e)
			if err != nil {
				return nil, err
			}
			v[i] = d
		}
		return v, nil
	default:
		return v, nil
	}
}

package planparse

import (
	"encoding/json"
	"sort"
)

// Values in a summary are nil, bool, string, json.Number (in canonical
// form), []any, Object, Unknown or Sensitive.

// An Object is a JSON object value: its members sorted by name in UTF-16
// code unit order (the order of canonical JSON), names unique. A sorted
// slice takes a fraction of a map's memory, compares in one pass and
// encodes without sorting.
type Object []Member

// A Member is one name and value of an Object.
type Member struct {
	Name  string
	Value any
}

// Get returns the value of the member name and whether it exists.
func (o Object) Get(name string) (any, bool) {
	i := sort.Search(len(o), func(i int) bool { return !lessUTF16(o[i].Name, name) })
	if i < len(o) && o[i].Name == name {
		return o[i].Value, true
	}
	return nil, false
}

// sortMembers sorts o by name.
func sortMembers(o Object) {
	sort.Slice(o, func(i, j int) bool { return lessUTF16(o[i].Name, o[j].Name) })
}

// objectFrom converts a decoded JSON object into an Object, converting its
// values with convert.
func objectFrom(m map[string]any, convert func(any) (any, error)) (Object, error) {
	o := make(Object, 0, len(m))
	for k, v := range m {
		c, err := convert(v)
		if err != nil {
			return nil, err
		}
		o = append(o, Member{Name: k, Value: c})
	}
	sortMembers(o)
	return o, nil
}

// MarshalJSON writes the object as canonical JSON.
func (o Object) MarshalJSON() ([]byte, error) { return appendValue(nil, o), nil }

var _ json.Marshaler = Object(nil)

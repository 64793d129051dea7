package planparse

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// SummaryVersion is the version of the summary layout. It is part of the
// canonical bytes, so a change of layout can never collide with an old digest.
const SummaryVersion = 1

// A Summary is the canonical resource-diff summary of a plan: every resource
// change that is not a no-op, sorted by address, and every output change.
// Its canonical JSON (see Canonical) is what certificates bind.
type Summary struct {
	Resources []ResourceChange `json:"resources"`
	Outputs   []OutputChange   `json:"outputs"`
}

// An Action is a normalized resource or output action.
type Action string

// The actions a summary can hold. A replacement is ActionReplace with a
// ReplaceOrder. ActionNoOp appears only for a resource that is moved or
// imported without other change, because that still changes state.
const (
	ActionCreate  Action = "create"
	ActionRead    Action = "read"
	ActionUpdate  Action = "update"
	ActionDelete  Action = "delete"
	ActionReplace Action = "replace"
	ActionForget  Action = "forget"
	ActionNoOp    Action = "no-op"
)

// A ReplaceOrder says which half of a replacement happens first.
type ReplaceOrder string

// The two replacement orders Terraform plans.
const (
	DeleteBeforeCreate  ReplaceOrder = "delete_before_create"
	CreateBeforeDestroy ReplaceOrder = "create_before_destroy"
)

// A ResourceChange is one resource instance's planned change.
type ResourceChange struct {
	Address         string       `json:"address"`
	PreviousAddress string       `json:"previous_address,omitempty"`
	ModuleAddress   string       `json:"module_address,omitempty"`
	Mode            string       `json:"mode"`
	Type            string       `json:"type"`
	Name            string       `json:"name"`
	Index           any          `json:"index,omitempty"` // json.Number or string; nil without count/for_each
	Deposed         string       `json:"deposed,omitempty"`
	Provider        string       `json:"provider"`
	Action          Action       `json:"action"`
	ReplaceOrder    ReplaceOrder `json:"replace_order,omitempty"`
	ActionReason    string       `json:"action_reason,omitempty"`
	ReplacePaths    []Path       `json:"replace_paths,omitempty"`
	Importing       *Import      `json:"importing,omitempty"`
	// Changes holds only the attributes whose value changes, sorted by path.
	Changes []AttributeChange `json:"changes"`
}

// An Import says that the change imports an existing object, by its id or
// by its identity (a value; nil when the id is used).
type Import struct {
	ID       string `json:"id,omitempty"`
	Identity any    `json:"identity,omitempty"`
}

// String names the imported object: its id, or its identity.
func (im *Import) String() string {
	if im.ID != "" || im.Identity == nil {
		return im.ID
	}
	return string(appendValue(nil, im.Identity))
}

func (im *Import) appendCanonical(buf []byte) []byte {
	buf = append(buf, '{')
	if im.ID != "" {
		buf = append(buf, `"id":`...)
		buf = appendString(buf, im.ID)
	}
	if im.Identity != nil {
		if im.ID != "" {
			buf = append(buf, ',')
		}
		buf = append(buf, `"identity":`...)
		buf = appendValue(buf, im.Identity)
	}
	return append(buf, '}')
}

// Key identifies a resource change within a summary: its address, plus the
// deposed key for a deposed object.
func (r ResourceChange) Key() string {
	if r.Deposed == "" {
		return r.Address
	}
	return r.Address + " (deposed " + r.Deposed + ")"
}

// An AttributeChange is one changed attribute: its path and its values before
// and after. Values are nil, bool, string, json.Number, []any, Object,
// Unknown, Sensitive or Absent.
type AttributeChange struct {
	Path   Path `json:"path"`
	Before any  `json:"before"`
	After  any  `json:"after"`
}

// An OutputChange is one root module output's planned change.
type OutputChange struct {
	Name   string `json:"name"`
	Action Action `json:"action"`
	Before any    `json:"before"`
	After  any    `json:"after"`
}

// Unknown marks a value that is known only after apply.
type Unknown struct{}

// Absent marks an object member that one side of a change does not have,
// as opposed to a member whose value is null.
type Absent struct{}

// Sensitive stands for a sensitive value: Digest is "hmac-sha256:<hex>" of
// the value's canonical JSON under the caller's key, never the value itself.
type Sensitive struct {
	Digest string
}

// A Path addresses an attribute inside a resource value. Each step is a
// string (object attribute or map key) or an int (list, tuple or set index).
type Path []any

// String renders p the way Terraform writes references: tags["Name"],
// rule[0].port. An empty path renders as "(value)".
func (p Path) String() string {
	if len(p) == 0 {
		return "(value)"
	}
	var b strings.Builder
	for i, step := range p {
		switch s := step.(type) {
		case int:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s))
			b.WriteByte(']')
		case string:
			if isIdentifier(s) {
				if i > 0 {
					b.WriteByte('.')
				}
				b.WriteString(s)
			} else {
				b.WriteByte('[')
				b.WriteString(strconv.Quote(s))
				b.WriteByte(']')
			}
		}
	}
	return b.String()
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case i > 0 && (r == '-' || (r >= '0' && r <= '9')):
		default:
			return false
		}
	}
	return true
}

func appendPath(buf []byte, p Path) []byte {
	buf = append(buf, '[')
	for i, step := range p {
		if i > 0 {
			buf = append(buf, ',')
		}
		switch s := step.(type) {
		case int:
			buf = strconv.AppendInt(buf, int64(s), 10)
		case string:
			buf = appendString(buf, s)
		default:
			panic(fmt.Sprintf("planparse: path step of type %T", step))
		}
	}
	return append(buf, ']')
}

func comparePaths(a, b Path) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := compareSteps(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// compareSteps orders indexes before names, indexes numerically and names by
// UTF-16 code units.
func compareSteps(a, b any) int {
	ai, aIsInt := a.(int)
	bi, bIsInt := b.(int)
	switch {
	case aIsInt && bIsInt:
		return ai - bi
	case aIsInt:
		return -1
	case bIsInt:
		return 1
	}
	as, bs := a.(string), b.(string)
	switch {
	case as == bs:
		return 0
	case lessUTF16(as, bs):
		return -1
	default:
		return 1
	}
}

// Canonical returns the summary's canonical JSON (RFC 8785 layout, see
// canonical.go): the bytes that Digest hashes and certificates carry.
func (s *Summary) Canonical() []byte {
	return s.appendCanonical(make([]byte, 0, 256*(len(s.Resources)+len(s.Outputs)+1)))
}

// Digest returns "sha256:<hex>" of the summary's canonical JSON. It hashes
// the canonical bytes entry by entry, never holding them all.
func (s *Summary) Digest() string {
	h := sha256.New()
	var buf []byte
	s.writeCanonical(func(chunk func([]byte) []byte) {
		buf = chunk(buf[:0])
		h.Write(buf)
	})
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func (s *Summary) appendCanonical(buf []byte) []byte {
	s.writeCanonical(func(chunk func([]byte) []byte) { buf = chunk(buf) })
	return buf
}

// writeCanonical produces the canonical JSON as a sequence of chunks, each
// appended by the function handed to emit. Member names are written in
// sorted order; the JCS fixed-point test guards it.
func (s *Summary) writeCanonical(emit func(chunk func([]byte) []byte)) {
	literal := func(text string) { emit(func(b []byte) []byte { return append(b, text...) }) }
	literal(`{"outputs":[`)
	for i := range s.Outputs {
		if i > 0 {
			literal(",")
		}
		emit(s.Outputs[i].appendCanonical)
	}
	literal(`],"resources":[`)
	for i := range s.Resources {
		if i > 0 {
			literal(",")
		}
		emit(s.Resources[i].appendCanonical)
	}
	literal(`],"version":` + strconv.Itoa(SummaryVersion) + `}`)
}

func (r *ResourceChange) appendCanonical(buf []byte) []byte {
	field := func(name string, first bool) {
		if !first {
			buf = append(buf, ',')
		}
		buf = appendString(buf, name)
		buf = append(buf, ':')
	}
	buf = append(buf, '{')
	field("action", true)
	buf = appendString(buf, string(r.Action))
	if r.ActionReason != "" {
		field("action_reason", false)
		buf = appendString(buf, r.ActionReason)
	}
	field("address", false)
	buf = appendString(buf, r.Address)
	field("changes", false)
	buf = append(buf, '[')
	for i, c := range r.Changes {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"after":`...)
		buf = appendValue(buf, c.After)
		buf = append(buf, `,"before":`...)
		buf = appendValue(buf, c.Before)
		buf = append(buf, `,"path":`...)
		buf = appendPath(buf, c.Path)
		buf = append(buf, '}')
	}
	buf = append(buf, ']')
	if r.Deposed != "" {
		field("deposed", false)
		buf = appendString(buf, r.Deposed)
	}
	if r.Importing != nil {
		field("importing", false)
		buf = r.Importing.appendCanonical(buf)
	}
	if r.Index != nil {
		field("index", false)
		buf = appendValue(buf, r.Index)
	}
	field("mode", false)
	buf = appendString(buf, r.Mode)
	if r.ModuleAddress != "" {
		field("module_address", false)
		buf = appendString(buf, r.ModuleAddress)
	}
	field("name", false)
	buf = appendString(buf, r.Name)
	if r.PreviousAddress != "" {
		field("previous_address", false)
		buf = appendString(buf, r.PreviousAddress)
	}
	field("provider", false)
	buf = appendString(buf, r.Provider)
	if r.ReplaceOrder != "" {
		field("replace_order", false)
		buf = appendString(buf, string(r.ReplaceOrder))
	}
	if len(r.ReplacePaths) > 0 {
		field("replace_paths", false)
		buf = append(buf, '[')
		for i, p := range r.ReplacePaths {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendPath(buf, p)
		}
		buf = append(buf, ']')
	}
	field("type", false)
	return append(appendString(buf, r.Type), '}')
}

func (o *OutputChange) appendCanonical(buf []byte) []byte {
	buf = append(buf, `{"action":`...)
	buf = appendString(buf, string(o.Action))
	buf = append(buf, `,"after":`...)
	buf = appendValue(buf, o.After)
	buf = append(buf, `,"before":`...)
	buf = appendValue(buf, o.Before)
	buf = append(buf, `,"name":`...)
	buf = appendString(buf, o.Name)
	return append(buf, '}')
}

// Validate reports whether s is well formed: entries sorted and unique,
// actions known, replacement orders only on replacements, paths and values
// of the kinds this package produces. A summary from Parse is always valid;
// Validate guards summaries read back from storage or the network.
func (s *Summary) Validate() error {
	for i := range s.Resources {
		r := &s.Resources[i]
		if r.Address == "" {
			return fmt.Errorf("resource %d: address is empty", i)
		}
		if i > 0 && !resourceLess(&s.Resources[i-1], r) {
			return fmt.Errorf("resource %s: resources are not sorted by address or are duplicated", r.Key())
		}
		if err := r.validate(); err != nil {
			return err
		}
	}
	for i := range s.Outputs {
		o := &s.Outputs[i]
		if o.Name == "" {
			return fmt.Errorf("output %d: name is empty", i)
		}
		if i > 0 && !lessUTF16(s.Outputs[i-1].Name, o.Name) {
			return fmt.Errorf("output %s: outputs are not sorted by name or are duplicated", o.Name)
		}
		if err := validateAction(o.Action, ""); err != nil {
			return fmt.Errorf("output %s: %w", o.Name, err)
		}
		if err := validateValue(o.Before); err != nil {
			return fmt.Errorf("output %s: before: %w", o.Name, err)
		}
		if err := validateValue(o.After); err != nil {
			return fmt.Errorf("output %s: after: %w", o.Name, err)
		}
	}
	return nil
}

// validate checks one resource change on its own: action, index, import,
// sorted paths, and values of the kinds this package produces.
func (r *ResourceChange) validate() error {
	if r.Address == "" {
		return fmt.Errorf("resource change without an address")
	}
	if err := validateAction(r.Action, r.ReplaceOrder); err != nil {
		return fmt.Errorf("resource %s: %w", r.Key(), err)
	}
	if r.Index != nil {
		if err := validateIndex(r.Index); err != nil {
			return fmt.Errorf("resource %s: %w", r.Key(), err)
		}
	}
	if r.Importing != nil {
		if err := validateValue(r.Importing.Identity); err != nil {
			return fmt.Errorf("resource %s: import identity: %w", r.Key(), err)
		}
	}
	for j, p := range r.ReplacePaths {
		if err := validatePath(p); err != nil {
			return fmt.Errorf("resource %s: replace path %d: %w", r.Key(), j, err)
		}
		if j > 0 && comparePaths(r.ReplacePaths[j-1], p) >= 0 {
			return fmt.Errorf("resource %s: replace paths are not sorted or are duplicated", r.Key())
		}
	}
	for j, c := range r.Changes {
		if err := validatePath(c.Path); err != nil {
			return fmt.Errorf("resource %s: change %d: %w", r.Key(), j, err)
		}
		if j > 0 && comparePaths(r.Changes[j-1].Path, c.Path) >= 0 {
			return fmt.Errorf("resource %s: changes are not sorted by path or are duplicated", r.Key())
		}
		if err := validateValue(c.Before); err != nil {
			return fmt.Errorf("resource %s: %s: before: %w", r.Key(), c.Path, err)
		}
		if err := validateValue(c.After); err != nil {
			return fmt.Errorf("resource %s: %s: after: %w", r.Key(), c.Path, err)
		}
	}
	return nil
}

func resourceLess(a, b *ResourceChange) bool {
	if a.Address != b.Address {
		return lessUTF16(a.Address, b.Address)
	}
	return lessUTF16(a.Deposed, b.Deposed)
}

func sortResources(rs []ResourceChange) {
	sort.Slice(rs, func(i, j int) bool { return resourceLess(&rs[i], &rs[j]) })
}

func validateAction(a Action, order ReplaceOrder) error {
	switch a {
	case ActionReplace:
		if order != DeleteBeforeCreate && order != CreateBeforeDestroy {
			return fmt.Errorf("replace has no valid replace_order (%q)", order)
		}
		return nil
	case ActionCreate, ActionRead, ActionUpdate, ActionDelete, ActionForget, ActionNoOp:
		if order != "" {
			return fmt.Errorf("action %q cannot have a replace_order", a)
		}
		return nil
	default:
		return fmt.Errorf("unknown action %q", a)
	}
}

func validateIndex(v any) error {
	switch v := v.(type) {
	case string:
		return nil
	case json.Number:
		if c, err := canonicalNumber(string(v)); err != nil || c != string(v) {
			return fmt.Errorf("index %q is not a canonical number", string(v))
		}
		return nil
	default:
		return fmt.Errorf("index of type %T", v)
	}
}

func validatePath(p Path) error {
	for _, step := range p {
		switch step.(type) {
		case int, string:
		default:
			return fmt.Errorf("path step of type %T", step)
		}
	}
	return nil
}

func validateValue(v any) error {
	switch v := v.(type) {
	case nil, bool, string, Unknown, Absent:
		return nil
	case Sensitive:
		if !strings.HasPrefix(v.Digest, sensitiveDigestPrefix) {
			return fmt.Errorf("sensitive digest %q is not %s<hex>", v.Digest, sensitiveDigestPrefix)
		}
		return nil
	case json.Number:
		if c, err := canonicalNumber(string(v)); err != nil || c != string(v) {
			return fmt.Errorf("number %q is not canonical", truncateForError(string(v)))
		}
		return nil
	case []any:
		for _, e := range v {
			if err := validateValue(e); err != nil {
				return err
			}
		}
		return nil
	case Object:
		for i, m := range v {
			if i > 0 && !lessUTF16(v[i-1].Name, m.Name) {
				return fmt.Errorf("object members are not sorted or are duplicated at %q", m.Name)
			}
			if err := validateValue(m.Value); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("value of type %T", v)
	}
}

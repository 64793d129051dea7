package planparse

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	tfjson "github.com/hashicorp/terraform-json"
)

const sensitiveDigestPrefix = "hmac-sha256:"

// summarizer turns Terraform's change objects into summary entries.
type summarizer struct {
	key []byte
	buf []byte // scratch for canonical encoding of sensitive values
	// names interns the strings that repeat across resources (modes,
	// types, names, providers), which each decode would otherwise copy.
	names map[string]string
	// secrets holds the canonical text of every string and number that
	// Terraform marked sensitive in the planned changes (not in drift, which
	// must not move the digest), so that scrub can hide unmarked copies.
	secrets map[string]struct{}
	// collecting is false while drift is summarized.
	collecting bool
}

// minSecretLength is the shortest sensitive string or number whose unmarked
// copies scrub hides: shorter ones ("1", "app") would hide ordinary values
// from reviewers.
const minSecretLength = 6

// sensitive returns the keyed digest that stands for v, and remembers the
// strings and numbers inside v as secrets.
func (s *summarizer) sensitive(v any) Sensitive {
	if s.collecting {
		s.rememberSecrets(v)
	}
	s.buf = appendValue(s.buf[:0], v)
	m := hmac.New(sha256.New, s.key)
	m.Write(s.buf)
	return Sensitive{Digest: sensitiveDigestPrefix + hex.EncodeToString(m.Sum(nil))}
}

// secretText returns the text by which a leaf is remembered as a secret,
// and whether it is long enough to be one.
func secretText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return "s" + v, len(v) >= minSecretLength
	case json.Number:
		return "n" + string(v), len(v) >= minSecretLength
	}
	return "", false
}

func (s *summarizer) rememberSecrets(v any) {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			s.rememberSecrets(e)
		}
	case Object:
		for _, m := range v {
			s.rememberSecrets(m.Value)
		}
	default:
		if text, ok := secretText(v); ok {
			if s.secrets == nil {
				s.secrets = map[string]struct{}{}
			}
			s.secrets[text] = struct{}{}
		}
	}
}

func (s *summarizer) isSecret(v any) bool {
	text, ok := secretText(v)
	if !ok {
		return false
	}
	_, secret := s.secrets[text]
	return secret
}

// scrub returns v with every string or number (and every object member
// name) that equals a value Terraform marked sensitive elsewhere in the plan
// replaced by its keyed digest. Terraform does not always carry a mark to
// every copy of a value — terraform_data's output mirrors its input without
// the input's mark — and seb must not show a secret in clear. It rewrites v
// in place.
func (s *summarizer) scrub(v any) any {
	switch v := v.(type) {
	case []any:
		for i, e := range v {
			v[i] = s.scrub(e)
		}
		return v
	case Object:
		renamed := false
		for i := range v {
			v[i].Value = s.scrub(v[i].Value)
			if s.isSecret(v[i].Name) {
				v[i].Name = s.sensitive(v[i].Name).Digest
				renamed = true
			}
		}
		if renamed {
			sortMembers(v)
		}
		return v
	default:
		if s.isSecret(v) {
			return s.sensitive(v)
		}
		return v
	}
}

// scrubSummary applies scrub to every value and path of the summary and the
// drift.
func (s *summarizer) scrubSummary(resources, drift []ResourceChange, outputs []OutputChange) {
	if len(s.secrets) == 0 {
		return
	}
	for _, rs := range [][]ResourceChange{resources, drift} {
		for i := range rs {
			renamed := false
			for j := range rs[i].Changes {
				c := &rs[i].Changes[j]
				c.Before, c.After = s.scrub(c.Before), s.scrub(c.After)
				for k, step := range c.Path {
					if s.isSecret(step) {
						c.Path[k] = s.sensitive(step).Digest
						renamed = true
					}
				}
			}
			if renamed {
				sortChanges(rs[i].Changes)
			}
		}
	}
	for i := range outputs {
		outputs[i].Before, outputs[i].After = s.scrub(outputs[i].Before), s.scrub(outputs[i].After)
	}
}

func sortChanges(cs []AttributeChange) {
	sort.Slice(cs, func(i, j int) bool { return comparePaths(cs[i].Path, cs[j].Path) < 0 })
}

func (s *summarizer) intern(v string) string {
	if interned, ok := s.names[v]; ok {
		return interned
	}
	if s.names == nil {
		s.names = map[string]string{}
	}
	s.names[v] = v
	return v
}

// isTrue reports whether a sensitivity or unknown mask marks this whole node.
func isTrue(mask any) bool {
	b, ok := mask.(bool)
	return ok && b
}

// child returns the mask for member k (a string key or an int index) of a
// mask node; masks that do not have the value's shape mark nothing.
func child(mask any, k any) any {
	switch m := mask.(type) {
	case map[string]any:
		if s, ok := k.(string); ok {
			return m[s]
		}
	case []any:
		if i, ok := k.(int); ok && i < len(m) {
			return m[i]
		}
	}
	return nil
}

// masked returns v with its sensitive parts replaced by Sensitive and its
// unknown parts by Unknown. It copies only what it must change.
func (s *summarizer) masked(v, sens, unknown any) any {
	if isTrue(unknown) {
		return Unknown{}
	}
	if isTrue(sens) {
		// The digest covers which parts are still unknown: Terraform omits
		// them from "after", and they must not look absent or null.
		return s.sensitive(s.masked(v, nil, unknown))
	}
	if sens == nil && unknown == nil {
		return v
	}
	switch v := v.(type) {
	case Object:
		out := make(Object, len(v))
		for i, m := range v {
			out[i] = Member{Name: m.Name, Value: s.masked(m.Value, child(sens, m.Name), child(unknown, m.Name))}
		}
		return withUnknownMembers(out, unknown)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = s.masked(e, child(sens, i), child(unknown, i))
		}
		return out
	case nil:
		// An object whose only content is unknown attributes.
		if out := withUnknownMembers(nil, unknown); len(out) > 0 {
			return out
		}
		return nil
	default:
		return v
	}
}

// withUnknownMembers adds to o, as Unknown, every member the unknown mask
// marks that o lacks: Terraform omits unknown attributes from "after".
func withUnknownMembers(o Object, unknown any) Object {
	um, ok := unknown.(map[string]any)
	if !ok {
		return o
	}
	present := len(o)
	for name, u := range um {
		if _, found := o[:present].Get(name); !found && isTrue(u) {
			o = append(o, Member{Name: name, Value: Unknown{}})
		}
	}
	if len(o) > present {
		sortMembers(o)
	}
	return o
}

// side is one side of a change: a value with its sensitivity mask, and for
// the after side its unknown mask.
type side struct {
	v, sens, unknown any
}

// child returns the side of member or element k. A member the object does
// not have is Absent, which differs from a member that is null.
func (sd side) child(k any) side {
	var v any
	switch m := sd.v.(type) {
	case Object:
		if s, ok := k.(string); ok {
			var found bool
			if v, found = m.Get(s); !found {
				v = Absent{}
			}
		}
	case []any:
		if i, ok := k.(int); ok && i < len(m) {
			v = m[i]
		}
	}
	return side{v: v, sens: child(sd.sens, k), unknown: child(sd.unknown, k)}
}

// diff appends to out every changed attribute under path. Objects are
// compared member by member and lists of equal length element by element;
// anything else that differs is one change of the whole value, so that no two
// different values can ever produce the same list of changes.
func (s *summarizer) diff(out []AttributeChange, path Path, before, after side) []AttributeChange {
	if isTrue(after.unknown) || isTrue(before.unknown) || isTrue(before.sens) || isTrue(after.sens) {
		b := s.masked(before.v, before.sens, before.unknown)
		a := s.masked(after.v, after.sens, after.unknown)
		if !isTrue(after.unknown) && !isTrue(before.unknown) && isTrue(before.sens) == isTrue(after.sens) && equalValues(b, a) {
			return out
		}
		return append(out, AttributeChange{Path: clonePath(path), Before: b, After: a})
	}
	bo, bIsObject := before.v.(Object)
	ao, aIsObject := after.v.(Object)
	if bIsObject && aIsObject {
		for _, name := range memberNames(bo, ao, after.unknown) {
			out = s.diff(out, append(path, name), before.child(name), after.child(name))
		}
		return out
	}
	bl, bIsList := before.v.([]any)
	al, aIsList := after.v.([]any)
	if bIsList && aIsList && len(bl) == len(al) {
		for i := range bl {
			out = s.diff(out, append(path, i), before.child(i), after.child(i))
		}
		return out
	}
	if isScalar(before.v) && isScalar(after.v) && before.v == after.v {
		return out
	}
	b := s.masked(before.v, before.sens, before.unknown)
	a := s.masked(after.v, after.sens, after.unknown)
	if equalValues(b, a) {
		return out
	}
	return append(out, AttributeChange{Path: clonePath(path), Before: b, After: a})
}

func isScalar(v any) bool {
	switch v.(type) {
	case nil, bool, string, json.Number:
		return true
	}
	return false
}

func clonePath(p Path) Path {
	return append(Path(make([]any, 0, len(p))), p...)
}

// memberNames returns the member names of both objects and the names the
// unknown mask marks, sorted and unique.
func memberNames(b, a Object, unknown any) []string {
	names := make([]string, 0, len(a)+1)
	i, j := 0, 0
	for i < len(b) || j < len(a) {
		switch {
		case j == len(a) || (i < len(b) && lessUTF16(b[i].Name, a[j].Name)):
			names = append(names, b[i].Name)
			i++
		case i == len(b) || lessUTF16(a[j].Name, b[i].Name):
			names = append(names, a[j].Name)
			j++
		default:
			names = append(names, a[j].Name)
			i, j = i+1, j+1
		}
	}
	if um, ok := unknown.(map[string]any); ok {
		added := false
		for name, u := range um {
			_, inB := b.Get(name)
			_, inA := a.Get(name)
			if isTrue(u) && !inA && !inB {
				names = append(names, name)
				added = true
			}
		}
		if added {
			sort.Slice(names, func(i, j int) bool { return lessUTF16(names[i], names[j]) })
		}
	}
	return names
}

// equalValues reports whether two value trees are identical.
func equalValues(a, b any) bool {
	switch a := a.(type) {
	case Object:
		bo, ok := b.(Object)
		if !ok || len(a) != len(bo) {
			return false
		}
		for i := range a {
			if a[i].Name != bo[i].Name || !equalValues(a[i].Value, bo[i].Value) {
				return false
			}
		}
		return true
	case []any:
		bl, ok := b.([]any)
		if !ok || len(a) != len(bl) {
			return false
		}
		for i := range a {
			if !equalValues(a[i], bl[i]) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

// changedAttributes returns the changed attributes of a resource change,
// sorted by path. A resource that exists on one side only (create, read,
// delete) is compared attribute by attribute against null.
func (s *summarizer) changedAttributes(c *tfjson.Change) []AttributeChange {
	before := side{v: c.Before, sens: c.BeforeSensitive}
	after := side{v: c.After, sens: c.AfterSensitive, unknown: c.AfterUnknown}
	bo, bIsObject := before.v.(Object)
	ao, aIsObject := after.v.(Object)
	_, unknownMembers := after.unknown.(map[string]any)
	out := []AttributeChange{}
	switch {
	case before.v == nil && (aIsObject || (after.v == nil && unknownMembers)) && !isTrue(after.sens):
		for _, name := range memberNames(nil, ao, after.unknown) {
			out = s.diff(out, Path{name}, side{}, after.child(name))
		}
	case after.v == nil && bIsObject && !isTrue(after.unknown) && !isTrue(before.sens):
		for _, name := range memberNames(bo, nil, nil) {
			out = s.diff(out, Path{name}, before.child(name), side{})
		}
	default:
		out = s.diff(out, Path{}, before, after)
	}
	return out
}

// normalizeActions maps Terraform's action list onto one Action and, for a
// replacement, its order.
func normalizeActions(actions tfjson.Actions) (Action, ReplaceOrder, error) {
	switch {
	case actions.NoOp():
		return ActionNoOp, "", nil
	case actions.Create():
		return ActionCreate, "", nil
	case actions.Read():
		return ActionRead, "", nil
	case actions.Update():
		return ActionUpdate, "", nil
	case actions.Delete():
		return ActionDelete, "", nil
	case actions.Forget():
		return ActionForget, "", nil
	case actions.DestroyBeforeCreate():
		return ActionReplace, DeleteBeforeCreate, nil
	case actions.CreateBeforeDestroy():
		return ActionReplace, CreateBeforeDestroy, nil
	}
	names := make([]string, len(actions))
	for i, a := range actions {
		names[i] = string(a)
	}
	return "", "", fmt.Errorf("unsupported actions [%s]", strings.Join(names, ", "))
}

// resourceChange builds the summary entry for one of Terraform's resource
// changes. It returns keep=false for a no-op that neither moves nor imports.
func (s *summarizer) resourceChange(rc *tfjson.ResourceChange) (ResourceChange, bool, error) {
	if rc == nil {
		return ResourceChange{}, false, fmt.Errorf("resource change is null")
	}
	if rc.Address == "" {
		// Terraform 1.0.0 wrote resource_drift entries without addresses.
		addr, err := resourceAddress(rc)
		if err != nil {
			return ResourceChange{}, false, err
		}
		rc.Address = addr
	}
	if rc.Change == nil {
		return ResourceChange{}, false, fmt.Errorf("%s: no change object", rc.Address)
	}
	action, order, err := normalizeActions(rc.Change.Actions)
	if err != nil {
		return ResourceChange{}, false, fmt.Errorf("%s: %w", rc.Address, err)
	}
	moved := rc.PreviousAddress != "" && rc.PreviousAddress != rc.Address
	var importing *Import
	if im := rc.Change.Importing; im != nil {
		identity, err := normalizeValue(im.Identity)
		if err != nil {
			return ResourceChange{}, false, fmt.Errorf("%s: import identity: %w", rc.Address, err)
		}
		importing = &Import{ID: im.ID, Identity: identity}
	}
	if action == ActionNoOp && !moved && importing == nil {
		return ResourceChange{}, false, nil
	}
	for _, v := range []*any{&rc.Change.Before, &rc.Change.After, &rc.Index} {
		if *v, err = normalizeValue(*v); err != nil {
			return ResourceChange{}, false, fmt.Errorf("%s: %w", rc.Address, err)
		}
	}
	if rc.Index != nil {
		if err := validateIndex(rc.Index); err != nil {
			return ResourceChange{}, false, fmt.Errorf("%s: %w", rc.Address, err)
		}
	}
	out := ResourceChange{
		Address:       rc.Address,
		ModuleAddress: s.intern(rc.ModuleAddress),
		Mode:          s.intern(string(rc.Mode)),
		Type:          s.intern(rc.Type),
		Name:          s.intern(rc.Name),
		Index:         rc.Index,
		Deposed:       rc.DeposedKey,
		Provider:      s.intern(rc.ProviderName),
		Action:        action,
		ReplaceOrder:  order,
		ActionReason:  s.intern(string(rc.ActionReason)),
		Importing:     importing,
	}
	if moved {
		out.PreviousAddress = rc.PreviousAddress
	}
	if out.ReplacePaths, err = replacePaths(rc.Change.ReplacePaths); err != nil {
		return ResourceChange{}, false, fmt.Errorf("%s: %w", rc.Address, err)
	}
	out.Changes = s.changedAttributes(rc.Change)
	return out, true, nil
}

// resourceAddress builds the address Terraform would have written for rc
// from its module address, mode, type, name and index.
func resourceAddress(rc *tfjson.ResourceChange) (string, error) {
	if rc.Type == "" || rc.Name == "" {
		return "", fmt.Errorf("resource change without an address, type or name")
	}
	var b strings.Builder
	if rc.ModuleAddress != "" {
		b.WriteString(rc.ModuleAddress)
		b.WriteByte('.')
	}
	if rc.Mode == tfjson.DataResourceMode {
		b.WriteString("data.")
	}
	b.WriteString(rc.Type)
	b.WriteByte('.')
	b.WriteString(rc.Name)
	switch idx := rc.Index.(type) {
	case nil:
	case json.Number:
		b.WriteString("[" + idx.String() + "]")
	case string:
		b.WriteString("[" + strconv.Quote(idx) + "]")
	default:
		return "", fmt.Errorf("%s: index of type %T", b.String(), idx)
	}
	return b.String(), nil
}

// replacePaths converts Terraform's replace paths, which it lists in no
// particular order, into sorted, de-duplicated Paths.
func replacePaths(raw []any) ([]Path, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	paths := make([]Path, 0, len(raw))
	for _, r := range raw {
		steps, ok := r.([]any)
		if !ok {
			return nil, fmt.Errorf("replace path is %T, not a list", r)
		}
		p, err := decodePath(steps)
		if err != nil {
			return nil, fmt.Errorf("replace path: %w", err)
		}
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return comparePaths(paths[i], paths[j]) < 0 })
	uniq := paths[:1]
	for _, p := range paths[1:] {
		if comparePaths(uniq[len(uniq)-1], p) != 0 {
			uniq = append(uniq, p)
		}
	}
	return uniq, nil
}

// outputChange builds the summary entry for a root module output. It
// returns keep=false for an output that does not change.
func (s *summarizer) outputChange(name string, c *tfjson.Change) (OutputChange, bool, error) {
	if name == "" {
		return OutputChange{}, false, fmt.Errorf("an output has an empty name")
	}
	if c == nil {
		return OutputChange{}, false, fmt.Errorf("output %s: no change object", name)
	}
	action, _, err := normalizeActions(c.Actions)
	if err != nil {
		return OutputChange{}, false, fmt.Errorf("output %s: %w", name, err)
	}
	if action == ActionNoOp {
		return OutputChange{}, false, nil
	}
	if action == ActionReplace || action == ActionRead || action == ActionForget {
		return OutputChange{}, false, fmt.Errorf("output %s: unsupported action %q for an output", name, action)
	}
	for _, v := range []*any{&c.Before, &c.After} {
		if *v, err = normalizeValue(*v); err != nil {
			return OutputChange{}, false, fmt.Errorf("output %s: %w", name, err)
		}
	}
	return OutputChange{
		Name:   name,
		Action: action,
		Before: s.masked(c.Before, c.BeforeSensitive, nil),
		After:  s.masked(c.After, c.AfterSensitive, c.AfterUnknown),
	}, true, nil
}

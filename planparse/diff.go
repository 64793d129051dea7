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
	// secrets holds every string Terraform marked sensitive anywhere in the
	// plan, so that scrub can hide copies it failed to mark.
	secrets map[string]struct{}
}

// sensitive returns the keyed digest that stands for v, and remembers the
// strings inside v as secrets.
func (s *summarizer) sensitive(v any) Sensitive {
	s.rememberSecrets(v)
	s.buf = appendValue(s.buf[:0], v)
	m := hmac.New(sha256.New, s.key)
	m.Write(s.buf)
	return Sensitive{Digest: sensitiveDigestPrefix + hex.EncodeToString(m.Sum(nil))}
}

func (s *summarizer) rememberSecrets(v any) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return
		}
		if s.secrets == nil {
			s.secrets = map[string]struct{}{}
		}
		s.secrets[v] = struct{}{}
	case []any:
		for _, e := range v {
			s.rememberSecrets(e)
		}
	case map[string]any:
		for _, e := range v {
			s.rememberSecrets(e)
		}
	}
}

// minContainedSecret is the shortest secret scrub also looks for inside
// longer strings; shorter ones would hide ordinary words.
const minContainedSecret = 8

// scrub returns v with every string that equals, or contains, a string
// Terraform marked sensitive elsewhere in the plan replaced by its keyed
// digest. Terraform does not always carry a mark to every copy of a value
// (terraform_data's output mirrors its input without the input's mark), and
// seb must never show a secret in clear. It rewrites v in place.
func (s *summarizer) scrub(v any) any {
	switch v := v.(type) {
	case string:
		if s.isSecret(v) {
			return s.sensitive(v)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = s.scrub(e)
		}
		return v
	case map[string]any:
		for k, e := range v {
			v[k] = s.scrub(e)
		}
		return v
	}
	return v
}

func (s *summarizer) isSecret(v string) bool {
	if _, ok := s.secrets[v]; ok {
		return true
	}
	for secret := range s.secrets {
		if len(secret) >= minContainedSecret && len(secret) < len(v) && strings.Contains(v, secret) {
			return true
		}
	}
	return false
}

// scrubSummary applies scrub to every value of the summary and the drift.
func (s *summarizer) scrubSummary(resources, drift []ResourceChange, outputs []OutputChange) {
	if len(s.secrets) == 0 {
		return
	}
	for _, rs := range [][]ResourceChange{resources, drift} {
		for i := range rs {
			for j := range rs[i].Changes {
				c := &rs[i].Changes[j]
				c.Before, c.After = s.scrub(c.Before), s.scrub(c.After)
			}
		}
	}
	for i := range outputs {
		outputs[i].Before, outputs[i].After = s.scrub(outputs[i].Before), s.scrub(outputs[i].After)
	}
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
		return s.sensitive(v)
	}
	if sens == nil && unknown == nil {
		return v
	}
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = s.masked(e, child(sens, k), child(unknown, k))
		}
		// Terraform omits unknown attributes from "after".
		if um, ok := unknown.(map[string]any); ok {
			for k, u := range um {
				if _, present := v[k]; !present && isTrue(u) {
					out[k] = Unknown{}
				}
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = s.masked(e, child(sens, i), child(unknown, i))
		}
		return out
	case nil:
		// An object whose only content is unknown attributes.
		if um, ok := unknown.(map[string]any); ok {
			out := map[string]any{}
			for k, u := range um {
				if isTrue(u) {
					out[k] = Unknown{}
				}
			}
			if len(out) > 0 {
				return out
			}
		}
		return nil
	default:
		return v
	}
}

// side is one side of a change: a value with its sensitivity mask, and for
// the after side its unknown mask.
type side struct {
	v, sens, unknown any
}

func (sd side) child(k any) side {
	var v any
	switch m := sd.v.(type) {
	case map[string]any:
		if s, ok := k.(string); ok {
			v = m[s]
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
	bm, bIsMap := before.v.(map[string]any)
	am, aIsMap := after.v.(map[string]any)
	if bIsMap && aIsMap {
		for _, k := range unionKeys(bm, am, after.unknown) {
			out = s.diff(out, append(path, k), before.child(k), after.child(k))
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

// unionKeys returns the member names of both objects and of the unknown
// mask, sorted.
func unionKeys(b, a map[string]any, unknown any) []any {
	seen := make(map[string]struct{}, len(a)+1)
	for k := range b {
		seen[k] = struct{}{}
	}
	for k := range a {
		seen[k] = struct{}{}
	}
	if um, ok := unknown.(map[string]any); ok {
		for k, u := range um {
			if isTrue(u) {
				seen[k] = struct{}{}
			}
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return lessUTF16(keys[i], keys[j]) })
	out := make([]any, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out
}

// equalValues reports whether two value trees are identical.
func equalValues(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, e := range a {
			be, ok := bm[k]
			if !ok || !equalValues(e, be) {
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
// sorted by path. A resource that does not exist on one side (create, read,
// delete) is compared attribute by attribute against nothing.
func (s *summarizer) changedAttributes(c *tfjson.Change) []AttributeChange {
	before := side{v: c.Before, sens: c.BeforeSensitive}
	after := side{v: c.After, sens: c.AfterSensitive, unknown: c.AfterUnknown}
	if before.v == nil && !isTrue(after.unknown) && !isTrue(after.sens) {
		if _, ok := after.v.(map[string]any); ok || after.unknown != nil {
			before.v = map[string]any{}
			if after.v == nil {
				after.v = map[string]any{}
			}
		}
	}
	if after.v == nil && !isTrue(after.unknown) && !isTrue(before.sens) {
		if _, ok := before.v.(map[string]any); ok {
			after.v = map[string]any{}
		}
	}
	out := s.diff(nil, make(Path, 0, 8), before, after)
	if out == nil {
		out = []AttributeChange{}
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
	importID := ""
	if rc.Change.Importing != nil {
		importID = rc.Change.Importing.ID
		if importID == "" {
			importID = "(identity)"
		}
	}
	if action == ActionNoOp && !moved && importID == "" {
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
		ModuleAddress: rc.ModuleAddress,
		Mode:          string(rc.Mode),
		Type:          rc.Type,
		Name:          rc.Name,
		Index:         rc.Index,
		Deposed:       rc.DeposedKey,
		Provider:      rc.ProviderName,
		Action:        action,
		ReplaceOrder:  order,
		ActionReason:  string(rc.ActionReason),
		ImportID:      importID,
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
		p := make(Path, len(steps))
		for i, st := range steps {
			switch st := st.(type) {
			case string:
				p[i] = st
			case json.Number:
				n, err := st.Int64()
				if err != nil || n < 0 || n > 1<<31 {
					return nil, fmt.Errorf("replace path index %q is not a list index", st.String())
				}
				p[i] = int(n)
			case float64:
				if st < 0 || st > 1<<31 || st != float64(int(st)) {
					return nil, fmt.Errorf("replace path index %v is not a list index", st)
				}
				p[i] = int(st)
			default:
				return nil, fmt.Errorf("replace path step is %T", st)
			}
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

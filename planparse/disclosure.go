package planparse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	tfjson "github.com/hashicorp/terraform-json"
)

// A reviewer certifies values they can read. Two kinds they cannot:
// sensitive values, which the summary holds only as digests, and values
// known only after apply. A Disclosure says, for each, where it comes
// from: a value the provider's schema marks sensitive is a secret by
// nature; one hidden by the configuration (sensitive(), a sensitive
// variable) is a choice of whoever wrote it, and may hide what a reviewer
// must see. An unknown value shows the references its configuration
// expression makes.

// A Disclosure lists the values of a plan a reviewer cannot read.
type Disclosure struct {
	Hidden  []HiddenValue  `json:"hidden"`
	Unknown []UnknownValue `json:"unknown"`
}

// Hidden-value origins.
const (
	// HiddenByProvider: the provider's schema marks the attribute
	// sensitive.
	HiddenByProvider = "provider"
	// HiddenByConfiguration: the configuration marked it (sensitive(), a
	// sensitive variable or output), or no schema said otherwise.
	HiddenByConfiguration = "configuration"
)

// A HiddenValue is a sensitive value in the diff.
type HiddenValue struct {
	// Address is the resource instance's address, or output.NAME.
	Address string `json:"address"`
	Path    string `json:"path"`
	By      string `json:"by"`
}

// An UnknownValue is a value known only after apply.
type UnknownValue struct {
	Address string `json:"address"`
	Path    string `json:"path"`
	// References are what its configuration expression refers to; none
	// means the provider computes it.
	References []string `json:"references"`
}

// HiddenByConfig returns the resource values the configuration hid.
func (d *Disclosure) HiddenByConfig() []HiddenValue {
	var found []HiddenValue
	for _, h := range d.Hidden {
		if h.By == HiddenByConfiguration && !strings.HasPrefix(h.Address, "output.") {
			found = append(found, h)
		}
	}
	return found
}

// A SchemaNode is what seb keeps of a provider schema: which attributes
// are sensitive, along the way to them.
type SchemaNode struct {
	Sensitive bool `json:"sensitive,omitempty"`
	// Elements says the next step of a path into this node is an index
	// or key (list, set or map nesting), before its children.
	Elements bool                   `json:"elements,omitempty"`
	Children map[string]*SchemaNode `json:"children,omitempty"`
}

// Schemas are the schema nodes of the resource types a plan changes, by
// provider address ("seb.invalid/seb/sandbox") and "managed.TYPE" or
// "data.TYPE". Only branches that lead to a sensitive attribute are kept.
type Schemas map[string]map[string]*SchemaNode

// SchemasFor keeps, of `terraform providers schema -json`, what
// disclosing the summary's values needs.
func SchemasFor(ps *tfjson.ProviderSchemas, s *Summary) Schemas {
	out := Schemas{}
	if ps == nil || s == nil {
		return out
	}
	for _, r := range s.Resources {
		provider := ps.Schemas[r.Provider]
		if provider == nil {
			continue
		}
		schemas := provider.ResourceSchemas
		if r.Mode == "data" {
			schemas = provider.DataSourceSchemas
		}
		schema := schemas[r.Type]
		if schema == nil || schema.Block == nil {
			continue
		}
		if out[r.Provider] == nil {
			out[r.Provider] = map[string]*SchemaNode{}
		}
		out[r.Provider][r.Mode+"."+r.Type] = blockNode(schema.Block)
	}
	return out
}

func blockNode(b *tfjson.SchemaBlock) *SchemaNode {
	n := &SchemaNode{}
	for name, a := range b.Attributes {
		if child := attributeNode(a); child != nil {
			n.child(name, child)
		}
	}
	for name, bt := range b.NestedBlocks {
		if bt.Block == nil {
			continue
		}
		child := blockNode(bt.Block)
		if child.Children == nil {
			continue
		}
		child.Elements = bt.NestingMode != tfjson.SchemaNestingModeSingle && bt.NestingMode != tfjson.SchemaNestingModeGroup
		n.child(name, child)
	}
	return n
}

// attributeNode returns a's node, or nil when nothing in it is sensitive.
func attributeNode(a *tfjson.SchemaAttribute) *SchemaNode {
	if a.Sensitive {
		return &SchemaNode{Sensitive: true}
	}
	if a.AttributeNestedType == nil {
		return nil
	}
	n := &SchemaNode{Elements: a.AttributeNestedType.NestingMode != tfjson.SchemaNestingModeSingle}
	for name, nested := range a.AttributeNestedType.Attributes {
		if child := attributeNode(nested); child != nil {
			n.child(name, child)
		}
	}
	if n.Children == nil {
		return nil
	}
	return n
}

func (n *SchemaNode) child(name string, c *SchemaNode) {
	if n.Children == nil {
		n.Children = map[string]*SchemaNode{}
	}
	n.Children[name] = c
}

// sensitiveAt reports whether the schema marks the value at path, or a
// value that holds it, sensitive.
func (n *SchemaNode) sensitiveAt(path Path) bool {
	skip := false
	for _, step := range path {
		if n.Sensitive {
			return true
		}
		if skip {
			skip = false
			continue
		}
		name, ok := step.(string)
		if !ok {
			return false
		}
		child := n.Children[name]
		if child == nil {
			return false
		}
		n, skip = child, child.Elements
	}
	return n.Sensitive
}

// Disclose lists the hidden and unknown values of a summary, with where
// each comes from: schemas for sensitivity, the plan JSON's configuration
// for the references of unknown values.
func Disclose(planJSON []byte, s *Summary, schemas Schemas) (*Disclosure, error) {
	var cfg struct {
		Configuration struct {
			RootModule configModule `json:"root_module"`
		} `json:"configuration"`
	}
	dec := json.NewDecoder(bytes.NewReader(planJSON))
	dec.UseNumber()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("read the plan's configuration: %w", err)
	}
	d := &Disclosure{Hidden: []HiddenValue{}, Unknown: []UnknownValue{}}
	for _, r := range s.Resources {
		node := schemas[r.Provider][r.Mode+"."+r.Type]
		for _, c := range r.Changes {
			for _, v := range []any{c.Before, c.After} {
				walkValue(c.Path, v, func(path Path, v any) {
					if _, ok := v.(Sensitive); ok {
						by := HiddenByConfiguration
						if node != nil && node.sensitiveAt(path) {
							by = HiddenByProvider
						}
						d.Hidden = appendHidden(d.Hidden, HiddenValue{Address: r.Address, Path: path.String(), By: by})
					}
				})
			}
			walkValue(c.Path, c.After, func(path Path, v any) {
				if _, ok := v.(Unknown); ok {
					refs := cfg.Configuration.RootModule.references(r, path)
					d.Unknown = append(d.Unknown, UnknownValue{Address: r.Address, Path: path.String(), References: refs})
				}
			})
		}
	}
	for _, o := range s.Outputs {
		for _, v := range []any{o.Before, o.After} {
			if _, ok := v.(Sensitive); ok {
				d.Hidden = appendHidden(d.Hidden, HiddenValue{Address: "output." + o.Name, Path: "(value)", By: HiddenByConfiguration})
			}
		}
	}
	return d, nil
}

// walkValue calls fn for v and every value inside it, with its path.
func walkValue(path Path, v any, fn func(Path, any)) {
	fn(path, v)
	switch v := v.(type) {
	case []any:
		for i, e := range v {
			walkValue(append(slices.Clip(path), i), e, fn)
		}
	case Object:
		for _, m := range v {
			walkValue(append(slices.Clip(path), m.Name), m.Value, fn)
		}
	}
}

func appendHidden(hs []HiddenValue, h HiddenValue) []HiddenValue {
	if slices.Contains(hs, h) {
		return hs
	}
	return append(hs, h)
}

// configModule is a module of the plan JSON's configuration section.
type configModule struct {
	Resources []struct {
		Address     string                     `json:"address"`
		Mode        string                     `json:"mode"`
		Expressions map[string]json.RawMessage `json:"expressions"`
	} `json:"resources"`
	ModuleCalls map[string]struct {
		Module configModule `json:"module"`
	} `json:"module_calls"`
}

// references returns the references of the configuration expression that
// sets path in resource r, or nil when none does.
func (m configModule) references(r ResourceChange, path Path) []string {
	mod := m
	for _, step := range strings.Split(r.ModuleAddress, ".") {
		if step == "" || step == "module" {
			continue
		}
		name, _, _ := strings.Cut(step, "[")
		call, ok := mod.ModuleCalls[name]
		if !ok {
			return nil
		}
		mod = call.Module
	}
	mode := "managed"
	if r.Mode == "data" {
		mode = "data"
	}
	address := r.Type + "." + r.Name
	if mode == "data" {
		address = "data." + address
	}
	for _, res := range mod.Resources {
		if res.Address == address && (res.Mode == "" || res.Mode == mode) {
			return expressionReferences(res.Expressions, path)
		}
	}
	return nil
}

// expressionReferences follows path through a resource's expressions:
// attribute names into nested blocks (skipping indices), until an
// expression with references.
func expressionReferences(exprs map[string]json.RawMessage, path Path) []string {
	var raw json.RawMessage
	for _, step := range path {
		name, ok := step.(string)
		if !ok {
			continue // an index into a nested block
		}
		next, ok := exprs[name]
		if !ok {
			break
		}
		raw = next
		var e struct {
			References []string `json:"references"`
		}
		if json.Unmarshal(raw, &e) == nil && len(e.References) > 0 {
			return e.References
		}
		// A nested block: a list of expression maps.
		var blocks []map[string]json.RawMessage
		if json.Unmarshal(raw, &blocks) != nil || len(blocks) == 0 {
			break
		}
		exprs = blocks[0]
	}
	return nil
}

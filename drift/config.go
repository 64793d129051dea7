package drift

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// A configuration runs with the broker's privileges: Terraform reads files,
// fetches modules and talks to providers as the broker. checkHCL refuses,
// in every file of every module (.tf, .tf.json and OpenTofu's .tofu and
// .tofu.json), everything that would let a configuration reach beyond the
// certified diff:
//
//   - a backend or cloud block: the broker keeps the workspace's state;
//   - provisioners: they run commands on the broker at apply time, outside
//     the plan a reviewer certifies;
//   - module sources other than a directory inside the bundle: anything
//     fetched at init (registry, git, http, archives, absolute paths) is
//     not covered by the configuration digest and is never checked;
//   - provider blocks that set anything but an alias: a provider's
//     endpoint and credentials come from the workspace's credential
//     profile, or a bundle could send the broker's token elsewhere;
//   - file functions (file, fileset, templatefile…) whose path is not a
//     literal inside the configuration: they would read the broker's keys,
//     tokens and state.
//
// A file that does not parse is refused too: what cannot be checked does
// not run.
func checkHCL(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		name := d.Name()
		switch {
		case strings.HasSuffix(name, ".tf"), strings.HasSuffix(name, ".tofu"):
			return checkNativeFile(dir, rel)
		case strings.HasSuffix(name, ".tf.json"), strings.HasSuffix(name, ".tofu.json"):
			return checkJSONFile(dir, rel)
		}
		return nil
	})
}

// fileFunctions read files; their path must stay inside the configuration.
var fileFunctions = map[string]bool{
	"file": true, "filebase64": true, "fileexists": true, "fileset": true, "templatefile": true,
	"filemd5": true, "filesha1": true, "filesha256": true, "filesha512": true,
	"filebase64sha256": true, "filebase64sha512": true,
}

// refusedFunctions can never be part of a certified diff.
var refusedFunctions = map[string]string{
	"plantimestamp": "its value changes at every plan, so the plan seb certifies could never be the one it executes",
}

// ConfigError reports a configuration seb refuses to run. Like
// InvalidBundleError, it is the sender's fault, and its text is safe to
// show to the sender.
type ConfigError struct{ Reason string }

func (e *ConfigError) Error() string { return "configuration: " + e.Reason }

func refuseConfig(format string, args ...any) error {
	return &ConfigError{Reason: fmt.Sprintf(format, args...)}
}

// IsRefusal reports whether err is seb refusing a bundle or a
// configuration, the sender's fault, rather than the broker failing.
func IsRefusal(err error) bool {
	var be *InvalidBundleError
	var ce *ConfigError
	return errors.As(err, &be) || errors.As(err, &ce)
}

func checkNativeFile(root, rel string) error {
	src, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	file, diags := hclsyntax.ParseConfig(src, rel, hcl.InitialPos)
	if diags.HasErrors() {
		return refuseConfig("%s does not parse: %s", rel, diags.Error())
	}
	body, ok := file.Body.(*hclsyntax.Body)
	if !ok {
		return refuseConfig("%s: unexpected body", rel)
	}
	moduleDir := path.Dir(rel)
	refuse := func(rng hcl.Range, format string, args ...any) error {
		return refuseConfig("%s line %d: %s", rel, rng.Start.Line, fmt.Sprintf(format, args...))
	}
	for _, block := range body.Blocks {
		switch block.Type {
		case "terraform":
			for _, b := range block.Body.Blocks {
				switch {
				case b.Type == "backend" && moduleDir == ".":
					return refuse(b.TypeRange, "declares backend %q; the broker keeps each workspace's state, so a bundle cannot send it elsewhere", b.Labels[0])
				case b.Type == "cloud" && moduleDir == ".":
					return refuse(b.TypeRange, "declares a cloud block; the broker keeps each workspace's state, so a bundle cannot send it elsewhere")
				}
			}
		case "provider":
			for name, attr := range block.Body.Attributes {
				if name != "alias" {
					return refuse(attr.SrcRange, "provider %q sets %q; a provider's endpoint and credentials come from the workspace's credential profile, not the bundle", block.Labels[0], name)
				}
			}
			if len(block.Body.Blocks) > 0 {
				return refuse(block.Body.Blocks[0].TypeRange, "provider %q has a %q block; provider configuration comes from the workspace's credential profile", block.Labels[0], block.Body.Blocks[0].Type)
			}
		case "module":
			attr, ok := block.Body.Attributes["source"]
			if !ok {
				return refuse(block.TypeRange, "module %q has no source", block.Labels[0])
			}
			source, ok := literalString(attr.Expr)
			if !ok {
				return refuse(attr.SrcRange, "module %q: source must be a literal path", block.Labels[0])
			}
			if err := checkModuleSource(root, moduleDir, source); err != nil {
				return refuse(attr.SrcRange, "module %q: %v", block.Labels[0], err)
			}
		case "data":
			if len(block.Labels) > 0 && block.Labels[0] == "terraform_remote_state" {
				return refuse(block.TypeRange, "data %q reads another state through a backend; backends run credential helpers and reach stores seb does not control", block.Labels[0])
			}
		}
		// Provisioners run commands at apply time, outside the certified
		// diff, wherever they appear (resources, removed blocks…).
		if b := findBlock(block.Body, "provisioner"); b != nil {
			what := block.Type
			if len(block.Labels) > 0 {
				what += " " + strings.Join(block.Labels, ".")
			}
			label := ""
			if len(b.Labels) > 0 {
				label = b.Labels[0]
			}
			return refuse(b.TypeRange, "%s has a %q provisioner; provisioners run commands at apply time and are not part of the certified diff", what, label)
		}
	}
	var err2 error
	hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || err2 != nil {
			return nil
		}
		fn := strings.TrimPrefix(call.Name, "core::")
		if reason, ok := refusedFunctions[fn]; ok {
			err2 = refuse(call.NameRange, "%s(): %s", fn, reason)
			return nil
		}
		if !fileFunctions[fn] {
			return nil
		}
		if len(call.Args) == 0 {
			return nil
		}
		if reason := checkPathArg(call.Args[0], moduleDir); reason != "" {
			err2 = refuse(call.NameRange, "%s(): %s", fn, reason)
		}
		if fn == "fileset" && len(call.Args) > 1 && err2 == nil {
			if pattern, ok := literalString(call.Args[1]); !ok || strings.Contains(pattern, "..") {
				err2 = refuse(call.NameRange, "fileset(): the pattern must be a literal without ..")
			}
		}
		return nil
	})
	return err2
}

// findBlock returns the first block of type typ in body, at any depth
// (dynamic blocks included).
func findBlock(body *hclsyntax.Body, typ string) *hclsyntax.Block {
	for _, b := range body.Blocks {
		if b.Type == typ {
			return b
		}
		if found := findBlock(b.Body, typ); found != nil {
			return found
		}
	}
	return nil
}

// literalString returns the value of a string expression with no
// interpolation.
func literalString(expr hclsyntax.Expression) (string, bool) {
	switch e := expr.(type) {
	case *hclsyntax.TemplateExpr:
		if e.IsStringLiteral() {
			v, diags := e.Value(nil)
			if diags.HasErrors() {
				return "", false
			}
			return v.AsString(), true
		}
	case *hclsyntax.LiteralValueExpr:
		if e.Val.Type().FriendlyName() == "string" {
			return e.Val.AsString(), true
		}
	}
	return "", false
}

// checkPathArg returns why a file function's path argument is refused, or
// "". Allowed: a literal relative path, or "${path.module}/…" or
// "${path.root}/…" followed by a literal, that stays inside the
// configuration.
func checkPathArg(expr hclsyntax.Expression, moduleDir string) string {
	const why = "the path must be a literal inside the configuration (\"x\", \"${path.module}/x\" or \"${path.root}/x\")"
	if p, ok := literalString(expr); ok {
		if !localPath(p) {
			return why
		}
		return ""
	}
	tmpl, ok := expr.(*hclsyntax.TemplateExpr)
	if !ok || len(tmpl.Parts) != 2 {
		return why
	}
	trav, ok := tmpl.Parts[0].(*hclsyntax.ScopeTraversalExpr)
	if !ok || len(trav.Traversal) != 2 || trav.Traversal.RootName() != "path" {
		return why
	}
	attr, ok := trav.Traversal[1].(hcl.TraverseAttr)
	if !ok || (attr.Name != "module" && attr.Name != "root") {
		return why
	}
	rest, ok := literalString(tmpl.Parts[1])
	if !ok || !strings.HasPrefix(rest, "/") {
		return why
	}
	base := "."
	if attr.Name == "module" {
		base = moduleDir
	}
	if !localPath(path.Join(base, rest[1:])) || !localPath(rest[1:]) {
		return why
	}
	return ""
}

// localPath reports whether p is a relative path that stays inside the
// configuration's root.
func localPath(p string) bool {
	return p != "" && !strings.Contains(p, `\`) && filepath.IsLocal(filepath.FromSlash(p)) && !strings.Contains(p, "..")
}

// checkModuleSource allows only a directory inside the bundle.
func checkModuleSource(root, moduleDir, source string) error {
	if !strings.HasPrefix(source, "./") && !strings.HasPrefix(source, "../") {
		return fmt.Errorf("source %q is not a local directory; modules must ship inside the bundle (nothing is fetched at init)", source)
	}
	target := path.Join(moduleDir, source)
	if !filepath.IsLocal(filepath.FromSlash(target)) {
		return fmt.Errorf("source %q leaves the bundle", source)
	}
	info, err := os.Stat(filepath.Join(root, filepath.FromSlash(target)))
	if err != nil || !info.IsDir() {
		return fmt.Errorf("source %q is not a directory of the bundle", source)
	}
	return nil
}

// checkJSONFile applies the same rules to JSON syntax, on what the JSON
// means rather than how it is spelled: keys and strings are decoded first
// (so \u escapes hide nothing), a key given twice in one object is
// refused (Go would keep the last, Terraform keeps both), and every string
// is read as the template Terraform reads it. No file function is
// allowed in JSON.
func checkJSONFile(root, rel string) error {
	src, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	refuse := func(format string, args ...any) error {
		return refuseConfig("%s: %s", rel, fmt.Sprintf(format, args...))
	}
	if err := scanJSON(src, func(path []string, key string) error {
		switch {
		case key == "provisioner":
			return refuse("%s has a provisioner; provisioners run commands at apply time and are not part of the certified diff", strings.Join(path, "."))
		case len(path) == 1 && path[0] == "data" && key == "terraform_remote_state":
			return refuse("data %q reads another state through a backend; backends run credential helpers and reach stores seb does not control", key)
		}
		return nil
	}, func(path []string, value string) error {
		return checkJSONTemplate(path, value, refuse)
	}); err != nil {
		if IsRefusal(err) {
			return err
		}
		return refuse("does not parse: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(src, &doc); err != nil {
		return refuseConfig("%s does not parse: %v", rel, err)
	}
	moduleDir := path.Dir(rel)
	if moduleDir == "." {
		for _, t := range asList(doc["terraform"]) {
			tm, _ := t.(map[string]any)
			if _, ok := tm["backend"]; ok {
				return refuse("declares a backend; the broker keeps each workspace's state, so a bundle cannot send it elsewhere")
			}
			if _, ok := tm["cloud"]; ok {
				return refuse("declares a cloud block; the broker keeps each workspace's state, so a bundle cannot send it elsewhere")
			}
		}
	}
	for _, p := range asList(doc["provider"]) {
		pm, _ := p.(map[string]any)
		for name, configs := range pm {
			for _, c := range asList(configs) {
				cm, _ := c.(map[string]any)
				for attr := range cm {
					if attr != "alias" {
						return refuse("provider %q sets %q; a provider's endpoint and credentials come from the workspace's credential profile, not the bundle", name, attr)
					}
				}
			}
		}
	}
	for _, m := range asList(doc["module"]) {
		mm, _ := m.(map[string]any)
		for name, configs := range mm {
			for _, c := range asList(configs) {
				cm, _ := c.(map[string]any)
				source, _ := cm["source"].(string)
				if err := checkModuleSource(root, moduleDir, source); err != nil {
					return refuse("module %q: %v", name, err)
				}
			}
		}
	}
	return nil
}

// checkJSONTemplate reads a JSON string as the template Terraform reads
// it and refuses file functions and refused functions in it.
func checkJSONTemplate(path []string, value string, refuse func(string, ...any) error) error {
	if !strings.Contains(value, "${") && !strings.Contains(value, "%{") {
		return nil
	}
	expr, diags := hclsyntax.ParseTemplate([]byte(value), strings.Join(path, "."), hcl.InitialPos)
	if diags.HasErrors() {
		return refuse("%s: the template does not parse: %s", strings.Join(path, "."), diags.Error())
	}
	var err error
	hclsyntax.VisitAll(expr, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || err != nil {
			return nil
		}
		fn := strings.TrimPrefix(call.Name, "core::")
		if reason, ok := refusedFunctions[fn]; ok {
			err = refuse("%s: %s(): %s", strings.Join(path, "."), fn, reason)
		} else if fileFunctions[fn] {
			err = refuse("%s calls %s(); file functions are not allowed in JSON configuration", strings.Join(path, "."), fn)
		}
		return nil
	})
	return err
}

// scanJSON walks a JSON document token by token, calling key for every
// object key and value for every string value with the path of keys
// above it, and refuses a key repeated in one object. It bounds nesting.
func scanJSON(src []byte, key func(path []string, k string) error, value func(path []string, v string) error) error {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var walk func(path []string, depth int) error
	walk = func(path []string, depth int) error {
		if depth > 64 {
			return errors.New("nested more than 64 levels")
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				seen := map[string]bool{}
				for dec.More() {
					kt, err := dec.Token()
					if err != nil {
						return err
					}
					k, _ := kt.(string)
					if seen[k] {
						return refuseConfig("the key %q appears twice in %s; Terraform would read both, so seb refuses to guess", k, strings.Join(append(path, "{}"), "."))
					}
					seen[k] = true
					if err := key(path, k); err != nil {
						return err
					}
					if err := walk(append(slices.Clip(path), k), depth+1); err != nil {
						return err
					}
				}
				_, err = dec.Token() // '}'
				return err
			case '[':
				for dec.More() {
					if err := walk(path, depth+1); err != nil {
						return err
					}
				}
				_, err = dec.Token() // ']'
				return err
			}
		case string:
			return value(path, t)
		}
		return nil
	}
	if err := walk(nil, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the top-level value")
	}
	return nil
}

// asList returns v as a list: JSON configuration allows a block's content
// as an object or as a list of objects.
func asList(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	default:
		return []any{v}
	}
}

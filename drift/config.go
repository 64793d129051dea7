package drift

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
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
		case "resource", "data":
			if b := findBlock(block.Body, "provisioner"); b != nil {
				return refuse(b.TypeRange, "%s.%s has a %q provisioner; provisioners run commands on the broker at apply time and are not part of the certified diff",
					block.Labels[0], block.Labels[1], b.Labels[0])
			}
		}
	}
	var err2 error
	hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || err2 != nil {
			return nil
		}
		fn := strings.TrimPrefix(call.Name, "core::")
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

var jsonFileFunction = regexp.MustCompile(`\b(core::)?(file|filebase64|fileexists|fileset|templatefile|filemd5|filesha1|filesha256|filesha512|filebase64sha256|filebase64sha512)\s*\(`)

// checkJSONFile applies the same rules to JSON syntax, more bluntly: no
// file functions at all.
func checkJSONFile(root, rel string) error {
	src, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(src, &doc); err != nil {
		return refuseConfig("%s does not parse: %v", rel, err)
	}
	moduleDir := path.Dir(rel)
	refuse := func(format string, args ...any) error {
		return refuseConfig("%s: %s", rel, fmt.Sprintf(format, args...))
	}
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
	if strings.Contains(string(src), `"provisioner"`) {
		return refuse("has a provisioner; provisioners run commands on the broker at apply time and are not part of the certified diff")
	}
	if loc := jsonFileFunction.FindString(string(src)); loc != "" {
		return refuse("calls %s…); file functions are not allowed in JSON configuration", strings.TrimSpace(loc))
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

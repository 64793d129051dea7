package drift

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	hcljson "github.com/hashicorp/hcl/v2/json"
)

// Admission reads a configuration file the way Terraform does — hcl/v2,
// native or JSON syntax — and walks it with an allowlist: the block types,
// arguments and meta-arguments below, and the functions in
// knownFunctions, are all it admits. Whatever seb does not know (a block
// type or function of a newer Terraform, a provider-defined function) is
// refused with its file and line, never passed through.

// moduleSchema is what a module's files may hold at the top level.
var moduleSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "terraform"},
	{Type: "variable", LabelNames: []string{"name"}},
	{Type: "locals"},
	{Type: "output", LabelNames: []string{"name"}},
	{Type: "provider", LabelNames: []string{"name"}},
	{Type: "resource", LabelNames: []string{"type", "name"}},
	{Type: "data", LabelNames: []string{"type", "name"}},
	{Type: "module", LabelNames: []string{"name"}},
	{Type: "moved"},
	{Type: "import"},
	{Type: "removed"},
	{Type: "check", LabelNames: []string{"name"}},
}}

// terraformSchema names backend and cloud only to refuse them by name.
var terraformSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "required_version"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "required_providers"},
		{Type: "backend", LabelNames: []string{"type"}},
		{Type: "cloud"},
	},
}

// resourceMeta are the meta-arguments of resource and data blocks; the
// rest of their bodies is the provider's schema. Provisioners and
// connections are named only to refuse them.
var resourceMeta = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "count"}, {Name: "for_each"}, {Name: "provider"}, {Name: "depends_on"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "lifecycle"},
		{Type: "provisioner", LabelNames: []string{"type"}},
		{Type: "connection"},
	},
}

var lifecycleSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "create_before_destroy"}, {Name: "prevent_destroy"}, {Name: "ignore_changes"}, {Name: "replace_triggered_by"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "precondition"}, {Type: "postcondition"}},
}

var conditionSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "condition", Required: true}, {Name: "error_message", Required: true},
}}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"}, {Name: "nullable"}, {Name: "ephemeral"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var outputSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "value", Required: true}, {Name: "description"}, {Name: "sensitive"}, {Name: "depends_on"}, {Name: "ephemeral"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "precondition"}},
}

// moduleCallMeta are a module call's own arguments; the rest are its
// inputs. version is named only to refuse it (registry modules).
var moduleCallMeta = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "source", Required: true}, {Name: "version"}, {Name: "count"}, {Name: "for_each"}, {Name: "providers"}, {Name: "depends_on"},
}}

var movedSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "from", Required: true}, {Name: "to", Required: true}}}

var importSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "to", Required: true}, {Name: "id"}, {Name: "identity"}, {Name: "provider"}, {Name: "for_each"},
}}

var removedSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "from", Required: true}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "lifecycle"},
		{Type: "provisioner", LabelNames: []string{"type"}},
		{Type: "connection"},
	},
}

var removedLifecycleSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "destroy"}}}

var checkSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "data", LabelNames: []string{"type", "name"}},
	{Type: "assert"},
}}

// knownFunctions are Terraform's built-in functions that admission
// allows: each computes its result from its arguments alone. The file
// functions among them have their paths checked (fileFunctions).
var knownFunctions = setOf(
	"abs", "alltrue", "anytrue", "base64decode", "base64encode", "base64gzip", "base64sha256", "base64sha512",
	"basename", "can", "ceil", "chomp", "chunklist", "cidrhost", "cidrnetmask", "cidrsubnet", "cidrsubnets",
	"coalesce", "coalescelist", "compact", "concat", "contains", "csvdecode", "dirname", "distinct", "element",
	"endswith", "ephemeralasnull", "flatten", "floor", "format", "formatdate", "formatlist", "indent", "index",
	"issensitive", "join", "jsondecode", "jsonencode", "keys", "length", "log", "lookup", "lower", "matchkeys",
	"max", "md5", "merge", "min", "nonsensitive", "one", "parseint", "pow", "range", "regex", "regexall",
	"replace", "reverse", "rsadecrypt", "sensitive", "setintersection", "setproduct", "setsubtract", "setunion",
	"sha1", "sha256", "sha512", "signum", "slice", "sort", "split", "startswith", "strcontains", "strrev",
	"substr", "sum", "textdecodebase64", "textencodebase64", "timeadd", "timecmp", "title", "tobool", "tolist",
	"tomap", "tonumber", "toset", "tostring", "transpose", "trim", "trimprefix", "trimspace", "trimsuffix", "try",
	"upper", "urlencode", "uuidv5", "values", "yamldecode", "yamlencode", "zipmap",
	// Unknown until apply: the plan shows "known after apply", the
	// same in seb's plan and at execution.
	"timestamp", "uuid",
)

// fileFunctions read files; their path must be a literal inside the
// configuration.
var fileFunctions = setOf(
	"file", "filebase64", "fileexists", "fileset", "templatefile",
	"filemd5", "filesha1", "filesha256", "filesha512", "filebase64sha256", "filebase64sha512",
)

// refusedFunctions are built-in functions admission refuses, and why.
var refusedFunctions = map[string]string{
	"plantimestamp":  "its value changes at every plan, so the plan seb certifies could never be the one it executes",
	"bcrypt":         "its value changes at every plan (a random salt), so the plan seb certifies could never be the one it executes",
	"templatestring": "it renders a template made while Terraform runs, which seb cannot read before it runs",
	"abspath":        "its value depends on the machine that runs Terraform, not on the configuration",
	"pathexpand":     "its value depends on the machine that runs Terraform, not on the configuration",
}

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// maxTemplateSize bounds a template file templatefile() reads.
const maxTemplateSize = 1 << 20

// A checker walks one file of a configuration.
type checker struct {
	root      string // the configuration's root directory
	file      string // the file, relative to root, slash-separated
	moduleDir string // the file's module directory, relative to root
	json      bool
	// types are the type constraints of the file's variables: they read
	// like function calls (list(string)) but are never evaluated.
	types []hcl.Range
}

// refuse refuses at a place in the file.
func (c *checker) refuse(rng hcl.Range, format string, args ...any) error {
	if rng.Start.Line == 0 {
		return refuseConfig("%s: %s", c.file, fmt.Sprintf(format, args...))
	}
	return refuseConfig("%s line %d: %s", c.file, rng.Start.Line, fmt.Sprintf(format, args...))
}

// diagnostics refuses what hcl found wrong: a block type, argument or
// structure the schema does not allow.
func (c *checker) diagnostics(diags hcl.Diagnostics) error {
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		var rng hcl.Range
		if d.Subject != nil {
			rng = *d.Subject
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + strings.TrimSuffix(d.Detail, ".")
		}
		return c.refuse(rng, "%s; seb admits only the parts of Terraform's language it knows to be safe", msg)
	}
	return nil
}

func (c *checker) content(body hcl.Body, schema *hcl.BodySchema) (*hcl.BodyContent, error) {
	content, diags := body.Content(schema)
	return content, c.diagnostics(diags)
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
	c := &checker{root: root, file: rel, moduleDir: path.Dir(rel)}
	if err := c.module(file.Body); err != nil {
		return err
	}
	for _, b := range file.Body.(*hclsyntax.Body).Blocks {
		if t, ok := b.Body.Attributes["type"]; ok && b.Type == "variable" {
			if err := c.checkTypeCalls(t.Expr); err != nil {
				return err
			}
			c.types = append(c.types, t.Expr.Range())
		}
	}
	// Every expression of the file, wherever it is.
	return c.functions(file.Body.(*hclsyntax.Body), true)
}

// checkJSONFile reads JSON syntax on what it means rather than how it is
// spelled. First token by token: keys and strings are decoded (so \u
// escapes hide nothing), a key given twice in one object is refused (Go
// would keep the last, Terraform keeps both), a provisioner or connection
// key is refused at any depth, and every string and key is read as the
// template Terraform reads it, with the same function rules as native
// syntax (but no file function). Then as hcl/v2 reads it, with the
// allowlist.
func checkJSONFile(root, rel string) error {
	src, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	c := &checker{root: root, file: rel, moduleDir: path.Dir(rel), json: true}
	err = scanJSON(rel, src, func(keys []string, key string, line int) error {
		where := strings.Join(append(keys, key), ".")
		at := hcl.Range{Start: hcl.Pos{Line: line}}
		switch key {
		case "provisioner":
			return c.refuse(at, "%s has a provisioner; provisioners run commands at apply time and are not part of the certified diff", strings.Join(keys, "."))
		case "connection":
			return c.refuse(at, "%s has a connection block; it serves only provisioners, which seb refuses", strings.Join(keys, "."))
		}
		return c.template(at, where, key)
	}, func(keys []string, value string, line int) error {
		at := hcl.Range{Start: hcl.Pos{Line: line}}
		if len(keys) > 0 && exprKeys[keys[len(keys)-1]] {
			if err := c.checkJSONExpression(at, strings.Join(keys, "."), keys[len(keys)-1], value); err != nil {
				return err
			}
		}
		return c.template(at, strings.Join(keys, "."), value)
	})
	if err != nil {
		if IsRefusal(err) {
			return err
		}
		return refuseConfig("%s does not parse: %v", rel, err)
	}
	file, diags := hcljson.Parse(src, rel)
	if diags.HasErrors() {
		return refuseConfig("%s does not parse: %s", rel, diags.Error())
	}
	return c.module(file.Body)
}

// template reads a JSON string as the template Terraform reads it and
// checks the functions it calls.
func (c *checker) template(at hcl.Range, where, s string) error {
	if !strings.Contains(s, "${") && !strings.Contains(s, "%{") {
		return nil
	}
	// The template's own positions count from where the string is.
	expr, diags := hclsyntax.ParseTemplate([]byte(s), c.file, hcl.Pos{Line: at.Start.Line, Column: 1, Byte: 0})
	if diags.HasErrors() {
		return c.refuse(at, "%s: the template does not parse: %s", where, diags.Error())
	}
	return c.functions(expr, false)
}

// module walks a file's top-level blocks.
func (c *checker) module(body hcl.Body) error {
	content, err := c.content(body, moduleSchema)
	if err != nil {
		return err
	}
	for _, b := range content.Blocks {
		if err := c.block(b); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) block(b *hcl.Block) error {
	switch b.Type {
	case "terraform":
		return c.terraform(b)
	case "provider":
		// A provider's endpoint and credentials come from the workspace's
		// credential profile, or a bundle could send the broker's token
		// elsewhere.
		attrs, diags := b.Body.JustAttributes()
		if diags.HasErrors() {
			return c.refuse(b.DefRange, "provider %q may set nothing but alias; its configuration comes from the workspace's credential profile", b.Labels[0])
		}
		for name, attr := range attrs {
			if name != "alias" {
				return c.refuse(attr.NameRange, "provider %q sets %q; a provider's endpoint and credentials come from the workspace's credential profile, not the bundle", b.Labels[0], name)
			}
		}
		return nil
	case "resource", "data":
		return c.resource(b)
	case "module":
		return c.moduleCall(b)
	case "variable":
		content, err := c.content(b.Body, variableSchema)
		if err != nil {
			return err
		}
		return c.conditions(content.Blocks)
	case "output":
		content, err := c.content(b.Body, outputSchema)
		if err != nil {
			return err
		}
		return c.conditions(content.Blocks)
	case "locals":
		_, diags := b.Body.JustAttributes()
		return c.diagnostics(diags)
	case "moved":
		_, err := c.content(b.Body, movedSchema)
		return err
	case "import":
		_, err := c.content(b.Body, importSchema)
		return err
	case "removed":
		content, err := c.content(b.Body, removedSchema)
		if err != nil {
			return err
		}
		for _, nested := range content.Blocks {
			if err := c.refuseProvisioner("removed", nested); err != nil {
				return err
			}
			if _, err := c.content(nested.Body, removedLifecycleSchema); err != nil {
				return err
			}
		}
		return nil
	case "check":
		content, err := c.content(b.Body, checkSchema)
		if err != nil {
			return err
		}
		for _, nested := range content.Blocks {
			if nested.Type == "data" {
				err = c.resource(nested)
			} else {
				_, err = c.content(nested.Body, conditionSchema)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return c.refuse(b.DefRange, "seb does not know block type %q", b.Type)
}

func (c *checker) terraform(b *hcl.Block) error {
	content, err := c.content(b.Body, terraformSchema)
	if err != nil {
		return err
	}
	for _, nested := range content.Blocks {
		switch nested.Type {
		case "backend":
			return c.refuse(nested.DefRange, "declares backend %q; the broker keeps each workspace's state, so a bundle cannot send it elsewhere", nested.Labels[0])
		case "cloud":
			return c.refuse(nested.DefRange, "declares a cloud block; the broker keeps each workspace's state, so a bundle cannot send it elsewhere")
		case "required_providers":
			_, diags := nested.Body.JustAttributes()
			if err := c.diagnostics(diags); err != nil {
				return err
			}
		}
	}
	return nil
}

// resource walks a resource or data block: its meta-arguments against the
// allowlist; the provider's arguments are left to the provider, but no
// provisioner or connection may hide among them.
func (c *checker) resource(b *hcl.Block) error {
	what := b.Type + " " + strings.Join(b.Labels, ".")
	if b.Type == "data" && b.Labels[0] == "terraform_remote_state" {
		return c.refuse(b.DefRange, "data %q reads another state through a backend; backends run credential helpers and reach stores seb does not control", b.Labels[0])
	}
	content, remain, diags := b.Body.PartialContent(resourceMeta)
	if err := c.diagnostics(diags); err != nil {
		return err
	}
	for _, nested := range content.Blocks {
		if err := c.refuseProvisioner(what, nested); err != nil {
			return err
		}
		lc, err := c.content(nested.Body, lifecycleSchema)
		if err != nil {
			return err
		}
		if err := c.conditions(lc.Blocks); err != nil {
			return err
		}
	}
	// In native syntax the provider's nested blocks can be seen: none of
	// them, at any depth (dynamic blocks included), may be a provisioner.
	// (Nested connection and lifecycle blocks are the provider's own: a
	// container's lifecycle in Kubernetes.) JSON's are refused by key in
	// checkJSONFile.
	if body, ok := remain.(*hclsyntax.Body); ok {
		return c.nestedBlocks(what, body)
	}
	return nil
}

func (c *checker) nestedBlocks(what string, body *hclsyntax.Body) error {
	for _, b := range body.Blocks {
		switch {
		case b.Type == "provisioner":
			return c.refuseProvisioner(what, b.AsHCLBlock())
		case b.Type == "dynamic" && len(b.Labels) == 1 && b.Labels[0] == "provisioner":
			return c.refuse(b.TypeRange, "%s generates provisioner blocks; provisioners run commands at apply time and are not part of the certified diff", what)
		}
		if err := c.nestedBlocks(what, b.Body); err != nil {
			return err
		}
	}
	return nil
}

// refuseProvisioner refuses a provisioner or connection block; any other
// block passes.
func (c *checker) refuseProvisioner(what string, b *hcl.Block) error {
	switch b.Type {
	case "provisioner":
		return c.refuse(b.DefRange, "%s has a %q provisioner; provisioners run commands at apply time and are not part of the certified diff", what, b.Labels[0])
	case "connection":
		return c.refuse(b.DefRange, "%s has a connection block; it serves only provisioners, which seb refuses", what)
	case "lifecycle":
		return nil
	}
	return c.refuse(b.DefRange, "%s has a %q block in an unexpected place", what, b.Type)
}

func (c *checker) conditions(blocks hcl.Blocks) error {
	for _, b := range blocks {
		if _, err := c.content(b.Body, conditionSchema); err != nil {
			return err
		}
	}
	return nil
}

// moduleCall checks a module block: its source must be a literal path to
// a directory inside the bundle (anything fetched at init is not covered
// by the configuration digest and never checked).
func (c *checker) moduleCall(b *hcl.Block) error {
	content, remain, diags := b.Body.PartialContent(moduleCallMeta)
	if err := c.diagnostics(diags); err != nil {
		return err
	}
	if v, ok := content.Attributes["version"]; ok {
		return c.refuse(v.NameRange, "module %q sets a version; only modules inside the bundle are admitted", b.Labels[0])
	}
	source := content.Attributes["source"]
	val, vdiags := source.Expr.Value(nil)
	if vdiags.HasErrors() || !val.IsKnown() || val.IsNull() || val.Type().FriendlyName() != "string" {
		return c.refuse(source.Range, "module %q: source must be a literal path", b.Labels[0])
	}
	if err := checkModuleSource(c.root, c.moduleDir, val.AsString()); err != nil {
		return c.refuse(source.Range, "module %q: %v", b.Labels[0], err)
	}
	// The inputs are arguments, never blocks.
	_, diags = remain.JustAttributes()
	return c.diagnostics(diags)
}

// functions checks every function call in node: known built-ins only,
// and file functions only on literal paths inside the configuration (in
// native syntax; allowFiles is false for JSON and for templates read by
// templatefile, which see no path.module).
func (c *checker) functions(node hclsyntax.Node, allowFiles bool) error {
	var err error
	hclsyntax.VisitAll(node, func(n hclsyntax.Node) hcl.Diagnostics {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && err == nil && !c.isType(call) {
			err = c.call(call, allowFiles)
		}
		return nil
	})
	return err
}

// typeConstructors are the calls a type constraint may make.
var typeConstructors = setOf("list", "map", "set", "object", "tuple", "optional")

// checkTypeCalls refuses any call in a type constraint but the type
// constructors: Terraform evaluates none of them, and seb does not rely
// on that.
func (c *checker) checkTypeCalls(expr hclsyntax.Node) error {
	var err error
	hclsyntax.VisitAll(expr, func(n hclsyntax.Node) hcl.Diagnostics {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && err == nil && !typeConstructors[call.Name] {
			err = c.refuse(call.NameRange, "%s() in a type constraint; only list, map, set, object, tuple and optional belong there", call.Name)
		}
		return nil
	})
	return err
}

// exprKeys are the JSON keys whose strings Terraform reads as expressions
// (references, or a type), not as templates.
var exprKeys = setOf("to", "from", "replace_triggered_by", "ignore_changes", "depends_on", "provider", "providers", "type")

// checkJSONExpression reads a string Terraform parses as an expression:
// a reference needs no function, and a type only its constructors.
func (c *checker) checkJSONExpression(at hcl.Range, where, key, s string) error {
	expr, diags := hclsyntax.ParseExpression([]byte(s), c.file, hcl.Pos{Line: at.Start.Line, Column: 1})
	if diags.HasErrors() {
		return nil // not an expression: Terraform refuses it, or reads it as text
	}
	if key == "type" {
		return c.checkTypeCalls(expr)
	}
	var err error
	hclsyntax.VisitAll(expr, func(n hclsyntax.Node) hcl.Diagnostics {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && err == nil {
			err = c.refuse(at, "%s: %s() where Terraform expects a reference", where, call.Name)
		}
		return nil
	})
	return err
}

// isType reports whether a call is part of a variable's type constraint.
func (c *checker) isType(call *hclsyntax.FunctionCallExpr) bool {
	for _, t := range c.types {
		if t.ContainsOffset(call.Range().Start.Byte) {
			return true
		}
	}
	return false
}

func (c *checker) call(call *hclsyntax.FunctionCallExpr, allowFiles bool) error {
	name := strings.TrimPrefix(call.Name, "core::")
	switch {
	case strings.Contains(name, "::"):
		return c.refuse(call.NameRange, "%s(): provider-defined functions run provider code outside any resource; seb does not admit them", call.Name)
	case refusedFunctions[name] != "":
		return c.refuse(call.NameRange, "%s(): %s", name, refusedFunctions[name])
	case knownFunctions[name]:
		return nil
	case !fileFunctions[name]:
		return c.refuse(call.NameRange, "seb does not know the function %s(), so it does not admit it", call.Name)
	case c.json:
		return c.refuse(call.NameRange, "%s(): file functions are not allowed in JSON configuration; use native syntax", name)
	case len(call.Args) == 0:
		return nil // Terraform refuses it
	}
	target, reason := c.pathArg(call.Args[0], allowFiles)
	if reason != "" {
		return c.refuse(call.NameRange, "%s(): %s", name, reason)
	}
	switch name {
	case "fileset":
		if len(call.Args) > 1 {
			if pattern, ok := literalString(call.Args[1]); !ok || strings.Contains(pattern, "..") {
				return c.refuse(call.NameRange, "fileset(): the pattern must be a literal without ..")
			}
		}
	case "templatefile":
		if !allowFiles {
			return c.refuse(call.NameRange, "templatefile() may not be called from a template")
		}
		return c.templateFile(call, target)
	}
	return nil
}

// templateFile checks the template a templatefile() call renders: a file
// inside the bundle, read with the same function rules (no file function:
// inside a template there is no path.module to anchor it).
func (c *checker) templateFile(call *hclsyntax.FunctionCallExpr, target string) error {
	root, err := os.OpenRoot(c.root)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(target))
	if err != nil {
		return c.refuse(call.NameRange, "templatefile(): the template %s is not a file of the bundle", target)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxTemplateSize+1))
	if err != nil {
		return c.refuse(call.NameRange, "templatefile(): the template %s cannot be read", target)
	}
	if len(src) > maxTemplateSize {
		return c.refuse(call.NameRange, "templatefile(): the template %s is larger than %d bytes", target, maxTemplateSize)
	}
	expr, diags := hclsyntax.ParseTemplate(src, target, hcl.InitialPos)
	if diags.HasErrors() {
		return c.refuse(call.NameRange, "templatefile(): the template %s does not parse: %s", target, diags.Error())
	}
	inner := &checker{root: c.root, file: target, moduleDir: c.moduleDir}
	return inner.functions(expr, false)
}

// pathArg resolves a file function's path argument to a path relative to
// the configuration's root, or says why it is refused. Allowed: a literal
// relative path (Terraform reads it from the root module's directory), or
// "${path.module}/…" or "${path.root}/…" followed by a literal when
// anchors is true; either must stay inside the configuration.
func (c *checker) pathArg(expr hclsyntax.Expression, anchors bool) (string, string) {
	why := "the path must be a literal inside the configuration (\"x\", \"${path.module}/x\" or \"${path.root}/x\")"
	if !anchors {
		why = "the path must be a literal inside the configuration"
	}
	if p, ok := literalString(expr); ok {
		if !localPath(p) {
			return "", why
		}
		return path.Clean(p), ""
	}
	tmpl, ok := expr.(*hclsyntax.TemplateExpr)
	if !ok || len(tmpl.Parts) != 2 || !anchors {
		return "", why
	}
	trav, ok := tmpl.Parts[0].(*hclsyntax.ScopeTraversalExpr)
	if !ok || len(trav.Traversal) != 2 || trav.Traversal.RootName() != "path" {
		return "", why
	}
	attr, ok := trav.Traversal[1].(hcl.TraverseAttr)
	if !ok || (attr.Name != "module" && attr.Name != "root") {
		return "", why
	}
	rest, ok := literalString(tmpl.Parts[1])
	if !ok || !strings.HasPrefix(rest, "/") || !localPath(rest[1:]) {
		return "", why
	}
	base := "."
	if attr.Name == "module" {
		base = c.moduleDir
	}
	target := path.Join(base, rest[1:])
	if !localPath(target) {
		return "", why
	}
	return target, ""
}

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

// scanJSON walks a JSON document token by token, calling key for every
// object key and value for every string value with the path of keys
// above it and the line it ends on, and refuses a key repeated in one
// object. It bounds nesting.
func scanJSON(file string, src []byte, key func(path []string, k string, line int) error, value func(path []string, v string, line int) error) error {
	line := func(dec *json.Decoder) int {
		return bytes.Count(src[:dec.InputOffset()], []byte("\n")) + 1
	}
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
						return refuseConfig("%s line %d: the key %q appears twice in %s; Terraform would read both, so seb refuses to guess", file, line(dec), k, strings.Join(append(path, "{}"), "."))
					}
					seen[k] = true
					if err := key(path, k, line(dec)); err != nil {
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
			return value(path, t, line(dec))
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

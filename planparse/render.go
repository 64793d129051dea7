package planparse

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// RenderOptions configure Render.
type RenderOptions struct {
	// Color adds ANSI colours, for a terminal.
	Color bool
	// Digest, when set, is printed under the totals.
	Digest string
	// Sides name the two summaries RenderDivergence compares, when they
	// are not a certificate's and a live plan's: {"seb's plan", "the
	// agent's plan"}.
	Sides [2]string
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

// Symbol returns the marker `terraform plan` prints for a change: "+", "~",
// "-", "-/+", "+/-", "<=", "." (forget) or " " (move or import only).
func (r *ResourceChange) Symbol() string {
	switch r.Action {
	case ActionCreate:
		return "+"
	case ActionRead:
		return "<="
	case ActionUpdate:
		return "~"
	case ActionDelete:
		return "-"
	case ActionForget:
		return "."
	case ActionReplace:
		if r.ReplaceOrder == CreateBeforeDestroy {
			return "+/-"
		}
		return "-/+"
	}
	return " "
}

// DriftHeadline returns the sentence Terraform prints above a change made
// outside of Terraform (a resource_drift entry), such as
// "terraform_data.web has changed": what happened, not what will.
func (r *ResourceChange) DriftHeadline() string {
	subject := r.Address
	if r.Deposed != "" {
		subject += " (deposed object " + r.Deposed + ")"
	}
	switch r.Action {
	case ActionDelete:
		return printable(subject + " has been deleted")
	case ActionCreate:
		return printable(subject + " has been created")
	}
	return printable(subject + " has changed")
}

// Headline returns the sentence Terraform prints above a change, such as
// "terraform_data.web will be updated in-place".
func (r *ResourceChange) Headline() string {
	subject := r.Address
	if r.Deposed != "" {
		subject += " (deposed object " + r.Deposed + ")"
	}
	var what string
	switch r.Action {
	case ActionCreate:
		what = "will be created"
	case ActionRead:
		what = "will be read during apply"
	case ActionUpdate:
		what = "will be updated in-place"
	case ActionDelete:
		what = "will be destroyed"
	case ActionForget:
		what = "will be removed from the state, but not destroyed"
	case ActionReplace:
		if r.ReplaceOrder == CreateBeforeDestroy {
			what = "must be replaced (new object created before the old is destroyed)"
		} else {
			what = "must be replaced"
		}
	default:
		switch {
		case r.PreviousAddress != "" && r.Importing != nil:
			what = "will be imported from " + r.Importing.String() + " and has moved from " + r.PreviousAddress
		case r.PreviousAddress != "":
			what = "has moved from " + r.PreviousAddress
		default:
			what = "will be imported from " + r.Importing.String()
		}
		return printable(subject + " " + what)
	}
	if r.PreviousAddress != "" {
		what += " (moved from " + r.PreviousAddress + ")"
	}
	if r.Importing != nil {
		what += " (imported from " + r.Importing.String() + ")"
	}
	return printable(subject + " " + what)
}

// printable escapes the runes of s that a terminal would act on rather
// than print, so that a plan cannot send escape sequences to a reviewer.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			var b strings.Builder
			for _, r := range s {
				if unicode.IsPrint(r) {
					b.WriteRune(r)
				} else {
					fmt.Fprintf(&b, "\\u%04x", r)
				}
			}
			return b.String()
		}
	}
	return s
}

// Reason explains the action reason in words, or returns "".
func (r *ResourceChange) Reason() string {
	switch r.ActionReason {
	case "":
		return ""
	case "replace_because_tainted":
		return "the object is tainted"
	case "replace_because_cannot_update":
		return "a changed attribute cannot be updated in-place"
	case "replace_by_request":
		return "replacement was requested"
	case "replace_by_triggers":
		return "a replace_triggered_by reference changed"
	case "delete_because_no_resource_config":
		return "its configuration is gone"
	case "delete_because_wrong_repetition":
		return "its instance key does not match the resource's count or for_each"
	case "delete_because_count_index":
		return "its index is out of range for count"
	case "delete_because_each_key":
		return "its key is not in for_each"
	case "delete_because_no_module":
		return "its module is gone"
	case "delete_because_no_move_target":
		return "it was moved to an address with no configuration"
	case "read_because_config_unknown":
		return "its configuration depends on values not yet known"
	case "read_because_dependency_pending":
		return "it depends on resources with pending changes"
	case "read_because_check_nested":
		return "it is part of a check block"
	}
	return strings.ReplaceAll(r.ActionReason, "_", " ")
}

// ForcesReplacement reports whether path is one of the replace paths.
func (r *ResourceChange) ForcesReplacement(path Path) bool {
	for _, p := range r.ReplacePaths {
		if comparePaths(p, path) == 0 {
			return true
		}
	}
	return false
}

// Symbol returns "+", "-" or "~" for an attribute change: added,
// removed or changed.
func (c *AttributeChange) Symbol() string {
	switch {
	case c.Before == nil || c.Before == (Absent{}):
		return "+"
	case c.After == nil || c.After == (Absent{}):
		return "-"
	}
	return "~"
}

// Counts tallies a summary the way `terraform plan` does: a replacement
// counts as one add and one destroy.
type Counts struct {
	Add, Change, Destroy, Replace, Read, Import, Move, Forget int
}

// Count returns the summary's counts.
func (s *Summary) Count() Counts {
	var c Counts
	for i := range s.Resources {
		r := &s.Resources[i]
		switch r.Action {
		case ActionCreate:
			c.Add++
		case ActionUpdate:
			c.Change++
		case ActionDelete:
			c.Destroy++
		case ActionReplace:
			c.Replace++
			c.Add++
			c.Destroy++
		case ActionRead:
			c.Read++
		case ActionForget:
			c.Forget++
		}
		if r.Importing != nil {
			c.Import++
		}
		if r.PreviousAddress != "" {
			c.Move++
		}
	}
	return c
}

// FormatValue renders a summary value on one line, as `terraform plan`
// would: strings quoted, unknowns as "(known after apply)", sensitive values
// as "(sensitive value)", collections as compact JSON.
func FormatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case Unknown:
		return "(known after apply)"
	case Sensitive:
		return "(sensitive value)"
	case Absent:
		return "(absent)"
	case string:
		return strconv.Quote(v)
	case json.Number:
		return string(v)
	case bool:
		if v {
			return "true"
		}
		return "false"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = FormatValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case Object:
		parts := make([]string, len(v))
		for i, m := range v {
			parts[i] = FormatValue(m.Name) + " = " + FormatValue(m.Value)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}

// Render writes s in the style of `terraform plan`: one block per resource
// with its changed attributes, then the output changes and the totals.
func Render(w io.Writer, s *Summary, opts RenderOptions) error {
	bw := bufio.NewWriter(w)
	paint := func(color, text string) string {
		if !opts.Color || color == "" {
			return text
		}
		return color + text + ansiReset
	}
	colorOf := func(symbol string) string {
		switch symbol {
		case "+":
			return ansiGreen
		case "-":
			return ansiRed
		case "~":
			return ansiYellow
		case "<=", ".":
			return ansiCyan
		case "-/+", "+/-":
			return ansiYellow
		}
		return ""
	}
	if len(s.Resources) == 0 && len(s.Outputs) == 0 {
		fmt.Fprintln(bw, paint(ansiBold, "No changes.")+" The plan changes no resources and no outputs.")
	}
	for i := range s.Resources {
		r := &s.Resources[i]
		fmt.Fprintf(bw, "  %s\n", paint(ansiBold, "# "+r.Headline()))
		if reason := r.Reason(); reason != "" {
			fmt.Fprintf(bw, "  # (because %s)\n", reason)
		}
		symbol := r.Symbol()
		kind := "resource"
		if r.Mode == "data" {
			kind = "data"
		}
		fmt.Fprintf(bw, "%s %s %q %q {\n", padSymbol(paint(colorOf(symbol), symbol), symbol), kind, r.Type, r.Name)
		for j := range r.Changes {
			c := &r.Changes[j]
			as := c.Symbol()
			line := fmt.Sprintf("      %s %s = ", paint(colorOf(as), as), c.Path)
			switch {
			case as == "+":
				line += FormatValue(c.After)
			case as == "-":
				line += FormatValue(c.Before) + " -> null"
			default:
				line += FormatValue(c.Before) + " -> " + FormatValue(c.After)
			}
			if r.ForcesReplacement(c.Path) {
				line += paint(ansiRed, " # forces replacement")
			}
			fmt.Fprintln(bw, line)
		}
		fmt.Fprint(bw, "    }\n\n")
	}
	if len(s.Outputs) > 0 {
		fmt.Fprintln(bw, "Changes to Outputs:")
		for i := range s.Outputs {
			o := &s.Outputs[i]
			var symbol, value string
			switch o.Action {
			case ActionCreate:
				symbol, value = "+", FormatValue(o.After)
			case ActionDelete:
				symbol, value = "-", FormatValue(o.Before)+" -> null"
			default:
				symbol, value = "~", FormatValue(o.Before)+" -> "+FormatValue(o.After)
			}
			fmt.Fprintf(bw, "  %s %s = %s\n", paint(colorOf(symbol), symbol), o.Name, value)
		}
		fmt.Fprintln(bw)
	}
	c := s.Count()
	if len(s.Resources) > 0 {
		line := fmt.Sprintf("Plan: %d to add, %d to change, %d to destroy.", c.Add, c.Change, c.Destroy)
		var extra []string
		for _, e := range []struct {
			n    int
			what string
		}{{c.Replace, "replaced"}, {c.Read, "read"}, {c.Import, "imported"}, {c.Move, "moved"}, {c.Forget, "forgotten"}} {
			if e.n > 0 {
				extra = append(extra, fmt.Sprintf("%d %s", e.n, e.what))
			}
		}
		if len(extra) > 0 {
			line += " (" + strings.Join(extra, ", ") + ")"
		}
		fmt.Fprintln(bw, paint(ansiBold, line))
	}
	if opts.Digest != "" {
		fmt.Fprintf(bw, "Digest: %s\n", opts.Digest)
	}
	return bw.Flush()
}

// padSymbol right-aligns a symbol in three columns as Terraform does; the
// padding counts the visible symbol, not its colour codes.
func padSymbol(painted, symbol string) string {
	if pad := 3 - len(symbol); pad > 0 {
		return strings.Repeat(" ", pad) + painted
	}
	return painted
}

// RenderDivergence writes d for a reviewer: resources only in one summary,
// and for each resource both summaries change, every field and attribute
// with its certified and live values side by side.
func RenderDivergence(w io.Writer, d *Divergence, opts RenderOptions) error {
	bw := bufio.NewWriter(w)
	paint := func(color, text string) string {
		if !opts.Color {
			return text
		}
		return color + text + ansiReset
	}
	if d.Empty() {
		fmt.Fprintf(bw, "Same: both summaries have digest %s\n", d.CertifiedDigest)
		return bw.Flush()
	}
	fmt.Fprintln(bw, paint(ansiBold+ansiRed, "Diverged."))
	a, b := opts.Sides[0], opts.Sides[1]
	if a == "" || b == "" {
		fmt.Fprintf(bw, "  certified: %s\n  live:      %s\n\n", d.CertifiedDigest, d.LiveDigest)
	} else {
		fmt.Fprintf(bw, "  %s: %s\n  %s: %s\n\n", a, d.CertifiedDigest, b, d.LiveDigest)
	}
	change := func(c *AttributeChange) string {
		if c == nil {
			return "(no change)"
		}
		return FormatValue(c.Before) + " -> " + FormatValue(c.After)
	}
	named := a != "" && b != ""
	for i := range d.OnlyCertified {
		r := &d.OnlyCertified[i]
		if named {
			fmt.Fprintf(bw, "  # %s: %s would %s it; %s does not change it\n", r.Key(), a, describeAction(r), b)
		} else {
			fmt.Fprintf(bw, "  # %s: certified to %s, but the live plan does not change it\n", r.Key(), describeAction(r))
		}
	}
	for i := range d.OnlyLive {
		r := &d.OnlyLive[i]
		if named {
			fmt.Fprintf(bw, "  # %s: %s would %s it; %s does not change it\n", r.Key(), b, describeAction(r), a)
		} else {
			fmt.Fprintf(bw, "  # %s: the live plan would %s it, which was never certified\n", r.Key(), describeAction(r))
		}
	}
	left, right := "certified", "live"
	if named {
		left, right = a, b
	}
	for i := range d.Resources {
		rd := &d.Resources[i]
		key := rd.Address
		if rd.Deposed != "" {
			key += " (deposed " + rd.Deposed + ")"
		}
		fmt.Fprintf(bw, "  # %s differs:\n", key)
		for _, f := range rd.Fields {
			fmt.Fprintf(bw, "      %s: %s %s, %s %s\n", f.Field, left, FormatValue(f.Certified), right, FormatValue(f.Live))
		}
		for _, attr := range rd.Attributes {
			fmt.Fprintf(bw, "      %s: %s %s, %s %s\n", attr.Path, left, paint(ansiGreen, change(attr.Certified)), right, paint(ansiRed, change(attr.Live)))
		}
	}
	for _, o := range d.Outputs {
		oc := func(c *OutputChange) string {
			if c == nil {
				return "(no change)"
			}
			return FormatValue(c.Before) + " -> " + FormatValue(c.After)
		}
		fmt.Fprintf(bw, "  # output %s: %s %s, %s %s\n", o.Name, left, oc(o.Certified), right, oc(o.Live))
	}
	return bw.Flush()
}

func describeAction(r *ResourceChange) string {
	if r.Action == ActionReplace {
		return "replace (" + string(r.ReplaceOrder) + ")"
	}
	return string(r.Action)
}

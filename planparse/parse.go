// Package planparse turns Terraform plan JSON (the output of
// `terraform show -json PLANFILE`, from Terraform 0.12 onwards and OpenTofu)
// into seb's canonical resource-diff summary, its digest, a structured
// divergence between two summaries, and a human rendering.
//
// The summary is the primitive every seb guarantee rests on: the same
// planned changes always give the same canonical bytes and digest, whatever
// the key order, whitespace or number spelling of the input, and any real
// difference gives a different digest. Sensitive values never appear in
// clear: they become a keyed digest (HMAC-SHA256 under a caller's key).
package planparse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/hashicorp/go-version"
	tfjson "github.com/hashicorp/terraform-json"
)

// DefaultMaxBytes is the largest plan JSON Parse reads unless told otherwise.
const DefaultMaxBytes = 256 << 20

// Errors returned by Parse, to test with errors.Is. Each is wrapped in a
// message that says what exactly was wrong.
var (
	ErrTooLarge           = errors.New("plan JSON is too large")
	ErrBinaryPlan         = errors.New("saved binary plan file, not plan JSON")
	ErrNotJSON            = errors.New("not JSON")
	ErrTruncated          = errors.New("plan JSON is truncated")
	ErrNotPlan            = errors.New("not a Terraform plan")
	ErrUnsupportedVersion = errors.New("unsupported plan format_version")
	ErrMalformed          = errors.New("malformed plan")
	ErrErrored            = errors.New("the plan errored")
	ErrUnsupported        = errors.New("the plan uses what seb cannot certify")
)

// Options configure Parse.
type Options struct {
	// SensitiveKey is the HMAC key under which sensitive values are
	// digested. Required; a summary is only comparable with another made
	// under the same key.
	SensitiveKey []byte
	// MaxBytes limits the size of the plan JSON; 0 means DefaultMaxBytes.
	MaxBytes int64
	// MaxChangeBytes limits the JSON of any one resource change, and of all
	// output changes together; 0 means DefaultMaxChangeBytes. Decoded values
	// take many times their JSON size, so this bounds memory on hostile input.
	MaxChangeBytes int64
}

// DefaultMaxChangeBytes is the largest single resource change Parse reads
// unless told otherwise.
const DefaultMaxChangeBytes = 16 << 20

// maxNesting bounds how deeply the JSON Parse skips may nest, as
// encoding/json bounds what it decodes.
const maxNesting = 10000

// Valid reports whether the options can be used.
func (o Options) Valid() error {
	if len(o.SensitiveKey) == 0 {
		return errors.New("planparse: Options.SensitiveKey is empty")
	}
	if o.MaxBytes < 0 || o.MaxChangeBytes < 0 {
		return errors.New("planparse: Options.MaxBytes or MaxChangeBytes is negative")
	}
	return nil
}

func (o Options) maxBytes() int64 {
	if o.MaxBytes == 0 {
		return DefaultMaxBytes
	}
	return o.MaxBytes
}

// A Plan is what seb keeps of a plan JSON: its versions, the summary of its
// changes and the summary of the drift Terraform detected while refreshing.
type Plan struct {
	FormatVersion    string
	TerraformVersion string
	Summary          *Summary
	// Digest is Summary.Digest().
	Digest string
	// Drift holds the plan's resource_drift entries (changes made outside
	// Terraform since the last apply), summarized like Summary.Resources.
	// Drift is not part of the digest: whether it matters is the execution
	// rule's decision.
	Drift []ResourceChange
	// SensitivityUnmarked is true for plan formats before 0.2 (Terraform
	// before 0.15), which do not say which values are sensitive: their
	// secrets appear in the summary in clear.
	SensitivityUnmarked bool
}

// Parse reads one plan JSON document from r and summarizes it. It reads r
// as a stream, holding at most one top-level member of the plan at a time,
// so memory stays close to the size of the summary.
//
// Parse returns an error wrapping ErrTooLarge, ErrBinaryPlan, ErrNotJSON,
// ErrTruncated, ErrNotPlan, ErrUnsupportedVersion, ErrMalformed or ErrErrored
// for bad input, and any error of r itself.
func Parse(r io.Reader, opts Options) (*Plan, error) {
	if err := opts.Valid(); err != nil {
		return nil, err
	}
	limit := opts.maxBytes()
	counted := &countingReader{r: io.LimitReader(r, limit+1), windowStart: -1}
	buffered := bufio.NewReaderSize(counted, 64<<10)
	head, _ := buffered.Peek(4)
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return nil, fmt.Errorf("%w: this is a zip archive as `terraform plan -out` writes; convert it with `terraform show -json FILE`", ErrBinaryPlan)
	case bytes.HasPrefix(head, []byte("\xef\xbb\xbf")):
		buffered.Discard(3) // a UTF-8 byte order mark says nothing
	case bytes.HasPrefix(head, []byte("\xff\xfe")), bytes.HasPrefix(head, []byte("\xfe\xff")):
		return nil, fmt.Errorf("%w: the input is UTF-16 encoded (as PowerShell's > writes); seb reads UTF-8: use `terraform show -json FILE | Out-File -Encoding utf8 plan.json`", ErrNotJSON)
	}
	counted.maxWindow = opts.MaxChangeBytes
	if counted.maxWindow == 0 {
		counted.maxWindow = DefaultMaxChangeBytes
	}
	d := &planDecoder{
		dec:   json.NewDecoder(buffered),
		sum:   &summarizer{key: opts.SensitiveKey, collecting: true},
		count: counted,
	}
	d.dec.UseNumber()
	plan, err := d.decode()
	if counted.n > limit {
		return nil, fmt.Errorf("%w: over the %s limit", ErrTooLarge, formatBytes(limit))
	}
	if counted.err != nil {
		return nil, fmt.Errorf("read plan: %w", counted.err)
	}
	if err != nil {
		return nil, err
	}
	return plan, nil
}

// countingReader counts what it reads and, while a window is open, fails
// once the window has read more than maxWindow bytes.
type countingReader struct {
	r   io.Reader
	n   int64
	err error // the first error of r other than io.EOF

	maxWindow   int64
	windowStart int64 // -1: no window open
	exceeded    bool
}

var errWindow = errors.New("change too large")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.windowStart >= 0 && c.n-c.windowStart > c.maxWindow {
		c.exceeded = true
		return 0, errWindow
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// window opens a window for one change, or closes it with start -1.
func (c *countingReader) window(start int64) {
	c.windowStart = start
	c.exceeded = false
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d-byte", n)
	}
}

type planDecoder struct {
	dec   *json.Decoder
	sum   *summarizer
	count *countingReader

	formatVersion    *string
	terraformVersion string
	errored          bool
	complete         *bool
	members          map[string]bool
	resources        []ResourceChange
	drift            []ResourceChange
	outputs          []OutputChange
}

func (d *planDecoder) decode() (*Plan, error) {
	tok, err := d.dec.Token()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: the input is empty", ErrNotJSON)
	}
	if err != nil {
		return nil, d.readError(err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '{' {
		return nil, fmt.Errorf("%w: the top-level JSON value is %s, not an object", ErrNotPlan, describeToken(tok))
	}
	d.members = map[string]bool{}
	for d.dec.More() {
		tok, err := d.dec.Token()
		if err != nil {
			return nil, d.readError(err)
		}
		name, _ := tok.(string)
		if d.members[name] {
			return nil, fmt.Errorf("%w: member %q appears twice", ErrMalformed, name)
		}
		d.members[name] = true
		if err := d.member(name); err != nil {
			return nil, err
		}
	}
	if _, err := d.dec.Token(); err != nil {
		return nil, d.readError(err)
	}
	if _, err := d.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, d.readError(err)
		}
		return nil, fmt.Errorf("%w: unexpected data after the plan JSON at byte %d", ErrNotJSON, d.dec.InputOffset())
	}
	if err := d.checkPlan(); err != nil {
		return nil, err
	}
	d.sum.scrubSummary(d.resources, d.drift, d.outputs)
	sortResources(d.resources)
	sortResources(d.drift)
	if err := unique(d.resources); err != nil {
		return nil, err
	}
	summary := &Summary{Resources: d.resources, Outputs: d.outputs}
	if summary.Resources == nil {
		summary.Resources = []ResourceChange{}
	}
	if summary.Outputs == nil {
		summary.Outputs = []OutputChange{}
	}
	return &Plan{
		FormatVersion:       *d.formatVersion,
		TerraformVersion:    d.terraformVersion,
		Summary:             summary,
		Digest:              summary.Digest(),
		Drift:               d.drift,
		SensitivityUnmarked: !formatAtLeast(*d.formatVersion, "0.2"),
	}, nil
}

// member decodes the value of the top-level member name.
func (d *planDecoder) member(name string) error {
	switch name {
	case "format_version":
		var v string
		if err := d.value(name, &v); err != nil {
			return err
		}
		d.formatVersion = &v
		return d.checkVersion()
	case "terraform_version":
		return d.value(name, &d.terraformVersion)
	case "errored":
		return d.value(name, &d.errored)
	case "complete":
		return d.value(name, &d.complete)
	case "resource_changes":
		return d.resourceList(name, &d.resources)
	case "resource_drift":
		// Secrets seen only in drift must not change what the planned
		// changes' summary hides, or drift would move the digest.
		d.sum.collecting = false
		defer func() { d.sum.collecting = true }()
		return d.resourceList(name, &d.drift)
	case "action_invocations":
		return d.refuseNonEmpty(name, "it invokes Terraform actions, which seb does not yet certify")
	case "deferred_changes":
		return d.refuseNonEmpty(name, "it defers changes to a later plan; seb certifies only complete plans")
	case "output_changes":
		var changes map[string]*tfjson.Change
		d.count.window(d.count.n)
		err := d.value(name, &changes)
		d.count.window(-1)
		if err != nil {
			return err
		}
		for outName, c := range changes {
			o, keep, err := d.sum.outputChange(outName, c)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrMalformed, err)
			}
			if keep {
				d.outputs = append(d.outputs, o)
			}
		}
		sortOutputs(d.outputs)
		return nil
	default:
		// planned_values, prior_state, configuration and the rest carry
		// nothing the summary needs.
		return d.skip()
	}
}

// refuseNonEmpty consumes a list member and fails if it has any element.
func (d *planDecoder) refuseNonEmpty(name, why string) error {
	tok, err := d.dec.Token()
	if err != nil {
		return d.readError(err)
	}
	if tok == nil {
		return nil
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '[' {
		return fmt.Errorf("%w: %s is %s, not a list", ErrMalformed, name, describeToken(tok))
	}
	if d.dec.More() {
		return fmt.Errorf("%w: %s", ErrUnsupported, why)
	}
	_, err = d.dec.Token()
	if err != nil {
		return d.readError(err)
	}
	return nil
}

// tokenDepth is how deep skip walks token by token before it decodes whole
// values: deep enough that planned_values, prior_state and configuration
// are consumed resource by resource, so none of them sits in memory whole,
// and shallow enough that few tokens are allocated.
const tokenDepth = 4

// skip consumes one JSON value the summary does not need.
func (d *planDecoder) skip() error { return d.skipValue(1) }

func (d *planDecoder) skipValue(depth int) error {
	if depth > tokenDepth {
		return d.value("", &skipped{})
	}
	tok, err := d.dec.Token()
	if err != nil {
		return d.readError(err)
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar, already consumed
	}
	for d.dec.More() {
		if delim == '{' {
			if _, err := d.dec.Token(); err != nil {
				return d.readError(err)
			}
		}
		if err := d.skipValue(depth + 1); err != nil {
			return err
		}
	}
	if _, err := d.dec.Token(); err != nil {
		return d.readError(err)
	}
	return nil
}

// skipped consumes a JSON value without building it.
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }

// resourceList decodes a list of resource changes one element at a time and
// summarizes each, so the raw values of only one change are alive at once.
func (d *planDecoder) resourceList(name string, into *[]ResourceChange) error {
	tok, err := d.dec.Token()
	if err != nil {
		return d.readError(err)
	}
	if tok == nil {
		return nil
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '[' {
		return fmt.Errorf("%w: %s is %s, not a list", ErrMalformed, name, describeToken(tok))
	}
	for i := 0; d.dec.More(); i++ {
		var rc tfjson.ResourceChange
		d.count.window(d.count.n)
		err := d.value(fmt.Sprintf("%s[%d]", name, i), &rc)
		d.count.window(-1)
		if err != nil {
			return err
		}
		entry, keep, err := d.sum.resourceChange(&rc)
		if err != nil {
			return fmt.Errorf("%w: %s[%d]: %w", ErrMalformed, name, i, err)
		}
		if keep {
			*into = append(*into, entry)
		}
	}
	_, err = d.dec.Token()
	if err != nil {
		return d.readError(err)
	}
	return nil
}

func (d *planDecoder) value(name string, v any) error {
	if err := d.dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			where := name
			if te.Field != "" {
				where += "." + te.Field
			}
			return fmt.Errorf("%w: %s: a JSON %s cannot be read as %s", ErrMalformed, where, te.Value, te.Type)
		}
		return d.readError(err)
	}
	return nil
}

// readError translates a decoding error into one of Parse's errors.
func (d *planDecoder) readError(err error) error {
	var se *json.SyntaxError
	switch {
	case d.count.exceeded:
		return fmt.Errorf("%w: one change is larger than the %s limit for a single change", ErrTooLarge, formatBytes(d.count.maxWindow))
	case d.count.err != nil:
		return fmt.Errorf("read plan: %w", d.count.err)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("%w: the input ends after %d bytes, inside the JSON document", ErrTruncated, d.count.n)
	case errors.As(err, &se) && strings.Contains(se.Error(), "exceeded max depth"):
		return fmt.Errorf("%w: JSON nested deeper than %d levels", ErrMalformed, maxNesting)
	case errors.As(err, &se):
		return fmt.Errorf("%w: %s (at byte %d)", ErrNotJSON, se.Error(), se.Offset)
	default:
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
}

func (d *planDecoder) checkVersion() error {
	v := *d.formatVersion
	if v == "" {
		return fmt.Errorf("%w: format_version is empty", ErrNotPlan)
	}
	if err := (&tfjson.Plan{FormatVersion: v}).Validate(); err != nil {
		return fmt.Errorf("%w %q: seb reads plan format %s", ErrUnsupportedVersion, v, tfjson.PlanFormatVersionConstraints)
	}
	return nil
}

// checkPlan tells a plan from other JSON once the whole document is read.
func (d *planDecoder) checkPlan() error {
	isPlan := d.members["planned_values"] || d.members["resource_changes"] || d.members["output_changes"]
	switch {
	case d.formatVersion == nil && !isPlan:
		return fmt.Errorf("%w: it has no format_version and no planned changes", ErrNotPlan)
	case !isPlan && d.members["values"]:
		return fmt.Errorf("%w: this is Terraform state JSON (it has \"values\", not \"planned_values\"); seb needs `terraform show -json PLANFILE`", ErrNotPlan)
	case !isPlan && d.members["provider_schemas"]:
		return fmt.Errorf("%w: this is provider schema JSON", ErrNotPlan)
	case !isPlan:
		return fmt.Errorf("%w: it has no planned_values, resource_changes or output_changes", ErrNotPlan)
	case d.formatVersion == nil:
		return fmt.Errorf("%w: format_version is missing", ErrNotPlan)
	case d.errored:
		return fmt.Errorf("%w: Terraform could not finish this plan, so it is not a complete description of the change", ErrErrored)
	case d.complete != nil && !*d.complete:
		return fmt.Errorf("%w: the plan is incomplete (made with -target, or with deferred changes); seb certifies only complete plans", ErrUnsupported)
	}
	return nil
}

// formatAtLeast reports whether plan format version v is at least min.
func formatAtLeast(v, min string) bool {
	have, err1 := version.NewVersion(v)
	want, err2 := version.NewVersion(min)
	return err1 == nil && err2 == nil && have.GreaterThanOrEqual(want)
}

func unique(rs []ResourceChange) error {
	for i := 1; i < len(rs); i++ {
		if rs[i].Address == rs[i-1].Address && rs[i].Deposed == rs[i-1].Deposed {
			return fmt.Errorf("%w: resource change %s appears twice", ErrMalformed, rs[i].Key())
		}
	}
	return nil
}

func sortOutputs(os []OutputChange) {
	sort.Slice(os, func(i, j int) bool { return lessUTF16(os[i].Name, os[j].Name) })
}

func describeToken(tok any) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "a list"
		}
		return fmt.Sprintf("%q", string(t))
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

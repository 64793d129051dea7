package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/term"

	"github.com/seb-broker/seb/planparse"
)

const (
	plansDir  = "../../planparse/testdata/plans"
	goldenDir = "../../planparse/testdata/golden"
)

// testKey is the key the golden summaries under planparse/testdata were made
// with, so the CLI's output can be held to them byte for byte.
const testKey = "seb test key for sensitive values"

// digestLine is the whole output of `seb digest`.
var digestLine = regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`)

// sebEnv lists the environment variables that change what seb does; every
// test starts with them unset.
var sebEnv = []string{"SEB_KEY_FILE", "SEB_NO_COLOR", "SEB_MAX_BYTES", "SEB_JSON", "NO_COLOR"}

// result is what one run of the command line produced.
type result struct {
	code           int
	stdout, stderr string
}

// isolate gives the test an empty HOME and XDG_CONFIG_HOME, unsets every
// variable in sebEnv, and returns a key file holding testKey.
func isolate(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	for _, name := range sebEnv {
		unsetenv(t, name)
	}
	return writeFile(t, "test.key", testKey+"\n")
}

// unsetenv unsets name for the duration of the test.
func unsetenv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // restores the old value after the test
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

// writeFile writes data to a new file in a temporary directory and returns
// its path.
func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// plan returns the path of a committed plan JSON, such as plan("update").
func plan(name string) string {
	return filepath.Join(plansDir, name+".json")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// fixtures returns the names of the committed plans.
func fixtures(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(plansDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no plans in %s", plansDir)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = strings.TrimSuffix(filepath.Base(p), ".json")
	}
	return names
}

// goldenDigest returns the digest recorded for a committed plan.
func goldenDigest(t *testing.T, name string) string {
	t.Helper()
	var g struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(goldenDir, name+".json"))), &g); err != nil {
		t.Fatal(err)
	}
	return g.Digest
}

// seb runs the command line with stdin and returns what it did.
func seb(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mustSucceed fails the test unless r exited 0 with nothing on stderr.
func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != exitOK || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q; want exit 0 and no stderr", r.code, r.stderr)
	}
}

// digestOf returns the output of `seb digest --key-file KEY FILE`, without
// the newline.
func digestOf(t *testing.T, key, file string) string {
	t.Helper()
	r := seb(t, "", "digest", "--key-file", key, file)
	mustSucceed(t, r)
	return strings.TrimSuffix(r.stdout, "\n")
}

// summaryOutput is what `seb summarize --json` prints.
type summaryOutput struct {
	Digest           string             `json:"digest"`
	FormatVersion    string             `json:"format_version"`
	TerraformVersion string             `json:"terraform_version"`
	Summary          *planparse.Summary `json:"summary"`
	Drift            []json.RawMessage  `json:"drift"`
}

// TestSummarize holds `seb summarize FILE` to the golden rendering of every
// committed plan: the diff, the totals and the digest line.
func TestSummarize(t *testing.T) {
	for _, name := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			key := isolate(t)
			want := readFile(t, filepath.Join(goldenDir, name+".txt"))

			got := seb(t, "", "summarize", "--key-file", key, plan(name))

			mustSucceed(t, got)
			if got.stdout != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", got.stdout, want)
			}
			if !strings.Contains(got.stdout, "\nDigest: "+goldenDigest(t, name)+"\n") {
				t.Errorf("stdout has no line %q", "Digest: "+goldenDigest(t, name))
			}
		})
	}
}

// TestSummarizeStdin checks that "-" reads the plan from standard input.
func TestSummarizeStdin(t *testing.T) {
	key := isolate(t)
	want := readFile(t, filepath.Join(goldenDir, "update.txt"))

	got := seb(t, readFile(t, plan("update")), "summarize", "--key-file", key, "-")

	mustSucceed(t, got)
	if got.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got.stdout, want)
	}
}

// TestSummarizeJSON checks the machine output: one JSON document whose digest
// is what `seb digest` prints and whose summary has that digest.
func TestSummarizeJSON(t *testing.T) {
	for _, name := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			key := isolate(t)

			got := seb(t, "", "summarize", "--json", "--key-file", key, plan(name))

			mustSucceed(t, got)
			var doc summaryOutput
			dec := json.NewDecoder(strings.NewReader(got.stdout))
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("stdout is not a summary document: %v\n%s", err, got.stdout)
			}
			if dec.More() {
				t.Errorf("stdout holds more than one JSON document:\n%s", got.stdout)
			}
			if want := digestOf(t, key, plan(name)); doc.Digest != want {
				t.Errorf("digest %q, `seb digest` prints %q", doc.Digest, want)
			}
			if want := goldenDigest(t, name); doc.Digest != want {
				t.Errorf("digest %q, golden %q", doc.Digest, want)
			}
			if doc.Summary == nil {
				t.Fatal("no summary")
			}
			if got := doc.Summary.Digest(); got != doc.Digest {
				t.Errorf("the summary's digest is %s, the document says %s", got, doc.Digest)
			}
			if doc.FormatVersion == "" || doc.TerraformVersion == "" {
				t.Errorf("format_version %q, terraform_version %q; want both", doc.FormatVersion, doc.TerraformVersion)
			}
			if doc.Drift == nil {
				t.Errorf("drift is null or missing; want a list:\n%s", got.stdout)
			}
		})
	}
}

// TestNoColor checks every way of turning colour off. Output that is not a
// terminal is never coloured either; TestColorOnTerminal covers terminals.
func TestNoColor(t *testing.T) {
	tests := []struct {
		name string
		args []string // the command and its arguments, without --key-file
		env  map[string]string
	}{
		{name: "summarize --no-color", args: []string{"summarize", "--no-color", plan("update")}},
		{name: "summarize SEB_NO_COLOR=true", args: []string{"summarize", plan("update")}, env: map[string]string{"SEB_NO_COLOR": "true"}},
		{name: "summarize NO_COLOR=1", args: []string{"summarize", plan("update")}, env: map[string]string{"NO_COLOR": "1"}},
		{name: "summarize not a terminal", args: []string{"summarize", plan("update")}},
		{name: "compare --no-color", args: []string{"compare", "--no-color", plan("update"), plan("delete")}},
		{name: "compare SEB_NO_COLOR=true", args: []string{"compare", plan("update"), plan("delete")}, env: map[string]string{"SEB_NO_COLOR": "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := isolate(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{tt.args[0], "--key-file", key}, tt.args[1:]...)

			got := seb(t, "", args...)

			if got.code == exitError || got.stderr != "" {
				t.Fatalf("exit %d, stderr %q", got.code, got.stderr)
			}
			if strings.ContainsRune(got.stdout, '\x1b') {
				t.Errorf("stdout has escape sequences: %q", got.stdout)
			}
			if tt.args[0] == "summarize" {
				if want := readFile(t, filepath.Join(goldenDir, "update.txt")); got.stdout != want {
					t.Errorf("stdout:\n%s\nwant:\n%s", got.stdout, want)
				}
			}
		})
	}
}

// TestEnvironmentFlags checks that each flag can be set with its SEB_*
// variable, and that a flag on the command line wins over the variable.
func TestEnvironmentFlags(t *testing.T) {
	sensitive, update := goldenDigest(t, "sensitive"), goldenDigest(t, "update")
	noKey := filepath.Join(t.TempDir(), "no-such.key")
	tests := []struct {
		name       string
		env        map[string]string // "KEY" stands for the test key file
		args       []string          // "KEY" stands for the test key file
		wantCode   int
		wantStdout string // substring
		wantStderr string // substring
	}{
		{
			name:       "SEB_KEY_FILE",
			env:        map[string]string{"SEB_KEY_FILE": "KEY"},
			args:       []string{"digest", plan("sensitive")},
			wantStdout: sensitive,
		},
		{
			name:       "--key-file wins over SEB_KEY_FILE",
			env:        map[string]string{"SEB_KEY_FILE": noKey},
			args:       []string{"digest", "--key-file", "KEY", plan("sensitive")},
			wantStdout: sensitive,
		},
		{
			name:       "SEB_JSON",
			env:        map[string]string{"SEB_KEY_FILE": "KEY", "SEB_JSON": "true"},
			args:       []string{"summarize", plan("update")},
			wantStdout: `"digest":"` + update + `"`,
		},
		{
			name:       "SEB_MAX_BYTES",
			env:        map[string]string{"SEB_KEY_FILE": "KEY", "SEB_MAX_BYTES": "10"},
			args:       []string{"digest", plan("update")},
			wantCode:   exitError,
			wantStderr: "too large",
		},
		{
			name:       "--max-bytes wins over SEB_MAX_BYTES",
			env:        map[string]string{"SEB_KEY_FILE": "KEY", "SEB_MAX_BYTES": "10"},
			args:       []string{"digest", "--max-bytes", "1000000", plan("update")},
			wantStdout: update,
		},
		{
			name:       "bad SEB_MAX_BYTES",
			env:        map[string]string{"SEB_KEY_FILE": "KEY", "SEB_MAX_BYTES": "lots"},
			args:       []string{"digest", plan("update")},
			wantCode:   exitError,
			wantStderr: "SEB_MAX_BYTES",
		},
		{
			name:       "bad SEB_NO_COLOR",
			env:        map[string]string{"SEB_KEY_FILE": "KEY", "SEB_NO_COLOR": "maybe"},
			args:       []string{"summarize", plan("update")},
			wantCode:   exitError,
			wantStderr: "SEB_NO_COLOR",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := isolate(t)
			withKey := func(s string) string {
				if s == "KEY" {
					return key
				}
				return s
			}
			for k, v := range tt.env {
				t.Setenv(k, withKey(v))
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = withKey(a)
			}

			got := seb(t, "", args...)

			if got.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", got.code, tt.wantCode, got.stderr)
			}
			if !strings.Contains(got.stdout, tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", got.stdout, tt.wantStdout)
			}
			if !strings.Contains(got.stderr, tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", got.stderr, tt.wantStderr)
			}
			if tt.wantCode == exitError && !strings.HasPrefix(got.stderr, "seb: ") {
				t.Errorf("stderr %q does not start with \"seb: \"", got.stderr)
			}
			if _, err := os.Stat(filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "seb")); err == nil {
				t.Errorf("seb created its default key although a key file was given")
			}
		})
	}
}

// TestDigest checks that `seb digest` prints one line, the same for the same
// plan, from a file or standard input, and different for different plans.
func TestDigest(t *testing.T) {
	key := isolate(t)
	seen := map[string]string{} // digest → plan
	for _, name := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			first := seb(t, "", "digest", "--key-file", key, plan(name))
			second := seb(t, "", "digest", "--key-file", key, plan(name))
			stdin := seb(t, readFile(t, plan(name)), "digest", "--key-file", key, "-")

			mustSucceed(t, first)
			if !digestLine.MatchString(first.stdout) {
				t.Errorf("stdout %q is not one line sha256:<64 hex>", first.stdout)
			}
			if want := goldenDigest(t, name) + "\n"; first.stdout != want {
				t.Errorf("stdout %q, want %q", first.stdout, want)
			}
			if second.stdout != first.stdout {
				t.Errorf("second run printed %q, first %q", second.stdout, first.stdout)
			}
			if stdin.stdout != first.stdout {
				t.Errorf("from standard input %q, from the file %q", stdin.stdout, first.stdout)
			}
			if other, ok := seen[first.stdout]; ok {
				t.Errorf("%s and %s have the same digest %s", name, other, first.stdout)
			}
			seen[first.stdout] = name
		})
	}
}

// TestDigestKey checks that the key changes the digest of a plan with
// sensitive values, and only of such a plan.
func TestDigestKey(t *testing.T) {
	key := isolate(t)
	otherKey := writeFile(t, "other.key", "another key, also long enough")
	tests := []struct {
		name     string
		plan     string
		wantSame bool
	}{
		{name: "sensitive values", plan: "sensitive", wantSame: false},
		{name: "no sensitive values", plan: "update", wantSame: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := digestOf(t, key, plan(tt.plan))
			b := digestOf(t, otherKey, plan(tt.plan))
			if same := a == b; same != tt.wantSame {
				t.Errorf("digests under two keys %s and %s; same = %v, want %v", a, b, same, tt.wantSame)
			}
		})
	}
}

// TestCompare covers compare's exit codes and reports, on plans and on
// summary documents written by `seb summarize --json`.
func TestCompare(t *testing.T) {
	key := isolate(t)
	summaryOf := func(name string) string {
		r := seb(t, "", "summarize", "--json", "--key-file", key, plan(name))
		mustSucceed(t, r)
		return r.stdout
	}
	updateSummary := summaryOf("update")
	// A live plan that changes terraform_data.web differently.
	changedPlan := writeFile(t, "changed.json", strings.ReplaceAll(readFile(t, plan("update")), "nginx:1.27", "nginx:1.28"))
	// The digest of another plan recorded over the update summary.
	wrongDigest := strings.Replace(updateSummary, goldenDigest(t, "update"), goldenDigest(t, "delete"), 1)
	// The summary changed after the digest was recorded.
	wrongSummary := strings.Replace(updateSummary, "nginx:1.27", "nginx:1.28", 1)

	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout []string // substrings
		wantStderr string   // substring
	}{
		{
			name:       "same plan",
			args:       []string{plan("update"), plan("update")},
			wantCode:   exitOK,
			wantStdout: []string{"Same", goldenDigest(t, "update")},
		},
		{
			name:     "different plans",
			args:     []string{plan("update"), plan("delete")},
			wantCode: exitDiverged,
			wantStdout: []string{
				"Diverged", goldenDigest(t, "update"), goldenDigest(t, "delete"),
				"terraform_data.web", "terraform_data.worker[0]", "terraform_data.worker[1]",
			},
		},
		{
			name:       "an attribute differs",
			args:       []string{plan("update"), changedPlan},
			wantCode:   exitDiverged,
			wantStdout: []string{"terraform_data.web differs", "input.image", `"nginx:1.27"`, `"nginx:1.28"`},
		},
		{
			name:       "summary and its plan",
			args:       []string{writeFile(t, "update-summary.json", updateSummary), plan("update")},
			wantCode:   exitOK,
			wantStdout: []string{"Same"},
		},
		{
			name:       "plan and its summary",
			args:       []string{plan("update"), writeFile(t, "update-summary.json", updateSummary)},
			wantCode:   exitOK,
			wantStdout: []string{"Same"},
		},
		{
			name:       "summary and another plan",
			args:       []string{writeFile(t, "update-summary.json", updateSummary), plan("delete")},
			wantCode:   exitDiverged,
			wantStdout: []string{"terraform_data.worker[0]"},
		},
		{
			name:       "summary on standard input",
			args:       []string{"-", plan("update")},
			stdin:      updateSummary,
			wantCode:   exitOK,
			wantStdout: []string{"Same"},
		},
		{
			name:       "plan on standard input",
			args:       []string{plan("update"), "-"},
			stdin:      readFile(t, plan("update")),
			wantCode:   exitOK,
			wantStdout: []string{"Same"},
		},
		{
			name:       "tampered digest",
			args:       []string{writeFile(t, "tampered.json", wrongDigest), plan("update")},
			wantCode:   exitError,
			wantStderr: "digest",
		},
		{
			name:       "tampered summary",
			args:       []string{plan("update"), writeFile(t, "tampered.json", wrongSummary)},
			wantCode:   exitError,
			wantStderr: "does not match the summary's digest",
		},
		{
			name:       "neither plan nor summary",
			args:       []string{writeFile(t, "other.json", `{"format_version":"1.2","something":{}}`), plan("update")},
			wantCode:   exitError,
			wantStderr: "neither plan JSON nor a seb summary",
		},
		{
			name:       "both standard input",
			args:       []string{"-", "-"},
			wantCode:   exitError,
			wantStderr: "standard input",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"compare", "--key-file", key}, tt.args...)

			got := seb(t, tt.stdin, args...)

			if got.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", got.code, tt.wantCode, got.stdout, got.stderr)
			}
			for _, want := range tt.wantStdout {
				if !strings.Contains(got.stdout, want) {
					t.Errorf("stdout does not contain %q:\n%s", want, got.stdout)
				}
			}
			if tt.wantCode == exitError {
				if got.stdout != "" {
					t.Errorf("stdout %q, want nothing", got.stdout)
				}
				if !strings.HasPrefix(got.stderr, "seb: ") || !strings.Contains(got.stderr, tt.wantStderr) {
					t.Errorf("stderr %q, want \"seb: \" and %q", got.stderr, tt.wantStderr)
				}
			} else if got.stderr != "" {
				t.Errorf("stderr %q, want nothing", got.stderr)
			}
		})
	}
}

// TestCompareSummaryRoundTrip checks, for every committed plan, that the
// summary document of a plan compares equal to the plan in either order.
func TestCompareSummaryRoundTrip(t *testing.T) {
	key := isolate(t)
	for _, name := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			r := seb(t, "", "summarize", "--json", "--key-file", key, plan(name))
			mustSucceed(t, r)
			summary := writeFile(t, name+"-summary.json", r.stdout)

			for _, args := range [][]string{{summary, plan(name)}, {plan(name), summary}, {summary, summary}} {
				got := seb(t, "", append([]string{"compare", "--key-file", key}, args...)...)
				if got.code != exitOK {
					t.Errorf("compare %s: exit %d, stdout %q, stderr %q", args, got.code, got.stdout, got.stderr)
				}
			}
		})
	}
}

// TestCompareJSON checks compare's machine output.
func TestCompareJSON(t *testing.T) {
	key := isolate(t)
	tests := []struct {
		name              string
		certified, live   string
		wantCode          int
		wantOnlyCertified []string
		wantOnlyLive      []string
	}{
		{name: "same", certified: "update", live: "update", wantCode: exitOK},
		{
			name: "diverged", certified: "update", live: "delete", wantCode: exitDiverged,
			wantOnlyCertified: []string{"terraform_data.web"},
			wantOnlyLive:      []string{"terraform_data.worker[0]", "terraform_data.worker[1]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := seb(t, "", "compare", "--json", "--key-file", key, plan(tt.certified), plan(tt.live))

			if got.code != tt.wantCode || got.stderr != "" {
				t.Fatalf("exit %d, stderr %q; want exit %d", got.code, got.stderr, tt.wantCode)
			}
			var d struct {
				CertifiedDigest string `json:"certified_digest"`
				LiveDigest      string `json:"live_digest"`
				OnlyCertified   []struct {
					Address string `json:"address"`
				} `json:"only_certified"`
				OnlyLive []struct {
					Address string `json:"address"`
				} `json:"only_live"`
			}
			if err := json.Unmarshal([]byte(got.stdout), &d); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, got.stdout)
			}
			if d.CertifiedDigest != goldenDigest(t, tt.certified) || d.LiveDigest != goldenDigest(t, tt.live) {
				t.Errorf("digests %s and %s, want those of %s and %s", d.CertifiedDigest, d.LiveDigest, tt.certified, tt.live)
			}
			addresses := func(rs []struct {
				Address string `json:"address"`
			}) []string {
				var out []string
				for _, r := range rs {
					out = append(out, r.Address)
				}
				return out
			}
			if got := addresses(d.OnlyCertified); strings.Join(got, ",") != strings.Join(tt.wantOnlyCertified, ",") {
				t.Errorf("only_certified %v, want %v", got, tt.wantOnlyCertified)
			}
			if got := addresses(d.OnlyLive); strings.Join(got, ",") != strings.Join(tt.wantOnlyLive, ",") {
				t.Errorf("only_live %v, want %v", got, tt.wantOnlyLive)
			}
		})
	}
}

// TestBadInput checks that every command refuses bad plan input with exit 2
// and a message saying what is wrong, whichever side of compare it is on.
func TestBadInput(t *testing.T) {
	key := isolate(t)
	update := readFile(t, plan("update"))
	tests := []struct {
		name    string
		input   string // file contents; "" with missing set means no file
		missing bool
		args    []string // extra flags
		wantErr string
	}{
		{name: "missing file", missing: true, wantErr: "no such file"},
		{name: "not JSON", input: "this is not JSON", wantErr: "not JSON"},
		{name: "empty", input: "", wantErr: "empty"},
		{name: "truncated JSON", input: update[:len(update)/2], wantErr: "truncated"},
		{name: "zip file", input: "PK\x03\x04\x14\x00\x00\x00\x08\x00", wantErr: "binary plan"},
		{name: "state JSON", input: `{"format_version":"1.0","values":{}}`, wantErr: "state"},
		{
			name:    "unsupported format_version",
			input:   strings.Replace(update, `"format_version":"1.2"`, `"format_version":"9.0"`, 1),
			wantErr: `format_version "9.0"`,
		},
		{name: "over --max-bytes", input: update, args: []string{"--max-bytes", "10"}, wantErr: "too large"},
		{name: "a list", input: `[1,2,3]`, wantErr: "not a Terraform plan"},
	}
	for _, tt := range tests {
		file := filepath.Join(t.TempDir(), "plan.json")
		if !tt.missing {
			if err := os.WriteFile(file, []byte(tt.input), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		commands := []struct {
			name string
			args []string
		}{
			{name: "summarize", args: []string{"summarize", file}},
			{name: "summarize --json", args: []string{"summarize", "--json", file}},
			{name: "digest", args: []string{"digest", file}},
			{name: "compare certified", args: []string{"compare", file, plan("update")}},
			{name: "compare live", args: []string{"compare", plan("update"), file}},
		}
		for _, c := range commands {
			t.Run(tt.name+"/"+c.name, func(t *testing.T) {
				args := append(append([]string{c.args[0], "--key-file", key}, tt.args...), c.args[1:]...)

				got := seb(t, "", args...)

				if got.code != exitError {
					t.Fatalf("exit %d, want %d; stdout %q, stderr %q", got.code, exitError, got.stdout, got.stderr)
				}
				if got.stdout != "" {
					t.Errorf("stdout %q, want nothing", got.stdout)
				}
				if !strings.HasPrefix(got.stderr, "seb: ") || !strings.Contains(got.stderr, tt.wantErr) {
					t.Errorf("stderr %q, want \"seb: \" and %q", got.stderr, tt.wantErr)
				}
			})
		}
	}
}

// TestBadCommandLine checks usage errors: exit 2 and a message on stderr.
func TestBadCommandLine(t *testing.T) {
	key := isolate(t)
	shortKey := writeFile(t, "short.key", "0123456789abcde\n") // 15 bytes after trimming
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "summarize without a file", args: []string{"summarize", "--key-file", key}, wantErr: "accepts 1 arg(s), received 0"},
		{name: "summarize two files", args: []string{"summarize", "--key-file", key, plan("update"), plan("delete")}, wantErr: "accepts 1 arg(s), received 2"},
		{name: "digest two files", args: []string{"digest", "--key-file", key, plan("update"), plan("delete")}, wantErr: "accepts 1 arg(s), received 2"},
		{name: "compare one file", args: []string{"compare", "--key-file", key, plan("update")}, wantErr: "accepts 2 arg(s), received 1"},
		{name: "compare three files", args: []string{"compare", "--key-file", key, plan("update"), plan("update"), plan("update")}, wantErr: "accepts 2 arg(s), received 3"},
		{name: "unknown flag", args: []string{"digest", "--key-file", key, "--colour", plan("update")}, wantErr: "unknown flag: --colour"},
		{name: "flag of another command", args: []string{"digest", "--key-file", key, "--json", plan("update")}, wantErr: "unknown flag: --json"},
		{name: "bad --max-bytes", args: []string{"digest", "--key-file", key, "--max-bytes", "ten", plan("update")}, wantErr: "--max-bytes"},
		{name: "negative --max-bytes", args: []string{"digest", "--key-file", key, "--max-bytes", "-1", plan("update")}, wantErr: "negative"},
		{name: "unknown command", args: []string{"certify", plan("update")}, wantErr: `unknown command "certify"`},
		{name: "short key", args: []string{"digest", "--key-file", shortKey, plan("update")}, wantErr: "shorter than 16 bytes"},
		{name: "missing key file", args: []string{"digest", "--key-file", filepath.Join(t.TempDir(), "none.key"), plan("update")}, wantErr: "key file"},
		{name: "key file is a directory", args: []string{"digest", "--key-file", t.TempDir(), plan("update")}, wantErr: "key file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := seb(t, "", tt.args...)

			if got.code != exitError {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", got.code, exitError, got.stdout, got.stderr)
			}
			if got.stdout != "" {
				t.Errorf("stdout %q, want nothing", got.stdout)
			}
			if !strings.HasPrefix(got.stderr, "seb: ") || !strings.Contains(got.stderr, tt.wantErr) {
				t.Errorf("stderr %q, want \"seb: \" and %q", got.stderr, tt.wantErr)
			}
		})
	}
}

// TestMaxBytes checks the size limit at its edge, for the commands that read
// a plan whole (compare) and as a stream (summarize, digest).
func TestMaxBytes(t *testing.T) {
	key := isolate(t)
	size := len(readFile(t, plan("update")))
	tests := []struct {
		name     string
		maxBytes int
		wantCode int
	}{
		{name: "exactly the limit", maxBytes: size, wantCode: exitOK},
		{name: "one byte over", maxBytes: size - 1, wantCode: exitError},
	}
	for _, tt := range tests {
		for _, command := range [][]string{
			{"summarize", plan("update")},
			{"digest", plan("update")},
			{"compare", plan("update"), plan("update")},
		} {
			t.Run(tt.name+"/"+command[0], func(t *testing.T) {
				args := append([]string{command[0], "--key-file", key, "--max-bytes", strconv.Itoa(tt.maxBytes)}, command[1:]...)

				got := seb(t, "", args...)

				if got.code != tt.wantCode {
					t.Fatalf("exit %d, want %d; stderr %q", got.code, tt.wantCode, got.stderr)
				}
				if tt.wantCode == exitError && !strings.Contains(got.stderr, "too large") {
					t.Errorf("stderr %q, want it to say the plan is too large", got.stderr)
				}
			})
		}
	}
}

// TestMaxBytesZero checks that --max-bytes 0 means the same for every
// command. planparse.Options documents MaxBytes 0 as "DefaultMaxBytes", and
// summarize and digest follow it.
func TestMaxBytesZero(t *testing.T) {
	key := isolate(t)
	digest := seb(t, "", "digest", "--key-file", key, "--max-bytes", "0", plan("update"))
	tests := []struct {
		name string
		args []string
	}{
		{name: "summarize", args: []string{"summarize", plan("update")}},
		{name: "compare", args: []string{"compare", plan("update"), plan("update")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{tt.args[0], "--key-file", key, "--max-bytes", "0"}, tt.args[1:]...)

			got := seb(t, "", args...)

			if got.code != digest.code {
				t.Errorf("exit %d (stderr %q), but digest --max-bytes 0 exits %d (stderr %q)", got.code, got.stderr, digest.code, digest.stderr)
			}
			if strings.Contains(got.stderr, "truncated") {
				t.Errorf("stderr %q calls a complete plan truncated", got.stderr)
			}
		})
	}
}

// TestDefaultKeyFile checks that without --key-file seb creates a private
// random key under the user's config directory once, and reuses it.
func TestDefaultKeyFile(t *testing.T) {
	tests := []struct {
		name    string
		env     func(home string) map[string]string
		keyPath func(home string) string
		goos    string // run only on this GOOS, if set
	}{
		{
			name: "XDG_CONFIG_HOME",
			env: func(home string) map[string]string {
				return map[string]string{"XDG_CONFIG_HOME": filepath.Join(home, "xdg")}
			},
			keyPath: func(home string) string { return filepath.Join(home, "xdg", "seb", "sensitive.key") },
		},
		{
			name:    "HOME",
			env:     func(string) map[string]string { return map[string]string{} },
			keyPath: func(home string) string { return filepath.Join(home, ".config", "seb", "sensitive.key") },
			goos:    "linux",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.goos != "" && runtime.GOOS != tt.goos {
				t.Skipf("the default config directory is elsewhere on %s", runtime.GOOS)
			}
			isolate(t)
			home := os.Getenv("HOME")
			unsetenv(t, "XDG_CONFIG_HOME")
			for k, v := range tt.env(home) {
				t.Setenv(k, v)
			}
			keyPath := tt.keyPath(home)

			first := seb(t, "", "digest", plan("sensitive"))

			if first.code != exitOK {
				t.Fatalf("exit %d, stderr %q", first.code, first.stderr)
			}
			if !strings.Contains(first.stderr, "created a new key") || !strings.Contains(first.stderr, keyPath) {
				t.Errorf("stderr %q, want a note that a key was created in %s", first.stderr, keyPath)
			}
			info, err := os.Stat(keyPath)
			if err != nil {
				t.Fatalf("no key file: %v", err)
			}
			if mode := info.Mode(); mode != 0o600 {
				t.Errorf("key file mode %v, want -rw-------", mode)
			}
			if dir, err := os.Stat(filepath.Dir(keyPath)); err != nil || dir.Mode().Perm()&0o077 != 0 {
				t.Errorf("key directory %v (%v), want it private to the user", dir.Mode(), err)
			}
			key := readFile(t, keyPath)
			if len(strings.TrimSpace(key)) < 16 {
				t.Errorf("key %q is shorter than 16 bytes", key)
			}
			if first.stdout == goldenDigest(t, "sensitive")+"\n" {
				t.Errorf("digest %s is the one under the test key, not under a new random key", first.stdout)
			}

			second := seb(t, "", "digest", plan("sensitive"))

			mustSucceed(t, second)
			if second.stdout != first.stdout {
				t.Errorf("second run printed %q, first %q; want the same key reused", second.stdout, first.stdout)
			}
			if got := readFile(t, keyPath); got != key {
				t.Errorf("the key file changed on the second run")
			}
			explicit := digestOf(t, keyPath, plan("sensitive"))
			if explicit+"\n" != first.stdout {
				t.Errorf("--key-file %s gives %s, the default key %s", keyPath, explicit, first.stdout)
			}
		})
	}
}

// TestColorOnTerminal checks colour on a real terminal: on by default, off
// with --no-color, SEB_NO_COLOR, NO_COLOR or TERM=dumb. It writes to the
// master side of a pseudo-terminal, which is a terminal and echoes what is
// written to it (with ESC shown as "^[").
func TestColorOnTerminal(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pseudo-terminal echo is relied on only on Linux")
	}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantColor bool
	}{
		{name: "summarize", args: []string{"summarize", plan("update")}, wantColor: true},
		{name: "summarize --no-color", args: []string{"summarize", "--no-color", plan("update")}},
		{name: "summarize SEB_NO_COLOR", args: []string{"summarize", plan("update")}, env: map[string]string{"SEB_NO_COLOR": "true"}},
		{name: "summarize NO_COLOR", args: []string{"summarize", plan("update")}, env: map[string]string{"NO_COLOR": "1"}},
		{name: "summarize TERM=dumb", args: []string{"summarize", plan("update")}, env: map[string]string{"TERM": "dumb"}},
		{name: "summarize --json", args: []string{"summarize", "--json", plan("update")}},
		{name: "compare", args: []string{"compare", plan("update"), plan("delete")}, wantColor: true},
		{name: "compare --no-color", args: []string{"compare", "--no-color", plan("update"), plan("delete")}},
		{name: "compare SEB_NO_COLOR", args: []string{"compare", plan("update"), plan("delete")}, env: map[string]string{"SEB_NO_COLOR": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := isolate(t)
			t.Setenv("TERM", "xterm")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
			if err != nil {
				t.Skipf("no pseudo-terminal: %v", err)
			}
			t.Cleanup(func() { tty.Close() })
			if !term.IsTerminal(int(tty.Fd())) {
				t.Skip("the pseudo-terminal master is not a terminal here")
			}
			args := append([]string{tt.args[0], "--key-file", key}, tt.args[1:]...)
			var stderr bytes.Buffer

			code := run(args, strings.NewReader(""), tty, &stderr)

			if code == exitError {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
			echoed := readEcho(t, tty)
			color := strings.Contains(echoed, "^[[")
			if color != tt.wantColor {
				t.Errorf("coloured = %v, want %v; output:\n%s", color, tt.wantColor, echoed)
			}
			if !strings.Contains(echoed, goldenDigest(t, "update")) {
				t.Errorf("output does not have the digest:\n%s", echoed)
			}
		})
	}
}

// readEcho returns what the terminal echoed of everything written to it so
// far, with "\r\n" turned into "\n". It writes an end marker and reads up to
// its echo; Fd has put tty in blocking mode, so a deadline would not work.
func readEcho(t *testing.T, tty *os.File) string {
	t.Helper()
	const end = "END-OF-OUTPUT"
	if _, err := tty.Write([]byte("\n" + end + "\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		var out []byte
		buf := make([]byte, 4096)
		for !bytes.Contains(out, []byte(end)) {
			n, err := tty.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
		}
		done <- string(out)
	}()
	select {
	case out := <-done:
		out, _, _ = strings.Cut(out, end)
		return strings.ReplaceAll(out, "\r\n", "\n")
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal echoed nothing for 10s")
		return ""
	}
}

// TestWarnsOnUnmarkedSensitivity: plans from before Terraform 0.15 cannot
// say which values are secrets, and the user is told so on stderr.
func TestWarnsOnUnmarkedSensitivity(t *testing.T) {
	key := isolate(t)
	old := writeFile(t, "old.json", `{"format_version":"0.1","planned_values":{},"resource_changes":[{"address":"a.b","mode":"managed","type":"a","name":"b","provider_name":"aws","change":{"actions":["create"],"before":null,"after":{"password":"Aa1234321Bb"}}}]}`)
	for _, args := range [][]string{{"summarize", old}, {"digest", old}, {"compare", old, old}} {
		r := seb(t, "", append([]string{args[0], "--key-file", key}, args[1:]...)...)
		if r.code != exitOK || !strings.Contains(r.stderr, "does not mark sensitive values") {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	r := seb(t, "", "digest", "--key-file", key, plan("update"))
	mustSucceed(t, r)
}

// TestPolicyCommands: seb policy test runs the example policies' tests;
// seb policy eval shows a workspace policy's decision of a plan and exits
// 3 when it denies.
func TestPolicyCommands(t *testing.T) {
	r := seb(t, "", "policy", "test", "../../fixtures/policy")
	if r.code != exitOK || !strings.Contains(r.stdout, "10 tests, 0 failed") {
		t.Fatalf("policy test: %d %s %s", r.code, r.stdout, r.stderr)
	}
	failing := writeFile(t, "fail_test.rego", "package seb_test\n\ntest_fails if false\n")
	if r := seb(t, "", "policy", "test", failing); r.code != exitDiverged || !strings.Contains(r.stdout, "FAIL") {
		t.Errorf("a failing policy test: %d %s %s", r.code, r.stdout, r.stderr)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "seb.hcl")
	if err := os.WriteFile(conf, []byte("workspace \"w\" {\n  policy = \""+mustAbs(t, "../../fixtures/policy")+"\"\n  credentials {\n    audience = \"a\"\n    token_file_env = [\"T\"]\n  }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := writeFile(t, "key", "a key for sensitive values")
	open := writeFile(t, "open.json", `{"format_version":"1.2","terraform_version":"1.11.4","resource_changes":[{"address":"sandbox_firewall_rule.any","mode":"managed","type":"sandbox_firewall_rule","name":"any","provider_name":"seb.invalid/seb/sandbox","change":{"actions":["create"],"before":null,"after":{"direction":"ingress","cidr":"0.0.0.0/0","from_port":22,"to_port":22},"after_unknown":{"id":true}}}]}`)
	r = seb(t, "", "policy", "eval", "--config", conf, "--workspace", "w", "--key-file", key, open)
	if r.code != exitRejected || !strings.Contains(r.stdout, `"deny": [`) || !strings.Contains(r.stdout, "opens ingress to 0.0.0.0/0 (ports 22-22)") {
		t.Errorf("policy eval of an open rule: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = seb(t, "", "policy", "eval", "--config", conf, "--workspace", "w", "--key-file", key, "--show-input", open)
	var input struct {
		Summary struct {
			Resources []struct {
				Address string         `json:"address"`
				After   map[string]any `json:"after"`
			} `json:"resources"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &input); r.code != exitOK || err != nil || len(input.Summary.Resources) != 1 ||
		input.Summary.Resources[0].After["cidr"] != "0.0.0.0/0" || input.Summary.Resources[0].After["id"] == nil {
		t.Errorf("policy eval --show-input: %d %v %s %s", r.code, err, r.stdout, r.stderr)
	}
	if r := seb(t, "", "policy", "eval", "--config", conf, "--workspace", "nope", "--key-file", key, open); r.code != exitError || !strings.Contains(r.stderr, `no workspace "nope"`) {
		t.Errorf("an unknown workspace: %d %s", r.code, r.stderr)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

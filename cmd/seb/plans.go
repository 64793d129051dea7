package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/seb-broker/seb/planparse"
)

// planFlags are the flags shared by the commands that read plans.
type planFlags struct {
	keyFile  string
	maxBytes int64
}

func (f *planFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.keyFile, "key-file", "", "file holding the HMAC key for sensitive values (default: the user's seb key, created on first use)")
	cmd.Flags().Int64Var(&f.maxBytes, "max-bytes", planparse.DefaultMaxBytes, "largest plan JSON accepted, in bytes")
}

// options returns the parse options: the key from --key-file, or the user's
// own key file, created with 32 random bytes the first time.
func (f *planFlags) options(stderr io.Writer) (planparse.Options, error) {
	path := f.keyFile
	if path == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return planparse.Options{}, fmt.Errorf("no --key-file and no user config directory: %w", err)
		}
		path = filepath.Join(dir, "seb", "sensitive.key")
		if err := createKeyFile(path); err == nil {
			fmt.Fprintf(stderr, "seb: created a new key for sensitive values in %s\n", path)
		} else if !errors.Is(err, os.ErrExist) {
			return planparse.Options{}, err
		}
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return planparse.Options{}, fmt.Errorf("key file: %w", err)
	}
	key = bytes.TrimSpace(key)
	if len(key) < 16 {
		return planparse.Options{}, fmt.Errorf("key file %s: the key is shorter than 16 bytes", path)
	}
	maxBytes := f.maxBytes
	if maxBytes == 0 {
		maxBytes = planparse.DefaultMaxBytes
	}
	if maxBytes < 0 {
		return planparse.Options{}, fmt.Errorf("--max-bytes must not be negative")
	}
	return planparse.Options{SensitiveKey: key, MaxBytes: maxBytes}, nil
}

// createKeyFile writes a new random key to path, atomically: the key is
// written to a temporary file first and linked into place only if path does
// not exist, so a concurrent reader never sees a partial key. It returns an
// error wrapping os.ErrExist when path already exists.
func createKeyFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".sensitive.key.*")
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	key := make([]byte, 32)
	rand.Read(key)
	if _, err := fmt.Fprintf(tmp, "%x\n", key); err != nil {
		tmp.Close()
		return fmt.Errorf("key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return err
		}
		return fmt.Errorf("key file: %w", err)
	}
	return nil
}

// openInput opens FILE, or standard input for "-".
func openInput(cmd *cobra.Command, name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(cmd.InOrStdin()), nil
	}
	return os.Open(name)
}

// readPlan parses the plan JSON in FILE or standard input with the options
// of the flags.
func (f *planFlags) readPlan(cmd *cobra.Command, name string) (*planparse.Plan, error) {
	opts, err := f.options(cmd.ErrOrStderr())
	if err != nil {
		return nil, err
	}
	in, err := openInput(cmd, name)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	plan, err := planparse.Parse(in, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", displayName(name), err)
	}
	warnUnmarked(cmd, name, plan)
	return plan, nil
}

// warnUnmarked tells the user when a plan cannot say which of its values
// are secrets.
func warnUnmarked(cmd *cobra.Command, name string, plan *planparse.Plan) {
	if plan.SensitivityUnmarked {
		fmt.Fprintf(cmd.ErrOrStderr(), "seb: warning: %s is plan format %s (Terraform before 0.15), which does not mark sensitive values; any secrets in it are shown in clear\n",
			displayName(name), plan.FormatVersion)
	}
}

func displayName(name string) string {
	if name == "-" {
		return "standard input"
	}
	return name
}

// summaryDocument is what `seb summarize --json` writes, and one of the two
// inputs `seb compare` reads.
type summaryDocument struct {
	Digest           string                     `json:"digest"`
	FormatVersion    string                     `json:"format_version,omitempty"`
	TerraformVersion string                     `json:"terraform_version,omitempty"`
	Summary          *planparse.Summary         `json:"summary"`
	Drift            []planparse.ResourceChange `json:"drift"`
}

// readSummary reads FILE as plan JSON or, failing that, as the output of
// `seb summarize --json`, and returns its summary.
func readSummary(cmd *cobra.Command, name string, opts planparse.Options) (*planparse.Summary, error) {
	in, err := openInput(cmd, name)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	data, err := io.ReadAll(io.LimitReader(in, opts.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", displayName(name), err)
	}
	plan, err := planparse.Parse(bytes.NewReader(data), opts)
	if err == nil {
		warnUnmarked(cmd, name, plan)
		return plan.Summary, nil
	}
	if !errors.Is(err, planparse.ErrNotPlan) {
		return nil, fmt.Errorf("%s: %w", displayName(name), err)
	}
	var doc summaryDocument
	if derr := json.Unmarshal(data, &doc); derr != nil || doc.Summary == nil {
		return nil, fmt.Errorf("%s: neither plan JSON nor a seb summary: %w", displayName(name), err)
	}
	if doc.Digest != "" && doc.Digest != doc.Summary.Digest() {
		return nil, fmt.Errorf("%s: the recorded digest %s does not match the summary's digest %s", displayName(name), doc.Digest, doc.Summary.Digest())
	}
	return doc.Summary, nil
}

// useColor reports whether to colour output written to w.
func useColor(w io.Writer, noColor bool) bool {
	if noColor || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newSummarizeCommand() *cobra.Command {
	var (
		flags   planFlags
		asJSON  bool
		noColor bool
	)
	cmd := &cobra.Command{
		Use:   "summarize [--json] [--no-color] FILE|-",
		Short: "Print the canonical resource-diff summary of a plan JSON",
		Long: `Summarize reads plan JSON (terraform show -json PLANFILE) and prints its
resource-diff summary in the style of terraform plan, with its digest. With
--json it prints the summary as JSON for machines instead.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := flags.readPlan(cmd, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				drift := plan.Drift
				if drift == nil {
					drift = []planparse.ResourceChange{}
				}
				enc := json.NewEncoder(out)
				return enc.Encode(summaryDocument{
					Digest:           plan.Digest,
					FormatVersion:    plan.FormatVersion,
					TerraformVersion: plan.TerraformVersion,
					Summary:          plan.Summary,
					Drift:            drift,
				})
			}
			return planparse.Render(out, plan.Summary, planparse.RenderOptions{
				Color:  useColor(out, noColor),
				Digest: plan.Digest,
			})
		},
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for machines")
	cmd.Flags().BoolVar(&noColor, "no-color", false, "never colour the output (also NO_COLOR)")
	return cmd
}

func newDigestCommand() *cobra.Command {
	var flags planFlags
	cmd := &cobra.Command{
		Use:   "digest FILE|-",
		Short: "Print the sha256 digest of a plan's canonical summary",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := flags.readPlan(cmd, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), plan.Digest)
			return err
		},
	}
	flags.register(cmd)
	return cmd
}

func newCompareCommand() *cobra.Command {
	var (
		flags   planFlags
		asJSON  bool
		noColor bool
	)
	cmd := &cobra.Command{
		Use:   "compare CERTIFIED LIVE",
		Short: "Compare two plans (or summaries); exit 0 if the same, 1 if diverged, 2 on error",
		Long: `Compare reads two plan JSON files, or summaries written by
'seb summarize --json', and reports every difference between them: resources
only in one, and per resource the fields and attributes whose change differs,
with both values.

Exit status: 0 the summaries are the same, 1 they diverge, 2 an error.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "-" && args[1] == "-" {
				return errors.New("only one of CERTIFIED and LIVE can be standard input")
			}
			opts, err := flags.options(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			certified, err := readSummary(cmd, args[0], opts)
			if err != nil {
				return err
			}
			live, err := readSummary(cmd, args[1], opts)
			if err != nil {
				return err
			}
			d := planparse.Compare(certified, live)
			out := cmd.OutOrStdout()
			if asJSON {
				err = json.NewEncoder(out).Encode(d)
			} else {
				err = planparse.RenderDivergence(out, d, planparse.RenderOptions{Color: useColor(out, noColor)})
			}
			if err != nil {
				return err
			}
			if !d.Empty() {
				return errDiverged
			}
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the divergence as JSON for machines")
	cmd.Flags().BoolVar(&noColor, "no-color", false, "never colour the output (also NO_COLOR)")
	return cmd
}

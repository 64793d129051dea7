package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/policy"
)

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Test a Rego policy, or see what it decides of a plan"}
	test := &cobra.Command{
		Use:   "test PATH...",
		Short: "Run a policy's Rego unit tests (test_ rules, in _test.rego files) with OPA's test runner",
		Long: `Test loads the .rego files at each PATH (files or directories, recursively) and
runs every test_ rule, as opa test does. It exits 1 when a test fails or
errs, 2 when the files do not load.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			results, err := policy.Test(cmd.Context(), paths...)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			failed := 0
			for _, r := range results {
				outcome := "PASS"
				switch {
				case r.Error != nil:
					outcome, failed = "ERROR: "+r.Error.Error(), failed+1
				case r.Fail:
					outcome, failed = "FAIL", failed+1
				case r.Skip:
					outcome = "SKIP"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", r.Location, r.Package+"."+r.Name, outcome)
			}
			fmt.Fprintf(w, "%d tests, %d failed\n", len(results), failed)
			w.Flush()
			if len(results) == 0 {
				return fmt.Errorf("no test_ rule found in %v", paths)
			}
			if failed > 0 {
				return fmt.Errorf("%w: %d of %d policy tests failed", errNotVerified, failed, len(results))
			}
			return nil
		},
	}
	var (
		configPath, workspace, proposer string
		showInput                       bool
		flags                           planFlags
	)
	eval := &cobra.Command{
		Use:   "eval --workspace W FILE",
		Short: "Show what a workspace's policy decides of a plan (JSON) or a summary, without proposing it",
		Long: `Eval loads seb.hcl, takes the workspace's policy, and evaluates it on FILE
(- for standard input): plan JSON (terraform show -json), or a summary from
seb summarize --json. It prints the decision as JSON: deny, warn, approvals,
auto_certify and the policy's digest. It exits 3 when the policy denies the
change, 2 when the policy cannot decide. With --show-input it prints the
input the policy would read instead: what to write rules against. Sensitive values are digested with
the --key-file key, not the broker's: a policy comparing digests sees other
ones here.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, configPath)
			if err != nil {
				return err
			}
			ws, ok := cfg.Workspace(workspace)
			if !ok {
				return fmt.Errorf("no workspace %q in %s", workspace, configPath)
			}
			if ws.Policy == nil {
				return fmt.Errorf("workspace %s has no policy (policy = \"DIR\" in its block of seb.hcl)", workspace)
			}
			opts, err := flags.options(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			summary, err := readSummary(cmd, args[0], opts)
			if err != nil {
				return err
			}
			in := &policy.Input{Workspace: ws.Name, Summary: summary, DiffDigest: summary.Digest(),
				Proposer: policy.Principal{Name: proposer, Role: "agent"}}
			if showInput {
				v, err := in.Value()
				if err != nil {
					return err
				}
				doc, err := ast.JSON(v)
				if err != nil {
					return err
				}
				out, _ := json.MarshalIndent(doc, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(out))
				return nil
			}
			d, err := ws.Policy.Eval(cmd.Context(), in)
			if err != nil {
				return err
			}
			out, _ := json.MarshalIndent(d, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(out))
			if len(d.Deny) > 0 {
				return fmt.Errorf("%w: the policy denies it", errRejected)
			}
			return nil
		},
	}
	eval.Flags().StringVar(&configPath, "config", "seb.hcl", "configuration file")
	eval.Flags().StringVar(&workspace, "workspace", "", "the workspace whose policy decides")
	eval.Flags().StringVar(&proposer, "proposer", "agent", "the proposer's name, as the policy sees it")
	eval.Flags().BoolVar(&showInput, "show-input", false, "print the input the policy would read (policy/input.schema.json), and decide nothing")
	eval.MarkFlagRequired("workspace")
	flags.register(eval)
	cmd.AddCommand(test, eval)
	return cmd
}

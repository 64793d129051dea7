// Command seb is the Sovereign Execution Broker for Terraform. This binary
// summarizes, digests and compares plans, serves the broker, and is the
// client of its API; see `seb help`.
//
// Exit codes: 0 success (for compare: the summaries are the same; for
// audit verify: the log verifies), 1 the summaries diverged, the audit log
// does not verify, or a proposal diverged, 2 an error (bad input, bad
// flags, a failed execution), 3 rejected by a reviewer, or refused at
// execution because live state moved, 4 the certificate expired, 5 timed out.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes, documented in the README, the root command's help and
// docs/ci.md.
const (
	exitOK       = 0
	exitDiverged = 1
	exitError    = 2
	exitRejected = 3
	exitExpired  = 4
	exitTimeout  = 5
)

// errDiverged makes compare exit with exitDiverged after printing its report.
var errDiverged = errors.New("the summaries diverge")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errDiverged):
		return exitDiverged
	case errors.Is(err, errAuditBroken), errors.Is(err, errNotVerified):
		return exitDiverged
	case errors.Is(err, errRejected):
		return exitRejected
	case errors.Is(err, errExpired):
		return exitExpired
	case errors.Is(err, errTimeout):
		return exitTimeout
	default:
		fmt.Fprintf(stderr, "seb: %v\n", err)
		return exitError
	}
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "seb",
		Short: "seb certifies Terraform plans and applies exactly what was certified",
		Long: `seb, the Sovereign Execution Broker for Terraform, turns a plan into a canonical
resource-diff summary with a digest, so that what is applied can be held to
exactly what was certified.

The client commands (plan, propose, wait, execute, status, approve, reject,
revoke) talk to a seb server: --server (default http://127.0.0.1:8080),
--token or --token-file, --json for machine output on stdout; progress and
diagnostics go to stderr.

Every flag can also be set with an environment variable: --key-file is
SEB_KEY_FILE, --no-color is SEB_NO_COLOR, --server is SEB_SERVER, --token
is SEB_TOKEN, --token-file is SEB_TOKEN_FILE, and so on. The command line
wins over the environment.

Exit status:
  0  success
  1  diverged: compare's summaries differ, the audit log does not verify,
     the plan a proposal sent is not seb's, or a policy test failed
  2  an error: bad input or flags, the server refused, an execution failed
  3  rejected by a reviewer, refused at execution because live state no
     longer matches the certified diff, or denied by policy eval's policy
  4  the certificate expired
  5  timed out: wait or execute gave up (the server goes on)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd.Flags())
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun '%s --help' for usage", err, cmd.CommandPath())
	})
	root.AddCommand(newSummarizeCommand(), newDigestCommand(), newCompareCommand(), newAuditCommand(),
		newServeCommand(), newRunnerCommand(), newTokensCommand(), newDemoCommand(),
		newPlanClientCommand(), newProposeCommand(), newWaitCommand(), newExecuteCommand(),
		newStatusCommand(), newApproveCommand(), newRejectCommand(), newRevokeCommand(), newReconcileCommand(), newVerifyCommand(), newKeysCommand(), newMCPCommand(), newPolicyCommand())
	return root
}

// flagsFromEnv sets every flag not given on the command line from its
// SEB_* environment variable (--key-file ← SEB_KEY_FILE).
func flagsFromEnv(flags *pflag.FlagSet) error {
	var err error
	flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := "SEB_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		// An empty variable counts as unset, as NO_COLOR= does.
		if v := os.Getenv(name); v != "" {
			if serr := flags.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s: %w", name, serr)
			}
		}
	})
	return err
}

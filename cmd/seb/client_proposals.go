package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/planparse"
)

// bundleFlags are the flags of the commands that send a configuration:
// plan and propose.
type bundleFlags struct {
	workspace string
	dir       string
	vars      []string

	size int // of the bundle, once made
}

func (f *bundleFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.workspace, "workspace", "", "the workspace (required)")
	cmd.Flags().StringVar(&f.dir, "dir", ".", "the Terraform configuration's directory; .terraformignore is honoured")
	cmd.Flags().StringArrayVar(&f.vars, "var", nil, "a variable as NAME=VALUE (repeatable)")
}

// request packages the directory as a bundle (base64) and parses the
// variables.
func (f *bundleFlags) request(cmd *cobra.Command) (bundle string, vars map[string]string, err error) {
	if f.workspace == "" {
		return "", nil, errors.New("--workspace (or SEB_WORKSPACE) is required")
	}
	if vars, err = parseVars(f.vars); err != nil {
		return "", nil, err
	}
	var buf bytes.Buffer
	digest, err := drift.BundleDirectory(f.dir, &buf)
	if err != nil {
		return "", nil, err
	}
	f.size = buf.Len()
	fmt.Fprintf(cmd.ErrOrStderr(), "seb: bundled %s (%d bytes, %s)\n", f.dir, buf.Len(), digest)
	return base64.StdEncoding.EncodeToString(buf.Bytes()), vars, nil
}

// explain adds to a server's refusal of an oversized bundle what to do
// about it.
func (f *bundleFlags) explain(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusRequestEntityTooLarge {
		return fmt.Errorf("%w: the bundle of %s is %d bytes; leave out what Terraform does not need with .terraformignore", err, f.dir, f.size)
	}
	return err
}

func newPlanClientCommand() *cobra.Command {
	var (
		cf clientFlags
		bf bundleFlags
	)
	cmd := &cobra.Command{
		Use:   "plan --workspace W [--dir DIR] [--var NAME=VALUE ...]",
		Short: "Have seb plan a configuration against live state, without proposing it",
		Long: `Plan packages the directory (honouring .terraformignore) and asks the seb
server for a speculative plan of it against the workspace's live state, made
with a plan-phase credential; nothing is stored and nothing changes. It
prints the diff as terraform plan would, or with --json the server's answer:
{"digest", "summary", "drift", "rendered", "has_changes", "plan"}, where
"plan" is the plan JSON, usable as "seb propose --plan".

Needs an agent or admin token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			bundle, vars, err := bf.request(cmd)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "seb: planning against workspace %s\n", bf.workspace)
			var out struct {
				Rendered string `json:"rendered"`
			}
			raw, err := c.post(cmd.Context(), workspacePath(bf.workspace)+"/plan", map[string]any{"bundle": bundle, "vars": vars}, &out)
			if err != nil {
				return bf.explain(err)
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), out.Rendered)
			return err
		},
	}
	cf.register(cmd)
	bf.register(cmd)
	return cmd
}

func newProposeCommand() *cobra.Command {
	var (
		cf        clientFlags
		bf        bundleFlags
		planFile  string
		rationale string
	)
	cmd := &cobra.Command{
		Use:   "propose --workspace W [--plan plan.json] [--dir DIR] [--var NAME=VALUE ...] [--rationale TEXT]",
		Short: "Propose a change: seb plans it, and reviewers approve what seb planned",
		Long: `Propose packages the directory (honouring .terraformignore) and submits it
with its variables as a proposal. seb plans it against live state itself;
that plan is what reviewers see and approve. With --plan, the plan JSON you
made (terraform show -json, or "seb plan --json" | jq .plan) is compared with
seb's: if they differ the proposal is diverged and can never be approved.

It prints the proposal id on stdout (with --json, the proposal) and seb's
diff on stderr. Then "seb wait ID" waits for the reviewers.

Exit status: 0 proposed, 1 diverged from your --plan, 2 an error.
Needs an agent or admin token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			req := map[string]any{"rationale": rationale}
			if planFile != "" {
				agentPlan, err := readAgentPlan(cmd, planFile)
				if err != nil {
					return err
				}
				req["plan"] = agentPlan
			}
			if req["bundle"], req["vars"], err = bf.request(cmd); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "seb: proposing to workspace %s; seb plans it against live state\n", bf.workspace)
			var p proposalView
			raw, err := c.post(cmd.Context(), workspacePath(bf.workspace)+"/proposals", req, &p)
			if err != nil {
				return bf.explain(err)
			}
			stderr := cmd.ErrOrStderr()
			if p.State == stateVerifying {
				fmt.Fprintf(stderr, "seb: proposal %s admitted; seb is planning it against live state\n", p.ID)
				verified, body, err := awaitVerified(cmd.Context(), c, p.ID, stderr)
				if err != nil {
					return err
				}
				p, raw = *verified, body
			}
			if p.State == stateRefused {
				if cf.json {
					printJSON(cmd.OutOrStdout(), raw)
				}
				return fmt.Errorf("proposal %s was refused: %s", p.ID, p.Reason)
			}
			io.WriteString(stderr, p.Rendered)
			if cf.json {
				err = printJSON(cmd.OutOrStdout(), raw)
			} else {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), p.ID)
			}
			if err != nil {
				return err
			}
			switch {
			case p.State == stateDiverged:
				reportDiverged(stderr, &p)
				return errDiverged
			case p.CertificateID != "":
				fmt.Fprintf(stderr, "seb: proposal %s was certified without review: certificate %s\n", p.ID, p.CertificateID)
			default:
				fmt.Fprintf(stderr, "seb: proposal %s is %s; `seb wait %s` waits for the reviewers\n", p.ID, p.State, p.ID)
			}
			return nil
		},
	}
	cf.register(cmd)
	bf.register(cmd)
	cmd.Flags().StringVar(&planFile, "plan", "", "your own plan JSON (terraform show -json), compared with seb's; - for stdin")
	cmd.Flags().StringVar(&rationale, "rationale", "", "why the change is needed, for the reviewers")
	return cmd
}

// readAgentPlan reads the plan JSON of --plan and checks that it is JSON.
func readAgentPlan(cmd *cobra.Command, name string) (json.RawMessage, error) {
	in, err := openInput(cmd, name)
	if err != nil {
		return nil, fmt.Errorf("--plan: %w", err)
	}
	defer in.Close()
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, fmt.Errorf("--plan: %w", err)
	}
	data = bytes.TrimSpace(data)
	if !json.Valid(data) || len(data) == 0 || data[0] != '{' {
		return nil, fmt.Errorf("--plan %s is not plan JSON (a binary plan file? give `terraform show -json plan.tfplan` instead)", displayName(name))
	}
	return data, nil
}

// reportDiverged says on w how the agent's plan differs from seb's.
func reportDiverged(w io.Writer, p *proposalView) {
	fmt.Fprintf(w, "seb: proposal %s diverged: the plan you sent is not seb's plan, so it cannot be approved\n", p.ID)
	var d divergenceJSON
	if len(p.Divergence) > 0 && decodeNumbers(p.Divergence, &d) == nil {
		printLines(w, divergenceLines(&d, "seb", "yours"))
	}
}

// reportRejected says on w who rejected a proposal and why.
func reportRejected(w io.Writer, p *proposalView) {
	fmt.Fprintf(w, "seb: proposal %s was rejected\n", p.ID)
	for _, r := range p.Reviews {
		if r.Decision == "reject" {
			if r.Comment != "" {
				fmt.Fprintf(w, "  %s: %s\n", r.Reviewer, r.Comment)
			} else {
				fmt.Fprintf(w, "  by %s\n", r.Reviewer)
			}
		}
	}
}

func newWaitCommand() *cobra.Command {
	var (
		cf       clientFlags
		timeout  time.Duration
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "wait PROPOSAL [--timeout 30m] [--interval 2s]",
		Short: "Wait until a proposal is certified, rejected or diverged",
		Long: `Wait polls the proposal until it is decided. When it is certified it prints
the certificate id on stdout (with --json, the proposal), for "seb execute".

Exit status: 0 certified, 1 diverged, 3 rejected, 5 still pending at
--timeout, 2 an error. Any token that may read the proposal will do (an
agent reads only its own proposals).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if interval <= 0 {
				return errors.New("--interval must be positive")
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			p, raw, err := awaitProposal(ctx, c, args[0], interval, stderr)
			if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
				if p == nil {
					fmt.Fprintf(stderr, "seb: no answer about proposal %s within %s\n", args[0], timeout)
					return errTimeout
				}
				if cf.json {
					printJSON(stdout, raw)
				}
				fmt.Fprintf(stderr, "seb: proposal %s is still %s after %s\n", p.ID, p.State, timeout)
				return errTimeout
			}
			if err != nil {
				return err
			}
			if cf.json {
				if err := printJSON(stdout, raw); err != nil {
					return err
				}
			}
			switch p.State {
			case stateCertified:
				if p.CertificateID == "" {
					return fmt.Errorf("proposal %s is certified, but the server did not say by which certificate (it needs certificate_id in GET /api/v1/proposals/ID)", p.ID)
				}
				fmt.Fprintf(stderr, "seb: proposal %s is certified: certificate %s\n", p.ID, p.CertificateID)
				if !cf.json {
					fmt.Fprintln(stdout, p.CertificateID)
				}
				return nil
			case stateRejected:
				reportRejected(stderr, p)
				return errRejected
			case stateDiverged:
				reportDiverged(stderr, p)
				return errDiverged
			case stateRefused:
				return fmt.Errorf("proposal %s was refused: %s", p.ID, p.Reason)
			}
			return fmt.Errorf("proposal %s is %s", p.ID, p.State)
		},
	}
	cf.register(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long to wait; 0 waits for ever")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often to ask the server")
	return cmd
}

// reportReviews tells the waiting user about reviews after the first
// seen reviews (-1: none seen yet).
func reportReviews(w io.Writer, p *proposalView, seen int) {
	if seen < 0 {
		fmt.Fprintf(w, "seb: proposal %s is %s; waiting for the reviewers\n", p.ID, p.State)
		seen = 0
	}
	for _, r := range p.Reviews[min(seen, len(p.Reviews)):] {
		fmt.Fprintf(w, "seb: %s %sd proposal %s\n", r.Reviewer, r.Decision, p.ID)
	}
}

// decided reports whether a proposal in state will change no more. Any
// other state (pending, or one a newer server adds while it verifies) is
// waited out.
func decided(state string) bool {
	return state == stateCertified || state == stateRejected || state == stateDiverged || state == stateRefused
}

// awaitVerified polls a proposal seb admitted until its own plan of it is
// done, and returns it with its raw JSON.
func awaitVerified(ctx context.Context, c *apiClient, id string, progress io.Writer) (*proposalView, []byte, error) {
	for {
		var p proposalView
		raw, err := c.get(ctx, proposalPath(id), &p)
		switch {
		case err == nil && p.State != stateVerifying:
			return &p, raw, nil
		case err != nil && !transient(err):
			return nil, nil, err
		}
		if !sleep(ctx, 300*time.Millisecond) {
			return nil, nil, ctx.Err()
		}
	}
}

// awaitProposal polls the proposal every interval until it is decided, telling progress about new reviews, and returns it with its
// raw JSON. When ctx ends first it returns the last proposal seen (nil if
// none) and ctx's error; the server's errors other than transient ones end
// it too.
func awaitProposal(ctx context.Context, c *apiClient, id string, interval time.Duration, progress io.Writer) (*proposalView, []byte, error) {
	var (
		last    *proposalView
		raw     []byte
		reviews = -1
	)
	for {
		var p proposalView
		body, err := c.get(ctx, proposalPath(id), &p)
		switch {
		case err == nil:
			last, raw = &p, body
			if decided(p.State) {
				return last, raw, nil
			}
			if len(p.Reviews) != reviews {
				reportReviews(progress, &p, reviews)
				reviews = len(p.Reviews)
			}
		case ctx.Err() != nil:
			return last, raw, ctx.Err()
		case transient(err):
			fmt.Fprintf(progress, "seb: %v; retrying\n", err)
		default:
			return last, raw, err
		}
		if !sleep(ctx, interval) {
			return last, raw, ctx.Err()
		}
	}
}

func newStatusCommand() *cobra.Command {
	var (
		cf        clientFlags
		workspace string
		state     string
	)
	cmd := &cobra.Command{
		Use:   "status [--workspace W] [--state S]",
		Short: "List proposals: id, state, proposer and what they change",
		Long: `Status lists the latest proposals (of one workspace with --workspace, in one
state with --state: pending, certified, rejected or diverged), newest first,
with what seb's plan of each adds, changes and destroys. With --json it
prints the server's {"items": [...]}. An agent sees only its own proposals.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if workspace != "" {
				q.Set("workspace", workspace)
			}
			if state != "" {
				q.Set("state", state)
			}
			path := "/proposals"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var list struct {
				Items []proposalView `json:"items"`
			}
			raw, err := c.get(cmd.Context(), path, &list)
			if err != nil {
				return err
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			if len(list.Items) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "seb: no proposals")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tWORKSPACE\tSTATE\tPROPOSER\tADD\tCHANGE\tDESTROY\tCREATED")
			for _, p := range list.Items {
				add, change, destroy := "?", "?", "?"
				var s planparse.Summary
				if json.Unmarshal(p.Summary, &s) == nil {
					n := s.Count()
					add, change, destroy = fmt.Sprint(n.Add), fmt.Sprint(n.Change), fmt.Sprint(n.Destroy)
				}
				state := p.State
				if p.CertificateFate != "" {
					state += " (" + p.CertificateFate + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Workspace, state, p.Proposer,
					add, change, destroy, p.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&workspace, "workspace", "", "only this workspace's proposals")
	cmd.Flags().StringVar(&state, "state", "", "only proposals in this state")
	return cmd
}

func newApproveCommand() *cobra.Command {
	var (
		cf       clientFlags
		comment  string
		validity time.Duration
	)
	cmd := &cobra.Command{
		Use:   "approve PROPOSAL [--comment TEXT] [--validity 30m]",
		Short: "Approve a proposal; the final approval issues its certificate",
		Long: `Approve records your approval of the diff seb planned for the proposal. When
it is the last approval the workspace needs, seb issues the certificate and
its id is printed on stdout (with --json, the proposal). --validity shortens
the certificate's validity window below the workspace's.

Needs a reviewer token; nobody approves their own proposal.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if validity < 0 {
				return errors.New("--validity must not be negative")
			}
			req := map[string]string{"comment": comment}
			if validity > 0 {
				req["validity"] = validity.String()
			}
			return review(cmd, &cf, args[0], "approve", req)
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&comment, "comment", "", "a comment kept with the review")
	cmd.Flags().DurationVar(&validity, "validity", 0, "shorten the certificate's validity (default: the workspace's)")
	return cmd
}

func newRejectCommand() *cobra.Command {
	var (
		cf      clientFlags
		comment string
	)
	cmd := &cobra.Command{
		Use:   "reject PROPOSAL [--comment TEXT]",
		Short: "Reject a proposal",
		Long: `Reject records your rejection; the proposal can then never be certified.
With --json it prints the proposal. Needs a reviewer token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return review(cmd, &cf, args[0], "reject", map[string]string{"comment": comment})
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&comment, "comment", "", "why, for the proposer")
	return cmd
}

// review posts a verdict and reports the outcome.
func review(cmd *cobra.Command, cf *clientFlags, id, verdict string, req map[string]string) error {
	c, err := cf.client(cmd)
	if err != nil {
		return err
	}
	var p proposalView
	raw, err := c.post(cmd.Context(), proposalPath(id)+"/"+verdict, req, &p)
	if err != nil {
		return err
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if cf.json {
		if err := printJSON(stdout, raw); err != nil {
			return err
		}
	}
	switch {
	case verdict == "reject":
		fmt.Fprintf(stderr, "seb: rejected proposal %s\n", p.ID)
	case p.CertificateID != "":
		fmt.Fprintf(stderr, "seb: approved proposal %s; it is certified: certificate %s\n", p.ID, p.CertificateID)
		if !cf.json {
			fmt.Fprintln(stdout, p.CertificateID)
		}
	default:
		fmt.Fprintf(stderr, "seb: approved proposal %s; it is %s, waiting for more approvals\n", p.ID, p.State)
	}
	return nil
}

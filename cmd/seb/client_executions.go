package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newExecuteCommand() *cobra.Command {
	var (
		cf       clientFlags
		proposal string
		follow   bool
		timeout  time.Duration
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "execute CERTIFICATE | --proposal PROPOSAL [--follow]",
		Short: "Apply a certified diff, and wait for the outcome",
		Long: `Execute hands the certificate to seb, which verifies and consumes it (it is
single-use), plans against live state, refuses if the live diff is not the
certified one, and otherwise applies exactly that plan. With --proposal it
executes the certificate of a certified proposal. It waits for the outcome;
--follow prints the plan and apply logs at the end (with --json, as the
"logs" array of the execution).

Exit status: 0 applied; 3 refused because live state no longer matches the
certified diff (each difference is printed as "resource attribute:
certified BEFORE -> AFTER, live BEFORE -> AFTER"), or the proposal was
rejected; 1 the proposal diverged; 4 the certificate expired; 5 still
running at --timeout (it goes on); 2 any other failure.
Needs a ci or admin token.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (proposal != "") {
				return errors.New("name the certificate, or the proposal with --proposal, not both")
			}
			if interval <= 0 {
				return errors.New("--interval must be positive")
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
			var certificate string
			if proposal != "" {
				if certificate, err = certificateOf(ctx, c, proposal, stderr); err != nil {
					return err
				}
			} else {
				certificate = args[0]
			}
			var e executionView
			if _, err := c.post(ctx, "/executions", map[string]string{"certificate_id": certificate}, &e); err != nil {
				var ae *apiError
				if errors.As(err, &ae) && strings.Contains(ae.Message, "expired") {
					fmt.Fprintf(stderr, "seb: %s\n", ae.Message)
					return errExpired
				}
				return err
			}
			fmt.Fprintf(stderr, "seb: execution %s started with certificate %s\n", e.ID, certificate)
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			streamed := false
			if follow && !cf.json {
				// The live log, line by line as Terraform writes it.
				streamed = c.follow(ctx, executionPath(e.ID)+"/logs?follow=true", func(line []byte) {
					fmt.Fprintln(cmd.OutOrStdout(), logMessage(line))
				}) == nil
			}
			last, raw, err := awaitExecution(ctx, c, e, interval, stderr)
			if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
				fmt.Fprintf(stderr, "seb: execution %s is still %s after %s; it goes on\n", last.ID, last.State, timeout)
				if cf.json && raw != nil {
					printJSON(cmd.OutOrStdout(), raw)
				}
				return errTimeout
			}
			if err != nil {
				return err
			}
			return reportExecution(cmd, &cf, c, last, raw, follow && !streamed)
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&proposal, "proposal", "", "execute the certificate of this certified proposal")
	cmd.Flags().BoolVar(&follow, "follow", false, "print the plan and apply logs")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Hour, "how long to wait for the outcome; 0 waits for ever")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often to ask the server")
	return cmd
}

// certificateOf returns the certificate of a certified proposal; a
// rejected or diverged proposal ends the command with its exit code.
func certificateOf(ctx context.Context, c *apiClient, id string, stderr io.Writer) (string, error) {
	var p proposalView
	if _, err := c.get(ctx, proposalPath(id), &p); err != nil {
		return "", err
	}
	switch p.State {
	case stateCertified:
		if p.CertificateID == "" {
			return "", fmt.Errorf("proposal %s is certified, but the server did not say by which certificate (it needs certificate_id in GET /api/v1/proposals/ID); name the certificate instead", p.ID)
		}
		return p.CertificateID, nil
	case stateRejected:
		reportRejected(stderr, &p)
		return "", errRejected
	case stateDiverged:
		reportDiverged(stderr, &p)
		return "", errDiverged
	}
	return "", fmt.Errorf("proposal %s is %s, not certified: `seb wait %s` waits for it", p.ID, p.State, p.ID)
}

// awaitExecution polls the execution every interval until it is final,
// telling progress about each new state, and returns it with its raw
// JSON. When ctx ends first it returns the last execution seen and ctx's
// error.
func awaitExecution(ctx context.Context, c *apiClient, e executionView, interval time.Duration, progress io.Writer) (*executionView, []byte, error) {
	last := &e
	var raw []byte
	for !last.Final {
		if !sleep(ctx, interval) {
			return last, raw, ctx.Err()
		}
		var got executionView
		body, err := c.get(ctx, executionPath(e.ID), &got)
		switch {
		case err == nil:
			if got.State != last.State && !got.Final {
				fmt.Fprintf(progress, "seb: execution %s is %s\n", got.ID, got.State)
			}
			last, raw = &got, body
		case ctx.Err() != nil:
			return last, raw, ctx.Err()
		case transient(err):
			fmt.Fprintf(progress, "seb: %v; retrying\n", err)
		default:
			return last, raw, err
		}
	}
	if raw == nil {
		// Final at once: read it back for the complete record.
		body, err := c.get(ctx, executionPath(e.ID), last)
		if err != nil {
			return last, nil, err
		}
		raw = body
	}
	return last, raw, nil
}

// reportExecution prints a finished execution — its logs with follow —
// and returns the error that gives its exit code.
func reportExecution(cmd *cobra.Command, cf *clientFlags, c *apiClient, e *executionView, raw []byte, follow bool) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var logs []json.RawMessage
	if follow {
		data, err := c.call(cmd.Context(), "GET", executionPath(e.ID)+"/logs", nil)
		if err != nil {
			return fmt.Errorf("execution %s is %s, but its logs could not be read: %w", e.ID, e.State, err)
		}
		logs = logLines(data)
	}
	if cf.json {
		if follow {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(raw, &obj); err != nil {
				return fmt.Errorf("the server's answer is not JSON: %w", err)
			}
			if logs == nil {
				logs = []json.RawMessage{}
			}
			obj["logs"], _ = json.Marshal(logs)
			raw, _ = json.Marshal(obj)
		}
		if err := printJSON(stdout, raw); err != nil {
			return err
		}
	} else {
		for _, l := range logs {
			fmt.Fprintln(stdout, logMessage(l))
		}
		fmt.Fprintf(stdout, "%s %s\n", e.ID, e.State)
	}
	switch e.State {
	case "succeeded":
		fmt.Fprintf(stderr, "seb: execution %s succeeded\n", e.ID)
		return nil
	case "refused":
		fmt.Fprintf(stderr, "seb: execution %s was refused: %s\n", e.ID, e.Reason)
		var d decisionJSON
		if len(e.Decision) > 0 && decodeNumbers(e.Decision, &d) == nil {
			printLines(stderr, divergenceLines(d.Divergence, "certified", "live"))
			printLines(stderr, driftLines(d.Drift))
		}
		return errRejected
	}
	if e.Reason != "" {
		return fmt.Errorf("execution %s %s: %s", e.ID, e.State, e.Reason)
	}
	return fmt.Errorf("execution %s %s", e.ID, e.State)
}

// logLines splits JSON Lines; a line that is not JSON becomes a JSON
// string.
func logLines(data []byte) []json.RawMessage {
	var out []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if json.Valid(line) {
			out = append(out, json.RawMessage(bytes.Clone(line)))
		} else {
			s, _ := json.Marshal(string(line))
			out = append(out, s)
		}
	}
	return out
}

// logMessage returns a Terraform UI log line's "@message", or the line
// itself when it has none.
func logMessage(line json.RawMessage) string {
	var m struct {
		Message *string `json:"@message"`
	}
	if json.Unmarshal(line, &m) == nil && m.Message != nil {
		return *m.Message
	}
	var s string
	if json.Unmarshal(line, &s) == nil {
		return s
	}
	return string(line)
}

func newRevokeCommand() *cobra.Command {
	var (
		cf        clientFlags
		all       bool
		workspace string
	)
	cmd := &cobra.Command{
		Use:   "revoke CERTIFICATE | --all --workspace W",
		Short: "Revoke a certificate, or every certificate of a workspace",
		Long: `Revoke revokes one certificate, or with --all every certificate issued so far
for the workspace (its revocation epoch moves on). A revoked certificate is
refused at execution. With --json it prints the server's answer.
Needs an admin token.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case all && len(args) == 1:
				return errors.New("name a certificate, or give --all --workspace W, not both")
			case all && workspace == "":
				return errors.New("--all needs --workspace (or SEB_WORKSPACE)")
			case !all && len(args) == 0:
				return errors.New("name the certificate to revoke, or give --all --workspace W")
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if all {
				var out struct {
					Epoch int64 `json:"revocation_epoch"`
				}
				raw, err := c.post(cmd.Context(), workspacePath(workspace)+"/revoke-all", map[string]string{}, &out)
				if err != nil {
					return err
				}
				fmt.Fprintf(stderr, "seb: revoked every certificate of workspace %s; its revocation epoch is now %d\n", workspace, out.Epoch)
				if cf.json {
					return printJSON(stdout, raw)
				}
				return nil
			}
			raw, err := c.post(cmd.Context(), "/certificates/"+url.PathEscape(args[0])+"/revoke", map[string]string{}, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "seb: revoked certificate %s\n", args[0])
			if cf.json {
				return printJSON(stdout, raw)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "revoke every certificate of --workspace")
	cmd.Flags().StringVar(&workspace, "workspace", "", "the workspace, with --all")
	return cmd
}

func newReconcileCommand() *cobra.Command {
	var (
		cf   clientFlags
		note string
	)
	cmd := &cobra.Command{
		Use:   "reconcile WORKSPACE --note TEXT",
		Short: "Release a workspace held for reconciliation after an interrupted apply",
		Long: `Reconcile releases a workspace seb held because an apply ended without seb
being sure its state is complete (the runner or the broker died, or the
apply was interrupted): executions are refused until then. First bring
what exists in line with seb's state — GET /api/v1/workspaces/W shows the
hold and the execution, the workspace's state shows what seb knows — then
say in --note what was done; it goes into the audit log. Needs an admin
token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(note) == "" {
				return errors.New("--note is required: say how the workspace was reconciled")
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if _, err := c.post(cmd.Context(), workspacePath(args[0])+"/reconcile", map[string]string{"note": note}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "seb: workspace %s is no longer held; executions may run again\n", args[0])
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&note, "note", "", "what was done to reconcile the workspace (audited)")
	return cmd
}

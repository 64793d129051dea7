package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
)

func newDemoCommand() *cobra.Command {
	var cliConfig string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the seed scenario end to end over HTTP, and narrate it",
		Long: `Demo starts, on 127.0.0.1, the sandbox cloud (which trusts only seb's tokens)
and a seb server with the sandbox workspace, in a temporary directory, and
plays the scenario seb exists for, only through the API: an agent proposes
to scale "web" from 3 to 5, a reviewer certifies it, someone scales it to 7
by hand, and the execution is refused with the divergence; proposed again
as 7 to 5, it is certified and applied; the audit log verifies.

It needs Terraform and the sandbox provider's mirror (TF_CLI_CONFIG_FILE,
as 'make demo' sets up).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cliConfig == "" {
				cliConfig = os.Getenv("TF_CLI_CONFIG_FILE")
			}
			if cliConfig == "" {
				return errors.New("the demo needs the sandbox provider's mirror: run 'make demo', or set TF_CLI_CONFIG_FILE")
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cliConfig)
		},
	}
	cmd.Flags().StringVar(&cliConfig, "terraform-cli-config", "", "Terraform CLI configuration with the sandbox provider's mirror (default: TF_CLI_CONFIG_FILE)")
	return cmd
}

// demo is the narrator's view of the running demo.
type demo struct {
	out     io.Writer
	ctx     context.Context
	sandbox string // the sandbox cloud's URL
	admin   string // the sandbox console's token
	agent   *apiClient
	alice   *apiClient
	ci      *apiClient
	bundle  string
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

func runDemo(ctx context.Context, out io.Writer, cliConfig string) error {
	dir, err := os.MkdirTemp("", "seb-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)
	sebLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sandboxLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sebURL, sandboxURL := "http://"+sebLn.Addr().String(), "http://"+sandboxLn.Addr().String()

	adminToken := randomHex(16)
	sandbox, err := sandboxcloud.New(ctx, sandboxcloud.Options{Issuer: sebURL, Audience: "sandbox", AdminToken: adminToken,
		StatePath: filepath.Join(dir, "sandbox.json"), Logger: quiet})
	if err != nil {
		return err
	}
	go http.Serve(sandboxLn, sandbox.Handler())

	cfg := broker.DefaultConfig()
	cfg.DataDir, cfg.IssuerURL, cfg.Listen = filepath.Join(dir, "seb"), sebURL, sebLn.Addr().String()
	ws := &cfg.Workspaces[0]
	ws.Credentials.Env = map[string]string{"SANDBOX_ENDPOINT": sandboxURL}
	a, err := openApp(ctx, cfg, cliConfig, quiet)
	if err != nil {
		return err
	}
	defer a.store.Close()
	if _, err := a.svc.LoadPolicy(ctx, cfg.Digest); err != nil {
		return err
	}
	go http.Serve(sebLn, a.server)
	stopRunner, err := a.start(ctx, sebURL, io.Discard)
	if err != nil {
		return err
	}
	defer stopRunner()

	token := func(name string, role broker.Role) (*apiClient, error) {
		secret, record, err := broker.NewAPIToken(name, role, time.Now())
		if err != nil {
			return nil, err
		}
		if err := a.store.CreateAPIToken(ctx, record); err != nil {
			return nil, err
		}
		return &apiClient{base: sebURL, token: secret, http: &http.Client{Timeout: 5 * time.Minute}}, nil
	}
	d := &demo{out: out, ctx: ctx, sandbox: sandboxURL, admin: adminToken}
	if d.agent, err = token("agent-7", broker.RoleAgent); err != nil {
		return err
	}
	if d.alice, err = token("alice", broker.RoleReviewer); err != nil {
		return err
	}
	if d.ci, err = token("ci", broker.RoleCI); err != nil {
		return err
	}
	if d.bundle, err = bundleBase64(demoConfig()); err != nil {
		return err
	}

	d.say("seb %s and the sandbox cloud %s are up; the sandbox trusts only tokens seb mints.\n", sebURL, sandboxURL)
	return d.play()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// demoConfig is the scale example's directory.
func demoConfig() string {
	for _, dir := range []string{"fixtures/terraform/scale", "../../fixtures/terraform/scale"} {
		if _, err := os.Stat(filepath.Join(dir, "main.tf")); err == nil {
			return dir
		}
	}
	return "fixtures/terraform/scale"
}

// bundleBase64 packs dir as a bundle, base64 encoded for the API.
func bundleBase64(dir string) (string, error) {
	var sb strings.Builder
	enc := base64.NewEncoder(base64.StdEncoding, &sb)
	if _, err := drift.BundleDirectory(dir, enc); err != nil {
		return "", err
	}
	enc.Close()
	return sb.String(), nil
}

func (d *demo) play() error {
	d.say("1. The agent proposes the service \"web\" with 3 replicas; seb plans it itself.")
	cert, err := d.certify("3")
	if err != nil {
		return err
	}
	if _, err := d.execute(cert); err != nil {
		return err
	}
	d.say("\n2. The agent proposes to scale web from 3 to 5; alice certifies that exact diff.")
	cert, err = d.certify("5")
	if err != nil {
		return err
	}
	d.say("\n3. Meanwhile someone scales web to 7 by hand, behind Terraform's back.")
	if err := d.scaleByHand(7); err != nil {
		return err
	}
	d.say("\n4. CI executes the certificate. seb re-plans against live state first:")
	e, err := d.execute(cert)
	if err != nil {
		return err
	}
	if e.State != "refused" {
		return fmt.Errorf("the execution after the change by hand was %s, not refused", e.State)
	}
	d.say("\n5. The agent proposes again, now from what is really there: 7 to 5.")
	cert, err = d.certify("5")
	if err != nil {
		return err
	}
	if e, err = d.execute(cert); err != nil {
		return err
	}
	if e.State != "succeeded" {
		return fmt.Errorf("the second execution was %s", e.State)
	}
	d.say("\n6. The audit log: every decision, hash-chained and signed.")
	var audit struct {
		Items []broker.AuditEntry `json:"items"`
	}
	if _, err := d.alice.get(d.ctx, "/audit?limit=1000", &audit); err != nil {
		return err
	}
	for _, entry := range audit.Items {
		d.say("   %3d  %-22s %-8s %s", entry.Seq, entry.Action, entry.Actor, entry.Subject)
	}
	pemKey, err := d.alice.call(d.ctx, "GET", "/keys/signing", nil)
	if err != nil {
		return err
	}
	keys, err := broker.ParsePublicKeysPEM(pemKey)
	if err != nil {
		return err
	}
	entries := audit.Items
	count, err := broker.VerifyAudit(func() (*broker.AuditEntry, error) {
		if len(entries) == 0 {
			return nil, io.EOF
		}
		e := &entries[0]
		entries = entries[1:]
		return e, nil
	}, keys...)
	if err != nil {
		return fmt.Errorf("the audit log does not verify: %w", err)
	}
	d.say("   verified with only seb's public key (%s): %d entries, none changed, removed or reordered.", broker.PublicKeyID(keys[0]), count)
	d.say("\nDone: what ran is exactly what was certified, or nothing ran.")
	return nil
}

// certify proposes the scale configuration with replicas and has alice
// approve it; it returns the certificate id.
func (d *demo) certify(replicas string) (string, error) {
	var p proposalView
	req := map[string]any{"bundle": d.bundle, "vars": map[string]string{"replicas": replicas}, "rationale": "scale web to " + replicas}
	if _, err := d.agent.post(d.ctx, "/workspaces/sandbox/proposals", req, &p); err != nil {
		return "", err
	}
	for p.State == stateVerifying {
		time.Sleep(200 * time.Millisecond)
		if _, err := d.agent.get(d.ctx, proposalPath(p.ID), &p); err != nil {
			return "", err
		}
	}
	if p.State != "pending" {
		return "", fmt.Errorf("proposal %s is %s: %s", p.ID, p.State, p.Reason)
	}
	d.say("   proposal %s, seb's plan of it:", p.ID)
	for _, line := range strings.Split(strings.TrimRight(p.Rendered, "\n"), "\n") {
		d.say("     %s", line)
	}
	var approved proposalView
	if _, err := d.alice.post(d.ctx, proposalPath(p.ID)+"/approve", map[string]string{"comment": "looks right"}, &approved); err != nil {
		return "", err
	}
	d.say("   alice approved it: certificate %s", approved.CertificateID)
	return approved.CertificateID, nil
}

// execute runs a certificate and reports its outcome.
func (d *demo) execute(cert string) (*executionView, error) {
	var e executionView
	if _, err := d.ci.post(d.ctx, "/executions", map[string]string{"certificate_id": cert}, &e); err != nil {
		return nil, err
	}
	for !e.Final {
		time.Sleep(200 * time.Millisecond)
		if _, err := d.ci.get(d.ctx, executionPath(e.ID), &e); err != nil {
			return nil, err
		}
	}
	switch e.State {
	case "succeeded":
		d.say("   execution %s: applied, with an apply-phase token minted for it alone.", e.ID)
	case "refused":
		d.say("   execution %s REFUSED: %s", e.ID, e.Reason)
		var dec decisionJSON
		if len(e.Decision) > 0 && decodeNumbers(e.Decision, &dec) == nil {
			for _, line := range divergenceLines(dec.Divergence, "certified", "live") {
				d.say("     %s", line)
			}
		}
		d.say("   Nothing was applied: the live diff is not the certified one.")
	default:
		d.say("   execution %s: %s %s", e.ID, e.State, e.Reason)
	}
	return &e, nil
}

// scaleByHand changes web's replicas through the sandbox console.
func (d *demo) scaleByHand(replicas int) error {
	var list struct {
		Items []sandboxcloud.Service `json:"items"`
	}
	if err := d.console("GET", "/console/v1/services", nil, &list); err != nil {
		return err
	}
	for _, s := range list.Items {
		if s.Name == "web" {
			d.say("   console: PATCH /console/v1/services/%s {\"replicas\": %d}", s.ID, replicas)
			return d.console("PATCH", "/console/v1/services/"+s.ID, map[string]int{"replicas": replicas}, nil)
		}
	}
	return errors.New("no service web in the sandbox")
}

// console calls the sandbox console with its admin token.
func (d *demo) console(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(d.ctx, method, d.sandbox+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+d.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sandbox console: %s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

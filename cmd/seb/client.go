package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/planparse"
)

// The outcomes of the client commands that are not errors of the command
// line itself; run maps each to its exit code. A command that returns one
// has already said why on stderr.
var (
	// errRejected: a reviewer rejected the proposal, or seb refused to
	// apply because the live plan differs from the certified diff.
	errRejected = errors.New("rejected")
	// errExpired: the server refused the certificate as expired.
	errExpired = errors.New("the certificate expired")
	// errTimeout: the proposal or execution did not end in time.
	errTimeout = errors.New("timed out")
)

// defaultServer is the URL of `seb serve` with its default --listen.
const defaultServer = "http://127.0.0.1:8080"

// clientFlags are the flags of every command that talks to a seb server.
type clientFlags struct {
	server    string
	token     string
	tokenFile string
	json      bool

	// tokenArg and tokenFileArg record which of --token and --token-file
	// were given on the command line, before the environment fills in the
	// rest: the command line wins over the environment.
	tokenArg, tokenFileArg bool
}

// register adds the flags to cmd and makes cmd read the environment after
// noting which flags the command line set.
func (f *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", defaultServer, "URL of the seb server")
	fl.StringVar(&f.token, "token", "", "API token (better: SEB_TOKEN or --token-file, which stay out of the process list)")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding the API token")
	fl.BoolVar(&f.json, "json", false, "print JSON for machines on stdout")
	cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		f.tokenArg, f.tokenFileArg = cmd.Flags().Changed("token"), cmd.Flags().Changed("token-file")
		return flagsFromEnv(cmd.Flags())
	}
}

// bearer returns the API token: from --token or --token-file, whichever
// the command line gave, else from SEB_TOKEN or SEB_TOKEN_FILE. Giving
// both at the same level is an error, and so is giving none.
func (f *clientFlags) bearer() (string, error) {
	useToken, useFile := f.token != "", f.tokenFile != ""
	switch {
	case f.tokenArg && f.tokenFileArg:
		return "", errors.New("give --token or --token-file, not both")
	case f.tokenArg:
		useFile = false
	case f.tokenFileArg:
		useToken = false
	case useToken && useFile:
		return "", errors.New("SEB_TOKEN and SEB_TOKEN_FILE are both set; set only one")
	}
	switch {
	case useToken:
		return strings.TrimSpace(f.token), nil
	case useFile:
		data, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		token := strings.TrimSpace(string(data))
		if token == "" {
			return "", fmt.Errorf("token file %s is empty", f.tokenFile)
		}
		return token, nil
	}
	return "", errors.New("no API token: set SEB_TOKEN (or SEB_TOKEN_FILE, or --token-file) to a token from `seb tokens create`")
}

// client returns an API client for the server and token of the flags. It
// warns on stderr when the token would cross a network in clear.
func (f *clientFlags) client(cmd *cobra.Command) (*apiClient, error) {
	u, err := url.Parse(f.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not an http:// or https:// URL", f.server)
	}
	token, err := f.bearer()
	if err != nil {
		return nil, err
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		fmt.Fprintf(cmd.ErrOrStderr(), "seb: warning: %s is not https; the API token crosses the network in clear\n", f.server)
	}
	return &apiClient{
		base:  strings.TrimRight(f.server, "/"),
		token: token,
		// Proposals and speculative plans run Terraform while the request
		// waits; this only bounds a server that never answers.
		http: &http.Client{Timeout: 15 * time.Minute},
	}, nil
}

// loopback reports whether host names this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// printJSON writes raw, a JSON document from the server, indented, on w.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("the server's answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// An apiClient calls the seb API under /api/v1 with a bearer token.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// An apiError is an error answer from the server, from its
// {"error": {"code", "message"}} body.
type apiError struct {
	Status  int
	Code    string
	Message string
}

// Error returns the server's message; for 401 it says how to give a
// token.
func (e *apiError) Error() string {
	if e.Status == http.StatusUnauthorized {
		return e.Message + " (set SEB_TOKEN, or SEB_TOKEN_FILE, to an API token from `seb tokens create`)"
	}
	return e.Message
}

// transient reports whether err is worth retrying while polling: the
// server could not be reached or said it is unavailable for now.
func transient(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusBadGateway || ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusGatewayTimeout
	}
	var ue *reachError
	return errors.As(err, &ue) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// A reachError is a request that got no answer from the server.
type reachError struct {
	server string
	err    error
}

func (e *reachError) Error() string {
	return fmt.Sprintf("cannot reach the seb server at %s: %v (set SEB_SERVER to its URL)", e.server, e.err)
}

func (e *reachError) Unwrap() error { return e.err }

// call sends method path (under /api/v1) with in as its JSON body (none
// when nil) and returns the answer's body. A non-2xx answer is an
// *apiError; no answer at all is a *reachError.
func (c *apiClient) call(ctx context.Context, method, path string, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/v1"+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &reachError{server: c.base, err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &reachError{server: c.base, err: err}
	}
	if resp.StatusCode/100 != 2 {
		return nil, answerError(resp, data)
	}
	return data, nil
}

// follow reads a JSON-lines stream from path and calls line with each line
// as it arrives, until the server ends the stream.
func (c *apiClient) follow(ctx context.Context, path string, line func([]byte)) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/api/v1"+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return &reachError{server: c.base, err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(resp.Body)
		return answerError(resp, data)
	}
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 64<<10), 16<<20)
	for scanner.Scan() {
		if len(bytes.TrimSpace(scanner.Bytes())) > 0 {
			line(scanner.Bytes())
		}
	}
	return scanner.Err()
}

// answerError makes an *apiError of an error answer; a body that is not
// seb's error shape (a proxy's HTML page, say) is never shown.
func answerError(resp *http.Response, data []byte) *apiError {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	ae := &apiError{Status: resp.StatusCode}
	if json.Unmarshal(data, &body) == nil && body.Error.Message != "" {
		ae.Code, ae.Message = body.Error.Code, body.Error.Message
		return ae
	}
	ae.Message = fmt.Sprintf("the server answered %s", resp.Status)
	if resp.StatusCode == http.StatusNotFound {
		ae.Message += " (is --server the URL of a seb server?)"
	}
	return ae
}

// get sends GET path and decodes the answer into out; it returns the raw
// answer too.
func (c *apiClient) get(ctx context.Context, path string, out any) ([]byte, error) {
	return c.send(ctx, http.MethodGet, path, nil, out)
}

// post sends POST path with in as JSON and decodes the answer into out;
// it returns the raw answer too.
func (c *apiClient) post(ctx context.Context, path string, in, out any) ([]byte, error) {
	return c.send(ctx, http.MethodPost, path, in, out)
}

func (c *apiClient) send(ctx context.Context, method, path string, in, out any) ([]byte, error) {
	raw, err := c.call(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: the server's answer is not what this seb expects: %v", method, path, err)
		}
	}
	return raw, nil
}

// proposalView is what the client reads of a proposal.
type proposalView struct {
	ID            string          `json:"id"`
	Workspace     string          `json:"workspace"`
	State         string          `json:"state"`
	Reason        string          `json:"reason"`
	Proposer      string          `json:"proposer"`
	Digest        string          `json:"digest"`
	Summary       json.RawMessage `json:"summary"`
	Rendered      string          `json:"rendered"`
	Divergence    json.RawMessage `json:"divergence"`
	Reviews       []reviewView    `json:"reviews"`
	CertificateID string          `json:"certificate_id"`
	// CertificateFate is what became of a certified proposal's
	// certificate (unused, applied, refused at execution, …).
	CertificateFate string    `json:"certificate_fate"`
	CreatedAt       time.Time `json:"created_at"`
}

type reviewView struct {
	Reviewer string `json:"reviewer"`
	Decision string `json:"decision"`
	Comment  string `json:"comment"`
}

// The states of a proposal the client acts on, as the API names them.
const (
	stateVerifying = "verifying"
	stateRefused   = "refused"
	stateCertified = "certified"
	stateRejected  = "rejected"
	stateDiverged  = "diverged"
)

// executionView is what the client reads of an execution.
type executionView struct {
	ID            string          `json:"id"`
	CertificateID string          `json:"certificate_id"`
	Workspace     string          `json:"workspace"`
	State         string          `json:"state"`
	Final         bool            `json:"final"`
	Reason        string          `json:"reason"`
	Decision      json.RawMessage `json:"decision"`
}

func proposalPath(id string) string    { return "/proposals/" + url.PathEscape(id) }
func executionPath(id string) string   { return "/executions/" + url.PathEscape(id) }
func workspacePath(name string) string { return "/workspaces/" + url.PathEscape(name) }

// parseVars turns --var k=v flags into a map.
func parseVars(vars []string) (map[string]string, error) {
	if len(vars) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(vars))
	for _, kv := range vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--var %q: want NAME=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// sleep waits d, or until ctx is done; it reports whether ctx is still
// live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// divergenceJSON is a planparse.Divergence as the API writes it, read
// tolerantly: an unexpected value degrades one line, not the report.
type divergenceJSON struct {
	OnlyCertified []resourceJSON `json:"only_certified"`
	OnlyLive      []resourceJSON `json:"only_live"`
	Resources     []struct {
		Address string `json:"address"`
		Deposed string `json:"deposed"`
		Fields  []struct {
			Field     string `json:"field"`
			Certified any    `json:"certified"`
			Live      any    `json:"live"`
		} `json:"fields"`
		Attributes []struct {
			Path      []any            `json:"path"`
			Certified *valueChangeJSON `json:"certified"`
			Live      *valueChangeJSON `json:"live"`
		} `json:"attributes"`
	} `json:"resources"`
	Outputs []struct {
		Name      string           `json:"name"`
		Certified *valueChangeJSON `json:"certified"`
		Live      *valueChangeJSON `json:"live"`
	} `json:"outputs"`
}

type resourceJSON struct {
	Address string            `json:"address"`
	Deposed string            `json:"deposed"`
	Action  string            `json:"action"`
	Changes []valueChangeJSON `json:"changes"`
}

type valueChangeJSON struct {
	Path   []any `json:"path"`
	Before any   `json:"before"`
	After  any   `json:"after"`
}

// decisionJSON is an execution's "decision": drift.Decision as JSON.
type decisionJSON struct {
	Reason     string          `json:"reason"`
	Divergence *divergenceJSON `json:"divergence"`
	Drift      []resourceJSON  `json:"drift"`
}

// decodeNumbers decodes data into v keeping numbers exact.
func decodeNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// divergenceLines describes a divergence one difference a line:
// "sandbox_service.web replicas: certified 3 -> 5, live 7 -> 5", with the
// two sides named certified and live.
func divergenceLines(d *divergenceJSON, certified, live string) []string {
	if d == nil {
		return nil
	}
	var lines []string
	change := func(c *valueChangeJSON) string {
		if c == nil {
			return "(no change)"
		}
		return formatValue(c.Before) + " -> " + formatValue(c.After)
	}
	key := func(address, deposed string) string {
		if deposed != "" {
			return address + " (deposed " + deposed + ")"
		}
		return address
	}
	for _, r := range d.OnlyCertified {
		lines = append(lines, fmt.Sprintf("%s: %s %s, %s (no change)", key(r.Address, r.Deposed), certified, r.Action, live))
	}
	for _, r := range d.OnlyLive {
		lines = append(lines, fmt.Sprintf("%s: %s (no change), %s %s", key(r.Address, r.Deposed), certified, live, r.Action))
	}
	for _, r := range d.Resources {
		for _, f := range r.Fields {
			lines = append(lines, fmt.Sprintf("%s %s: %s %s, %s %s", key(r.Address, r.Deposed), f.Field,
				certified, formatValue(f.Certified), live, formatValue(f.Live)))
		}
		for _, a := range r.Attributes {
			lines = append(lines, fmt.Sprintf("%s %s: %s %s, %s %s", key(r.Address, r.Deposed), pathString(a.Path),
				certified, change(a.Certified), live, change(a.Live)))
		}
	}
	for _, o := range d.Outputs {
		lines = append(lines, fmt.Sprintf("output %s: %s %s, %s %s", o.Name, certified, change(o.Certified), live, change(o.Live)))
	}
	return lines
}

// driftLines describes changes made outside Terraform, one attribute a
// line.
func driftLines(drift []resourceJSON) []string {
	var lines []string
	for _, r := range drift {
		if len(r.Changes) == 0 {
			lines = append(lines, fmt.Sprintf("%s: %s outside Terraform", r.Address, r.Action))
		}
		for _, c := range r.Changes {
			lines = append(lines, fmt.Sprintf("%s %s: changed outside Terraform %s -> %s", r.Address, pathString(c.Path),
				formatValue(c.Before), formatValue(c.After)))
		}
	}
	return lines
}

// pathString renders a JSON attribute path the way Terraform writes
// references.
func pathString(steps []any) string {
	p := make(planparse.Path, len(steps))
	for i, s := range steps {
		switch s := s.(type) {
		case json.Number:
			n, err := s.Int64()
			if err != nil {
				return fmt.Sprint(steps)
			}
			p[i] = int(n)
		case string:
			p[i] = s
		default:
			return fmt.Sprint(steps)
		}
	}
	return p.String()
}

// formatValue renders a canonical JSON value as `terraform plan` would.
func formatValue(v any) string {
	return planparse.FormatValue(planValue(v))
}

// planValue turns a canonical JSON value back into planparse's value tree:
// the markers become Unknown, Sensitive and Absent, and objects keep their
// members in name order.
func planValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 1 {
			switch {
			case v["$unknown"] == true:
				return planparse.Unknown{}
			case v["$absent"] == true:
				return planparse.Absent{}
			}
			if d, ok := v["$sensitive"].(string); ok {
				return planparse.Sensitive{Digest: d}
			}
		}
		names := make([]string, 0, len(v))
		for k := range v {
			names = append(names, k)
		}
		slices.Sort(names)
		obj := make(planparse.Object, 0, len(v))
		for _, k := range names {
			name := k
			if strings.HasPrefix(k, "$$") {
				name = k[1:]
			}
			obj = append(obj, planparse.Member{Name: name, Value: planValue(v[k])})
		}
		return obj
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = planValue(e)
		}
		return out
	}
	return v
}

// printLines writes each line indented under a heading.
func printLines(w io.Writer, lines []string) {
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

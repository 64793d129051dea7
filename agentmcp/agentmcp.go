// Package agentmcp is seb's MCP server for agents: tools to plan a
// configuration against live state, propose it, wait for seb's own plan
// of it and read it, and read what a workspace holds. It speaks to a seb
// server's API with the agent's token, so an agent can do through it
// exactly what its token lets it do, and nothing else: no tool approves,
// certifies or executes.
package agentmcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/seb-broker/seb/drift"
)

// A Client calls a seb server's API with one token.
type Client struct {
	base, token string
	http        *http.Client
}

// NewClient returns a client of the seb server at base (http or https)
// that authenticates with token.
func NewClient(base, token string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http:// or https:// URL", base)
	}
	if strings.TrimSpace(token) == "" {
		return nil, errors.New("no API token: an agent token from `seb tokens create --role agent`")
	}
	return &Client{base: strings.TrimRight(base, "/"), token: strings.TrimSpace(token), http: &http.Client{Timeout: 15 * time.Minute}}, nil
}

// call sends a request to path (under /api/v1) and decodes the answer
// into out; an error answer becomes an error with seb's message.
func (c *Client) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/v1"+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return resp.StatusCode, fmt.Errorf("seb refused (%s): %s", e.Error.Code, e.Error.Message)
		}
		return resp.StatusCode, fmt.Errorf("seb answered %s", resp.Status)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		return resp.StatusCode, json.Unmarshal(data, out)
	}
	return resp.StatusCode, nil
}

// ConfigInput is a configuration an agent sends: its files and variables.
type ConfigInput struct {
	Workspace string            `json:"workspace" jsonschema:"the seb workspace, e.g. sandbox"`
	Files     map[string]string `json:"files" jsonschema:"the Terraform configuration: each file's path relative to its root (main.tf, modules/net/main.tf) and its text"`
	Vars      map[string]any    `json:"vars,omitempty" jsonschema:"Terraform variables by name: strings, numbers, booleans, lists or objects"`
}

// maxPathBytes bounds a file's path in a configuration.
const maxPathBytes = 1024

// checkFiles holds the files to the limits seb unpacks a bundle with,
// before any of them touches the disk: how many, how large, how deep.
func checkFiles(files map[string]string) error {
	limits := drift.DefaultBundleLimits
	if len(files) == 0 {
		return errors.New("files: the configuration has no files")
	}
	if len(files) > limits.MaxFiles {
		return fmt.Errorf("files: %d files, more than the %d a configuration may have", len(files), limits.MaxFiles)
	}
	var total int64
	for name, text := range files {
		switch {
		case len(name) > maxPathBytes:
			return fmt.Errorf("files: a path of %d bytes, longer than %d", len(name), maxPathBytes)
		case strings.Count(name, "/")+1 > limits.MaxPathDepth:
			return fmt.Errorf("files: %.80q is deeper than %d directories", name, limits.MaxPathDepth)
		case !filepath.IsLocal(filepath.FromSlash(name)) || strings.Contains(name, `\`):
			return fmt.Errorf("files: %.80q is not a path inside the configuration", name)
		case int64(len(text)) > limits.MaxFileBytes:
			return fmt.Errorf("files: %.80q is larger than %d bytes", name, limits.MaxFileBytes)
		}
		total += int64(len(text))
	}
	if total > limits.MaxBytes {
		return fmt.Errorf("files: %d bytes in all, more than %d", total, limits.MaxBytes)
	}
	return nil
}

// bundle packs the files as the gzip'd tar seb takes, base64.
func (in ConfigInput) bundle() (string, error) {
	if err := checkFiles(in.Files); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "seb-mcp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	for _, name := range slices.Sorted(maps.Keys(in.Files)) {
		if d := filepath.Dir(filepath.FromSlash(name)); d != "." {
			if err := root.MkdirAll(d, 0o700); err != nil {
				return "", err
			}
		}
		if err := root.WriteFile(filepath.FromSlash(name), []byte(in.Files[name]), 0o600); err != nil {
			return "", err
		}
	}
	var buf bytes.Buffer
	if _, err := drift.BundleDirectory(dir, &buf); err != nil {
		return "", fmt.Errorf("files: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// PlanOutput is a speculative plan.
type PlanOutput struct {
	HasChanges bool   `json:"has_changes" jsonschema:"whether the plan changes anything"`
	Digest     string `json:"digest" jsonschema:"the digest of the diff: a proposal of the same configuration against the same live state gets the same one"`
	Rendered   string `json:"rendered" jsonschema:"the diff, as Terraform words it"`
	Note       string `json:"note"`
}

// ProposeInput is a proposal.
type ProposeInput struct {
	Workspace string            `json:"workspace" jsonschema:"the seb workspace, e.g. sandbox"`
	Files     map[string]string `json:"files" jsonschema:"the Terraform configuration: each file's path relative to its root (main.tf, modules/net/main.tf) and its text"`
	Vars      map[string]any    `json:"vars,omitempty" jsonschema:"Terraform variables by name: strings, numbers, booleans, lists or objects"`
	Rationale string            `json:"rationale" jsonschema:"why: what reviewers read first"`
}

// ProposalOutput is a proposal as seb holds it.
type ProposalOutput struct {
	ID       string `json:"id"`
	State    string `json:"state" jsonschema:"verifying: seb is planning it; pending: waiting for reviewers; certified: approved, a certificate exists (CI executes it, not agents); refused, diverged or rejected: it will not be applied"`
	Reason   string `json:"reason,omitempty" jsonschema:"why seb refused it"`
	Digest   string `json:"digest,omitempty"`
	Rendered string `json:"rendered,omitempty" jsonschema:"seb's own plan of it against live state: what reviewers approve"`
	Note     string `json:"note"`
}

// ProposalInput names a proposal.
type ProposalInput struct {
	ID             string `json:"id" jsonschema:"the proposal's id, from seb_propose"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"how long to wait for seb's plan (default 300)"`
}

// WorkspaceInput names a workspace.
type WorkspaceInput struct {
	Workspace string `json:"workspace" jsonschema:"the seb workspace"`
}

// StateOutput is what a workspace holds.
type StateOutput struct {
	Workspace string   `json:"workspace"`
	Resources []string `json:"resources" jsonschema:"the addresses of the resources Terraform's state holds, sorted"`
	Note      string   `json:"note"`
}

const proposalNote = "A proposal is only a request. seb plans it itself against live state; " +
	"reviewers approve exactly that diff; only a certificate, executed by CI, changes anything, " +
	"and seb refuses it then if live state no longer gives the same diff."

// NewServer returns the MCP server whose tools call seb through c.
func NewServer(c *Client, version string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "seb", Version: version}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "seb_plan", Description: "Plan a Terraform configuration against a workspace's live state, " +
		"with a read-only credential. Nothing is stored or changed: use it to see the diff before proposing."}, c.plan)
	mcp.AddTool(s, &mcp.Tool{Name: "seb_propose", Description: "Propose a Terraform configuration for a workspace. " + proposalNote +
		" Returns at once, with the proposal verifying: call seb_wait_proposal next."}, c.propose)
	mcp.AddTool(s, &mcp.Tool{Name: "seb_wait_proposal", Description: "Wait until seb has planned a proposal itself, then return it: " +
		"pending (waiting for reviewers), certified, refused (with why), or diverged (your plan was not seb's)."}, c.waitProposal)
	mcp.AddTool(s, &mcp.Tool{Name: "seb_get_proposal", Description: "Read a proposal: its state, seb's plan of it and, if refused, why."}, c.getProposal)
	mcp.AddTool(s, &mcp.Tool{Name: "seb_workspace_state", Description: "List the resources a workspace's Terraform state holds (their addresses, no values)."}, c.workspaceState)
	return s
}

func (c *Client) plan(ctx context.Context, _ *mcp.CallToolRequest, in ConfigInput) (*mcp.CallToolResult, PlanOutput, error) {
	bundle, err := in.bundle()
	if err != nil {
		return nil, PlanOutput{}, err
	}
	var out PlanOutput
	if _, err := c.call(ctx, http.MethodPost, "/workspaces/"+url.PathEscape(in.Workspace)+"/plan",
		map[string]any{"bundle": bundle, "vars": in.Vars}, &out); err != nil {
		return nil, PlanOutput{}, err
	}
	out.Note = "A preview only: nothing was stored or changed. seb_propose asks for the change."
	return nil, out, nil
}

func (c *Client) propose(ctx context.Context, _ *mcp.CallToolRequest, in ProposeInput) (*mcp.CallToolResult, ProposalOutput, error) {
	bundle, err := ConfigInput{Workspace: in.Workspace, Files: in.Files, Vars: in.Vars}.bundle()
	if err != nil {
		return nil, ProposalOutput{}, err
	}
	var out ProposalOutput
	if _, err := c.call(ctx, http.MethodPost, "/workspaces/"+url.PathEscape(in.Workspace)+"/proposals",
		map[string]any{"bundle": bundle, "vars": in.Vars, "rationale": in.Rationale}, &out); err != nil {
		return nil, ProposalOutput{}, err
	}
	out.Note = proposalNote
	return nil, out, nil
}

func (c *Client) getProposal(ctx context.Context, _ *mcp.CallToolRequest, in ProposalInput) (*mcp.CallToolResult, ProposalOutput, error) {
	var out ProposalOutput
	if _, err := c.call(ctx, http.MethodGet, "/proposals/"+url.PathEscape(in.ID), nil, &out); err != nil {
		return nil, ProposalOutput{}, err
	}
	out.Note = proposalNote
	return nil, out, nil
}

func (c *Client) waitProposal(ctx context.Context, req *mcp.CallToolRequest, in ProposalInput) (*mcp.CallToolResult, ProposalOutput, error) {
	timeout := 300 * time.Second
	if in.TimeoutSeconds > 0 {
		timeout = time.Duration(min(in.TimeoutSeconds, 1800)) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		_, out, err := c.getProposal(ctx, req, in)
		if err != nil || out.State != "verifying" {
			return nil, out, err
		}
		select {
		case <-ctx.Done():
			out.Note = "seb is still planning it; wait again. " + proposalNote
			return nil, out, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *Client) workspaceState(ctx context.Context, _ *mcp.CallToolRequest, in WorkspaceInput) (*mcp.CallToolResult, StateOutput, error) {
	var state struct {
		Resources []struct {
			Module    string `json:"module"`
			Mode      string `json:"mode"`
			Type      string `json:"type"`
			Name      string `json:"name"`
			Instances []struct {
				IndexKey any `json:"index_key"`
			} `json:"instances"`
		} `json:"resources"`
	}
	status, err := c.call(ctx, http.MethodGet, "/workspaces/"+url.PathEscape(in.Workspace)+"/state", nil, &state)
	if err != nil {
		return nil, StateOutput{}, err
	}
	out := StateOutput{Workspace: in.Workspace, Resources: []string{},
		Note: "Addresses only: values stay in seb. The state changes only through certified executions."}
	if status == http.StatusNoContent {
		return nil, out, nil
	}
	for _, r := range state.Resources {
		addr := r.Type + "." + r.Name
		if r.Mode == "data" {
			addr = "data." + addr
		}
		if r.Module != "" {
			addr = r.Module + "." + addr
		}
		for _, inst := range r.Instances {
			switch k := inst.IndexKey.(type) {
			case nil:
				out.Resources = append(out.Resources, addr)
			case string:
				out.Resources = append(out.Resources, fmt.Sprintf("%s[%q]", addr, k))
			default:
				out.Resources = append(out.Resources, fmt.Sprintf("%s[%v]", addr, k))
			}
		}
	}
	slices.Sort(out.Resources)
	return nil, out, nil
}

// Handler serves the MCP server over streamable HTTP against the seb API
// at apiBase, statelessly: each request is served on its own, with its own
// bearer token. Authenticating the token is the caller's (seb serve mounts
// it behind its API authentication, for agents only).
//
// No session lives in the process: any replica of seb serves any request
// of an agent's conversation, and there is no session id to steal; a
// request is whoever its token is.
func Handler(apiBase, version string) http.Handler {
	serve := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		c, err := NewClient(apiBase, token)
		if err != nil {
			return nil
		}
		return NewServer(c, version)
	}, &mcp.StreamableHTTPOptions{Stateless: true})
	return auth.RequireBearerToken(func(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		sum := sha256.Sum256([]byte(token))
		return &auth.TokenInfo{UserID: hex.EncodeToString(sum[:]), Expiration: time.Now().Add(time.Hour)}, nil
	}, nil)(serve)
}

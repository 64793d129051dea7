package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/seb-broker/seb/internal/tftest"
)

// TestMCPCommand: an agent's MCP client (the SDK's) runs `seb mcp` with
// its token, and plans, proposes and waits through it against a running
// seb serve, its runner and the sandbox cloud.
func TestMCPCommand(t *testing.T) {
	s := newCrashSite(t, false)
	s.startServe()
	cmd := exec.Command(os.Args[0], "mcp", "--server", s.url)
	cmd.Env = append(append([]string{}, s.env...), "SEB_TOKEN="+s.tokens["agent"])
	ctx := context.Background()
	session, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	files := tftest.Files(t, "../../fixtures/terraform/scale")
	call := func(name string, args map[string]any, out any) {
		t.Helper()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil || res.IsError {
			t.Fatalf("%s: %v %+v", name, err, res)
		}
		data, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatal(err)
		}
	}
	var plan struct {
		HasChanges bool   `json:"has_changes"`
		Rendered   string `json:"rendered"`
	}
	call("seb_plan", map[string]any{"workspace": "sandbox", "files": files, "vars": map[string]any{"replicas": 2}}, &plan)
	if !plan.HasChanges || !strings.Contains(plan.Rendered, "sandbox_service.web will be created") {
		t.Errorf("plan: %+v", plan)
	}
	var p struct{ ID, State, Rendered string }
	call("seb_propose", map[string]any{"workspace": "sandbox", "files": files, "vars": map[string]any{"replicas": 2}, "rationale": "two replicas"}, &p)
	call("seb_wait_proposal", map[string]any{"id": p.ID, "timeout_seconds": 120}, &p)
	// This workspace certifies without a human: approvals_required = 0.
	if p.State != "certified" || !strings.Contains(p.Rendered, "replicas = 2") {
		t.Errorf("proposal after waiting: %+v", p)
	}
}

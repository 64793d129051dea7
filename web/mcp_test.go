package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/seb-broker/seb/agentmcp"
	"github.com/seb-broker/seb/internal/tftest"
	"github.com/seb-broker/seb/web"
)

// scaleFiles returns the scale fixture as an agent sends it over MCP.
func scaleFiles(t *testing.T) map[string]string {
	return tftest.Files(t, "../fixtures/terraform/scale")
}

// callTool calls an MCP tool and decodes its structured result.
func callTool(t *testing.T, session *mcp.ClientSession, name string, args map[string]any, out any) *mcp.CallToolResult {
	t.Helper()
	res, err := session.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if res.IsError {
		return res
	}
	data, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("%s: %v in %s", name, err, data)
	}
	return res
}

type mcpProposal struct {
	ID, State, Reason, Rendered, Note string
}

// TestMCP: an agent, through seb's MCP tools (the server `seb mcp` runs),
// plans, proposes and waits, against the real runner and sandbox cloud;
// no tool approves.
func TestMCP(t *testing.T) {
	s := newSite(t)
	client, err := agentmcp.NewClient(s.url, s.tokens["agent-1"])
	if err != nil {
		t.Fatal(err)
	}
	serverT, clientT := mcp.NewInMemoryTransports()
	ctx := context.Background()
	if _, err := agentmcp.NewServer(client, "test").Connect(ctx, serverT, nil); err != nil {
		t.Fatal(err)
	}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(ctx, clientT, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	exerciseMCP(t, s, session)
}

// TestMCPOverHTTP: seb serve's /mcp endpoint, for agent tokens only,
// served statelessly: an agent's requests alternate between two servers,
// as replicas behind a load balancer without affinity.
func TestMCPOverHTTP(t *testing.T) {
	s := newSite(t)
	var servers []string
	for range 2 {
		server, err := web.New(web.Options{Broker: s.svc, Records: s.store, MCP: agentmcp.Handler(s.url, "test")})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(server)
		defer hs.Close()
		servers = append(servers, hs.URL)
	}
	connect := func(token *bearer) (*mcp.ClientSession, error) {
		token.servers = servers
		transport := &mcp.StreamableClientTransport{Endpoint: servers[0] + "/mcp", MaxRetries: -1,
			HTTPClient: &http.Client{Transport: token}}
		return mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(context.Background(), transport, nil)
	}
	if _, err := connect(&bearer{token: s.tokens["alice"]}); err == nil {
		t.Errorf("a reviewer's token opened an MCP session")
	}
	token := &bearer{token: s.tokens["agent-1"]}
	session, err := connect(token)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	exerciseMCP(t, s, session)

	if token.served[0] == 0 || token.served[1] == 0 {
		t.Errorf("the requests did not alternate between the servers: %v", token.served)
	}

	// A request is whoever its token is: with agent-2's token, the same
	// conversation cannot read agent-1's proposals.
	var mine mcpProposal
	callTool(t, session, "seb_propose", map[string]any{"workspace": "sandbox", "files": scaleFiles(t), "vars": map[string]any{"replicas": 2},
		"rationale": "agent-1's"}, &mine)
	token.set(s.tokens["agent-2"])
	if res := callTool(t, session, "seb_get_proposal", map[string]any{"id": mine.ID}, &mcpProposal{}); !res.IsError {
		t.Errorf("agent-2's token read agent-1's proposal %s", mine.ID)
	}
}

// bearer adds a token, which a test may change, to each request, and
// sends the requests to its servers in turn.
type bearer struct {
	mu      sync.Mutex
	token   string
	servers []string
	served  [2]int
	next    int
}

func (b *bearer) set(token string) {
	b.mu.Lock()
	b.token = token
	b.mu.Unlock()
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	b.mu.Lock()
	token := b.token
	r = r.Clone(r.Context())
	if len(b.servers) > 0 {
		i := b.next % len(b.servers)
		b.next++
		b.served[i]++
		u, _ := url.Parse(b.servers[i])
		r.URL.Host, r.Host = u.Host, u.Host
	}
	b.mu.Unlock()
	r.Header.Set("Authorization", "Bearer "+token)
	return http.DefaultTransport.RoundTrip(r)
}

func exerciseMCP(t *testing.T, s *site, session *mcp.ClientSession) {
	t.Helper()
	tools, err := session.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
		if strings.Contains(tool.Name, "approve") || strings.Contains(tool.Name, "execute") {
			t.Errorf("tool %s approves or executes", tool.Name)
		}
	}
	if strings.Join(names, ",") != "seb_get_proposal,seb_plan,seb_propose,seb_wait_proposal,seb_workspace_state" {
		t.Errorf("tools: %v", names)
	}

	var plan struct {
		HasChanges bool   `json:"has_changes"`
		Rendered   string `json:"rendered"`
	}
	callTool(t, session, "seb_plan", map[string]any{"workspace": "sandbox", "files": scaleFiles(t), "vars": map[string]any{"replicas": 4}}, &plan)
	if !plan.HasChanges || !strings.Contains(plan.Rendered, "replicas") {
		t.Errorf("plan: %+v", plan)
	}

	var p mcpProposal
	callTool(t, session, "seb_propose", map[string]any{"workspace": "sandbox", "files": scaleFiles(t), "vars": map[string]any{"replicas": 4},
		"rationale": "four replicas"}, &p)
	if p.ID == "" || p.State != "verifying" || !strings.Contains(p.Note, "only a request") {
		t.Fatalf("propose: %+v", p)
	}
	var waited mcpProposal
	callTool(t, session, "seb_wait_proposal", map[string]any{"id": p.ID, "timeout_seconds": 120}, &waited)
	if waited.State != "pending" || !strings.Contains(waited.Rendered, "replicas = 4") {
		t.Errorf("wait: %+v", waited)
	}

	// Refusals come back as tool errors an agent can read.
	res := callTool(t, session, "seb_propose", map[string]any{"workspace": "sandbox", "rationale": "state elsewhere",
		"files": map[string]string{"main.tf": "terraform {\n  backend \"s3\" {}\n}\n"}}, &p)
	if !res.IsError || !strings.Contains(toolText(res), `backend "s3"`) {
		t.Errorf("a refused proposal: %+v %s", res, toolText(res))
	}
	res = callTool(t, session, "seb_propose", map[string]any{"workspace": "sandbox", "rationale": "escape", "files": map[string]string{"../escape.tf": ""}}, &p)
	if !res.IsError || !strings.Contains(toolText(res), "not a path inside the configuration") {
		t.Errorf("a path outside the configuration: %s", toolText(res))
	}

	// After an approval and an execution, the workspace holds the service.
	if e := s.execute(s.approve(waited.ID)); e.State != "succeeded" {
		t.Fatalf("execution: %+v", e)
	}
	var state struct {
		Resources []string `json:"resources"`
	}
	callTool(t, session, "seb_workspace_state", map[string]any{"workspace": "sandbox"}, &state)
	if strings.Join(state.Resources, ",") != "sandbox_service.web" {
		t.Errorf("state: %+v", state)
	}
}

func toolText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if text, ok := c.(*mcp.TextContent); ok {
			b.WriteString(text.Text)
		}
	}
	return b.String()
}

package web

import (
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/seb-broker/seb/broker"
)

// A token may be limited to some workspaces (APIToken.Workspaces): it
// cannot propose to, plan, read or execute in any other. scoped enforces
// that on every API route, from the workspace the route acts on; routes
// that list filter what they show; routes that span workspaces (the audit
// log, tokens, jobs) are refused to a limited token.

// Route classes of routeWorkspace beside a workspace name.
const (
	spansWorkspaces = "\x00spans" // no single workspace: refused when limited
	listsWorkspaces = "\x00lists" // the handler filters its list
)

// scoped refuses a token limited to some workspaces a route that acts on
// another, or that spans workspaces.
func (s *Server) scoped(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := principal(c)
		if p == nil || len(p.Workspaces) == 0 {
			return next(c)
		}
		ws, err := s.routeWorkspace(c)
		if err != nil {
			return err
		}
		switch {
		case ws == listsWorkspaces:
		case ws == spansWorkspaces:
			return broker.Errorf(broker.EFORBIDDEN, "token %s is limited to workspaces %s, and this route spans workspaces", p.Name, strings.Join(p.Workspaces, ", "))
		case !p.Allows(ws):
			return broker.Errorf(broker.EFORBIDDEN, "token %s may not act on workspace %s (it is limited to %s)", p.Name, ws, strings.Join(p.Workspaces, ", "))
		}
		return next(c)
	}
}

// routeWorkspace returns the workspace the request acts on, or one of
// the route classes. A record that does not exist has no workspace: its
// handler answers 404.
func (s *Server) routeWorkspace(c echo.Context) (string, error) {
	ctx := c.Request().Context()
	path := strings.TrimPrefix(c.Path(), "/api/v1")
	id := c.Param("id")
	found := func(ws string, err error) (string, error) {
		if broker.ErrorCode(err) == broker.ENOTFOUND {
			return listsWorkspaces, nil
		}
		return ws, err
	}
	switch {
	case strings.Contains(path, ":workspace"):
		return c.Param("workspace"), nil
	case path == "/workspaces" || path == "/proposals" || path == "/executions" || path == "/":
		// Lists filter; POST /executions checks the certificate's
		// workspace before consuming it.
		return listsWorkspaces, nil
	case strings.HasPrefix(path, "/proposals/:id"):
		p, err := s.opts.Records.Proposal(ctx, id)
		if err != nil {
			return found("", err)
		}
		return p.Workspace, nil
	case strings.HasPrefix(path, "/certificates/:id"):
		cert, err := s.opts.Records.Certificate(ctx, id)
		if err != nil {
			return found("", err)
		}
		return cert.Workspace, nil
	case strings.HasPrefix(path, "/executions/:id"):
		e, err := s.opts.Records.Execution(ctx, id)
		if err != nil {
			return found("", err)
		}
		return e.Workspace, nil
	case path == "/artifacts/:id":
		// The JSON of an execution's plan and an agent's plan name their
		// subject; a log, only its execution does.
		for _, prefix := range []string{"plan-json-", "plan-log-", "apply-log-"} {
			if exec, ok := strings.CutPrefix(id, prefix); ok {
				e, err := s.opts.Records.Execution(ctx, exec)
				if err != nil {
					return found("", err)
				}
				return e.Workspace, nil
			}
		}
		if prop, ok := strings.CutPrefix(id, "agent-plan-"); ok {
			p, err := s.opts.Records.Proposal(ctx, prop)
			if err != nil {
				return found("", err)
			}
			return p.Workspace, nil
		}
	}
	return spansWorkspaces, nil
}

// certificateWorkspace returns the workspace of the certificate an
// execution request names, by id or in its envelope (the stored
// certificate's, when it exists), or "" when it names none seb holds.
func (s *Server) certificateWorkspace(c echo.Context, id string, envelope []byte) (string, error) {
	if id == "" {
		var env dsse.Envelope
		if json.Unmarshal(envelope, &env) != nil {
			return "", nil
		}
		payload, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			return "", nil
		}
		var claim struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(payload, &claim) != nil {
			return "", nil
		}
		id = claim.ID
	}
	cert, err := s.opts.Records.Certificate(c.Request().Context(), id)
	if broker.ErrorCode(err) == broker.ENOTFOUND {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return cert.Workspace, nil
}

// allows reports whether the request's token may act on workspace.
func allows(c echo.Context, workspace string) bool {
	p := principal(c)
	return p == nil || p.Allows(workspace)
}

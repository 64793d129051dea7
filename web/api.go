package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

const principalKey = "seb.principal"

func principal(c echo.Context) *broker.APIToken {
	p, _ := c.Get(principalKey).(*broker.APIToken)
	return p
}

func principalName(c echo.Context) string {
	if p := principal(c); p != nil {
		return p.Name
	}
	return ""
}

// authenticate resolves the bearer API token; a missing or unknown one is
// 401.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
		if !ok && strings.HasSuffix(c.Request().URL.Path, "/state") {
			// Terraform's http backend sends basic auth: the token is the
			// password (TF_HTTP_PASSWORD). Only its route accepts it.
			_, raw, ok = c.Request().BasicAuth()
		}
		if !ok || strings.TrimSpace(raw) == "" {
			s.refusedAuthentication(c, "missing")
			return broker.Errorf(broker.EUNAUTHORIZED, "missing bearer token: create one with `seb tokens create`")
		}
		tok, err := s.opts.Records.APITokenByHash(c.Request().Context(), broker.HashAPIToken(raw))
		if broker.ErrorCode(err) == broker.ENOTFOUND {
			s.refusedAuthentication(c, "unknown")
			return broker.Errorf(broker.EUNAUTHORIZED, "unknown API token")
		}
		if err != nil {
			return err
		}
		c.Set(principalKey, tok)
		return next(c)
	}
}

// refusals counts refused authentications between their audit entries.
type refusals struct {
	mu     sync.Mutex
	counts map[string]int
	since  time.Time // the first refusal not yet audited
	last   time.Time // the last audit entry
}

// refusalsEvery is the most often refused authentications are audited.
const refusalsEvery = time.Minute

// refusedAuthentication counts a request refused for its token, in the
// metrics at once and in the audit log in a bounded way: the first
// refusal is audited at once, the next ones together, at most one entry a
// minute, with their counts by reason.
func (s *Server) refusedAuthentication(c echo.Context, reason string) {
	s.metrics.refused.WithLabelValues(reason).Inc()
	r := &s.refusals
	now := time.Now()
	r.mu.Lock()
	if r.counts == nil {
		r.counts, r.since = map[string]int{}, now
	}
	r.counts[reason]++
	if now.Sub(r.last) < refusalsEvery {
		r.mu.Unlock()
		return
	}
	counts, since := r.counts, r.since
	r.counts, r.last = nil, now
	r.mu.Unlock()
	if err := s.opts.Broker.RecordRefusedAuthentications(context.WithoutCancel(c.Request().Context()), counts, since); err != nil {
		s.opts.Logger.Error("audit refused authentications", "error", err)
	}
}

// allow lets only the given roles through; others get 403.
func allow(roles ...broker.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := principal(c)
			if p == nil || !slices.Contains(roles, p.Role) {
				names := make([]string, len(roles))
				for i, r := range roles {
					names[i] = string(r)
				}
				return broker.Errorf(broker.EFORBIDDEN, "this needs the role %s", strings.Join(names, " or "))
			}
			return next(c)
		}
	}
}

// Roles of each group of routes.
var (
	anyRole   = []broker.Role{broker.RoleAgent, broker.RoleReviewer, broker.RoleCI, broker.RoleAdmin}
	proposers = []broker.Role{broker.RoleAgent, broker.RoleAdmin}
	reviewers = []broker.Role{broker.RoleReviewer}
	executors = []broker.Role{broker.RoleCI, broker.RoleAdmin}
	readers   = []broker.Role{broker.RoleReviewer, broker.RoleCI, broker.RoleAdmin}
	admins    = []broker.Role{broker.RoleAdmin}
)

// A route is one API endpoint and the roles allowed to use it.
type route struct {
	method, path string
	roles        []broker.Role
	handler      echo.HandlerFunc
	bodyLimit    string
	summary      string
}

// apiRoutes lists the API; the role matrix test walks it.
func (s *Server) apiRoutes() []route {
	return []route{
		{http.MethodGet, "/workspaces", anyRole, s.listWorkspaces, "", "List the workspaces"},
		{http.MethodGet, "/workspaces/:workspace", anyRole, s.getWorkspace, "", "Get a workspace and its revocation epoch"},
		{http.MethodPost, "/workspaces/:workspace/plan", proposers, s.speculativePlan, "bundle", "Plan a bundle against live state with a plan-phase credential; nothing is stored"},
		{http.MethodPost, "/workspaces/:workspace/proposals", proposers, s.createProposal, "bundle", "Propose a change: seb plans the bundle and compares the agent's plan"},
		{http.MethodPost, "/workspaces/:workspace/revoke-all", admins, s.revokeAll, "", "Revoke every certificate of the workspace (bump its revocation epoch)"},
		{http.MethodPost, "/workspaces/:workspace/reconcile", admins, s.reconcile, "", "Release a workspace held for reconciliation, with a note saying what was done"},
		{http.MethodGet, "/tokens", admins, s.listTokens, "", "List the API tokens: names, roles, creation times (never the tokens)"},
		{http.MethodPost, "/tokens", admins, s.createToken, "", "Create an API token ({name, role}); the token is in this answer only (audited)"},
		{http.MethodDelete, "/tokens/:name", admins, s.revokeToken, "", "Revoke an API token: refused from its next request, its UI sessions ended (audited)"},
		{http.MethodPost, "/jobs/:id/cancel", admins, s.cancelJob, "", "Cancel a queued or running job (a verification, a speculative plan or an execution)"},
		{http.MethodGet, "/workspaces/:workspace/state", anyRole, s.getState, "", "The workspace's Terraform state, read-only, as Terraform's http backend reads it"},
		{http.MethodPost, "/workspaces/:workspace/state", anyRole, s.stateReadOnly, "", "Refused: the broker owns state"},
		{http.MethodDelete, "/workspaces/:workspace/state", anyRole, s.stateReadOnly, "", "Refused: the broker owns state"},
		{"LOCK", "/workspaces/:workspace/state", anyRole, s.stateReadOnly, "", "Refused: nothing but the broker locks state"},
		{"UNLOCK", "/workspaces/:workspace/state", anyRole, s.stateReadOnly, "", "Refused: nothing but the broker locks state"},
		{http.MethodPost, "/workspaces/:workspace/credentials", proposers, s.planCredential, "", "A short-lived plan-phase (read-only) credential, for an agent that plans itself"},
		{http.MethodGet, "/proposals", anyRole, s.listProposals, "", "List proposals (agents see their own); filter by workspace and state"},
		{http.MethodGet, "/proposals/:id", anyRole, s.getProposal, "", "Get a proposal: summary, rendered diff, drift, divergence, reviews"},
		{http.MethodPost, "/proposals/:id/approve", reviewers, s.review(broker.Approve), "", "Approve; the final approval issues the certificate"},
		{http.MethodPost, "/proposals/:id/again", proposers, s.proposeAgain, "", "Propose the same bundle and variables again, planned afresh against live state (after an execution was refused); the proposer only"},
		{http.MethodPost, "/proposals/:id/reject", reviewers, s.review(broker.Reject), "", "Reject"},
		{http.MethodGet, "/certificates/:id", anyRole, s.getCertificate, "", "Get a certificate: its payload and DSSE envelope"},
		{http.MethodPost, "/certificates/:id/revoke", admins, s.revoke, "", "Revoke a certificate"},
		{http.MethodPost, "/executions", executors, s.createExecution, "", "Execute a certificate: verified and consumed now (202), run in the background"},
		{http.MethodGet, "/executions/:id", readers, s.getExecution, "", "Get an execution's state, reason and decision"},
		{http.MethodGet, "/executions/:id/logs", readers, s.getExecutionLogs, "", "The execution's signed plan and apply logs, as JSON lines"},
		{http.MethodGet, "/artifacts/:id", readers, s.getArtifact, "", "A signed artifact (an execution's plan or apply log or plan JSON, an agent's plan) as its DSSE envelope: check it offline with seb verify and the key at /api/v1/keys/signing"},
		{http.MethodGet, "/audit", []broker.Role{broker.RoleReviewer, broker.RoleAdmin}, s.listAudit, "", "Page through the audit log"},
		{http.MethodGet, "/audit/export", []broker.Role{broker.RoleReviewer, broker.RoleAdmin}, s.exportAudit, "", "The whole audit log as JSON Lines, for seb audit verify"},
		{http.MethodGet, "/audit/verify", []broker.Role{broker.RoleReviewer, broker.RoleAdmin}, s.verifyAudit, "", "Verify the audit log's chain and signatures now"},
	}
}

// allRoutes is the whole API: clients' routes and runners'.
// publicRoutes need no token: what anyone verifying seb's evidence needs.
func (s *Server) publicRoutes() []route {
	return []route{
		{http.MethodGet, "/keys/signing", nil, s.signingKey, "", "seb's public signing key (PEM): it verifies certificates, signed artifacts, checkpoints and the audit log (seb verify, seb audit verify)"},
		{http.MethodGet, "/openapi.json", nil, s.openAPI, "", "This document: the API's OpenAPI 3.1 description, a schema for every request and answer"},
		{http.MethodGet, "/audit/checkpoint", nil, s.auditCheckpoint, "", "A checkpoint of the audit log signed now (DSSE): its length and head; save it, and seb audit verify --checkpoint proves a later log was not cut below it"},
	}
}

func (s *Server) signingKey(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/x-pem-file", s.opts.Broker.PublicKey())
}

func (s *Server) auditCheckpoint(c echo.Context) error {
	env, _, err := s.opts.Broker.Checkpoint(c.Request().Context())
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/vnd.dsse.envelope.v1+json", env)
}

func (s *Server) allRoutes() []route { return append(s.apiRoutes(), s.runnerRoutes()...) }

func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	if s.opts.Issuer != nil {
		e.GET("/.well-known/*", echo.WrapHandler(s.opts.Issuer))
	}
	e.GET("/metrics", s.metrics.handler())
	for _, r := range s.publicRoutes() {
		e.Add(r.method, "/api/v1"+r.path, r.handler)
	}
	s.uiRoutes()
	if s.opts.MCP != nil {
		e.Any("/mcp", echo.WrapHandler(s.opts.MCP), middleware.BodyLimit("16M"), s.authenticate, allow(broker.RoleAgent))
	}
	api := e.Group("/api/v1", s.authenticate)
	for _, r := range s.allRoutes() {
		limit := "1M"
		middlewares := []echo.MiddlewareFunc{middleware.BodyLimit(limit), allow(r.roles...), s.scoped}
		if r.bodyLimit == "bundle" {
			limit = strconv.FormatInt(s.opts.MaxBundleBytes, 10) + "B"
			middlewares = []echo.MiddlewareFunc{middleware.BodyLimit(limit), allow(r.roles...), s.scoped, s.roomToRead}
		}
		api.Add(r.method, r.path, r.handler, middlewares...)
	}
}

// roomToRead lets a large body be read only when there is room for it in
// MaxReadingBytes: what many large uploads at once can take in memory is
// bounded. A body waits up to ReadingWait, then is refused with 429. The
// room a body takes is its declared length, or the most a body may be
// when it declares none.
func (s *Server) roomToRead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		n := c.Request().ContentLength
		if n < 0 || n > s.opts.MaxBundleBytes {
			n = s.opts.MaxBundleBytes
		}
		n = max(n, 1)
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.opts.ReadingWait)
		defer cancel()
		if err := s.reading.Acquire(ctx, n); err != nil {
			c.Response().Header().Set("Retry-After", "10")
			return broker.Errorf(broker.EBUSY, "seb is reading other large proposals (up to %d MiB at once) and found no room for this %d KiB body in %s; send it again shortly",
				s.opts.MaxReadingBytes>>20, n>>10, s.opts.ReadingWait)
		}
		release := sync.OnceFunc(func() {
			s.reading.Release(n)
			// A large body's memory goes back to the system once it is
			// read, rather than staying with the process.
			if n >= 16<<20 && s.freeing.CompareAndSwap(false, true) {
				go func() {
					defer s.freeing.Store(false)
					debug.FreeOSMemory()
				}()
			}
		})
		defer release()
		c.Set(roomKey, release)
		return next(c)
	}
}

// roomKey names, in an echo.Context, the function that gives back the
// room a body took once the handler no longer holds it.
const roomKey = "seb.room"

// bodyDone gives back the room of a body the handler has decoded and
// dropped, before it goes on with slow work.
func bodyDone(c echo.Context) {
	if release, ok := c.Get(roomKey).(func()); ok {
		release()
	}
}

func (s *Server) ready(c echo.Context) error {
	if _, err := s.opts.Records.PolicyEpoch(c.Request().Context()); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "store unavailable"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// bind decodes a JSON body strictly; a wrong content type is 415.
//
// An empty body is an empty object, whatever its content type: POST
// /proposals/{id}/approve needs nothing more.
func bind(c echo.Context, v any) error {
	data, err := io.ReadAll(c.Request().Body)
	if err != nil {
		if tooLarge(err) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return broker.Errorf(broker.EINVALID, "request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if ct := c.Request().Header.Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "send JSON with Content-Type: application/json")
	}
	if err := checkUTF8(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return broker.Errorf(broker.EINVALID, "request body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return broker.Errorf(broker.EINVALID, "request body: data after the JSON value")
	}
	return nil
}

// tooLarge reports whether reading the body failed on its size limit.
func tooLarge(err error) bool {
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	return errors.As(err, &he) && he.Code == http.StatusRequestEntityTooLarge || errors.As(err, &mbe)
}

type workspaceJSON struct {
	Name                string             `json:"name"`
	DriftMode           string             `json:"drift_mode"`
	ApprovalsRequired   int                `json:"approvals_required"`
	ProtectedActions    []planparse.Action `json:"protected_actions"`
	CertificateLifetime string             `json:"certificate_lifetime"`
	RevocationEpoch     int64              `json:"revocation_epoch"`
	// Hold says why executions are refused until an admin reconciles the
	// workspace; absent when it is not held.
	Hold *holdJSON `json:"hold,omitempty"`
}

type holdJSON struct {
	Execution string    `json:"execution"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}

func (s *Server) workspaceJSON(ctx context.Context, w broker.Workspace) (workspaceJSON, error) {
	epoch, err := s.opts.Records.RevocationEpoch(ctx, w.Name)
	if err != nil {
		return workspaceJSON{}, err
	}
	actions := w.ProtectedActions
	if actions == nil {
		actions = []planparse.Action{}
	}
	j := workspaceJSON{Name: w.Name, DriftMode: string(w.DriftMode), ApprovalsRequired: w.ApprovalsRequired,
		ProtectedActions: actions, CertificateLifetime: w.CertificateLifetime.String(), RevocationEpoch: epoch}
	switch h, err := s.opts.Broker.Hold(ctx, w.Name); {
	case err == nil:
		j.Hold = &holdJSON{Execution: h.Execution, Reason: h.Reason, Since: h.Since}
	case broker.ErrorCode(err) != broker.ENOTFOUND:
		return workspaceJSON{}, err
	}
	return j, nil
}

type reconcileRequest struct {
	Note string `json:"note,omitempty"`
}

// reconcile releases a held workspace; the note says what the admin did.
func (s *Server) reconcile(c echo.Context) error {
	var req reconcileRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Note) == "" {
		return broker.Errorf(broker.EINVALID, "say in \"note\" how the workspace was reconciled; it goes into the audit log")
	}
	if err := s.opts.Broker.Reconcile(context.WithoutCancel(c.Request().Context()), c.Param("workspace"), principalName(c), req.Note); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) cancelJob(c echo.Context) error {
	if err := s.opts.Broker.CancelJob(context.WithoutCancel(c.Request().Context()), c.Param("id"), principalName(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listWorkspaces(c echo.Context) error {
	out := []workspaceJSON{}
	for _, w := range s.opts.Broker.Workspaces() {
		if !allows(c, w.Name) {
			continue
		}
		j, err := s.workspaceJSON(c.Request().Context(), w)
		if err != nil {
			return err
		}
		out = append(out, j)
	}
	return c.JSON(http.StatusOK, map[string]any{"items": out})
}

func (s *Server) getWorkspace(c echo.Context) error {
	w, err := s.opts.Broker.Workspace(c.Param("workspace"))
	if err != nil {
		return err
	}
	j, err := s.workspaceJSON(c.Request().Context(), w)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, j)
}

// planRequest is the JSON body of a speculative plan.
type planRequest struct {
	// Bundle is base64 in the JSON; encoding/json decodes it into its
	// bytes directly.
	Bundle []byte   `json:"bundle"`
	Vars   varsJSON `json:"vars,omitempty"`
}

// speculativePlan plans a bundle against live state with a plan-phase
// credential, for an agent that has no Terraform of its own, and returns
// the plan JSON, its summary and the rendered diff. Nothing is stored. A
// few plans run at once; more are answered 429.
func (s *Server) speculativePlan(c echo.Context) error {
	select {
	case s.planSlots <- struct{}{}:
		defer func() { <-s.planSlots }()
	default:
		return echo.NewHTTPError(http.StatusTooManyRequests, "seb is running as many speculative plans as it will; try again shortly")
	}
	var req planRequest
	if err := bindLarge(c, &req); err != nil {
		return bundleError(err)
	}
	bundle := req.Bundle
	if len(bundle) == 0 {
		return broker.Errorf(broker.EINVALID, "bundle: a base64-encoded gzip'd tar of the configuration is required")
	}
	// The plan may take minutes: the body's room is not held meanwhile.
	bodyDone(c)
	plan, err := s.opts.Broker.Plan(c.Request().Context(), principalName(c), c.Param("workspace"), bundle, req.Vars)
	if err != nil {
		return err
	}
	var rendered strings.Builder
	planparse.Render(&rendered, plan.Plan.Summary, planparse.RenderOptions{Digest: plan.Plan.Digest})
	drift := plan.Plan.Drift
	if drift == nil {
		drift = []planparse.ResourceChange{}
	}
	// Terraform's plan JSON is returned too, so that an agent can send it
	// with its proposal: it holds the prior state in clear, as the state
	// endpoint does for the same callers.
	return c.JSON(http.StatusOK, planJSON{Digest: plan.Plan.Digest, Summary: plan.Plan.Summary, Drift: drift,
		Rendered: rendered.String(), HasChanges: plan.HasChanges, Plan: json.RawMessage(plan.JSON)})
}

// planJSON is a speculative plan.
type planJSON struct {
	Digest     string                     `json:"digest"`
	Summary    *planparse.Summary         `json:"summary"`
	Drift      []planparse.ResourceChange `json:"drift"`
	Rendered   string                     `json:"rendered"`
	HasChanges bool                       `json:"has_changes"`
	// Plan is Terraform's plan JSON.
	Plan json.RawMessage `json:"plan"`
}

// getState serves the workspace's state as Terraform's http backend reads
// it: the state JSON, or 204 when there is none yet.
func (s *Server) getState(c echo.Context) error {
	state, err := s.opts.Broker.WorkspaceState(c.Request().Context(), c.Param("workspace"))
	if err != nil {
		return err
	}
	if state == nil {
		return c.NoContent(http.StatusNoContent)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, state)
}

// stateReadOnly refuses every write and lock of a workspace's state.
func (s *Server) stateReadOnly(c echo.Context) error {
	return broker.Errorf(broker.EFORBIDDEN, "the state of workspace %s is read-only: the broker owns it, and only certified executions change it", c.Param("workspace"))
}

// planCredential hands an agent a plan-phase credential for its own
// Terraform, with how the workspace expects to receive it.
func (s *Server) planCredential(c echo.Context) error {
	ws, err := s.opts.Broker.Workspace(c.Param("workspace"))
	if err != nil {
		return err
	}
	cred, err := s.opts.Broker.PlanCredential(context.WithoutCancel(c.Request().Context()), ws.Name, principalName(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, planCredentialJSON{Token: cred.Token, ExpiresAt: cred.ExpiresAt, Phase: "plan",
		Audience: ws.Credentials.Audience, TokenFileEnv: ws.Credentials.TokenFileEnv, Env: ws.Credentials.Env})
}

// multipartProposal reads a proposal sent as multipart/form-data: the
// bundle file in "bundle", the agent's plan JSON file in "plan" (optional),
// the variables as a JSON object in "vars" and the text in "rationale".
func multipartProposal(c echo.Context) (proposalRequest, []byte, error) {
	var req proposalRequest
	form, err := c.MultipartForm()
	if err != nil {
		if tooLarge(err) {
			return req, nil, echo.ErrStatusRequestEntityTooLarge
		}
		return req, nil, broker.Errorf(broker.EINVALID, "multipart body: %v", err)
	}
	read := func(field string) ([]byte, error) {
		files := form.File[field]
		if len(files) == 0 {
			return nil, nil
		}
		f, err := files[0].Open()
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(f)
	}
	bundle, err := read("bundle")
	if err != nil || len(bundle) == 0 {
		return req, nil, broker.Errorf(broker.EINVALID, "bundle: a file field with the gzip'd tar of the configuration is required")
	}
	plan, err := read("plan")
	if err != nil {
		return req, nil, broker.Errorf(broker.EINVALID, "plan: %v", err)
	}
	if len(plan) > 0 {
		if !json.Valid(plan) {
			return req, nil, broker.Errorf(broker.EINVALID, "plan: not JSON; send terraform show -json of the saved plan")
		}
		req.Plan = plan
	}
	if vars := form.Value["vars"]; len(vars) > 0 && vars[0] != "" {
		if err := json.Unmarshal([]byte(vars[0]), &req.Vars); err != nil {
			return req, nil, broker.Errorf(broker.EINVALID, "vars: a JSON object of strings: %v", err)
		}
	}
	if r := form.Value["rationale"]; len(r) > 0 {
		req.Rationale = r[0]
	}
	return req, bundle, nil
}

// bundleError words a body whose bundle is not base64 as before: the
// JSON decoder's message names a Go type.
func bundleError(err error) error {
	if strings.Contains(err.Error(), "illegal base64") {
		return broker.Errorf(broker.EINVALID, "bundle: a base64-encoded gzip'd tar of the configuration is required")
	}
	return err
}

// proposalRequest is the JSON body of a proposal: the bundle base64
// encoded, and the agent's plan JSON as a JSON value if it made one.
type proposalRequest struct {
	Bundle    []byte          `json:"bundle"`
	Vars      varsJSON        `json:"vars,omitempty"`
	Rationale string          `json:"rationale,omitempty"`
	Plan      json.RawMessage `json:"plan,omitempty"`
}

func (s *Server) createProposal(c echo.Context) error {
	var (
		req    proposalRequest
		bundle []byte
		err    error
	)
	if strings.HasPrefix(c.Request().Header.Get(echo.HeaderContentType), echo.MIMEMultipartForm) {
		req, bundle, err = multipartProposal(c)
		if err != nil {
			return err
		}
	} else {
		if err := bindLarge(c, &req); err != nil {
			return bundleError(err)
		}
		if bundle = req.Bundle; len(bundle) == 0 {
			return broker.Errorf(broker.EINVALID, "bundle: a base64-encoded gzip'd tar of the configuration is required")
		}
	}
	p, err := s.opts.Broker.Submit(context.WithoutCancel(c.Request().Context()), broker.ProposalRequest{
		Workspace: c.Param("workspace"), Proposer: principalName(c), Rationale: req.Rationale,
		Bundle: bundle, Vars: req.Vars, AgentPlan: req.Plan,
	})
	if err != nil {
		return err
	}
	body, err := s.proposalJSON(c.Request().Context(), p)
	if err != nil {
		return err
	}
	// Accepted: seb's own plan of it runs now; poll the proposal.
	return c.JSON(http.StatusAccepted, body)
}

type proposalJSON struct {
	ID           string                     `json:"id"`
	Workspace    string                     `json:"workspace"`
	State        broker.ProposalState       `json:"state"`
	Reason       string                     `json:"reason,omitempty"`
	Proposer     string                     `json:"proposer"`
	Rationale    string                     `json:"rationale"`
	ConfigDigest string                     `json:"config_digest"`
	Vars         map[string]string          `json:"vars"`
	Digest       string                     `json:"digest"`
	PlanDigest   string                     `json:"plan_digest"`
	AgentDigest  string                     `json:"agent_digest,omitempty"`
	Summary      *planparse.Summary         `json:"summary"`
	Rendered     string                     `json:"rendered"`
	Drift        []planparse.ResourceChange `json:"drift"`
	Divergence   *planparse.Divergence      `json:"divergence,omitempty"`
	// Disclosure is what reviewers cannot read in the diff: hidden
	// values (by the provider's schema or by the configuration) and
	// values known only after apply, with their expressions' references.
	Disclosure *planparse.Disclosure `json:"disclosure,omitempty"`
	// Policy is what the workspace's policy decided at verification;
	// absent without a policy.
	Policy *policy.Decision `json:"policy,omitempty"`
	// StillNeeded says which approvals a pending proposal still needs.
	StillNeeded   string       `json:"still_needed,omitempty"`
	Reviews       []reviewJSON `json:"reviews"`
	CertificateID string       `json:"certificate_id,omitempty"`
	// CertificateFate is what became of a certified proposal's
	// certificate: unused, executing, applied, refused at execution,
	// failed at execution, interrupted at execution, revoked, or no
	// longer executable.
	CertificateFate string    `json:"certificate_fate,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

type reviewJSON struct {
	Reviewer string          `json:"reviewer"`
	Decision broker.Decision `json:"decision"`
	Comment  string          `json:"comment"`
	At       time.Time       `json:"at"`
	// Groups are the reviewer's groups when they reviewed.
	Groups []string `json:"groups,omitempty"`
}

func (s *Server) proposalJSON(ctx context.Context, p *broker.Proposal) (*proposalJSON, error) {
	reviews, err := s.opts.Records.Reviews(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	var rendered strings.Builder
	if p.Summary != nil {
		planparse.Render(&rendered, p.Summary, planparse.RenderOptions{Digest: p.Digest})
	}
	out := &proposalJSON{ID: p.ID, Workspace: p.Workspace, State: p.State, Proposer: p.Proposer, Rationale: p.Rationale,
		Reason: p.Reason, ConfigDigest: p.ConfigDigest, Vars: p.Vars, Digest: p.Digest, PlanDigest: p.PlanDigest, AgentDigest: p.AgentDigest,
		Summary: p.Summary, Rendered: rendered.String(), Drift: p.Drift, Divergence: p.Divergence, Disclosure: p.Disclosure,
		Policy: p.Policy, StillNeeded: s.opts.Broker.StillNeeded(p, reviews),
		Reviews: []reviewJSON{}, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if out.Drift == nil {
		out.Drift = []planparse.ResourceChange{}
	}
	for _, r := range reviews {
		out.Reviews = append(out.Reviews, reviewJSON{Reviewer: r.Reviewer, Decision: r.Decision, Comment: r.Comment, At: r.At, Groups: r.Groups})
	}
	if p.State == broker.ProposalCertified {
		cert, err := s.opts.Records.ProposalCertificate(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		out.CertificateID = cert.ID
		if out.CertificateFate, err = s.certificateFate(ctx, p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// visible reports whether the principal may read a proposal: agents read
// only their own.
func visible(c echo.Context, p *broker.Proposal) bool {
	pr := principal(c)
	return pr.Role != broker.RoleAgent || pr.Name == p.Proposer
}

func (s *Server) listProposals(c echo.Context) error {
	f := broker.ProposalFilter{Workspace: c.QueryParam("workspace"), State: broker.ProposalState(c.QueryParam("state")),
		After: c.QueryParam("after"), Limit: 100}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return broker.Errorf(broker.EINVALID, "limit %q: a number from 1 to 500", v)
		}
		f.Limit = n
	}
	if principal(c).Role == broker.RoleAgent {
		f.Proposer = principalName(c)
	}
	if f.Workspace != "" {
		if _, err := s.opts.Broker.Workspace(f.Workspace); err != nil {
			return err
		}
		if !allows(c, f.Workspace) {
			return broker.Errorf(broker.EFORBIDDEN, "token %s may not act on workspace %s", principalName(c), f.Workspace)
		}
	}
	// A limited token lists in its workspaces only — in the query, so that
	// its cursor never names another's proposal — and may page only after
	// one it may read.
	if p := principal(c); len(p.Workspaces) > 0 {
		f.Workspaces = p.Workspaces
		if f.After != "" {
			if after, err := s.opts.Records.Proposal(c.Request().Context(), f.After); err != nil || !p.Allows(after.Workspace) {
				return broker.Errorf(broker.ENOTFOUND, "no proposal %s to list after", f.After)
			}
		}
	}
	list, err := s.opts.Records.ListProposals(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := []*proposalJSON{}
	for _, p := range list {
		if !allows(c, p.Workspace) {
			continue
		}
		j, err := s.proposalJSON(c.Request().Context(), p)
		if err != nil {
			s.opts.Logger.Error("list proposals", "proposal", p.ID, "error", err)
			continue
		}
		out = append(out, j)
	}
	// A full page has a next one, perhaps empty: after the last item.
	page := map[string]any{"items": out}
	if len(list) == f.Limit && len(list) > 0 {
		page["next"] = list[len(list)-1].ID
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Server) proposeAgain(c echo.Context) error {
	p, err := s.opts.Broker.ProposeAgain(context.WithoutCancel(c.Request().Context()), c.Param("id"), principalName(c))
	if err != nil {
		return err
	}
	body, err := s.proposalJSON(c.Request().Context(), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, body)
}

func (s *Server) getProposal(c echo.Context) error {
	p, err := s.opts.Records.Proposal(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if !visible(c, p) {
		return broker.Errorf(broker.ENOTFOUND, "no proposal %q", p.ID)
	}
	j, err := s.proposalJSON(c.Request().Context(), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, j)
}

type reviewRequest struct {
	Comment string `json:"comment,omitempty"`
	// Validity shortens the certificate's validity, e.g. "30m".
	Validity string `json:"validity,omitempty"`
}

func (s *Server) review(decision broker.Decision) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req reviewRequest
		if err := bind(c, &req); err != nil {
			return err
		}
		var validity time.Duration
		if req.Validity != "" {
			var err error
			if validity, err = time.ParseDuration(req.Validity); err != nil {
				return broker.Errorf(broker.EINVALID, "validity %q is not a duration", req.Validity)
			}
		}
		p, cert, err := s.opts.Broker.Review(context.WithoutCancel(c.Request().Context()), broker.ReviewRequest{
			ProposalID: c.Param("id"), Reviewer: principalName(c), Decision: decision, Comment: req.Comment, Validity: validity,
			Groups: principal(c).Groups,
		})
		if err != nil {
			return err
		}
		if cert != nil {
			s.metrics.certificates.Inc()
		}
		body, err := s.proposalJSON(c.Request().Context(), p)
		if err != nil {
			return err
		}
		if cert != nil {
			body.CertificateID = cert.ID
		}
		return c.JSON(http.StatusOK, body)
	}
}

type certificateJSON struct {
	broker.CertificatePayload
	Envelope   json.RawMessage `json:"envelope"`
	RevokedAt  *time.Time      `json:"revoked_at,omitempty"`
	RevokedBy  string          `json:"revoked_by,omitempty"`
	ConsumedBy string          `json:"consumed_by,omitempty"`
}

func (s *Server) getCertificate(c echo.Context) error {
	cert, err := s.opts.Records.Certificate(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if principal(c).Role == broker.RoleAgent {
		p, err := s.opts.Records.Proposal(c.Request().Context(), cert.ProposalID)
		if err != nil || !visible(c, p) {
			return broker.Errorf(broker.ENOTFOUND, "no certificate %q", cert.ID)
		}
	}
	// The payload shown is the signed one, whole (the store keeps some of
	// its fields only in the envelope, such as vars_digest).
	payload := cert.CertificatePayload
	if keys, err := broker.ParsePublicKeysPEM(s.opts.Broker.PublicKey()); err == nil {
		if signed, err := broker.VerifyCertificate(cert.Envelope, keys...); err == nil {
			payload = *signed
		}
	}
	return c.JSON(http.StatusOK, certificateJSON{CertificatePayload: payload, Envelope: cert.Envelope,
		RevokedAt: cert.RevokedAt, RevokedBy: cert.RevokedBy, ConsumedBy: cert.ConsumedBy})
}

func (s *Server) revoke(c echo.Context) error {
	if err := s.opts.Broker.Revoke(context.WithoutCancel(c.Request().Context()), c.Param("id"), principalName(c)); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, revokedJSON{Revoked: c.Param("id")})
}

func (s *Server) revokeAll(c echo.Context) error {
	epoch, err := s.opts.Broker.RevokeAll(context.WithoutCancel(c.Request().Context()), c.Param("workspace"), principalName(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, revokedAllJSON{Workspace: c.Param("workspace"), RevocationEpoch: epoch})
}

// executionRequest names a certificate by id, or carries its envelope.
type executionRequest struct {
	CertificateID string          `json:"certificate_id,omitempty"`
	Envelope      json.RawMessage `json:"envelope,omitempty"`
}

// createExecution verifies and consumes the certificate, answers 202 with
// the execution, and runs it in the background.
func (s *Server) createExecution(c echo.Context) error {
	var req executionRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if (req.CertificateID == "") == (len(req.Envelope) == 0) {
		return broker.Errorf(broker.EINVALID, "name the certificate by certificate_id, or send its envelope")
	}
	// A token limited to some workspaces executes only theirs: checked
	// before the certificate is consumed.
	if p := principal(c); len(p.Workspaces) > 0 {
		ws, err := s.certificateWorkspace(c, req.CertificateID, req.Envelope)
		if err != nil {
			return err
		}
		if ws != "" && !p.Allows(ws) {
			return broker.Errorf(broker.EFORBIDDEN, "token %s may not act on workspace %s (it is limited to %s)", p.Name, ws, strings.Join(p.Workspaces, ", "))
		}
	}
	// Consuming the certificate and queueing the execution must not be
	// cut short by a client that goes away.
	e, _, err := s.opts.Broker.Begin(context.WithoutCancel(c.Request().Context()), broker.ExecuteRequest{
		Envelope: req.Envelope, CertificateID: req.CertificateID, Actor: principalName(c),
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, executionJSONOf(e))
}

type executionJSON struct {
	ID            string                `json:"id"`
	CertificateID string                `json:"certificate_id"`
	Workspace     string                `json:"workspace"`
	State         broker.ExecutionState `json:"state"`
	Final         bool                  `json:"final"`
	Reason        string                `json:"reason,omitempty"`
	Decision      json.RawMessage       `json:"decision,omitempty"`
	PlanLogID     string                `json:"plan_log_id,omitempty"`
	ApplyLogID    string                `json:"apply_log_id,omitempty"`
	// PlanJSONID names the signed JSON of the live plan the decision was
	// made on, once there was one; every id here is served as a DSSE
	// envelope at /api/v1/artifacts/{id}.
	PlanJSONID string    `json:"plan_json_id,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func executionJSONOf(e *broker.Execution) executionJSON {
	return executionJSON{ID: e.ID, CertificateID: e.CertificateID, Workspace: e.Workspace, State: e.State, Final: e.State.Final(),
		Reason: e.Reason, Decision: e.Divergence, PlanLogID: e.PlanLogID, ApplyLogID: e.ApplyLogID, StartedAt: e.StartedAt, UpdatedAt: e.UpdatedAt}
}

func (s *Server) getExecution(c echo.Context) error {
	ctx := c.Request().Context()
	e, err := s.opts.Records.Execution(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	out := executionJSONOf(e)
	switch _, err := s.opts.Records.Artifact(ctx, broker.PlanJSONArtifact(e.ID)); broker.ErrorCode(err) {
	case "":
		out.PlanJSONID = broker.PlanJSONArtifact(e.ID)
	case broker.ENOTFOUND:
	default:
		return err
	}
	return c.JSON(http.StatusOK, out)
}

type tokenJSON struct {
	Name string      `json:"name"`
	Role broker.Role `json:"role"`
	// Workspaces limit the token; absent: all.
	Workspaces []string `json:"workspaces,omitempty"`
	// Groups are its holder's groups; absent: none.
	Groups    []string  `json:"groups,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Token is the secret, in the answer that created it only.
	Token string `json:"token,omitempty"`
}

func (s *Server) listTokens(c echo.Context) error {
	tokens, err := s.opts.Broker.APITokens(c.Request().Context())
	if err != nil {
		return err
	}
	out := []tokenJSON{}
	for _, t := range tokens {
		out = append(out, tokenJSON{Name: t.Name, Role: t.Role, Workspaces: t.Workspaces, Groups: t.Groups, CreatedAt: t.CreatedAt})
	}
	return c.JSON(http.StatusOK, map[string]any{"items": out})
}

func (s *Server) createToken(c echo.Context) error {
	var req tokenRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	token, t, err := s.opts.Broker.CreateAPIToken(context.WithoutCancel(c.Request().Context()), req.Name, req.Role,
		broker.TokenScope{Workspaces: req.Workspaces, Groups: req.Groups}, principalName(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, tokenJSON{Name: t.Name, Role: t.Role, Workspaces: t.Workspaces, Groups: t.Groups, CreatedAt: t.CreatedAt, Token: token})
}

func (s *Server) revokeToken(c echo.Context) error {
	if err := s.opts.Broker.RevokeAPIToken(context.WithoutCancel(c.Request().Context()), c.Param("name"), principalName(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// getArtifact serves a signed artifact as its DSSE envelope.
func (s *Server) getArtifact(c echo.Context) error {
	a, err := s.opts.Records.Artifact(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	env, err := a.Envelope()
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Disposition", `attachment; filename="`+a.ID+`.dsse.json"`)
	return c.Blob(http.StatusOK, "application/vnd.dsse.envelope.v1+json", env)
}

// getExecutionLogs returns the execution's plan and apply logs as JSON
// lines, each line one message of Terraform's JSON UI: the signed logs of
// a finished execution, or — with follow=true, while it runs — the live log
// streamed as Terraform writes it, until the execution ends.
func (s *Server) getExecutionLogs(c echo.Context) error {
	e, err := s.opts.Records.Execution(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/x-ndjson")
	if !e.State.Final() {
		// Running: follow streams the chunks the runner sends; otherwise
		// the signed logs are served once it has ended.
		if e, err = s.followLog(c, e, c.QueryParam("follow") == "true"); err != nil || e == nil {
			return err
		}
	}
	c.Response().WriteHeader(http.StatusOK)
	for _, id := range []string{e.PlanLogID, e.ApplyLogID} {
		if id == "" {
			continue
		}
		a, err := s.opts.Records.Artifact(c.Request().Context(), id)
		if err != nil {
			return err
		}
		c.Response().Write(a.Data)
	}
	return nil
}

// followLog waits until a running execution ends and returns it; with
// stream, it writes the log as the runner sends it meanwhile, and returns
// nil once it has written all of it. Chunks are read from the store, so
// any replica can serve them.
func (s *Server) followLog(c echo.Context, e *broker.Execution, stream bool) (*broker.Execution, error) {
	ctx := c.Request().Context()
	job := "job-" + e.ID
	sent := 0
	if stream {
		c.Response().WriteHeader(http.StatusOK)
	}
	for {
		current, err := s.opts.Records.Execution(ctx, e.ID)
		if err != nil {
			return nil, err
		}
		if stream {
			var log []byte
			for _, phase := range []string{"plan", "apply"} {
				chunk, err := s.opts.Records.JobLog(ctx, job, phase)
				if err != nil {
					return nil, err
				}
				log = append(log, chunk...)
			}
			if len(log) > sent {
				c.Response().Write(log[sent:])
				c.Response().Flush()
				sent = len(log)
			}
			if current.State.Final() {
				return nil, nil
			}
		} else if current.State.Final() {
			return current, nil
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return nil, nil
		}
	}
}

func (s *Server) listAudit(c echo.Context) error {
	after, _ := strconv.ParseInt(c.QueryParam("after"), 10, 64)
	limit, _ := strconv.Atoi(c.QueryParam("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	entries, err := s.opts.Records.AuditEntries(c.Request().Context(), after, limit)
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []*broker.AuditEntry{}
	}
	return c.JSON(http.StatusOK, auditPageJSON{Items: entries, NextAfter: nextAfter(entries, after)})
}

// auditPages walks the whole audit log in order.
func (s *Server) auditPages(ctx context.Context) func() (*broker.AuditEntry, error) {
	var (
		page  []*broker.AuditEntry
		after int64
		err   error
	)
	return func() (*broker.AuditEntry, error) {
		if len(page) == 0 {
			if page, err = s.opts.Records.AuditEntries(ctx, after, 1000); err != nil {
				return nil, err
			}
			if len(page) == 0 {
				return nil, io.EOF
			}
		}
		e := page[0]
		page, after = page[1:], e.Seq
		return e, nil
	}
}

func (s *Server) exportAudit(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderContentType, "application/x-ndjson")
	c.Response().WriteHeader(http.StatusOK)
	next := s.auditPages(c.Request().Context())
	for {
		e, err := next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := broker.WriteAuditJSONL(c.Response(), []*broker.AuditEntry{e}); err != nil {
			return nil
		}
	}
}

// verifyAudit checks the chain and every signature with the public key,
// as `seb audit verify` does offline, and says where it breaks if it does.
func (s *Server) verifyAudit(c echo.Context) error {
	keys, err := broker.ParsePublicKeysPEM(s.opts.Broker.PublicKey())
	if err != nil {
		return err
	}
	var head string
	next := s.auditPages(c.Request().Context())
	count, err := broker.VerifyAudit(func() (*broker.AuditEntry, error) {
		e, err := next()
		if e != nil {
			head = e.Hash
		}
		return e, err
	}, keys...)
	var brk *broker.AuditBreak
	if errors.As(err, &brk) {
		return c.JSON(http.StatusOK, auditVerifyJSON{Verified: false, Entries: count, BrokenAt: brk.Seq, Reason: brk.Error()})
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, auditVerifyJSON{Verified: true, Entries: count, Head: head, KeyID: broker.PublicKeyID(keys[0])})
}

func nextAfter(entries []*broker.AuditEntry, after int64) string {
	if len(entries) == 0 {
		return fmt.Sprint(after)
	}
	return fmt.Sprint(entries[len(entries)-1].Seq)
}

// RouteInfo describes one API route: its method, its path under /api/v1
// and the roles allowed to use it.
type RouteInfo struct {
	Method, Path, Summary string
	Roles                 []broker.Role
}

// Routes lists the API's routes and their roles.
func Routes() []RouteInfo {
	var s *Server
	var out []RouteInfo
	for _, r := range s.allRoutes() {
		out = append(out, RouteInfo{Method: r.method, Path: r.path, Summary: r.summary, Roles: r.roles})
	}
	return out
}

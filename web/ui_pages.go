package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/planparse"
)

// The UI's pages beyond the queue and the proposal: certificates,
// executions, workspaces and the audit log.

func (s *Server) certificatePage(c echo.Context) error {
	ctx := c.Request().Context()
	cert, err := s.opts.Records.Certificate(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	ws, err := s.opts.Broker.Workspace(cert.Workspace)
	if err != nil {
		return err
	}
	epoch, err := s.opts.Records.RevocationEpoch(ctx, cert.Workspace)
	if err != nil {
		return err
	}
	policy, err := s.opts.Records.PolicyEpoch(ctx)
	if err != nil {
		return err
	}
	status, err := s.certificateStatus(ctx, cert)
	if err != nil {
		return err
	}
	var resources []resourceView
	if cert.Summary != nil {
		resources = resourceViews(cert.Summary.Resources, ws.ProtectedActions)
	}
	executions, err := s.opts.Records.ListExecutions(ctx, broker.ExecutionFilter{CertificateID: cert.ID, Limit: 20})
	if err != nil {
		return err
	}
	sess := currentSession(c)
	return s.render(c, http.StatusOK, "certificate", "Certificate "+cert.ID, map[string]any{
		"Cert": cert, "Status": status, "Valid": status == "valid", "RevocationEpoch": epoch, "PolicyEpoch": policy,
		"Resources": resources, "Executions": executions, "CanRevoke": sess.token.Role == broker.RoleAdmin && status == "valid",
	})
}

// certificateStatus says in a few words whether a certificate can still be
// executed, by the broker's own check.
func (s *Server) certificateStatus(ctx context.Context, cert *broker.Certificate) (string, error) {
	if cert.ConsumedBy != "" {
		return "used by execution " + cert.ConsumedBy, nil
	}
	err := s.opts.Broker.Standing(ctx, cert)
	var be *broker.Error
	switch {
	case err == nil:
		return "valid", nil
	case errors.As(err, &be) && be.Code == broker.EINVALID:
		return "not executable: " + be.Message, nil
	}
	return "", err
}

func (s *Server) revokeForm(c echo.Context) error {
	if currentSession(c).token.Role != broker.RoleAdmin {
		return broker.Errorf(broker.EFORBIDDEN, "only admins revoke certificates")
	}
	id := c.Param("id")
	if err := s.opts.Broker.Revoke(context.WithoutCancel(c.Request().Context()), id, principalName(c)); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/certificates/"+url.PathEscape(id)+"?flash=revoked")
}

// executionSteps are the states an execution passes through, in order.
var executionSteps = []broker.ExecutionState{broker.ExecutionQueued, broker.ExecutionVerifying, broker.ExecutionPlanning,
	broker.ExecutionComparing, broker.ExecutionApplying}

// step is one state of the execution timeline.
type step struct {
	State      broker.ExecutionState
	Done, Here bool
}

// divergenceRow is one line of the side-by-side divergence: what was
// certified against what the live plan would do now.
type divergenceRow struct {
	Address, What   string
	Certified, Live string
	OnlyCertified   bool
	OnlyLive        bool
	CertifiedSymbol string
	LiveSymbol      string
}

func changeText(c *planparse.AttributeChange) (symbol, text string) {
	if c == nil {
		return "", "(no change)"
	}
	symbol = c.Symbol()
	switch symbol {
	case "+":
		return symbol, planparse.FormatValue(c.After)
	case "-":
		return symbol, planparse.FormatValue(c.Before) + " → null"
	}
	return symbol, planparse.FormatValue(c.Before) + " → " + planparse.FormatValue(c.After)
}

func divergenceRows(d *planparse.Divergence) []divergenceRow {
	if d == nil {
		return nil
	}
	var rows []divergenceRow
	for i := range d.OnlyCertified {
		r := &d.OnlyCertified[i]
		rows = append(rows, divergenceRow{Address: r.Address, What: "resource", Certified: r.Headline(), Live: "(not in the live plan)", OnlyCertified: true})
	}
	for i := range d.OnlyLive {
		r := &d.OnlyLive[i]
		rows = append(rows, divergenceRow{Address: r.Address, What: "resource", Certified: "(not certified)", Live: r.Headline(), OnlyLive: true})
	}
	for _, r := range d.Resources {
		for _, f := range r.Fields {
			rows = append(rows, divergenceRow{Address: r.Address, What: f.Field, Certified: planparse.FormatValue(f.Certified), Live: planparse.FormatValue(f.Live)})
		}
		for _, a := range r.Attributes {
			row := divergenceRow{Address: r.Address, What: a.Path.String()}
			row.CertifiedSymbol, row.Certified = changeText(a.Certified)
			row.LiveSymbol, row.Live = changeText(a.Live)
			rows = append(rows, row)
		}
	}
	for _, o := range d.Outputs {
		row := divergenceRow{Address: "output." + o.Name, What: "value", Certified: "(no change)", Live: "(no change)"}
		if o.Certified != nil {
			row.Certified = planparse.FormatValue(o.Certified.Before) + " → " + planparse.FormatValue(o.Certified.After)
		}
		if o.Live != nil {
			row.Live = planparse.FormatValue(o.Live.Before) + " → " + planparse.FormatValue(o.Live.After)
		}
		rows = append(rows, row)
	}
	return rows
}

// logLine is one message of Terraform's JSON log.
type logLine struct {
	Level   string `json:"@level"`
	Message string `json:"@message"`
}

// logMessages reads the messages of a signed log artifact.
func logMessages(data []byte) []logLine {
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message != "" {
			out = append(out, l)
		}
	}
	return out
}

func (s *Server) executionPage(c echo.Context) error {
	ctx := c.Request().Context()
	e, err := s.opts.Records.Execution(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	final := isFinal(e.State)
	// A final execution passed the steps before its end: all of them when
	// it succeeded, up to the comparison when it was refused (nothing was
	// applied), and an unknown number when it failed.
	reached := slices.Index(executionSteps, e.State)
	switch e.State {
	case broker.ExecutionSucceeded:
		reached = len(executionSteps)
	case broker.ExecutionRefused:
		reached = slices.Index(executionSteps, broker.ExecutionApplying)
	case broker.ExecutionFailed, broker.ExecutionInterrupted:
		reached = 0
	}
	var steps []step
	for i, st := range executionSteps {
		steps = append(steps, step{State: st, Done: i < reached, Here: !final && i == reached})
	}
	var decision *drift.Decision
	if len(e.Divergence) > 0 {
		decision = &drift.Decision{}
		if err := json.Unmarshal(e.Divergence, decision); err != nil {
			return err
		}
	}
	var rows []divergenceRow
	var driftChanges []resourceView
	if decision != nil {
		rows = divergenceRows(decision.Divergence)
		driftChanges = driftViews(decision.Drift)
	}
	var logs []logLine
	if final {
		for _, id := range []string{e.PlanLogID, e.ApplyLogID} {
			if id == "" {
				continue
			}
			a, err := s.opts.Records.Artifact(ctx, id)
			if err != nil {
				return err
			}
			logs = append(logs, logMessages(a.Data)...)
		}
	}
	// The signed evidence, each a DSSE envelope seb verify checks.
	type evidence struct{ What, ID string }
	var signed []evidence
	for _, ev := range []evidence{{"plan log", e.PlanLogID}, {"apply log", e.ApplyLogID}, {"live plan (JSON)", broker.PlanJSONArtifact(e.ID)}} {
		if ev.ID == "" {
			continue
		}
		if _, err := s.opts.Records.Artifact(ctx, ev.ID); broker.ErrorCode(err) == broker.ENOTFOUND {
			continue
		} else if err != nil {
			return err
		}
		signed = append(signed, ev)
	}
	var proposalID string
	if cert, err := s.opts.Records.Certificate(ctx, e.CertificateID); err == nil {
		proposalID = cert.ProposalID
	} else if broker.ErrorCode(err) != broker.ENOTFOUND {
		return err
	}
	return s.render(c, http.StatusOK, "execution", "Execution "+e.ID, map[string]any{
		"ProposalID": proposalID, "E": e, "Final": final, "Steps": steps, "Decision": decision, "Rows": rows, "Drift": driftChanges, "Logs": logs, "Signed": signed,
	})
}

func isFinal(st broker.ExecutionState) bool {
	switch st {
	case broker.ExecutionSucceeded, broker.ExecutionRefused, broker.ExecutionFailed, broker.ExecutionInterrupted:
		return true
	}
	return false
}

func (s *Server) workspacePage(c echo.Context) error {
	ctx := c.Request().Context()
	ws, err := s.opts.Broker.Workspace(c.Param("workspace"))
	if err != nil {
		return err
	}
	j, err := s.workspaceJSON(ctx, ws)
	if err != nil {
		return err
	}
	proposals, err := s.opts.Records.ListProposals(ctx, broker.ProposalFilter{Workspace: ws.Name, Limit: 20})
	var rows []queueRow
	for _, p := range proposals {
		fate, ferr := s.certificateFate(ctx, p)
		if ferr != nil {
			return ferr
		}
		rows = append(rows, queueRow{Proposal: p, Fate: fate})
	}
	if err != nil {
		return err
	}
	executions, err := s.opts.Records.ListExecutions(ctx, broker.ExecutionFilter{Workspace: ws.Name, Limit: 20})
	if err != nil {
		return err
	}
	policy, err := s.opts.Records.PolicyEpoch(ctx)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "workspace", "Workspace "+ws.Name, map[string]any{
		"W": j, "PolicyEpoch": policy, "Proposals": rows, "Executions": executions,
		"CanRevoke": currentSession(c).token.Role == broker.RoleAdmin,
	})
}

func (s *Server) revokeAllForm(c echo.Context) error {
	if currentSession(c).token.Role != broker.RoleAdmin {
		return broker.Errorf(broker.EFORBIDDEN, "only admins revoke certificates")
	}
	name := c.Param("workspace")
	if _, err := s.opts.Broker.RevokeAll(context.WithoutCancel(c.Request().Context()), name, principalName(c)); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/workspaces/"+url.PathEscape(name)+"?flash=revoked-all")
}

// tokensPage lists the API tokens for an admin, with a form to make one
// and a button to revoke each; made is the token just made, shown once.
func (s *Server) tokensPage(c echo.Context) error {
	return s.renderTokens(c, http.StatusOK, nil)
}

func (s *Server) renderTokens(c echo.Context, status int, made *tokenJSON) error {
	if currentSession(c).token.Role != broker.RoleAdmin {
		return broker.Errorf(broker.EFORBIDDEN, "only admins manage API tokens")
	}
	tokens, err := s.opts.Broker.APITokens(c.Request().Context())
	if err != nil {
		return err
	}
	var workspaces []string
	for _, w := range s.opts.Broker.Workspaces() {
		workspaces = append(workspaces, w.Name)
	}
	return s.render(c, status, "tokens", "API tokens", map[string]any{
		"Tokens": tokens, "Made": made, "Workspaces": workspaces,
		"Roles": []broker.Role{broker.RoleAgent, broker.RoleReviewer, broker.RoleCI, broker.RoleAdmin, broker.RoleRunner},
	})
}

// makeTokenForm makes a token and shows it, once, on the answer page
// itself: never in a URL or a redirect.
func (s *Server) makeTokenForm(c echo.Context) error {
	if currentSession(c).token.Role != broker.RoleAdmin {
		return broker.Errorf(broker.EFORBIDDEN, "only admins manage API tokens")
	}
	form, err := c.FormParams()
	if err != nil {
		return broker.Errorf(broker.EINVALID, "the form: %v", err)
	}
	token, t, err := s.opts.Broker.CreateAPIToken(context.WithoutCancel(c.Request().Context()),
		strings.TrimSpace(form.Get("name")), broker.Role(form.Get("role")),
		broker.TokenScope{Workspaces: form["workspace"], Groups: strings.Fields(strings.ReplaceAll(form.Get("groups"), ",", " "))}, principalName(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return s.renderTokens(c, http.StatusCreated, &tokenJSON{Name: t.Name, Role: t.Role, Workspaces: t.Workspaces, Groups: t.Groups, Token: token})
}

func (s *Server) revokeTokenForm(c echo.Context) error {
	if currentSession(c).token.Role != broker.RoleAdmin {
		return broker.Errorf(broker.EFORBIDDEN, "only admins manage API tokens")
	}
	if err := s.opts.Broker.RevokeAPIToken(context.WithoutCancel(c.Request().Context()), c.Param("name"), principalName(c)); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/tokens?flash=token-revoked")
}

// auditPageSize is how many entries the audit page shows at once.
const auditPageSize = 50

func (s *Server) auditPage(c echo.Context) error {
	ctx := c.Request().Context()
	var after int64
	if v := c.QueryParam("after"); v != "" {
		var err error
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return broker.Errorf(broker.EINVALID, "after %q is not an entry number", v)
		}
	}
	entries, err := s.opts.Records.AuditEntries(ctx, after, auditPageSize+1)
	if err != nil {
		return err
	}
	more := len(entries) > auditPageSize
	if more {
		entries = entries[:auditPageSize]
	}
	check, err := s.audited.get(ctx, s)
	if err != nil {
		return err
	}
	next := int64(0)
	if more {
		next = entries[len(entries)-1].Seq
	}
	return s.render(c, http.StatusOK, "audit", "Audit log", map[string]any{
		"Entries": entries, "Next": next, "After": after, "Check": check,
	})
}

// auditCheck is the last verification of the whole audit chain. The audit
// page shows it rather than verifying every signature on every view: at
// most one verification runs at a time, and a result serves for a minute.
type auditCheck struct {
	mu     sync.Mutex
	last   auditResult
	loaded bool
}

type auditResult struct {
	At       time.Time
	Count    int64
	Verified bool
	Reason   string
	KeyID    string
}

func (a *auditCheck) get(ctx context.Context, s *Server) (auditResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.loaded && time.Since(a.last.At) < time.Minute {
		return a.last, nil
	}
	keys, err := broker.ParsePublicKeysPEM(s.opts.Broker.PublicKey())
	if err != nil {
		return auditResult{}, err
	}
	r := auditResult{At: time.Now(), Verified: true, KeyID: broker.PublicKeyID(keys[0])}
	var verr error
	r.Count, verr = broker.VerifyAudit(s.auditPages(ctx), keys...)
	var brk *broker.AuditBreak
	switch {
	case errors.As(verr, &brk):
		r.Verified, r.Reason = false, brk.Error()
	case verr != nil:
		return auditResult{}, verr
	}
	a.last, a.loaded = r, true
	return r, nil
}

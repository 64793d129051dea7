package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/planparse"
)

// The reviewer UI: server-rendered pages under /, signed in with an API
// token exchanged for a session cookie. Only reviewers and admins sign in;
// only reviewers approve, as in the API.

//go:embed ui/templates/*.html
var templateFS embed.FS

//go:embed ui/static
var staticFS embed.FS

const (
	sessionCookie   = "seb_session"
	sessionLifetime = 8 * time.Hour
	csrfField       = "csrf"
)

// uiRoles may sign in to the UI.
var uiRoles = []broker.Role{broker.RoleReviewer, broker.RoleAdmin}

// A session is one signed-in browser.
type session struct {
	token   *broker.APIToken
	csrf    string
	expires time.Time
}

// sessions live in the store, so that any replica serves a browser
// signed in on another; the store keeps only each id's SHA-256.
type sessions struct{ records Records }

// sessionHash is what the store keeps of a session's id.
func sessionHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func (ss sessions) create(ctx context.Context, tok *broker.APIToken, now time.Time) (string, *session, error) {
	id := randomHex(32)
	s := &session{token: tok, csrf: randomHex(32), expires: now.Add(sessionLifetime)}
	err := ss.records.CreateSession(ctx, &broker.Session{IDHash: sessionHash(id), TokenHash: tok.Hash, CSRF: s.csrf, Expires: s.expires}, now)
	if err != nil {
		return "", nil, err
	}
	return id, s, nil
}

// get returns the session of id with its token read again now, so that a
// token deleted or given another role ends its sessions; nil when there is
// none, it expired, or its token may no longer sign in.
func (ss sessions) get(ctx context.Context, id string, now time.Time) (*session, error) {
	stored, err := ss.records.Session(ctx, sessionHash(id), now)
	if broker.ErrorCode(err) == broker.ENOTFOUND {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tok, err := ss.records.APITokenByHash(ctx, stored.TokenHash)
	switch {
	case broker.ErrorCode(err) == broker.ENOTFOUND || err == nil && !slices.Contains(uiRoles, tok.Role):
		return nil, ss.end(ctx, id)
	case err != nil:
		return nil, err
	}
	return &session{token: tok, csrf: stored.CSRF, expires: stored.Expires}, nil
}

func (ss sessions) end(ctx context.Context, id string) error {
	return ss.records.DeleteSession(ctx, sessionHash(id))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

const sessionKey = "seb.session"

func currentSession(c echo.Context) *session {
	s, _ := c.Get(sessionKey).(*session)
	return s
}

// pages parses the templates once; each page is the layout plus its own
// template.
type pages map[string]*template.Template

func parsePages() (pages, error) {
	funcs := template.FuncMap{
		"value":       planparse.FormatValue,
		"ago":         ago,
		"when":        func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"iso":         func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"lower":       strings.ToLower,
		"symbolClass": symbolClass,
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "ui/templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "ui/templates/*.html")
	if err != nil {
		return nil, err
	}
	p := pages{}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "ui/templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, name)
		if err != nil {
			return nil, err
		}
		p[base] = t
	}
	return p, nil
}

// symbolClass names the CSS class of a change marker.
func symbolClass(symbol string) string {
	switch symbol {
	case "+":
		return "add"
	case "-":
		return "del"
	case "~":
		return "chg"
	case "-/+", "+/-":
		return "rep"
	}
	return "other"
}

// ago says how long ago t was, coarsely; the page also carries the exact
// time.
func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	}
	return plural(int(d/(24*time.Hour)), "day") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// securityHeaders applies to every UI response: no framing, no inline
// script, nothing from elsewhere.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer browsers send
		// "Origin: null" on form posts, which checkForm must refuse.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// uiRoutes mounts the UI.
func (s *Server) uiRoutes() {
	e := s.echo
	static, _ := fs.Sub(staticFS, "ui/static")
	e.GET("/static/*", echo.WrapHandler(http.StripPrefix("/static/", http.FileServer(http.FS(static)))), securityHeaders)
	// Middleware per route, not per group: a group's middleware makes echo
	// route every unknown path through it.
	open := []echo.MiddlewareFunc{securityHeaders, middleware.BodyLimit("64K"), s.loadSession, s.checkForm}
	signed := append(slices.Clone(open), s.requireSession, s.scoped)
	e.GET("/signin", s.signinPage, open...)
	e.POST("/signin", s.signin, open...)
	e.POST("/signout", s.signout, open...)
	for _, r := range []struct {
		method, path string
		handler      echo.HandlerFunc
	}{
		{http.MethodGet, "/", s.queuePage},
		{http.MethodGet, "/proposals/:id", s.proposalPage},
		{http.MethodPost, "/proposals/:id/review", s.reviewForm},
		{http.MethodGet, "/certificates/:id", s.certificatePage},
		{http.MethodPost, "/certificates/:id/revoke", s.revokeForm},
		{http.MethodGet, "/executions/:id", s.executionPage},
		{http.MethodGet, "/executions/:id/log", s.getExecutionLogs},
		{http.MethodGet, "/artifacts/:id", s.getArtifact},
		{http.MethodGet, "/workspaces/:workspace", s.workspacePage},
		{http.MethodPost, "/workspaces/:workspace/revoke-all", s.revokeAllForm},
		{http.MethodGet, "/audit", s.auditPage},
		{http.MethodGet, "/tokens", s.tokensPage},
		{http.MethodPost, "/tokens", s.makeTokenForm},
		{http.MethodPost, "/tokens/:name/revoke", s.revokeTokenForm},
	} {
		e.Add(r.method, r.path, r.handler, signed...)
	}
}

const uiKey = "seb.ui"

// loadSession finds the browser's session, if any, and marks the request
// as the UI's, so that errors are answered with a page.
func (s *Server) loadSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Set(uiKey, true)
		if ck, err := c.Cookie(sessionCookie); err == nil {
			sess, err := s.ui.get(c.Request().Context(), ck.Value, time.Now())
			if err != nil {
				return err
			}
			if sess != nil {
				c.Set(sessionKey, sess)
				c.Set(principalKey, sess.token)
			}
		}
		return next(c)
	}
}

// requireSession sends a browser without a session to the sign-in page.
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if currentSession(c) == nil {
			next := "/"
			if c.Request().Method == http.MethodGet {
				next = c.Request().URL.RequestURI()
			}
			return c.Redirect(http.StatusSeeOther, "/signin?next="+url.QueryEscape(next))
		}
		return next(c)
	}
}

// checkForm guards every form post: it must come from seb's own pages
// (Origin, when the browser sends it) and, once signed in, carry the
// session's CSRF token.
func (s *Server) checkForm(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.Method != http.MethodPost {
			return next(c)
		}
		if origin := req.Header.Get("Origin"); origin != "" {
			u, err := url.Parse(origin)
			if err != nil || u.Host != req.Host {
				return broker.Errorf(broker.EFORBIDDEN, "a form from another site is refused")
			}
		}
		if site := req.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
			return broker.Errorf(broker.EFORBIDDEN, "a form from another site is refused")
		}
		// Signing in needs no session token: a browser may still hold a
		// session (a SameSite=Strict cookie is not sent when arriving from
		// a link elsewhere, but is on the form post). The origin checks
		// above still apply.
		if sess := currentSession(c); sess != nil && c.Path() != "/signin" {
			got := req.PostFormValue(csrfField)
			if subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) != 1 {
				return broker.Errorf(broker.EFORBIDDEN, "the form has expired or did not come from seb: reload the page and try again")
			}
		}
		return next(c)
	}
}

// flashes are the messages a redirect can ask the next page to show: by
// code, so that a link cannot put its own words in seb's mouth.
var flashes = map[string]string{
	"signed-out":    "Signed out.",
	"approved":      "Approved.",
	"certified":     "Approved: the final approval issued the certificate below.",
	"rejected":      "Rejected.",
	"revoked":       "Certificate revoked.",
	"revoked-all":   "Every certificate of this workspace is revoked: its revocation epoch went up.",
	"token-revoked": "Token revoked: it is refused from its next request, and its sessions are ended.",
}

// view is what every page template gets.
type view struct {
	Title   string
	Who     string
	Role    broker.Role
	CSRF    string
	Flash   string
	Content any
	// Workspaces names the workspaces, for the navigation.
	Workspaces []string
}

func (s *Server) render(c echo.Context, status int, page, title string, content any) error {
	v := view{Title: title, Content: content, Flash: flashes[c.QueryParam("flash")]}
	if sess := currentSession(c); sess != nil {
		v.Who, v.Role, v.CSRF = sess.token.Name, sess.token.Role, sess.csrf
		for _, w := range s.opts.Broker.Workspaces() {
			if sess.token.Allows(w.Name) {
				v.Workspaces = append(v.Workspaces, w.Name)
			}
		}
	}
	t := s.pages[page]
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout.html", v); err != nil {
		return err
	}
	return c.HTML(status, b.String())
}

func (s *Server) signinPage(c echo.Context) error {
	return s.render(c, http.StatusOK, "signin", "Sign in", map[string]string{"Next": safeNext(c.QueryParam("next"))})
}

// safeNext keeps a post-sign-in redirect on seb's own pages: a path with
// no scheme, no host, no backslash and no control character (browsers
// drop tabs and newlines, so "/\t/evil.example" would leave the site).
func safeNext(next string) string {
	if strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return "/"
	}
	return next
}

// signin exchanges a reviewer's or admin's API token for a session.
func (s *Server) signin(c echo.Context) error {
	raw := strings.TrimSpace(c.FormValue("token"))
	next := safeNext(c.FormValue("next"))
	fail := func(msg string) error {
		return s.render(c, http.StatusUnauthorized, "signin", "Sign in", map[string]string{"Next": next, "Error": msg})
	}
	if raw == "" {
		return fail("Paste your API token to sign in.")
	}
	tok, err := s.opts.Records.APITokenByHash(c.Request().Context(), broker.HashAPIToken(raw))
	if broker.ErrorCode(err) == broker.ENOTFOUND {
		return fail("That token is not known to seb.")
	}
	if err != nil {
		return err
	}
	if !slices.Contains(uiRoles, tok.Role) {
		return s.render(c, http.StatusForbidden, "signin", "Sign in", map[string]string{"Next": next,
			"Error": "Token " + tok.Name + " has the role " + string(tok.Role) + "; only reviewers and admins sign in here."})
	}
	if old, err := c.Cookie(sessionCookie); err == nil {
		if err := s.ui.end(c.Request().Context(), old.Value); err != nil {
			return err
		}
	}
	id, sess, err := s.ui.create(c.Request().Context(), tok, time.Now())
	if err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: id, Path: "/", Expires: sess.expires, MaxAge: int(sessionLifetime.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(c.Request())})
	s.opts.Logger.Info("signed in", "principal", tok.Name, "role", tok.Role)
	return c.Redirect(http.StatusSeeOther, next)
}

// secure reports whether the browser reached seb over TLS: directly, or
// through a proxy that terminates TLS and says so in X-Forwarded-Proto.
// (A client forging the header only makes its own cookie Secure.)
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (s *Server) signout(c echo.Context) error {
	if ck, err := c.Cookie(sessionCookie); err == nil {
		if err := s.ui.end(c.Request().Context(), ck.Value); err != nil {
			return err
		}
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secure(c.Request())})
	return c.Redirect(http.StatusSeeOther, "/signin?flash=signed-out")
}

// queueRow is one proposal in the queue.
type queueRow struct {
	*broker.Proposal
	Counts planparse.Counts
	// Fate is what became of a certified proposal's certificate.
	Fate string
}

var queueStates = []broker.ProposalState{broker.ProposalPending, broker.ProposalVerifying, broker.ProposalDiverged,
	broker.ProposalCertified, broker.ProposalRejected, broker.ProposalRefused}

func (s *Server) queuePage(c echo.Context) error {
	state := broker.ProposalState(c.QueryParam("state"))
	switch {
	case state == "":
		state = broker.ProposalPending
	case state == "all":
		state = ""
	case !slices.Contains(queueStates, state):
		return broker.Errorf(broker.EINVALID, "state %q is not one of pending, verifying, diverged, certified, rejected, refused, all", state)
	}
	workspace := c.QueryParam("workspace")
	// A limited token's queue is of its workspaces: filtered in the query,
	// not after the newest 200 of all.
	list, err := s.opts.Records.ListProposals(c.Request().Context(), broker.ProposalFilter{Workspace: workspace,
		Workspaces: currentSession(c).token.Workspaces, State: state, Limit: 200})
	if err != nil {
		return err
	}
	if workspace != "" {
		if _, err := s.opts.Broker.Workspace(workspace); err != nil {
			return err
		}
		if !allows(c, workspace) {
			return broker.Errorf(broker.EFORBIDDEN, "your token may not act on workspace %s", workspace)
		}
	}
	var rows []queueRow
	for _, p := range list {
		if !allows(c, p.Workspace) {
			continue
		}
		row := queueRow{Proposal: p}
		if p.Summary != nil {
			row.Counts = p.Summary.Count()
		}
		if row.Fate, err = s.certificateFate(c.Request().Context(), p); err != nil {
			return err
		}
		rows = append(rows, row)
	}
	selected := string(state)
	if selected == "" {
		selected = "all"
	}
	return s.render(c, http.StatusOK, "queue", "Queue", map[string]any{
		"Rows": rows, "State": selected, "States": queueStates, "Workspace": workspace, "Workspaces": slices.DeleteFunc(slices.Clone(s.opts.Broker.Workspaces()), func(w broker.Workspace) bool { return !allows(c, w.Name) }),
	})
}

// resourceView is one resource change as the proposal page shows it.
type resourceView struct {
	*planparse.ResourceChange
	Protected bool
	Attrs     []attrView
	// Drift marks a change made outside of Terraform, worded as what
	// happened.
	Drift bool
}

// Title is the view's headline: what will happen, or for drift, what
// happened.
func (v resourceView) Title() string {
	if v.Drift {
		return v.DriftHeadline()
	}
	return v.Headline()
}

// driftViews are views of changes made outside of Terraform.
func driftViews(rs []planparse.ResourceChange) []resourceView {
	views := resourceViews(rs, nil)
	for i := range views {
		views[i].Drift = true
	}
	return views
}

type attrView struct {
	Symbol, Path, Before, After string
	Forces                      bool
}

func resourceViews(rs []planparse.ResourceChange, protected []planparse.Action) []resourceView {
	out := make([]resourceView, len(rs))
	for i := range rs {
		r := &rs[i]
		v := resourceView{ResourceChange: r, Protected: slices.Contains(protected, r.Action) ||
			r.Action == planparse.ActionReplace && slices.Contains(protected, planparse.ActionDelete)}
		v.Attrs = make([]attrView, len(r.Changes))
		for j := range r.Changes {
			ch := &r.Changes[j]
			v.Attrs[j] = attrView{Symbol: ch.Symbol(), Path: ch.Path.String(), Forces: r.ForcesReplacement(ch.Path)}
			if v.Attrs[j].Symbol != "+" {
				v.Attrs[j].Before = planparse.FormatValue(ch.Before)
			}
			if v.Attrs[j].Symbol != "-" {
				v.Attrs[j].After = planparse.FormatValue(ch.After)
			}
		}
		out[i] = v
	}
	return out
}

func (s *Server) proposalPage(c echo.Context) error {
	ctx := c.Request().Context()
	p, err := s.opts.Records.Proposal(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	return s.renderProposal(c, ctx, p, http.StatusOK, "")
}

func (s *Server) renderProposal(c echo.Context, ctx context.Context, p *broker.Proposal, status int, formError string) error {
	ws, err := s.opts.Broker.Workspace(p.Workspace)
	if err != nil {
		return err
	}
	reviews, err := s.opts.Records.Reviews(ctx, p.ID)
	if err != nil {
		return err
	}
	approvals := 0
	for _, r := range reviews {
		if r.Decision == broker.Approve {
			approvals++
		}
	}
	var cert *broker.Certificate
	var certStatus string
	if p.State == broker.ProposalCertified {
		cert, err = s.opts.Records.ProposalCertificate(ctx, p.ID)
		switch {
		case err == nil:
			if certStatus, err = s.certificateStatus(ctx, cert); err != nil {
				return err
			}
		case broker.ErrorCode(err) != broker.ENOTFOUND:
			return err
		}
	}
	var divergence string
	if p.Divergence != nil {
		var b strings.Builder
		// A proposal's divergence is seb's plan against the agent's.
		planparse.RenderDivergence(&b, p.Divergence, planparse.RenderOptions{Sides: [2]string{"seb's plan", "the agent's plan"}})
		divergence = b.String()
	}
	var resources, drifted []resourceView
	var counts planparse.Counts
	var outputs []planparse.OutputChange
	if p.Summary != nil {
		resources = resourceViews(p.Summary.Resources, ws.ProtectedActions)
		counts = p.Summary.Count()
		outputs = p.Summary.Outputs
	}
	drifted = driftViews(p.Drift)
	files, err := s.configFiles(ctx, p.ConfigDigest)
	if err != nil && broker.ErrorCode(err) != broker.ENOTFOUND {
		return err
	}
	sess := currentSession(c)
	canReview := sess != nil && sess.token.Role == broker.RoleReviewer && p.State == broker.ProposalPending &&
		sess.token.Name != p.Proposer && !slices.ContainsFunc(reviews, func(r broker.Review) bool { return r.Reviewer == sess.token.Name })
	var why string
	switch {
	case p.State != broker.ProposalPending:
	case sess == nil || sess.token.Role != broker.RoleReviewer:
		why = "Only reviewers approve or reject."
	case sess.token.Name == p.Proposer:
		why = "You proposed this change; someone else must review it."
	case !canReview:
		why = "You have reviewed this proposal."
	}
	return s.render(c, status, "proposal", "Proposal "+p.ID, map[string]any{
		"P": p, "Workspace": ws, "Reviews": reviews, "Approvals": approvals, "StillNeeded": s.opts.Broker.StillNeeded(p, reviews),
		"Files": files, "Vars": p.Vars, "VarNames": slices.Sorted(maps.Keys(p.Vars)),
		"Cert": cert, "CertStatus": certStatus, "Valid": certStatus == "valid", "HasSummary": p.Summary != nil, "Divergence": divergence, "Resources": resources, "Drift": drifted, "Outputs": outputs, "Counts": counts,
		"CanReview": canReview, "WhyNot": why, "FormError": formError,
	})
}

// reviewForm records an approval or rejection from the proposal page.
func (s *Server) reviewForm(c echo.Context) error {
	ctx := c.Request().Context()
	sess := currentSession(c)
	id := c.Param("id")
	decision := broker.Decision(c.FormValue("decision"))
	if decision != broker.Approve && decision != broker.Reject {
		return broker.Errorf(broker.EINVALID, "decision must be approve or reject")
	}
	if sess.token.Role != broker.RoleReviewer {
		return broker.Errorf(broker.EFORBIDDEN, "only reviewers approve or reject")
	}
	var validity time.Duration
	if v := strings.TrimSpace(c.FormValue("validity")); v != "" {
		var err error
		if validity, err = time.ParseDuration(v); err != nil || validity <= 0 {
			p, perr := s.opts.Records.Proposal(ctx, id)
			if perr != nil {
				return perr
			}
			return s.renderProposal(c, ctx, p, http.StatusBadRequest, "Validity "+v+" is not a duration such as 30m or 2h.")
		}
	}
	_, cert, err := s.opts.Broker.Review(context.WithoutCancel(ctx), broker.ReviewRequest{
		ProposalID: id, Reviewer: sess.token.Name, Decision: decision, Comment: strings.TrimSpace(c.FormValue("comment")), Validity: validity,
		Groups: sess.token.Groups,
	})
	if code := broker.ErrorCode(err); code == broker.EFORBIDDEN || code == broker.ECONFLICT || code == broker.EINVALID {
		p, perr := s.opts.Records.Proposal(ctx, id)
		if perr != nil {
			return perr
		}
		var be *broker.Error
		msg := err.Error()
		if errors.As(err, &be) {
			msg = be.Message
		}
		return s.renderProposal(c, ctx, p, statuses[code], msg)
	}
	if err != nil {
		return err
	}
	flash := "rejected"
	if decision == broker.Approve {
		flash = "approved"
		if cert != nil {
			s.metrics.certificates.Inc()
			flash = "certified"
		}
	}
	return c.Redirect(http.StatusSeeOther, "/proposals/"+url.PathEscape(id)+"?flash="+flash)
}

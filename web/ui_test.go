package web_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

// browser is a cookie-keeping client of the UI that does not follow
// redirects, so tests see each answer.
type browser struct {
	t      testing.TB
	s      *site
	client *http.Client
}

func newBrowser(t testing.TB, s *site) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, s: s, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *browser) get(path string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.s.url+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values, header ...string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.s.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

func (b *browser) signIn(who string) {
	b.t.Helper()
	resp, body := b.post("/signin", url.Values{"token": {b.s.tokens[who]}, "next": {"/"}})
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign in as %s: %d %s", who, resp.StatusCode, body)
	}
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf reads the form token from a page.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	_, body := b.get(path)
	m := csrfInput.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s:\n%s", path, body)
	}
	return m[1]
}

// TestUISignIn: only reviewers and admins sign in, with a session cookie a
// script cannot read and another site cannot send; sign-out ends it.
func TestUISignIn(t *testing.T) {
	s := newSite(t)
	b := newBrowser(t, s)

	resp, _ := b.get("/")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
		t.Fatalf("queue without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := b.get("/signin")
	for header, want := range map[string]string{
		"Content-Security-Policy": "script-src 'self'", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
	} {
		if !strings.Contains(resp.Header.Get(header), want) {
			t.Errorf("%s = %q, want it to hold %q", header, resp.Header.Get(header), want)
		}
	}
	if !strings.Contains(body, `<label for="token">`) || strings.Contains(body, "<script>") {
		t.Errorf("sign-in page:\n%s", body)
	}

	for _, tt := range []struct {
		who, token string
		status     int
		say        string
	}{
		{"agent", s.tokens["agent-1"], http.StatusForbidden, "only reviewers and admins sign in"},
		{"ci", s.tokens["ci"], http.StatusForbidden, "only reviewers and admins sign in"},
		{"unknown", "seb_not-a-token", http.StatusUnauthorized, "not known to seb"},
		{"empty", "", http.StatusUnauthorized, "Paste your API token"},
	} {
		resp, body := b.post("/signin", url.Values{"token": {tt.token}})
		if resp.StatusCode != tt.status || !strings.Contains(body, tt.say) || len(resp.Cookies()) != 0 {
			t.Errorf("sign in with the %s token: %d, cookies %v\n%s", tt.who, resp.StatusCode, resp.Cookies(), body)
		}
	}

	for _, next := range []string{"//evil.example/", "/\t/evil.example", "/\\evil.example", "https://evil.example/", "/\n/evil.example", "proposals"} {
		resp, _ := b.post("/signin", url.Values{"token": {s.tokens["alice"]}, "next": {next}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Errorf("sign in with next %q: %d %s", next, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// Signing in again while signed in (a SameSite=Strict cookie is sent
	// on the form post even when the page came from a link elsewhere).
	resp, _ = b.post("/signin", url.Values{"token": {s.tokens["alice"]}, "next": {"/audit"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/audit" {
		t.Errorf("sign in again: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].MaxAge <= 0 || cookies[0].MaxAge > 24*3600 {
		t.Fatalf("session cookie: %+v", cookies)
	}
	if resp, body := b.get("/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "alice") {
		t.Errorf("queue after sign-in: %d\n%s", resp.StatusCode, body)
	}

	if _, body := b.get("/?flash=Your+session+expired,+re-enter+your+token+at+evil.example"); strings.Contains(body, "evil.example") {
		t.Errorf("a link put its own words in the flash banner")
	}
	for _, path := range []string{"/favicon.ico", "/no/such/page"} {
		if resp, _ := b.get(path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}

	token := b.csrf("/")
	if resp, _ := b.post("/signout", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without the CSRF token: %d", resp.StatusCode)
	}
	// The CSRF token counts only in the form body, never in the URL.
	if resp, _ := b.post("/signout?csrf="+token, url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out with the CSRF token in the URL: %d", resp.StatusCode)
	}
	if resp, _ := b.post("/signout", url.Values{"csrf": {token}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %d", resp.StatusCode)
	}
	// The old cookie, replayed, is dead too.
	req, _ := http.NewRequest("GET", s.url+"/", nil)
	req.AddCookie(cookies[0])
	if resp, _ := newBrowser(t, s).do(req); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the signed-out cookie still works: %d", resp.StatusCode)
	}
	if resp, _ := b.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("queue after sign-out: %d", resp.StatusCode)
	}
}

// TestUIReview: a reviewer sees the queue and the exact diff, approves
// it with the form, and gets the certificate; forged, cross-site and
// wrong-role posts change nothing.
func TestUIReview(t *testing.T) {
	s := newSite(t)
	p := s.propose("3")
	b := newBrowser(t, s)
	b.signIn("alice")

	resp, body := b.get("/")
	if resp.StatusCode != 200 || !strings.Contains(body, `href="/proposals/`+p.ID+`"`) || !strings.Contains(body, "scale web") ||
		!regexp.MustCompile(`class="n add">1<`).MatchString(body) {
		t.Errorf("queue: %d\n%s", resp.StatusCode, body)
	}
	if _, body := b.get("/?state=certified"); strings.Contains(body, p.ID) {
		t.Errorf("the certified filter lists pending %s", p.ID)
	}
	if resp, body := b.get("/?state=bogus"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "is not one of") || !strings.Contains(body, "<html") {
		t.Errorf("queue with a bad filter: %d\n%s", resp.StatusCode, body)
	}

	resp, body = b.get("/proposals/" + p.ID)
	for _, want := range []string{"sandbox_service.web will be created", "replicas = 3", "Approve this exact diff", "0 approval(s); still needed: <strong>1 more approval(s)</strong>", "scale web"} {
		if !strings.Contains(body, want) {
			t.Errorf("proposal page lacks %q:\n%s", want, body)
		}
	}
	token := csrfInput.FindStringSubmatch(body)[1]

	refused := []struct {
		name   string
		form   url.Values
		header []string
	}{
		{"no CSRF token", url.Values{"decision": {"approve"}}, nil},
		{"a wrong CSRF token", url.Values{"decision": {"approve"}, "csrf": {strings.Repeat("0", 64)}}, nil},
		{"another origin", url.Values{"decision": {"approve"}, "csrf": {token}}, []string{"Origin", "https://evil.example"}},
		{"a cross-site fetch", url.Values{"decision": {"approve"}, "csrf": {token}}, []string{"Sec-Fetch-Site", "cross-site"}},
	}
	for _, tt := range refused {
		if resp, body := b.post("/proposals/"+p.ID+"/review", tt.form, tt.header...); resp.StatusCode != http.StatusForbidden {
			t.Errorf("review with %s: %d\n%.300s", tt.name, resp.StatusCode, body)
		}
	}
	admin := newBrowser(t, s)
	admin.signIn("root")
	if _, body := admin.get("/proposals/" + p.ID); strings.Contains(body, "Approve this exact diff") || !strings.Contains(body, "Only reviewers approve") {
		t.Errorf("an admin is offered the review form:\n%s", body)
	}
	if resp, _ := admin.post("/proposals/"+p.ID+"/review", url.Values{"decision": {"approve"}, "csrf": {admin.csrf("/")}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("an admin's approval: %d", resp.StatusCode)
	}
	if resp, body := b.post("/proposals/"+p.ID+"/review", url.Values{"decision": {"approve"}, "csrf": {token}, "validity": {"soon"}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not a duration") {
		t.Errorf("approval with a bad validity: %d\n%.300s", resp.StatusCode, body)
	}
	if stored, err := s.store.Proposal(context.Background(), p.ID); err != nil || stored.State != broker.ProposalPending {
		t.Fatalf("after refused posts: %v %+v", err, stored)
	}

	resp, _ = b.post("/proposals/"+p.ID+"/review", url.Values{"decision": {"approve"}, "csrf": {token}, "comment": {"3 replicas is right"}, "validity": {"30m"}},
		"Origin", s.url, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	_, body = b.get(resp.Header.Get("Location"))
	m := regexp.MustCompile(`certificate <a href="/certificates/(cert-[0-9a-f]+)">`).FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, "the final approval issued the certificate") || !strings.Contains(body, "(valid)") || !strings.Contains(body, "3 replicas is right") || strings.Contains(body, "Approve this exact diff") {
		t.Fatalf("proposal page after approval:\n%s", body)
	}
	cert, err := s.store.Certificate(context.Background(), m[1])
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got > 30*time.Minute {
		t.Errorf("certificate valid for %v, want the 30m asked for", got)
	}
}

// TestUIOwnProposal: a reviewer is never offered, nor allowed, the review
// of a proposal they made.
func TestUIOwnProposal(t *testing.T) {
	s := newSite(t)
	p := s.propose("3")
	stored, err := s.store.Proposal(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	own := *stored
	own.ID, own.Proposer = "prop-alices-own", "alice"
	if err := s.store.CreateProposal(context.Background(), &own); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, s)
	b.signIn("alice")
	_, body := b.get("/proposals/" + own.ID)
	if strings.Contains(body, "Approve this exact diff") || !strings.Contains(body, "someone else must review it") {
		t.Errorf("own proposal page:\n%s", body)
	}
	resp, body := b.post("/proposals/"+own.ID+"/review", url.Values{"decision": {"approve"}, "csrf": {b.csrf("/")}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "own") {
		t.Errorf("approving one's own proposal: %d\n%.400s", resp.StatusCode, body)
	}
	if got, _ := s.store.Proposal(context.Background(), own.ID); got.State != broker.ProposalPending {
		t.Errorf("own proposal is %s", got.State)
	}
}

// TestUIRefusedExecution is the case the UI exists to explain: 3 → 5 was
// certified, someone scaled to 7 by hand, and the execution page shows
// certified 3 → 5 beside live 7 → 5, the drift, and the log.
func TestUIRefusedExecution(t *testing.T) {
	s := newSite(t)
	first := s.execute(s.approve(s.propose("3").ID))
	cert := s.approve(s.propose("5").ID)
	e := s.executeAfterDrift(cert)
	b := newBrowser(t, s)
	b.signIn("alice")
	resp, body := b.get("/executions/" + e.ID)
	row := regexp.MustCompile(`<td><code>sandbox_service.web</code></td><td><code>replicas</code></td>\s*<td class="certified"><code>3 → 5</code></td><td class="live"><code>7 → 5</code></td>`)
	if resp.StatusCode != 200 || !row.MatchString(body) || !strings.Contains(body, `<li class="done">comparing</li><li class="">applying</li>`) ||
		!strings.Contains(body, `aria-current="step">refused`) || !strings.Contains(body, "Nothing was applied") {
		t.Errorf("refused execution page: %d\n%s", resp.StatusCode, body)
	}
	if _, body := b.get("/executions/" + first.ID); !strings.Contains(body, "Apply complete!") || strings.Contains(body, "divergence-table") {
		t.Errorf("succeeded execution page:\n%s", body)
	}
	_, body = b.get("/certificates/" + cert)
	if !strings.Contains(body, "used by execution "+e.ID) || strings.Contains(body, "Revoke this certificate") {
		t.Errorf("used certificate page:\n%s", body)
	}
	if resp, _ := b.get("/executions/exec-nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown execution: %d", resp.StatusCode)
	}
}

// TestUIRevocation: only an admin revokes, from the certificate and the
// workspace pages, and a reviewer's forged post changes nothing.
func TestUIRevocation(t *testing.T) {
	s := newSite(t)
	one := s.approve(s.propose("3").ID)
	two := s.approve(s.propose("4").ID)
	reviewer := newBrowser(t, s)
	reviewer.signIn("alice")
	if _, body := reviewer.get("/certificates/" + one); !strings.Contains(body, ">valid<") || strings.Contains(body, "Revoke this certificate") {
		t.Errorf("certificate page for a reviewer:\n%s", body)
	}
	if resp, _ := reviewer.post("/certificates/"+one+"/revoke", url.Values{"csrf": {reviewer.csrf("/")}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a reviewer's revocation: %d", resp.StatusCode)
	}
	if resp, _ := reviewer.post("/workspaces/sandbox/revoke-all", url.Values{"csrf": {reviewer.csrf("/")}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a reviewer's revoke-all: %d", resp.StatusCode)
	}
	admin := newBrowser(t, s)
	admin.signIn("root")
	if _, body := admin.get("/certificates/" + one); !strings.Contains(body, "Revoke this certificate") {
		t.Errorf("certificate page for an admin:\n%s", body)
	}
	resp, _ := admin.post("/certificates/"+one+"/revoke", url.Values{"csrf": {admin.csrf("/")}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if _, body := admin.get(resp.Header.Get("Location")); !strings.Contains(body, "was revoked by root") || !strings.Contains(body, "Certificate revoked.") {
		t.Errorf("revoked certificate page:\n%s", body)
	}
	resp, _ = admin.post("/workspaces/sandbox/revoke-all", url.Values{"csrf": {admin.csrf("/")}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke-all: %d", resp.StatusCode)
	}
	_, body := admin.get(resp.Header.Get("Location"))
	if !strings.Contains(body, "Every certificate of this workspace is revoked") || !strings.Contains(body, "<dt>Revocation epoch</dt><dd>1</dd>") {
		t.Errorf("workspace page after revoke-all:\n%s", body)
	}
	if _, body := admin.get("/certificates/" + two); !strings.Contains(body, "revoked with every certificate of workspace sandbox") {
		t.Errorf("certificate after revoke-all:\n%s", body)
	}
	if resp, _ := admin.get("/workspaces/nowhere"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown workspace page: %d", resp.StatusCode)
	}
}

// TestUIAudit: the audit page lists the chain, pages through it, and says
// whether it verifies.
func TestUIAudit(t *testing.T) {
	s := newSite(t)
	for range 3 {
		s.approve(s.propose("3").ID)
	}
	b := newBrowser(t, s)
	b.signIn("root")
	_, body := b.get("/audit")
	if !strings.Contains(body, "The chain of") || !strings.Contains(body, "verifies") || !strings.Contains(body, "certificate") {
		t.Errorf("audit page:\n%s", body)
	}
	entries, err := s.store.AuditEntries(context.Background(), 0, 1000)
	if err != nil || len(entries) < 2 {
		t.Fatalf("%d entries: %v", len(entries), err)
	}
	last := entries[len(entries)-1].Seq
	_, body = b.get("/audit?after=" + strconv.FormatInt(last-1, 10))
	if !strings.Contains(body, "<td>"+strconv.FormatInt(last, 10)+"</td>") || strings.Contains(body, "<td>1</td>") {
		t.Errorf("second page:\n%s", body)
	}
	if resp, _ := b.get("/audit?after=-3"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("audit with a bad cursor: %d", resp.StatusCode)
	}
}

// TestUIHeldWorkspace: a workspace held for reconciliation says so, why,
// and what releases it; once reconciled it no longer does.
func TestUIHeldWorkspace(t *testing.T) {
	s := newSite(t)
	err := s.store.HoldWorkspace(context.Background(), broker.Hold{Workspace: "sandbox", Execution: "exec-42",
		Reason: "execution exec-42 stopped during its apply", Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	admin := newBrowser(t, s)
	admin.signIn("root")
	_, body := admin.get("/workspaces/sandbox")
	for _, want := range []string{"Held for reconciliation", "execution exec-42 stopped during its apply", `href="/executions/exec-42"`, "seb reconcile sandbox"} {
		if !strings.Contains(body, want) {
			t.Errorf("the held workspace's page does not say %q:\n%s", want, body)
		}
	}
	if status, _ := s.json("root", "POST", "/api/v1/workspaces/sandbox/reconcile", map[string]string{"note": "deleted the orphan"}, nil); status != http.StatusNoContent {
		t.Fatalf("reconcile: %d", status)
	}
	if _, body := admin.get("/workspaces/sandbox"); strings.Contains(body, "Held for reconciliation") {
		t.Error("the page still shows the hold after reconciling")
	}
}

// TestTokensRevokedAtOnce: an admin makes a reviewer's token over the API;
// it works for the API and the UI; revoked, it is refused at its next
// request and its UI session ends. Both are audited.
func TestTokensRevokedAtOnce(t *testing.T) {
	s := newSite(t)
	var made struct {
		Name  string `json:"name"`
		Role  string `json:"role"`
		Token string `json:"token"`
	}
	if status, body := s.json("root", "POST", "/api/v1/tokens", map[string]string{"name": "dave", "role": "reviewer"}, &made); status != http.StatusCreated || !strings.HasPrefix(made.Token, "seb_") {
		t.Fatalf("create: %d %s", status, body)
	}
	s.tokens["dave"] = made.Token
	if status, _ := s.call("alice", "POST", "/api/v1/tokens", "application/json", strings.NewReader(`{"name":"eve","role":"admin"}`), nil); status != http.StatusForbidden {
		t.Errorf("a reviewer made a token: %d", status)
	}
	var list struct {
		Items []struct {
			Name, Role, Token string
		} `json:"items"`
	}
	s.call("root", "GET", "/api/v1/tokens", "", nil, &list)
	found := false
	for _, it := range list.Items {
		found = found || it.Name == "dave" && it.Role == "reviewer"
		if it.Token != "" {
			t.Errorf("the list shows a token: %+v", it)
		}
	}
	if !found {
		t.Errorf("list: %+v", list.Items)
	}

	b := newBrowser(t, s)
	b.signIn("dave")
	if resp, _ := b.get("/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("dave's queue: %d", resp.StatusCode)
	}
	if resp, _ := b.get("/tokens"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the tokens page for a reviewer: %d", resp.StatusCode)
	}
	if status, _ := s.call("dave", "GET", "/api/v1/proposals", "", nil, nil); status != http.StatusOK {
		t.Fatalf("dave's API call: %d", status)
	}
	if status, body := s.call("root", "DELETE", "/api/v1/tokens/dave", "", nil, nil); status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if status, _ := s.call("dave", "GET", "/api/v1/proposals", "", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("a revoked token's next request: %d", status)
	}
	if _, metrics := s.call("", "GET", "/metrics", "", nil, nil); !strings.Contains(string(metrics), `seb_auth_refused_total{reason="unknown"} 1`) {
		t.Errorf("the refusal is not counted")
	}
	if resp, _ := b.get("/"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
		t.Errorf("a revoked token's UI session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var audit struct {
		Items []broker.AuditEntry `json:"items"`
	}
	s.call("root", "GET", "/api/v1/audit?limit=1000", "", nil, &audit)
	var got []string
	for _, e := range audit.Items {
		if strings.HasPrefix(e.Action, "token.") {
			got = append(got, e.Actor+" "+e.Action+" "+e.Subject)
		}
	}
	if strings.Join(got, ",") != "root token.created dave,root token.revoked dave" {
		t.Errorf("audit: %v", got)
	}
}

// TestTokensLimitedToWorkspaces: tokens made for team B's workspace can
// neither propose to, read, plan in nor execute in team A's, over the API
// or in the UI, and routes that span workspaces refuse them.
func TestTokensLimitedToWorkspaces(t *testing.T) {
	s := newSiteWith(t, []string{"sandbox", "team-b"})
	cert := s.approve(s.propose("3").ID) // team A's ("sandbox") certificate
	var props struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	s.call("root", "GET", "/api/v1/proposals", "", nil, &props)
	if len(props.Items) != 1 {
		t.Fatalf("proposals: %+v", props)
	}
	propA := props.Items[0].ID
	for name, role := range map[string]string{"b-agent": "agent", "b-ci": "ci", "b-reviewer": "reviewer"} {
		var made struct {
			Token      string   `json:"token"`
			Workspaces []string `json:"workspaces"`
		}
		if status, body := s.json("root", "POST", "/api/v1/tokens", map[string]any{"name": name, "role": role, "workspaces": []string{"team-b"}}, &made); status != http.StatusCreated || len(made.Workspaces) != 1 {
			t.Fatalf("create %s: %d %s", name, status, body)
		}
		s.tokens[name] = made.Token
	}
	if status, body := s.json("root", "POST", "/api/v1/tokens", map[string]any{"name": "x", "role": "agent", "workspaces": []string{"nope"}}, nil); status != http.StatusBadRequest || !strings.Contains(string(body), "not configured") {
		t.Errorf("a token for an unknown workspace: %d %s", status, body)
	}

	refused := []struct{ who, method, path, body string }{
		{"b-agent", "POST", "/api/v1/workspaces/sandbox/proposals", `{"bundle":"` + bundle(t, "scale") + `"}`},
		{"b-agent", "POST", "/api/v1/workspaces/sandbox/plan", `{"bundle":"` + bundle(t, "scale") + `"}`},
		{"b-agent", "POST", "/api/v1/workspaces/sandbox/credentials", `{}`},
		{"b-agent", "GET", "/api/v1/workspaces/sandbox", ``},
		{"b-agent", "GET", "/api/v1/workspaces/sandbox/state", ``},
		{"b-reviewer", "GET", "/api/v1/proposals/" + propA, ``},
		{"b-reviewer", "POST", "/api/v1/proposals/" + propA + "/reject", `{}`},
		{"b-reviewer", "GET", "/api/v1/certificates/" + cert, ``},
		{"b-reviewer", "GET", "/api/v1/proposals?workspace=sandbox", ``},
		{"b-reviewer", "GET", "/api/v1/audit", ``},
		{"b-ci", "POST", "/api/v1/executions", `{"certificate_id":"` + cert + `"}`},
	}
	for _, r := range refused {
		var body io.Reader
		ct := ""
		if r.body != "" {
			body, ct = strings.NewReader(r.body), "application/json"
		}
		if status, out := s.call(r.who, r.method, r.path, ct, body, nil); status != http.StatusForbidden {
			t.Errorf("%s %s %s: %d %s", r.who, r.method, r.path, status, out)
		}
	}
	// Team A's certificate sent whole, as its envelope, is refused as
	// well; so is the envelope with its id changed to one seb does not
	// hold (its signature no longer holds either).
	var stored struct {
		Envelope json.RawMessage `json:"envelope"`
	}
	s.call("alice", "GET", "/api/v1/certificates/"+cert, "", nil, &stored)
	if status, out := s.json("b-ci", "POST", "/api/v1/executions", map[string]any{"envelope": stored.Envelope}, nil); status != http.StatusForbidden {
		t.Errorf("b-ci executing team A's envelope: %d %s", status, out)
	}
	var env struct {
		PayloadType string           `json:"payloadType"`
		Payload     string           `json:"payload"`
		Signatures  []map[string]any `json:"signatures"`
	}
	if err := json.Unmarshal(stored.Envelope, &env); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	env.Payload = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte(cert), []byte("cert-not-held"), 1))
	if status, out := s.json("b-ci", "POST", "/api/v1/executions", map[string]any{"envelope": env}, nil); status < 400 || status >= 500 {
		t.Errorf("b-ci executing team A's envelope under another id: %d %s", status, out)
	}
	// Lists show only team B's.
	var ws struct {
		Items []struct{ Name string } `json:"items"`
	}
	s.call("b-agent", "GET", "/api/v1/workspaces", "", nil, &ws)
	if len(ws.Items) != 1 || ws.Items[0].Name != "team-b" {
		t.Errorf("workspaces for b-agent: %+v", ws.Items)
	}
	props.Items = nil
	s.call("b-reviewer", "GET", "/api/v1/proposals", "", nil, &props)
	if len(props.Items) != 0 {
		t.Errorf("proposals for b-reviewer: %+v", props.Items)
	}
	// Paging never names another workspace's proposal.
	var page struct {
		Items []struct{ ID string } `json:"items"`
		Next  string                `json:"next"`
	}
	if status, body := s.call("b-reviewer", "GET", "/api/v1/proposals?limit=1", "", nil, &page); status != http.StatusOK || len(page.Items) != 0 || page.Next != "" {
		t.Errorf("b-reviewer's first page: %d %s", status, body)
	}
	if status, _ := s.call("b-reviewer", "GET", "/api/v1/proposals?after="+propA, "", nil, nil); status != http.StatusNotFound {
		t.Errorf("paging after team A's proposal: %d", status)
	}
	// The refused execution consumed nothing: team A's CI runs it.
	e := s.execute(cert)
	if e.State != "succeeded" {
		t.Errorf("team A's execution after b-ci's refusal: %+v", e)
	}
	// Its signed logs are team A's: named by execution, refused to team B.
	var got struct {
		PlanLogID string `json:"plan_log_id"`
	}
	s.call("ci", "GET", "/api/v1/executions/"+e.ID, "", nil, &got)
	if got.PlanLogID != "plan-log-"+e.ID {
		t.Errorf("plan log id %q", got.PlanLogID)
	}
	if status, _ := s.call("ci", "GET", "/api/v1/artifacts/"+got.PlanLogID, "", nil, nil); status != http.StatusOK {
		t.Errorf("team A's CI reading its log: %d", status)
	}
	if status, _ := s.call("b-ci", "GET", "/api/v1/artifacts/"+got.PlanLogID, "", nil, nil); status != http.StatusForbidden {
		t.Errorf("b-ci reading team A's log: %d", status)
	}

	b := newBrowser(t, s)
	b.signIn("b-reviewer")
	if resp, body := b.get("/proposals/" + propA); resp.StatusCode != http.StatusForbidden {
		t.Errorf("team A's proposal page for b-reviewer: %d %.300s", resp.StatusCode, body)
	}
	if resp, body := b.get("/"); resp.StatusCode != http.StatusOK || strings.Contains(body, propA) {
		t.Errorf("b-reviewer's queue: %d, lists %s: %v", resp.StatusCode, propA, strings.Contains(body, propA))
	}
}

// TestRefusedAuthenticationsAudited: a probe with wrong tokens is counted
// request by request, and audited boundedly: one entry at once, the rest
// gathered, never one entry per request.
func TestRefusedAuthenticationsAudited(t *testing.T) {
	s := newSite(t)
	for i := range 50 {
		req, _ := http.NewRequest("GET", s.url+"/api/v1/proposals", nil)
		if i%2 == 0 {
			req.Header.Set("Authorization", "Bearer seb_guess"+strconv.Itoa(i))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a guessed token: %d", resp.StatusCode)
		}
	}
	_, metrics := s.call("", "GET", "/metrics", "", nil, nil)
	for _, want := range []string{`seb_auth_refused_total{reason="unknown"} 25`, `seb_auth_refused_total{reason="missing"} 25`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var audit struct {
		Items []broker.AuditEntry `json:"items"`
	}
	s.call("root", "GET", "/api/v1/audit?limit=1000", "", nil, &audit)
	var refused []broker.AuditEntry
	for _, e := range audit.Items {
		if e.Action == "auth.refused" {
			refused = append(refused, e)
		}
	}
	if len(refused) != 1 || !strings.Contains(string(refused[0].Details), `"unknown":1`) {
		t.Errorf("auth.refused entries: %+v", refused)
	}
}

// TestUIDriftWording: changes made outside of Terraform read as what
// happened, as Terraform words them, never as a planned change.
func TestUIDriftWording(t *testing.T) {
	s := newSite(t)
	if e := s.execute(s.approve(s.propose("3").ID)); e.State != "succeeded" {
		t.Fatalf("first apply: %+v", e)
	}
	s.sb.Scale(s.sb.Service("sandbox", "web").ID, 7)
	p := s.propose("5")
	b := newBrowser(t, s)
	b.signIn("alice")
	_, body := b.get("/proposals/" + p.ID)
	start := strings.Index(body, `id="drift"`)
	end := strings.Index(body, `id="diff"`)
	if start < 0 || end < start {
		t.Fatalf("no drift section:\n%s", body)
	}
	drift := body[start:end]
	if !strings.Contains(drift, "Changed outside of Terraform") || !strings.Contains(drift, "sandbox_service.web has changed") ||
		strings.Contains(drift, "will be") || !strings.Contains(drift, "replicas = 3 -> 7") {
		t.Errorf("drift section:\n%s", drift)
	}
}

// TestUIConfiguration: reviewers see the configuration they certify: its
// digest, its variables and every file, with line numbers.
func TestUIConfiguration(t *testing.T) {
	s := newSite(t)
	p := s.propose("5")
	b := newBrowser(t, s)
	b.signIn("alice")
	_, body := b.get("/proposals/" + p.ID)
	stored, err := s.store.Proposal(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`id="configuration"`, stored.ConfigDigest,
		`<td><code>replicas</code></td><td><code>5</code></td>`,
		`<code>main.tf</code>`, `<code>versions.tf</code>`,
		`<li><code>resource &#34;sandbox_service&#34; &#34;web&#34; {</code></li>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the proposal page lacks %s", want)
		}
	}
}

// TestProposeAgain: after an execution refused for drift, the page says
// what to do, and the proposer proposes the same change again, planned
// afresh against live state; nobody else may.
func TestProposeAgain(t *testing.T) {
	s := newSite(t)
	if e := s.execute(s.approve(s.propose("3").ID)); e.State != "succeeded" {
		t.Fatalf("first apply: %+v", e)
	}
	p := s.propose("5")
	e := s.executeAfterDrift(s.approve(p.ID))
	b := newBrowser(t, s)
	b.signIn("alice")
	if _, body := b.get("/executions/" + e.ID); !strings.Contains(body, `id="next"`) || !strings.Contains(body, "/api/v1/proposals/"+p.ID+"/again") {
		t.Errorf("the refused execution's page offers no next step")
	}
	if status, _ := s.call("agent-2", "POST", "/api/v1/proposals/"+p.ID+"/again", "", nil, nil); status != http.StatusForbidden {
		t.Errorf("another agent proposed it again: %d", status)
	}
	var again proposal
	if status, body := s.call("agent-1", "POST", "/api/v1/proposals/"+p.ID+"/again", "", nil, &again); status != http.StatusAccepted || again.ID == p.ID {
		t.Fatalf("again: %d %s", status, body)
	}
	again = s.verified(again.ID)
	if again.State != "pending" || !strings.Contains(again.Rendered, "~ replicas = 7 -> 5") {
		t.Errorf("the new proposal, planned against live state: %+v", again)
	}
}

// TestUIDivergedProposal: a proposal whose agent plan is not seb's reads
// as seb's plan against the agent's, never as certified against live, and
// offers nothing to approve.
func TestUIDivergedProposal(t *testing.T) {
	s := newSite(t)
	agentPlan := `{"format_version":"1.2","resource_changes":[{"address":"sandbox_service.web","mode":"managed","type":"sandbox_service","name":"web",
	  "provider_name":"seb.invalid/seb/sandbox","change":{"actions":["create"],"before":null,"after":{"name":"web","replicas":1}}}]}`
	var p proposal
	status, body := s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals",
		map[string]any{"bundle": bundle(t, "scale"), "vars": map[string]string{"replicas": "3"}, "plan": json.RawMessage(agentPlan)}, &p)
	if status != http.StatusAccepted {
		t.Fatalf("propose: %d %s", status, body)
	}
	if p = s.verified(p.ID); p.State != "diverged" {
		t.Fatalf("state %s", p.State)
	}
	b := newBrowser(t, s)
	b.signIn("alice")
	_, page := b.get("/proposals/" + p.ID)
	if !strings.Contains(page, "seb&#39;s plan") || !strings.Contains(page, "the agent&#39;s plan") || strings.Contains(page, "certified:") ||
		strings.Contains(page, `class="approve"`) || strings.Contains(page, "approving certifies") {
		t.Errorf("diverged proposal page:\n%s", page)
	}
}

// TestCertificateFates: a certified proposal says what became of its
// certificate — applied, refused at execution, revoked or unused — in the
// API, the queue and the workspace page.
func TestCertificateFates(t *testing.T) {
	s := newSite(t)
	applied := s.propose("3")
	if e := s.execute(s.approve(applied.ID)); e.State != "succeeded" {
		t.Fatalf("apply: %+v", e)
	}
	refused := s.propose("5")
	s.executeAfterDrift(s.approve(refused.ID))
	revoked := s.propose("6")
	if status, _ := s.call("root", "POST", "/api/v1/certificates/"+s.approve(revoked.ID)+"/revoke", "", nil, nil); status != http.StatusOK {
		t.Fatalf("revoke: %d", status)
	}
	unused := s.propose("8")
	s.approve(unused.ID)
	want := map[string]string{applied.ID: "applied", refused.ID: "refused at execution", revoked.ID: "revoked", unused.ID: "unused"}
	for id, fate := range want {
		var got struct {
			State           string `json:"state"`
			CertificateFate string `json:"certificate_fate"`
		}
		s.call("alice", "GET", "/api/v1/proposals/"+id, "", nil, &got)
		if got.State != "certified" || got.CertificateFate != fate {
			t.Errorf("%s: %+v, want certified, %s", id, got, fate)
		}
	}
	b := newBrowser(t, s)
	b.signIn("alice")
	for _, page := range []string{"/?state=all", "/workspaces/sandbox"} {
		_, body := b.get(page)
		for _, fate := range want {
			if !strings.Contains(body, "· "+fate) {
				t.Errorf("%s does not say %q", page, fate)
			}
		}
	}
}

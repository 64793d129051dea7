package web_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
)

// chromium finds the browser for the real-browser tests: SEB_CHROMIUM, or
// Debian's chromium on PATH. Without one the tests are skipped, unless
// SEB_REQUIRE_BROWSER is set (CI sets it): then a missing browser fails.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SEB_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SEB_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH: .ci/run installs Debian's chromium package")
	}
	t.Skip("no chromium on PATH (set SEB_CHROMIUM); the real-browser tests need one")
	return ""
}

// tab is one headless chromium tab on the site.
type tab struct {
	t   *testing.T
	s   *site
	ctx context.Context
}

func newTab(t *testing.T, s *site) *tab {
	// Not t.TempDir: chromium's helper processes may still write to their
	// profile while the browser exits, and the test's own cleanup would
	// fail on "directory not empty". This one is removed best-effort.
	profile, err := os.MkdirTemp("", "seb-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(profile))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
		for range 10 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &tab{t: t, s: s, ctx: ctx}
}

func (b *tab) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		// Say where the browser was, to tell a slow page from a wrong one.
		var loc, main string
		dctx, dcancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer dcancel()
		derr := chromedp.Run(dctx, chromedp.Location(&loc), chromedp.Text("body", &main, chromedp.ByQuery))
		b.t.Fatalf("%s: %v\nthe browser was at %s (%v):\n%.2000s", what, err, loc, derr, main)
	}
}

// text returns the visible text of the page's main element.
func (b *tab) text() string {
	b.t.Helper()
	var s string
	b.run("read the page", chromedp.Text("main", &s, chromedp.ByQuery))
	return s
}

func (b *tab) location() string {
	b.t.Helper()
	var u string
	b.run("read the location", chromedp.Location(&u))
	return strings.TrimPrefix(u, b.s.url)
}

// screenshot saves the page under the test's temp dir and, for the pages
// CI keeps, under web/testdata/screenshots.
func (b *tab) screenshot(name string, keep bool) {
	b.t.Helper()
	var png []byte
	b.run("screenshot", chromedp.FullScreenshot(&png, 100)) // 100 is PNG; less is JPEG
	if err := os.WriteFile(filepath.Join(b.t.TempDir(), name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	if keep {
		dir := filepath.Join("testdata", "screenshots")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

func (b *tab) signIn(who string) {
	b.t.Helper()
	b.run("sign in as "+who,
		chromedp.Navigate(b.s.url+"/"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", b.s.tokens[who], chromedp.ByID),
		chromedp.Click("form.signin button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("form.signout", chromedp.ByQuery))
}

// TestBrowserReview: in a real browser, a reviewer signs in, opens the
// pending proposal, sees replicas 3 -> 5, approves it and sees the
// certificate; the execution after an out-of-band scale to 7 shows the
// divergence; sign-out works.
func TestBrowserReview(t *testing.T) {
	s := newSite(t)
	if e := s.execute(s.approve(s.propose("3").ID)); e.State != "succeeded" {
		t.Fatalf("first apply: %+v", e)
	}
	p := s.propose("5")
	b := newTab(t, s)

	b.signIn("alice")
	if !strings.Contains(b.text(), p.ID) {
		t.Fatalf("queue lacks %s:\n%s", p.ID, b.text())
	}
	b.run("open the proposal", chromedp.Click(`a[href="/proposals/`+p.ID+`"]`, chromedp.ByQuery), chromedp.WaitVisible("#diff", chromedp.ByID))
	page := b.text()
	if !strings.Contains(page, "~ replicas = 3 -> 5") || !strings.Contains(page, "sandbox_service.web will be updated in-place") {
		t.Errorf("proposal page:\n%s", page)
	}
	b.screenshot("proposal", true)

	b.run("approve",
		chromedp.SendKeys("#comment", "5 replicas for the launch", chromedp.ByID),
		chromedp.Click("button.approve", chromedp.ByQuery),
		chromedp.WaitVisible("p.flash", chromedp.ByQuery))
	page = b.text()
	if !strings.Contains(page, "the final approval issued the certificate") || !strings.Contains(page, "alice approved") {
		t.Fatalf("after approval:\n%s", page)
	}
	b.run("open the certificate", chromedp.Click(`a[href^="/certificates/"]`, chromedp.ByQuery), chromedp.WaitVisible("dl.facts", chromedp.ByQuery))
	cert := strings.TrimPrefix(b.location(), "/certificates/")
	if page := b.text(); !strings.Contains(page, "valid") || !strings.Contains(page, "alice at") {
		t.Errorf("certificate page:\n%s", page)
	}
	b.screenshot("certificate", false)

	e := s.executeAfterDrift(cert)
	b.run("open the execution", chromedp.Navigate(s.url+"/executions/"+e.ID), chromedp.WaitVisible("table.divergence-table", chromedp.ByQuery))
	var certified, live string
	b.run("read the divergence",
		chromedp.Text(".divergence-table td.certified", &certified, chromedp.ByQuery),
		chromedp.Text(".divergence-table td.live", &live, chromedp.ByQuery))
	if certified != "3 → 5" || live != "7 → 5" {
		t.Errorf("divergence: certified %q, live %q", certified, live)
	}
	// The refused execution's evidence: its plan log and the live plan,
	// signed, downloadable from the page.
	var evidence string
	var links int
	b.run("read the evidence",
		chromedp.Text("p.evidence", &evidence, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll('p.evidence a[href^="/artifacts/"]').length`, &links))
	if !strings.Contains(evidence, "seb verify") || !strings.Contains(evidence, "plan log") || !strings.Contains(evidence, "live plan (JSON)") || links != 2 {
		t.Errorf("evidence (%d links): %q", links, evidence)
	}
	b.screenshot("divergence", true)

	b.run("sign out", chromedp.Click("form.signout button", chromedp.ByQuery), chromedp.WaitVisible("#token", chromedp.ByID))
	if page := b.text(); !strings.Contains(page, "Signed out.") {
		t.Errorf("after sign-out:\n%s", page)
	}
	b.run("reopen the queue", chromedp.Navigate(s.url+"/"), chromedp.WaitVisible("#token", chromedp.ByID))
	if loc := b.location(); !strings.HasPrefix(loc, "/signin") {
		t.Errorf("queue after sign-out went to %s", loc)
	}
}

// TestBrowserOwnProposal: a reviewer is not offered the approval of their
// own proposal.
func TestBrowserOwnProposal(t *testing.T) {
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
	b := newTab(t, s)
	b.signIn("alice")
	b.run("open own proposal", chromedp.Navigate(s.url+"/proposals/"+own.ID), chromedp.WaitVisible("#review", chromedp.ByID))
	var buttons int
	b.run("count approve buttons", chromedp.Evaluate(`document.querySelectorAll("button.approve").length`, &buttons))
	if page := b.text(); buttons != 0 || !strings.Contains(page, "someone else must review it") {
		t.Errorf("own proposal offers %d approve buttons:\n%s", buttons, page)
	}
	b.screenshot("own-proposal", false)
}

// TestBrowserLiveLog: the execution page of a running execution follows
// its log as Terraform writes it, then shows the outcome.
func TestBrowserLiveLog(t *testing.T) {
	s := newSite(t, func(o *sandboxcloud.Options) { o.MutationDelay = 3 * time.Second })
	cert := s.approve(s.propose("3").ID)
	b := newTab(t, s)
	b.signIn("alice")
	var e execution
	if status, body := s.json("ci", "POST", "/api/v1/executions", map[string]string{"certificate_id": cert}, &e); status != http.StatusAccepted {
		t.Fatalf("execute: %d %s", status, body)
	}
	b.run("follow the running execution",
		chromedp.Navigate(s.url+"/executions/"+e.ID),
		chromedp.WaitVisible("#live-log", chromedp.ByID),
		chromedp.Poll(`document.getElementById("live-log") !== null && document.getElementById("live-log").textContent.includes("sandbox_service.web: Creating...")`, nil,
			chromedp.WithPollingTimeout(25*time.Second)))
	b.run("see the outcome", chromedp.WaitVisible("li.end-succeeded", chromedp.ByQuery))
	if page := b.text(); !strings.Contains(page, "Apply complete!") {
		t.Errorf("execution page after the run:\n%s", page)
	}
}

// TestBrowserHiddenValues: an agent hides the image behind sensitive()
// and makes another value unknown until apply. The proposal is refused,
// and its page shows the reviewer what they could not have seen: the
// image, hidden by the configuration, and what the unknown values come
// from.
func TestBrowserHiddenValues(t *testing.T) {
	s := newSite(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../fixtures/terraform/scale")); err != nil {
		t.Fatal(err)
	}
	main, err := os.ReadFile(filepath.Join(dir, "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	main = bytes.Replace(main, []byte("image    = var.image"), []byte(`image    = sensitive("evil/cryptominer:latest")`), 1)
	main = append(main, []byte("\nresource \"terraform_data\" \"seed\" {\n  input = \"x\"\n}\n\nresource \"sandbox_bucket\" \"logs\" {\n  name = \"logs-${terraform_data.seed.id}\"\n}\n")...)
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), main, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := drift.BundleDirectory(dir, &buf); err != nil {
		t.Fatal(err)
	}
	var p proposal
	status, body := s.json("agent-1", "POST", "/api/v1/workspaces/sandbox/proposals",
		map[string]any{"bundle": base64.StdEncoding.EncodeToString(buf.Bytes()), "rationale": "logs"}, &p)
	if status != http.StatusAccepted {
		t.Fatalf("propose: %d %s", status, body)
	}
	if p = s.verified(p.ID); p.State != "refused" {
		t.Fatalf("a hidden image was not refused: %+v", p)
	}

	b := newTab(t, s)
	b.signIn("alice")
	b.run("open the proposal", chromedp.Navigate(s.url+"/proposals/"+p.ID), chromedp.WaitVisible("#unseen", chromedp.ByID))
	page := b.text()
	if !strings.Contains(page, "seb refused this proposal: sandbox_service.web image is hidden by the configuration") {
		t.Errorf("the refusal is not shown:\n%s", page)
	}
	var hidden, unknown string
	b.run("read what cannot be seen",
		chromedp.Text("table.hidden-values tr.by-configuration", &hidden, chromedp.ByQuery),
		chromedp.Text("table.unknown-values", &unknown, chromedp.ByQuery))
	if !strings.Contains(hidden, "sandbox_service.web") || !strings.Contains(hidden, "image") || !strings.Contains(hidden, "the configuration") {
		t.Errorf("hidden values: %q", hidden)
	}
	if !strings.Contains(unknown, "sandbox_bucket.logs") || !strings.Contains(unknown, "terraform_data.seed.id") {
		t.Errorf("unknown values: %q", unknown)
	}
	if !strings.Contains(unknown, "computed by the provider") {
		t.Errorf("unknown values lack the provider-computed ones: %q", unknown)
	}
	b.screenshot("hidden-values", true)
}

// TestBrowserTokens: an admin makes a token limited to a workspace in the
// UI, sees it once, and revokes it; it works until then, not after.
func TestBrowserTokens(t *testing.T) {
	s := newSite(t)
	b := newTab(t, s)
	b.signIn("root")
	b.run("open the tokens", chromedp.Click(`nav a[href="/tokens"]`, chromedp.ByQuery), chromedp.WaitVisible("#make", chromedp.ByID))
	var token string
	b.run("make a token",
		chromedp.SendKeys("#name", "erin", chromedp.ByID),
		chromedp.SetValue("#role", "reviewer", chromedp.ByID),
		chromedp.Click(`input[name="workspace"][value="sandbox"]`, chromedp.ByQuery),
		chromedp.Click("form.review button.approve", chromedp.ByQuery),
		chromedp.WaitVisible("#made-token", chromedp.ByID),
		chromedp.Text("#made-token", &token, chromedp.ByID))
	token = strings.TrimSpace(token)
	if !strings.HasPrefix(token, "seb_") {
		t.Fatalf("made token %q", token)
	}
	if page := b.text(); !strings.Contains(page, "shown only this once") || !strings.Contains(page, "erin") || !strings.Contains(page, "sandbox") {
		t.Errorf("tokens page:\n%s", page)
	}
	s.tokens["erin"] = token
	if status, _ := s.call("erin", "GET", "/api/v1/proposals", "", nil, nil); status != http.StatusOK {
		t.Errorf("erin's token before revoking: %d", status)
	}
	b.run("revoke it", chromedp.Click(`button[aria-label="Revoke erin"]`, chromedp.ByQuery), chromedp.WaitVisible("p.flash", chromedp.ByQuery))
	if page := b.text(); !strings.Contains(page, "Token revoked") || strings.Contains(page, token) {
		t.Errorf("after revoking:\n%s", page)
	}
	if status, _ := s.call("erin", "GET", "/api/v1/proposals", "", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("erin's token after revoking: %d", status)
	}
	b.screenshot("tokens", false)
}

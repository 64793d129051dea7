package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/broker/sqlite"
)

// auditFixture writes a database with n signed audit entries and the
// signer's public key; it returns their paths.
func auditFixture(t *testing.T, n int) (db, pub string) {
	t.Helper()
	dir := t.TempDir()
	signer, err := broker.OpenSigner(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	db = filepath.Join(dir, "seb.db")
	store, err := sqlite.Open(db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for i := range n {
		e := broker.AuditEntry{Time: time.Date(2026, 11, 26, 12, 0, i, 0, time.UTC), Actor: "alice", Action: "proposal.approved",
			Subject: "prop-" + string(rune('a'+i)), Details: json.RawMessage(`{"comment":"ok"}`)}
		if _, err := store.AppendAudit(context.Background(), func(last *broker.AuditEntry) (*broker.AuditEntry, error) {
			return signer.SealAudit(last, e)
		}); err != nil {
			t.Fatal(err)
		}
	}
	pub = filepath.Join(dir, "seb.pub")
	if err := os.WriteFile(pub, signer.PublicKeyPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return db, pub
}

func TestAuditVerify(t *testing.T) {
	db, pub := auditFixture(t, 5)
	r := seb(t, "", "audit", "verify", "--public-key", pub, db)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "OK: 5 entries") {
		t.Fatalf("database: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	export := seb(t, "", "audit", "export", db)
	if export.code != exitOK || strings.Count(export.stdout, "\n") != 5 {
		t.Fatalf("export: exit %d, %q", export.code, export.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(export.stdout, "\n"), "\n")
	write := func(lines []string) string {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
		return path
	}
	if r := seb(t, "", "audit", "verify", "--public-key", pub, write(lines)); r.code != exitOK {
		t.Fatalf("export: exit %d, %q", r.code, r.stdout)
	}
	changed := append([]string{}, lines...)
	changed[2] = strings.Replace(changed[2], `"alice"`, `"mallory"`, 1)
	deleted := append(append([]string{}, lines[:1]...), lines[2:]...)
	reordered := append([]string{}, lines...)
	reordered[3], reordered[4] = reordered[4], reordered[3]
	otherDB, otherPub := auditFixture(t, 1)
	_ = otherDB
	var entry map[string]any
	json.Unmarshal([]byte(lines[1]), &entry)
	delete(entry, "details")
	erased, _ := json.Marshal(entry)
	withoutDetails := append([]string{}, lines...)
	withoutDetails[1] = string(erased)
	otherDetails := append([]string{}, lines...)
	otherDetails[3] = strings.Replace(otherDetails[3], `"comment":"ok"`, `"comment":"no"`, 1)
	tests := []struct {
		name, file, key, want string
	}{
		{"details erased", write(withoutDetails), pub, "audit entry 2: details are missing"},
		{"details changed", write(otherDetails), pub, "audit entry 4: details do not match"},
		{"changed", write(changed), pub, "audit entry 3"},
		{"deleted", write(deleted), pub, "audit entry 2"},
		{"reordered", write(reordered), pub, "audit entry 4"},
		{"another key", write(lines), otherPub, "audit entry 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := seb(t, "", "audit", "verify", "--public-key", tt.key, tt.file)
			if r.code != exitDiverged || !strings.Contains(r.stdout, tt.want) {
				t.Errorf("exit %d, %q %q; want exit 1 naming %q", r.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
	// Details set to NULL in the database itself, by someone who can
	// drop its append-only trigger.
	erasedDB, erasedPub := auditFixture(t, 5)
	raw, err := sql.Open("sqlite", erasedDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET details = NULL WHERE seq >= 3"); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if r := seb(t, "", "audit", "verify", "--public-key", erasedPub, erasedDB); r.code != exitDiverged || !strings.Contains(r.stdout, "audit entry 3: details are missing") {
		t.Errorf("details erased in the database: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := seb(t, "", "audit", "verify", db); r.code != exitError || !strings.Contains(r.stderr, "--public-key is required") {
		t.Errorf("no key: exit %d, %q", r.code, r.stderr)
	}
}

// TestAuditCheckpoint: a checkpoint saved earlier catches a log cut below
// it, in the database itself; and the log, key and checkpoint can all be
// fetched from a server.
func TestAuditCheckpoint(t *testing.T) {
	db, pub := auditFixture(t, 5)
	dir := filepath.Dir(db)
	signer, err := broker.OpenSigner(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.Open(db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := store.AuditEntries(context.Background(), 0, 100)
	store.Close()
	if err != nil || len(entries) != 5 {
		t.Fatalf("entries: %d, %v", len(entries), err)
	}
	env, err := signer.SignCheckpoint(broker.Checkpoint{Count: 5, Head: entries[4].Hash, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := filepath.Join(t.TempDir(), "checkpoint.json")
	os.WriteFile(checkpoint, env, 0o644)
	if r := seb(t, "", "audit", "verify", "--public-key", pub, "--checkpoint", checkpoint, db); r.code != exitOK || !strings.Contains(r.stdout, "1 checkpoint(s) hold") {
		t.Fatalf("whole log: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}

	// A server that serves this log, its key and checkpoints, as seb serve
	// does.
	export := seb(t, "", "audit", "export", db)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/keys/signing":
			w.Write(signer.PublicKeyPEM())
		case "/api/v1/audit/checkpoint":
			w.Write(env)
		case "/api/v1/audit/export":
			if r.Header.Get("Authorization") != "Bearer t0ken" {
				http.Error(w, `{"error":{"code":"unauthorized","message":"no"}}`, http.StatusUnauthorized)
				return
			}
			w.Write([]byte(export.stdout))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	saved := seb(t, "", "audit", "checkpoint", "--server", srv.URL)
	if saved.code != exitOK || !strings.Contains(saved.stdout, "application/vnd.seb.checkpoint+json") {
		t.Fatalf("checkpoint: exit %d, %q %q", saved.code, saved.stdout, saved.stderr)
	}
	if r := seb(t, "", "audit", "verify", "--server", srv.URL, "--token", "t0ken", "--checkpoint", checkpoint); r.code != exitOK || !strings.HasPrefix(r.stdout, "OK: 5 entries") {
		t.Errorf("from the server: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}

	// Cut to three entries in the database: the chain still verifies,
	// the checkpoint does not.
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq > 3"); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if r := seb(t, "", "audit", "verify", "--public-key", pub, db); r.code != exitOK {
		t.Fatalf("the cut chain alone: exit %d, %q", r.code, r.stdout)
	}
	if r := seb(t, "", "audit", "verify", "--public-key", pub, "--checkpoint", checkpoint, db); r.code != exitDiverged || !strings.Contains(r.stdout, "the log has 3 entries, but a checkpoint") {
		t.Errorf("cut below the checkpoint: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
}

// TestTokensCommands: tokens are created, listed and revoked on the data
// directory, and each creation and revocation is in the audit log.
func TestTokensCommands(t *testing.T) {
	t.Setenv("SEB_TEST_READ", "r")
	t.Setenv("SEB_TEST_WRITE", "w")
	dir := t.TempDir()
	config := filepath.Join(dir, "seb.hcl")
	os.WriteFile(config, []byte(`data_dir = "data"
workspace "sandbox" {
  credentials {
    plan_secrets  = { TOKEN = "env:SEB_TEST_READ" }
    apply_secrets = { TOKEN = "env:SEB_TEST_WRITE" }
  }
}
`), 0o600)
	for _, name := range []string{"alice", "ci-1"} {
		role := map[string]string{"alice": "reviewer", "ci-1": "ci"}[name]
		if r := seb(t, "", "tokens", "create", "--config", config, "--role", role, "--name", name); r.code != exitOK || !strings.HasPrefix(r.stdout, "seb_") {
			t.Fatalf("create %s: exit %d, %q %q", name, r.code, r.stdout, r.stderr)
		}
	}
	if r := seb(t, "", "tokens", "create", "--config", config, "--role", "ci", "--name", "alice"); r.code != exitError || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("a taken name: exit %d, %q", r.code, r.stderr)
	}
	if r := seb(t, "", "tokens", "create", "--config", config, "--role", "reviewer", "--name", "sec-1", "--group", "security", "--group", "sre"); r.code != exitOK {
		t.Fatalf("a token with groups: %s", r.stderr)
	}
	if r := seb(t, "", "tokens", "create", "--config", config, "--role", "reviewer", "--name", "sec-2", "--group", "Security Team"); r.code != exitError || !strings.Contains(r.stderr, `group "Security Team"`) {
		t.Errorf("a bad group name: %d %s", r.code, r.stderr)
	}
	if r := seb(t, "", "tokens", "create", "--config", config, "--role", "agent", "--name", "team-a", "--workspace", "sandbox"); r.code != exitOK {
		t.Errorf("a token limited to a workspace: exit %d, %q", r.code, r.stderr)
	}
	if r := seb(t, "", "tokens", "create", "--config", config, "--role", "agent", "--name", "x", "--workspace", "nope"); r.code != exitError || !strings.Contains(r.stderr, `workspace "nope" is not configured`) {
		t.Errorf("a token for an unknown workspace: exit %d, %q", r.code, r.stderr)
	}
	list := seb(t, "", "tokens", "list", "--config", config)
	if list.code != exitOK || !strings.Contains(list.stdout, "alice") || !strings.Contains(list.stdout, "reviewer") || !strings.Contains(list.stdout, "ci-1") ||
		!regexp.MustCompile(`team-a +agent +sandbox +- `).MatchString(list.stdout) || !regexp.MustCompile(`sec-1 +reviewer +\(all\) +security,sre `).MatchString(list.stdout) ||
		strings.Contains(list.stdout, "seb_") {
		t.Fatalf("list: exit %d, %q", list.code, list.stdout)
	}
	if r := seb(t, "", "tokens", "revoke", "--config", config, "alice"); r.code != exitOK {
		t.Fatalf("revoke: exit %d, %q", r.code, r.stderr)
	}
	if r := seb(t, "", "tokens", "list", "--config", config); strings.Contains(r.stdout, "alice") {
		t.Errorf("after revoke: %q", r.stdout)
	}
	if r := seb(t, "", "tokens", "revoke", "--config", config, "alice"); r.code != exitError || !strings.Contains(r.stderr, "no API token named alice") {
		t.Errorf("revoke twice: exit %d, %q", r.code, r.stderr)
	}
	store, err := sqlite.Open(filepath.Join(dir, "data", "seb.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	entries, err := store.AuditEntries(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+" "+e.Subject)
	}
	if want := "token.created alice,token.created ci-1,token.created sec-1,token.created team-a,token.revoked alice"; strings.Join(got, ",") != want {
		t.Errorf("audit: %q, want %q", strings.Join(got, ","), want)
	}
}

// TestKeysRotate: after rotating each key, the audit log, signed partly
// with the old signer key and partly with the new, verifies with the
// published keys; the rotations are in it.
func TestKeysRotate(t *testing.T) {
	t.Setenv("SEB_TEST_READ", "r")
	t.Setenv("SEB_TEST_WRITE", "w")
	dir := t.TempDir()
	config := filepath.Join(dir, "seb.hcl")
	os.WriteFile(config, []byte("data_dir = \"data\"\nworkspace \"sandbox\" {\n  credentials {\n    plan_secrets = { T = \"env:SEB_TEST_READ\" }\n    apply_secrets = { T = \"env:SEB_TEST_WRITE\" }\n  }\n}\n"), 0o600)
	if r := seb(t, "", "tokens", "create", "--config", config, "--role", "reviewer", "--name", "alice"); r.code != exitOK {
		t.Fatalf("create: %q", r.stderr)
	}
	before := seb(t, "", "keys", "list", "--config", config)
	if before.code != exitOK || strings.Count(before.stdout, "signer") != 1 || strings.Count(before.stdout, "issuer") != 1 {
		t.Fatalf("keys list: exit %d, %q %q", before.code, before.stdout, before.stderr)
	}
	for _, which := range []string{"--signer", "--issuer"} {
		if r := seb(t, "", "keys", "rotate", which, "--config", config); r.code != exitOK || !strings.Contains(r.stdout, "rotated the") {
			t.Fatalf("rotate %s: exit %d, %q %q", which, r.code, r.stdout, r.stderr)
		}
	}
	after := seb(t, "", "keys", "list", "--config", config)
	if strings.Count(after.stdout, "signer") != 2 || strings.Count(after.stdout, "issuer") != 2 || !strings.Contains(after.stdout, "retired") {
		t.Errorf("keys list after rotating: %q", after.stdout)
	}
	signer, err := broker.OpenSigner(filepath.Join(dir, "data", "signer"))
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys.pem")
	os.WriteFile(keys, signer.PublicKeysPEM(), 0o644)
	db := filepath.Join(dir, "data", "seb.db")
	if r := seb(t, "", "audit", "verify", "--public-key", keys, db); r.code != exitOK || !strings.HasPrefix(r.stdout, "OK: 3 entries") {
		t.Errorf("audit across the rotation: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	current := filepath.Join(dir, "current.pem")
	os.WriteFile(current, signer.PublicKeyPEM(), 0o644)
	if r := seb(t, "", "audit", "verify", "--public-key", current, db); r.code != exitDiverged || !strings.Contains(r.stdout, "audit entry 1: signed by key") {
		t.Errorf("with the new key alone: exit %d, %q", r.code, r.stdout)
	}
}

// TestTokensNeedTheBrokersData: outside the broker's directory, with no
// seb.hcl, making a token is refused rather than done in a new database
// no server reads.
func TestTokensNeedTheBrokersData(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r := seb(t, "", "tokens", "create", "--role", "agent", "--name", "lost")
	if r.code != exitError || !strings.Contains(r.stderr, "no seb database at") {
		t.Errorf("exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, ".seb")); !os.IsNotExist(err) {
		t.Errorf("a data directory was made: %v", err)
	}
}

package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrationRenamesRefusedExecutions: a database made before migration
// 8, holding an execution seb refused (then called 'rejected') and the
// certificate it consumed, opens with that execution 'refused', every row
// kept and every reference whole.
func TestMigrationRenamesRefusedExecutions(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "seb.db")
	raw, err := sql.Open("sqlite", dsn(file, "_pragma=foreign_keys(1)", "_txlock=immediate"))
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	migrations, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := raw.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`)
	for i, name := range migrations[:7] {
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		exec(string(body))
		exec("INSERT INTO schema_migrations VALUES (?, ?, '2026-01-01T00:00:00.000000000Z')", i+1, strings.TrimSuffix(path.Base(name), ".sql"))
	}
	// insert fills every required column the overrides leave out.
	insert := func(table string, values map[string]any) {
		t.Helper()
		rows, err := raw.QueryContext(ctx, "SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info(?)", table)
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		var args []any
		for rows.Next() {
			var name, typ string
			var notNull int
			var dflt sql.NullString
			if err := rows.Scan(&name, &typ, &notNull, &dflt); err != nil {
				t.Fatal(err)
			}
			v, ok := values[name]
			if !ok {
				if notNull == 0 || dflt.Valid {
					continue
				}
				switch strings.ToUpper(typ) {
				case "INTEGER":
					v = 0
				case "BLOB":
					v = []byte{}
				default:
					v = "x"
				}
			}
			cols, args = append(cols, name), append(args, v)
		}
		rows.Close()
		exec("INSERT INTO "+table+" ("+strings.Join(cols, ", ")+") VALUES (?"+strings.Repeat(", ?", len(cols)-1)+")", args...)
	}
	exec("BEGIN IMMEDIATE")
	insert("proposals", map[string]any{"id": "prop-1", "state": "certified", "vars": "{}", "drift": "[]"})
	insert("certificates", map[string]any{"id": "cert-1", "proposal_id": "prop-1", "approvals": "[]", "consumed_by": "exec-1"})
	insert("executions", map[string]any{"id": "exec-1", "certificate_id": "cert-1", "state": "rejected"})
	insert("executions", map[string]any{"id": "exec-2", "certificate_id": "cert-1", "state": "succeeded"})
	exec("COMMIT")
	raw.Close()

	s, err := Open(file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// What the migration left, read as it is stored.
	raw, err = sql.Open("sqlite", dsn(file, "_pragma=foreign_keys(1)"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for id, want := range map[string]string{"exec-1": "refused", "exec-2": "succeeded"} {
		var state string
		if err := raw.QueryRowContext(ctx, "SELECT state FROM executions WHERE id = ?", id).Scan(&state); err != nil || state != want {
			t.Errorf("%s: %q, %v; want %q", id, state, err, want)
		}
	}
	var consumed string
	if err := raw.QueryRowContext(ctx, "SELECT consumed_by FROM certificates WHERE id = 'cert-1'").Scan(&consumed); err != nil || consumed != "exec-1" {
		t.Errorf("consumed_by: %q, %v", consumed, err)
	}
	rows, err := raw.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if rows.Next() {
		t.Errorf("a reference broke in the migration")
	}
	// The new state's CHECK holds: 'rejected' is no longer an execution's.
	if _, err := raw.ExecContext(ctx, "UPDATE executions SET state = 'rejected' WHERE id = 'exec-2'"); err == nil {
		t.Errorf("an execution could still be 'rejected'")
	}
}

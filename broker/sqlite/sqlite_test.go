package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	driver "modernc.org/sqlite"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/broker/sqlite"
	"github.com/seb-broker/seb/broker/storetest"
)

func openStore(t *testing.T, path string, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) broker.Store {
		return openStore(t, filepath.Join(t.TempDir(), "seb.db"), sqlite.Options{})
	})
}

// rawDB opens the file beside the store, to look at what the store wrote.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "seb.db")
	s, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutBundle(ctx, "sha256:b", []byte("bundle")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BumpRevocationEpoch(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("database file mode = %v, %v; want 0600", info.Mode().Perm(), err)
	}

	s = openStore(t, path, sqlite.Options{})
	if data, err := s.Bundle(ctx, "sha256:b"); err != nil || string(data) != "bundle" {
		t.Errorf("Bundle after reopening = %q, %v", data, err)
	}
	if epoch, err := s.RevocationEpoch(ctx, "prod"); err != nil || epoch != 1 {
		t.Errorf("RevocationEpoch after reopening = %d, %v; want 1", epoch, err)
	}

	rows, err := rawDB(t, path).QueryContext(ctx, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var versions []int
	for rows.Next() {
		var (
			v             int
			name, applied string
		)
		if err := rows.Scan(&v, &name, &applied); err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339Nano, applied); err != nil || !strings.HasPrefix(name, "0001_") && v == 1 {
			t.Errorf("migration %d recorded as %q at %q", v, name, applied)
		}
		versions = append(versions, v)
	}
	if len(versions) == 0 || versions[0] != 1 {
		t.Errorf("schema_migrations holds versions %v, want 1…", versions)
	}
	for i, v := range versions {
		if v != i+1 {
			t.Errorf("schema_migrations holds versions %v, want each applied once, in order", versions)
		}
	}
}

func TestRefuseNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seb.db")
	s, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := rawDB(t, path)
	if _, err := db.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future', '2099-01-01T00:00:00.000000000Z')"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = sqlite.Open(path, sqlite.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a database with a newer schema")
	}
	if !errors.Is(err, sqlite.ErrNewerSchema) || !strings.Contains(err.Error(), "999") {
		t.Errorf("Open error = %v, want ErrNewerSchema naming version 999", err)
	}
}

func TestPragmas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seb.db")
	openStore(t, path, sqlite.Options{})
	var mode string
	if err := rawDB(t, path).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

func TestOpenRefusesNonFiles(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file::memory:?cache=shared"} {
		if s, err := sqlite.Open(path, sqlite.Options{}); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", path)
		}
	}
	if _, err := sqlite.Open(filepath.Join(t.TempDir(), "x.db"), sqlite.Options{BusyTimeout: -1}); err == nil {
		t.Error("Open accepted a negative busy timeout")
	}
}

func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#odd%chars")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "seb.db")
	s := openStore(t, path, sqlite.Options{})
	if err := s.PutBundle(context.Background(), "d", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not at %s: %v", path, err)
	}
}

// noDriverError fails the test if err is or wraps a driver error.
func noDriverError(t *testing.T, what string, err error) {
	t.Helper()
	var de *driver.Error
	if errors.As(err, &de) {
		t.Errorf("%s: error %v leaks the driver's *sqlite.Error", what, err)
	}
}

func TestDriverErrorsDoNotLeak(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "seb.db")
	s := openStore(t, path, sqlite.Options{BusyTimeout: 50 * time.Millisecond})
	storetest.DriverErrorsHidden(t, s, func(err error) bool {
		var de *driver.Error
		return errors.As(err, &de)
	})

	// Another process holds the write lock past the busy timeout.
	conn, err := rawDB(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	err = s.SetProposalState(ctx, "p1", broker.ProposalPending, broker.ProposalCertified, time.Now())
	noDriverError(t, "busy database", err)
	if err == nil || broker.ErrorCode(err) != broker.EINTERNAL || broker.ErrorMessage(err) != "internal error" {
		t.Errorf("busy database: %v, want an internal error", err)
	}
	_, err = s.AppendAudit(ctx, func(*broker.AuditEntry) (*broker.AuditEntry, error) {
		return &broker.AuditEntry{Seq: 1}, nil
	})
	noDriverError(t, "busy database", err)
	if broker.ErrorCode(err) != broker.EINTERNAL {
		t.Errorf("busy database: %v, want an internal error", err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProposalState(ctx, "p1", broker.ProposalPending, broker.ProposalCertified, time.Now()); err != nil {
		t.Errorf("once the lock is released: %v", err)
	}

	// A stored value the store cannot read back is internal too.
	if _, err := conn.ExecContext(ctx, "UPDATE proposals SET summary = '{\"version\":99}' WHERE id = 'p1'"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Proposal(ctx, "p1")
	noDriverError(t, "corrupt summary", err)
	if broker.ErrorCode(err) != broker.EINTERNAL {
		t.Errorf("corrupt summary: %v, want an internal error", err)
	}
}

func TestAuditLogIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "seb.db")
	s := openStore(t, path, sqlite.Options{})
	_, err := s.AppendAudit(ctx, func(*broker.AuditEntry) (*broker.AuditEntry, error) {
		return &broker.AuditEntry{Seq: 1, Time: time.Now(), Actor: "a", Action: "b", Hash: "h"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	for _, stmt := range []string{"UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"} {
		if _, err := db.ExecContext(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want it refused", stmt, err)
		}
	}
}

func TestContextCanceled(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "seb.db"), sqlite.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.PutBundle(ctx, "d", []byte("x"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("PutBundle with a canceled context = %v, want context.Canceled", err)
	}
	noDriverError(t, "canceled", err)
}

func TestStoreSharedFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) broker.Store {
		path := filepath.Join(t.TempDir(), "seb.db")
		return storetest.Alternate(openStore(t, path, sqlite.Options{}), openStore(t, path, sqlite.Options{}))
	})
}

// Package pgtest gives each test its own database on a real PostgreSQL.
//
// The server is the one SEB_TEST_POSTGRES names (a URL whose user may
// create databases), else postgres://postgres@127.0.0.1:5432/postgres. When
// none answers, the test is skipped, or fails when SEB_REQUIRE_POSTGRES is
// set: make test starts a server of its own (scripts/postgres) when none
// is reachable and sets both.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server tried when SEB_TEST_POSTGRES is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Server returns the URL of the test server, skipping (or failing) the
// test when none answers.
func Server(t testing.TB) string {
	t.Helper()
	server := os.Getenv("SEB_TEST_POSTGRES")
	if server == "" {
		server = DefaultURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		if os.Getenv("SEB_REQUIRE_POSTGRES") != "" {
			t.Fatalf("no PostgreSQL at %s (SEB_REQUIRE_POSTGRES is set): %v", redact(server), err)
		}
		t.Skipf("no PostgreSQL at %s (set SEB_TEST_POSTGRES, or run make test): %v", redact(server), err)
	}
	conn.Close(ctx)
	return server
}

// Database creates an empty database on the test server for this test
// alone, drops it when the test ends, and returns its URL.
func Database(t testing.TB) string {
	t.Helper()
	server := Server(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	name := "seb_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create the test database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// redact hides a URL's password.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unreadable URL)"
	}
	return u.Redacted()
}

// Package sqlite opens the broker's store on one SQLite file, through the
// pure Go driver modernc.org/sqlite: the embedded default, which needs no
// setup. The records and their queries are package sqlstore's.
//
// The database runs in WAL mode with synchronous=FULL, so a committed
// certificate or audit entry survives a crash or power loss, and with
// foreign keys enforced. The schema is created and upgraded at Open by the
// forward-only migrations embedded from migrations/.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/seb-broker/seb/broker/sqlstore"
)

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Now is the clock for the times the store records on its own (when a
	// policy or revocation epoch began, when a migration ran); nil means
	// time.Now. Domain times are always passed in.
	Now func() time.Time
	// BusyTimeout is how long a statement waits for a lock held by another
	// process sharing the file before it fails; 0 means 5 seconds.
	BusyTimeout time.Duration
}

// Valid reports whether the options can be used.
func (o Options) Valid() error {
	if o.BusyTimeout < 0 {
		return errors.New("sqlite: Options.BusyTimeout is negative")
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.BusyTimeout == 0 {
		o.BusyTimeout = 5 * time.Second
	}
	return o
}

// A Store is the broker's store on a SQLite file.
//
// It holds two connection pools on the file. All writes go through the
// writer, which has exactly one connection: database/sql hands that
// connection to one caller at a time, so writers queue in Go (honouring
// their contexts) instead of failing with SQLITE_BUSY. Every write
// transaction also begins IMMEDIATE (the write lock is taken at BEGIN, not
// on the first write), so that against another process sharing the file it
// waits under busy_timeout rather than failing to upgrade a read lock.
// Reads go through a pool of query-only connections that WAL lets run
// beside the writer on the last committed snapshot.
type Store = sqlstore.Store

// ErrNewerSchema is returned by Open for a database that a newer seb has
// migrated: this code does not know its schema and will not touch it.
var ErrNewerSchema = sqlstore.ErrNewerSchema

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Dialect is SQLite's: ? parameters, the write lock taken by BEGIN
// IMMEDIATE, the migrations of migrations/.
func Dialect() sqlstore.Dialect {
	migrations, _ := fs.Sub(migrationFiles, "migrations")
	return sqlstore.Dialect{Name: "sqlite", Classify: classify, Migrations: migrations}
}

// Open opens the SQLite database at path, creating the file (mode 0600)
// if it does not exist, and applies the migrations it lacks. It refuses a
// database whose schema is newer than this code knows.
func Open(path string, opts Options) (*Store, error) {
	if err := opts.Valid(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: %q is not a file path", path)
	}
	// The database holds certificates and the audit log: keep it private.
	// SQLite gives its -wal and -shm files the same permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	f.Close()

	busy := strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)
	writer, err := sql.Open("sqlite", dsn(path,
		"_pragma=busy_timeout("+busy+")",
		"_pragma=foreign_keys(1)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(FULL)",
		"_txlock=immediate",
	))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %v", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)

	reader, err := sql.Open("sqlite", dsn(path,
		"_pragma=busy_timeout("+busy+")",
		"_pragma=foreign_keys(1)",
		"_query_only=1",
	))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open %s: %v", path, err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(readers)
	reader.SetMaxIdleConns(readers)

	ctx := context.Background()
	var mode string
	if err := writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("sqlite: open %s: %v", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("sqlite: open %s: journal mode is %q, not WAL (is the file on a network file system?)", path, mode)
	}
	s, err := sqlstore.New(ctx, writer, reader, Dialect(), sqlstore.Options{Now: opts.Now})
	if err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return s, nil
}

// dsn names the file as a SQLite URI, escaped so that no character of the
// path is read as a parameter, followed by the driver's parameters.
func dsn(path string, params ...string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + strings.Join(params, "&")
}

// classify says what a modernc.org/sqlite error means.
func classify(err error) sqlstore.Class {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return sqlstore.NotDriver
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return sqlstore.Unique
	case sqlite3.SQLITE_CONSTRAINT_CHECK:
		return sqlstore.Check
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return sqlstore.ForeignKey
	}
	switch se.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return sqlstore.Busy
	}
	return sqlstore.Other
}

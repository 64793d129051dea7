// Package sqlite implements broker.Store on one SQLite file, through the
// pure Go driver modernc.org/sqlite: the embedded default, which needs no
// setup.
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
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/seb-broker/seb/broker"
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
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.BusyTimeout == 0 {
		o.BusyTimeout = 5 * time.Second
	}
	return o
}

// A Store is a broker.Store kept in one SQLite file.
//
// It holds two connection pools on the file. All writes go through writer,
// which has exactly one connection: database/sql hands that connection to
// one caller at a time, so writers queue in Go (honouring their contexts)
// instead of failing with SQLITE_BUSY, and the single connection is the
// mutex that serializes AppendAudit and ConsumeCertificate within the
// process. Every write transaction also begins IMMEDIATE (the write lock is
// taken at BEGIN, not on the first write), so that against another process
// sharing the file it waits under busy_timeout rather than failing to
// upgrade a read lock. Reads go through reader, a pool of query-only
// connections that WAL lets run beside the writer on the last committed
// snapshot.
//
// Tx hands its function a Store bound to one write transaction: every
// read and write of that Store goes through it, so the function sees its
// own writes and commits them all or none.
type Store struct {
	writer *sql.DB
	reader *sql.DB
	now    func() time.Time
	// tx is set in the Store a Tx hands to its function.
	tx *sql.Tx
}

var _ broker.Store = (*Store)(nil)

// ErrNewerSchema is returned by Open for a database that a newer seb has
// migrated: this code does not know its schema and will not touch it.
var ErrNewerSchema = errors.New("the database schema is newer than this seb knows")

//go:embed migrations/*.sql
var migrationFiles embed.FS

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
	migrations, err := loadMigrations()
	if err != nil {
		return nil, err
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

	s := &Store{writer: writer, reader: reader, now: opts.Now}
	if err := s.init(path, migrations); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// dsn names the file as a SQLite URI, escaped so that no character of the
// path is read as a parameter, followed by the driver's parameters.
func dsn(path string, params ...string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + strings.Join(params, "&")
}

// init checks the journal mode and migrates the schema.
func (s *Store) init(path string, migrations []migration) error {
	ctx := context.Background()
	var mode string
	if err := s.writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: open %s: %v", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("sqlite: open %s: journal mode is %q, not WAL (is the file on a network file system?)", path, mode)
	}
	return s.migrate(ctx, path, migrations)
}

// conn is a *sql.DB or *sql.Tx.
type conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rd is what reads go through: the transaction inside a Tx, else the pool
// of readers.
func (s *Store) rd() conn {
	if s.tx != nil {
		return s.tx
	}
	return s.reader
}

// wr is what single-statement writes go through: the transaction inside a
// Tx, else the writer connection.
func (s *Store) wr() conn {
	if s.tx != nil {
		return s.tx
	}
	return s.writer
}

// Tx runs fn with a Store bound to one write transaction (BEGIN IMMEDIATE
// on the writer connection) and commits it if fn returns nil; an error of
// fn rolls everything back and is returned as it is. Inside fn, every
// method of that Store is atomic on its own as well (a failed one undoes
// only itself, so fn may go on after an expected ECONFLICT), and a nested
// Tx joins the outer one. While fn runs, other writers wait: fn must do
// no slow work and must not use any other Store.
func (s *Store) Tx(ctx context.Context, fn func(broker.Store) error) error {
	if s.tx != nil {
		return fn(s)
	}
	t := target{kind: "transaction"}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return formatError(err, t)
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(&Store{writer: s.writer, reader: s.reader, now: s.now, tx: tx}); err != nil {
		return err
	}
	return formatError(tx.Commit(), t)
}

// Close closes the database.
func (s *Store) Close() error {
	if s.tx != nil {
		return errors.New("sqlite: Close inside a transaction")
	}
	var errs []error
	if s.reader != nil {
		errs = append(errs, s.reader.Close())
	}
	if s.writer != nil {
		errs = append(errs, s.writer.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %v", err)
	}
	return nil
}

// A migration is one embedded schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the embedded migrations, which must be numbered
// 1, 2, 3… in their file names (0001_init.sql).
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("sqlite: migrations: %v", err)
	}
	var ms []migration
	for _, name := range names { // fs.Glob returns names sorted
		base := path.Base(name)
		prefix, _, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(prefix)
		if err != nil || v != len(ms)+1 {
			return nil, fmt.Errorf("sqlite: migration %s is not numbered %04d", base, len(ms)+1)
		}
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("sqlite: migration %s: %v", base, err)
		}
		ms = append(ms, migration{version: v, name: strings.TrimSuffix(base, ".sql"), sql: string(body)})
	}
	return ms, nil
}

// migrate applies the migrations the database lacks, each in its own
// transaction, reading the applied version inside that transaction so that
// two processes opening one file at once do not both apply a migration.
func (s *Store) migrate(ctx context.Context, path string, migrations []migration) error {
	if _, err := s.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("sqlite: open %s: create schema_migrations: %v", path, err)
	}
	known := len(migrations)
	var applied int
	if err := s.writer.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&applied); err != nil {
		return fmt.Errorf("sqlite: open %s: %v", path, err)
	}
	if applied > known {
		return fmt.Errorf("sqlite: open %s: %w: version %d, this seb knows %d: upgrade seb", path, ErrNewerSchema, applied, known)
	}
	for _, m := range migrations {
		if m.version <= applied {
			continue
		}
		err := s.write(ctx, target{kind: "migration", id: m.name}, func(tx *sql.Tx) error {
			var applied int
			if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&applied); err != nil {
				return err
			}
			switch {
			case applied > known: // another process migrated meanwhile
				return fmt.Errorf("%w: version %d, this seb knows %d: upgrade seb", ErrNewerSchema, applied, known)
			case applied >= m.version: // another process applied it meanwhile
				return nil
			}
			if applied != m.version-1 {
				return fmt.Errorf("the database schema is version %d, cannot apply migration %s", applied, m.name)
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply: %v", err)
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
				m.version, m.name, formatTime(s.now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlite: open %s: %w", path, err)
		}
	}
	return nil
}

// write runs fn in a write transaction (BEGIN IMMEDIATE on the writer
// connection) and commits it; fn's error rolls it back and is returned
// formatted for t. Inside a Tx, fn runs in a savepoint of it instead.
func (s *Store) write(ctx context.Context, t target, fn func(tx *sql.Tx) error) error {
	if s.tx != nil {
		return s.savepoint(ctx, t, fn)
	}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return formatError(err, t)
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(tx); err != nil {
		return formatError(err, t)
	}
	return formatError(tx.Commit(), t)
}

// savepoint runs fn inside the Store's transaction, in a savepoint that
// its error rolls back: one failed method undoes only what it wrote.
func (s *Store) savepoint(ctx context.Context, t target, fn func(tx *sql.Tx) error) error {
	if _, err := s.tx.ExecContext(ctx, "SAVEPOINT write"); err != nil {
		return formatError(err, t)
	}
	if err := fn(s.tx); err != nil {
		if _, rerr := s.tx.ExecContext(ctx, "ROLLBACK TO write"); rerr != nil {
			return errors.Join(formatError(err, t), formatError(rerr, t))
		}
		s.tx.ExecContext(ctx, "RELEASE write")
		return formatError(err, t)
	}
	_, err := s.tx.ExecContext(ctx, "RELEASE write")
	return formatError(err, t)
}

// timeLayout is how times are stored: UTC, fixed width, to the nanosecond,
// so that the text sorts as the times compare.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %v", s, err)
	}
	return t.UTC(), nil
}

// nullText stores empty bytes as NULL, and others as text (JSON columns).
func nullText(b []byte) sql.NullString {
	return sql.NullString{String: string(b), Valid: len(b) > 0}
}

// blob keeps a nil slice from being stored as NULL.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// limitClause returns a LIMIT clause for a filter's limit: none for 0.
func limitClause(limit int) (string, error) {
	switch {
	case limit < 0:
		return "", broker.Errorf(broker.EINVALID, "limit %d is negative", limit)
	case limit == 0:
		return "", nil
	default:
		return " LIMIT " + strconv.Itoa(limit), nil
	}
}

// Package sqlstore implements broker.Store on a SQL database through
// database/sql: the records, their queries and the migrations' runner,
// shared by the SQLite and PostgreSQL stores. A Dialect says what differs
// between them.
//
// Every write runs in a transaction that first takes the database's write
// lock (SQLite's BEGIN IMMEDIATE, a PostgreSQL advisory lock), so writes
// are one at a time across every process sharing the database, as on one
// SQLite file: a use case's reads inside its Tx see the latest committed
// records and nothing else writes until it commits. That makes the audit
// chain's order, a certificate's single use and a job's lease hold across
// replicas without a lock per record. Reads outside a Tx run beside the
// writer on the last committed records.
package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seb-broker/seb/broker"
)

// A Dialect is what differs between the databases a Store runs on.
type Dialect struct {
	// Name prefixes the store's internal errors: "sqlite", "postgres".
	Name string
	// Placeholder writes the nth (from 1) query parameter: ? or $n.
	Placeholder func(n int) string
	// Classify says what a driver error means.
	Classify func(error) Class
	// Lock, when set, is run first in every write transaction to take the
	// write lock that makes writes one at a time across processes.
	Lock string
	// Isolation is the isolation level of write transactions. It must let
	// a statement see what committed before it began: the write lock is
	// taken by the first statement, and what a transaction reads after
	// waiting for it must be the latest (PostgreSQL's read committed, even
	// when the database's default is another).
	Isolation sql.IsolationLevel
	// Clock, when set, reads the database's clock: processes sharing the
	// database compare lease expiries each by its own clock, so one far
	// from the database's must not lead, nor start (CheckClock).
	Clock string
	// LeadLock, when set, tries to take the session lock of the process
	// that leads the background work, answering one boolean; the database
	// drops it when that process's connection dies. Without it every
	// process leads. LeadUnlock gives it up.
	LeadLock, LeadUnlock string
	// Migrations holds the schema's migrations, numbered 1, 2, 3… in
	// their file names (0001_init.sql), each one SQL script.
	Migrations fs.FS
}

// A Class is what a driver error means to the Store contract.
type Class int

const (
	NotDriver  Class = iota // not the driver's: passed on, wrapped
	Other                   // the driver's, nothing the contract names
	Unique                  // a uniqueness violation
	Check                   // a CHECK constraint
	ForeignKey              // a dangling reference
	Busy                    // a lock not taken in time
)

// Options configure New.
type Options struct {
	// Now is the clock for the times the store records on its own (when a
	// policy or revocation epoch began, when a migration ran); nil means
	// time.Now. Domain times are always passed in.
	Now func() time.Time
	// MaxClockSkew is how far Now may be from the database's clock (with a
	// Dialect.Clock); 0 means one second.
	MaxClockSkew time.Duration
}

// A Store is a broker.Store kept in a SQL database.
//
// Tx hands its function a Store bound to one write transaction: every
// read and write of that Store goes through it, so the function sees its
// own writes and commits them all or none.
type Store struct {
	// writer runs write transactions; reader runs reads outside one. They
	// may be one pool.
	writer, reader *sql.DB
	d              *dialect
	now            func() time.Time
	// tx is set in the Store a Tx hands to its function.
	tx *sql.Tx
	// lead holds the connection that holds the lead, if this process
	// leads.
	lead *leadership
	// maxSkew bounds how far now may be from the database's clock.
	maxSkew time.Duration
}

type leadership struct {
	mu   sync.Mutex
	conn *sql.Conn
}

var _ broker.Store = (*Store)(nil)

// dialect is a Dialect with its queries rewritten once.
type dialect struct {
	Dialect
	queries sync.Map // query with ? → query in the dialect
}

// ErrNewerSchema is returned by New for a database that a newer seb has
// migrated: this code does not know its schema and will not touch it.
var ErrNewerSchema = errors.New("the database schema is newer than this seb knows")

// New returns a Store on the database, migrated to the schema this code
// knows. Writes go through writer, reads outside a transaction through
// reader. Closing the Store closes both. It refuses a database whose
// schema is newer than this code knows.
func New(ctx context.Context, writer, reader *sql.DB, d Dialect, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxClockSkew <= 0 {
		opts.MaxClockSkew = time.Second
	}
	s := &Store{writer: writer, reader: reader, d: &dialect{Dialect: d}, now: opts.Now, lead: &leadership{}, maxSkew: opts.MaxClockSkew}
	migrations, err := loadMigrations(d)
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx, migrations); err != nil {
		return nil, err
	}
	return s, nil
}

// conn is what a query runs on: the pool, a transaction, or either with
// its queries rewritten for the dialect.
type conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// bound runs queries written with ? placeholders on c in the dialect.
type bound struct {
	c conn
	d *dialect
}

func (b bound) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return b.c.ExecContext(ctx, b.d.rewrite(query), args...)
}

func (b bound) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return b.c.QueryContext(ctx, b.d.rewrite(query), args...)
}

func (b bound) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return b.c.QueryRowContext(ctx, b.d.rewrite(query), args...)
}

// rewrite writes a query's ? placeholders in the dialect. The queries are
// seb's own, with no ? inside a literal or an identifier.
func (d *dialect) rewrite(query string) string {
	if d.Placeholder == nil {
		return query
	}
	if q, ok := d.queries.Load(query); ok {
		return q.(string)
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString(d.Placeholder(n))
			continue
		}
		b.WriteRune(r)
	}
	d.queries.Store(query, b.String())
	return b.String()
}

// rd is what reads go through: the transaction inside a Tx, else the pool
// of readers.
func (s *Store) rd() conn {
	if s.tx != nil {
		return bound{s.tx, s.d}
	}
	return bound{s.reader, s.d}
}

// Tx runs fn with a Store bound to one write transaction, which holds the
// write lock from its start, and commits it if fn returns nil; an error of
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
	tx, err := s.begin(ctx)
	if err != nil {
		return s.formatError(err, t)
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(&Store{writer: s.writer, reader: s.reader, d: s.d, now: s.now, tx: tx, lead: s.lead, maxSkew: s.maxSkew}); err != nil {
		return err
	}
	return s.formatError(tx.Commit(), t)
}

// begin starts a write transaction holding the write lock.
func (s *Store) begin(ctx context.Context) (*sql.Tx, error) {
	var opts *sql.TxOptions
	if s.d.Isolation != sql.LevelDefault {
		opts = &sql.TxOptions{Isolation: s.d.Isolation}
	}
	tx, err := s.writer.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	if s.d.Lock != "" {
		if _, err := tx.ExecContext(ctx, s.d.Lock); err != nil {
			tx.Rollback()
			return nil, err
		}
	}
	return tx, nil
}

// CheckClock returns an error when this process's clock is further than
// MaxClockSkew from the database's, measured against the middle of the
// round trip; nil without a Dialect.Clock.
func (s *Store) CheckClock(ctx context.Context) error {
	if s.d.Clock == "" {
		return nil
	}
	before := s.now()
	var theirs time.Time
	if err := s.reader.QueryRowContext(ctx, s.d.Clock).Scan(&theirs); err != nil {
		return s.formatError(err, target{kind: "the database's clock"})
	}
	after := s.now()
	ours := before.Add(after.Sub(before) / 2)
	if skew := ours.Sub(theirs); skew > s.maxSkew || -skew > s.maxSkew {
		return fmt.Errorf("this machine's clock is %s off the database's (at most %s): processes sharing the database compare leases by their clocks; keep them synchronized (NTP)",
			skew.Round(time.Millisecond), s.maxSkew)
	}
	return nil
}

// Lead reports whether this process leads the background work of the
// processes sharing the database (sweeping expired leases): one at a
// time, taken by another within one try once the leader's connection
// dies. A process whose clock has drifted from the database's gives the
// lead up: it would sweep leases others still hold. Without a LeadLock
// every process leads.
func (s *Store) Lead(ctx context.Context) bool {
	if s.d.LeadLock == "" {
		return true
	}
	s.lead.mu.Lock()
	defer s.lead.mu.Unlock()
	if s.CheckClock(ctx) != nil {
		s.giveUpLead()
		return false
	}
	if s.lead.conn != nil {
		if s.lead.conn.PingContext(ctx) == nil {
			return true
		}
		s.lead.conn.Close() // the database dropped the lock with it
		s.lead.conn = nil
	}
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return false
	}
	var took bool
	if err := conn.QueryRowContext(ctx, s.d.LeadLock).Scan(&took); err != nil || !took {
		conn.Close()
		return false
	}
	s.lead.conn = conn
	return true
}

// giveUpLead releases the lead, if this process holds it: the
// connection goes back to the pool (the caller holds lead.mu), so the
// lock is given up first, and a connection that cannot is discarded.
func (s *Store) giveUpLead() {
	c := s.lead.conn
	if c == nil {
		return
	}
	s.lead.conn = nil
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.ExecContext(ctx, s.d.LeadUnlock); err != nil {
		c.Raw(func(any) error { return driver.ErrBadConn }) // closes it: the session, and its lock, end
	}
	c.Close()
}

// Close closes the database, giving up the lead.
func (s *Store) Close() error {
	if s.tx != nil {
		return fmt.Errorf("%s: Close inside a transaction", s.d.Name)
	}
	var errs []error
	s.lead.mu.Lock()
	if s.lead.conn != nil {
		errs = append(errs, s.lead.conn.Close())
		s.lead.conn = nil
	}
	s.lead.mu.Unlock()
	if s.reader != nil && s.reader != s.writer {
		errs = append(errs, s.reader.Close())
	}
	if s.writer != nil {
		errs = append(errs, s.writer.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: close: %v", s.d.Name, err)
	}
	return nil
}

// A migration is one embedded schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the dialect's migrations, which must be numbered
// 1, 2, 3… in their file names (0001_init.sql).
func loadMigrations(d Dialect) ([]migration, error) {
	names, err := fs.Glob(d.Migrations, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("%s: migrations: %v", d.Name, err)
	}
	var ms []migration
	for _, name := range names { // fs.Glob returns names sorted
		base := path.Base(name)
		prefix, _, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(prefix)
		if err != nil || v != len(ms)+1 {
			return nil, fmt.Errorf("%s: migration %s is not numbered %04d", d.Name, base, len(ms)+1)
		}
		body, err := fs.ReadFile(d.Migrations, name)
		if err != nil {
			return nil, fmt.Errorf("%s: migration %s: %v", d.Name, base, err)
		}
		ms = append(ms, migration{version: v, name: strings.TrimSuffix(base, ".sql"), sql: string(body)})
	}
	return ms, nil
}

// migrate applies the migrations the database lacks, each in its own
// write transaction, reading the applied version inside that transaction
// so that two processes opening one database at once do not both apply a
// migration.
func (s *Store) migrate(ctx context.Context, migrations []migration) error {
	known := len(migrations)
	for _, m := range migrations {
		done := false
		err := s.write(ctx, target{kind: "migration", id: m.name}, func(tx conn) error {
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version    INTEGER PRIMARY KEY,
				name       TEXT NOT NULL,
				applied_at TEXT NOT NULL
			)`); err != nil {
				return err
			}
			var applied int
			if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&applied); err != nil {
				return err
			}
			switch {
			case applied > known:
				return fmt.Errorf("%w: version %d, this seb knows %d: upgrade seb", ErrNewerSchema, applied, known)
			case applied >= m.version: // applied before, or by another process meanwhile
				done = applied == known
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
			return fmt.Errorf("%s: open: %w", s.d.Name, err)
		}
		if done {
			break
		}
	}
	if known == 0 {
		return fmt.Errorf("%s: no migrations", s.d.Name)
	}
	return nil
}

// write runs fn in a write transaction and commits it; fn's error rolls
// it back and is returned formatted for t. Inside a Tx, fn runs in a
// savepoint of it instead.
func (s *Store) write(ctx context.Context, t target, fn func(tx conn) error) error {
	if s.tx != nil {
		return s.savepoint(ctx, t, fn)
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.formatError(err, t)
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(bound{tx, s.d}); err != nil {
		return s.formatError(err, t)
	}
	return s.formatError(tx.Commit(), t)
}

// exec runs one write statement as write runs fn.
func (s *Store) exec(ctx context.Context, t target, query string, args ...any) error {
	return s.write(ctx, t, func(tx conn) error {
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	})
}

// savepoint runs fn inside the Store's transaction, in a savepoint that
// its error rolls back: one failed method undoes only what it wrote.
func (s *Store) savepoint(ctx context.Context, t target, fn func(tx conn) error) error {
	if _, err := s.tx.ExecContext(ctx, "SAVEPOINT write"); err != nil {
		return s.formatError(err, t)
	}
	if err := fn(bound{s.tx, s.d}); err != nil {
		if _, rerr := s.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT write"); rerr != nil {
			return errors.Join(s.formatError(err, t), s.formatError(rerr, t))
		}
		s.tx.ExecContext(ctx, "RELEASE SAVEPOINT write")
		return s.formatError(err, t)
	}
	_, err := s.tx.ExecContext(ctx, "RELEASE SAVEPOINT write")
	return s.formatError(err, t)
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

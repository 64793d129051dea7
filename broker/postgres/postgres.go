// Package postgres opens the broker's store on PostgreSQL, through pgx:
// the store several seb replicas share. The records and their queries are
// package sqlstore's, as on SQLite.
//
// Writes are one at a time across every replica: each write transaction
// first takes one transaction-scoped advisory lock (WriteLockKey), as a
// SQLite file's writer does. A use case therefore reads the latest
// committed records inside its transaction, and the audit chain, a
// certificate's single use, a job's lease and its fencing token hold
// across replicas. Reads outside a transaction run beside the writer.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/seb-broker/seb/broker/sqlstore"
)

// WriteLockKey is the advisory lock every write transaction holds: any
// other program taking it stops seb's writes while it holds it.
const WriteLockKey = 0x5eb0_0001

// LeadLockKey is the advisory lock the replica that runs the background
// work holds on a connection of its own.
const LeadLockKey = 0x5eb0_0002

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Now is the clock for the times the store records on its own; nil
	// means time.Now.
	Now func() time.Time
	// MaxConns bounds the connections to the database; 0 means 16.
	MaxConns int
	// Password, when set, is the user's password (kept out of the URL,
	// which shows in messages).
	Password string
	// MaxClockSkew is how far this machine's clock (Now) may be from the
	// database's: replicas compare lease expiries each by its own clock,
	// so one far off would end another's live jobs, or keep a dead
	// runner's. Further at start, Open refuses; later, the replica gives up
	// the lead of the sweeps. 0 means one second.
	MaxClockSkew time.Duration
}

// A Store is the broker's store on PostgreSQL.
type Store = sqlstore.Store

// ErrNewerSchema is returned by Open for a database that a newer seb has
// migrated.
var ErrNewerSchema = sqlstore.ErrNewerSchema

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Dialect is PostgreSQL's: $n parameters, the write lock an advisory
// lock, the migrations of migrations/.
func Dialect() sqlstore.Dialect {
	migrations, _ := fs.Sub(migrationFiles, "migrations")
	return sqlstore.Dialect{
		Name:        "postgres",
		Placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
		Classify:    classify,
		Lock:        "SELECT pg_advisory_xact_lock(" + strconv.Itoa(WriteLockKey) + ")",
		Isolation:   sql.LevelReadCommitted,
		LeadLock:    "SELECT pg_try_advisory_lock(" + strconv.Itoa(LeadLockKey) + ")",
		LeadUnlock:  "SELECT pg_advisory_unlock(" + strconv.Itoa(LeadLockKey) + ")",
		Clock:       "SELECT clock_timestamp()",
		Migrations:  migrations,
	}
}

// Open connects to the database url names (postgres://user@host/db, with
// the password in the URL, PGPASSWORD or a .pgpass file) and applies the
// migrations it lacks. It refuses a database whose schema is newer than
// this code knows. The error never shows the password.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if opts.MaxConns < 0 {
		return nil, errors.New("postgres: Options.MaxConns is negative")
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = 16
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's parse errors name the URL with its password masked.
		return nil, fmt.Errorf("postgres: %v", err)
	}
	if opts.Password != "" {
		cfg.Password = opts.Password
	}
	// Operators find seb's connections in pg_stat_activity by this name;
	// the URL may give each replica its own. A replica that stops in the
	// middle of a transaction (partitioned, paused) would hold the write
	// lock until the server noticed: the server ends a transaction idle
	// for a minute, and probes a silent client's connection, so the lock
	// and the lead move on. The URL may set each otherwise.
	for name, value := range map[string]string{
		"application_name":                    "seb",
		"idle_in_transaction_session_timeout": "60s",
		"tcp_keepalives_idle":                 "30",
		"tcp_keepalives_interval":             "10",
		"tcp_keepalives_count":                "3",
	} {
		if cfg.RuntimeParams[name] == "" {
			cfg.RuntimeParams[name] = value
		}
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	where := fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %v", where, err)
	}
	s, err := sqlstore.New(ctx, db, db, Dialect(), sqlstore.Options{Now: opts.Now, MaxClockSkew: opts.MaxClockSkew})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w (%s)", err, where)
	}
	if err := s.CheckClock(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("postgres: %s: %w", where, err)
	}
	return s, nil
}

// classify says what a pgx error means.
func classify(err error) sqlstore.Class {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return sqlstore.Unique
		case "23514":
			return sqlstore.Check
		case "23503":
			return sqlstore.ForeignKey
		case "55P03", "40P01", "40001": // lock not available, deadlock, serialization
			return sqlstore.Busy
		}
		return sqlstore.Other
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	if errors.As(err, &ne) || errors.As(err, &ce) || pgconn.SafeToRetry(err) || errors.Is(err, pgx.ErrTxClosed) {
		return sqlstore.Other
	}
	return sqlstore.NotDriver
}

package postgres_test

import (
	"context"
	"errors"
	neturl "net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/broker/postgres"
	"github.com/seb-broker/seb/broker/storetest"
	"github.com/seb-broker/seb/internal/pgtest"
)

func open(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) broker.Store { return open(t, pgtest.Database(t)) })
}

// TestStoreTwoReplicas: two replicas' stores on one database pass the
// suite, its concurrency tests contending across them.
func TestStoreTwoReplicas(t *testing.T) {
	storetest.Run(t, func(t *testing.T) broker.Store {
		url := pgtest.Database(t)
		return storetest.Alternate(open(t, url), open(t, url))
	})
}

// TestReplicasMigrateAtOnce: replicas starting together on an empty
// database migrate it once.
func TestReplicasMigrateAtOnce(t *testing.T) {
	url := pgtest.Database(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := postgres.Open(context.Background(), url, postgres.Options{})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	raw := rawConn(t, url)
	var n, distinct int
	if err := raw.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&n, &distinct); err != nil || n < 2 || n != distinct {
		t.Errorf("%d migrations recorded (%d distinct), %v", n, distinct, err)
	}
}

func rawConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestRefuseNewerSchema(t *testing.T) {
	url := pgtest.Database(t)
	open(t, url)
	raw := rawConn(t, url)
	if _, err := raw.Exec(context.Background(), "INSERT INTO schema_migrations VALUES (999, 'future', 'x')"); err != nil {
		t.Fatal(err)
	}
	_, err := postgres.Open(context.Background(), url, postgres.Options{})
	if !errors.Is(err, postgres.ErrNewerSchema) || !strings.Contains(err.Error(), "999") {
		t.Errorf("Open error = %v, want ErrNewerSchema naming version 999", err)
	}
}

// TestOpenHidesPassword: a refused connection's error names the server,
// never the password.
func TestOpenHidesPassword(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://seb:hunter2-secret@127.0.0.1:1/seb?connect_timeout=2", postgres.Options{})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("Open error = %v", err)
	}
	_, err = postgres.Open(context.Background(), "postgres://seb:hunter2-secret@127.0.0.1:1/seb?sslmode=bogus", postgres.Options{})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open error = %v", err)
	}
}

func noDriverError(t *testing.T, what string, err error) {
	t.Helper()
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		t.Errorf("%s: error %v leaks the driver's *pgconn.PgError", what, err)
	}
}

func TestDriverErrorsDoNotLeak(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Database(t)
	s := open(t, url)
	storetest.DriverErrorsHidden(t, s, func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe)
	})

	// Another program holds the write lock: a write waits, and gives up
	// with its context, as an internal error.
	raw := rawConn(t, url)
	tx, err := raw.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", postgres.WriteLockKey); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = s.SetProposalState(short, "p1", broker.ProposalPending, broker.ProposalCertified, time.Now())
	cancel()
	noDriverError(t, "locked database", err)
	if err == nil {
		t.Error("a write went through while another held the write lock")
	}
	tx.Rollback(ctx)
	if err := s.SetProposalState(ctx, "p1", broker.ProposalPending, broker.ProposalCertified, time.Now()); err != nil {
		t.Errorf("once the lock is released: %v", err)
	}
}

func TestAuditLogIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Database(t)
	s := open(t, url)
	_, err := s.AppendAudit(ctx, func(*broker.AuditEntry) (*broker.AuditEntry, error) {
		return &broker.AuditEntry{Seq: 1, Time: time.Now(), Actor: "a", Action: "b", Hash: "h"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := rawConn(t, url)
	for _, stmt := range []string{"UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"} {
		if _, err := raw.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want it refused", stmt, err)
		}
	}
}

func TestContextCanceled(t *testing.T) {
	s := open(t, pgtest.Database(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.PutBundle(ctx, "d", []byte("x"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("PutBundle with a canceled context = %v, want context.Canceled", err)
	}
	noDriverError(t, "canceled", err)
}

// TestOneLeader: of the replicas sharing a database one leads the
// background work at a time, and when it goes another takes the lead.
func TestOneLeader(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Database(t)
	a, b := open(t, url), open(t, url)
	if !a.Lead(ctx) {
		t.Fatal("the first replica did not take the lead")
	}
	if b.Lead(ctx) || !a.Lead(ctx) {
		t.Fatal("two replicas lead at once, or the leader lost the lead")
	}
	// The leader's connection dies (its process was killed): the
	// database drops the lock, and another takes the lead.
	raw := rawConn(t, url)
	if _, err := raw.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND objid = $1 AND granted`, postgres.LeadLockKey); err != nil {
		t.Fatal(err)
	}
	// The backend ends asynchronously: b takes the lead at a later try, as
	// a replica does at its next sweep.
	for deadline := time.Now().Add(10 * time.Second); !b.Lead(ctx); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no replica took the lead once the leader's connection died")
		}
	}
	if a.Lead(ctx) {
		t.Error("the old leader leads again beside the new one")
	}
	b.Close()
	if !a.Lead(ctx) {
		t.Error("the lead was not given up when the leader closed")
	}
}

// TestWritesSeeWhatCommittedWhileTheyWaited: a write transaction reads,
// once it holds the write lock, what another writer committed while it
// waited for it, even when the database's default isolation would keep
// the snapshot from before (repeatable read): a revoke-all committed on
// another replica is seen by the execution waiting behind it.
func TestWritesSeeWhatCommittedWhileTheyWaited(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Database(t)
	open(t, url) // migrated
	raw := rawConn(t, url)
	var db string
	if err := raw.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(ctx, "ALTER DATABASE "+db+" SET default_transaction_isolation = 'repeatable read'"); err != nil {
		t.Fatal(err)
	}
	s := open(t, url) // its connections take the new default
	other, err := raw.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", postgres.WriteLockKey); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "INSERT INTO revocation_epochs (workspace, epoch, updated_at) VALUES ('w', 5, 'x')"); err != nil {
		t.Fatal(err)
	}
	seen := make(chan int64, 1)
	go func() {
		var epoch int64
		err := s.Tx(ctx, func(tx broker.Store) error {
			var err error
			epoch, err = tx.RevocationEpoch(ctx, "w")
			return err
		})
		if err != nil {
			t.Error(err)
		}
		seen <- epoch
	}()
	time.Sleep(300 * time.Millisecond) // the Tx waits for the lock
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if epoch := <-seen; epoch != 5 {
		t.Errorf("the waiting transaction read revocation epoch %d, not the 5 committed while it waited", epoch)
	}
}

// TestClockSkewRefused: a replica whose clock is far from the database's
// refuses to open the store.
func TestClockSkewRefused(t *testing.T) {
	url := pgtest.Database(t)
	late := func() time.Time { return time.Now().Add(-time.Minute) }
	_, err := postgres.Open(context.Background(), url, postgres.Options{Now: late})
	if err == nil || !strings.Contains(err.Error(), "clock is -1m0") || !strings.Contains(err.Error(), "NTP") {
		t.Errorf("a clock a minute late: %v", err)
	}
	// A clock that drifts after the start gives up the lead of the sweeps,
	// and another replica takes it.
	var drift atomic.Int64
	drifting := func() time.Time { return time.Now().Add(time.Duration(drift.Load())) }
	a, err := postgres.Open(context.Background(), url, postgres.Options{Now: drifting})
	if err != nil {
		t.Fatalf("a clock on time: %v", err)
	}
	defer a.Close()
	b := open(t, url)
	ctx := context.Background()
	if !a.Lead(ctx) || b.Lead(ctx) {
		t.Fatal("a does not lead alone")
	}
	drift.Store(int64(3 * time.Second))
	if a.Lead(ctx) {
		t.Error("a replica whose clock drifted 3 s kept the lead")
	}
	if !b.Lead(ctx) {
		t.Error("the lead a gave up was not taken")
	}
}

// TestSessionSettings: seb's connections carry their defaults (named seb
// in pg_stat_activity), and the URL overrides them: a transaction left
// idle past the URL's idle_in_transaction_session_timeout is ended by the
// server, and with it the write lock it held.
func TestSessionSettings(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Database(t)
	s := open(t, url)
	raw := rawConn(t, url)
	var named int
	if err := raw.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'seb'").Scan(&named); err != nil || named == 0 {
		t.Errorf("%d of seb's connections are named seb (%v)", named, err)
	}
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("idle_in_transaction_session_timeout", "300ms")
	u.RawQuery = q.Encode()
	short := open(t, u.String())
	err = short.Tx(ctx, func(tx broker.Store) error {
		time.Sleep(time.Second) // a replica stopped mid-transaction
		_, err := tx.RevocationEpoch(ctx, "w")
		return err
	})
	if err == nil {
		t.Fatal("a transaction idle past the timeout committed")
	}
	// The lock it held is free: another replica writes at once.
	done, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.BumpRevocationEpoch(done, "w"); err != nil {
		t.Errorf("a write after the idle transaction ended: %v", err)
	}
}

package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

// testStateVersions: each state is a new version with the next serial and
// its digest; the current one is the latest; workspaces are apart; a Tx
// that fails stores none.
func testStateVersions(t *testing.T, s broker.Store) {
	ctx := context.Background()
	if cur, err := s.CurrentState(ctx, "ws"); err != nil || cur != nil {
		t.Fatalf("CurrentState of a new workspace = %q, %v; want nil, nil", cur, err)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i, state := range []string{`{"serial":1}`, `{"serial":2}`, `{"serial":2}`} {
		v, err := s.PutState(ctx, "ws", []byte(state), at)
		if err != nil {
			t.Fatal(err)
		}
		if v.Serial != i+1 || v.Workspace != "ws" || len(v.Digest) != len("sha256:")+64 {
			t.Errorf("version %d = %+v", i+1, v)
		}
		if cur, err := s.CurrentState(ctx, "ws"); err != nil || string(cur) != state {
			t.Errorf("CurrentState = %q, %v; want %q", cur, err, state)
		}
	}
	if cur, err := s.CurrentState(ctx, "other"); err != nil || cur != nil {
		t.Errorf("another workspace's state = %q, %v", cur, err)
	}
	if _, err := s.PutState(ctx, "../etc", []byte("{}"), at); broker.ErrorCode(err) != broker.EINVALID {
		t.Errorf("PutState with a bad workspace name = %v, want EINVALID", err)
	}
	failed := fmt.Errorf("the use case failed")
	err := s.Tx(ctx, func(tx broker.Store) error {
		if _, err := tx.PutState(ctx, "ws", []byte(`{"serial":9}`), at); err != nil {
			return err
		}
		return failed
	})
	if err != failed {
		t.Fatalf("Tx = %v", err)
	}
	if cur, _ := s.CurrentState(ctx, "ws"); string(cur) != `{"serial":2}` {
		t.Errorf("a rolled-back state was kept: %q", cur)
	}
}

// testStateVersionsConcurrently: concurrent writers never share a serial
// or lose a version.
func testStateVersionsConcurrently(t *testing.T, s broker.Store) {
	ctx := context.Background()
	const n = 16
	var wg sync.WaitGroup
	serials := make(chan int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.PutState(ctx, "ws", []byte(fmt.Sprintf(`{"writer":%d}`, i)), time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			serials <- v.Serial
		}()
	}
	wg.Wait()
	close(serials)
	seen := map[int]bool{}
	for serial := range serials {
		if seen[serial] {
			t.Errorf("serial %d given twice", serial)
		}
		seen[serial] = true
	}
	for i := 1; i <= n; i++ {
		if !seen[i] {
			t.Errorf("serial %d missing", i)
		}
	}
}

// testSessions: a session is found by its id hash until it expires, ended
// by DeleteSession, and expired ones are swept when another is created.
func testSessions(t *testing.T, s broker.Store) {
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	a := &broker.Session{IDHash: "h-a", TokenHash: "tok-1", CSRF: "csrf-a", Expires: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, a, now); err != nil {
		t.Fatal(err)
	}
	got, err := s.Session(ctx, "h-a", now.Add(time.Minute))
	if err != nil || *got != *a {
		t.Fatalf("Session = %+v, %v; want %+v", got, err, a)
	}
	if err := s.CreateSession(ctx, a, now); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("a session id twice = %v, want ECONFLICT", err)
	}
	if err := s.CreateSession(ctx, &broker.Session{IDHash: "h-x"}, now); broker.ErrorCode(err) != broker.EINVALID {
		t.Errorf("a session without its token = %v, want EINVALID", err)
	}
	if _, err := s.Session(ctx, "h-a", now.Add(2*time.Hour)); broker.ErrorCode(err) != broker.ENOTFOUND {
		t.Errorf("an expired session = %v, want ENOTFOUND", err)
	}
	if _, err := s.Session(ctx, "h-nope", now); broker.ErrorCode(err) != broker.ENOTFOUND {
		t.Errorf("an unknown session = %v, want ENOTFOUND", err)
	}
	// Creating one after a's expiry sweeps a.
	later := now.Add(2 * time.Hour)
	b := &broker.Session{IDHash: "h-b", TokenHash: "tok-1", CSRF: "csrf-b", Expires: later.Add(time.Hour)}
	if err := s.CreateSession(ctx, b, later); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, "h-a", now); broker.ErrorCode(err) != broker.ENOTFOUND {
		t.Errorf("an expired session outlived the sweep: %v", err)
	}
	if err := s.DeleteSession(ctx, "h-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, "h-b", later); broker.ErrorCode(err) != broker.ENOTFOUND {
		t.Errorf("a deleted session = %v, want ENOTFOUND", err)
	}
	if err := s.DeleteSession(ctx, "h-b"); err != nil {
		t.Errorf("deleting a session twice: %v", err)
	}
}

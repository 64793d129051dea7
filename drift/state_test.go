package drift_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/drift"
)

func TestFileStateStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := drift.NewFileStateStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := s.Current(ctx, "prod"); err != nil || cur != nil {
		t.Fatalf("empty workspace: %q, %v", cur, err)
	}
	v1, err := s.Put(ctx, "prod", []byte(`{"serial":1}`))
	if err != nil || v1.Serial != 1 || !strings.HasPrefix(v1.Digest, "sha256:") {
		t.Fatalf("put: %+v, %v", v1, err)
	}
	v2, _ := s.Put(ctx, "prod", []byte(`{"serial":2}`))
	if cur, _ := s.Current(ctx, "prod"); string(cur) != `{"serial":2}` || v2.Serial != 2 {
		t.Errorf("current %s, version %+v", cur, v2)
	}
	history, _ := s.History("prod")
	if len(history) != 2 || history[0] != v1 || history[1] != v2 {
		t.Errorf("history %+v", history)
	}
	if other, _ := s.Current(ctx, "staging"); other != nil {
		t.Error("workspaces share state")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "prod", "*.tfstate"))
	for _, f := range files {
		if info, _ := os.Stat(f); info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, info.Mode().Perm())
		}
	}
	// A state file altered on disk is refused, not served.
	os.WriteFile(files[len(files)-1], []byte(`{"serial":666}`), 0o600)
	if _, err := s.Current(ctx, "prod"); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("tampered state: %v", err)
	}
	for _, bad := range []string{"", "../etc", "Prod", "a/b", strings.Repeat("a", 65)} {
		if _, err := s.Put(ctx, bad, nil); err == nil {
			t.Errorf("workspace %q accepted", bad)
		}
	}
}

func TestFileStateStoreLock(t *testing.T) {
	ctx := context.Background()
	s, err := drift.NewFileStateStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	// Another workspace is independent.
	other, err := s.Lock(ctx, "staging")
	if err != nil {
		t.Fatal(err)
	}
	other()
	// The same workspace waits, and gives up with its context.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(short, "prod"); err == nil {
		t.Fatal("a second lock on a held workspace succeeded")
	}
	var wg sync.WaitGroup
	got := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		u, err := s.Lock(ctx, "prod")
		if err == nil {
			close(got)
			u()
		}
	}()
	select {
	case <-got:
		t.Fatal("lock taken while held")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	wg.Wait()
	select {
	case <-got:
	default:
		t.Fatal("waiter never got the lock")
	}
	// Another store on the same directory — another seb process — waits
	// for the file lock.
	dir := t.TempDir()
	a, _ := drift.NewFileStateStore(dir)
	b, _ := drift.NewFileStateStore(dir)
	ua, err := a.Lock(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	short2, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if _, err := b.Lock(short2, "prod"); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second process: %v", err)
	}
	ua()
	ub, err := b.Lock(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	ub()
}

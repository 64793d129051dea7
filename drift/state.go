package drift

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A StateStore keeps each workspace's Terraform state for the broker:
// agents never hold it. Every write is a new version; nothing is
// overwritten.
type StateStore interface {
	// Lock blocks until the caller holds the workspace's lock, or ctx ends.
	// The returned function releases it.
	Lock(ctx context.Context, workspace string) (unlock func(), err error)
	// Current returns the latest state, or nil if the workspace has none.
	Current(ctx context.Context, workspace string) ([]byte, error)
	// Put stores state as the workspace's new current version.
	Put(ctx context.Context, workspace string, state []byte) (StateVersion, error)
}

// A StateVersion is one stored state of a workspace.
type StateVersion struct {
	Workspace string
	Serial    int    // 1, 2, 3, … per workspace
	Digest    string // sha256:<hex> of the state bytes
}

var workspaceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidWorkspace reports whether name can name a workspace: lower-case
// letters, digits, '-' and '_', at most 64, starting with a letter or digit.
func ValidWorkspace(name string) error {
	if !workspaceName.MatchString(name) {
		return fmt.Errorf("workspace name %q: use lower-case letters, digits, - and _ (at most 64)", name)
	}
	return nil
}

// FileStateStore keeps states as files: <dir>/<workspace>/<serial>-<hex>.tfstate,
// written atomically with 0600 permissions. Its lock holds within the
// process and, through flock, across processes sharing the directory.
type FileStateStore struct {
	dir string

	mu    sync.Mutex
	locks map[string]chan struct{}
}

var _ StateStore = (*FileStateStore)(nil)

// NewFileStateStore returns a store under dir, creating it (0700).
func NewFileStateStore(dir string) (*FileStateStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	return &FileStateStore{dir: dir, locks: map[string]chan struct{}{}}, nil
}

// Lock implements StateStore.
func (s *FileStateStore) Lock(ctx context.Context, workspace string) (func(), error) {
	if err := ValidWorkspace(workspace); err != nil {
		return nil, err
	}
	s.mu.Lock()
	ch, ok := s.locks[workspace]
	if !ok {
		ch = make(chan struct{}, 1)
		s.locks[workspace] = ch
	}
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("lock workspace %s: %w", workspace, ctx.Err())
	}
	release := func() { <-ch }
	dir, err := s.workspaceDir(workspace)
	if err != nil {
		release()
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		release()
		return nil, fmt.Errorf("lock workspace %s: %w", workspace, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			release()
			return nil, fmt.Errorf("lock workspace %s: %w", workspace, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			release()
			return nil, fmt.Errorf("lock workspace %s: held by another process: %w", workspace, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			f.Close()
			release()
		})
	}, nil
}

// Current implements StateStore.
func (s *FileStateStore) Current(ctx context.Context, workspace string) ([]byte, error) {
	versions, err := s.History(workspace)
	if err != nil || len(versions) == 0 {
		return nil, err
	}
	latest := versions[len(versions)-1]
	data, err := os.ReadFile(s.versionPath(latest))
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", workspace, err)
	}
	if digestOf(data) != latest.Digest {
		return nil, fmt.Errorf("state of %s, serial %d: the file does not match its digest %s", workspace, latest.Serial, latest.Digest)
	}
	return data, nil
}

// Put implements StateStore.
func (s *FileStateStore) Put(ctx context.Context, workspace string, state []byte) (StateVersion, error) {
	versions, err := s.History(workspace)
	if err != nil {
		return StateVersion{}, err
	}
	v := StateVersion{Workspace: workspace, Serial: 1, Digest: digestOf(state)}
	if len(versions) > 0 {
		v.Serial = versions[len(versions)-1].Serial + 1
	}
	dir, err := s.workspaceDir(workspace)
	if err != nil {
		return StateVersion{}, err
	}
	tmp, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return StateVersion{}, fmt.Errorf("store state of %s: %w", workspace, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(state); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Link, not rename: an existing version is never replaced.
		err = os.Link(tmp.Name(), s.versionPath(v))
	}
	if err != nil {
		return StateVersion{}, fmt.Errorf("store state of %s: %w", workspace, err)
	}
	return v, nil
}

// History returns the workspace's state versions, oldest first.
func (s *FileStateStore) History(workspace string) ([]StateVersion, error) {
	if err := ValidWorkspace(workspace); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, workspace))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state history of %s: %w", workspace, err)
	}
	var versions []StateVersion
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".tfstate")
		serial, hexDigest, found := strings.Cut(name, "-")
		n, err := strconv.Atoi(serial)
		if !ok || !found || err != nil {
			continue
		}
		versions = append(versions, StateVersion{Workspace: workspace, Serial: n, Digest: "sha256:" + hexDigest})
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i].Serial < versions[j].Serial })
	return versions, nil
}

func (s *FileStateStore) workspaceDir(workspace string) (string, error) {
	dir := filepath.Join(s.dir, workspace)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("state of %s: %w", workspace, err)
	}
	return dir, nil
}

func (s *FileStateStore) versionPath(v StateVersion) string {
	return filepath.Join(s.dir, v.Workspace, fmt.Sprintf("%08d-%s.tfstate", v.Serial, strings.TrimPrefix(v.Digest, "sha256:")))
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

package drift_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/seb-broker/seb/drift"
)

// fakeTerraform is a stand-in for the Terraform binary: it answers
// `terraform version -json` as Terraform 1.5.7 would, and fails otherwise.
const fakeTerraform = `#!/bin/sh
if [ "$1" = version ] && [ "$2" = -json ]; then
  echo '{"terraform_version":"1.5.7"}'
  exit 0
fi
echo "fake terraform: $*" >&2
exit 1
`

// writeTerraform writes the fake binary at path, creating its directory,
// with the given mode, and returns path.
func writeTerraform(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(fakeTerraform), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
	return path
}

// cachedBinary returns where FindTerraform looks for the pinned version in
// cacheDir.
func cachedBinary(cacheDir string) string {
	return filepath.Join(cacheDir, "terraform", drift.PinnedTerraformVersion, "terraform")
}

// sandbox is one test's directories: PATH holds only pathDir, and cacheDir
// is an empty cache.
type sandbox struct {
	root, pathDir, cacheDir string
}

func newSandbox(t *testing.T) sandbox {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the fake terraform is a shell script")
	}
	root := t.TempDir()
	s := sandbox{root: root, pathDir: filepath.Join(root, "bin"), cacheDir: filepath.Join(root, "cache")}
	for _, dir := range []string{s.pathDir, s.cacheDir} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", s.pathDir)
	t.Setenv("SEB_CACHE_DIR", filepath.Join(root, "default-cache"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(root, "xdg-cache"))
	t.Setenv("HOME", filepath.Join(root, "home"))
	return s
}

func TestFindTerraform(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the sandbox and returns the options and the path
		// FindTerraform should return ("" when it should fail).
		setup   func(t *testing.T, s sandbox) (opts drift.FindOptions, want string)
		wantErr []string // substrings of the error; "<cache>" is the sandbox's cache directory
	}{
		{
			name: "explicit path",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				bin := writeTerraform(t, filepath.Join(s.root, "tools", "my-terraform"), 0o755)
				writeTerraform(t, filepath.Join(s.pathDir, "terraform"), 0o755)
				return drift.FindOptions{Path: bin, CacheDir: s.cacheDir}, bin
			},
		},
		{
			name: "explicit relative path",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				bin := writeTerraform(t, filepath.Join(s.root, "tools", "tofu"), 0o755)
				t.Chdir(s.root)
				return drift.FindOptions{Path: filepath.Join("tools", "tofu")}, bin
			},
		},
		{
			name: "explicit path that does not exist, terraform on PATH",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				writeTerraform(t, filepath.Join(s.pathDir, "terraform"), 0o755)
				writeTerraform(t, cachedBinary(s.cacheDir), 0o755)
				return drift.FindOptions{Path: filepath.Join(s.root, "missing", "terraform"), CacheDir: s.cacheDir}, ""
			},
			wantErr: []string{"missing/terraform", "not an executable file"},
		},
		{
			name: "explicit path not executable",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				bin := writeTerraform(t, filepath.Join(s.root, "tools", "terraform"), 0o644)
				writeTerraform(t, filepath.Join(s.pathDir, "terraform"), 0o755)
				return drift.FindOptions{Path: bin, CacheDir: s.cacheDir}, ""
			},
			wantErr: []string{"tools/terraform", "not an executable file"},
		},
		{
			name: "explicit path is a directory",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				writeTerraform(t, filepath.Join(s.pathDir, "terraform"), 0o755)
				return drift.FindOptions{Path: s.pathDir, CacheDir: s.cacheDir}, ""
			},
			wantErr: []string{"not an executable file"},
		},
		{
			name: "on PATH",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				bin := writeTerraform(t, filepath.Join(s.pathDir, "terraform"), 0o755)
				return drift.FindOptions{CacheDir: s.cacheDir}, bin
			},
		},
		{
			name: "PATH before the cache",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				bin := writeTerraform(t, filepath.Join(s.pathDir, "terraform"), 0o755)
				writeTerraform(t, cachedBinary(s.cacheDir), 0o755)
				return drift.FindOptions{CacheDir: s.cacheDir}, bin
			},
		},
		{
			name: "later PATH entry",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				other := filepath.Join(s.root, "other-bin")
				bin := writeTerraform(t, filepath.Join(other, "terraform"), 0o755)
				t.Setenv("PATH", s.pathDir+string(os.PathListSeparator)+other)
				return drift.FindOptions{CacheDir: s.cacheDir}, bin
			},
		},
		{
			name: "in the cache, PATH empty",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				t.Setenv("PATH", "")
				return drift.FindOptions{CacheDir: s.cacheDir}, writeTerraform(t, cachedBinary(s.cacheDir), 0o755)
			},
		},
		{
			name: "in the cache, not executable on PATH",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				writeTerraform(t, filepath.Join(s.pathDir, "terraform"), 0o644)
				return drift.FindOptions{CacheDir: s.cacheDir}, writeTerraform(t, cachedBinary(s.cacheDir), 0o755)
			},
		},
		{
			name: "in the default cache from SEB_CACHE_DIR",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				t.Setenv("PATH", "")
				t.Setenv("SEB_CACHE_DIR", s.cacheDir)
				return drift.FindOptions{}, writeTerraform(t, cachedBinary(s.cacheDir), 0o755)
			},
		},
		{
			name: "cached version other than the pinned one",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				t.Setenv("PATH", "")
				writeTerraform(t, filepath.Join(s.cacheDir, "terraform", "1.6.0", "terraform"), 0o755)
				return drift.FindOptions{CacheDir: s.cacheDir}, ""
			},
			wantErr: []string{"make terraform"},
		},
		{
			name: "nowhere, no download",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				t.Setenv("PATH", "")
				return drift.FindOptions{CacheDir: s.cacheDir}, ""
			},
			wantErr: []string{"no terraform binary", "make terraform", "<cache>/terraform/" + drift.PinnedTerraformVersion},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			opts, want := tt.setup(t, s)

			got, err := drift.FindTerraform(context.Background(), opts)

			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("found %q, want an error", got)
				}
				for _, w := range tt.wantErr {
					w = strings.ReplaceAll(w, "<cache>", s.cacheDir)
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v, want %s", err, want)
			}
			if got != want {
				t.Errorf("found %q, want %q", got, want)
			}
			if !filepath.IsAbs(got) {
				t.Errorf("found %q, want an absolute path", got)
			}
		})
	}
}

// TestFindTerraformNoDownloadLeavesCache checks that a failed search without
// Download leaves the cache directory as it was.
func TestFindTerraformNoDownloadLeavesCache(t *testing.T) {
	s := newSandbox(t)
	t.Setenv("PATH", "")

	if _, err := drift.FindTerraform(context.Background(), drift.FindOptions{CacheDir: s.cacheDir}); err == nil {
		t.Fatal("found a terraform binary in an empty sandbox")
	}

	entries, err := os.ReadDir(s.cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("the cache directory now holds %v, want it empty", entries)
	}
}

// TestFindTerraformRelativeCacheDir checks that a relative cache directory
// (CacheDir or SEB_CACHE_DIR) is taken relative to the working directory,
// as any path is, and does not stop the search.
func TestFindTerraformRelativeCacheDir(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s sandbox) (opts drift.FindOptions, want string)
	}{
		{
			name: "CacheDir holds the binary",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				t.Setenv("PATH", "")
				return drift.FindOptions{CacheDir: "cache"}, writeTerraform(t, cachedBinary(s.cacheDir), 0o755)
			},
		},
		{
			name: "SEB_CACHE_DIR holds the binary",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				t.Setenv("PATH", "")
				t.Setenv("SEB_CACHE_DIR", "cache")
				return drift.FindOptions{}, writeTerraform(t, cachedBinary(s.cacheDir), 0o755)
			},
		},
		{
			name: "terraform on PATH",
			setup: func(t *testing.T, s sandbox) (drift.FindOptions, string) {
				return drift.FindOptions{CacheDir: "cache"}, writeTerraform(t, filepath.Join(s.pathDir, "terraform"), 0o755)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			t.Chdir(s.root) // "cache" is s.cacheDir
			opts, want := tt.setup(t, s)

			got, err := drift.FindTerraform(context.Background(), opts)

			if err != nil {
				t.Fatalf("error %v, want %s", err, want)
			}
			if got != want {
				t.Errorf("found %q, want %q", got, want)
			}
		})
	}
}

func TestDefaultCacheDir(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
		goos string // run only on this GOOS, if set
	}{
		{
			name: "SEB_CACHE_DIR",
			env:  map[string]string{"SEB_CACHE_DIR": "/srv/seb-cache", "XDG_CACHE_HOME": "/xdg"},
			want: "/srv/seb-cache",
		},
		{
			name: "XDG_CACHE_HOME",
			env:  map[string]string{"SEB_CACHE_DIR": "", "XDG_CACHE_HOME": "/xdg"},
			want: "/xdg/seb",
			goos: "linux",
		},
		{
			name: "HOME",
			env:  map[string]string{"SEB_CACHE_DIR": "", "XDG_CACHE_HOME": "", "HOME": "/home/someone"},
			want: "/home/someone/.cache/seb",
			goos: "linux",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.goos != "" && runtime.GOOS != tt.goos {
				t.Skipf("the user cache directory is elsewhere on %s", runtime.GOOS)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}

			got, err := drift.DefaultCacheDir()

			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("DefaultCacheDir() = %q, want %q", got, tt.want)
			}
		})
	}
}

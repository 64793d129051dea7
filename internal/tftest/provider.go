package tftest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// The sandbox provider's source address and version, as configurations
// require it. The .invalid host can never collide with a public registry.
const (
	ProviderSource  = "seb.invalid/seb/sandbox"
	ProviderVersion = "0.1.0"
)

// mirror is the filesystem mirror the package's tests use, set by
// MainWithProvider.
var mirror string

// MainWithProvider runs a test package's tests with the sandbox provider in
// a filesystem mirror: SEB_PROVIDER_MIRROR when `make test` built one, else
// a fresh build into a temporary directory removed afterwards. Call it from
// TestMain.
func MainWithProvider(m *testing.M) int {
	if dir := os.Getenv("SEB_PROVIDER_MIRROR"); dir != "" {
		mirror = dir
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "seb-provider-mirror-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := BuildProvider(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mirror = dir
	return m.Run()
}

// BuildProvider builds the sandbox provider into the filesystem mirror at
// dir, in the layout Terraform's filesystem_mirror reads.
func BuildProvider(dir string) error {
	target := filepath.Join(dir, ProviderSource, ProviderVersion, runtime.GOOS+"_"+runtime.GOARCH,
		"terraform-provider-sandbox_v"+ProviderVersion)
	cmd := exec.Command("go", "build", "-o", target, "-ldflags", "-X main.version="+ProviderVersion,
		"github.com/seb-broker/seb/fixtures/provider")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build the sandbox provider: %w", err)
	}
	return nil
}

// CLIConfig is a Terraform CLI configuration that installs providers only
// from the filesystem mirror at dir: nothing is ever downloaded.
func CLIConfig(dir string) string {
	return fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path = %q\n  }\n}\n", dir)
}

// Mirror returns the test package's provider mirror; MainWithProvider must
// have run.
func Mirror(t testing.TB) string {
	t.Helper()
	if mirror == "" {
		t.Fatal("tftest: no provider mirror; call tftest.MainWithProvider from TestMain")
	}
	return mirror
}

// Package drift runs Terraform and OpenTofu for seb. FindTerraform locates
// the binary every run uses, with hc-install's filesystem sources first and
// the pinned release download only as a last resort.
package drift

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-version"
	install "github.com/hashicorp/hc-install"
	"github.com/hashicorp/hc-install/fs"
	"github.com/hashicorp/hc-install/product"
	"github.com/hashicorp/hc-install/releases"
	"github.com/hashicorp/hc-install/src"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// PinnedTerraformVersion is the Terraform release seb falls back to when no
// binary is found: v1.5.7, the last release under the MPL. `make terraform`
// builds it from the Go module proxy into the cache directory; on a machine
// with internet access FindTerraform downloads the official release instead.
const PinnedTerraformVersion = "1.5.7"

// FindOptions configure FindTerraform.
type FindOptions struct {
	// Path is an explicit binary (SEB_TERRAFORM), Terraform or OpenTofu. When
	// set it is the only candidate: a wrong explicit path is an error, never
	// a silent fallback to another binary.
	Path string
	// CacheDir holds binaries built by `make terraform` or downloaded here
	// (<CacheDir>/terraform/<version>/terraform). Empty means
	// DefaultCacheDir().
	CacheDir string
	// Download allows downloading the pinned release when no binary is found
	// on PATH or in the cache.
	Download bool
}

// DefaultCacheDir returns SEB_CACHE_DIR, else the user cache directory's
// "seb" folder (~/.cache/seb on Linux), which `make terraform` also uses.
func DefaultCacheDir() (string, error) {
	if dir := os.Getenv("SEB_CACHE_DIR"); dir != "" {
		return filepath.Abs(dir)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	return filepath.Join(base, "seb"), nil
}

// FindTerraform returns the absolute path of the Terraform binary to use:
// the explicit path, else `terraform` on PATH, else the pinned version in
// the cache directory, else (with Download) the pinned release downloaded
// into the cache. The error lists every place it looked.
func FindTerraform(ctx context.Context, opts FindOptions) (string, error) {
	if opts.Path != "" {
		path, err := filepath.Abs(opts.Path)
		if err != nil {
			return "", fmt.Errorf("terraform binary %q: %w", opts.Path, err)
		}
		found, err := install.NewInstaller().Ensure(ctx, []src.Source{&fs.AnyVersion{ExactBinPath: path}})
		if err != nil {
			return "", fmt.Errorf("terraform binary %q is not an executable file", opts.Path)
		}
		return found, nil
	}
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		dir, err := DefaultCacheDir()
		if err != nil {
			return "", err
		}
		cacheDir = dir
	}
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return "", fmt.Errorf("terraform cache %q: %w", opts.CacheDir, err)
	}
	pinnedDir := filepath.Join(cacheDir, "terraform", PinnedTerraformVersion)
	sources := []src.Source{
		&fs.AnyVersion{Product: &product.Terraform},
		&fs.AnyVersion{ExactBinPath: filepath.Join(pinnedDir, product.Terraform.BinaryName())},
	}
	if opts.Download {
		if err := os.MkdirAll(pinnedDir, 0o755); err != nil {
			return "", fmt.Errorf("terraform cache: %w", err)
		}
		sources = append(sources, &releases.ExactVersion{
			Product:    product.Terraform,
			Version:    version.Must(version.NewVersion(PinnedTerraformVersion)),
			InstallDir: pinnedDir,
		})
	}
	path, err := install.NewInstaller().Ensure(ctx, sources)
	if err != nil {
		return "", errors.Join(
			fmt.Errorf("no terraform binary: not set in SEB_TERRAFORM, not on PATH, not in %s", pinnedDir),
			fmt.Errorf("run `make terraform` to build Terraform %s from the Go module proxy: %w", PinnedTerraformVersion, err))
	}
	return path, nil
}

// MirrorFromCLIConfig returns the filesystem mirror a Terraform CLI
// configuration installs providers from (its provider_installation's one
// filesystem_mirror), as an absolute path. A configuration without
// exactly one is an error: seb installs providers from a mirror only.
func MirrorFromCLIConfig(path string) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("terraform CLI configuration: %w", err)
	}
	file, diags := hclparse.NewParser().ParseHCL(src, path)
	if diags.HasErrors() {
		return "", fmt.Errorf("terraform CLI configuration: %s", diags.Error())
	}
	var config struct {
		Installation []struct {
			Mirrors []struct {
				Path string `hcl:"path"`
			} `hcl:"filesystem_mirror,block"`
			Rest hcl.Body `hcl:",remain"`
		} `hcl:"provider_installation,block"`
		Rest hcl.Body `hcl:",remain"`
	}
	if diags := gohcl.DecodeBody(file.Body, nil, &config); diags.HasErrors() {
		return "", fmt.Errorf("terraform CLI configuration: %s", diags.Error())
	}
	var mirrors []string
	for _, inst := range config.Installation {
		for _, m := range inst.Mirrors {
			mirrors = append(mirrors, m.Path)
		}
	}
	if len(mirrors) != 1 {
		return "", fmt.Errorf("terraform CLI configuration %s: want exactly one provider_installation filesystem_mirror, found %d", path, len(mirrors))
	}
	return filepath.Abs(mirrors[0])
}

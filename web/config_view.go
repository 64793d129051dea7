package web

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
)

// A configFile is one file of a proposal's configuration, as reviewers
// read it: its path and lines, or why it is not shown.
type configFile struct {
	Path  string
	Lines []string
	// Withheld says why the text is not shown (binary, too large).
	Withheld string
}

// maxShownFileBytes bounds a file shown whole on a proposal page.
const maxShownFileBytes = 256 << 10

// configFiles unpacks a stored bundle, as the runner would, and returns
// its files, sorted by path: what reviewers certify the digest of.
func (s *Server) configFiles(ctx context.Context, digest string) ([]configFile, error) {
	bundle, err := s.opts.Records.Bundle(ctx, digest)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "seb-view-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := drift.ExtractBundle(bytes.NewReader(bundle), dir, drift.DefaultBundleLimits); err != nil {
		return nil, broker.Errorf(broker.EINVALID, "the stored configuration cannot be read: %v", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var files []configFile
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f := configFile{Path: filepath.ToSlash(p)}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			f.Withheld = "not a regular file"
		} else if info.Size() > maxShownFileBytes {
			f.Withheld = "larger than 256 KiB"
		} else {
			data, err := root.ReadFile(p)
			if err != nil {
				return err
			}
			if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
				f.Withheld = "not text"
			} else {
				f.Lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			}
		}
		files = append(files, f)
		return nil
	})
	return files, err
}

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

// Certificate fates: what became of a certified proposal's certificate.
const (
	fateUnused      = "unused"
	fateExecuting   = "executing"
	fateApplied     = "applied"
	fateRefused     = "refused at execution"
	fateFailed      = "failed at execution"
	fateInterrupted = "interrupted at execution"
	fateRevoked     = "revoked"
	fateLapsed      = "no longer executable"
)

// certificateFate says what became of a certified proposal's
// certificate: unused, executing, applied, refused at execution (live
// state moved on), failed or interrupted at execution, revoked, or no
// longer executable (expired, or from an old policy or revocation epoch);
// "" for a proposal that is not certified.
func (s *Server) certificateFate(ctx context.Context, p *broker.Proposal) (string, error) {
	if p.State != broker.ProposalCertified {
		return "", nil
	}
	cert, err := s.opts.Records.ProposalCertificate(ctx, p.ID)
	if err != nil {
		return "", err
	}
	if cert.ConsumedBy != "" {
		e, err := s.opts.Records.Execution(ctx, cert.ConsumedBy)
		if err != nil {
			return "", err
		}
		switch e.State {
		case broker.ExecutionSucceeded:
			return fateApplied, nil
		case broker.ExecutionRefused:
			return fateRefused, nil
		case broker.ExecutionFailed:
			return fateFailed, nil
		case broker.ExecutionInterrupted:
			return fateInterrupted, nil
		}
		return fateExecuting, nil
	}
	if cert.RevokedAt != nil {
		return fateRevoked, nil
	}
	switch err := s.opts.Broker.Standing(ctx, cert); broker.ErrorCode(err) {
	case "":
		return fateUnused, nil
	case broker.EINVALID:
		return fateLapsed, nil
	default:
		return "", err
	}
}

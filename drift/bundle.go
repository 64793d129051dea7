package drift

// A configuration bundle is a gzip-compressed tar archive of a Terraform
// module tree. Its identity is the digest of the exact compressed bytes.
// Bundles come from agents and are hostile input: ExtractBundle unpacks
// them through an os.Root, so no entry can reach outside the target
// directory, and refuses anything but plain files and directories.

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// BundleLimits bound what a bundle may unpack to. A zero field means the
// field of DefaultBundleLimits; a negative field is an error.
type BundleLimits struct {
	// MaxFiles bounds the number of entries, files and directories alike.
	MaxFiles int
	// MaxBytes bounds the total size of all files once unpacked.
	MaxBytes int64
	// MaxFileBytes bounds the size of any one file.
	MaxFileBytes int64
	// MaxArchiveBytes bounds the compressed archive as read.
	MaxArchiveBytes int64
	// MaxPathDepth bounds the number of components of an entry's path
	// ("a/b/main.tf" has three).
	MaxPathDepth int
}

// DefaultBundleLimits are the limits used for a zero BundleLimits field:
// 10,000 entries, 256 MiB unpacked, 64 MiB per file, a 64 MiB compressed
// archive and paths at most 32 components deep.
var DefaultBundleLimits = BundleLimits{
	MaxFiles:        10_000,
	MaxBytes:        256 << 20,
	MaxFileBytes:    64 << 20,
	MaxArchiveBytes: 64 << 20,
	MaxPathDepth:    32,
}

// withDefaults fills zero fields from DefaultBundleLimits and refuses
// negative ones.
func (l BundleLimits) withDefaults() (BundleLimits, error) {
	if l.MaxFiles < 0 || l.MaxBytes < 0 || l.MaxFileBytes < 0 || l.MaxArchiveBytes < 0 || l.MaxPathDepth < 0 {
		return l, fmt.Errorf("bundle limits: negative limit in %+v", l)
	}
	d := DefaultBundleLimits
	if l.MaxFiles == 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxFileBytes == 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxArchiveBytes == 0 {
		l.MaxArchiveBytes = d.MaxArchiveBytes
	}
	if l.MaxPathDepth == 0 {
		l.MaxPathDepth = d.MaxPathDepth
	}
	return l, nil
}

// InvalidBundleError reports a bundle, or a directory being bundled, that
// seb refuses. It is the sender's fault, never the broker's, and its text
// is safe to show to the sender. Entry is the entry's name as the archive
// spells it, or "" when the archive as a whole is at fault.
type InvalidBundleError struct {
	Entry  string
	Reason string
	// Err is the underlying error, if any (for example gzip.ErrChecksum).
	Err error
}

func (e *InvalidBundleError) Error() string {
	if e.Entry == "" {
		return "bundle: " + e.Reason
	}
	return fmt.Sprintf("bundle entry %q: %s", e.Entry, e.Reason)
}

func (e *InvalidBundleError) Unwrap() error { return e.Err }

func bundleRefuse(entry, format string, args ...any) *InvalidBundleError {
	return &InvalidBundleError{Entry: entry, Reason: fmt.Sprintf(format, args...)}
}

// BundleDigest returns the identity of a bundle: "sha256:" and the hex
// SHA-256 of the exact compressed bytes.
func BundleDigest(archive []byte) string {
	sum := sha256.Sum256(archive)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func bundleDigestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

const (
	// bundleMaxName bounds a whole entry path, and bundleMaxComponent one
	// component of it (NAME_MAX on common file systems).
	bundleMaxName      = 4096
	bundleMaxComponent = 255
	// bundleEntryOverhead is what the tar stream may carry per entry
	// besides file contents (header, PAX records, padding) before
	// ExtractBundle calls the stream a gzip bomb.
	bundleEntryOverhead = 8 << 10
	bundleFileMode      = 0o644
	bundleExecMode      = 0o755
	bundleDirMode       = 0o755
)

var (
	errBundleArchiveTooLarge = errors.New("compressed archive over the limit")
	errBundleStreamTooLarge  = errors.New("tar stream over the limit")
)

// ExtractBundle unpacks the gzip-compressed tar archive read from r into
// dir, which must be an existing, empty directory, and returns the bundle's
// digest: that of every compressed byte read, up to the end of r.
//
// Every file operation goes through an os.Root opened on dir, so nothing
// is ever created outside it. Only regular files and directories are
// unpacked: files get mode 0644, or 0755 if the header has any execute
// bit; directories 0755; owners, times and special bits are ignored. An
// entry is refused, and so is the whole bundle, when its path is absolute,
// has a Windows drive letter, a ".." component, a NUL byte or a backslash,
// is not clean ("a//b", "a/./b"; a leading "./" is accepted and dropped),
// is deeper than limits.MaxPathDepth, repeats an earlier entry or turns a
// file into a directory or back, or lies inside a ".terraform" directory
// or names state (*.tfstate*); when it is a link, a device, a FIFO or any
// other type; or when it takes the bundle over a limit. PAX global headers
// (written by git archive) carry no file and are skipped.
//
// On any error ExtractBundle removes everything it created, leaving dir
// empty, and returns the error. Refusals of the bundle's content are
// *InvalidBundleError, naming the entry and the reason; any other error
// (reading r, writing dir) is the broker's.
func ExtractBundle(r io.Reader, dir string, limits BundleLimits) (digest string, err error) {
	limits, err = limits.withDefaults()
	if err != nil {
		return "", err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("extract bundle: %w", err)
	}
	defer root.Close()
	if err := bundleCheckEmpty(root); err != nil {
		return "", fmt.Errorf("extract bundle: %s: %w", dir, err)
	}
	x := &bundleExtractor{
		root:    root,
		limits:  limits,
		seen:    map[string]bundleEntryKind{},
		created: map[string]bool{},
	}
	digest, err = x.run(r)
	if err != nil {
		if cerr := x.removeCreated(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("extract bundle: clean up %s: %w", dir, cerr))
		}
		return "", err
	}
	return digest, nil
}

// bundleCheckEmpty returns an error unless the root's directory is empty.
func bundleCheckEmpty(root *os.Root) error {
	f, err := root.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return err
	}
	if len(names) > 0 {
		return errors.New("directory is not empty")
	}
	return nil
}

type bundleEntryKind int

const (
	bundleNone        bundleEntryKind = iota
	bundleImplicitDir                 // made as the parent of a later entry
	bundleExplicitDir                 // a directory entry of the archive
	bundleFile
)

// bundleExtractor is the state of one ExtractBundle call.
type bundleExtractor struct {
	root    *os.Root
	limits  BundleLimits
	seen    map[string]bundleEntryKind // every path made so far (at most MaxFiles)
	created map[string]bool            // top-level names made, to remove on failure
	entries int
	total   int64 // file bytes written so far

	archive *bundleArchiveReader
	gz      *bundleErrReader     // nil until the gzip header is read
	stream  *bundleStreamLimiter // the decompressed tar stream
}

func (x *bundleExtractor) run(r io.Reader) (string, error) {
	x.archive = &bundleArchiveReader{r: r, h: sha256.New(), max: x.limits.MaxArchiveBytes}
	zr, err := gzip.NewReader(x.archive)
	if err != nil {
		return "", x.streamError(err)
	}
	x.gz = &bundleErrReader{r: zr}
	x.stream = &bundleStreamLimiter{r: x.gz, max: bundleStreamCeiling(x.limits)}
	tr := tar.NewReader(x.stream)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			// archive/tar also ends quietly where the stream does between
			// entries; a real end is two zero blocks.
			if x.stream.zeros < 2*512 {
				return "", bundleRefuse("", "tar archive is truncated (no end-of-archive marker)")
			}
			break
		}
		if err != nil {
			return "", x.streamError(err)
		}
		x.entries++
		if x.entries > x.limits.MaxFiles {
			return "", bundleRefuse("", "more than %d entries (the limit)", x.limits.MaxFiles)
		}
		if err := x.extractEntry(tr, hdr); err != nil {
			return "", err
		}
	}
	if err := x.drain(); err != nil {
		return "", err
	}
	return bundleDigestOf(x.archive.h), nil
}

// bundleStreamCeiling bounds the decompressed tar stream: every file's
// bytes plus a generous allowance per entry for headers. Beyond it the
// archive is a gzip bomb, whatever its entries say.
func bundleStreamCeiling(l BundleLimits) int64 {
	const most = 1 << 62
	files := int64(l.MaxFiles) + 2
	if files > most/(2*bundleEntryOverhead) {
		return most
	}
	overhead := files*bundleEntryOverhead + 1<<20
	if l.MaxBytes > most-overhead {
		return most
	}
	return l.MaxBytes + overhead
}

// drain reads what follows the tar archive's end to the end of the gzip
// stream and of r, so the digest covers every byte. Only zero padding
// (as tar tools write) may follow the archive.
func (x *bundleExtractor) drain() error {
	buf := make([]byte, 32<<10)
	for {
		n, err := x.stream.Read(buf)
		if slices.ContainsFunc(buf[:n], func(b byte) bool { return b != 0 }) {
			return bundleRefuse("", "data after the end of the tar archive")
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return x.streamError(err)
		}
	}
	if _, err := io.Copy(io.Discard, x.archive); err != nil {
		return x.streamError(err)
	}
	return nil
}

// streamError explains a failure to read the bundle, looking first at the
// layer where it happened: the compressed input, the gzip stream, the
// decompressed stream, then the tar archive.
func (x *bundleExtractor) streamError(err error) error {
	if aerr := x.archive.err; aerr != nil {
		if aerr == errBundleArchiveTooLarge {
			return &InvalidBundleError{Reason: fmt.Sprintf("compressed archive is larger than %d bytes (the limit)", x.limits.MaxArchiveBytes), Err: aerr}
		}
		return fmt.Errorf("extract bundle: read: %w", aerr)
	}
	if x.gz == nil {
		// gzip.NewReader failed on the first header.
		switch {
		case err == io.EOF:
			return &InvalidBundleError{Reason: "archive is empty", Err: err}
		case errors.Is(err, gzip.ErrHeader):
			return &InvalidBundleError{Reason: "not gzip-compressed (a bundle is a gzip-compressed tar archive)", Err: err}
		}
		return bundleGzipError(err)
	}
	if x.gz.err != nil {
		if errors.Is(x.gz.err, gzip.ErrHeader) {
			// Only a later member's header can be bad here.
			return &InvalidBundleError{Reason: "data after the end of the gzip stream", Err: x.gz.err}
		}
		return bundleGzipError(x.gz.err)
	}
	if x.stream.err != nil {
		return &InvalidBundleError{Reason: fmt.Sprintf("unpacks to more than %d bytes of tar data (a gzip bomb?)", x.stream.max), Err: x.stream.err}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &InvalidBundleError{Reason: "tar archive is truncated", Err: err}
	}
	return &InvalidBundleError{Reason: fmt.Sprintf("tar archive is corrupt: %v", err), Err: err}
}

func bundleGzipError(err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &InvalidBundleError{Reason: "gzip stream is truncated", Err: err}
	case errors.Is(err, gzip.ErrChecksum):
		return &InvalidBundleError{Reason: "gzip stream is corrupt (checksum mismatch)", Err: err}
	}
	return &InvalidBundleError{Reason: fmt.Sprintf("gzip stream is corrupt (%v)", err), Err: err}
}

// extractEntry checks one tar entry and makes it under the root.
func (x *bundleExtractor) extractEntry(tr io.Reader, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // archive-wide metadata (git archive writes one), no file
	}
	isDir := hdr.Typeflag == tar.TypeDir
	name, reason := bundleCleanName(hdr.Name, isDir, x.limits.MaxPathDepth)
	if reason != "" {
		return bundleRefuse(hdr.Name, "%s", reason)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if name == "" {
			return nil // "./": the root itself, which exists
		}
		return x.makeDir(hdr.Name, name)
	case tar.TypeReg:
		return x.makeFile(tr, hdr, name)
	case tar.TypeSymlink:
		return bundleRefuse(hdr.Name, "links are not allowed in a bundle (symbolic link to %q)", hdr.Linkname)
	case tar.TypeLink:
		return bundleRefuse(hdr.Name, "links are not allowed in a bundle (hard link to %q)", hdr.Linkname)
	}
	return bundleRefuse(hdr.Name, "%s entries are not allowed in a bundle (only regular files and directories)", bundleTypeName(hdr.Typeflag))
}

func bundleTypeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeCont:
		return "contiguous file"
	case tar.TypeGNUSparse:
		return "GNU sparse file"
	}
	return fmt.Sprintf("type %q", t)
}

// bundleCleanName checks an entry's name and returns it cleaned (leading
// "./" and a directory's trailing "/" dropped; "" for the root itself), or
// the reason it is refused.
func bundleCleanName(raw string, isDir bool, maxDepth int) (name, reason string) {
	switch {
	case raw == "":
		return "", "empty name"
	case strings.IndexByte(raw, 0) >= 0:
		return "", "name contains a NUL byte"
	case bundleHasDrive(raw) || bundleHasDrive(bundleTrimDotSlash(raw)):
		return "", "path starts with a Windows drive letter"
	case strings.HasPrefix(raw, "/"):
		return "", "absolute path"
	case strings.Contains(raw, `\`):
		return "", "name contains a backslash"
	case len(raw) > bundleMaxName:
		return "", fmt.Sprintf("path is longer than %d bytes", bundleMaxName)
	}
	name = bundleTrimDotSlash(raw)
	if isDir {
		name = strings.TrimSuffix(name, "/")
	}
	if name == "" || name == "." {
		if isDir {
			return "", ""
		}
		return "", "a file entry names the bundle's root"
	}
	parts := strings.Split(name, "/")
	if slices.Contains(parts, "..") {
		return "", "path leaves the bundle"
	}
	if !isDir && strings.HasSuffix(name, "/") {
		return "", "name ends in / but the entry is not a directory"
	}
	for _, p := range parts {
		switch {
		case p == "" || p == ".":
			return "", `path is not clean (an empty or "." component)`
		case len(p) > bundleMaxComponent:
			return "", fmt.Sprintf("a path component is longer than %d bytes", bundleMaxComponent)
		case p == ".terraform":
			return "", ".terraform directories are not allowed in a bundle (seb runs terraform init itself)"
		}
	}
	if len(parts) > maxDepth {
		return "", fmt.Sprintf("path is deeper than %d components (the limit)", maxDepth)
	}
	if bundleIsState(parts[len(parts)-1]) {
		return "", "state files are not allowed in a bundle (the broker owns each workspace's state)"
	}
	return name, ""
}

func bundleTrimDotSlash(s string) string {
	for strings.HasPrefix(s, "./") {
		s = s[2:]
	}
	return s
}

func bundleHasDrive(s string) bool {
	return len(s) >= 2 && s[1] == ':' && 'a' <= s[0]|0x20 && s[0]|0x20 <= 'z'
}

// bundleIsState reports whether a base name is Terraform state (*.tfstate*:
// terraform.tfstate, its backups, terraform.tfstate.d).
func bundleIsState(base string) bool { return strings.Contains(base, ".tfstate") }

// makeParents makes the missing parent directories of name, refusing a
// parent that is a file.
func (x *bundleExtractor) makeParents(entry, name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		parent := name[:i]
		switch x.seen[parent] {
		case bundleFile:
			return bundleRefuse(entry, "parent %q is a file", parent)
		case bundleNone:
			if err := x.reserve(entry); err != nil {
				return err
			}
			if err := x.mkdir(parent); err != nil {
				return err
			}
			x.seen[parent] = bundleImplicitDir
		}
	}
	return nil
}

func (x *bundleExtractor) makeDir(entry, name string) error {
	if err := x.makeParents(entry, name); err != nil {
		return err
	}
	switch x.seen[name] {
	case bundleExplicitDir:
		return bundleRefuse(entry, "duplicate entry")
	case bundleFile:
		return bundleRefuse(entry, "a file already has this path")
	case bundleImplicitDir:
		x.seen[name] = bundleExplicitDir // listed after its contents: fine
		return nil
	}
	if err := x.reserve(entry); err != nil {
		return err
	}
	if err := x.mkdir(name); err != nil {
		return err
	}
	x.seen[name] = bundleExplicitDir
	return nil
}

// reserve counts one more path to be made, refusing it beyond
// MaxFiles: parent directories made implicitly count as much as entries.
func (x *bundleExtractor) reserve(entry string) error {
	if len(x.seen) >= x.limits.MaxFiles {
		return bundleRefuse(entry, "more than %d files and directories (the limit)", x.limits.MaxFiles)
	}
	return nil
}

// mkdir makes one directory with mode 0755 whatever the umask.
func (x *bundleExtractor) mkdir(name string) error {
	x.noteCreated(name)
	if err := x.root.Mkdir(name, bundleDirMode); err != nil {
		return fmt.Errorf("extract bundle: %w", err)
	}
	d, err := x.root.Open(name)
	if err != nil {
		return fmt.Errorf("extract bundle: %w", err)
	}
	defer d.Close()
	if err := d.Chmod(bundleDirMode); err != nil {
		return fmt.Errorf("extract bundle: %w", err)
	}
	return nil
}

func (x *bundleExtractor) makeFile(tr io.Reader, hdr *tar.Header, name string) error {
	switch {
	case hdr.Size < 0:
		return bundleRefuse(hdr.Name, "negative size")
	case hdr.Size > x.limits.MaxFileBytes:
		return bundleRefuse(hdr.Name, "file is %d bytes, larger than %d bytes (the limit per file)", hdr.Size, x.limits.MaxFileBytes)
	case hdr.Size > x.limits.MaxBytes-x.total:
		return bundleRefuse(hdr.Name, "bundle unpacks to more than %d bytes (the limit)", x.limits.MaxBytes)
	}
	if err := x.makeParents(hdr.Name, name); err != nil {
		return err
	}
	switch x.seen[name] {
	case bundleFile:
		return bundleRefuse(hdr.Name, "duplicate entry")
	case bundleImplicitDir, bundleExplicitDir:
		return bundleRefuse(hdr.Name, "a directory already has this path")
	}
	if err := x.reserve(hdr.Name); err != nil {
		return err
	}
	x.seen[name] = bundleFile
	mode := os.FileMode(bundleFileMode)
	if hdr.Mode&0o111 != 0 {
		mode = bundleExecMode
	}
	x.noteCreated(name)
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("extract bundle: %w", err)
	}
	n, err := extractCopy(f, tr, hdr.Size)
	if err == nil {
		err = f.Chmod(mode) // the exact mode, whatever the umask
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("extract bundle: %w", cerr)
	}
	x.total += n
	var rerr *extractReadError
	switch {
	case errors.As(err, &rerr):
		return x.streamError(rerr.err)
	case errors.Is(err, errExtractLonger):
		return bundleRefuse(hdr.Name, "file is longer than its header says (%d bytes)", hdr.Size)
	case errors.Is(err, errExtractShorter):
		return bundleRefuse(hdr.Name, "file is shorter than its header says (%d bytes)", hdr.Size)
	case err != nil:
		return fmt.Errorf("extract bundle: write %q: %w", name, err)
	}
	if n > x.limits.MaxFileBytes || x.total > x.limits.MaxBytes {
		return bundleRefuse(hdr.Name, "bundle unpacks to more than its limits")
	}
	return nil
}

var (
	errExtractLonger  = errors.New("entry longer than its header")
	errExtractShorter = errors.New("entry shorter than its header")
)

// extractReadError marks a failure to read the archive (as opposed to
// writing the file) in extractCopy.
type extractReadError struct{ err error }

func (e *extractReadError) Error() string { return e.err.Error() }

// extractCopy copies an entry of declared bytes from src to dst and
// returns the bytes written. It counts what it copies rather than trusting
// the header: it reads at most declared+1 bytes and fails with
// errExtractLonger if there were more, or errExtractShorter if fewer.
// Read failures are *extractReadError.
func extractCopy(dst io.Writer, src io.Reader, declared int64) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		want := min(int64(len(buf)), declared+1-n)
		m, rerr := src.Read(buf[:want])
		if int64(m) > declared-n {
			// One byte past the header: written nowhere.
			m = int(declared - n)
			if m > 0 {
				if _, err := dst.Write(buf[:m]); err != nil {
					return n, err
				}
				n += int64(m)
			}
			return n, errExtractLonger
		}
		if m > 0 {
			if _, err := dst.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		switch {
		case rerr == io.EOF && n == declared:
			return n, nil
		case rerr == io.EOF:
			return n, errExtractShorter
		case rerr != nil:
			return n, &extractReadError{rerr}
		}
	}
}

// noteCreated records name's top-level component before it is made, so a
// failure removes it.
func (x *bundleExtractor) noteCreated(name string) {
	top, _, _ := strings.Cut(name, "/")
	x.created[top] = true
}

// removeCreated removes every top-level entry this extraction made.
func (x *bundleExtractor) removeCreated() error {
	var errs []error
	for _, top := range slices.Sorted(maps.Keys(x.created)) {
		if err := x.root.RemoveAll(top); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// bundleArchiveReader hashes and counts the compressed bytes and fails
// once there are more than max of them.
type bundleArchiveReader struct {
	r      io.Reader
	h      hash.Hash
	n, max int64
	err    error // the first failure other than io.EOF
}

func (a *bundleArchiveReader) Read(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	if room := a.max - a.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := a.r.Read(p)
	a.h.Write(p[:n])
	a.n += int64(n)
	if a.n > a.max {
		a.err = errBundleArchiveTooLarge
		return n, a.err
	}
	if err != nil && err != io.EOF {
		a.err = err
	}
	return n, err
}

// bundleErrReader remembers the first failure other than io.EOF.
type bundleErrReader struct {
	r   io.Reader
	err error
}

func (e *bundleErrReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// bundleStreamLimiter fails once more than max bytes have been read. It
// counts the zero bytes that end what has been read so far.
type bundleStreamLimiter struct {
	r      io.Reader
	n, max int64
	zeros  int64
	err    error
}

func (s *bundleStreamLimiter) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if room := s.max - s.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	last := n // p[last:n] are zeros
	for last > 0 && p[last-1] == 0 {
		last--
	}
	if last > 0 {
		s.zeros = 0
	}
	s.zeros += int64(n - last)
	if s.n > s.max {
		s.err = errBundleStreamTooLarge
		return n, s.err
	}
	return n, err
}

// BundleDirectory writes a bundle of the directory tree at src to w and
// returns its digest. The archive is deterministic: the same tree gives
// the same bytes whatever the files' times, owners or permissions (only
// the execute bit counts). Entries come in depth-first, lexical order;
// directories have mode 0755, files 0644 or 0755 when executable by
// anyone; times are the Unix epoch, owners 0 and unnamed; the gzip header
// has no name or time.
//
// Skipped always, at any depth: ".terraform" and ".git" (directories or
// files) and state (base names containing ".tfstate"). Skipped as well:
// whatever a .terraformignore file at the root of src excludes, in this
// subset of gitignore syntax, one pattern a line:
//
//   - blank lines and lines starting with "#" are ignored; trailing spaces
//     are trimmed; a leading "\" escapes a leading "#" or "!";
//   - "!pattern" re-includes what an earlier pattern excluded; the last
//     matching pattern wins;
//   - a trailing "/" matches directories only;
//   - a pattern with no other "/" matches a base name at any depth; one
//     with a "/" (a leading "/" is dropped) matches the whole path from
//     the root;
//   - "*", "?" and "[...]" match within one component (path.Match);
//     "**" as a whole component matches any number of components.
//
// An excluded directory is not descended into, so nothing inside it can
// be re-included. The .terraformignore file itself is bundled.
//
// Symbolic links are followed when they stay inside src and name a
// regular file, which is bundled as a regular file; a link that leaves
// src (or is absolute), dangles, or names a directory or anything else is
// an *InvalidBundleError, as are sockets, devices and FIFOs, and names
// ExtractBundle would refuse.
func BundleDirectory(src string, w io.Writer) (digest string, err error) {
	root, err := os.OpenRoot(src)
	if err != nil {
		return "", fmt.Errorf("bundle directory: %w", err)
	}
	defer root.Close()
	rules, err := bundleReadIgnore(root)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 64<<10)
	zw, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(zw)
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("bundle directory: %w", err)
		}
		if name == "." {
			return nil
		}
		base := path.Base(name)
		if base == ".terraform" || base == ".git" || bundleIsState(base) || bundleIgnored(rules, name, d.IsDir()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if _, reason := bundleCleanName(name, d.IsDir(), 1<<30); reason != "" {
			return bundleRefuse(name, "%s", reason)
		}
		switch t := d.Type(); {
		case t.IsDir():
			return tw.WriteHeader(bundleHeader(name+"/", tar.TypeDir, bundleDirMode, 0))
		case t.IsRegular(), t&fs.ModeSymlink != 0:
			return bundleWriteFile(tw, root, name, t&fs.ModeSymlink != 0)
		default:
			return bundleRefuse(name, "only regular files and directories can be bundled, not %v", t)
		}
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		var invalid *InvalidBundleError
		if errors.As(err, &invalid) {
			return "", err
		}
		return "", fmt.Errorf("bundle directory %s: %w", src, err)
	}
	return bundleDigestOf(h), nil
}

func bundleHeader(name string, typ byte, mode, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		Size:     size,
		ModTime:  time.Unix(0, 0),
	}
}

// bundleWriteFile writes the regular file name (or the in-tree file a
// symbolic link names) to tw.
func bundleWriteFile(tw *tar.Writer, root *os.Root, name string, link bool) error {
	if link {
		info, err := root.Stat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return bundleRefuse(name, "symbolic link does not resolve")
		case err != nil:
			return bundleRefuse(name, "symbolic link points outside the directory (or is absolute)")
		case info.IsDir():
			return bundleRefuse(name, "symbolic link to a directory; only links to files can be bundled")
		case !info.Mode().IsRegular():
			return bundleRefuse(name, "symbolic link to a %v; only links to files can be bundled", info.Mode().Type())
		}
	}
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return bundleRefuse(name, "only regular files and directories can be bundled, not %v", info.Mode().Type())
	}
	mode := int64(bundleFileMode)
	if info.Mode()&0o111 != 0 {
		mode = bundleExecMode
	}
	if err := tw.WriteHeader(bundleHeader(name, tar.TypeReg, mode, info.Size())); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	switch {
	case errors.Is(err, tar.ErrWriteTooLong) || (err == nil && n != info.Size()):
		return fmt.Errorf("%s changed while it was being bundled", name)
	case err != nil:
		return err
	}
	return nil
}

// bundleIgnoreRule is one pattern of a .terraformignore file.
type bundleIgnoreRule struct {
	negate   bool
	dirOnly  bool
	anchored bool     // matched against the whole path, not the base name
	parts    []string // the pattern's components
}

// bundleReadIgnore reads the rules of the .terraformignore file at the
// root, if there is one.
func bundleReadIgnore(root *os.Root) ([]bundleIgnoreRule, error) {
	data, err := root.ReadFile(".terraformignore")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bundle directory: %w", err)
	}
	return bundleParseIgnore(data)
}

// bundleParseIgnore parses .terraformignore patterns (see BundleDirectory).
func bundleParseIgnore(data []byte) ([]bundleIgnoreRule, error) {
	var rules []bundleIgnoreRule
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var r bundleIgnoreRule
		if strings.HasPrefix(line, "!") {
			r.negate = true
			line = line[1:]
		} else if strings.HasPrefix(line, `\#`) || strings.HasPrefix(line, `\!`) {
			line = line[1:]
		}
		if strings.HasSuffix(line, "/") {
			r.dirOnly = true
			line = strings.TrimRight(line, "/")
		}
		if strings.Contains(line, "/") {
			r.anchored = true
			line = strings.TrimLeft(line, "/")
		}
		if line == "" {
			continue
		}
		r.parts = strings.Split(line, "/")
		for _, p := range r.parts {
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("bundle directory: .terraformignore line %d: bad pattern %q", i+1, p)
			}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// bundleIgnored reports whether the last rule matching name excludes it.
func bundleIgnored(rules []bundleIgnoreRule, name string, isDir bool) bool {
	ignored := false
	for _, r := range rules {
		if r.dirOnly && !isDir {
			continue
		}
		var match bool
		if r.anchored {
			match = bundleMatchParts(r.parts, strings.Split(name, "/"))
		} else {
			match, _ = path.Match(r.parts[0], path.Base(name))
		}
		if match {
			ignored = !r.negate
		}
	}
	return ignored
}

func bundleMatchParts(pattern, name []string) bool {
	if len(pattern) == 0 {
		return len(name) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if bundleMatchParts(pattern[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	if ok, _ := path.Match(pattern[0], name[0]); !ok {
		return false
	}
	return bundleMatchParts(pattern[1:], name[1:])
}

// errBundleCopyStopped tells BundleDirectory, through the pipe, that
// CopyDirectory's extraction has stopped reading.
var errBundleCopyStopped = errors.New("extraction stopped")

// CopyDirectory materializes the module tree at src into dst, an existing
// empty directory, for local use instead of a bundle, and returns the
// digest of the tree's bundle. It streams BundleDirectory into
// ExtractBundle, so the same files are skipped (.terraform, .git, state,
// .terraformignore), the same things refused (symbolic links leaving src,
// special files) and the same limits enforced, in-tree links to files
// become regular files, and the digest is exactly BundleDirectory's. On
// error dst is left empty.
func CopyDirectory(src, dst string, limits BundleLimits) (digest string, err error) {
	pr, pw := io.Pipe()
	bundled := make(chan error, 1)
	go func() {
		_, err := BundleDirectory(src, pw)
		pw.CloseWithError(err) // nil: the reader sees io.EOF
		bundled <- err
	}()
	digest, err = ExtractBundle(pr, dst, limits)
	pr.CloseWithError(errBundleCopyStopped)
	if berr := <-bundled; berr != nil && !errors.Is(berr, errBundleCopyStopped) {
		// The pipe carried berr to ExtractBundle, which failed on it and
		// cleaned up: report the cause, not its echo.
		return "", berr
	}
	if err != nil {
		return "", err
	}
	return digest, nil
}

package drift

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// bundleTestEntry is one entry of an archive built by bundleTestArchive.
type bundleTestEntry struct {
	hdr  tar.Header
	body string
}

func bundleTestFile(name, body string) bundleTestEntry {
	return bundleTestEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body: body}
}

func bundleTestDir(name string) bundleTestEntry {
	return bundleTestEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func bundleTestSpecial(name string, typ byte, linkname string) bundleTestEntry {
	return bundleTestEntry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: linkname, Mode: 0o644}}
}

// bundleTestTar returns the uncompressed tar of entries.
func bundleTestTar(t testing.TB, entries ...bundleTestEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("tar header %q: %v", hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("tar body %q: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func bundleTestGzip(t testing.TB, data ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, d := range data {
		if _, err := zw.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func bundleTestArchive(t testing.TB, entries ...bundleTestEntry) []byte {
	t.Helper()
	return bundleTestGzip(t, bundleTestTar(t, entries...))
}

// bundleTestTarget makes parent/target and returns both.
func bundleTestTarget(t testing.TB) (parent, dir string) {
	t.Helper()
	parent = t.TempDir()
	dir = filepath.Join(parent, "target")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return parent, dir
}

// bundleAssertEmpty checks that dir is empty and that parent holds nothing
// but dir: a failed extraction leaves nothing behind, inside or out.
func bundleAssertEmpty(t testing.TB, parent, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("target: %v", err)
	}
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("target not empty: %v", names)
	}
	bundleAssertOnlyTarget(t, parent, dir)
}

func bundleAssertOnlyTarget(t testing.TB, parent, dir string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != filepath.Base(dir) || !entries[0].IsDir() {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("parent holds %v, want only %s", names, filepath.Base(dir))
	}
}

// bundleTestTree lists every path under dir with its mode and contents
// ("" for directories).
func bundleTestTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			tree[filepath.ToSlash(rel)+"/"] = info.Mode().String()
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tree[filepath.ToSlash(rel)] = info.Mode().String() + " " + string(data)
		default:
			t.Errorf("%s: unexpected %v", rel, info.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func bundleTestModule() []bundleTestEntry {
	exec := bundleTestFile("scripts/check.sh", "#!/bin/sh\necho ok\n")
	exec.hdr.Mode = 0o700
	setuid := bundleTestFile("scripts/setuid.sh", "#!/bin/sh\n")
	setuid.hdr.Mode = 0o4755 | 0o2000 | 0o1000
	setuid.hdr.Uid, setuid.hdr.Gid, setuid.hdr.Uname = 0, 0, "root"
	odd := bundleTestFile("variables.tf", `variable "x" {}`)
	odd.hdr.Mode = 0o600
	odd.hdr.ModTime = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
	return []bundleTestEntry{
		bundleTestDir("modules/"),
		bundleTestFile("main.tf", `module "x" { source = "./modules/x" }`),
		bundleTestFile("modules/x/main.tf", `resource "null_resource" "x" {}`), // parent made implicitly
		bundleTestDir("modules/x/"), // listed after its contents
		bundleTestDir("empty/"),
		exec,
		setuid,
		odd,
	}
}

var bundleTestModuleTree = map[string]string{
	"empty/":            "drwxr-xr-x",
	"modules/":          "drwxr-xr-x",
	"modules/x/":        "drwxr-xr-x",
	"modules/x/main.tf": `-rw-r--r-- resource "null_resource" "x" {}`,
	"main.tf":           `-rw-r--r-- module "x" { source = "./modules/x" }`,
	"scripts/":          "drwxr-xr-x",
	"scripts/check.sh":  "-rwxr-xr-x #!/bin/sh\necho ok\n",
	"scripts/setuid.sh": "-rwxr-xr-x #!/bin/sh\n",
	"variables.tf":      `-rw-r--r-- variable "x" {}`,
}

func bundleTreeEqual(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("missing %s", k)
		} else if g != w {
			t.Errorf("%s = %q, want %q", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s", k)
		}
	}
}

func TestExtractBundle(t *testing.T) {
	archive := bundleTestArchive(t, bundleTestModule()...)
	_, dir := bundleTestTarget(t)
	digest, err := ExtractBundle(bytes.NewReader(archive), dir, DefaultBundleLimits)
	if err != nil {
		t.Fatal(err)
	}
	if want := BundleDigest(archive); digest != want {
		t.Errorf("digest = %s, want %s", digest, want)
	}
	if !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
		t.Errorf("digest %q is not sha256:<hex>", digest)
	}
	bundleTreeEqual(t, bundleTestTree(t, dir), bundleTestModuleTree)

	_, again := bundleTestTarget(t)
	digest2, err := ExtractBundle(bytes.NewReader(archive), again, BundleLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if digest2 != digest {
		t.Errorf("second extraction digest = %s, want %s", digest2, digest)
	}
}

// TestExtractBundleAccepts covers archives made by other tools that are
// fine: GNU tar's "./" prefixes, git archive's global header, zero
// padding, several gzip members.
func TestExtractBundleAccepts(t *testing.T) {
	global := bundleTestEntry{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "0123abcd"}}}
	plain := bundleTestTar(t, bundleTestFile("main.tf", "x"))
	tests := []struct {
		name    string
		archive []byte
		want    map[string]string
	}{
		{
			name:    "gnu tar dot prefix",
			archive: bundleTestArchive(t, bundleTestDir("./"), bundleTestDir("./a/"), bundleTestFile("./a/main.tf", "x")),
			want:    map[string]string{"a/": "drwxr-xr-x", "a/main.tf": "-rw-r--r-- x"},
		},
		{
			name:    "git archive global header",
			archive: bundleTestArchive(t, global, bundleTestFile("main.tf", "x")),
			want:    map[string]string{"main.tf": "-rw-r--r-- x"},
		},
		{
			name:    "zero padding after the archive",
			archive: bundleTestGzip(t, plain, make([]byte, 10240)),
			want:    map[string]string{"main.tf": "-rw-r--r-- x"},
		},
		{
			name:    "two gzip members",
			archive: append(bundleTestGzip(t, plain[:700]), bundleTestGzip(t, plain[700:])...),
			want:    map[string]string{"main.tf": "-rw-r--r-- x"},
		},
		{
			name:    "empty archive",
			archive: bundleTestArchive(t),
			want:    map[string]string{},
		},
		{
			name:    "depth at the limit",
			archive: bundleTestArchive(t, bundleTestFile("a/b/c.tf", "x")),
			want:    map[string]string{"a/": "drwxr-xr-x", "a/b/": "drwxr-xr-x", "a/b/c.tf": "-rw-r--r-- x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, dir := bundleTestTarget(t)
			digest, err := ExtractBundle(bytes.NewReader(tt.archive), dir, BundleLimits{MaxPathDepth: 3})
			if err != nil {
				t.Fatal(err)
			}
			if want := BundleDigest(tt.archive); digest != want {
				t.Errorf("digest = %s, want %s", digest, want)
			}
			bundleTreeEqual(t, bundleTestTree(t, dir), tt.want)
			bundleAssertOnlyTarget(t, parent, dir)
		})
	}
}

func TestExtractBundleRefuses(t *testing.T) {
	ok := bundleTestFile("ok.tf", "fine") // comes first, so cleanup has work to do
	random := make([]byte, 64<<10)
	rand.Read(random)
	good := bundleTestArchive(t, ok, bundleTestFile("main.tf", strings.Repeat("resource {}\n", 500)))
	plain := bundleTestTar(t, ok)

	// A NUL can only reach the name through a PAX record (tar's own fields
	// end at the first NUL): build one with \x01 and patch it.
	nulTar := bundleTestTar(t, ok, bundleTestFile(strings.Repeat("d", 120)+"\x01x.tf", "x"))
	// Skip ok.tf (header and data) and the PAX header block, whose own
	// name is checksummed, to patch the PAX record.
	nulTar[1536+bytes.IndexByte(nulTar[1536:], 1)] = 0

	// A header that says 10 bytes followed by more: the rest is read as
	// the next header.
	liar := bundleTestTar(t, ok, bundleTestFile("liar.tf", "0123456789"))
	liar = append(liar[:len(liar)-1024], bytes.Repeat([]byte("A"), 1024)...)

	bomb := bundleTestArchive(t, ok, bundleTestFile("zeros", strings.Repeat("\x00", 8<<20)))
	trailingBomb := bundleTestGzip(t, bundleTestTar(t, ok), make([]byte, 32<<20))

	badCRC := slices.Clone(good)
	badCRC[len(badCRC)-8] ^= 0xff

	deep := bundleTestFile("a/b/c/d/e.tf", "x")
	many := []bundleTestEntry{ok, bundleTestFile("1.tf", ""), bundleTestFile("2.tf", ""), bundleTestFile("3.tf", ""), bundleTestFile("4.tf", "")}

	small := BundleLimits{MaxFiles: 4, MaxBytes: 1 << 20, MaxFileBytes: 512 << 10, MaxArchiveBytes: 16 << 10, MaxPathDepth: 4}
	tests := []struct {
		name    string
		archive []byte
		limits  BundleLimits
		wantErr string
		invalid bool // an *InvalidBundleError
	}{
		{"parent escape", bundleTestArchive(t, ok, bundleTestFile("../evil", "x")), small, `bundle entry "../evil": path leaves the bundle`, true},
		{"nested escape", bundleTestArchive(t, ok, bundleTestFile("a/../../evil", "x")), small, `"a/../../evil": path leaves the bundle`, true},
		{"dir escape", bundleTestArchive(t, ok, bundleTestDir("../evil/")), small, "path leaves the bundle", true},
		{"absolute", bundleTestArchive(t, ok, bundleTestFile("/etc/passwd", "x")), small, `"/etc/passwd": absolute path`, true},
		{"drive letter", bundleTestArchive(t, ok, bundleTestFile(`C:\x`, "x")), small, "Windows drive letter", true},
		{"drive letter slash", bundleTestArchive(t, ok, bundleTestFile("c:/x", "x")), small, "Windows drive letter", true},
		{"backslash", bundleTestArchive(t, ok, bundleTestFile(`a\..\b`, "x")), small, "backslash", true},
		{"NUL in name", bundleTestGzip(t, nulTar), small, "tar archive is corrupt", true},
		{"double slash", bundleTestArchive(t, ok, bundleTestFile("a//b", "x")), small, "not clean", true},
		{"dot component", bundleTestArchive(t, ok, bundleTestFile("a/./b", "x")), small, "not clean", true},
		{"file named dot", bundleTestArchive(t, ok, bundleTestFile(".", "x")), small, "root", true},
		{"too deep", bundleTestArchive(t, ok, deep), small, `"a/b/c/d/e.tf": path is deeper than 4`, true},
		{"too deep dir", bundleTestArchive(t, ok, bundleTestDir("a/b/c/d/e/")), small, "deeper than 4", true},
		{"symlink outward", bundleTestArchive(t, ok, bundleTestSpecial("passwd", tar.TypeSymlink, "/etc/passwd")), small, `"passwd": links are not allowed in a bundle (symbolic link to "/etc/passwd")`, true},
		{"symlink relative", bundleTestArchive(t, ok, bundleTestSpecial("x", tar.TypeSymlink, "../x")), small, "links are not allowed in a bundle", true},
		{"symlink inward", bundleTestArchive(t, ok, bundleTestSpecial("y.tf", tar.TypeSymlink, "ok.tf")), small, "links are not allowed in a bundle", true},
		{"hard link", bundleTestArchive(t, ok, bundleTestSpecial("h.tf", tar.TypeLink, "ok.tf")), small, "links are not allowed in a bundle (hard link", true},
		{"char device", bundleTestArchive(t, ok, bundleTestSpecial("null", tar.TypeChar, "")), small, "character device entries are not allowed", true},
		{"block device", bundleTestArchive(t, ok, bundleTestSpecial("sda", tar.TypeBlock, "")), small, "block device entries are not allowed", true},
		{"fifo", bundleTestArchive(t, ok, bundleTestSpecial("pipe", tar.TypeFifo, "")), small, "FIFO entries are not allowed", true},
		{"unknown type", bundleTestArchive(t, ok, bundleTestSpecial("odd", 'Z', "")), small, `type 'Z' entries are not allowed`, true},
		{"duplicate file", bundleTestArchive(t, ok, bundleTestFile("ok.tf", "again")), small, `"ok.tf": duplicate entry`, true},
		{"duplicate with dot prefix", bundleTestArchive(t, ok, bundleTestFile("./ok.tf", "again")), small, "duplicate entry", true},
		{"duplicate dir", bundleTestArchive(t, bundleTestDir("a/"), bundleTestDir("a/")), small, "duplicate entry", true},
		{"file then dir", bundleTestArchive(t, ok, bundleTestDir("ok.tf/")), small, "a file already has this path", true},
		{"dir then file", bundleTestArchive(t, bundleTestDir("a/"), bundleTestFile("a", "x")), small, "a directory already has this path", true},
		{"implicit dir then file", bundleTestArchive(t, bundleTestFile("a/b.tf", "x"), bundleTestFile("a", "x")), small, "a directory already has this path", true},
		{"file as parent", bundleTestArchive(t, ok, bundleTestFile("ok.tf/x.tf", "x")), small, `parent "ok.tf" is a file`, true},
		{"terraform dir", bundleTestArchive(t, ok, bundleTestFile(".terraform/providers/p", "x")), small, ".terraform directories are not allowed", true},
		{"state", bundleTestArchive(t, ok, bundleTestFile("terraform.tfstate", "{}")), small, "state files are not allowed", true},
		{"state backup", bundleTestArchive(t, ok, bundleTestFile("sub/terraform.tfstate.backup", "{}")), small, "state files are not allowed", true},
		{"too many files", bundleTestArchive(t, many...), small, "more than 4 entries", true},
		{"implicit directories count", bundleTestArchive(t, bundleTestFile("x/y/z/f.tf", "")), BundleLimits{MaxFiles: 3}, `"x/y/z/f.tf": more than 3 files and directories`, true},
		{"too many bytes", bundleTestArchive(t, ok, bundleTestFile("a", strings.Repeat("a", 400<<10)), bundleTestFile("b", strings.Repeat("b", 400<<10)), bundleTestFile("c", strings.Repeat("c", 400<<10))), small, `"c": bundle unpacks to more than 1048576 bytes`, true},
		{"file over limit", bundleTestArchive(t, ok, bundleTestFile("big", strings.Repeat("b", 512<<10+1))), small, `"big": file is 524289 bytes, larger than 524288 bytes (the limit per file)`, true},
		{"limit below real size", bundleTestArchive(t, ok, bundleTestFile("main.tf", "0123456789")), BundleLimits{MaxFileBytes: 9}, "larger than 9 bytes", true},
		{"header size lies", bundleTestGzip(t, liar), small, "tar archive is corrupt", true},
		{"gzip bomb", bomb, BundleLimits{MaxBytes: 1 << 20}, `"zeros": bundle unpacks to more than 1048576 bytes`, true},
		{"gzip bomb after the archive", trailingBomb, BundleLimits{MaxBytes: 1 << 20, MaxFiles: 10}, "a gzip bomb", true},
		{"archive over limit", bundleTestArchive(t, ok, bundleTestFile("random", string(random))), small, "compressed archive is larger than 16384 bytes", true},
		{"truncated gzip", good[:len(good)/2], small, "gzip stream is truncated", true},
		{"truncated gzip trailer", good[:len(good)-4], small, "gzip stream is truncated", true},
		{"truncated gzip header", good[:5], small, "gzip stream is truncated", true},
		{"gzip checksum", badCRC, small, "checksum mismatch", true},
		{"truncated tar", bundleTestGzip(t, plain[:700]), small, "tar archive is truncated", true},
		{"tar without end marker", bundleTestGzip(t, plain[:1024]), small, "no end-of-archive marker", true},
		{"tar with half an end marker", bundleTestGzip(t, plain[:1536]), small, "no end-of-archive marker", true},
		{"gzip of nothing", bundleTestGzip(t), small, "no end-of-archive marker", true},
		{"not gzip", []byte("resource \"x\" \"y\" {}\n"), small, "not gzip-compressed", true},
		{"plain tar", plain, small, "not gzip-compressed", true},
		{"empty input", nil, small, "archive is empty", true},
		{"garbage after gzip", append(slices.Clone(good), []byte("trailing garbage!")...), small, "data after the end of the gzip stream", true},
		{"data after tar", bundleTestGzip(t, plain, []byte("hidden")), small, "data after the end of the tar archive", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, dir := bundleTestTarget(t)
			digest, err := ExtractBundle(bytes.NewReader(tt.archive), dir, tt.limits)
			if err == nil {
				t.Fatalf("ExtractBundle succeeded (%s), want error %q", digest, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			var invalid *InvalidBundleError
			if got := errors.As(err, &invalid); got != tt.invalid {
				t.Errorf("InvalidBundleError = %v, want %v (%v)", got, tt.invalid, err)
			}
			if digest != "" {
				t.Errorf("digest = %q on error", digest)
			}
			bundleAssertEmpty(t, parent, dir)
		})
	}
}

// bundleFailingReader fails after its data, as a dropped connection does.
type bundleFailingReader struct{ r io.Reader }

var errBundleTestDropped = errors.New("connection dropped")

func (f *bundleFailingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBundleTestDropped
	}
	return n, err
}

func TestExtractBundleTarget(t *testing.T) {
	archive := bundleTestArchive(t, bundleTestModule()...)

	t.Run("not empty", func(t *testing.T) {
		_, dir := bundleTestTarget(t)
		keep := filepath.Join(dir, "keep")
		if err := os.WriteFile(keep, []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ExtractBundle(bytes.NewReader(archive), dir, BundleLimits{})
		if err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("error = %v, want not empty", err)
		}
		if data, err := os.ReadFile(keep); err != nil || string(data) != "mine" {
			t.Errorf("existing file touched: %q, %v", data, err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := ExtractBundle(bytes.NewReader(archive), filepath.Join(t.TempDir(), "nope"), BundleLimits{})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error = %v, want not exist", err)
		}
	})
	t.Run("negative limit", func(t *testing.T) {
		_, dir := bundleTestTarget(t)
		if _, err := ExtractBundle(bytes.NewReader(archive), dir, BundleLimits{MaxFiles: -1}); err == nil {
			t.Fatal("negative limit accepted")
		}
	})
	t.Run("read error", func(t *testing.T) {
		parent, dir := bundleTestTarget(t)
		_, err := ExtractBundle(&bundleFailingReader{bytes.NewReader(archive)}, dir, BundleLimits{})
		if !errors.Is(err, errBundleTestDropped) {
			t.Fatalf("error = %v, want the reader's", err)
		}
		var invalid *InvalidBundleError
		if errors.As(err, &invalid) {
			t.Errorf("a read failure is not the bundle's fault: %v", err)
		}
		bundleAssertEmpty(t, parent, dir)
	})
}

func TestBundleCleanName(t *testing.T) {
	tests := []struct {
		raw     string
		isDir   bool
		want    string
		wantErr string
	}{
		{raw: "main.tf", want: "main.tf"},
		{raw: "./main.tf", want: "main.tf"},
		{raw: "././a/b.tf", want: "a/b.tf"},
		{raw: "a/b/", isDir: true, want: "a/b"},
		{raw: "./", isDir: true, want: ""},
		{raw: ".", isDir: true, want: ""},
		{raw: "..data/x", want: "..data/x"},
		{raw: "a..b", want: "a..b"},
		{raw: "", wantErr: "empty name"},
		{raw: "a\x00b", wantErr: "NUL"},
		{raw: "..", wantErr: "leaves the bundle"},
		{raw: "../", isDir: true, wantErr: "leaves the bundle"},
		{raw: "a/..", wantErr: "leaves the bundle"},
		{raw: "a//b", wantErr: "not clean"},
		{raw: "a/.", wantErr: "not clean"},
		{raw: "a/b//", isDir: true, wantErr: "not clean"},
		{raw: "//x", wantErr: "absolute"},
		{raw: "Z:x", wantErr: "drive letter"},
		{raw: "./c:/x", wantErr: "drive letter"},
		{raw: "a/c:", want: "a/c:"},
		{raw: ".c:x", want: ".c:x"},
		{raw: `\\server\share`, wantErr: "backslash"},
		{raw: strings.Repeat("a", 256), wantErr: "longer than 255"},
		{raw: strings.Repeat("a/", 3000) + "b", wantErr: "longer than 4096"},
		{raw: "a/b/c/d", wantErr: "deeper than 3"},
		{raw: "a/", wantErr: "not a directory"},
		{raw: "x/.terraform", isDir: true, wantErr: ".terraform"},
		{raw: "terraform.tfstate.d/", isDir: true, wantErr: "state"},
	}
	for _, tt := range tests {
		got, reason := bundleCleanName(tt.raw, tt.isDir, 3)
		switch {
		case tt.wantErr == "" && reason != "":
			t.Errorf("bundleCleanName(%q) refused: %s", tt.raw, reason)
		case tt.wantErr == "" && got != tt.want:
			t.Errorf("bundleCleanName(%q) = %q, want %q", tt.raw, got, tt.want)
		case tt.wantErr != "" && !strings.Contains(reason, tt.wantErr):
			t.Errorf("bundleCleanName(%q) reason = %q, want %q", tt.raw, reason, tt.wantErr)
		}
	}
}

// TestExtractCopy covers what no real tar reader lets through: an entry
// whose data is longer or shorter than its header says.
func TestExtractCopy(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		declared int64
		want     string
		wantErr  error
	}{
		{"exact", "0123456789", 10, "0123456789", nil},
		{"empty", "", 0, "", nil},
		{"longer", "0123456789abc", 10, "0123456789", errExtractLonger},
		{"longer than empty", "x", 0, "", errExtractLonger},
		{"shorter", "01234", 10, "01234", errExtractShorter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst bytes.Buffer
			n, err := extractCopy(&dst, strings.NewReader(tt.data), tt.declared)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if dst.String() != tt.want || n != int64(len(tt.want)) {
				t.Errorf("copied %d %q, want %q", n, dst.String(), tt.want)
			}
		})
	}
	t.Run("huge source", func(t *testing.T) {
		// An endless source is read only one byte past the header.
		src := &bundleCountingReader{}
		n, err := extractCopy(io.Discard, src, 100)
		if !errors.Is(err, errExtractLonger) || n != 100 || src.n != 101 {
			t.Errorf("n = %d, read %d, err = %v", n, src.n, err)
		}
	})
}

type bundleCountingReader struct{ n int64 }

func (c *bundleCountingReader) Read(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// bundleTestSource writes a module tree with everything CopyDirectory and
// BundleDirectory must skip.
func bundleTestSource(t testing.TB) string {
	t.Helper()
	src := t.TempDir()
	files := map[string]string{
		"main.tf":                                   `module "x" { source = "./modules/x" }`,
		"modules/x/main.tf":                         `resource "null_resource" "x" {}`,
		"scripts/check.sh":                          "#!/bin/sh\necho ok\n",
		".terraform/providers/evil":                 "binary",
		".terraform.lock.hcl":                       "# lock",
		"modules/x/.terraform/modules/m":            "x",
		".git/HEAD":                                 "ref: refs/heads/main",
		"terraform.tfstate":                         "{}",
		"terraform.tfstate.backup":                  "{}",
		"terraform.tfstate.d/dev/terraform.tfstate": "{}",
	}
	for name, body := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "scripts/check.sh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../main.tf", filepath.Join(src, "modules/root.tf")); err != nil {
		t.Fatal(err)
	}
	return src
}

var bundleTestSourceTree = map[string]string{
	".terraform.lock.hcl": "-rw-r--r-- # lock",
	"empty/":              "drwxr-xr-x",
	"main.tf":             `-rw-r--r-- module "x" { source = "./modules/x" }`,
	"modules/":            "drwxr-xr-x",
	"modules/root.tf":     `-rw-r--r-- module "x" { source = "./modules/x" }`,
	"modules/x/":          "drwxr-xr-x",
	"modules/x/main.tf":   `-rw-r--r-- resource "null_resource" "x" {}`,
	"scripts/":            "drwxr-xr-x",
	"scripts/check.sh":    "-rwxr-xr-x #!/bin/sh\necho ok\n",
}

func bundleTestBundle(t testing.TB, src string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	digest, err := BundleDirectory(src, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := BundleDigest(buf.Bytes()); digest != want {
		t.Fatalf("BundleDirectory digest = %s, digest of its bytes = %s", digest, want)
	}
	return buf.Bytes(), digest
}

func TestCopyDirectory(t *testing.T) {
	src := bundleTestSource(t)
	parent, dst := bundleTestTarget(t)
	digest, err := CopyDirectory(src, dst, BundleLimits{})
	if err != nil {
		t.Fatal(err)
	}
	bundleTreeEqual(t, bundleTestTree(t, dst), bundleTestSourceTree)
	bundleAssertOnlyTarget(t, parent, dst)

	archive, want := bundleTestBundle(t, src)
	if digest != want {
		t.Errorf("CopyDirectory digest = %s, BundleDirectory digest = %s", digest, want)
	}
	_, dir := bundleTestTarget(t)
	got, err := ExtractBundle(bytes.NewReader(archive), dir, BundleLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if got != digest {
		t.Errorf("extracted bundle digest = %s, want %s", got, digest)
	}
	bundleTreeEqual(t, bundleTestTree(t, dir), bundleTestSourceTree)
}

func TestCopyDirectoryRefuses(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, src string)
		limits  BundleLimits
		wantErr string
	}{
		{
			name: "symlink leaving the tree",
			setup: func(t *testing.T, src string) {
				outside := filepath.Join(filepath.Dir(src), "outside.tf")
				if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
					t.Fatal(err)
				}
				bundleTestSymlink(t, "../outside.tf", filepath.Join(src, "evil.tf"))
			},
			wantErr: `bundle entry "evil.tf": symbolic link points outside the directory`,
		},
		{
			name:    "absolute symlink",
			setup:   func(t *testing.T, src string) { bundleTestSymlink(t, "/etc/passwd", filepath.Join(src, "passwd")) },
			wantErr: "points outside the directory",
		},
		{
			name: "absolute symlink into the tree",
			setup: func(t *testing.T, src string) {
				bundleTestSymlink(t, filepath.Join(src, "main.tf"), filepath.Join(src, "abs.tf"))
			},
			wantErr: "points outside the directory (or is absolute)",
		},
		{
			name:    "dangling symlink",
			setup:   func(t *testing.T, src string) { bundleTestSymlink(t, "nowhere.tf", filepath.Join(src, "dangling.tf")) },
			wantErr: "does not resolve",
		},
		{
			name:    "symlink to a directory",
			setup:   func(t *testing.T, src string) { bundleTestSymlink(t, "modules", filepath.Join(src, "mods")) },
			wantErr: "symbolic link to a directory",
		},
		{
			name:    "too many files",
			setup:   func(t *testing.T, src string) {},
			limits:  BundleLimits{MaxFiles: 3},
			wantErr: "more than 3 entries",
		},
		{
			name:    "file over the limit",
			setup:   func(t *testing.T, src string) {},
			limits:  BundleLimits{MaxFileBytes: 20},
			wantErr: "larger than 20 bytes",
		},
		{
			name: "bad ignore pattern",
			setup: func(t *testing.T, src string) {
				bundleTestWrite(t, filepath.Join(src, ".terraformignore"), "[\n")
			},
			wantErr: ".terraformignore line 1: bad pattern",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := bundleTestSource(t)
			tt.setup(t, src)
			parent, dst := bundleTestTarget(t)
			digest, err := CopyDirectory(src, dst, tt.limits)
			if err == nil {
				t.Fatalf("CopyDirectory succeeded (%s), want %q", digest, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			bundleAssertEmpty(t, parent, dst)
			if _, err := BundleDirectory(src, io.Discard); tt.limits == (BundleLimits{}) && err == nil {
				t.Errorf("BundleDirectory accepted what CopyDirectory refused")
			}
		})
	}
}

func bundleTestSymlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func bundleTestWrite(t testing.TB, name, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBundleDirectoryDeterministic(t *testing.T) {
	src := bundleTestSource(t)
	first, digest := bundleTestBundle(t, src)
	second, _ := bundleTestBundle(t, src)
	if !bytes.Equal(first, second) {
		t.Fatal("two bundles of the same tree differ")
	}

	// The same tree elsewhere, made at another time with other
	// permissions, is the same bundle.
	other := bundleTestSource(t)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	err := filepath.WalkDir(other, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		if !d.IsDir() && filepath.Base(p) != "check.sh" {
			if err := os.Chmod(p, 0o600); err != nil {
				return err
			}
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, got := bundleTestBundle(t, other); got != digest {
		t.Errorf("times and permissions changed the digest: %s, want %s", got, digest)
	}

	// Anything skipped may change freely.
	bundleTestWrite(t, filepath.Join(other, "terraform.tfstate"), `{"serial": 99}`)
	bundleTestWrite(t, filepath.Join(other, ".terraform/providers/new"), "x")
	if _, got := bundleTestBundle(t, other); got != digest {
		t.Errorf("a skipped file changed the digest")
	}

	changes := []struct {
		name   string
		change func(t *testing.T, src string)
	}{
		{"content", func(t *testing.T, src string) { bundleTestWrite(t, filepath.Join(src, "main.tf"), "# changed") }},
		{"new file", func(t *testing.T, src string) { bundleTestWrite(t, filepath.Join(src, "extra.tf"), "") }},
		{"new empty dir", func(t *testing.T, src string) {
			if err := os.Mkdir(filepath.Join(src, "more"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"exec bit", func(t *testing.T, src string) {
			if err := os.Chmod(filepath.Join(src, "main.tf"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"rename", func(t *testing.T, src string) {
			if err := os.Rename(filepath.Join(src, "scripts/check.sh"), filepath.Join(src, "scripts/check2.sh")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			src := bundleTestSource(t)
			c.change(t, src)
			if _, got := bundleTestBundle(t, src); got == digest {
				t.Errorf("digest unchanged")
			}
		})
	}
}

func bundleTestList(t testing.TB, archive []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" || !hdr.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d/%d %q/%q, time %v", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, hdr.ModTime)
		}
		names = append(names, hdr.Name)
	}
}

func TestBundleDirectoryIgnore(t *testing.T) {
	src := t.TempDir()
	for _, name := range []string{
		"main.tf", "debug.log", "keep.log", "logs/a.log", "tmp/x.tf", "sub/tmp/y.tf",
		"tmp.tf", "rootonly.txt", "sub/rootonly.txt", "docs/draft.md", "docs/a/b/draft.md",
		"docs/readme.md", "#hash.tf", "build/out/x", "build/keep/y", ".git", "sub/.git/config",
	} {
		bundleTestWrite(t, filepath.Join(src, filepath.FromSlash(name)), "x")
	}
	bundleTestWrite(t, filepath.Join(src, ".terraformignore"), strings.Join([]string{
		"# a comment",
		"",
		"*.log   ",
		"!keep.log",
		"tmp/",
		"/rootonly.txt",
		"docs/**/draft.md",
		`\#hash.tf`,
		"build/*",
		"!build/keep",
		"!.terraform/", // cannot bring back what is always skipped
		"!.git",
	}, "\r\n"))
	bundleTestWrite(t, filepath.Join(src, ".terraform/x"), "x")

	archive, _ := bundleTestBundle(t, src)
	got := bundleTestList(t, archive)
	want := []string{
		".terraformignore",
		"build/",
		"build/keep/",
		"build/keep/y",
		"docs/",
		"docs/a/",
		"docs/a/b/",
		"docs/readme.md",
		"keep.log",
		"logs/",
		"main.tf",
		"sub/",
		"sub/rootonly.txt",
		"tmp.tf",
	}
	if !slices.Equal(got, want) {
		t.Errorf("bundled\n  %q\nwant\n  %q", got, want)
	}
}

func TestBundleIgnored(t *testing.T) {
	rules, err := bundleParseIgnore([]byte("*.tmp\n!important.tmp\n/secrets/\nmodules/**/test/\n**/fixtures\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		isDir bool
		want  bool
	}{
		{"a.tmp", false, true},
		{"deep/down/a.tmp", false, true},
		{"important.tmp", false, false},
		{"x/important.tmp", false, false},
		{"secrets", true, true},
		{"secrets", false, false},
		{"x/secrets", true, false},
		{"modules/test", true, true},
		{"modules/a/b/test", true, true},
		{"modules/a/test", false, false},
		{"fixtures", true, true},
		{"a/b/fixtures", false, true},
		{"main.tf", false, false},
	}
	for _, tt := range tests {
		if got := bundleIgnored(rules, tt.name, tt.isDir); got != tt.want {
			t.Errorf("bundleIgnored(%q, dir=%v) = %v, want %v", tt.name, tt.isDir, got, tt.want)
		}
	}
}

// bundleFuzzLimits are small, so the fuzzer reaches them.
var bundleFuzzLimits = BundleLimits{MaxFiles: 32, MaxBytes: 1 << 20, MaxFileBytes: 256 << 10, MaxArchiveBytes: 1 << 20, MaxPathDepth: 8}

// FuzzExtractBundle feeds ExtractBundle arbitrary bytes: it must never
// panic, never write outside the target, leave the target empty on error,
// and on success leave only plain files and directories with seb's modes
// and report the digest of the input.
func FuzzExtractBundle(f *testing.F) {
	for _, seed := range bundleFuzzSeeds(f) {
		f.Add(bundleTestGzip(f, seed))
	}
	f.Add(bundleTestTar(f, bundleTestFile("plain.tf", "x")))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(bundleFuzzCheck)
}

// FuzzBundleTar is FuzzExtractBundle one layer down: the input is the tar
// stream, compressed here, so the fuzzer explores tar headers and entries
// rather than gzip checksums.
func FuzzBundleTar(f *testing.F) {
	for _, seed := range bundleFuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { bundleFuzzCheck(t, bundleTestGzip(t, data)) })
}

func bundleFuzzSeeds(f *testing.F) [][]byte {
	return [][]byte{
		bundleTestTar(f, bundleTestModule()...),
		bundleTestTar(f, bundleTestFile("ok.tf", "x"), bundleTestFile("../evil", "x")),
		bundleTestTar(f, bundleTestSpecial("l", tar.TypeSymlink, "../x"), bundleTestFile("l/x", "x")),
		bundleTestTar(f, bundleTestFile("a", "x"), bundleTestFile("a/b", "x")),
		bundleTestTar(f, bundleTestDir("./"), bundleTestFile("./a/b/c.tf", "x"), bundleTestDir("a/")),
		bundleTestTar(f, bundleTestFile(strings.Repeat("long/", 30)+"name.tf", "x")),
	}
}

func bundleFuzzCheck(t *testing.T, data []byte) {
	limits := bundleFuzzLimits
	parent, dir := bundleTestTarget(t)
	digest, err := ExtractBundle(bytes.NewReader(data), dir, limits)
	if err != nil {
		if digest != "" {
			t.Errorf("digest %q with error %v", digest, err)
		}
		bundleAssertEmpty(t, parent, dir)
		return
	}
	bundleAssertOnlyTarget(t, parent, dir)
	if want := BundleDigest(data); digest != want {
		t.Errorf("digest = %s, want %s", digest, want)
	}
	var files int
	var total int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		files++
		switch m := info.Mode(); {
		case m.IsDir():
			if m.Perm() != 0o755 || m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Errorf("%s: mode %v", p, m)
			}
		case m.IsRegular():
			if (m.Perm() != 0o644 && m.Perm() != 0o755) || m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Errorf("%s: mode %v", p, m)
			}
			total += info.Size()
		default:
			t.Errorf("%s: %v", p, m)
		}
		if d.Name() == ".terraform" || strings.Contains(d.Name(), ".tfstate") {
			t.Errorf("%s extracted", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files > limits.MaxFiles || total > limits.MaxBytes {
		t.Errorf("%d entries, %d bytes: over the limits", files, total)
	}
}

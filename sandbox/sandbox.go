// Package sandbox runs a program — Terraform and the providers it starts —
// inside a bubblewrap (bwrap) sandbox: new mount, PID, IPC, UTS, cgroup and
// user namespaces, in which only the paths a Spec names are visible, with
// an environment holding only what the caller sets, as uid 65534, under
// resource limits, and killed with everything it started when its parent
// dies.
//
// A Sandbox hands out a Command: an executable and an environment that
// tools which only know how to run a binary (terraform-exec) can use as
// is. The executable is the running program itself; when it starts with
// the sandbox's environment variable set, this package's init runs the
// shim — it applies the limits, starts bwrap, forwards SIGINT and SIGTERM
// to the sandboxed program (bwrap itself does not), and exits with its
// status — and never returns to the program's main.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Uid and Gid are the user and group the sandboxed program runs as.
const (
	Uid = 65534
	Gid = 65534
)

// specEnv carries a Spec from the caller to the shim.
const specEnv = "SEB_SANDBOX_SPEC"

// Limits bound each sandboxed process (setrlimit). Zero fields take
// DefaultLimits' values.
type Limits struct {
	// MemoryBytes is each process's address space (RLIMIT_AS).
	MemoryBytes uint64
	// CPUSeconds is each process's CPU time (RLIMIT_CPU).
	CPUSeconds uint64
	// Processes caps the processes of the sandbox's user (RLIMIT_NPROC).
	// The kernel does not apply it to a sandbox started by root, whose
	// user namespace maps to root; run `seb runner` as an unprivileged
	// user to have it enforced.
	Processes uint64
	// FileBytes is the largest file a process may write (RLIMIT_FSIZE).
	FileBytes uint64
	// OpenFiles is each process's open file descriptors (RLIMIT_NOFILE).
	OpenFiles uint64
}

// DefaultLimits fit a Terraform run with a handful of providers.
var DefaultLimits = Limits{
	MemoryBytes: 16 << 30,
	CPUSeconds:  2 * 60 * 60,
	Processes:   512,
	FileBytes:   4 << 30,
	OpenFiles:   4096,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MemoryBytes != 0 {
		d.MemoryBytes = l.MemoryBytes
	}
	if l.CPUSeconds != 0 {
		d.CPUSeconds = l.CPUSeconds
	}
	if l.Processes != 0 {
		d.Processes = l.Processes
	}
	if l.FileBytes != 0 {
		d.FileBytes = l.FileBytes
	}
	if l.OpenFiles != 0 {
		d.OpenFiles = l.OpenFiles
	}
	return d
}

// Options configure a Sandbox.
type Options struct {
	// Bwrap is the bubblewrap binary; "" looks up bwrap on PATH.
	Bwrap string
	// Shim is the executable Command returns: any program that imports
	// this package (cmd/seb-sandbox is the smallest). "" means the running
	// program itself, which costs its start-up time at every step.
	Shim   string
	Limits Limits
}

// ErrUnavailable is returned by New when bubblewrap is missing or cannot
// make a sandbox on this machine.
var ErrUnavailable = errors.New("sandbox unavailable")

// A Sandbox starts programs in bubblewrap sandboxes.
type Sandbox struct {
	bwrap  string
	limits Limits
	self   string
}

// New finds bubblewrap and proves it can make a sandbox here by running
// one. It returns an error wrapping ErrUnavailable, saying how to install
// it, when it cannot.
func New(ctx context.Context, opts Options) (*Sandbox, error) {
	bwrap := opts.Bwrap
	if bwrap == "" {
		path, err := exec.LookPath("bwrap")
		if err != nil {
			return nil, fmt.Errorf("%w: bubblewrap (bwrap) is not installed; install it (Debian: apt-get install bubblewrap)", ErrUnavailable)
		}
		bwrap = path
	}
	self := opts.Shim
	if self == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("sandbox: find this program: %w", err)
		}
		self = exe
	} else if fi, err := os.Stat(self); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("sandbox: the shim %s is not an executable file", self)
	}
	s := &Sandbox{bwrap: bwrap, limits: opts.Limits.withDefaults(), self: self}
	// Prove it: an empty sandbox running bwrap's own check of itself would
	// need a program inside; /usr/bin/true is in every Debian.
	probe := Spec{Program: "/usr/bin/true", Dir: "/"}
	probeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(probeCtx, bwrap, args(probe)...)
	cmd.Env = []string{}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: %s cannot make a sandbox here: %v: %s", ErrUnavailable, bwrap, err, strings.TrimSpace(string(out)))
	}
	return s, nil
}

// A Spec is one sandboxed program's view of the machine. Paths are
// absolute and appear at the same place inside as outside.
type Spec struct {
	// Program is the executable to run.
	Program string `json:"program"`
	// ReadOnly paths are visible read-only; ReadWrite paths read-write.
	ReadOnly  []string `json:"read_only,omitempty"`
	ReadWrite []string `json:"read_write,omitempty"`
	// Dir is the working directory.
	Dir string `json:"dir"`
	// Limits, filled by Command.
	Limits Limits `json:"limits"`
	// Bwrap is the bubblewrap binary, filled by Command.
	Bwrap string `json:"bwrap"`
}

// Valid reports whether a spec can be run.
func (s Spec) Valid() error {
	paths := append([]string{s.Program, s.Dir}, s.ReadOnly...)
	for _, p := range append(paths, s.ReadWrite...) {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("sandbox: %q is not a clean absolute path", p)
		}
	}
	return nil
}

// Command returns an executable and the environment variable that, given
// to it, run spec's program in a sandbox with the arguments the
// executable is called with. The variable must be in the environment the
// executable is started with; nothing else of that environment but the
// variables the caller sets reaches the program.
func (s *Sandbox) Command(spec Spec) (executable string, env map[string]string, err error) {
	if err := spec.Valid(); err != nil {
		return "", nil, err
	}
	spec.Limits, spec.Bwrap = s.limits, s.bwrap
	raw, err := json.Marshal(spec)
	if err != nil {
		return "", nil, err
	}
	return s.self, map[string]string{specEnv: string(raw)}, nil
}

// hostFiles are what any program needs of /etc to resolve names and
// trust TLS certificates; each is bound read-only when present.
var hostFiles = []string{"/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf"}

// args is bwrap's command line for spec: nothing of the host but /usr,
// hostFiles and the spec's paths; a fresh /proc, /dev and /tmp. The
// program is pid 1 of its namespace, so that the shim's SIGINT reaches it
// and everything it started dies with it. bwrap
// passes its own environment on, which its starter sets to exactly the
// program's: values never appear on a command line other users can read.
func args(spec Spec, programArgs ...string) []string {
	a := []string{
		"--unshare-all", "--unshare-user", "--share-net",
		"--die-with-parent", "--new-session", "--as-pid-1",
		"--uid", fmt.Sprint(Uid), "--gid", fmt.Sprint(Gid),
		"--ro-bind", "/usr", "/usr",
		"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
		"--hostname", "seb-sandbox",
	}
	// Debian's merged /usr: /bin, /lib… are links into /usr.
	for _, dir := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		if target, err := os.Readlink("/" + dir); err == nil {
			a = append(a, "--symlink", target, "/"+dir)
		} else if fi, err := os.Stat("/" + dir); err == nil && fi.IsDir() {
			a = append(a, "--ro-bind", "/"+dir, "/"+dir)
		}
	}
	for _, f := range hostFiles {
		a = append(a, "--ro-bind-try", f, f)
	}
	for _, p := range spec.ReadOnly {
		a = append(a, "--ro-bind", p, p)
	}
	for _, p := range spec.ReadWrite {
		a = append(a, "--bind", p, p)
	}
	a = append(a, "--chdir", spec.Dir, "--", spec.Program)
	return append(a, programArgs...)
}

package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// init turns the program into the shim when Command's variable is set:
// the caller (terraform-exec, for instance) started it to run a sandboxed
// program, not to run itself.
func init() {
	raw, ok := os.LookupEnv(specEnv)
	if !ok {
		return
	}
	os.Exit(shim(raw, os.Args[1:]))
}

// shim runs spec's program with argv in a sandbox and returns its exit
// status: the program's, 128+n if a signal n ended it, 125 if the sandbox
// could not be made.
func shim(raw string, argv []string) int {
	var spec Spec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil || spec.Valid() != nil || spec.Bwrap == "" {
		fmt.Fprintln(os.Stderr, "seb sandbox: the sandbox specification is invalid")
		return 125
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, specEnv+"=") {
			env = append(env, kv)
		}
	}
	if err := setLimits(spec.Limits); err != nil {
		fmt.Fprintf(os.Stderr, "seb sandbox: resource limits: %v\n", err)
		return 125
	}
	// bwrap does not pass signals on: the shim sends SIGINT to the
	// program itself, whose pid bwrap reports on the info pipe, so that
	// Terraform stops cleanly and writes its state.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	infoR, infoW, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "seb sandbox: %v\n", err)
		return 125
	}
	cmd := exec.Command(spec.Bwrap, append([]string{"--info-fd", "3"}, args(spec, argv...)...)...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{infoW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "seb sandbox: start bwrap: %v\n", err)
		return 125
	}
	infoW.Close()
	child := make(chan int, 1)
	go func() {
		var info struct {
			ChildPID int `json:"child-pid"`
		}
		json.NewDecoder(infoR).Decode(&info)
		child <- info.ChildPID
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	pid, interrupted := 0, false
	for {
		select {
		case pid = <-child:
			child = nil
			if interrupted && pid > 0 {
				syscall.Kill(pid, syscall.SIGINT)
			}
		case <-signals:
			interrupted = true
			if pid > 0 {
				syscall.Kill(pid, syscall.SIGINT)
			}
		case <-done:
			st := cmd.ProcessState
			if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return st.ExitCode()
		}
	}
}

// setLimits applies l to this process, and so to everything it starts:
// soft and hard alike, so the sandbox cannot raise them.
func setLimits(l Limits) error {
	for _, r := range []struct {
		name     string
		resource int
		value    uint64
	}{
		{"memory", unix.RLIMIT_AS, l.MemoryBytes},
		{"cpu time", unix.RLIMIT_CPU, l.CPUSeconds},
		{"processes", unix.RLIMIT_NPROC, l.Processes},
		{"file size", unix.RLIMIT_FSIZE, l.FileBytes},
		{"open files", unix.RLIMIT_NOFILE, l.OpenFiles},
	} {
		if r.value == 0 {
			continue
		}
		var cur unix.Rlimit
		if err := unix.Getrlimit(r.resource, &cur); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		v := min(r.value, cur.Max)
		if err := unix.Setrlimit(r.resource, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	return nil
}

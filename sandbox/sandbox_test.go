package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seb-broker/seb/sandbox"
)

// newSandbox returns a sandbox, or skips when bubblewrap is missing —
// unless SEB_REQUIRE_SANDBOX is set, as CI sets it.
func newSandbox(t *testing.T, limits sandbox.Limits) *sandbox.Sandbox {
	t.Helper()
	sb, err := sandbox.New(context.Background(), sandbox.Options{Limits: limits})
	if errors.Is(err, sandbox.ErrUnavailable) && os.Getenv("SEB_REQUIRE_SANDBOX") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

// run runs a shell script in the sandbox with dir read-write, the way
// terraform-exec runs Terraform: the executable and environment Command
// returns, plus env.
func run(t *testing.T, sb *sandbox.Sandbox, dir, script string, env map[string]string) (string, int) {
	t.Helper()
	exe, senv, err := sb.Command(sandbox.Spec{Program: "/bin/sh", ReadWrite: []string{dir}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-c", script)
	for k, v := range senv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// TestSandboxSeesOnlyItsInputs: what an attacker's configuration would
// look for — the broker's files, the host's processes and environment —
// is not there.
func TestSandboxSeesOnlyItsInputs(t *testing.T) {
	sb := newSandbox(t, sandbox.Limits{})
	secrets := t.TempDir()
	key := filepath.Join(secrets, "signer.key")
	if err := os.WriteFile(key, []byte("PRIVATE-KEY-MATERIAL"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A host process whose environment holds a secret from its start, as
	// /proc/<pid>/environ shows it: the broker, say.
	broker := exec.Command("sleep", "600")
	broker.Env = append(os.Environ(), "SEB_TEST_BROKER_SECRET=ENV-SECRET-MATERIAL")
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	work := t.TempDir()
	script := `
cat ` + key + ` 2>&1
ls /root /home 2>&1
cat /proc/*/environ ` + fmt.Sprintf("/proc/%d/environ", broker.Process.Pid) + ` 2>&1 | tr '\0' '\n'
env
ls /proc | grep -c '^[0-9]'
id -u
echo written > ` + work + `/out
`
	out, code := run(t, sb, work, script, map[string]string{"ONLY": "this"})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, leak := range []string{"PRIVATE-KEY-MATERIAL", "ENV-SECRET-MATERIAL", "SEB_SANDBOX_SPEC"} {
		if strings.Contains(out, leak) {
			t.Errorf("the sandbox saw %s:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, "ONLY=this") {
		t.Errorf("the environment the caller set is missing:\n%s", out)
	}
	if !strings.Contains(out, "\n65534\n") {
		t.Errorf("not uid 65534:\n%s", out)
	}
	if got, err := os.ReadFile(filepath.Join(work, "out")); err != nil || string(got) != "written\n" {
		t.Errorf("the read-write directory: %q, %v", got, err)
	}
}

// TestSandboxExitStatus: the program's exit status comes through, as
// terraform plan -detailed-exitcode needs.
func TestSandboxExitStatus(t *testing.T) {
	sb := newSandbox(t, sandbox.Limits{})
	if _, code := run(t, sb, t.TempDir(), "exit 2", nil); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}

// TestSandboxLimits: a program that writes past its file size limit is
// stopped.
func TestSandboxLimits(t *testing.T) {
	sb := newSandbox(t, sandbox.Limits{FileBytes: 1 << 20})
	work := t.TempDir()
	out, code := run(t, sb, work, "head -c 4194304 /dev/zero > big", nil)
	if code == 0 {
		t.Fatalf("a 4 MiB file was written under a 1 MiB limit: %s", out)
	}
	if fi, err := os.Stat(filepath.Join(work, "big")); err == nil && fi.Size() > 1<<20 {
		t.Errorf("big is %d bytes", fi.Size())
	}
}

// TestSandboxInterrupt: SIGINT to the executable reaches the sandboxed
// program, which can stop cleanly (Terraform writes its state then).
func TestSandboxInterrupt(t *testing.T) {
	sb := newSandbox(t, sandbox.Limits{})
	work := t.TempDir()
	exe, senv, err := sb.Command(sandbox.Spec{Program: "/bin/sh", ReadWrite: []string{work}, Dir: work})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-c", `trap 'echo stopped > stopped; exit 7' INT; echo ready > ready; while :; do sleep 0.05; done`)
	for k, v := range senv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(work, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the program did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 7 {
		t.Errorf("exit %d, want the program's 7", code)
	}
	if _, err := os.Stat(filepath.Join(work, "stopped")); err != nil {
		t.Errorf("the program did not see SIGINT: %v", err)
	}
}

// TestSandboxKilledWithParent: when the process that started the sandbox
// dies, everything inside dies too.
func TestSandboxKilledWithParent(t *testing.T) {
	sb := newSandbox(t, sandbox.Limits{})
	work := t.TempDir()
	exe, senv, err := sb.Command(sandbox.Spec{Program: "/bin/sh", ReadWrite: []string{work}, Dir: work})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-c", `(while :; do date +%s%N > tick; sleep 0.05; done) & echo ready > ready; wait`)
	for k, v := range senv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(work, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the program did not start")
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	time.Sleep(300 * time.Millisecond)
	before, _ := os.ReadFile(filepath.Join(work, "tick"))
	time.Sleep(500 * time.Millisecond)
	after, _ := os.ReadFile(filepath.Join(work, "tick"))
	if string(before) != string(after) {
		t.Error("a process in the sandbox outlived the shim that started it")
	}
}

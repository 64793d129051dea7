package broker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/broker/sqlite"
	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
	"github.com/seb-broker/seb/internal/runnertest"
	"github.com/seb-broker/seb/internal/sandboxtest"
	"github.com/seb-broker/seb/internal/tftest"
	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/runner"
	bwrap "github.com/seb-broker/seb/sandbox"
)

// crashEnv is what a broker process needs to run, as directories and URLs
// both the test and a child process can open.
type crashEnv struct {
	dir       string // data: seb.db, keys/, signer/
	issuerURL string
	sandbox   string
	mirror    string
	bin       string
}

func (c crashEnv) environ() []string {
	return []string{"SEB_CRASH_DIR=" + c.dir, "SEB_CRASH_ISSUER=" + c.issuerURL, "SEB_CRASH_SANDBOX=" + c.sandbox,
		"SEB_CRASH_MIRROR=" + c.mirror, "SEB_CRASH_TERRAFORM=" + c.bin}
}

func crashEnvFromEnviron() crashEnv {
	return crashEnv{dir: os.Getenv("SEB_CRASH_DIR"), issuerURL: os.Getenv("SEB_CRASH_ISSUER"), sandbox: os.Getenv("SEB_CRASH_SANDBOX"),
		mirror: os.Getenv("SEB_CRASH_MIRROR"), bin: os.Getenv("SEB_CRASH_TERRAFORM")}
}

// open builds a broker over the environment's files, as `seb serve` would
// at start.
func (c crashEnv) open() (*broker.Service, broker.Store, error) {
	keys, err := broker.OpenKeySet(filepath.Join(c.dir, "keys"), broker.KeySetOptions{})
	if err != nil {
		return nil, nil, err
	}
	issuer, err := broker.NewIssuer(broker.IssuerOptions{URL: c.issuerURL, Keys: keys})
	if err != nil {
		return nil, nil, err
	}
	signer, err := broker.OpenSigner(filepath.Join(c.dir, "signer"))
	if err != nil {
		return nil, nil, err
	}
	store, err := sqlite.Open(filepath.Join(c.dir, "seb.db"), sqlite.Options{})
	if err != nil {
		return nil, nil, err
	}
	svc, err := broker.New(broker.Options{
		Store: store, Signer: signer, Issuer: issuer, SensitiveKey: sensitiveKey, JobLease: 5 * time.Second,
		Workspaces: []broker.Workspace{{
			Name: "sandbox", DriftMode: drift.ModeDefault, CertificateLifetime: time.Hour, ApprovalsRequired: 1,
			ProtectedActions: []planparse.Action{planparse.ActionDelete},
			Credentials: broker.CredentialProfile{Audience: sandboxtest.Audience, TokenFileEnv: []string{"SANDBOX_TOKEN_FILE"},
				Env: map[string]string{"SANDBOX_ENDPOINT": c.sandbox}},
		}},
	})
	return svc, store, err
}

// crashChild runs in the child process: a broker with its runner in one
// process, executing the certificate, which the parent kills midway.
func crashChild() {
	env := crashEnvFromEnviron()
	svc, _, err := env.open()
	if err == nil {
		err = startChildRunner(env, svc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	_, err = svc.Execute(context.Background(), broker.ExecuteRequest{CertificateID: os.Getenv("SEB_CRASH_CERTIFICATE"), Actor: "ci"})
	fmt.Fprintln(os.Stderr, "the execution ended before the crash:", err)
	os.Exit(4)
}

// startChildRunner runs a runner in the child, as the embedded one would,
// in its own directory under the work root.
func startChildRunner(env crashEnv, svc *broker.Service) error {
	sb, err := bwrap.New(context.Background(), bwrap.Options{})
	if err != nil && os.Getenv("SEB_REQUIRE_SANDBOX") != "" {
		return err
	}
	work, err := runner.WorkRoot(filepath.Join(env.dir, "work"))
	if err != nil {
		return err
	}
	engine, err := drift.New(context.Background(), drift.Options{Terraform: env.bin, ProviderMirror: env.mirror,
		Sandbox: sb, InsecureNoSandbox: sb == nil, WorkRoot: work, SensitiveKey: []byte("throwaway key of the child runner")})
	if err != nil {
		return err
	}
	r, err := runner.New(runner.Options{Name: "child", Broker: svc, Engine: engine, StateEvery: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	go r.Run(context.Background())
	return nil
}

// TestCrashMidApply kills a broker process, with its runner, in the
// middle of an apply and restarts: the execution is marked interrupted
// (never retried) and audited, the certificate stays consumed, the
// workspace is held for reconciliation and says why, the dead runner's
// lease can no longer store state, and no credential file is left on
// disk once a runner starts again.
func TestCrashMidApply(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// The issuer serves the key set in dir/keys, which the child opens too.
	var handler http.Handler = http.NotFoundHandler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(hs.Close)
	sb := sandboxtest.StartWith(t, sandboxcloud.Options{Issuer: hs.URL, StatePath: filepath.Join(t.TempDir(), "sandbox.json"), MutationDelay: 10 * time.Second})
	env := crashEnv{dir: dir, issuerURL: hs.URL, sandbox: sb.URL, mirror: tftest.Mirror(t), bin: tftest.Binary(t)}

	svc, store, err := env.open()
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := broker.OpenKeySet(filepath.Join(dir, "keys"), broker.KeySetOptions{})
	issuer, _ := broker.NewIssuer(broker.IssuerOptions{URL: hs.URL, Keys: keys})
	handler = issuer.Handler()
	stopRunner := runnertest.Start(t, svc, "parent")

	p, _, err := svc.Propose(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1", Bundle: bundle(t, "scale"), Vars: map[string]string{"replicas": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	_, cert, err := svc.Review(ctx, broker.ReviewRequest{ProposalID: p.ID, Reviewer: "alice", Decision: broker.Approve})
	if err != nil {
		t.Fatal(err)
	}
	stopRunner()
	store.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidApply$")
	cmd.Env = append(os.Environ(), append(env.environ(), "SEB_CRASH_CHILD=1", "SEB_CRASH_CERTIFICATE="+cert.ID)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the child is applying (the sandbox holds the create for
	// 10 s), then kill it without warning.
	probe, err := sqlite.Open(filepath.Join(dir, "seb.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var job *broker.Job
	for {
		running, _ := probe.ListExecutions(ctx, broker.ExecutionFilter{Running: true})
		if len(running) == 1 && running[0].State == broker.ExecutionApplying {
			job, _ = probe.Job(ctx, "job-"+running[0].ID)
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the child never reached applying: %s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	probe.Close()

	// Restart, as seb serve with an embedded runner does.
	svc, store, err = env.open()
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := svc.RecoverJobs(ctx, "child"); err != nil {
		t.Fatal(err)
	}
	executions, _ := store.ListExecutions(ctx, broker.ExecutionFilter{CertificateID: cert.ID})
	if len(executions) != 1 || executions[0].State != broker.ExecutionInterrupted || !strings.Contains(executions[0].Reason, "not retried") {
		t.Fatalf("after restart: %+v", executions)
	}
	hold, err := store.WorkspaceHold(ctx, "sandbox")
	if err != nil || hold.Execution != executions[0].ID || !strings.Contains(hold.Reason, "during its apply") {
		t.Fatalf("the workspace is not held for reconciliation: %+v, %v", hold, err)
	}
	if err := svc.ReportState(ctx, job.ID, job.Token, []byte(`{"version":4}`)); broker.ErrorCode(err) != broker.ECONFLICT {
		t.Errorf("the dead runner's lease stored state: %v", err)
	}
	if _, err := svc.Execute(ctx, broker.ExecuteRequest{CertificateID: cert.ID, Actor: "ci"}); err == nil || !strings.Contains(broker.ErrorMessage(err), "held for reconciliation") {
		t.Errorf("the held workspace executed: %v", err)
	}
	if err := svc.Reconcile(ctx, "sandbox", "admin", "nothing was created before the kill"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Execute(ctx, broker.ExecuteRequest{CertificateID: cert.ID, Actor: "ci"}); err == nil || !strings.Contains(broker.ErrorMessage(err), "already used") {
		t.Errorf("the certificate was usable again: %v", err)
	}
	// A runner starting again sweeps what the killed one left: no
	// credential file survives.
	if _, err := runner.WorkRoot(filepath.Join(dir, "work")); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(filepath.Join(dir, "work"), func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".token") {
			t.Errorf("a credential file outlived its run: %s", path)
		}
		return nil
	})
	actions := auditActions(t, store, svc.PublicKey())
	want := "execution.started credential.apply_issued workspace.held execution.interrupted execution.refused workspace.reconciled execution.refused"
	if got := strings.Join(actions[len(actions)-7:], " "); got != want {
		t.Errorf("audit ends with %q, want %q", got, want)
	}
}

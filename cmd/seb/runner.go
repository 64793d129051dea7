package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/runner"
)

// runnerFlags are `seb runner`'s flags.
type runnerFlags struct {
	server, tokenFile, name string
	jobs                    int
	terraform, cliConfig    string
	mirror, workDir         string
	insecureNoSandbox       bool
}

func newRunnerCommand() *cobra.Command {
	var f runnerFlags
	cmd := &cobra.Command{
		Use:   "runner --server URL --token-file FILE",
		Short: "Run Terraform for a seb server: lease jobs, run them in a sandbox, report back",
		Long: `Runner does every Terraform invocation for a seb server, and holds none of its
keys. It leases jobs from the server's queue (seb's verification plans,
speculative plans for agents, executions), runs Terraform for each in a
bubblewrap sandbox that sees only the job's workdir, the binary and the
provider mirror, streams the log back as Terraform writes it, and reports
the plan, the state and the outcome. It applies only when the server,
having compared the plan with the certificate, hands it the apply-phase
credential for that execution.

The token is a runner token (seb tokens create --role runner), good for
nothing but this; --token-file - reads it from standard input. seb serve
starts one runner as its child unless seb.hcl says runner { external = true }.
On SIGINT or SIGTERM running jobs are interrupted: Terraform stops
cleanly and the state it wrote is reported.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRunner(cmd.Context(), cmd.InOrStdin(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "http://127.0.0.1:8080", "the seb server's URL")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding the runner token; - for standard input")
	fl.StringVar(&f.name, "name", "", "the runner's name in leases (default: host-pid)")
	fl.IntVar(&f.jobs, "jobs", 2, "jobs to run at once")
	fl.StringVar(&f.terraform, "terraform", "", "Terraform or OpenTofu binary (default: found on PATH or in the cache)")
	fl.StringVar(&f.cliConfig, "terraform-cli-config", "", "Terraform CLI configuration naming the provider mirror (default: TF_CLI_CONFIG_FILE)")
	fl.StringVar(&f.mirror, "provider-mirror", "", "the provider mirror directory, instead of --terraform-cli-config")
	fl.StringVar(&f.workDir, "work-dir", filepath.Join(os.TempDir(), "seb-work"), "where job workdirs are made")
	fl.BoolVar(&f.insecureNoSandbox, "insecure-no-sandbox", false, "run Terraform without bubblewrap, able to read anything this user can (development only)")
	return cmd
}

func runRunner(ctx context.Context, stdin io.Reader, stderr io.Writer, f runnerFlags) error {
	logger := slog.New(slog.NewJSONHandler(stderr, nil)).With("process", "runner")
	if f.tokenFile == "" {
		return errors.New("--token-file is required (a runner token: seb tokens create --role runner)")
	}
	var raw []byte
	var err error
	if f.tokenFile == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, 4096))
	} else {
		raw, err = os.ReadFile(f.tokenFile)
	}
	if err != nil {
		return fmt.Errorf("runner token: %w", err)
	}
	client, err := runner.NewClient(f.server, string(raw))
	if err != nil {
		return err
	}
	if f.cliConfig == "" && f.mirror == "" {
		f.cliConfig = os.Getenv("TF_CLI_CONFIG_FILE")
	}
	if f.name == "" {
		f.name = runner.DefaultName()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	workRoot, err := runner.WorkRoot(f.workDir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(workRoot)
	// The runner never sees the broker's HMAC key: the summaries it
	// makes on the way are thrown away; the broker summarizes the plan
	// it receives with its own key.
	throwaway := make([]byte, 32)
	rand.Read(throwaway)
	engine, err := newEngine(ctx, engineOptions{Terraform: f.terraform, CLIConfig: f.cliConfig, Mirror: f.mirror,
		InsecureNoSandbox: f.insecureNoSandbox, SensitiveKey: throwaway, WorkRoot: workRoot, Logger: logger})
	if err != nil {
		return err
	}
	r, err := runner.New(runner.Options{Name: f.name, Broker: client, Engine: engine, Jobs: f.jobs, Logger: logger})
	if err != nil {
		return err
	}
	logger.Info("runner started", "server", f.server, "name", f.name, "terraform", engine.Version(), "work", workRoot)
	return r.Run(ctx)
}

// embeddedRunnerName is the name of the token of the runner `seb serve`
// at url starts: one per broker, its host's name and its address, so that
// replicas sharing a database (even listening on one address, on several
// machines) recover only their own runner's jobs.
func embeddedRunnerName(url string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return "embedded-runner@" + strings.NewReplacer(":", "-", "/", "-", "[", "", "]", "").Replace(host+"-"+strings.TrimPrefix(url, "http://"))
}

// embeddedRunner is the runner `seb serve` starts as its child.
type embeddedRunner struct {
	cmd  *exec.Cmd
	done chan error
}

// startEmbeddedRunner creates a fresh runner token and starts `seb runner`
// as a child process that dies with the broker, with that token on its
// standard input and none of the broker's environment: it holds no key
// of the broker's and reaches it only over the API.
func startEmbeddedRunner(ctx context.Context, store broker.Store, server string, o engineOptions, stderr io.Writer) (*embeddedRunner, error) {
	// One token per broker address, replaced at every start: the token of
	// a runner that died with an earlier process no longer works.
	name := embeddedRunnerName(server)
	if err := store.DeleteAPIToken(ctx, name); err != nil && broker.ErrorCode(err) != broker.ENOTFOUND {
		return nil, err
	}
	token, record, err := broker.NewAPIToken(name, broker.RoleRunner, time.Now())
	if err != nil {
		return nil, err
	}
	if err := store.CreateAPIToken(ctx, record); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The binary is found here, so that a missing one stops seb serve now.
	terraform, err := drift.FindTerraform(ctx, drift.FindOptions{Path: o.Terraform, Download: true})
	if err != nil {
		return nil, err
	}
	args := []string{"runner", "--server", server, "--token-file", "-", "--name", "embedded", "--terraform", terraform}
	if o.CLIConfig != "" {
		args = append(args, "--terraform-cli-config", o.CLIConfig)
	} else {
		args = append(args, "--provider-mirror", o.Mirror)
	}
	if o.InsecureNoSandbox {
		args = append(args, "--insecure-no-sandbox")
	}
	cmd := exec.Command(self, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	cmd.Stdin = strings.NewReader(token)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// The runner dies with the broker: SIGTERM lets it interrupt Terraform
	// cleanly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the embedded runner: %w", err)
	}
	r := &embeddedRunner{cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	return r, nil
}

// Stop asks the runner to stop (SIGTERM: running jobs are interrupted and
// report their state), and kills it after grace.
func (r *embeddedRunner) Stop(grace time.Duration) {
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(grace):
		r.cmd.Process.Kill()
		<-r.done
	}
}

// Package runner is seb's runner: the process that does every Terraform
// invocation for a broker, and holds no key of the broker's. It leases jobs
// from the broker's queue, unpacks each job's bundle into a workdir, runs
// Terraform in a bubblewrap sandbox through the drift engine with the
// credentials the broker minted for that job and phase, streams the log
// back as Terraform writes it, and reports the plan, the state and the
// outcome. Decisions stay in the broker: the runner applies only when the
// broker, having compared its plan with the certificate, hands it the
// apply-phase credential.
package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
)

// Broker is what a runner needs of the broker: *broker.Service in the
// same process, or Client over HTTP.
type Broker interface {
	LeaseJob(ctx context.Context, runner string, wait time.Duration) (*broker.Lease, error)
	Heartbeat(ctx context.Context, id string, token int64) error
	AppendLog(ctx context.Context, id string, token int64, phase string, data []byte) error
	ReportPlan(ctx context.Context, id string, token int64, r broker.PlanReport) (*broker.PlanVerdict, error)
	ReportState(ctx context.Context, id string, token int64, state []byte) error
	ReportApply(ctx context.Context, id string, token int64, r broker.ApplyReport) error
	ReportFailure(ctx context.Context, id string, token int64, reason string) error
}

// Options configure a Runner.
type Options struct {
	// Name identifies the runner in leases and the audit log.
	Name   string
	Broker Broker
	// Engine runs Terraform, in a sandbox.
	Engine *drift.Runner
	// Jobs is how many jobs run at once; 0 means 2.
	Jobs int
	// StateEvery is how often an apply's state file is checked and, when
	// Terraform changed it, sent to the broker; 0 means 500ms.
	StateEvery time.Duration
	// LogEvery is how often log chunks are sent; 0 means 250ms.
	LogEvery time.Duration
	Logger   *slog.Logger
}

// Valid reports whether the options can be used.
func (o Options) Valid() error {
	switch {
	case o.Name == "":
		return errors.New("runner: Options.Name is empty")
	case o.Broker == nil:
		return errors.New("runner: Options.Broker is nil")
	case o.Engine == nil:
		return errors.New("runner: Options.Engine is nil")
	case o.Jobs < 0:
		return errors.New("runner: Options.Jobs is negative")
	}
	return nil
}

// A Runner leases and runs jobs until stopped.
type Runner struct{ opts Options }

// New returns a runner.
func New(opts Options) (*Runner, error) {
	if err := opts.Valid(); err != nil {
		return nil, err
	}
	if opts.Jobs == 0 {
		opts.Jobs = 2
	}
	if opts.StateEvery == 0 {
		opts.StateEvery = 500 * time.Millisecond
	}
	if opts.LogEvery == 0 {
		opts.LogEvery = 250 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{opts: opts}, nil
}

// Run leases jobs and runs up to Options.Jobs at once until ctx ends;
// then it interrupts the running ones (Terraform stops cleanly and the
// state it wrote is reported) and returns when they have ended.
func (r *Runner) Run(ctx context.Context) error {
	slots := make(chan struct{}, r.opts.Jobs)
	var running sync.WaitGroup
	defer running.Wait()
	backoff := time.Duration(0)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		lease, err := r.opts.Broker.LeaseJob(ctx, r.opts.Name, 20*time.Second)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			if broker.ErrorCode(err) != broker.ENOTFOUND {
				backoff = min(max(2*backoff, 250*time.Millisecond), 10*time.Second)
				r.opts.Logger.Error("lease a job", "error", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
			}
			continue
		}
		backoff = 0
		running.Add(1)
		go func() {
			defer running.Done()
			defer func() { <-slots }()
			r.run(ctx, lease)
		}()
	}
}

// job is one leased job as it runs.
type job struct {
	r     *Runner
	lease *broker.Lease
	// ctx ends when the runner stops or the lease is lost; reports are
	// sent under report, which outlives it.
	ctx    context.Context
	cancel context.CancelCauseFunc
	report context.Context
	// stopping ends when the runner is told to stop.
	stopping <-chan struct{}
	log      *logStream
}

// errLeaseLost ends a job whose lease the broker no longer honours.
var errLeaseLost = errors.New("the broker took the job back: its lease was lost")

func (r *Runner) run(ctx context.Context, lease *broker.Lease) {
	logger := r.opts.Logger.With("job", lease.Job, "kind", lease.Kind, "workspace", lease.Workspace)
	logger.Info("job leased")
	j := &job{r: r, lease: lease, report: context.WithoutCancel(ctx), stopping: ctx.Done()}
	j.ctx, j.cancel = context.WithCancelCause(ctx)
	defer j.cancel(nil)
	j.log = newLogStream(j, r.opts.LogEvery)
	defer j.log.close()
	go j.heartbeat()
	err := j.execute()
	j.log.close()
	if err != nil {
		if broker.ErrorCode(err) == broker.ECONFLICT || errors.Is(context.Cause(j.ctx), errLeaseLost) {
			logger.Warn("job abandoned", "error", err)
			return
		}
		logger.Error("job failed", "error", err)
		if rerr := j.retry(func() error { return r.opts.Broker.ReportFailure(j.report, lease.Job, lease.Token, err.Error()) }); rerr != nil {
			logger.Error("report the failure", "error", rerr)
		}
		return
	}
	logger.Info("job done")
}

// heartbeat renews the lease until the job ends; when the broker says
// the lease is lost, the job is cancelled (Terraform interrupted).
func (j *job) heartbeat() {
	every := j.lease.Heartbeat
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	// A runner that cannot reach the broker for as long as a lease lasts
	// stops: by then the broker has ended the job, and another execution
	// of the workspace may start.
	lastOK, lease := time.Now(), 3*every
	for {
		select {
		case <-j.ctx.Done():
			return
		case <-t.C:
			err := j.r.opts.Broker.Heartbeat(j.report, j.lease.Job, j.lease.Token)
			switch {
			case err == nil:
				lastOK = time.Now()
			case broker.ErrorCode(err) == broker.ECONFLICT, time.Since(lastOK) >= lease:
				j.r.opts.Logger.Warn("lease lost", "job", j.lease.Job, "error", err)
				j.cancel(errLeaseLost)
				return
			default:
				j.r.opts.Logger.Warn("heartbeat", "job", j.lease.Job, "error", err)
			}
		}
	}
}

// execute runs the job: unpack, plan, report; for an execution, apply
// when the broker accepts, sending the state as Terraform writes it.
func (j *job) execute() error {
	b := j.r.opts.Broker
	w, err := j.r.opts.Engine.NewWorkdir(bytes.NewReader(j.lease.Bundle))
	if drift.IsRefusal(err) {
		_, err = j.reportPlan(broker.PlanReport{Error: err.Error(), Refused: true})
		return err
	}
	if err != nil {
		return err
	}
	// The workdir holds the job's credential files: nothing of it
	// outlives the job.
	defer w.Close()
	w.Follow(j.log)
	creds := broker.GrantCredentials{Plan: j.lease.Credentials}
	// A verification's plan is what reviewers see: the schemas say which
	// of its hidden values the provider hides by nature.
	plan, err := w.Plan(j.ctx, drift.PlanRequest{Vars: j.lease.Vars, State: j.lease.State, Credentials: creds,
		Schemas: j.lease.Kind == broker.JobVerify})
	j.log.flush()
	var stepErr *drift.StepError
	switch {
	case errors.As(err, &stepErr) && j.ctx.Err() == nil:
		// Terraform refused the configuration: the sender's fault.
		_, err = j.reportPlan(broker.PlanReport{Error: err.Error(), Refused: true})
		return err
	case err != nil:
		return err
	}
	verdict, err := j.reportPlan(broker.PlanReport{Plan: plan.JSON, HasChanges: plan.HasChanges, Schemas: plan.Schemas})
	if err != nil || j.lease.Kind != broker.JobExecute || !verdict.Apply {
		return err
	}
	creds.Apply = verdict.Credentials
	j.log.setPhase(drift.PhaseApply)
	watching := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		j.watchState(w, watching)
	}()
	res, err := w.Apply(j.ctx, plan, creds)
	close(watching)
	<-watched
	j.log.flush()
	if err != nil {
		return err
	}
	report := broker.ApplyReport{Outcome: res.Outcome, State: res.State}
	if res.Err != nil {
		report.Error = res.Err.Error()
	}
	// The final state is what matters most: sent again while the broker
	// cannot be reached.
	return j.retry(func() error { return b.ReportApply(j.report, j.lease.Job, j.lease.Token, report) })
}

// reportPlan sends the plan, again while the broker cannot be reached.
func (j *job) reportPlan(r broker.PlanReport) (*broker.PlanVerdict, error) {
	var v *broker.PlanVerdict
	err := j.retry(func() error {
		var err error
		v, err = j.r.opts.Broker.ReportPlan(j.report, j.lease.Job, j.lease.Token, r)
		return err
	})
	return v, err
}

// retry calls report until it succeeds, fails for any reason but the
// broker being unreachable (a lost lease, a refusal, a broker error), or
// two minutes have passed — ten seconds once the runner is stopping; an
// unreachable broker is tried again with backoff.
func (j *job) retry(report func() error) error {
	start := time.Now()
	wait := 250 * time.Millisecond
	for {
		err := report()
		var unreachable *url.Error
		limit := 2 * time.Minute
		select {
		case <-j.stopping:
			limit = 10 * time.Second
		default:
		}
		if err == nil || !errors.As(err, &unreachable) || time.Since(start) > limit {
			return err
		}
		j.r.opts.Logger.Warn("report to the broker", "job", j.lease.Job, "error", err, "retry_in", wait)
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
}

// watchState sends the workdir's state to the broker each time Terraform
// rewrites it during the apply, until stop is closed.
func (j *job) watchState(w *drift.Workdir, stop <-chan struct{}) {
	var sent []byte
	t := time.NewTicker(j.r.opts.StateEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		state, err := w.State()
		if err != nil || len(state) == 0 || bytes.Equal(state, sent) || !validState(state) {
			continue
		}
		if err := j.r.opts.Broker.ReportState(j.report, j.lease.Job, j.lease.Token, state); err != nil {
			j.r.opts.Logger.Warn("send the state", "job", j.lease.Job, "error", err)
			if broker.ErrorCode(err) == broker.ECONFLICT {
				j.cancel(errLeaseLost)
				return
			}
			continue
		}
		sent = state
	}
}

// validState reports whether a state file read mid-write is whole: it is
// replaced by Terraform between writes, and a partial read is not JSON.
func validState(state []byte) bool {
	return bytes.HasPrefix(bytes.TrimSpace(state), []byte("{")) && bytes.HasSuffix(bytes.TrimSpace(state), []byte("}"))
}

// logStream sends a job's Terraform log to the broker in chunks, as
// Terraform writes it.
type logStream struct {
	j *job
	// sending orders the chunks; mu guards what Terraform writes, never
	// held across a request.
	sending sync.Mutex
	mu      sync.Mutex
	phase   drift.Phase
	pending bytes.Buffer
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func newLogStream(j *job, every time.Duration) *logStream {
	l := &logStream{j: j, phase: drift.PhasePlan, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(l.stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				l.flush()
				return
			case <-t.C:
				l.flush()
			}
		}
	}()
	return l
}

// Write implements io.Writer: the engine's tee.
func (l *logStream) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending.Write(p)
	return len(p), nil
}

// setPhase sends what is pending under the old phase, then starts the new.
func (l *logStream) setPhase(p drift.Phase) {
	l.flush()
	l.sending.Lock()
	l.mu.Lock()
	l.phase = p
	l.mu.Unlock()
	l.sending.Unlock()
}

// flush sends what is pending now.
func (l *logStream) flush() {
	l.sending.Lock()
	defer l.sending.Unlock()
	l.mu.Lock()
	chunk, phase := bytes.Clone(l.pending.Bytes()), l.phase
	l.pending.Reset()
	l.mu.Unlock()
	for len(chunk) > 0 {
		// Chunks stay well under the broker's limit on a report's body.
		n := min(len(chunk), maxLogChunk)
		err := l.j.r.opts.Broker.AppendLog(l.j.report, l.j.lease.Job, l.j.lease.Token, string(phase), chunk[:n])
		if err != nil {
			l.j.r.opts.Logger.Warn("send the log", "job", l.j.lease.Job, "error", err)
			if broker.ErrorCode(err) != broker.ECONFLICT {
				l.keep(chunk)
			}
			return
		}
		chunk = chunk[n:]
	}
}

// maxLogChunk bounds one log report; maxLogPending what is kept for a
// broker that cannot be reached.
const (
	maxLogChunk   = 256 << 10
	maxLogPending = 16 << 20
)

// keep puts back a chunk that could not be sent, ahead of what followed,
// up to maxLogPending: a broker that stays unreachable loses the middle of
// the log, and the log says so.
func (l *logStream) keep(chunk []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rest := bytes.Clone(l.pending.Bytes())
	l.pending.Reset()
	if len(chunk)+len(rest) > maxLogPending {
		l.pending.WriteString("{\"@level\":\"warn\",\"@message\":\"seb runner: part of the log was dropped while the broker could not be reached\"}\n")
		// Keep the newest half, from a line's start.
		if cut := max(0, len(rest)-maxLogPending/2); cut > 0 {
			if i := bytes.IndexByte(rest[cut:], '\n'); i >= 0 {
				rest = rest[cut+i+1:]
			} else {
				rest = nil
			}
		}
		chunk = nil
	}
	l.pending.Write(chunk)
	l.pending.Write(rest)
}

func (l *logStream) close() {
	l.once.Do(func() { close(l.done) })
	<-l.stopped
}

// DefaultName is a runner's name when none is given: host and pid.
func DefaultName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// WorkRoot returns this runner's own directory under base, after
// removing what runners that are gone left there: a workdir can hold a
// job's credential files, and none may outlive its job.
func WorkRoot(base string) (string, error) {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "runner-"))
		if !strings.HasPrefix(e.Name(), "runner-") || err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	dir := filepath.Join(base, "runner-"+strconv.Itoa(os.Getpid()))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.Mkdir(dir, 0o700)
}

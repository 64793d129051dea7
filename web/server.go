// Package web is seb's HTTP face: the JSON API under /api/v1 that agents,
// CI and reviewers use, authenticated by bearer API tokens with roles, and
// the broker's OpenID discovery and JWKS. Every error has one shape,
// {"error": {"code", "message"}}, from one handler; internal details go to
// the log, never to the client.
package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
)

// Broker is what the API needs of the broker's services.
type Broker interface {
	Workspaces() []broker.Workspace
	Workspace(name string) (broker.Workspace, error)
	Plan(ctx context.Context, workspace string, bundle []byte, vars map[string]string) (*drift.PlanResult, error)
	Submit(ctx context.Context, req broker.ProposalRequest) (*broker.Proposal, error)
	Verify(ctx context.Context, id string) (*broker.Proposal, *broker.Certificate, error)
	Review(ctx context.Context, req broker.ReviewRequest) (*broker.Proposal, *broker.Certificate, error)
	Revoke(ctx context.Context, certificateID, by string) error
	RevokeAll(ctx context.Context, workspace, by string) (int64, error)
	Begin(ctx context.Context, req broker.ExecuteRequest) (*broker.Execution, *broker.Certificate, error)
	Run(ctx context.Context, e *broker.Execution, cert *broker.Certificate, live io.Writer) error
	PublicKey() []byte
	WorkspaceState(ctx context.Context, workspace string) ([]byte, error)
	PlanCredential(ctx context.Context, workspace, who string) (broker.Credential, error)
	Standing(ctx context.Context, cert *broker.Certificate) error
}

// Records is what the API reads directly from the store.
type Records interface {
	Proposal(ctx context.Context, id string) (*broker.Proposal, error)
	ListProposals(ctx context.Context, f broker.ProposalFilter) ([]*broker.Proposal, error)
	Reviews(ctx context.Context, proposalID string) ([]broker.Review, error)
	Certificate(ctx context.Context, id string) (*broker.Certificate, error)
	ProposalCertificate(ctx context.Context, proposalID string) (*broker.Certificate, error)
	Execution(ctx context.Context, id string) (*broker.Execution, error)
	ListExecutions(ctx context.Context, f broker.ExecutionFilter) ([]*broker.Execution, error)
	Artifact(ctx context.Context, id string) (*broker.Artifact, error)
	AuditEntries(ctx context.Context, after int64, limit int) ([]*broker.AuditEntry, error)
	RevocationEpoch(ctx context.Context, workspace string) (int64, error)
	PolicyEpoch(ctx context.Context) (int64, error)
	APITokenByHash(ctx context.Context, hash string) (*broker.APIToken, error)
}

// Options configure a Server.
type Options struct {
	Broker  Broker
	Records Records
	// Issuer serves the OpenID discovery document and the JWKS.
	Issuer http.Handler
	Logger *slog.Logger
	// MaxBundleBytes bounds a proposal's request body; 0 means 96 MiB.
	MaxBundleBytes int64
	// Verifiers is how many proposals seb plans at once after admitting
	// them; 0 means 2.
	Verifiers int
}

// A Server serves the API.
type Server struct {
	opts    Options
	echo    *echo.Echo
	metrics *metrics

	// runs tracks executions running in the background, so that shutdown
	// can let them finish.
	runs sync.WaitGroup
	// base is the context executions run under; cancelled at shutdown
	// after the grace period, which interrupts them cleanly.
	base   context.Context
	cancel context.CancelFunc
	// wake tells the verifier that a proposal waits for seb's plan.
	wake chan struct{}
	// The verifier runs under its own context, cancelled first at
	// shutdown: a verification is only a plan, and an interrupted one is
	// simply done again at the next start.
	verifyCtx  context.Context
	stopVerify context.CancelFunc
	verifying  sync.WaitGroup

	// planSlots bounds the speculative plans running at once.
	planSlots chan struct{}

	// live holds the logs of the executions running now, for followers;
	// closing, under the same lock, refuses new executions at shutdown.
	liveMu  sync.Mutex
	live    map[string]*liveLog
	closing bool

	// ui holds the UI's sessions; pages its parsed templates.
	ui      *sessions
	pages   pages
	audited auditCheck
}

// New returns a server for opts.
func New(opts Options) (*Server, error) {
	if opts.Broker == nil || opts.Records == nil {
		return nil, errors.New("web: Options.Broker and Options.Records are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBundleBytes == 0 {
		opts.MaxBundleBytes = 96 << 20
	}
	if opts.Verifiers == 0 {
		opts.Verifiers = 2
	}
	s := &Server{
		opts: opts, echo: echo.New(), metrics: newMetrics(), wake: make(chan struct{}, 1),
		planSlots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))), live: map[string]*liveLog{},
	}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	s.ui = &sessions{byID: map[string]*session{}}
	s.base, s.cancel = context.WithCancel(context.Background())
	s.verifyCtx, s.stopVerify = context.WithCancel(context.Background())
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{Generator: requestID}))
	e.Use(s.logRequests)
	e.Use(s.metrics.observe)
	e.Use(middleware.Recover())
	s.routes()
	return s, nil
}

// StartVerifier starts planning admitted proposals in the background. The
// caller starts it once the broker is ready to verify: recovered and with
// its policy loaded.
func (s *Server) StartVerifier() {
	s.verifying.Add(1)
	go s.verifier()
}

// startRun counts an execution about to start, unless seb is shutting
// down. Counting before the certificate is consumed means shutdown never
// misses a run it must wait for.
func (s *Server) startRun() bool {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	if s.closing {
		return false
	}
	s.runs.Add(1)
	return true
}

// verifier runs seb's own plan of admitted proposals in the background,
// at most Options.Verifiers at once, oldest first. It picks up proposals
// from the store, so that one admitted before a restart is verified too.
func (s *Server) verifier() {
	defer s.verifying.Done()
	ctx := s.verifyCtx
	slots := make(chan struct{}, s.opts.Verifiers)
	var mu sync.Mutex
	inflight := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-time.After(2 * time.Second):
		}
		waiting, err := s.opts.Records.ListProposals(ctx, broker.ProposalFilter{State: broker.ProposalVerifying, OldestFirst: true, Limit: 200})
		if err != nil {
			s.opts.Logger.Error("list proposals to verify", "error", err)
			continue
		}
		for _, p := range waiting {
			id := p.ID
			mu.Lock()
			busy := inflight[id]
			inflight[id] = true
			mu.Unlock()
			if busy {
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			s.verifying.Add(1)
			go func() {
				defer s.verifying.Done()
				lowerPriority()
				p, cert, err := s.opts.Broker.Verify(ctx, id)
				if err != nil && broker.ErrorCode(err) == broker.EINTERNAL {
					s.opts.Logger.Error("verify proposal", "proposal", id, "error", err)
				}
				if p != nil {
					s.metrics.proposals.WithLabelValues(string(p.State)).Inc()
				}
				if cert != nil {
					s.metrics.certificates.Inc()
				}
				mu.Lock()
				delete(inflight, id)
				mu.Unlock()
				<-slots
			}()
		}
	}
}

// wakeVerifier tells the verifier there is work, without waiting.
func (s *Server) wakeVerifier() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Shutdown waits up to ctx's deadline for background executions to end,
// then interrupts the rest (Terraform stops cleanly; they are recorded as
// interrupted) and waits for that too.
func (s *Server) Shutdown(ctx context.Context) {
	s.liveMu.Lock()
	s.closing = true
	s.liveMu.Unlock()
	s.stopVerify()
	s.verifying.Wait()
	done := make(chan struct{})
	go func() { s.runs.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		<-done
	}
	s.cancel()
}

func requestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		req := c.Request()
		s.opts.Logger.Info("request", "id", c.Response().Header().Get(echo.HeaderXRequestID),
			"method", req.Method, "path", req.URL.Path, "status", c.Response().Status,
			"duration", time.Since(start), "principal", principalName(c))
		return nil
	}
}

// statuses maps the broker's error codes to HTTP statuses: the one table.
var statuses = map[string]int{
	broker.EINVALID:      http.StatusBadRequest,
	broker.ENOTFOUND:     http.StatusNotFound,
	broker.ECONFLICT:     http.StatusConflict,
	broker.EUNAUTHORIZED: http.StatusUnauthorized,
	broker.EFORBIDDEN:    http.StatusForbidden,
	broker.EINTERNAL:     http.StatusInternalServerError,
}

// codes maps statuses echo itself produces back to error codes.
var codes = map[int]string{
	http.StatusBadRequest:            broker.EINVALID,
	http.StatusNotFound:              broker.ENOTFOUND,
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusRequestEntityTooLarge: "too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusUnauthorized:          broker.EUNAUTHORIZED,
	http.StatusForbidden:             broker.EFORBIDDEN,
	http.StatusTooManyRequests:       "busy",
	http.StatusServiceUnavailable:    "unavailable",
}

// handleError is the one place errors become responses.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, code, message := http.StatusInternalServerError, broker.EINTERNAL, "internal error"
	var be *broker.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &be):
		status, code, message = statuses[be.Code], be.Code, be.Message
		if status == 0 {
			status = http.StatusInternalServerError
		}
	case errors.As(err, &he):
		status = he.Code
		code = codes[status]
		if code == "" {
			code = broker.EINTERNAL
		}
		switch m := he.Message.(type) {
		case string:
			message = m
		default:
			message = http.StatusText(status)
		}
		if status == http.StatusRequestEntityTooLarge {
			message = "the request body is too large"
		}
	}
	if status >= 500 && status != http.StatusServiceUnavailable {
		s.opts.Logger.Error("request failed", "id", c.Response().Header().Get(echo.HeaderXRequestID),
			"path", c.Request().URL.Path, "error", err)
		message = "internal error"
	}
	if ui, _ := c.Get(uiKey).(bool); ui {
		if err := s.render(c, status, "error", http.StatusText(status), map[string]any{"Status": status, "Message": message}); err == nil {
			return
		}
	}
	c.JSON(status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}

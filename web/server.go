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
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/sync/semaphore"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
)

// Broker is what the API needs of the broker's services.
type Broker interface {
	// StillNeeded says which approvals a pending proposal still needs.
	StillNeeded(p *broker.Proposal, reviews []broker.Review) string
	Workspaces() []broker.Workspace
	Workspace(name string) (broker.Workspace, error)
	Plan(ctx context.Context, agent, workspace string, bundle []byte, vars map[string]string) (*drift.PlanResult, error)
	Submit(ctx context.Context, req broker.ProposalRequest) (*broker.Proposal, error)
	Review(ctx context.Context, req broker.ReviewRequest) (*broker.Proposal, *broker.Certificate, error)
	Revoke(ctx context.Context, certificateID, by string) error
	RevokeAll(ctx context.Context, workspace, by string) (int64, error)
	Begin(ctx context.Context, req broker.ExecuteRequest) (*broker.Execution, *broker.Certificate, error)
	Hold(ctx context.Context, workspace string) (*broker.Hold, error)
	Reconcile(ctx context.Context, workspace, by, note string) error
	CreateAPIToken(ctx context.Context, name string, role broker.Role, scope broker.TokenScope, by string) (string, *broker.APIToken, error)
	RevokeAPIToken(ctx context.Context, name, by string) error
	APITokens(ctx context.Context) ([]*broker.APIToken, error)
	RecordRefusedAuthentications(ctx context.Context, counts map[string]int, since time.Time) error
	ProposeAgain(ctx context.Context, id, proposer string) (*broker.Proposal, error)
	CancelJob(ctx context.Context, id, by string) error
	Runners
	PublicKey() []byte
	Checkpoint(ctx context.Context) ([]byte, *broker.Checkpoint, error)
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
	Bundle(ctx context.Context, digest string) ([]byte, error)
	AuditEntries(ctx context.Context, after int64, limit int) ([]*broker.AuditEntry, error)
	RevocationEpoch(ctx context.Context, workspace string) (int64, error)
	PolicyEpoch(ctx context.Context) (int64, error)
	APITokenByHash(ctx context.Context, hash string) (*broker.APIToken, error)
	JobLog(ctx context.Context, id, phase string) ([]byte, error)
	CreateSession(ctx context.Context, s *broker.Session, now time.Time) error
	Session(ctx context.Context, idHash string, now time.Time) (*broker.Session, error)
	DeleteSession(ctx context.Context, idHash string) error
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
	// MaxReadingBytes bounds the bytes of proposal and plan bodies read
	// at once; a body waits for room up to ReadingWait, then is refused
	// (429). Reading and decoding a body takes about three times its size
	// in memory, so this bounds the memory uploads take whatever arrives
	// at once. 0 means 2 × MaxBundleBytes; it is at least MaxBundleBytes.
	MaxReadingBytes int64
	// ReadingWait is how long a body waits for room; 0 means 30s.
	ReadingWait time.Duration
	// MCP, if set, is served at /mcp to agents (their API token as a
	// bearer token): seb's MCP server for agents (package agentmcp).
	MCP http.Handler
}

// A Server serves the API.
type Server struct {
	opts Options
	// openAPIDoc is the API's OpenAPI document, encoded once.
	openAPIDoc []byte
	echo       *echo.Echo
	metrics    *metrics

	// planSlots bounds the speculative plans waiting at once.
	planSlots chan struct{}
	// reading holds the room of the bodies being read (MaxReadingBytes).
	reading *semaphore.Weighted
	// freeing is set while memory freed by a large body is returned.
	freeing atomic.Bool
	// refusals gathers refused authentications between audit entries.
	refusals refusals

	// ui holds the UI's sessions; pages its parsed templates.
	ui      sessions
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
	if opts.MaxReadingBytes == 0 {
		opts.MaxReadingBytes = 2 * opts.MaxBundleBytes
	}
	opts.MaxReadingBytes = max(opts.MaxReadingBytes, opts.MaxBundleBytes)
	if opts.ReadingWait == 0 {
		opts.ReadingWait = 30 * time.Second
	}
	s := &Server{
		opts: opts, echo: echo.New(), metrics: newMetrics(),
		planSlots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		reading:   semaphore.NewWeighted(opts.MaxReadingBytes),
	}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	// Every route is documented, or the server does not start.
	doc, err := OpenAPI()
	if err != nil {
		return nil, err
	}
	if s.openAPIDoc, err = json.Marshal(doc); err != nil {
		return nil, err
	}
	s.ui = sessions{records: opts.Records}
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

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

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
	broker.EBUSY:         http.StatusTooManyRequests,
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

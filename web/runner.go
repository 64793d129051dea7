package web

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/runner"
)

// Runners is what the runner endpoints need of the broker: exactly what a
// runner needs of it, which they serve over HTTP.
type Runners = runner.Broker

// runnerRoles may use the runner endpoints, and nothing else may.
var runnerRoles = []broker.Role{broker.RoleRunner}

// runnerRoutes are the endpoints runners use. A runner token is good for
// nothing else, and every report must carry the fencing token of a lease
// the runner still holds.
func (s *Server) runnerRoutes() []route {
	return []route{
		{http.MethodPost, "/runner/lease", runnerRoles, s.leaseJob, "", "Lease the next job (long poll; 204 when none came)"},
		{http.MethodPost, "/runner/jobs/:id/heartbeat", runnerRoles, s.jobHeartbeat, "", "Renew a job's lease; 409 when it was lost"},
		{http.MethodPost, "/runner/jobs/:id/log", runnerRoles, s.jobLog, "", "Append a chunk of the job's Terraform log"},
		{http.MethodPost, "/runner/jobs/:id/plan", runnerRoles, s.jobPlan, "bundle", "Report the job's plan; for an execution, the broker's verdict and the apply-phase credential"},
		{http.MethodPost, "/runner/jobs/:id/state", runnerRoles, s.jobState, "bundle", "Send the state Terraform has written so far during an apply"},
		{http.MethodPost, "/runner/jobs/:id/apply", runnerRoles, s.jobApply, "bundle", "Report how an execution's apply ended, with the final state"},
		{http.MethodPost, "/runner/jobs/:id/fail", runnerRoles, s.jobFail, "", "Report that the runner could not run the job"},
	}
}

type leaseRequest struct {
	Runner string `json:"runner"`
	// WaitSeconds is how long to wait for a job; at most 30.
	WaitSeconds int `json:"wait_seconds"`
}

func (s *Server) leaseJob(c echo.Context) error {
	var req leaseRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	name := principalName(c)
	if req.Runner != "" {
		name += "/" + req.Runner
	}
	wait := time.Duration(min(max(req.WaitSeconds, 0), 30)) * time.Second
	lease, err := s.opts.Broker.LeaseJob(c.Request().Context(), name, wait)
	if broker.ErrorCode(err) == broker.ENOTFOUND {
		return c.NoContent(http.StatusNoContent)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, lease)
}

// jobReport is the body of every report: the lease's fencing token and
// what is reported.
type jobReport struct {
	Token  int64               `json:"token"`
	Phase  string              `json:"phase,omitempty"`
	Data   []byte              `json:"data,omitempty"`
	Plan   *broker.PlanReport  `json:"plan,omitempty"`
	Apply  *broker.ApplyReport `json:"apply,omitempty"`
	Reason string              `json:"reason,omitempty"`
}

func (s *Server) report(c echo.Context) (jobReport, context.Context, error) {
	var r jobReport
	if err := bind(c, &r); err != nil {
		return r, nil, err
	}
	// A report is recorded whole even if the runner goes away meanwhile,
	// and only for a job leased to this runner.
	return r, broker.AsRunner(context.WithoutCancel(c.Request().Context()), principalName(c)), nil
}

func (s *Server) jobHeartbeat(c echo.Context) error {
	r, ctx, err := s.report(c)
	if err != nil {
		return err
	}
	if err := s.opts.Broker.Heartbeat(ctx, c.Param("id"), r.Token); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) jobLog(c echo.Context) error {
	r, ctx, err := s.report(c)
	if err != nil {
		return err
	}
	if err := s.opts.Broker.AppendLog(ctx, c.Param("id"), r.Token, r.Phase, r.Data); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) jobPlan(c echo.Context) error {
	r, ctx, err := s.report(c)
	if err != nil {
		return err
	}
	if r.Plan == nil {
		return broker.Errorf(broker.EINVALID, "a plan report needs \"plan\"")
	}
	verdict, err := s.opts.Broker.ReportPlan(ctx, c.Param("id"), r.Token, *r.Plan)
	if err != nil {
		return err
	}
	s.jobEnded(ctx, c.Param("id"))
	return c.JSON(http.StatusOK, verdict)
}

func (s *Server) jobState(c echo.Context) error {
	r, ctx, err := s.report(c)
	if err != nil {
		return err
	}
	if err := s.opts.Broker.ReportState(ctx, c.Param("id"), r.Token, r.Data); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) jobApply(c echo.Context) error {
	r, ctx, err := s.report(c)
	if err != nil {
		return err
	}
	if r.Apply == nil {
		return broker.Errorf(broker.EINVALID, "an apply report needs \"apply\"")
	}
	if err := s.opts.Broker.ReportApply(ctx, c.Param("id"), r.Token, *r.Apply); err != nil {
		return err
	}
	s.jobEnded(ctx, c.Param("id"))
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) jobFail(c echo.Context) error {
	r, ctx, err := s.report(c)
	if err != nil {
		return err
	}
	if err := s.opts.Broker.ReportFailure(ctx, c.Param("id"), r.Token, r.Reason); err != nil {
		return err
	}
	s.jobEnded(ctx, c.Param("id"))
	return c.NoContent(http.StatusNoContent)
}

// jobEnded counts the proposal or execution a report ended.
func (s *Server) jobEnded(ctx context.Context, jobID string) {
	subject, ok := strings.CutPrefix(jobID, "job-")
	switch {
	case !ok:
	case strings.HasPrefix(subject, "exec-"):
		e, err := s.opts.Records.Execution(ctx, subject)
		if err == nil && e.State.Final() {
			s.metrics.executions.WithLabelValues(string(e.State)).Inc()
			s.metrics.duration.Observe(e.UpdatedAt.Sub(e.StartedAt).Seconds())
		}
	case strings.HasPrefix(subject, "prop-"):
		p, err := s.opts.Records.Proposal(ctx, subject)
		if err != nil || p.State == broker.ProposalVerifying {
			return
		}
		s.metrics.proposals.WithLabelValues(string(p.State)).Inc()
		if p.State == broker.ProposalCertified {
			s.metrics.certificates.Inc()
		}
	}
}

package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/seb-broker/seb/drift"
)

// An ExecuteRequest asks to apply a certified diff. The broker trusts the
// certificate, not the request: either the envelope itself or the id of a
// stored certificate.
type ExecuteRequest struct {
	Envelope      []byte
	CertificateID string
	// Actor is who asked (a CI job, an agent).
	Actor string
}

// VerifyCertificate checks everything a certificate must satisfy before it
// is used, in order: its signature (only the broker's public key is
// needed), that the broker issued it, the contract (workspace, stored
// configuration), the validity window with the clock-skew allowance, the
// policy epoch, the workspace's revocation epoch and its own revocation.
// Each failure is an *Error with its own reason. Single use is checked when
// the certificate is consumed.
func (b *Service) VerifyCertificate(ctx context.Context, envelope []byte) (*Certificate, error) {
	payload, err := VerifyCertificate(envelope, b.opts.Signer.PublicKey())
	if err != nil {
		return nil, err
	}
	stored, err := b.opts.Store.Certificate(ctx, payload.ID)
	if ErrorCode(err) == ENOTFOUND {
		return nil, Errorf(EINVALID, "certificate %s was not issued by this broker", payload.ID)
	}
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(stored.Envelope, envelope) {
		return nil, Errorf(EINVALID, "certificate %s does not match the one this broker issued", payload.ID)
	}
	ws, err := b.Workspace(payload.Workspace)
	if err != nil {
		return nil, Errorf(EINVALID, "certificate %s is for workspace %q, which is not configured", payload.ID, payload.Workspace)
	}
	proposal, err := b.opts.Store.Proposal(ctx, payload.ProposalID)
	if err != nil {
		return nil, Errorf(EINVALID, "certificate %s names proposal %s, which does not exist", payload.ID, payload.ProposalID)
	}
	if proposal.Workspace != ws.Name {
		return nil, Errorf(EINVALID, "certificate %s is for workspace %s, but its proposal is for %s", payload.ID, ws.Name, proposal.Workspace)
	}
	if VarsDigest(proposal.Vars) != payload.VarsDigest {
		return nil, Errorf(EINVALID, "certificate %s binds variables %s, but its proposal's are %s", payload.ID, payload.VarsDigest, VarsDigest(proposal.Vars))
	}
	if proposal.ConfigDigest != payload.ConfigDigest {
		return nil, Errorf(EINVALID, "certificate %s binds configuration %s, but its proposal's is %s", payload.ID, payload.ConfigDigest, proposal.ConfigDigest)
	}
	if _, err := b.opts.Store.Bundle(ctx, payload.ConfigDigest); err != nil {
		return nil, Errorf(EINVALID, "certificate %s binds configuration %s, which the broker does not hold", payload.ID, payload.ConfigDigest)
	}
	if err := b.checkStanding(ctx, stored, payload); err != nil {
		return nil, err
	}
	// What runs is what the verified envelope says, not the stored copy.
	stored.CertificatePayload = *payload
	return stored, nil
}

// Standing reports whether a stored certificate could be executed now as
// far as time, epochs and revocation go (nil), or why not (EINVALID): the
// very check an execution makes, for pages that show a certificate.
func (b *Service) Standing(ctx context.Context, cert *Certificate) error {
	return b.checkStanding(ctx, cert, &cert.CertificatePayload)
}

// checkStanding checks what can change after a certificate was issued:
// its validity window (with the clock-skew allowance), the policy epoch,
// the workspace's revocation epoch and its own revocation.
func (b *Service) checkStanding(ctx context.Context, stored *Certificate, payload *CertificatePayload) error {
	ws := payload.Workspace
	now, skew := b.now(), b.opts.ClockSkew
	switch {
	case now.Add(skew).Before(payload.NotBefore):
		return Errorf(EINVALID, "certificate %s is not valid before %s", payload.ID, payload.NotBefore.Format("2006-01-02T15:04:05Z07:00"))
	case now.Add(-skew).After(payload.NotAfter):
		return Errorf(EINVALID, "certificate %s expired at %s", payload.ID, payload.NotAfter.Format("2006-01-02T15:04:05Z07:00"))
	}
	policy, err := b.opts.Store.PolicyEpoch(ctx)
	if err != nil {
		return err
	}
	if payload.PolicyEpoch != policy {
		return Errorf(EINVALID, "certificate %s is from policy epoch %d, and the policy is now at epoch %d", payload.ID, payload.PolicyEpoch, policy)
	}
	revocation, err := b.opts.Store.RevocationEpoch(ctx, ws)
	if err != nil {
		return err
	}
	if payload.RevocationEpoch != revocation {
		return Errorf(EINVALID, "certificate %s was revoked with every certificate of workspace %s (revocation epoch %d, now %d)", payload.ID, ws, payload.RevocationEpoch, revocation)
	}
	if stored.RevokedAt != nil {
		return Errorf(EINVALID, "certificate %s was revoked by %s", payload.ID, stored.RevokedBy)
	}
	return nil
}

// Execute applies a certified diff: it verifies the certificate, consumes
// it atomically (of concurrent requests for one certificate exactly one
// runs; the others get ECONFLICT), then runs the engine — plan against live
// state, compare with the certified summary, apply that saved plan — and
// records every state, the divergence on rejection, the signed plan and
// apply logs, and the outcome. A refused certificate returns its reason and
// runs nothing.
func (b *Service) Execute(ctx context.Context, req ExecuteRequest) (*Execution, error) {
	e, cert, err := b.Begin(ctx, req)
	if err != nil {
		return e, err
	}
	return e, b.Run(ctx, e, cert, nil)
}

// Begin verifies and consumes the certificate and records the execution's
// start, as Execute does, without running it: the caller runs it with Run,
// for instance after answering an HTTP request.
func (b *Service) Begin(ctx context.Context, req ExecuteRequest) (*Execution, *Certificate, error) {
	envelope := req.Envelope
	if len(envelope) == 0 {
		stored, err := b.opts.Store.Certificate(ctx, req.CertificateID)
		if err != nil {
			return nil, nil, err
		}
		envelope = stored.Envelope
	}
	cert, err := b.VerifyCertificate(ctx, envelope)
	if err != nil {
		subject := req.CertificateID
		b.audit(ctx, req.Actor, "execution.refused", subject, map[string]any{"reason": ErrorMessage(err)})
		return nil, nil, err
	}
	now := b.now()
	e := &Execution{ID: newID("exec"), CertificateID: cert.ID, Workspace: cert.Workspace, State: ExecutionVerifying, StartedAt: now, UpdatedAt: now}
	if err := b.opts.Store.ConsumeCertificate(ctx, cert.ID, e); err != nil {
		if ErrorCode(err) == ECONFLICT {
			b.audit(ctx, req.Actor, "execution.refused", cert.ID, map[string]any{"reason": ErrorMessage(err)})
		}
		return nil, nil, err
	}
	if err := b.audit(ctx, req.Actor, "execution.started", e.ID, map[string]any{"certificate": cert.ID, "workspace": cert.Workspace}); err != nil {
		return e, nil, err
	}
	return e, cert, nil
}

// Run runs the engine for an execution Begin started, and records the
// outcome; live, when not nil, receives Terraform's JSON log as it is
// written. It returns nil when the diff was applied; an ECONFLICT *Error
// when the live plan was refused; another error when the run failed or
// was interrupted.
func (b *Service) Run(ctx context.Context, e *Execution, cert *Certificate, live io.Writer) error {
	ws, err := b.Workspace(cert.Workspace)
	if err != nil {
		return b.finish(ctx, e, ExecutionFailed, err.Error(), nil)
	}
	proposal, err := b.opts.Store.Proposal(ctx, cert.ProposalID)
	if err != nil {
		return b.finish(ctx, e, ExecutionFailed, "cannot read the proposal", err)
	}
	bundle, err := b.opts.Store.Bundle(ctx, cert.ConfigDigest)
	if err != nil {
		return b.finish(ctx, e, ExecutionFailed, "cannot read the configuration", err)
	}
	w, err := b.opts.Runner.NewWorkdir(bytes.NewReader(bundle))
	if err != nil {
		return b.finish(ctx, e, ExecutionFailed, "cannot materialize the configuration", err)
	}
	defer w.Close()
	if live != nil {
		w.Follow(live)
	}
	if w.ConfigDigest != cert.ConfigDigest {
		return b.finish(ctx, e, ExecutionFailed, "the stored configuration does not match its digest", nil)
	}
	var planLogEnd int
	res, runErr := w.Execute(ctx, drift.ExecuteRequest{
		Workspace:         ws.Name,
		Vars:              proposal.Vars,
		Certified:         cert.Summary,
		Mode:              ws.DriftMode,
		AcknowledgedDrift: cert.Drift,
		Credentials:       RunCredentials{Issuer: b.opts.Issuer, Profile: ws.Credentials, Workspace: ws.Name, ExecutionID: e.ID, CertificateID: cert.ID},
		State:             b.opts.State,
		// A run may have waited for the workspace lock: the certificate
		// must still stand when the apply starts.
		BeforeApply: func(ctx context.Context) error {
			stored, err := b.opts.Store.Certificate(ctx, cert.ID)
			if err != nil {
				return err
			}
			return b.checkStanding(ctx, stored, &cert.CertificatePayload)
		},
		OnStage: func(stage drift.Stage) {
			state := map[drift.Stage]ExecutionState{
				drift.StagePlanning: ExecutionPlanning, drift.StageComparing: ExecutionComparing, drift.StageApplying: ExecutionApplying,
			}[stage]
			if stage == drift.StageApplying {
				planLogEnd = len(w.Log())
			}
			if state != "" {
				e.State, e.UpdatedAt = state, b.now()
				if err := b.opts.Store.UpdateExecution(ctx, e); err != nil {
					b.opts.Logger.Error("record execution state", "execution", e.ID, "error", err)
				}
			}
		},
	})
	log := w.Log()
	if planLogEnd == 0 {
		planLogEnd = len(log)
	}
	if e.PlanLogID, err = b.storeLog(ctx, "plan-log", log[:planLogEnd]); err != nil {
		return b.finish(ctx, e, ExecutionFailed, "cannot store the plan log", err)
	}
	if planLogEnd < len(log) {
		if e.ApplyLogID, err = b.storeLog(ctx, "apply-log", log[planLogEnd:]); err != nil {
			return b.finish(ctx, e, ExecutionFailed, "cannot store the apply log", err)
		}
	}
	switch {
	case runErr == nil:
		return b.finish(ctx, e, ExecutionSucceeded, "", nil)
	case errors.Is(runErr, drift.ErrRefused):
		e.Divergence, _ = json.Marshal(res.Decision)
		return b.finish(ctx, e, ExecutionRejected, res.Decision.Reason, runErr)
	case res != nil && res.Apply != nil && res.Apply.Outcome == drift.Interrupted:
		return b.finish(ctx, e, ExecutionInterrupted, "the apply was interrupted", runErr)
	case ctx.Err() != nil:
		return b.finish(ctx, e, ExecutionInterrupted, "the execution was cancelled", runErr)
	default:
		return b.finish(ctx, e, ExecutionFailed, runErr.Error(), runErr)
	}
}

// storeLog stores a log as a signed artifact and returns its id.
func (b *Service) storeLog(ctx context.Context, kind string, data []byte) (string, error) {
	a := &Artifact{ID: newID("art"), Kind: kind, Data: data, CreatedAt: b.now()}
	b.opts.Signer.SignArtifact(a)
	if err := b.opts.Store.PutArtifact(context.WithoutCancel(ctx), a); err != nil {
		return "", err
	}
	return a.ID, nil
}

// finish records an execution's final state and audits it. It returns
// cause: nil for success, else the error the caller sees.
func (b *Service) finish(ctx context.Context, e *Execution, state ExecutionState, reason string, cause error) error {
	// Recorded even when ctx was the cancellation that ended the run.
	ctx = context.WithoutCancel(ctx)
	e.State, e.Reason, e.UpdatedAt = state, reason, b.now()
	if err := b.opts.Store.UpdateExecution(ctx, e); err != nil {
		return errors.Join(cause, err)
	}
	details := map[string]any{"certificate": e.CertificateID, "reason": reason, "plan_log": e.PlanLogID, "apply_log": e.ApplyLogID}
	if err := b.audit(ctx, "seb", "execution."+string(state), e.ID, details); err != nil {
		return errors.Join(cause, err)
	}
	if state == ExecutionSucceeded {
		return nil
	}
	if state == ExecutionRejected {
		return Errorf(ECONFLICT, "execution %s rejected: %s", e.ID, reason)
	}
	if cause == nil {
		cause = errors.New(reason)
	}
	return fmt.Errorf("execution %s %s: %w", e.ID, state, cause)
}

// Recover marks every execution that was running when the broker died as
// interrupted — never silently retried — and audits it. Its certificate
// stays consumed; the workspace lock died with the process. Call it at
// start, before serving.
func (b *Service) Recover(ctx context.Context) error {
	running, err := b.opts.Store.ListExecutions(ctx, ExecutionFilter{Running: true})
	if err != nil {
		return err
	}
	for _, e := range running {
		e.State, e.Reason, e.UpdatedAt = ExecutionInterrupted, "the broker stopped while the execution ran; it is not retried", b.now()
		if err := b.opts.Store.UpdateExecution(ctx, e); err != nil {
			return err
		}
		if err := b.audit(ctx, "seb", "execution.interrupted", e.ID, map[string]any{"certificate": e.CertificateID, "reason": e.Reason}); err != nil {
			return err
		}
	}
	return nil
}

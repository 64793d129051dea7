package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/planparse"
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

// Execute applies a certified diff and waits for the outcome: it verifies
// the certificate, consumes it atomically (of concurrent requests for one
// certificate exactly one runs; the others get ECONFLICT) and queues the
// execution; a runner plans against live state, the broker compares that
// plan with the certified summary, and only then does the runner apply
// that saved plan. It returns nil when the diff was applied; an ECONFLICT
// *Error when the live plan was refused; another error when the run failed
// or was interrupted.
func (b *Service) Execute(ctx context.Context, req ExecuteRequest) (*Execution, error) {
	e, _, err := b.Begin(ctx, req)
	if err != nil {
		return e, err
	}
	return b.WaitExecution(ctx, e.ID)
}

// WaitExecution waits until an execution ends and returns it, with the
// error Execute describes.
func (b *Service) WaitExecution(ctx context.Context, id string) (*Execution, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		e, err := b.opts.Store.Execution(ctx, id)
		if err != nil {
			return nil, err
		}
		switch e.State {
		case ExecutionSucceeded:
			return e, nil
		case ExecutionRejected:
			return e, Errorf(ECONFLICT, "execution %s rejected: %s", e.ID, e.Reason)
		case ExecutionFailed, ExecutionInterrupted:
			return e, fmt.Errorf("execution %s %s: %s", e.ID, e.State, e.Reason)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return e, ctx.Err()
		}
	}
}

// Begin verifies and consumes the certificate, records the execution and
// queues it for a runner. A workspace held for reconciliation refuses it.
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
	if err == nil {
		err = b.checkHold(ctx, cert.Workspace)
	}
	if err != nil {
		subject := req.CertificateID
		b.audit(ctx, req.Actor, "execution.refused", subject, map[string]any{"reason": ErrorMessage(err)})
		return nil, nil, err
	}
	proposal, err := b.opts.Store.Proposal(ctx, cert.ProposalID)
	if err != nil {
		return nil, nil, err
	}
	now := b.now()
	e := &Execution{ID: newID("exec"), CertificateID: cert.ID, Workspace: cert.Workspace, State: ExecutionQueued, StartedAt: now, UpdatedAt: now}
	if err := b.opts.Store.ConsumeCertificate(ctx, cert.ID, e); err != nil {
		if ErrorCode(err) == ECONFLICT {
			b.audit(ctx, req.Actor, "execution.refused", cert.ID, map[string]any{"reason": ErrorMessage(err)})
		}
		return nil, nil, err
	}
	if err := b.audit(ctx, req.Actor, "execution.started", e.ID, map[string]any{"certificate": cert.ID, "workspace": cert.Workspace}); err != nil {
		return e, nil, err
	}
	err = b.enqueue(ctx, &Job{ID: jobIDFor(e.ID), Kind: JobExecute, Workspace: e.Workspace, Subject: e.ID,
		ConfigDigest: cert.ConfigDigest, Vars: proposal.Vars, MaxAttempts: executeAttempts})
	if err != nil {
		return e, nil, errors.Join(err, b.finish(ctx, e, ExecutionFailed, "seb could not queue the execution", err))
	}
	return e, cert, nil
}

// checkHold refuses a workspace held for reconciliation (EINVALID, with
// why).
func (b *Service) checkHold(ctx context.Context, workspace string) error {
	h, err := b.opts.Store.WorkspaceHold(ctx, workspace)
	if ErrorCode(err) == ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	return Errorf(EINVALID, "workspace %s is held for reconciliation since %s: %s; an admin must reconcile it (seb reconcile %s)",
		workspace, h.Since.Format(time.RFC3339), h.Reason, workspace)
}

// decide compares an execution's live plan with its certificate. A
// refusal records the divergence and ends the execution; an acceptance,
// once the certificate still stands, mints the apply-phase credential for
// this execution alone.
func (b *Service) decide(ctx context.Context, j *Job, r PlanReport) (*PlanVerdict, error) {
	e, err := b.opts.Store.Execution(ctx, j.Subject)
	if err != nil {
		return nil, err
	}
	if r.Error != "" {
		return &PlanVerdict{Reason: r.Error}, b.endExecution(ctx, j, e, ExecutionFailed, "the live plan failed: "+r.Error, nil)
	}
	stored, err := b.opts.Store.Certificate(ctx, e.CertificateID)
	if err != nil {
		return nil, err
	}
	ws, err := b.Workspace(e.Workspace)
	if err != nil {
		return nil, err
	}
	e.State, e.UpdatedAt = ExecutionComparing, b.now()
	if err := b.opts.Store.UpdateExecution(ctx, e); err != nil {
		return nil, err
	}
	live, err := planparse.Parse(bytes.NewReader(r.Plan), planparse.Options{SensitiveKey: b.opts.SensitiveKey})
	if err != nil {
		return &PlanVerdict{Reason: "unreadable plan"}, b.endExecution(ctx, j, e, ExecutionFailed, "the live plan could not be read: "+err.Error(), nil)
	}
	// What is compared is what the signed envelope says. The run may have
	// waited in the queue: the certificate must still stand (window,
	// epochs, revocation) now, when the apply would start, and the
	// workspace must not be held.
	cert, err := b.VerifyCertificate(ctx, stored.Envelope)
	if err == nil {
		err = b.checkHold(ctx, e.Workspace)
	}
	if err == nil {
		if reason, rerr := RefusedByTerraformsReading(r.Plan); rerr != nil || reason != "" {
			err = errors.Join(rerr, Errorf(EINVALID, "%s", reason))
		}
	}
	var decision drift.Decision
	if err != nil {
		decision.Reason = ErrorMessage(err)
	} else {
		decision = drift.Decide(cert.Summary, live, ws.DriftMode, cert.Drift)
	}
	if !decision.Accepted {
		e.Divergence, _ = json.Marshal(decision)
		return &PlanVerdict{Reason: decision.Reason}, b.endExecution(ctx, j, e, ExecutionRejected, decision.Reason, nil)
	}
	grant, err := RunCredentials{Issuer: b.opts.Issuer, Profile: ws.Credentials, Workspace: ws.Name,
		ExecutionID: e.ID, CertificateID: cert.ID}.Grant(drift.PhaseApply)
	if err != nil {
		return nil, err
	}
	j.Phase = string(drift.PhaseApply)
	if err := b.opts.Store.UpdateJob(ctx, j, b.now()); err != nil {
		return nil, err
	}
	e.State, e.UpdatedAt = ExecutionApplying, b.now()
	if err := b.opts.Store.UpdateExecution(ctx, e); err != nil {
		return nil, err
	}
	if err := b.audit(ctx, "seb", "credential.apply_issued", e.ID, map[string]any{"jti": grant.TokenID, "expires_at": grant.ExpiresAt}); err != nil {
		return nil, err
	}
	return &PlanVerdict{Apply: true, Credentials: grant}, nil
}

// ReportState stores the state Terraform has written so far during an
// execution's apply, as a new version: what an apply changed reaches the
// broker even if the runner dies before it ends. A runner whose lease was
// lost can never store state.
func (b *Service) ReportState(ctx context.Context, id string, token int64, state []byte) error {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	j, err := b.leased(ctx, id, token)
	if err != nil {
		return err
	}
	if j.Kind != JobExecute || j.Phase != string(drift.PhaseApply) {
		return Errorf(ECONFLICT, "job %s is not applying: it has no state to store", id)
	}
	return b.putState(ctx, j.Workspace, state)
}

// putState stores a workspace's state unless it is the current one.
func (b *Service) putState(ctx context.Context, workspace string, state []byte) error {
	if len(state) == 0 {
		return nil
	}
	if !json.Valid(state) {
		return Errorf(EINVALID, "the state is not JSON")
	}
	current, err := b.opts.State.Current(ctx, workspace)
	if err != nil || bytes.Equal(current, state) {
		return err
	}
	_, err = b.opts.State.Put(ctx, workspace, state)
	return err
}

// ReportApply ends an execution with its apply's outcome: the final
// state stored, the plan and apply logs signed, the outcome audited. An
// interrupted apply may have changed what Terraform did not record, so
// its workspace is held for reconciliation.
func (b *Service) ReportApply(ctx context.Context, id string, token int64, r ApplyReport) error {
	b.stateMu.Lock()
	j, err := b.leased(ctx, id, token)
	if err == nil && (j.Kind != JobExecute || j.Phase != string(drift.PhaseApply)) {
		err = Errorf(ECONFLICT, "job %s is not applying", id)
	}
	if err == nil {
		err = b.putState(ctx, j.Workspace, r.State)
	}
	b.stateMu.Unlock()
	if err != nil {
		return err
	}
	e, err := b.opts.Store.Execution(ctx, j.Subject)
	if err != nil {
		return err
	}
	switch r.Outcome {
	case drift.Succeeded:
		return b.endExecution(ctx, j, e, ExecutionSucceeded, "", nil)
	case drift.Interrupted:
		return b.endExecution(ctx, j, e, ExecutionInterrupted, "the apply was interrupted: "+r.Error, &Hold{
			Reason: fmt.Sprintf("execution %s was interrupted during its apply; resources changed after Terraform last wrote its state may be missing from it", e.ID)})
	default:
		return b.endExecution(ctx, j, e, ExecutionFailed, "the apply failed: "+r.Error, nil)
	}
}

// ReportFailure ends a job the runner could not run for its own reasons
// (not the configuration's): tried again while it has attempts left; an
// execution is failed, or interrupted if it was applying.
func (b *Service) ReportFailure(ctx context.Context, id string, token int64, reason string) error {
	j, err := b.leased(ctx, id, token)
	if err != nil {
		return err
	}
	return b.retryOrFail(ctx, j, "runner "+j.Runner+": "+reason)
}

// interrupted ends an execution whose runner stopped, or was stopped,
// while it ran: never retried; held for reconciliation if it was applying.
func (b *Service) interrupted(ctx context.Context, j *Job, reason string) error {
	e, err := b.opts.Store.Execution(ctx, j.Subject)
	if err != nil || e.State.Final() {
		return err
	}
	var hold *Hold
	if e.State == ExecutionApplying {
		hold = &Hold{Reason: fmt.Sprintf("execution %s stopped during its apply (%s); resources changed after the runner last sent the state may be missing from it", e.ID, reason)}
	}
	return b.endExecution(ctx, nil, e, ExecutionInterrupted, reason+"; it is not retried", hold)
}

// endExecution ends an execution and, when j is set, its job: the logs the
// runner sent are signed and stored, the final state recorded and
// audited, and the workspace held when hold is set.
func (b *Service) endExecution(ctx context.Context, j *Job, e *Execution, state ExecutionState, reason string, hold *Hold) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	jobID := jobIDFor(e.ID)
	for phase, id := range map[string]*string{string(drift.PhasePlan): &e.PlanLogID, string(drift.PhaseApply): &e.ApplyLogID} {
		log, lerr := b.opts.Store.JobLog(ctx, jobID, phase)
		if lerr != nil {
			err = errors.Join(err, lerr)
			continue
		}
		if len(log) > 0 {
			var serr error
			*id, serr = b.storeLog(ctx, phase+"-log", log)
			err = errors.Join(err, serr)
		}
	}
	if hold != nil {
		hold.Workspace, hold.Execution, hold.Since = e.Workspace, e.ID, b.now()
		if herr := b.opts.Store.HoldWorkspace(ctx, *hold); herr != nil {
			err = errors.Join(err, herr)
		} else {
			err = errors.Join(err, b.audit(ctx, "seb", "workspace.held", e.Workspace, map[string]any{"execution": e.ID, "reason": hold.Reason}))
		}
	}
	if j != nil {
		jobState := JobDone
		if state == ExecutionFailed || state == ExecutionInterrupted {
			jobState = JobFailed
		}
		if jerr := b.endJob(ctx, j, jobState, reason); jerr != nil && ErrorCode(jerr) != ECONFLICT {
			err = errors.Join(err, jerr)
		}
	}
	// The outcome is the execution's, not an error of the report.
	return errors.Join(err, b.record(ctx, e, state, reason))
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
	if err := b.record(ctx, e, state, reason); err != nil {
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

// record stores an execution's final state and audits it, even when ctx
// was the cancellation that ended the run.
func (b *Service) record(ctx context.Context, e *Execution, state ExecutionState, reason string) error {
	ctx = context.WithoutCancel(ctx)
	e.State, e.Reason, e.UpdatedAt = state, reason, b.now()
	if err := b.opts.Store.UpdateExecution(ctx, e); err != nil {
		return err
	}
	details := map[string]any{"certificate": e.CertificateID, "reason": reason, "plan_log": e.PlanLogID, "apply_log": e.ApplyLogID}
	return b.audit(ctx, "seb", "execution."+string(state), e.ID, details)
}

// Reconcile releases a workspace held for reconciliation, once an admin
// has brought seb's state in line with what exists (for instance with
// terraform import through a certified proposal, or by removing what the
// interrupted apply created), and audits who did and why.
func (b *Service) Reconcile(ctx context.Context, workspace, by, note string) error {
	if _, err := b.Workspace(workspace); err != nil {
		return err
	}
	h, err := b.opts.Store.WorkspaceHold(ctx, workspace)
	if err != nil {
		return err
	}
	if err := b.opts.Store.ReleaseWorkspace(ctx, workspace); err != nil {
		return err
	}
	return b.audit(ctx, by, "workspace.reconciled", workspace, map[string]any{"execution": h.Execution, "hold": h.Reason, "note": note})
}

// Hold returns a workspace's hold, or ENOTFOUND when it is not held.
func (b *Service) Hold(ctx context.Context, workspace string) (*Hold, error) {
	return b.opts.Store.WorkspaceHold(ctx, workspace)
}

package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	return b.verifyCertificate(ctx, b.opts.Store, envelope)
}

// verifyCertificate is VerifyCertificate reading through st.
func (b *Service) verifyCertificate(ctx context.Context, st Store, envelope []byte) (*Certificate, error) {
	payload, err := VerifyCertificate(envelope, b.opts.Signer.PublicKeys()...)
	if err != nil {
		return nil, err
	}
	stored, err := st.Certificate(ctx, payload.ID)
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
	proposal, err := st.Proposal(ctx, payload.ProposalID)
	if ErrorCode(err) == ENOTFOUND {
		return nil, Errorf(EINVALID, "certificate %s names proposal %s, which does not exist", payload.ID, payload.ProposalID)
	}
	if err != nil {
		return nil, err
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
	if _, err := st.Bundle(ctx, payload.ConfigDigest); ErrorCode(err) == ENOTFOUND {
		return nil, Errorf(EINVALID, "certificate %s binds configuration %s, which the broker does not hold", payload.ID, payload.ConfigDigest)
	} else if err != nil {
		return nil, err
	}
	if err := b.checkStanding(ctx, st, stored, payload); err != nil {
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
	return b.checkStanding(ctx, b.opts.Store, cert, &cert.CertificatePayload)
}

// checkStanding checks what can change after a certificate was issued:
// its validity window (with the clock-skew allowance), the policy epoch,
// the workspace's revocation epoch and its own revocation.
func (b *Service) checkStanding(ctx context.Context, st Store, stored *Certificate, payload *CertificatePayload) error {
	ws := payload.Workspace
	now, skew := b.now(), b.opts.ClockSkew
	switch {
	case now.Add(skew).Before(payload.NotBefore):
		return Errorf(EINVALID, "certificate %s is not valid before %s", payload.ID, payload.NotBefore.Format("2006-01-02T15:04:05Z07:00"))
	case now.Add(-skew).After(payload.NotAfter):
		return Errorf(EINVALID, "certificate %s expired at %s", payload.ID, payload.NotAfter.Format("2006-01-02T15:04:05Z07:00"))
	}
	policy, err := b.policyEpoch(ctx, st)
	if err != nil {
		return err
	}
	if payload.PolicyEpoch != policy {
		return Errorf(EINVALID, "certificate %s is from policy epoch %d, and the policy is now at epoch %d", payload.ID, payload.PolicyEpoch, policy)
	}
	revocation, err := st.RevocationEpoch(ctx, ws)
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
		case ExecutionRefused:
			return e, Errorf(ECONFLICT, "execution %s refused: %s", e.ID, e.Reason)
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
// queues it for a runner, all in one transaction with the audit entry. A
// workspace held for reconciliation refuses it. A refusal (EINVALID, or
// ECONFLICT for a used or revoked certificate) is audited as
// execution.refused before it is returned.
func (b *Service) Begin(ctx context.Context, req ExecuteRequest) (*Execution, *Certificate, error) {
	envelope := req.Envelope
	if len(envelope) == 0 {
		stored, err := b.opts.Store.Certificate(ctx, req.CertificateID)
		if err != nil {
			return nil, nil, err
		}
		envelope = stored.Envelope
	}
	var (
		e    *Execution
		cert *Certificate
	)
	err := b.opts.Store.Tx(ctx, func(tx Store) error {
		var err error
		if cert, err = b.verifyCertificate(ctx, tx, envelope); err != nil {
			return err
		}
		if err := b.checkHold(ctx, tx, cert.Workspace); err != nil {
			return err
		}
		proposal, err := tx.Proposal(ctx, cert.ProposalID)
		if err != nil {
			return err
		}
		now := b.now()
		e = &Execution{ID: newID("exec"), CertificateID: cert.ID, Workspace: cert.Workspace, State: ExecutionQueued, StartedAt: now, UpdatedAt: now}
		if err := tx.ConsumeCertificate(ctx, cert.ID, e); err != nil {
			return err
		}
		if err := b.audit(ctx, tx, req.Actor, "execution.started", e.ID, map[string]any{"certificate": cert.ID, "workspace": cert.Workspace}); err != nil {
			return err
		}
		return b.enqueueIn(ctx, tx, &Job{ID: jobIDFor(e.ID), Kind: JobExecute, Workspace: e.Workspace, Subject: e.ID,
			ConfigDigest: cert.ConfigDigest, Vars: proposal.Vars, MaxAttempts: executeAttempts})
	})
	if err != nil {
		if code := ErrorCode(err); code == EINVALID || code == ECONFLICT {
			return nil, nil, b.refuseExecution(ctx, req.Actor, envelope, err)
		}
		return nil, nil, err
	}
	b.queue.signal()
	return e, cert, nil
}

// refuseExecution audits a refused request to execute and returns why it
// was refused. The entry names the certificate when the envelope carries
// this broker's signature, else the envelope's digest: a forged envelope
// cannot put a name of its choosing in the log. If the entry cannot be
// written, the caller learns that too.
func (b *Service) refuseExecution(ctx context.Context, actor string, envelope []byte, refusal error) error {
	subject := sha256DigestOf(envelope)
	if payload, err := VerifyCertificate(envelope, b.opts.Signer.PublicKeys()...); err == nil {
		subject = payload.ID
	}
	err := b.audit(context.WithoutCancel(ctx), b.opts.Store, actor, "execution.refused", subject,
		map[string]any{"reason": ErrorMessage(refusal), "envelope_digest": sha256DigestOf(envelope)})
	if err != nil {
		return fmt.Errorf("%w (and the refusal could not be audited: %v)", refusal, err)
	}
	return refusal
}

// PlanJSONArtifact is the id of the signed artifact holding the JSON of an
// execution's live plan, the one its decision was made on.
func PlanJSONArtifact(executionID string) string { return "plan-json-" + executionID }

// LogArtifact is the id of the signed log of an execution's phase: it
// names the execution, so whoever may read that may read its logs.
func LogArtifact(phase drift.Phase, executionID string) string {
	return string(phase) + "-log-" + executionID
}

// checkHold refuses a workspace held for reconciliation (EINVALID, with
// why), reading through st.
func (b *Service) checkHold(ctx context.Context, st Store, workspace string) error {
	h, err := st.WorkspaceHold(ctx, workspace)
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
		return &PlanVerdict{Reason: r.Error}, b.endExecution(ctx, b.opts.Store, j, e, ExecutionFailed, "the live plan failed: "+r.Error, nil)
	}
	stored, err := b.opts.Store.Certificate(ctx, e.CertificateID)
	if err != nil {
		return nil, err
	}
	ws, err := b.Workspace(e.Workspace)
	if err != nil {
		return nil, err
	}
	// The live plan is evidence of the decision, whichever it is.
	planJSON := &Artifact{ID: PlanJSONArtifact(e.ID), Kind: "plan-json", Data: r.Plan, CreatedAt: b.now()}
	b.opts.Signer.SignArtifact(planJSON)
	live, err := planparse.Parse(bytes.NewReader(r.Plan), planparse.Options{SensitiveKey: b.opts.SensitiveKey})
	if err != nil {
		return &PlanVerdict{Reason: "unreadable plan"}, b.endExecution(ctx, b.opts.Store, j, e, ExecutionFailed, "the live plan could not be read: "+err.Error(), nil, planJSON)
	}
	// What is compared is what the signed envelope says. The run may have
	// waited in the queue: the certificate must still stand (window,
	// epochs, revocation) now, when the apply would start, and the
	// workspace must not be held.
	cert, err := b.VerifyCertificate(ctx, stored.Envelope)
	if err == nil {
		err = b.checkHold(ctx, b.opts.Store, e.Workspace)
	}
	if err != nil && ErrorCode(err) != EINVALID {
		// Not a refusal: the broker could not check. The runner reports
		// again.
		return nil, err
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
		return &PlanVerdict{Reason: decision.Reason}, b.endExecution(ctx, b.opts.Store, j, e, ExecutionRefused, decision.Reason, nil, planJSON)
	}
	grant, err := RunCredentials{Issuer: b.opts.Issuer, Profile: ws.Credentials, Workspace: ws.Name,
		ExecutionID: e.ID, CertificateID: cert.ID}.Grant(drift.PhaseApply)
	if err != nil {
		return nil, err
	}
	// The credential is handed out only once the job's phase, the
	// execution's state and the audit entry naming it are committed.
	err = b.opts.Store.Tx(ctx, func(tx Store) error {
		j.Phase = string(drift.PhaseApply)
		if err := tx.UpdateJob(ctx, j, b.now()); err != nil {
			return err
		}
		e.State, e.UpdatedAt = ExecutionApplying, b.now()
		if err := tx.UpdateExecution(ctx, e, ExecutionPlanning); err != nil {
			return err
		}
		if err := tx.PutArtifact(ctx, planJSON); err != nil {
			return err
		}
		return b.audit(ctx, tx, "seb", "credential.apply_issued", e.ID, map[string]any{"jti": grant.TokenID, "expires_at": grant.ExpiresAt,
			"plan_json": planJSON.ID, "plan_json_digest": planJSON.Digest})
	})
	if err != nil {
		j.Phase = string(drift.PhasePlan)
		return nil, err
	}
	return &PlanVerdict{Apply: true, Credentials: grant}, nil
}

// ReportState stores the state Terraform has written so far during an
// execution's apply, as a new version: what an apply changed reaches the
// broker even if the runner dies before it ends. A runner whose lease was
// lost can never store state.
func (b *Service) ReportState(ctx context.Context, id string, token int64, state []byte) error {
	_, err := b.applyingState(ctx, id, token, state, "it has no state to store")
	return err
}

// applyingState stores the state an applying execution's runner reports,
// in one transaction with the check of its lease: the lease fences the
// write, so a runner whose lease was lost (its job ended by any replica)
// stores nothing. It returns the job.
func (b *Service) applyingState(ctx context.Context, id string, token int64, state []byte, notApplying string) (*Job, error) {
	if len(state) > 0 && !json.Valid(state) {
		return nil, Errorf(EINVALID, "the state is not JSON")
	}
	var j *Job
	err := b.opts.Store.Tx(ctx, func(tx Store) error {
		var err error
		if j, err = b.leasedIn(ctx, tx, id, token); err != nil {
			return err
		}
		if j.Kind != JobExecute || j.Phase != string(drift.PhaseApply) {
			return Errorf(ECONFLICT, "job %s is not applying: %s", id, notApplying)
		}
		if len(state) == 0 {
			return nil
		}
		current, err := tx.CurrentState(ctx, j.Workspace)
		if err != nil || bytes.Equal(current, state) {
			return err
		}
		_, err = tx.PutState(ctx, j.Workspace, state, b.now())
		return err
	})
	return j, err
}

// ReportApply ends an execution with its apply's outcome: the final
// state stored, the plan and apply logs signed, the outcome audited. An
// interrupted apply may have changed what Terraform did not record, so
// its workspace is held for reconciliation.
func (b *Service) ReportApply(ctx context.Context, id string, token int64, r ApplyReport) error {
	j, err := b.applyingState(ctx, id, token, r.State, "it has no apply to report")
	if err != nil {
		return err
	}
	e, err := b.opts.Store.Execution(ctx, j.Subject)
	if err != nil {
		return err
	}
	switch r.Outcome {
	case drift.Succeeded:
		return b.endExecution(ctx, b.opts.Store, j, e, ExecutionSucceeded, "", nil)
	case drift.Interrupted:
		return b.endExecution(ctx, b.opts.Store, j, e, ExecutionInterrupted, "the apply was interrupted: "+r.Error, &Hold{
			Reason: fmt.Sprintf("execution %s was interrupted during its apply; resources changed after Terraform last wrote its state may be missing from it", e.ID)})
	default:
		return b.endExecution(ctx, b.opts.Store, j, e, ExecutionFailed, "the apply failed: "+r.Error, nil)
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
func (b *Service) interrupted(ctx context.Context, st Store, j *Job, reason string) error {
	e, err := st.Execution(ctx, j.Subject)
	if err != nil || e.State.Final() {
		return err
	}
	var hold *Hold
	if e.State == ExecutionApplying {
		hold = &Hold{Reason: fmt.Sprintf("execution %s stopped during its apply (%s); resources changed after the runner last sent the state may be missing from it", e.ID, reason)}
	}
	return b.endExecution(ctx, st, nil, e, ExecutionInterrupted, reason+"; it is not retried", hold)
}

// endExecution ends an execution and, when j is set, its job, in one
// transaction, even when ctx was the cancellation that ended the run: the
// logs the runner sent are signed and stored, the workspace held when hold
// is set, and the final state recorded and audited. The execution must
// still be in the state e says (ECONFLICT otherwise): a final state is
// never overwritten. A failure records nothing, and the runner's report
// (or the sweep) tries again.
//
// The logs and extra, which are signed artifacts (the live plan's JSON),
// are stored with it, and the audit entry names each by id and digest.
func (b *Service) endExecution(ctx context.Context, st Store, j *Job, e *Execution, state ExecutionState, reason string, hold *Hold, extra ...*Artifact) error {
	ctx = context.WithoutCancel(ctx)
	ended := *e
	err := st.Tx(ctx, func(tx Store) error {
		details := map[string]any{"certificate": e.CertificateID, "reason": reason}
		for _, a := range extra {
			if err := tx.PutArtifact(ctx, a); err != nil {
				return err
			}
			details[strings.ReplaceAll(a.Kind, "-", "_")] = a.ID
			details[strings.ReplaceAll(a.Kind, "-", "_")+"_digest"] = a.Digest
		}
		jobID := jobIDFor(e.ID)
		for _, phase := range []drift.Phase{drift.PhasePlan, drift.PhaseApply} {
			log, err := tx.JobLog(ctx, jobID, string(phase))
			if err != nil {
				return err
			}
			if len(log) == 0 {
				continue
			}
			a := &Artifact{ID: LogArtifact(phase, e.ID), Kind: string(phase) + "-log", Data: log, CreatedAt: b.now()}
			b.opts.Signer.SignArtifact(a)
			if err := tx.PutArtifact(ctx, a); err != nil {
				return err
			}
			if phase == drift.PhasePlan {
				ended.PlanLogID = a.ID
			} else {
				ended.ApplyLogID = a.ID
			}
			details[string(phase)+"_log_digest"] = a.Digest
		}
		if hold != nil {
			h := *hold
			h.Workspace, h.Execution, h.Since = e.Workspace, e.ID, b.now()
			if err := tx.HoldWorkspace(ctx, h); err != nil {
				return err
			}
			if err := b.audit(ctx, tx, "seb", "workspace.held", e.Workspace, map[string]any{"execution": e.ID, "reason": h.Reason}); err != nil {
				return err
			}
		}
		if j != nil {
			jobState := JobDone
			if state == ExecutionFailed || state == ExecutionInterrupted {
				jobState = JobFailed
			}
			done := *j
			// A job that already ended (cancelled) keeps its end.
			if err := b.endJob(ctx, tx, &done, jobState, reason); err != nil && ErrorCode(err) != ECONFLICT {
				return err
			}
		}
		ended.State, ended.Reason, ended.UpdatedAt = state, reason, b.now()
		if err := tx.UpdateExecution(ctx, &ended, e.State); err != nil {
			return err
		}
		details["plan_log"], details["apply_log"] = ended.PlanLogID, ended.ApplyLogID
		return b.audit(ctx, tx, "seb", "execution."+string(state), e.ID, details)
	})
	if err != nil {
		return err
	}
	*e = ended
	return nil
}

// Reconcile releases a workspace held for reconciliation, once an admin
// has brought seb's state in line with what exists (for instance with
// terraform import through a certified proposal, or by removing what the
// interrupted apply created), and audits who did and why.
func (b *Service) Reconcile(ctx context.Context, workspace, by, note string) error {
	if _, err := b.Workspace(workspace); err != nil {
		return err
	}
	return b.opts.Store.Tx(ctx, func(tx Store) error {
		h, err := tx.WorkspaceHold(ctx, workspace)
		if err != nil {
			return err
		}
		if err := tx.ReleaseWorkspace(ctx, workspace); err != nil {
			return err
		}
		return b.audit(ctx, tx, by, "workspace.reconciled", workspace, map[string]any{"execution": h.Execution, "hold": h.Reason, "note": note})
	})
}

// Hold returns a workspace's hold, or ENOTFOUND when it is not held.
func (b *Service) Hold(ctx context.Context, workspace string) (*Hold, error) {
	return b.opts.Store.WorkspaceHold(ctx, workspace)
}

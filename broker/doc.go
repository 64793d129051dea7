// Package broker is the domain of seb, the Sovereign Execution Broker: the
// types and services that decide what may change production.
//
// Admission (the Sovereign Assurance Boundary): Service.Propose takes an
// agent's configuration bundle, plans it itself against live state with a
// plan-phase credential, and keeps that plan's summary — what reviewers see
// and what gets certified. An agent's own plan is a claim compared with it;
// a mismatch marks the proposal diverged for good. Service.Review records
// verdicts: proposers never review their own proposals, approvals count
// distinct reviewers, protected actions always need a human, and the final
// approval issues a Certificate: a DSSE envelope (ed25519, Signer) binding
// the diff digest, configuration digest, validity window, policy and
// revocation epochs and approvals.
//
// Execution (the Sovereign Execution Broker): Service.Execute trusts the
// certificate, not the request — signature, issuer, contract, validity
// window, epochs, revocation — consumes it atomically (single use), and runs
// the drift engine: plan against live state, compare, apply that saved plan
// with an apply-phase credential minted for this execution alone. Every
// state, the divergence of a refusal, the signed plan and apply logs and the
// outcome are stored; Service.Recover marks runs a dead broker left behind
// as interrupted.
//
// Every decision is appended to a hash-chained, signed audit log
// (VerifyAudit needs only the public key).
//
// The broker is also a token issuer, the design's mandatory boundary:
// production APIs trust only credentials it mints. A KeySet holds the RSA
// keys it signs them with (RS256, key id = RFC 7638 thumbprint, rotation
// that keeps retired keys published until their tokens expire); an Issuer
// mints a Credential scoped to one workspace and one phase, and publishes
// OpenID discovery and the JWKS; RunCredentials hand a run's credentials to
// Terraform as a CredentialProfile says.
//
// Configuration is HCL (LoadConfig). Records live behind Store,
// implemented in broker/sqlite and checked by broker/storetest; HTTP is
// package web's.
package broker

// Package broker is the domain of seb, the Sovereign Execution Broker: the
// types and services that decide what may change production.
//
// What exists today is the broker's identity as a token issuer, the
// "mandatory boundary" of the design: production APIs are told to trust
// only credentials the broker mints, and to let only an apply-phase one
// mutate, so nothing changes them except an execution the broker allowed.
//
//   - A KeySet holds the RSA keys the broker signs credentials with (RS256,
//     key id = RFC 7638 JWK thumbprint). OpenKeySet keeps them in a data
//     directory and rotates them, publishing a retired key until every token
//     it signed has expired; KeySetFromPEM takes one key managed elsewhere.
//   - An Issuer mints a Credential: a short-lived JWT scoped to one
//     workspace and one phase (plan or apply), with subject
//     "workspace:<name>:phase:<plan|apply>" and, for apply, the execution
//     and certificate it was minted for.
//   - Issuer.Handler publishes the OpenID discovery document and the JWKS,
//     which is all a verifier (fixtures/sandboxcloud, an AWS web-identity
//     role trust, GCP workload identity federation, Vault JWT auth) needs.
//
// Workspaces, proposals, certificates, executions, epochs and the audit log,
// with the admission and execution services and their store interfaces, are
// to come here too; storage adapters will live in subpackages and HTTP in
// package web. The package knows nothing of HTTP beyond the small discovery
// handler and nothing of storage beyond the key directory.
package broker

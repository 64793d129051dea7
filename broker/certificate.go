package broker

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// CertificatePayloadType is the DSSE payload type of a certificate: the
// payload is a CertificatePayload as canonical JSON (RFC 8785, with the
// summary exactly as Summary.Canonical writes it).
const CertificatePayloadType = "application/vnd.seb.certificate+json"

// SignCertificate returns the DSSE envelope, as JSON, of the certificate
// payload p signed by s: payloadType CertificatePayloadType, payload the
// base64 of p's canonical JSON (RFC 8785, times in UTC RFC 3339 with
// nanoseconds, approvals always an array, the summary exactly as
// Summary.Canonical writes it), one ed25519 signature over the DSSE
// pre-authentication encoding with keyid s.KeyID().
//
// It returns an EINVALID error if p lacks its id, workspace or proposal id;
// if a digest is not "sha256:<64 hex>"; if the summary is missing, invalid
// or its digest is not DiffDigest; if NotAfter is not after NotBefore; if
// an epoch is negative or an approval names no reviewer or time; or if
// IssuerKeyID is not s.KeyID(). p itself is not changed.
func (s *Signer) SignCertificate(p *CertificatePayload) ([]byte, error) {
	if p == nil {
		return nil, Errorf(EINVALID, "certificate: no payload")
	}
	if err := validCertificatePayload(p, s.keyID); err != nil {
		return nil, Errorf(EINVALID, "certificate %s: %s", p.ID, err)
	}
	payload, err := canonicalCertificatePayload(normalCertificatePayload(p))
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", p.ID, err)
	}
	signer, err := dsse.NewEnvelopeSigner(s.DSSE())
	if err != nil {
		return nil, err
	}
	env, err := signer.SignPayload(context.Background(), CertificatePayloadType, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(env)
}

// VerifyCertificate returns the payload of a certificate envelope signed by
// pub's key. It needs only the public key. It returns an EINVALID error
// that says which of these failed:
//
//   - "not a certificate envelope": the input is not a DSSE envelope;
//   - the envelope's payload type is not CertificatePayloadType;
//   - "certificate signature is invalid": no signature in the envelope is
//     pub's over the pre-authentication encoding of the payload type and
//     payload (tampering, or another key);
//   - the signed payload does not decode strictly as a CertificatePayload
//     (unknown members, an invalid summary);
//   - "certificate payload is inconsistent": the summary's digest is not
//     DiffDigest, or a field SignCertificate requires is wrong.
//
// VerifyCertificate checks only what the certificate says about itself.
// Whether it may be used now — the validity window, the policy and
// revocation epochs, revocation and single use — depends on the broker's
// state and clock and is for the execution service to check.
func VerifyCertificate(envelope []byte, keys ...ed25519.PublicKey) (*CertificatePayload, error) {
	// keys are the signer's, current and retired: a certificate signed
	// before a rotation still verifies. The first key's answer is the one
	// reported when none verifies.
	var first error
	for _, pub := range keys {
		p, err := verifyCertificate(envelope, pub)
		if err == nil {
			return p, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return nil, Errorf(EINVALID, "certificate signature is invalid: no verification key")
	}
	return nil, first
}

func verifyCertificate(envelope []byte, pub ed25519.PublicKey) (*CertificatePayload, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil || env.PayloadType == "" || env.Payload == "" {
		return nil, Errorf(EINVALID, "not a certificate envelope")
	}
	if env.PayloadType != CertificatePayloadType {
		return nil, Errorf(EINVALID, "not a certificate envelope: payload type is %q, want %q", env.PayloadType, CertificatePayloadType)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, Errorf(EINVALID, "certificate signature is invalid: the verification key is not an ed25519 public key")
	}
	verifier, err := dsse.NewEnvelopeVerifier(verifierOf(pub))
	if err != nil {
		return nil, err
	}
	_, payload, err := verifier.VerifyAndDecode(context.Background(), &env)
	if err != nil {
		return nil, Errorf(EINVALID, "certificate signature is invalid")
	}

	var p CertificatePayload
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	dec.UseNumber() // planparse values hold numbers as json.Number, exactly
	if err := dec.Decode(&p); err != nil {
		return nil, Errorf(EINVALID, "certificate payload is malformed: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, Errorf(EINVALID, "certificate payload is malformed: data after the statement")
	}
	if err := validCertificatePayload(&p, PublicKeyID(pub)); err != nil {
		return nil, Errorf(EINVALID, "certificate payload is inconsistent: %s", err)
	}
	return &p, nil
}

// validCertificatePayload returns what is wrong with p, or nil; issuer is
// the key id p must name.
func validCertificatePayload(p *CertificatePayload, issuer string) error {
	switch {
	case p.ID == "":
		return errors.New("id is empty")
	case p.Workspace == "":
		return errors.New("workspace is empty")
	case p.ProposalID == "":
		return errors.New("proposal id is empty")
	case !sha256DigestPattern.MatchString(p.ConfigDigest):
		return errors.New(`config digest is not "sha256:<64 hex digits>"`)
	case !sha256DigestPattern.MatchString(p.DiffDigest):
		return errors.New(`diff digest is not "sha256:<64 hex digits>"`)
	case !sha256DigestPattern.MatchString(p.PlanDigest):
		return errors.New(`plan digest is not "sha256:<64 hex digits>"`)
	case p.Summary == nil:
		return errors.New("summary is missing")
	case p.NotBefore.IsZero() || p.NotAfter.IsZero():
		return errors.New("validity window is not set")
	case !p.NotAfter.After(p.NotBefore):
		return errors.New("not_after is not after not_before")
	case p.PolicyEpoch < 0 || p.RevocationEpoch < 0:
		return errors.New("an epoch is negative")
	case p.IssuerKeyID != issuer:
		return errors.New("issuer key id " + p.IssuerKeyID + " is not the signing key's " + issuer)
	}
	for _, a := range p.Approvals {
		if a.Reviewer == "" || a.At.IsZero() {
			return errors.New("an approval has no reviewer or time")
		}
	}
	if err := p.Summary.Validate(); err != nil {
		return err
	}
	if d := p.Summary.Digest(); d != p.DiffDigest {
		return errors.New("the summary's digest " + d + " is not the diff digest " + p.DiffDigest)
	}
	return nil
}

// planparseMembers are the payload members whose values planparse writes
// in its own canonical form: the summary and, when present, the drift.
var planparseMembers = map[string]bool{"summary": true, "drift": true}

// canonicalCertificatePayload returns p's canonical JSON: RFC 8785 (JCS),
// except that the members planparse writes (planparseMembers) are its
// canonical JSON byte for byte. The two agree except on numbers a double
// cannot hold exactly, which JCS would round and planparse keeps; rounding
// them would break the summary's digest.
func canonicalCertificatePayload(p *CertificatePayload) ([]byte, error) {
	var encoded bytes.Buffer
	enc := json.NewEncoder(&encoded)
	enc.SetEscapeHTML(false) // leave planparse's bytes as they are
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(encoded.Bytes(), &members); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names) // the names are ASCII: byte order is JCS's UTF-16 order
	buf := []byte{'{'}
	for i, name := range names {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendQuote(buf, name)
		buf = append(buf, ':')
		value := []byte(members[name])
		if !planparseMembers[name] {
			var err error
			if value, err = canonicalizeJSON(value); err != nil {
				return nil, err
			}
		}
		buf = append(buf, value...)
	}
	return append(buf, '}'), nil
}

// normalCertificatePayload returns a copy of p as it is signed: times in
// UTC, so the canonical bytes depend only on the instants, and approvals
// an array even when there are none.
func normalCertificatePayload(p *CertificatePayload) *CertificatePayload {
	n := *p
	n.NotBefore = p.NotBefore.UTC()
	n.NotAfter = p.NotAfter.UTC()
	n.Approvals = make([]Approval, len(p.Approvals))
	for i, a := range p.Approvals {
		n.Approvals[i] = Approval{Reviewer: a.Reviewer, At: a.At.UTC()}
	}
	return &n
}

package broker_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/planparse"
)

// certTestPlan updates t.x and creates t.y.
const certTestPlan = `{"format_version":"1.2","resource_changes":[
 {"address":"t.x","mode":"managed","type":"t","name":"x","provider_name":"p",
  "change":{"actions":["update"],"before":{"size":1,"name":"a"},"after":{"size":2,"name":"a<b>&c"}}},
 {"address":"t.y","mode":"managed","type":"t","name":"y","provider_name":"p",
  "change":{"actions":["create"],"before":null,"after":{"secret":"s3cret"},"after_sensitive":{"secret":true}}}]}`

func certTestSummary(t *testing.T, plan string) *planparse.Summary {
	t.Helper()
	p, err := planparse.Parse(strings.NewReader(plan), planparse.Options{SensitiveKey: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	return p.Summary
}

// certTestPayload returns a valid payload for s, with times in a zone
// other than UTC.
func certTestPayload(t *testing.T, s *broker.Signer) *broker.CertificatePayload {
	t.Helper()
	summary := certTestSummary(t, certTestPlan)
	zone := time.FixedZone("CET", 3600)
	notBefore := time.Date(2030, 1, 2, 4, 4, 5, 123456789, zone)
	return &broker.CertificatePayload{
		ID:              "cert-1",
		Workspace:       "prod",
		ProposalID:      "prop-1",
		ConfigDigest:    "sha256:" + strings.Repeat("a", 64),
		DiffDigest:      summary.Digest(),
		PlanDigest:      "sha256:" + strings.Repeat("b", 64),
		Summary:         summary,
		NotBefore:       notBefore,
		NotAfter:        notBefore.Add(15 * time.Minute),
		PolicyEpoch:     3,
		RevocationEpoch: 1,
		Approvals:       []broker.Approval{{Reviewer: "alice", At: notBefore.Add(-time.Minute)}},
		IssuerKeyID:     s.KeyID(),
		SingleUse:       true,
	}
}

func signCert(t *testing.T, s *broker.Signer, p *broker.CertificatePayload) []byte {
	t.Helper()
	env, err := s.SignCertificate(p)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func decodeEnvelope(t *testing.T, data []byte) dsse.Envelope {
	t.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	return env
}

func encodeEnvelope(t *testing.T, env dsse.Envelope) []byte {
	t.Helper()
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// signedEnvelope signs payload as a certificate envelope without
// SignCertificate's checks, as a broker with a bug (or an old version)
// would.
func signedEnvelope(t *testing.T, s *broker.Signer, payloadType string, payload []byte) []byte {
	t.Helper()
	es, err := dsse.NewEnvelopeSigner(s.DSSE())
	if err != nil {
		t.Fatal(err)
	}
	env, err := es.SignPayload(context.Background(), payloadType, payload)
	if err != nil {
		t.Fatal(err)
	}
	return encodeEnvelope(t, *env)
}

func TestCertificateRoundTrip(t *testing.T) {
	s := newTestSigner(t)
	p := certTestPayload(t, s)
	envelope := signCert(t, s, p)

	// Verification needs only the public key, as PEM.
	pub, err := broker.ParsePublicKeyPEM(s.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	got, err := broker.VerifyCertificate(envelope, pub)
	if err != nil {
		t.Fatal(err)
	}
	if got.Summary.Digest() != p.DiffDigest || got.Summary.Digest() != p.Summary.Digest() {
		t.Errorf("summary digest = %s, want %s", got.Summary.Digest(), p.DiffDigest)
	}
	if !bytes.Equal(got.Summary.Canonical(), p.Summary.Canonical()) {
		t.Errorf("summary = %s, want %s", got.Summary.Canonical(), p.Summary.Canonical())
	}
	// Times come back as the same instants, in UTC.
	want := *p
	want.NotBefore, want.NotAfter = p.NotBefore.UTC(), p.NotAfter.UTC()
	want.Approvals = []broker.Approval{{Reviewer: "alice", At: p.Approvals[0].At.UTC()}}
	want.Summary, got.Summary = nil, nil
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("payload = %+v\nwant %+v", *got, want)
	}

	env := decodeEnvelope(t, envelope)
	if broker.CertificatePayloadType != "application/vnd.seb.certificate+json" || env.PayloadType != broker.CertificatePayloadType {
		t.Errorf("payloadType = %q", env.PayloadType)
	}
	if len(env.Signatures) != 1 || env.Signatures[0].KeyID != s.KeyID() {
		t.Errorf("signatures = %+v, want one with keyid %s", env.Signatures, s.KeyID())
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if canonical, err := jcs.Transform(payload); err != nil || !bytes.Equal(canonical, payload) {
		t.Errorf("payload is not canonical JSON (%v):\n%s\n%s", err, payload, canonical)
	}
	for _, want := range []string{`"not_before":"2030-01-02T03:04:05.123456789Z"`, `"not_after":"2030-01-02T03:19:05.123456789Z"`, `"at":"2030-01-02T03:03:05.123456789Z"`, `"single_use":true`} {
		if !bytes.Contains(payload, []byte(want)) {
			t.Errorf("payload lacks %s:\n%s", want, payload)
		}
	}
	if p.NotBefore.Location() == time.UTC {
		t.Error("SignCertificate changed its argument")
	}
}

// TestCertificateDeterministic: the same statement, whatever zone its
// times are in, gives the same envelope bytes.
func TestCertificateDeterministic(t *testing.T) {
	s := newTestSigner(t)
	p := certTestPayload(t, s)
	utc := *p
	utc.NotBefore, utc.NotAfter = p.NotBefore.UTC(), p.NotAfter.UTC()
	utc.Approvals = []broker.Approval{{Reviewer: "alice", At: p.Approvals[0].At.UTC()}}
	a, b := signCert(t, s, p), signCert(t, s, &utc)
	if !bytes.Equal(a, b) {
		t.Errorf("envelopes differ:\n%s\n%s", a, b)
	}

	none := *p
	none.Approvals = nil
	got, err := broker.VerifyCertificate(signCert(t, s, &none), s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got.Approvals == nil || len(got.Approvals) != 0 {
		t.Errorf("approvals = %#v, want an empty list", got.Approvals)
	}
}

// TestCertificateExactNumbers: a plan with numbers a double cannot hold
// still gives a certificate that verifies, with the summary unchanged.
// (RFC 8785 alone would round 9007199254740993 to 9007199254740992.)
func TestCertificateExactNumbers(t *testing.T) {
	s := newTestSigner(t)
	p := certTestPayload(t, s)
	p.Summary = certTestSummary(t, `{"format_version":"1.2","resource_changes":[{"address":"t.x","mode":"managed","type":"t","name":"x","provider_name":"p",
	  "change":{"actions":["update"],"before":{"n":9007199254740993,"f":0.10000000000000001},"after":{"n":9007199254740995,"f":1e400}}}]}`)
	p.DiffDigest = p.Summary.Digest()
	got, err := broker.VerifyCertificate(signCert(t, s, p), s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Summary.Canonical(), p.Summary.Canonical()) {
		t.Errorf("summary = %s, want %s", got.Summary.Canonical(), p.Summary.Canonical())
	}
	payload, err := base64.StdEncoding.DecodeString(decodeEnvelope(t, signCert(t, s, p)).Payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(payload, append([]byte(`"summary":`), p.Summary.Canonical()...)) {
		t.Errorf("payload does not hold the summary's canonical JSON verbatim:\n%s", payload)
	}
}

func TestSignCertificateRefuses(t *testing.T) {
	s := newTestSigner(t)
	other := newTestSigner(t)
	otherSummary := certTestSummary(t, `{"format_version":"1.2","resource_changes":[{"address":"t.z","mode":"managed","type":"t","name":"z","provider_name":"p","change":{"actions":["delete"],"before":{"a":1},"after":null}}]}`)
	tests := []struct {
		name    string
		spoil   func(p *broker.CertificatePayload)
		wantErr string
	}{
		{"no id", func(p *broker.CertificatePayload) { p.ID = "" }, "id is empty"},
		{"no workspace", func(p *broker.CertificatePayload) { p.Workspace = "" }, "workspace is empty"},
		{"no proposal", func(p *broker.CertificatePayload) { p.ProposalID = "" }, "proposal id is empty"},
		{"config digest without prefix", func(p *broker.CertificatePayload) { p.ConfigDigest = strings.Repeat("a", 64) }, "config digest"},
		{"diff digest of another algorithm", func(p *broker.CertificatePayload) { p.DiffDigest = "sha512:" + p.DiffDigest[7:] }, "diff digest"},
		{"short plan digest", func(p *broker.CertificatePayload) { p.PlanDigest = "sha256:abc" }, "plan digest"},
		{"no summary", func(p *broker.CertificatePayload) { p.Summary = nil }, "summary is missing"},
		{"summary of another diff", func(p *broker.CertificatePayload) { p.Summary = otherSummary }, "is not the diff digest"},
		{"no validity window", func(p *broker.CertificatePayload) { p.NotBefore = time.Time{} }, "validity window is not set"},
		{"empty validity window", func(p *broker.CertificatePayload) { p.NotAfter = p.NotBefore }, "not_after is not after not_before"},
		{"inverted validity window", func(p *broker.CertificatePayload) { p.NotAfter = p.NotBefore.Add(-time.Second) }, "not_after is not after not_before"},
		{"negative epoch", func(p *broker.CertificatePayload) { p.PolicyEpoch = -1 }, "epoch is negative"},
		{"approval without reviewer", func(p *broker.CertificatePayload) { p.Approvals[0].Reviewer = "" }, "approval has no reviewer"},
		{"another issuer", func(p *broker.CertificatePayload) { p.IssuerKeyID = other.KeyID() }, "is not the signing key's"},
		{"no issuer", func(p *broker.CertificatePayload) { p.IssuerKeyID = "" }, "is not the signing key's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := certTestPayload(t, s)
			tt.spoil(p)
			_, err := s.SignCertificate(p)
			if broker.ErrorCode(err) != broker.EINVALID || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SignCertificate = %v, want EINVALID containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := s.SignCertificate(nil); broker.ErrorCode(err) != broker.EINVALID {
		t.Errorf("SignCertificate(nil) = %v, want EINVALID", err)
	}
}

func TestVerifyCertificateRefuses(t *testing.T) {
	s := newTestSigner(t)
	other := newTestSigner(t)
	good := signCert(t, s, certTestPayload(t, s))
	goodPayload, err := base64.StdEncoding.DecodeString(decodeEnvelope(t, good).Payload)
	if err != nil {
		t.Fatal(err)
	}
	// edit returns the good envelope changed by f.
	edit := func(f func(env *dsse.Envelope)) []byte {
		env := decodeEnvelope(t, good)
		f(&env)
		return encodeEnvelope(t, env)
	}
	// withPayload returns the good envelope with a different payload and
	// the old signatures.
	withPayload := func(payload []byte) []byte {
		return edit(func(env *dsse.Envelope) { env.Payload = base64.StdEncoding.EncodeToString(payload) })
	}
	// signedPayload returns goodPayload changed by f, signed by s.
	signedPayload := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(goodPayload, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return signedEnvelope(t, s, broker.CertificatePayloadType, data)
	}

	const (
		notEnvelope  = "not a certificate envelope"
		badSignature = "certificate signature is invalid"
		inconsistent = "certificate payload is inconsistent"
		malformed    = "certificate payload is malformed"
	)
	tests := []struct {
		name     string
		envelope []byte
		wantMsg  string // the start of the message
	}{
		{"garbage", []byte("garbage"), notEnvelope},
		{"empty", nil, notEnvelope},
		{"JSON array", []byte(`[1,2]`), notEnvelope},
		{"empty object", []byte(`{}`), notEnvelope},
		{"no payload", edit(func(env *dsse.Envelope) { env.Payload = "" }), notEnvelope},
		{"wrong payload type", edit(func(env *dsse.Envelope) { env.PayloadType = "application/vnd.in-toto+json" }), notEnvelope + `: payload type is "application/vnd.in-toto+json"`},
		{"right payload, other type, signed", signedEnvelope(t, s, "application/json", goodPayload), notEnvelope + `: payload type is "application/json"`},
		{"signed by another key", signCert(t, other, func() *broker.CertificatePayload {
			p := certTestPayload(t, other)
			return p
		}()), badSignature},
		{"another key claiming the broker's key id", edit(func(env *dsse.Envelope) {
			forged := decodeEnvelope(t, signedEnvelope(t, other, broker.CertificatePayloadType, goodPayload))
			env.Signatures = forged.Signatures
			env.Signatures[0].KeyID = s.KeyID()
		}), badSignature},
		{"no signatures", edit(func(env *dsse.Envelope) { env.Signatures = nil }), badSignature},
		{"signature not base64", edit(func(env *dsse.Envelope) { env.Signatures[0].Sig = "!!" }), badSignature},
		{"byte flipped in base64 payload", edit(func(env *dsse.Envelope) {
			b := []byte(env.Payload)
			i := len(b) / 2
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			env.Payload = string(b)
		}), badSignature},
		{"payload not base64", edit(func(env *dsse.Envelope) { env.Payload = "%%%" }), badSignature},
		{"not_after extended, not re-signed", withPayload(bytes.Replace(goodPayload,
			[]byte(`"not_after":"2030-01-02T03:19:05.123456789Z"`), []byte(`"not_after":"2031-01-02T03:19:05.123456789Z"`), 1)), badSignature},
		{"payload type changed and signature kept", edit(func(env *dsse.Envelope) { env.PayloadType = broker.CertificatePayloadType + " " }), notEnvelope},
		{"summary digest is not the diff digest", signedPayload(func(m map[string]any) {
			m["diff_digest"] = "sha256:" + strings.Repeat("c", 64)
		}), inconsistent + ": the summary's digest"},
		{"issuer is another key", signedPayload(func(m map[string]any) { m["issuer_key_id"] = other.KeyID() }), inconsistent + ": issuer key id"},
		{"no id", signedPayload(func(m map[string]any) { delete(m, "id") }), inconsistent + ": id is empty"},
		{"unknown member", signedPayload(func(m map[string]any) { m["admin"] = true }), malformed},
		{"invalid summary", signedPayload(func(m map[string]any) { m["summary"] = map[string]any{"resources": "x"} }), malformed},
		{"payload not JSON", signedEnvelope(t, s, broker.CertificatePayloadType, []byte("hello")), malformed},
		{"two statements", signedEnvelope(t, s, broker.CertificatePayloadType, append(bytes.Clone(goodPayload), goodPayload...)), malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := broker.VerifyCertificate(tt.envelope, s.PublicKey())
			if err == nil {
				t.Fatalf("VerifyCertificate accepted it: %+v", got)
			}
			if code, msg := broker.ErrorCode(err), broker.ErrorMessage(err); code != broker.EINVALID || !strings.HasPrefix(msg, tt.wantMsg) {
				t.Fatalf("VerifyCertificate = %v, want EINVALID starting %q", err, tt.wantMsg)
			}
		})
	}

	t.Run("good envelope, another public key", func(t *testing.T) {
		_, err := broker.VerifyCertificate(good, other.PublicKey())
		if broker.ErrorMessage(err) != badSignature {
			t.Fatalf("VerifyCertificate = %v, want %q", err, badSignature)
		}
	})
	t.Run("good envelope, no public key", func(t *testing.T) {
		_, err := broker.VerifyCertificate(good, nil)
		if !strings.HasPrefix(broker.ErrorMessage(err), badSignature) {
			t.Fatalf("VerifyCertificate = %v, want %q", err, badSignature)
		}
	})
	t.Run("good envelope verifies", func(t *testing.T) {
		if _, err := broker.VerifyCertificate(good, s.PublicKey()); err != nil {
			t.Fatal(err)
		}
	})
}

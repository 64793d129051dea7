package broker_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/seb-broker/seb/broker"
)

// newTestSigner returns a signer with a fresh key in a temporary directory.
func newTestSigner(t *testing.T) *broker.Signer {
	t.Helper()
	s, err := broker.OpenSigner(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpenSignerCreatesPrivateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := broker.OpenSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, broker.SignerKeyFile)
	requireMode(t, dir, 0o700)
	requireMode(t, keyFile, 0o600)
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d files, want only the key", len(entries))
	}

	if !regexp.MustCompile(`^ed25519:[0-9a-f]{16}$`).MatchString(s.KeyID()) {
		t.Errorf("KeyID() = %q, want ed25519:<16 hex>", s.KeyID())
	}
	sum := sha256.Sum256(s.PublicKey())
	if want := "ed25519:" + hex.EncodeToString(sum[:8]); s.KeyID() != want {
		t.Errorf("KeyID() = %q, want %q", s.KeyID(), want)
	}
	if got := broker.PublicKeyID(s.PublicKey()); got != s.KeyID() {
		t.Errorf("PublicKeyID = %q, want %q", got, s.KeyID())
	}

	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PKCS#8 PEM block: %q", data)
	}
	if key, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Fatal(err)
	} else if _, ok := key.(ed25519.PrivateKey); !ok {
		t.Errorf("key file holds a %T, want ed25519", key)
	}

	again, err := broker.OpenSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.KeyID() != s.KeyID() || !again.PublicKey().Equal(s.PublicKey()) {
		t.Errorf("reopened key %s, want %s", again.KeyID(), s.KeyID())
	}
	fromPEM, err := broker.SignerFromPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if fromPEM.KeyID() != s.KeyID() {
		t.Errorf("SignerFromPEM(key file) has key %s, want %s", fromPEM.KeyID(), s.KeyID())
	}
}

// TestOpenSignerConcurrentFirstOpen: processes starting together on an
// empty directory must end up with one key, not each its own.
func TestOpenSignerConcurrentFirstOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ids := make([]string, 16)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			s, err := broker.OpenSigner(dir)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = s.KeyID()
		})
	}
	wg.Wait()
	final, err := broker.OpenSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if id != final.KeyID() {
			t.Errorf("opener %d got key %s, the key file holds %s", i, id, final.KeyID())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d files, want only the key", len(entries))
	}
}

func TestOpenSignerRefuses(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes")
	}
	_, rsaPrivate, _ := signerTestRSAKey(t)
	tests := []struct {
		name    string
		spoil   func(t *testing.T, dir string)
		wantErr string
	}{
		{
			name:    "world-readable key file",
			spoil:   func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, broker.SignerKeyFile), 0o644) },
			wantErr: "readable or writable by group or others (mode 0644)",
		},
		{
			name:    "group-readable key file",
			spoil:   func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, broker.SignerKeyFile), 0o640) },
			wantErr: "chmod 600",
		},
		{
			name:    "group-writable directory",
			spoil:   func(t *testing.T, dir string) { chmod(t, dir, 0o770) },
			wantErr: "writable by group or others",
		},
		{
			name: "RSA key",
			spoil: func(t *testing.T, dir string) {
				signerTestWriteFile(t, filepath.Join(dir, broker.SignerKeyFile), rsaPrivate)
			},
			wantErr: "seb signs statements with ed25519",
		},
		{
			name: "not PEM",
			spoil: func(t *testing.T, dir string) {
				signerTestWriteFile(t, filepath.Join(dir, broker.SignerKeyFile), []byte("not a key"))
			},
			wantErr: "no PEM private key found",
		},
		{
			name: "key file is a directory",
			spoil: func(t *testing.T, dir string) {
				keyFile := filepath.Join(dir, broker.SignerKeyFile)
				if err := os.Remove(keyFile); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(keyFile, 0o700); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "not a regular file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if _, err := broker.OpenSigner(dir); err != nil {
				t.Fatal(err)
			}
			tt.spoil(t, dir)
			_, err := broker.OpenSigner(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("OpenSigner = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	t.Run("no directory", func(t *testing.T) {
		if _, err := broker.OpenSigner(""); err == nil {
			t.Fatal("OpenSigner(\"\") succeeded")
		}
	})
}

func TestSignerPEMRoundTrip(t *testing.T) {
	s := newTestSigner(t)
	pub, err := broker.ParsePublicKeyPEM(s.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(s.PublicKey()) {
		t.Errorf("ParsePublicKeyPEM(PublicKeyPEM()) = %x, want %x", pub, s.PublicKey())
	}
	if block, _ := pem.Decode(s.PublicKeyPEM()); block == nil || block.Type != "PUBLIC KEY" {
		t.Errorf("PublicKeyPEM() is not a PUBLIC KEY block: %q", s.PublicKeyPEM())
	}
	// Other PEM blocks before the key are skipped.
	withOther := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), s.PublicKeyPEM()...)
	if pub, err := broker.ParsePublicKeyPEM(withOther); err != nil || !pub.Equal(s.PublicKey()) {
		t.Errorf("ParsePublicKeyPEM(other block + key) = %x, %v", pub, err)
	}

	rsaPublic, _, _ := signerTestRSAKey(t)
	for name, data := range map[string][]byte{
		"empty":         nil,
		"garbage":       []byte("garbage"),
		"private key":   signerTestPrivatePEM(t),
		"RSA key":       rsaPublic,
		"corrupt block": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("xx")}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := broker.ParsePublicKeyPEM(data)
			if broker.ErrorCode(err) != broker.EINVALID {
				t.Errorf("ParsePublicKeyPEM = %v, want an EINVALID error", err)
			}
		})
	}
}

func TestSignerFromPEM(t *testing.T) {
	data := signerTestPrivatePEM(t)
	s, err := broker.SignerFromPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	key, _ := x509.ParsePKCS8PrivateKey(block.Bytes)
	if want := key.(ed25519.PrivateKey).Public().(ed25519.PublicKey); !s.PublicKey().Equal(want) {
		t.Errorf("SignerFromPEM public key = %x, want %x", s.PublicKey(), want)
	}

	_, rsaPrivate, _ := signerTestRSAKey(t)
	tests := []struct {
		name, wantErr string
		data          []byte
	}{
		{"empty", "no PEM private key found", nil},
		{"public key only", "no PEM private key found", s.PublicKeyPEM()},
		{"two keys", "more than one private key", append(signerTestPrivatePEM(t), signerTestPrivatePEM(t)...)},
		{"encrypted", "encrypted", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})},
		{"RSA key", "ed25519", rsaPrivate},
		{"corrupt", "parse PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("xx")})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := broker.SignerFromPEM(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SignerFromPEM = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestSignerDSSE: the signer works as the DSSE library's signer and
// verifier, and its signatures are plain ed25519 over the PAE.
func TestSignerDSSE(t *testing.T) {
	s := newTestSigner(t)
	es, err := dsse.NewEnvelopeSigner(s.DSSE())
	if err != nil {
		t.Fatal(err)
	}
	env, err := es.SignPayload(context.Background(), "text/plain", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if len(env.Signatures) != 1 || env.Signatures[0].KeyID != s.KeyID() {
		t.Fatalf("signatures = %+v, want one with keyid %s", env.Signatures, s.KeyID())
	}
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if !ed25519.Verify(s.PublicKey(), dsse.PAE("text/plain", []byte("hello")), sig) {
		t.Error("the DSSE signature is not ed25519 over the PAE")
	}
	ev, err := dsse.NewEnvelopeVerifier(s.DSSE())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Verify(context.Background(), env); err != nil {
		t.Errorf("DSSE verify: %v", err)
	}
	if pub, ok := s.DSSE().Public().(ed25519.PublicKey); !ok || !pub.Equal(s.PublicKey()) {
		t.Errorf("DSSE().Public() = %v, want the signer's key", s.DSSE().Public())
	}
}

func TestArtifactSignVerify(t *testing.T) {
	s := newTestSigner(t)
	other := newTestSigner(t)
	data := []byte("terraform apply output\n")
	signed := func() *broker.Artifact {
		a := &broker.Artifact{ID: "log-1", Kind: "apply-log", Data: bytes.Clone(data)}
		s.SignArtifact(a)
		return a
	}

	a := signed()
	sum := sha256.Sum256(data)
	if want := "sha256:" + hex.EncodeToString(sum[:]); a.Digest != want {
		t.Errorf("Digest = %s, want %s", a.Digest, want)
	}
	if a.KeyID != s.KeyID() {
		t.Errorf("KeyID = %s, want %s", a.KeyID, s.KeyID())
	}
	sig, err := base64.StdEncoding.DecodeString(a.Signature)
	if err != nil || !ed25519.Verify(s.PublicKey(), dsse.PAE("application/vnd.seb.apply-log", data), sig) {
		t.Errorf("Signature is not base64 ed25519 over the DSSE encoding of the kind and data: %v", err)
	}
	pub, err := broker.ParsePublicKeyPEM(s.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.VerifyArtifact(a, pub); err != nil {
		t.Errorf("VerifyArtifact = %v", err)
	}

	tests := []struct {
		name    string
		spoil   func(a *broker.Artifact)
		pub     ed25519.PublicKey
		wantErr string
	}{
		{"tampered data", func(a *broker.Artifact) { a.Data[0] ^= 1 }, s.PublicKey(), "data does not match its digest"},
		{"appended data", func(a *broker.Artifact) { a.Data = append(a.Data, '!') }, s.PublicKey(), "data does not match its digest"},
		{"tampered data with its digest", func(a *broker.Artifact) {
			a.Data[0] ^= 1
			sum := sha256.Sum256(a.Data)
			a.Digest = "sha256:" + hex.EncodeToString(sum[:])
		}, s.PublicKey(), "signature is invalid"},
		{"garbled signature", func(a *broker.Artifact) { a.Signature = "!!" }, s.PublicKey(), "signature is invalid"},
		{"another key", func(a *broker.Artifact) {}, other.PublicKey(), "is signed by key"},
		{"re-signed by another key", func(a *broker.Artifact) { other.SignArtifact(a); a.KeyID = s.KeyID() }, s.PublicKey(), "signature is invalid"},
		{"another kind", func(a *broker.Artifact) { a.Kind = "plan-log" }, s.PublicKey(), "signature is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := signed()
			tt.spoil(a)
			err := broker.VerifyArtifact(a, tt.pub)
			if broker.ErrorCode(err) != broker.EINVALID || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("VerifyArtifact = %v, want EINVALID containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestArtifactEnvelope: an artifact's DSSE envelope verifies offline with
// the public key alone; one byte changed anywhere in the payload, the
// payload type or the signature fails it.
func TestArtifactEnvelope(t *testing.T) {
	s := newTestSigner(t)
	a := &broker.Artifact{ID: "log-1", Kind: "plan-log", Data: []byte(`{"@level":"info","@message":"Plan: 1 to add"}` + "\n")}
	s.SignArtifact(a)
	env, err := a.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	got, err := broker.VerifyArtifactEnvelope(env, s.PublicKey())
	if err != nil || got.Kind != "plan-log" || !bytes.Equal(got.Data, a.Data) || got.Digest != a.Digest {
		t.Fatalf("VerifyArtifactEnvelope = %+v, %v", got, err)
	}
	var e dsse.Envelope
	json.Unmarshal(env, &e)
	payload, _ := base64.StdEncoding.DecodeString(e.Payload)
	for i := range payload {
		changed := e
		p := bytes.Clone(payload)
		p[i] ^= 1
		changed.Payload = base64.StdEncoding.EncodeToString(p)
		raw, _ := json.Marshal(changed)
		if _, err := broker.VerifyArtifactEnvelope(raw, s.PublicKey()); broker.ErrorCode(err) != broker.EINVALID {
			t.Fatalf("payload byte %d changed: %v", i, err)
		}
	}
	for _, spoil := range []func(e *dsse.Envelope){
		func(e *dsse.Envelope) { e.PayloadType = "application/vnd.seb.apply-log" },
		func(e *dsse.Envelope) { e.PayloadType = "application/json" },
		func(e *dsse.Envelope) { e.Signatures = nil },
		func(e *dsse.Envelope) { e.Signatures = []dsse.Signature{{KeyID: e.Signatures[0].KeyID, Sig: "AAAA"}} },
	} {
		changed := e
		changed.Signatures = append([]dsse.Signature{}, e.Signatures...)
		spoil(&changed)
		raw, _ := json.Marshal(changed)
		if _, err := broker.VerifyArtifactEnvelope(raw, s.PublicKey()); broker.ErrorCode(err) != broker.EINVALID {
			t.Errorf("%+v: %v", changed, err)
		}
	}
	if _, err := broker.VerifyArtifactEnvelope(env, newTestSigner(t).PublicKey()); broker.ErrorCode(err) != broker.EINVALID {
		t.Errorf("another key: %v", err)
	}
	if _, err := broker.VerifyArtifactEnvelope([]byte("{"), s.PublicKey()); broker.ErrorCode(err) != broker.EINVALID {
		t.Errorf("not JSON: %v", err)
	}
}

// signerTestPrivatePEM returns a new ed25519 key as PKCS#8 PEM.
func signerTestPrivatePEM(t *testing.T) []byte {
	t.Helper()
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// signerTestRSAKey returns an RSA key's public and private PEM (PKIX,
// PKCS#8) and the key.
func signerTestRSAKey(t *testing.T) (public, private []byte, key *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), key
}

func signerTestWriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

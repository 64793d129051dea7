package broker_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

// TestSignerRotation: after the signer key is rotated, what the old key
// signed — certificates, artifacts, audit entries, checkpoints — still
// verifies with the published keys; the new key signs from then on; the
// old private key is gone.
func TestSignerRotation(t *testing.T) {
	dir := t.TempDir()
	old, err := broker.OpenSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	oldCert := signCert(t, old, certTestPayload(t, old))
	oldArt := &broker.Artifact{ID: "a", Kind: "plan-log", Data: []byte("log\n")}
	old.SignArtifact(oldArt)
	oldEnv, _ := oldArt.Envelope()
	chain := sealAuditChain(t, old, 3)
	oldCheckpoint, err := old.SignCheckpoint(broker.Checkpoint{Count: 3, Head: chain[2].Hash, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}

	rotated, oldID, err := broker.RotateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if oldID != old.KeyID() || rotated.KeyID() == old.KeyID() {
		t.Fatalf("rotated from %s to %s; the old key was %s", oldID, rotated.KeyID(), old.KeyID())
	}
	reopened, err := broker.OpenSigner(dir)
	if err != nil || reopened.KeyID() != rotated.KeyID() || len(reopened.PublicKeys()) != 2 {
		t.Fatalf("reopened: %v, %v", reopened, err)
	}
	keys, err := broker.ParsePublicKeysPEM(reopened.PublicKeysPEM())
	if err != nil || len(keys) != 2 || broker.PublicKeyID(keys[0]) != rotated.KeyID() || broker.PublicKeyID(keys[1]) != old.KeyID() {
		t.Fatalf("published keys: %d, %v", len(keys), err)
	}
	// The old private key is no longer on disk.
	data, _ := os.ReadFile(filepath.Join(dir, broker.SignerKeyFile))
	if s, err := broker.SignerFromPEM(data); err != nil || s.KeyID() == old.KeyID() {
		t.Errorf("the key file still holds the old key: %v", err)
	}

	if _, err := broker.VerifyCertificate(oldCert, keys...); err != nil {
		t.Errorf("an old certificate: %v", err)
	}
	if _, err := broker.VerifyArtifactEnvelope(oldEnv, keys...); err != nil {
		t.Errorf("an old artifact: %v", err)
	}
	if _, err := broker.VerifyCheckpoint(oldCheckpoint, keys...); err != nil {
		t.Errorf("an old checkpoint: %v", err)
	}
	// The log goes on with the new key and verifies across the rotation.
	next, err := rotated.SealAudit(chain[2], broker.AuditEntry{Time: time.Now(), Actor: "local", Action: "keys.rotated", Subject: "signer"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := broker.VerifyAudit(auditEntriesOf(append(chain, next)), keys...); n != 4 || err != nil {
		t.Errorf("the log across the rotation: %d, %v", n, err)
	}
	// Only with the old key: the new entry does not verify.
	if n, err := broker.VerifyAudit(auditEntriesOf(append(chain, next)), old.PublicKey()); n != 3 || err == nil {
		t.Errorf("the log with the old key alone: %d, %v", n, err)
	}
	newCert := signCert(t, rotated, certTestPayload(t, rotated))
	if _, err := broker.VerifyCertificate(newCert, keys...); err != nil {
		t.Errorf("a new certificate: %v", err)
	}
}

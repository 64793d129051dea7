package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seb-broker/seb/broker"
)

// TestVerifyEnvelope: a signed log verifies offline with the public key
// from a file or from a server; one byte changed in it, another key, or a
// file that is no envelope fails with exit 1.
func TestVerifyEnvelope(t *testing.T) {
	dir := t.TempDir()
	signer, err := broker.OpenSigner(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "seb.pub")
	os.WriteFile(pub, signer.PublicKeyPEM(), 0o644)
	log := []byte(`{"@level":"info","@message":"Apply complete! Resources: 1 changed."}` + "\n")
	a := &broker.Artifact{ID: "art-1", Kind: "apply-log", Data: log}
	signer.SignArtifact(a)
	env, err := a.Envelope()
	if err != nil {
		t.Fatal(err)
	}
	write := func(data []byte) string {
		p := filepath.Join(t.TempDir(), "envelope.json")
		os.WriteFile(p, data, 0o644)
		return p
	}
	good := write(env)
	r := seb(t, "", "verify", "--public-key", pub, good)
	if r.code != exitOK || !strings.Contains(r.stdout, fmt.Sprintf("OK: apply-log of %d bytes, %s", len(log), a.Digest)) {
		t.Fatalf("a signed log: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := seb(t, "", "verify", "--public-key", pub, "--payload", good); r.code != exitOK || r.stdout != string(log) {
		t.Errorf("--payload: exit %d, %q", r.code, r.stdout)
	}
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/keys/signing" {
			http.NotFound(w, r)
			return
		}
		w.Write(signer.PublicKeyPEM())
	}))
	defer keys.Close()
	if r := seb(t, "", "verify", "--server", keys.URL, good); r.code != exitOK {
		t.Errorf("--server: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}

	var e struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []any  `json:"signatures"`
	}
	json.Unmarshal(env, &e)
	changed := bytes.Replace(log, []byte("1 changed"), []byte("0 changed"), 1)
	e.Payload = base64.StdEncoding.EncodeToString(changed)
	oneByte, _ := json.Marshal(e)
	other, err := broker.OpenSigner(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	otherPub := filepath.Join(dir, "other.pub")
	os.WriteFile(otherPub, other.PublicKeyPEM(), 0o644)
	for _, tt := range []struct {
		name, file, key, want string
	}{
		{"one byte changed", write(oneByte), pub, "FAILED: the apply-log's signature is not"},
		{"another key", good, otherPub, "FAILED"},
		{"not an envelope", write([]byte("Apply complete!")), pub, "FAILED: "},
	} {
		if r := seb(t, "", "verify", "--public-key", tt.key, tt.file); r.code != exitDiverged || !strings.Contains(r.stdout, tt.want) {
			t.Errorf("%s: exit %d, %q %q; want exit 1 saying %q", tt.name, r.code, r.stdout, r.stderr, tt.want)
		}
	}
	if r := seb(t, "", "verify", good); r.code != exitError || !strings.Contains(r.stderr, "--public-key or --server is required") {
		t.Errorf("no key: exit %d, %q", r.code, r.stderr)
	}
}

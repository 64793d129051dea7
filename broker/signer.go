package broker

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"

	"github.com/gowebpki/jcs"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// SignerKeyFile is the name of the signer's key file in the directory
// OpenSigner is given.
const SignerKeyFile = "seb-ed25519.pem"

// A Signer signs what the broker vouches for — certificates, artifacts and
// audit entries — with one ed25519 key. Anyone holding the public key
// (PublicKeyPEM) can verify what it signed, offline. A Signer is safe for
// concurrent use.
//
// It is not the KeySet that signs credentials: those are RS256 JWTs, the
// algorithm clouds accept; this key never leaves the broker's statements.
type Signer struct {
	private ed25519.PrivateKey
	public  ed25519.PublicKey
	keyID   string
	// retired are the public keys of the keys this one replaced.
	retired []ed25519.PublicKey
}

// OpenSigner returns the signer whose key is dir/seb-ed25519.pem, creating
// dir (mode 0700) and the key (PKCS#8 PEM, mode 0600) if there is none.
// Concurrent first opens agree on one key: it is written to a temporary
// file and linked into place, never over an existing key.
//
// OpenSigner refuses a key file that group or others may read or write, a
// directory they may write, and a key that is not ed25519.
func OpenSigner(dir string) (*Signer, error) {
	if dir == "" {
		return nil, errors.New("open signer key: no directory given")
	}
	s, err := openSigner(dir)
	if err != nil {
		return nil, fmt.Errorf("open signer key in %s: %w", dir, err)
	}
	return s, nil
}

func openSigner(dir string) (*Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, errors.New("not a directory")
	}
	if perm := fi.Mode().Perm(); checkPermissions() && perm&0o022 != 0 {
		return nil, fmt.Errorf("the directory is writable by group or others (mode %04o); refusing to trust a key in it: chmod 700 it", perm)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	s, err := readSignerKey(root)
	if errors.Is(err, fs.ErrNotExist) {
		return createSignerKey(root)
	}
	return s, err
}

// readSignerKey returns the signer of the key file in root, refusing a
// file that group or others may read or write.
func readSignerKey(root *os.Root) (*Signer, error) {
	data, err := readPrivateFile(root, SignerKeyFile, "signer key")
	if err != nil {
		return nil, err
	}
	s, err := SignerFromPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SignerKeyFile, err)
	}
	if s.retired, err = readRetired(root); err != nil {
		return nil, err
	}
	return s, nil
}

// createSignerKey generates a key and links it into place as the key file.
// If another process created the key file first, its key is used instead.
func createSignerKey(root *os.Root) (*Signer, error) {
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	tmp := "." + SignerKeyFile + "." + rand.Text() + ".tmp"
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer root.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", SignerKeyFile, err)
	}
	if err := root.Link(tmp, SignerKeyFile); errors.Is(err, fs.ErrExist) {
		return readSignerKey(root)
	} else if err != nil {
		return nil, err
	}
	if d, err := root.Open("."); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil && !errors.Is(err, errors.ErrUnsupported) {
			return nil, fmt.Errorf("sync key directory: %w", err)
		}
	}
	return newSigner(private), nil
}

// SignerFromPEM returns the signer of the one ed25519 private key in data,
// a PKCS#8 "PRIVATE KEY" PEM block, for a key kept outside the data
// directory.
func SignerFromPEM(data []byte) (*Signer, error) {
	var found *pem.Block
	for rest := data; ; {
		block, next := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = next
		switch block.Type {
		case "PRIVATE KEY":
			if found != nil {
				return nil, errors.New("more than one private key in the PEM data")
			}
			found = block
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted; supply it decrypted")
		}
	}
	if found == nil {
		return nil, errors.New(`no PEM private key found (want a PKCS#8 "PRIVATE KEY" block)`)
	}
	key, err := x509.ParsePKCS8PrivateKey(found.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
	}
	private, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the private key is a %T; seb signs statements with ed25519", key)
	}
	return newSigner(private), nil
}

func newSigner(private ed25519.PrivateKey) *Signer {
	public := private.Public().(ed25519.PublicKey)
	return &Signer{private: private, public: public, keyID: PublicKeyID(public)}
}

// PublicKeys returns the signer's public keys: the current one first,
// then those it signed with before a rotation, which still verify what
// they signed.
func (s *Signer) PublicKeys() []ed25519.PublicKey {
	return append([]ed25519.PublicKey{s.public}, s.retired...)
}

// PublicKeysPEM returns PublicKeys as PKIX "PUBLIC KEY" PEM blocks, the
// current first: what ParsePublicKeysPEM reads, and what seb publishes.
func (s *Signer) PublicKeysPEM() []byte {
	var out []byte
	for _, k := range s.PublicKeys() {
		out = append(out, publicKeyPEM(k)...)
	}
	return out
}

func publicKeyPEM(k ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		panic("broker: marshal ed25519 public key: " + err.Error()) // cannot happen for a valid key
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKeysPEM returns the ed25519 public keys of every PKIX "PUBLIC
// KEY" PEM block in data, in order; EINVALID if there is none or one holds
// another kind of key.
func ParsePublicKeysPEM(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for rest := data; ; {
		block, next := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = next
		if block.Type != "PUBLIC KEY" {
			continue
		}
		k, err := ParsePublicKeyPEM(pem.EncodeToMemory(block))
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, Errorf(EINVALID, `no PEM public key found (want a PKIX "PUBLIC KEY" block)`)
	}
	return keys, nil
}

// keyByID returns the key of keys whose id is id, or nil.
func keyByID(keys []ed25519.PublicKey, id string) ed25519.PublicKey {
	for _, k := range keys {
		if PublicKeyID(k) == id {
			return k
		}
	}
	return nil
}

// keyIDs names keys for messages.
func keyIDs(keys []ed25519.PublicKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = PublicKeyID(k)
	}
	if len(ids) == 1 {
		return ids[0]
	}
	return "any of " + strings.Join(ids, ", ")
}

// retiredDir holds, beside the signer key, the public keys it replaced.
const retiredDir = "retired"

// RotateSigner replaces the signer key in dir with a new one. The old
// key's public half is kept in dir/retired, so that what it signed keeps
// verifying; its private half is gone, so it signs nothing more. It
// returns the new signer and the old key's id. A broker running on dir
// signs with the old key until it restarts.
func RotateSigner(dir string) (*Signer, string, error) {
	old, err := OpenSigner(dir)
	if err != nil {
		return nil, "", err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, "", err
	}
	defer root.Close()
	if err := root.MkdirAll(retiredDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("rotate the signer key: %w", err)
	}
	retired := retiredDir + "/" + strings.TrimPrefix(old.keyID, "ed25519:") + ".pub"
	if err := writeFileAtomic(root, retired, publicKeyPEM(old.public)); err != nil {
		return nil, "", fmt.Errorf("rotate the signer key: keep the old public key: %w", err)
	}
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate ed25519 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		return nil, "", err
	}
	if err := writeFileAtomic(root, SignerKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, "", fmt.Errorf("rotate the signer key: %w", err)
	}
	s, err := OpenSigner(dir)
	if err != nil {
		return nil, "", err
	}
	return s, old.keyID, nil
}

// readRetired loads the retired public keys kept in root.
func readRetired(root *os.Root) ([]ed25519.PublicKey, error) {
	entries, err := fs.ReadDir(root.FS(), retiredDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PublicKey
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pub") {
			continue
		}
		data, err := root.ReadFile(retiredDir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		k, err := ParsePublicKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", retiredDir, e.Name(), err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// KeyID returns the signer's key id, "ed25519:" and the first 16 hex
// digits of the SHA-256 of the public key.
func (s *Signer) KeyID() string { return s.keyID }

// PublicKey returns the signer's public key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.public }

// PublicKeyPEM returns the signer's public key as a PKIX "PUBLIC KEY" PEM
// block, what ParsePublicKeyPEM reads.
func (s *Signer) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(s.public)
	if err != nil {
		panic("broker: marshal ed25519 public key: " + err.Error()) // cannot happen for a valid key
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKeyPEM returns the ed25519 public key of the first PKIX
// "PUBLIC KEY" PEM block in data. It returns an EINVALID error if there is
// none or it holds another kind of key.
func ParsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	for rest := data; ; {
		block, next := pem.Decode(rest)
		if block == nil {
			return nil, Errorf(EINVALID, `no PEM public key found (want a PKIX "PUBLIC KEY" block)`)
		}
		rest = next
		if block.Type != "PUBLIC KEY" {
			continue
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, Errorf(EINVALID, "the public key cannot be parsed: %v", err)
		}
		public, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, Errorf(EINVALID, "the public key is a %T, not ed25519", key)
		}
		return public, nil
	}
}

// PublicKeyID returns the key id of pub, as Signer.KeyID does for its key.
func PublicKeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:])[:16]
}

// DSSE returns the signer as the DSSE library's signer and verifier.
func (s *Signer) DSSE() dsse.SignerVerifier {
	return dsseKey{private: s.private, public: s.public, id: s.keyID}
}

// dsseKey adapts an ed25519 key to the DSSE library: with a private half it
// signs and verifies, with only the public half it verifies. (Signer itself
// cannot be a dsse.Signer: its KeyID returns no error.)
type dsseKey struct {
	private ed25519.PrivateKey // nil for a verifier
	public  ed25519.PublicKey
	id      string
}

var _ dsse.SignerVerifier = dsseKey{}

func verifierOf(pub ed25519.PublicKey) dsseKey {
	return dsseKey{public: pub, id: PublicKeyID(pub)}
}

// Sign signs data (the DSSE pre-authentication encoding) with ed25519.
func (k dsseKey) Sign(_ context.Context, data []byte) ([]byte, error) {
	if k.private == nil {
		return nil, errors.New("ed25519: no private key to sign with")
	}
	return ed25519.Sign(k.private, data), nil
}

// Verify returns an error unless sig is the key's signature of data.
func (k dsseKey) Verify(_ context.Context, data, sig []byte) error {
	if len(k.public) != ed25519.PublicKeySize || !ed25519.Verify(k.public, data, sig) {
		return errors.New("ed25519: invalid signature")
	}
	return nil
}

// KeyID returns the key id, as PublicKeyID.
func (k dsseKey) KeyID() (string, error) { return k.id, nil }

// Public returns the ed25519 public key.
func (k dsseKey) Public() crypto.PublicKey { return k.public }

// ArtifactPayloadTypePrefix starts the DSSE payload type of every signed
// artifact; the artifact's kind follows: "application/vnd.seb.plan-log".
const ArtifactPayloadTypePrefix = "application/vnd.seb."

// SignArtifact signs a as the payload of a DSSE envelope whose payload
// type is ArtifactPayloadTypePrefix + a.Kind: Digest is "sha256:<hex>" of
// a.Data, Signature the base64 (standard, padded) ed25519 signature of
// the DSSE pre-authentication encoding of that type and a.Data, KeyID
// the signer's key id. Envelope rebuilds the envelope from them.
func (s *Signer) SignArtifact(a *Artifact) {
	a.Digest = sha256DigestOf(a.Data)
	a.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(s.private, dsse.PAE(ArtifactPayloadTypePrefix+a.Kind, a.Data)))
	a.KeyID = s.keyID
}

// Envelope returns the artifact as the DSSE envelope that carries it:
// what anyone holding the public key verifies offline (seb verify).
func (a *Artifact) Envelope() ([]byte, error) {
	return json.Marshal(dsse.Envelope{
		PayloadType: ArtifactPayloadTypePrefix + a.Kind,
		Payload:     base64.StdEncoding.EncodeToString(a.Data),
		Signatures:  []dsse.Signature{{KeyID: a.KeyID, Sig: a.Signature}},
	})
}

// VerifyArtifact returns nil if a was signed by pub's key and its data is
// what was signed. Otherwise it returns an EINVALID error saying which: the
// artifact names another key, its data does not match its digest, or the
// signature is not pub's signature of its kind and data.
func VerifyArtifact(a *Artifact, keys ...ed25519.PublicKey) error {
	pub := keyByID(keys, a.KeyID)
	if pub == nil {
		return Errorf(EINVALID, "artifact %s is signed by key %q, not %s", a.ID, a.KeyID, keyIDs(keys))
	}
	if sha256DigestOf(a.Data) != a.Digest {
		return Errorf(EINVALID, "artifact %s: data does not match its digest", a.ID)
	}
	if !verifyBase64Signature(pub, dsse.PAE(ArtifactPayloadTypePrefix+a.Kind, a.Data), a.Signature) {
		return Errorf(EINVALID, "artifact %s: signature is invalid", a.ID)
	}
	return nil
}

// VerifyArtifactEnvelope checks a DSSE envelope of a signed artifact with
// pub alone and returns its kind and data (Digest set; no ID, no time).
// An envelope that is not one, or whose signature is not pub's over its
// payload type and payload, is EINVALID.
func VerifyArtifactEnvelope(envelope []byte, keys ...ed25519.PublicKey) (*Artifact, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil || env.Payload == "" && len(env.Signatures) == 0 {
		return nil, Errorf(EINVALID, "not a DSSE envelope")
	}
	kind, ok := strings.CutPrefix(env.PayloadType, ArtifactPayloadTypePrefix)
	if !ok || kind == "" {
		return nil, Errorf(EINVALID, "not a seb artifact: payload type %q", env.PayloadType)
	}
	data, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, Errorf(EINVALID, "the envelope's payload is not base64")
	}
	for _, sig := range env.Signatures {
		if pub := keyByID(keys, sig.KeyID); pub != nil && verifyBase64Signature(pub, dsse.PAE(env.PayloadType, data), sig.Sig) {
			return &Artifact{Kind: kind, Data: data, Digest: sha256DigestOf(data), Signature: sig.Sig, KeyID: sig.KeyID}, nil
		}
	}
	return nil, Errorf(EINVALID, "the %s's signature is not %s's: it was changed, or signed by another key", kind, keyIDs(keys))
}

// verifyBase64Signature reports whether sig, standard base64, is pub's
// ed25519 signature of msg.
func verifyBase64Signature(pub ed25519.PublicKey, msg []byte, sig string) bool {
	raw, err := base64.StdEncoding.DecodeString(sig)
	return err == nil && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, raw)
}

// sha256DigestPattern is the form of every digest the broker signs.
var sha256DigestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// sha256DigestOf returns "sha256:<hex>" of data.
func sha256DigestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// canonicalJSONOf returns the RFC 8785 (JCS) canonical JSON of v. Times in
// v must already be in UTC for the bytes to depend only on the instants.
func canonicalJSONOf(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return canonicalizeJSON(data)
}

// canonicalizeJSON returns the RFC 8785 (JCS) form of the JSON text data.
// JCS numbers are IEEE doubles: integers beyond 2^53 lose precision.
func canonicalizeJSON(data []byte) ([]byte, error) {
	out, err := jcs.Transform(data)
	if err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	return out, nil
}

package broker

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// SigningAlgorithm is the JWS algorithm of every credential the broker
// signs: RS256, the one AWS, GCP and Vault all accept.
const SigningAlgorithm = "RS256"

// rsaKeyBits is the size of the keys OpenKeySet generates, and the smallest
// a supplied key may have.
const rsaKeyBits = 2048

// maxKeyFileBytes bounds what is read from a key or index file.
const maxKeyFileBytes = 64 << 10

// Names inside the directory OpenKeySet is given.
const (
	signingKeysDir = "signing-keys"
	keyIndexFile   = "index.json"
	keyFileSuffix  = ".pem"
)

// kidPattern is a base64url SHA-256 JWK thumbprint, the only key id the
// broker uses. It also keeps key file names inside the key directory.
var kidPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// KeySetOptions configure a KeySet.
type KeySetOptions struct {
	// Now is the clock that decides which retired keys are still
	// published; nil means time.Now.
	Now func() time.Time
	// MaxTokenLifetime is the longest lifetime of a token the set signs:
	// a retired key stays published this long after it was retired, so
	// every token it signed verifies until it expires. Zero means
	// MaxCredentialLifetime; anything shorter is refused, since a
	// credential could then outlive the key that verifies it.
	MaxTokenLifetime time.Duration
}

// Valid returns an error if the options cannot be used.
func (o KeySetOptions) Valid() error {
	if o.MaxTokenLifetime != 0 && o.MaxTokenLifetime < MaxCredentialLifetime {
		return fmt.Errorf("KeySetOptions.MaxTokenLifetime %s is shorter than the longest credential lifetime %s", o.MaxTokenLifetime, MaxCredentialLifetime)
	}
	return nil
}

func (o KeySetOptions) withDefaults() KeySetOptions {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxTokenLifetime == 0 {
		o.MaxTokenLifetime = MaxCredentialLifetime
	}
	return o
}

// A KeySet holds the broker's credential signing keys: one current key,
// which signs, and retired keys, which are still published so that tokens
// they signed verify until they expire. All are RSA keys used with RS256;
// a key's id (the JWT "kid") is its RFC 7638 JWK thumbprint (SHA-256,
// base64url).
//
// A KeySet is safe for concurrent use. It does not notice changes another
// process makes to its directory.
type KeySet struct {
	dir              string // the signing-keys directory; "" for a key supplied as PEM
	now              func() time.Time
	maxTokenLifetime time.Duration

	mu   sync.Mutex
	keys []signingKey // keys[0] is current; then retired keys, newest first
}

// A signingKey is one key of a KeySet.
type signingKey struct {
	id      string
	private *rsa.PrivateKey
	created time.Time // zero for a key supplied as PEM
	retired time.Time // zero for the current key
}

// KeyInfo describes a signing key without its private half.
type KeyInfo struct {
	ID        string    // the key id, the "kid" of the tokens it signs
	Algorithm string    // SigningAlgorithm
	CreatedAt time.Time // zero for a key supplied as PEM
	RetiredAt time.Time // zero for the current key
}

// keyIndex is the JSON index of a key directory: which keys exist, when
// each was created and retired. The key without retired_at is current.
type keyIndex struct {
	Keys []keyIndexEntry `json:"keys"`
}

type keyIndexEntry struct {
	ID        string    `json:"kid"`
	Algorithm string    `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	RetiredAt time.Time `json:"retired_at,omitzero"`
}

// OpenKeySet returns the key set kept in dir, creating dir and a first
// key if there is none. Keys are PKCS#8 PEM files dir/signing-keys/<kid>.pem
// next to dir/signing-keys/index.json, which records when each key was
// created and retired; files are written 0600, the directory 0700, always
// through a temporary file and a rename. Retired keys whose retention has
// passed are pruned.
//
// OpenKeySet refuses a key file that group or others may read or write, a
// key directory they may write, a key whose thumbprint is not its id, an
// index without exactly one current key, and key files without an index.
func OpenKeySet(dir string, opts KeySetOptions) (*KeySet, error) {
	if err := opts.Valid(); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("open signing keys: no directory given")
	}
	opts = opts.withDefaults()
	ks := &KeySet{
		dir:              filepath.Join(dir, signingKeysDir),
		now:              opts.Now,
		maxTokenLifetime: opts.MaxTokenLifetime,
	}
	if err := ks.open(); err != nil {
		return nil, fmt.Errorf("open signing keys in %s: %w", ks.dir, err)
	}
	return ks, nil
}

func (ks *KeySet) open() error {
	if err := os.MkdirAll(ks.dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(ks.dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	if perm := fi.Mode().Perm(); checkPermissions() && perm&0o022 != 0 {
		return fmt.Errorf("the directory is writable by group or others (mode %04o); refusing to trust keys in it: chmod 700 it", perm)
	}
	root, err := os.OpenRoot(ks.dir)
	if err != nil {
		return err
	}
	defer root.Close()

	index, err := readKeyIndex(root)
	if errors.Is(err, fs.ErrNotExist) {
		return ks.create(root)
	}
	if err != nil {
		return err
	}
	keys, err := loadKeys(root, index)
	if err != nil {
		return err
	}
	ks.keys = keys
	return ks.prune(root, ks.now())
}

// create makes the first key of an empty key directory.
func (ks *KeySet) create(root *os.Root) error {
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), keyFileSuffix) {
			return fmt.Errorf("%s exists but %s does not; refusing to guess which key is current", e.Name(), keyIndexFile)
		}
	}
	key, err := generateSigningKey(ks.now())
	if err != nil {
		return err
	}
	keys := []signingKey{key}
	if err := writeKeyFile(root, key); err != nil {
		return err
	}
	if err := writeKeyIndex(root, keys); err != nil {
		root.Remove(key.id + keyFileSuffix)
		return err
	}
	ks.keys = keys
	return nil
}

// KeySetFromPEM returns a key set of the one RSA private key in data
// (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY", unencrypted, at least
// 2048 bits), for a key supplied from a file or the environment. The broker
// does not manage such a key: Rotate and Prune return an error, and
// rotating means replacing the key where it is kept, after which tokens the
// old key signed stop verifying.
func KeySetFromPEM(data []byte) (*KeySet, error) {
	private, err := parsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	id, err := keyID(&private.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &KeySet{
		now:              time.Now,
		maxTokenLifetime: MaxCredentialLifetime,
		keys:             []signingKey{{id: id, private: private}},
	}, nil
}

// errUnmanaged is returned by the operations a key supplied as PEM does
// not support.
var errUnmanaged = errors.New("the signing key was supplied as PEM and is not managed by seb; rotate it where it is kept")

// Rotate makes a new key current and retires the current one at now; the
// retired key stays published until now + MaxTokenLifetime. Keys whose
// retention has passed by now are pruned. The new key file is written
// before the index that makes it current, so a failure leaves the set as
// it was. Rotate returns an error for a key set from KeySetFromPEM.
func (ks *KeySet) Rotate(now time.Time) error {
	if ks.dir == "" {
		return fmt.Errorf("rotate signing key: %w", errUnmanaged)
	}
	key, err := generateSigningKey(now)
	if err != nil {
		return fmt.Errorf("rotate signing key: %w", err)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	keys := make([]signingKey, 0, len(ks.keys)+1)
	keys = append(keys, key)
	for _, k := range ks.keys {
		if k.retired.IsZero() {
			k.retired = now
		}
		keys = append(keys, k)
	}
	keys = ks.retained(keys, now)
	root, err := os.OpenRoot(ks.dir)
	if err != nil {
		return fmt.Errorf("rotate signing key: %w", err)
	}
	defer root.Close()
	if err := writeKeyFile(root, key); err != nil {
		return fmt.Errorf("rotate signing key: %w", err)
	}
	if err := writeKeyIndex(root, keys); err != nil {
		root.Remove(key.id + keyFileSuffix)
		return fmt.Errorf("rotate signing key: %w", err)
	}
	old := ks.keys
	ks.keys = keys
	return removeKeyFiles(root, old, keys)
}

// Prune forgets the retired keys whose retention (retirement +
// MaxTokenLifetime) has passed by now and deletes their files. OpenKeySet
// and Rotate prune too; PublicJWKS never publishes such a key either way.
// Prune returns an error for a key set from KeySetFromPEM.
func (ks *KeySet) Prune(now time.Time) error {
	if ks.dir == "" {
		return fmt.Errorf("prune signing keys: %w", errUnmanaged)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	root, err := os.OpenRoot(ks.dir)
	if err != nil {
		return fmt.Errorf("prune signing keys: %w", err)
	}
	defer root.Close()
	if err := ks.prune(root, now); err != nil {
		return fmt.Errorf("prune signing keys: %w", err)
	}
	return nil
}

// prune persists ks.keys without the keys whose retention has passed.
func (ks *KeySet) prune(root *os.Root, now time.Time) error {
	keys := ks.retained(ks.keys, now)
	if len(keys) == len(ks.keys) {
		return nil
	}
	if err := writeKeyIndex(root, keys); err != nil {
		return err
	}
	old := ks.keys
	ks.keys = keys
	return removeKeyFiles(root, old, keys)
}

// retained returns the keys still published at now: the current key and
// the retired keys with now <= retirement + MaxTokenLifetime.
func (ks *KeySet) retained(keys []signingKey, now time.Time) []signingKey {
	return slices.DeleteFunc(slices.Clone(keys), func(k signingKey) bool {
		return !k.retired.IsZero() && now.After(k.retired.Add(ks.maxTokenLifetime))
	})
}

// Keys describes the keys the set holds, the current one first, then the
// retired ones, newest first.
func (ks *KeySet) Keys() []KeyInfo {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	infos := make([]KeyInfo, len(ks.keys))
	for i, k := range ks.keys {
		infos[i] = KeyInfo{ID: k.id, Algorithm: SigningAlgorithm, CreatedAt: k.created, RetiredAt: k.retired}
	}
	return infos
}

// PublicJWKS returns the JWK Set (RFC 7517) of the public halves of the
// published keys — the current key and the retired keys still within
// their retention at the set's clock — each with kty "RSA", kid, use "sig",
// alg "RS256", n and e. The current key comes first.
func (ks *KeySet) PublicJWKS() ([]byte, error) {
	ks.mu.Lock()
	keys := ks.retained(ks.keys, ks.now())
	ks.mu.Unlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       &k.private.PublicKey,
			KeyID:     k.id,
			Algorithm: SigningAlgorithm,
			Use:       "sig",
		})
	}
	data, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("public JWKS: %w", err)
	}
	return data, nil
}

// current returns the key that signs.
func (ks *KeySet) current() signingKey {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.keys[0]
}

// generateSigningKey returns a new RSA key created at now.
func generateSigningKey(now time.Time) (signingKey, error) {
	private, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
	if err != nil {
		return signingKey{}, fmt.Errorf("generate RSA key: %w", err)
	}
	id, err := keyID(&private.PublicKey)
	if err != nil {
		return signingKey{}, err
	}
	return signingKey{id: id, private: private, created: now.UTC()}, nil
}

// keyID returns the RFC 7638 JWK thumbprint of pub, SHA-256, base64url.
func keyID(pub *rsa.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	thumbprint, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(thumbprint), nil
}

// parsePrivateKeyPEM returns the one RSA private key in data.
func parsePrivateKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	var found *pem.Block
	for rest := data; ; {
		block, next := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = next
		switch block.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY":
			if found != nil {
				return nil, errors.New("more than one private key in the PEM data")
			}
			if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
				return nil, errors.New("the private key is encrypted; supply it decrypted")
			}
			found = block
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted; supply it decrypted")
		case "EC PRIVATE KEY", "OPENSSH PRIVATE KEY":
			return nil, fmt.Errorf("a %s is not a PKCS#8 or PKCS#1 RSA private key", block.Type)
		}
	}
	if found == nil {
		return nil, errors.New("no PEM private key found (want a PKCS#8 \"PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\" block)")
	}
	var private *rsa.PrivateKey
	if found.Type == "RSA PRIVATE KEY" {
		key, err := x509.ParsePKCS1PrivateKey(found.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PKCS#1 private key: %w", err)
		}
		private = key
	} else {
		key, err := x509.ParsePKCS8PrivateKey(found.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
		}
		rsaKey, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the private key is a %T; seb signs with RSA (%s)", key, SigningAlgorithm)
		}
		private = rsaKey
	}
	if bits := private.N.BitLen(); bits < rsaKeyBits {
		return nil, fmt.Errorf("the RSA key has %d bits; at least %d are required", bits, rsaKeyBits)
	}
	return private, nil
}

// checkPermissions reports whether file modes mean anything here.
func checkPermissions() bool { return runtime.GOOS != "windows" }

// readKeyIndex returns the index of the key directory, or an error that
// wraps fs.ErrNotExist if it has none.
func readKeyIndex(root *os.Root) (keyIndex, error) {
	var index keyIndex
	f, err := root.Open(keyIndexFile)
	if err != nil {
		return index, err
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, maxKeyFileBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&index); err != nil {
		return index, fmt.Errorf("%s: %w", keyIndexFile, err)
	}
	return index, nil
}

// loadKeys reads and checks the keys the index names.
func loadKeys(root *os.Root, index keyIndex) ([]signingKey, error) {
	var keys []signingKey
	current := 0
	seen := map[string]bool{}
	for _, e := range index.Keys {
		switch {
		case !kidPattern.MatchString(e.ID):
			return nil, fmt.Errorf("%s: %q is not a key id", keyIndexFile, e.ID)
		case seen[e.ID]:
			return nil, fmt.Errorf("%s: key %s is listed twice", keyIndexFile, e.ID)
		case e.Algorithm != SigningAlgorithm:
			return nil, fmt.Errorf("%s: key %s has algorithm %q; this version of seb signs only with %s", keyIndexFile, e.ID, e.Algorithm, SigningAlgorithm)
		case e.CreatedAt.IsZero():
			return nil, fmt.Errorf("%s: key %s has no created_at", keyIndexFile, e.ID)
		}
		seen[e.ID] = true
		if e.RetiredAt.IsZero() {
			current++
		}
		private, err := readKeyFile(root, e.ID+keyFileSuffix)
		if err != nil {
			return nil, err
		}
		id, err := keyID(&private.PublicKey)
		if err != nil {
			return nil, err
		}
		if id != e.ID {
			return nil, fmt.Errorf("%s%s holds the key with thumbprint %s, not %s", e.ID, keyFileSuffix, id, e.ID)
		}
		keys = append(keys, signingKey{id: e.ID, private: private, created: e.CreatedAt, retired: e.RetiredAt})
	}
	if current != 1 {
		return nil, fmt.Errorf("%s names %d current keys (keys without retired_at); want exactly 1", keyIndexFile, current)
	}
	sortKeys(keys)
	return keys, nil
}

// sortKeys puts the current key first, then the retired keys, newest first.
func sortKeys(keys []signingKey) {
	slices.SortStableFunc(keys, func(a, b signingKey) int {
		switch {
		case a.retired.IsZero() != b.retired.IsZero():
			if a.retired.IsZero() {
				return -1
			}
			return 1
		default:
			return b.retired.Compare(a.retired)
		}
	})
}

// readKeyFile returns the private key in the named file of root, refusing a
// file that group or others may read or write.
func readKeyFile(root *os.Root, name string) (*rsa.PrivateKey, error) {
	data, err := readPrivateFile(root, name, "signing key")
	if err != nil {
		return nil, err
	}
	private, err := parsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return private, nil
}

// readPrivateFile returns the content of a key file in root: a regular
// file that neither group nor others may read or write.
func readPrivateFile(root *os.Root, name, what string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if perm := fi.Mode().Perm(); checkPermissions() && perm&0o077 != 0 {
		return nil, fmt.Errorf("%s %s is readable or writable by group or others (mode %04o); refusing to use it: chmod 600 it", what, name, perm)
	}
	return io.ReadAll(io.LimitReader(f, maxKeyFileBytes))
}

// writeKeyFile writes key's private half as PKCS#8 PEM to <kid>.pem.
func writeKeyFile(root *os.Root, key signingKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key.private)
	if err != nil {
		return fmt.Errorf("encode private key: %w", err)
	}
	return writeFileAtomic(root, key.id+keyFileSuffix, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// writeKeyIndex writes the index of keys.
func writeKeyIndex(root *os.Root, keys []signingKey) error {
	index := keyIndex{Keys: make([]keyIndexEntry, len(keys))}
	for i, k := range keys {
		index.Keys[i] = keyIndexEntry{ID: k.id, Algorithm: SigningAlgorithm, CreatedAt: k.created.UTC(), RetiredAt: k.retired.UTC()}
	}
	data, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(root, keyIndexFile, append(data, '\n'))
}

// removeKeyFiles deletes the files of the keys in old that are not in keys.
func removeKeyFiles(root *os.Root, old, keys []signingKey) error {
	for _, k := range old {
		if slices.ContainsFunc(keys, func(n signingKey) bool { return n.id == k.id }) {
			continue
		}
		if err := root.Remove(k.id + keyFileSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove pruned key: %w", err)
		}
	}
	return nil
}

// writeFileAtomic replaces the named file of root with data, mode 0600:
// it writes a temporary file, syncs it, renames it over name and syncs the
// directory, so a reader sees the old file or the new one, never a part.
func writeFileAtomic(root *os.Root, name string, data []byte) (err error) {
	dir, base := path.Split(name)
	tmp := dir + "." + base + "." + rand.Text() + ".tmp"
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			root.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := root.Rename(tmp, name); err != nil {
		return err
	}
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("sync key directory: %w", err)
	}
	return nil
}

package broker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

// clock is a settable time source for the broker's Now options.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openKeySet(t *testing.T, dir string, c *clock) *broker.KeySet {
	t.Helper()
	ks, err := broker.OpenKeySet(dir, broker.KeySetOptions{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// jwk is a published key as a verifier reads it.
type jwk struct {
	Kty, Kid, Use, Alg, N, E string
}

func publishedKeys(t *testing.T, ks *broker.KeySet) []jwk {
	t.Helper()
	data, err := ks.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	return decodeJWKS(t, data)
}

func decodeJWKS(t *testing.T, data []byte) []jwk {
	t.Helper()
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatalf("JWKS: %v: %s", err, data)
	}
	var keys []jwk
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Fatalf("JWKS publishes the private member %q", private)
			}
		}
		s := func(name string) string { v, _ := k[name].(string); return v }
		keys = append(keys, jwk{Kty: s("kty"), Kid: s("kid"), Use: s("use"), Alg: s("alg"), N: s("n"), E: s("e")})
	}
	return keys
}

func kids(keys []jwk) []string {
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.Kid)
	}
	return ids
}

func requireMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	if runtime.GOOS == "windows" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %04o, want %04o", path, got, want)
	}
}

func TestOpenKeySetCreatesPrivateFiles(t *testing.T) {
	c := newClock()
	dir := filepath.Join(t.TempDir(), "data")
	ks := openKeySet(t, dir, c)

	keys := ks.Keys()
	if len(keys) != 1 {
		t.Fatalf("a new key set has %d keys, want 1", len(keys))
	}
	k := keys[0]
	if !k.CreatedAt.Equal(c.Now()) || !k.RetiredAt.IsZero() || k.Algorithm != "RS256" {
		t.Errorf("new key = %+v, want created at %s, not retired, RS256", k, c.Now())
	}
	keyDir := filepath.Join(dir, "signing-keys")
	requireMode(t, keyDir, 0o700)
	requireMode(t, filepath.Join(keyDir, k.ID+".pem"), 0o600)
	requireMode(t, filepath.Join(keyDir, "index.json"), 0o600)

	entries, err := os.ReadDir(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"index.json", k.ID + ".pem"}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("key directory holds %q, want %q", names, want)
	}

	data, err := os.ReadFile(filepath.Join(keyDir, k.ID+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PKCS#8 PEM block: %q", data)
	}
	private, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, ok := private.(*rsa.PrivateKey)
	if !ok || rsaKey.N.BitLen() != 2048 {
		t.Errorf("key file holds %T, want a 2048-bit RSA key", private)
	}
}

func TestOpenKeySetReopens(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	first := openKeySet(t, dir, c).Keys()

	c.Advance(time.Hour)
	again := openKeySet(t, dir, c)
	if got := again.Keys(); len(got) != 1 || got[0].ID != first[0].ID || !got[0].CreatedAt.Equal(first[0].CreatedAt) {
		t.Fatalf("reopened keys = %+v, want %+v", got, first)
	}

	if err := again.Rotate(c.Now()); err != nil {
		t.Fatal(err)
	}
	rotated := again.Keys()
	reopened := openKeySet(t, dir, c).Keys()
	if len(reopened) != 2 {
		t.Fatalf("after rotation, reopened keys = %+v, want 2", reopened)
	}
	for i := range rotated {
		r, o := rotated[i], reopened[i]
		if r.ID != o.ID || !r.CreatedAt.Equal(o.CreatedAt) || !r.RetiredAt.Equal(o.RetiredAt) {
			t.Errorf("key %d: reopened %+v, want %+v", i, o, r)
		}
	}
}

func TestOpenKeySetRefuses(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes")
	}
	tests := []struct {
		name    string
		spoil   func(t *testing.T, keyDir, kid string)
		wantErr string
	}{
		{
			name:    "world-readable key file",
			spoil:   func(t *testing.T, keyDir, kid string) { chmod(t, filepath.Join(keyDir, kid+".pem"), 0o644) },
			wantErr: "readable or writable by group or others (mode 0644)",
		},
		{
			name:    "group-readable key file",
			spoil:   func(t *testing.T, keyDir, kid string) { chmod(t, filepath.Join(keyDir, kid+".pem"), 0o640) },
			wantErr: "chmod 600",
		},
		{
			name:    "group-writable key directory",
			spoil:   func(t *testing.T, keyDir, kid string) { chmod(t, keyDir, 0o770) },
			wantErr: "writable by group or others",
		},
		{
			name: "key file without index",
			spoil: func(t *testing.T, keyDir, kid string) {
				if err := os.Remove(filepath.Join(keyDir, "index.json")); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "refusing to guess which key is current",
		},
		{
			name: "key file that does not match its id",
			spoil: func(t *testing.T, keyDir, kid string) {
				writePEM(t, filepath.Join(keyDir, kid+".pem"), "PRIVATE KEY", pkcs8(t, rsaKey(t, 2048)))
			},
			wantErr: "holds the key with thumbprint",
		},
		{
			name: "no current key",
			spoil: func(t *testing.T, keyDir, kid string) {
				index := `{"keys":[{"kid":"` + kid + `","alg":"RS256","created_at":"2030-01-01T00:00:00Z","retired_at":"2030-01-01T00:00:01Z"}]}`
				if err := os.WriteFile(filepath.Join(keyDir, "index.json"), []byte(index), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "names 0 current keys",
		},
		{
			name: "key id that is a path",
			spoil: func(t *testing.T, keyDir, kid string) {
				index := `{"keys":[{"kid":"../../etc/key","alg":"RS256","created_at":"2030-01-01T00:00:00Z"}]}`
				if err := os.WriteFile(filepath.Join(keyDir, "index.json"), []byte(index), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "is not a key id",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			dir := t.TempDir()
			kid := openKeySet(t, dir, c).Keys()[0].ID
			keyDir := filepath.Join(dir, "signing-keys")
			tt.spoil(t, keyDir, kid)
			_, err := broker.OpenKeySet(dir, broker.KeySetOptions{Now: c.Now})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("OpenKeySet error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestKeySetOptionsValid(t *testing.T) {
	_, err := broker.OpenKeySet(t.TempDir(), broker.KeySetOptions{MaxTokenLifetime: 10 * time.Minute})
	if err == nil || !strings.Contains(err.Error(), "shorter than the longest credential lifetime") {
		t.Errorf("MaxTokenLifetime 10m: error = %v", err)
	}
	if _, err := broker.OpenKeySet("", broker.KeySetOptions{}); err == nil {
		t.Error("OpenKeySet with no directory succeeded")
	}
}

// TestKeyIDIsThumbprint computes the RFC 7638 thumbprint by hand: SHA-256
// of the required members in lexicographic order, no whitespace.
func TestKeyIDIsThumbprint(t *testing.T) {
	c := newClock()
	ks := openKeySet(t, t.TempDir(), c)
	if err := ks.Rotate(c.Now()); err != nil {
		t.Fatal(err)
	}
	published := publishedKeys(t, ks)
	if len(published) != 2 {
		t.Fatalf("published %d keys, want 2", len(published))
	}
	for _, k := range published {
		if k.Kty != "RSA" || k.Use != "sig" || k.Alg != "RS256" || k.E != "AQAB" || k.N == "" {
			t.Errorf("published key %+v, want kty RSA, use sig, alg RS256, e AQAB", k)
		}
		sum := sha256.Sum256([]byte(`{"e":"` + k.E + `","kty":"RSA","n":"` + k.N + `"}`))
		if want := base64.RawURLEncoding.EncodeToString(sum[:]); k.Kid != want {
			t.Errorf("kid %s, want the thumbprint %s", k.Kid, want)
		}
	}
	if got, want := kids(published), []string{ks.Keys()[0].ID, ks.Keys()[1].ID}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("published %v, want %v (current first)", got, want)
	}
}

func TestRotateRetainsThenPrunes(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "signing-keys")
	ks, err := broker.OpenKeySet(dir, broker.KeySetOptions{Now: c.Now, MaxTokenLifetime: 20 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	old := ks.Keys()[0].ID

	c.Advance(24 * time.Hour)
	retiredAt := c.Now()
	if err := ks.Rotate(retiredAt); err != nil {
		t.Fatal(err)
	}
	keys := ks.Keys()
	current := keys[0].ID
	if current == old || keys[1].ID != old || !keys[1].RetiredAt.Equal(retiredAt) || !keys[0].CreatedAt.Equal(retiredAt) {
		t.Fatalf("after Rotate keys = %+v, want a new current key and %s retired at %s", keys, old, retiredAt)
	}
	requireMode(t, filepath.Join(keyDir, current+".pem"), 0o600)
	requireMode(t, filepath.Join(keyDir, "index.json"), 0o600)

	for _, tt := range []struct {
		name string
		at   time.Time
		want []string
	}{
		{"just rotated", retiredAt, []string{current, old}},
		{"within the retention", retiredAt.Add(10 * time.Minute), []string{current, old}},
		{"at the end of the retention", retiredAt.Add(20 * time.Minute), []string{current, old}},
		{"past the retention", retiredAt.Add(20*time.Minute + time.Second), []string{current}},
	} {
		c.Set(tt.at)
		if got := kids(publishedKeys(t, ks)); strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s: published %v, want %v", tt.name, got, tt.want)
		}
	}

	// Past the retention the key is no longer published but still on disk
	// until pruned.
	if _, err := os.Stat(filepath.Join(keyDir, old+".pem")); err != nil {
		t.Fatalf("retired key file before Prune: %v", err)
	}
	if err := ks.Prune(c.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(keyDir, old+".pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pruned key file: %v, want it gone", err)
	}
	if got := ks.Keys(); len(got) != 1 || got[0].ID != current {
		t.Errorf("after Prune keys = %+v, want only %s", got, current)
	}
	reopened, err := broker.OpenKeySet(dir, broker.KeySetOptions{Now: c.Now, MaxTokenLifetime: 20 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got := reopened.Keys(); len(got) != 1 || got[0].ID != current {
		t.Errorf("reopened after Prune keys = %+v, want only %s", got, current)
	}
}

func TestRotatePrunesExpiredRetiredKeys(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	ks := openKeySet(t, dir, c)
	first := ks.Keys()[0].ID
	if err := ks.Rotate(c.Now()); err != nil {
		t.Fatal(err)
	}
	second := ks.Keys()[0].ID

	// Within the first key's retention: both retired keys are kept.
	c.Advance(broker.MaxCredentialLifetime)
	if err := ks.Rotate(c.Now()); err != nil {
		t.Fatal(err)
	}
	if got := ks.Keys(); len(got) != 3 || got[1].ID != second || got[2].ID != first {
		t.Fatalf("keys = %+v, want the new key, %s, %s", got, second, first)
	}

	// Past it: the first key goes, from memory and from disk.
	c.Advance(time.Second)
	if err := ks.Rotate(c.Now()); err != nil {
		t.Fatal(err)
	}
	if got := ks.Keys(); len(got) != 3 || got[2].ID != second {
		t.Fatalf("keys = %+v, want %s pruned", got, first)
	}
	if _, err := os.Stat(filepath.Join(dir, "signing-keys", first+".pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pruned key file: %v, want it gone", err)
	}

	// Opening prunes as well.
	c.Advance(time.Hour)
	if got := openKeySet(t, dir, c).Keys(); len(got) != 1 {
		t.Errorf("reopened an hour later: keys = %+v, want only the current one", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "signing-keys"))
	if len(entries) != 2 {
		t.Errorf("key directory holds %d files, want the index and one key", len(entries))
	}
}

func TestKeySetFromPEM(t *testing.T) {
	key := rsaKey(t, 2048)
	sum := sha256.Sum256([]byte(`{"e":"AQAB","kty":"RSA","n":"` + base64.RawURLEncoding.EncodeToString(key.N.Bytes()) + `"}`))
	wantKid := base64.RawURLEncoding.EncodeToString(sum[:])

	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"PKCS#8", pemBytes("PRIVATE KEY", pkcs8(t, key))},
		{"PKCS#1", pemBytes("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))},
		{"with surrounding text", append(append([]byte("a comment\n"), pemBytes("PRIVATE KEY", pkcs8(t, key))...), "trailer\n"...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := broker.KeySetFromPEM(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if got := ks.Keys(); len(got) != 1 || got[0].ID != wantKid || !got[0].CreatedAt.IsZero() {
				t.Errorf("keys = %+v, want one with kid %s", got, wantKid)
			}
			if got := kids(publishedKeys(t, ks)); len(got) != 1 || got[0] != wantKid {
				t.Errorf("published %v, want [%s]", got, wantKid)
			}
			if err := ks.Rotate(time.Now()); err == nil || !strings.Contains(err.Error(), "not managed by seb") {
				t.Errorf("Rotate error = %v, want not managed", err)
			}
		})
	}

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	good := pemBytes("PRIVATE KEY", pkcs8(t, key))
	for _, tt := range []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty", nil, "no PEM private key found"},
		{"garbage", []byte("this is not a key"), "no PEM private key found"},
		{"public key only", pemBytes("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&key.PublicKey))), "no PEM private key found"},
		{"corrupt DER", pemBytes("PRIVATE KEY", []byte("garbage")), "parse PKCS#8 private key"},
		{"EC key, PKCS#8", pemBytes("PRIVATE KEY", pkcs8(t, ecKey)), "seb signs with RSA"},
		{"EC key, SEC 1", pemBytes("EC PRIVATE KEY", ecDER), "not a PKCS#8 or PKCS#1 RSA private key"},
		{"encrypted", pemBytes("ENCRYPTED PRIVATE KEY", []byte("x")), "encrypted"},
		{"two keys", append(slices.Clone(good), good...), "more than one private key"},
		{"1024-bit key", pemBytes("PRIVATE KEY", pkcs8(t, rsaKey(t, 1024))), "has 1024 bits; at least 2048"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := broker.KeySetFromPEM(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error repeats the key material: %v", err)
			}
		})
	}
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pemBytes(typ, der), 0o600); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

package fetch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// pgpEpoch is the creation time of the deterministic test keys.
var pgpEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// pgpSeededKey makes an Ed25519 key that is the same in every run for the
// same seed, so fuzz corpus files can hold signatures it made.
func pgpSeededKey(t testing.TB, seed byte) *openpgp.Entity {
	t.Helper()
	var s [32]byte
	s[0] = seed
	cfg := &packet.Config{
		Rand:      mrand.NewChaCha8(s),
		Time:      func() time.Time { return pgpEpoch },
		Algorithm: packet.PubKeyAlgoEdDSA,
	}
	e, err := openpgp.NewEntity(fmt.Sprintf("test key %d", seed), "", fmt.Sprintf("k%d@example.org", seed), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// pgpNewKey makes a fresh Ed25519 key; cfg (may be nil) sets its creation
// time, lifetime or algorithm.
func pgpNewKey(t testing.TB, name string, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	if cfg == nil {
		cfg = &packet.Config{}
	}
	if cfg.Algorithm == 0 {
		cfg.Algorithm = packet.PubKeyAlgoEdDSA
	}
	e, err := openpgp.NewEntity(name, "", strings.ReplaceAll(name, " ", "")+"@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// pgpPublicBinary is the public part of the keys, as gpg --export writes it.
func pgpPublicBinary(t testing.TB, es ...*openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, e := range es {
		if err := e.Serialize(&b); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// pgpPublicArmored is the public part of the keys, as gpg --export --armor
// writes it.
func pgpPublicArmored(t testing.TB, es ...*openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(pgpPublicBinary(t, es...))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pgpKeyring is the public keyring a verifier would hold for the keys: the
// keys exported and read back, with no private parts.
func pgpKeyring(t testing.TB, es ...*openpgp.Entity) openpgp.EntityList {
	t.Helper()
	kr, err := openpgp.ReadKeyRing(bytes.NewReader(pgpPublicBinary(t, es...)))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func pgpFingerprint(e *openpgp.Entity) string { return entityFingerprint(e) }

func TestBuiltinKeyring(t *testing.T) {
	kr, err := BuiltinKeyring()
	if err != nil {
		t.Fatal(err)
	}
	if len(kr) != 1 || pgpFingerprint(kr[0]) != BuiltinFingerprint {
		t.Fatalf("built-in keyring: %d keys, first %s", len(kr), pgpFingerprint(kr[0]))
	}
	if kr[0].PrivateKey != nil {
		t.Fatal("built-in key has a private part")
	}
	if _, ok := kr[0].Identities["LXC pre-built images <lxc-devel@lists.linuxcontainers.org>"]; !ok {
		t.Errorf("identities: %v", kr[0].Identities)
	}
	// The long id the shell template documented selects it.
	if _, err := SelectKey(kr, "0xBAEFF88C22F6E216"); err != nil {
		t.Error(err)
	}
	// Callers get their own slice.
	kr[0] = nil
	again, err := BuiltinKeyring()
	if err != nil || again[0] == nil {
		t.Fatalf("a caller's change reached the cached keyring: %v", err)
	}
}

func TestBuiltinPinMismatch(t *testing.T) {
	other := pgpNewKey(t, "impostor", nil)
	otherArmored := pgpPublicArmored(t, other)
	for _, tc := range []struct {
		name, fpr, want string
		data            []byte
	}{
		{"key file replaced", BuiltinFingerprint, "holds key " + pgpFingerprint(other) + ", but the pinned fingerprint is " + BuiltinFingerprint, otherArmored},
		{"pin changed", pgpFingerprint(other), "holds key " + BuiltinFingerprint + ", but the pinned fingerprint is " + pgpFingerprint(other), builtinKeyArmored},
		{"two keys", BuiltinFingerprint, "holds 2 keys, want exactly 1", pgpPublicArmored(t, other, pgpNewKey(t, "second", nil))},
		{"not a key", BuiltinFingerprint, "built-in key:", []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kr, err := pinnedKeyring(tc.data, tc.fpr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, %v; want error containing %q", kr, err, tc.want)
			}
		})
	}
	if _, err := pinnedKeyring(otherArmored, pgpFingerprint(other)); err != nil {
		t.Fatalf("matching pin refused: %v", err)
	}
}

func TestReadKeyring(t *testing.T) {
	a, b := pgpNewKey(t, "alpha", nil), pgpNewKey(t, "beta", nil)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var secret bytes.Buffer
	if err := a.SerializePrivate(&secret, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want []string
	}{
		{"armored.asc", pgpPublicArmored(t, a, b), []string{pgpFingerprint(a), pgpFingerprint(b)}},
		{"binary.gpg", pgpPublicBinary(t, a, b), []string{pgpFingerprint(a), pgpFingerprint(b)}},
		{"concatenated.asc", append(pgpPublicArmored(t, a), pgpPublicArmored(t, b)...), []string{pgpFingerprint(a), pgpFingerprint(b)}},
		{"armored-with-text.asc", append([]byte("Key of the alpha team:\n\n"), pgpPublicArmored(t, a)...), []string{pgpFingerprint(a)}},
		{"secret.gpg", secret.Bytes(), []string{pgpFingerprint(a)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kr, err := ReadKeyring(write(tc.name, tc.data))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range kr {
				got = append(got, pgpFingerprint(e))
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}

	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, a, strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	keybox := append([]byte{0, 0, 0, 32, 1, 1, 0, 0}, []byte("KBXf")...)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no OpenPGP public key found"},
		{"garbage", []byte("this is not a keyring\n"), "not an OpenPGP keyring"},
		{"signature.asc", sig.Bytes(), `armored block is a "PGP SIGNATURE", not a public key block`},
		{"bad-base64.asc", []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n"), "not an OpenPGP keyring: illegal base64"},
		{"bad-armor.asc", []byte("-----BEGIN PGP PUBLIC KEY BLOCK\n"), "bad armor"},
		{"key then signature.asc", append(pgpPublicArmored(t, a), sig.Bytes()...), `armored block is a "PGP SIGNATURE"`},
		{"key then empty block.asc", append(pgpPublicArmored(t, a), "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"...), "no OpenPGP public key found"},
		{"pubring.kbx", append(keybox, make([]byte, 64)...), "GnuPG keybox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(tc.name, tc.data)
			_, err := ReadKeyring(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("got %v; want an error naming %s and saying %q", err, p, tc.want)
			}
		})
	}

	missing := filepath.Join(dir, "missing.gpg")
	if _, err := ReadKeyring(missing); err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	big := write("big.gpg", make([]byte, maxKeyringSize+1))
	if _, err := ReadKeyring(big); err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Fatalf("oversized file: %v", err)
	}
}

// pgpWithFingerprint returns a copy of e whose primary key claims the
// fingerprint fp, to build key id collisions (which real attackers make
// for short ids, but a test cannot afford to).
func pgpWithFingerprint(e *openpgp.Entity, fp []byte) *openpgp.Entity {
	pk := *e.PrimaryKey
	pk.Fingerprint = fp
	pk.KeyId = binary.BigEndian.Uint64(fp[12:20])
	c := *e
	c.PrimaryKey = &pk
	return &c
}

func TestSelectKey(t *testing.T) {
	a, b := pgpNewKey(t, "alpha", nil), pgpNewKey(t, "beta", nil)
	if err := b.AddSigningSubkey(nil); err != nil {
		t.Fatal(err)
	}
	kr := pgpKeyring(t, a, b)
	fa := pgpFingerprint(kr[0])
	sub := kr[1].Subkeys[len(kr[1].Subkeys)-1].PublicKey

	// collide shares alpha's long id (and so its short id); short shares
	// only alpha's short id.
	fp := bytes.Clone(kr[0].PrimaryKey.Fingerprint)
	fp[0] ^= 0xff
	collide := pgpWithFingerprint(kr[1], fp)
	fp = bytes.Clone(kr[0].PrimaryKey.Fingerprint)
	fp[12] ^= 0xff
	short := pgpWithFingerprint(kr[1], fp)

	spaced := ""
	for i := 0; i < len(fa); i += 4 {
		spaced += strings.ToLower(fa[i:i+4]) + " "
	}
	for _, tc := range []struct {
		name, id string
		kr       openpgp.EntityList
		want     string // fingerprint selected, or the error text
		noKey    bool
	}{
		{"fingerprint", fa, kr, fa, false},
		{"fingerprint spaced lower 0x", "0x" + spaced, kr, fa, false},
		{"long id", "0x" + fa[24:], kr, fa, false},
		{"short id", strings.ToLower(fa[32:]), kr, fa, false},
		{"subkey id", sub.KeyIdString(), kr, pgpFingerprint(kr[1]), false},
		{"subkey fingerprint", fmt.Sprintf("%X", sub.Fingerprint), kr, pgpFingerprint(kr[1]), false},
		{"same key twice", fa[24:], append(kr, kr[0]), fa, false},
		{"ambiguous long id", fa[24:], append(kr, collide), "key id " + fa[24:] + " is ambiguous: it matches 2 keys (" + fa + ", " + pgpFingerprint(collide) + "); give the full fingerprint", false},
		{"ambiguous short id", fa[32:], append(kr, short), "key id " + fa[32:] + " is ambiguous", false},
		{"long id beside a short-id twin", fa[24:], append(kr, short), fa, false},
		{"full fingerprint beside a twin", fa, append(kr, collide), fa, false},
		{"none", "0123456789ABCDEF", kr, "key not in the keyring: 0123456789ABCDEF", true},
		{"empty keyring", fa, nil, "key not in the keyring: " + fa, true},
		{"not hex", "0xBAEFF88C22F6E21G", kr, `invalid key id "0xBAEFF88C22F6E21G"`, false},
		{"wrong length", "BAEFF88C22", kr, "want a 40-hex-digit fingerprint, or a 16- or 8-hex-digit key id", false},
		{"empty", "", kr, `invalid key id ""`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := SelectKey(tc.kr, tc.id)
			if errors.Is(err, ErrNoKey) != tc.noKey {
				t.Errorf("errors.Is(%v, ErrNoKey) = %v", err, !tc.noKey)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %q, want %q", err, tc.want)
				}
				return
			}
			if len(sel) == 0 || len(tc.want) != 40 {
				t.Fatalf("selected %d keys, want error %q", len(sel), tc.want)
			}
			for _, e := range sel {
				if pgpFingerprint(e) != tc.want {
					t.Fatalf("selected %s, want %s", pgpFingerprint(e), tc.want)
				}
			}
		})
	}
}

func TestKeyserverURL(t *testing.T) {
	for in, want := range map[string]string{
		"hkp://keys.example.org":          "http://keys.example.org:11371",
		"hkp://keys.example.org:80":       "http://keys.example.org:80",
		"HKP://[2001:db8::1]":             "http://[2001:db8::1]:11371",
		"hkps://keys.example.org":         "https://keys.example.org",
		"hkps://keys.example.org:8443":    "https://keys.example.org:8443",
		"https://example.org/keyserver/":  "https://example.org/keyserver/",
		"http://example.org":              "http://example.org",
		"keyserver.ubuntu.com":            "http://keyserver.ubuntu.com:11371",
		"pool.example.org:11371":          "http://pool.example.org:11371",
		"ldap://keys.example.org":         `invalid keyserver "ldap://keys.example.org": scheme ldap is not hkp, hkps, https or http`,
		"hkps://":                         `invalid keyserver "hkps://": no host`,
		"https://example.org/?op=x":       "without query or user",
		"https://user@example.org":        "without query or user",
		"hkp://keys.example.org:notaport": `invalid keyserver "hkp://keys.example.org:notaport"`,
	} {
		u, err := keyserverURL(in)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = u.String()
		}
		if !strings.HasPrefix(got, want) && !strings.Contains(got, want) {
			t.Errorf("keyserverURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// hkpServer answers HKP lookups for the keys it holds, after failing the
// first fail requests with a 503. It counts requests.
type hkpServer struct {
	keys     map[string][]byte // 0xFINGERPRINT -> answer body
	fail     int32
	requests atomic.Int32
	t        *testing.T
}

func (s *hkpServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.requests.Add(1)
	q := r.URL.Query()
	if r.URL.Path != "/pks/lookup" || q.Get("op") != "get" || q.Get("options") != "mr" {
		s.t.Errorf("unexpected request %s", r.URL)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if n <= s.fail {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	body, ok := s.keys[q.Get("search")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/pgp-keys")
	w.Write(body)
}

// fastKeys is FetchKey with retries that take milliseconds.
var fastKeys = keyFetch{retryWait: time.Millisecond}

func TestFetchKey(t *testing.T) {
	want, other := pgpNewKey(t, "wanted", nil), pgpNewKey(t, "other", nil)
	fw := pgpFingerprint(want)
	ctx := context.Background()

	for _, tc := range []struct {
		name     string
		body     []byte
		fail     int32
		keyid    string
		err      string // "" for success
		requests int32
	}{
		{"ok", pgpPublicArmored(t, want), 0, fw, "", 1},
		{"ok binary, id spaced lower case", pgpPublicBinary(t, want), 0, "0x" + strings.ToLower(fw[:20]) + " " + strings.ToLower(fw[20:]), "", 1},
		{"5xx then success", pgpPublicArmored(t, want), 2, fw, "", 3},
		{"5xx throughout", pgpPublicArmored(t, want), 9, fw, "answered 503 Service Unavailable (3 attempts)", 3},
		{"different key", pgpPublicArmored(t, other), 0, fw, "answered with key " + pgpFingerprint(other) + ", not the requested " + fw + ": refused", 1},
		{"several keys", pgpPublicArmored(t, want, other), 0, fw, "answered with 2 keys for " + fw, 1},
		{"garbage", []byte("<html>rate limited</html>"), 0, fw, "answered with something that is not a key", 1},
		{"html around armor", append(append([]byte("<pre>\n"), pgpPublicArmored(t, want)...), "</pre>"...), 0, fw, "", 1},
		{"not found", nil, 0, fw, "key not found (404 Not Found)", 1},
		{"long id", pgpPublicArmored(t, want), 0, fw[24:], "key id " + fw[24:] + " is not a full fingerprint", 0},
		{"short id", pgpPublicArmored(t, want), 0, fw[32:], "only accepted by its full 40-hex-digit fingerprint", 0},
		{"bad id", pgpPublicArmored(t, want), 0, "nonsense", `invalid key id "nonsense"`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := &hkpServer{keys: map[string][]byte{}, fail: tc.fail, t: t}
			if tc.body != nil {
				hs.keys["0x"+fw] = tc.body
			}
			srv := httptest.NewTLSServer(hs)
			defer srv.Close()
			kr, err := fastKeys.fetch(ctx, srv.URL, tc.keyid, srv.Client())
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(kr) != 1 || pgpFingerprint(kr[0]) != fw {
					t.Fatalf("got %d keys", len(kr))
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v; want error containing %q", err, tc.err)
			}
			if got := hs.requests.Load(); got != tc.requests {
				t.Errorf("%d requests, want %d", got, tc.requests)
			}
		})
	}
}

func TestFetchKeyHKP(t *testing.T) {
	// hkp:// is plain HTTP; a nil client gets the default one.
	want := pgpNewKey(t, "wanted", nil)
	hs := &hkpServer{keys: map[string][]byte{"0x" + pgpFingerprint(want): pgpPublicArmored(t, want)}, t: t}
	srv := httptest.NewServer(hs)
	defer srv.Close()
	kr, err := FetchKey(context.Background(), "hkp://"+srv.Listener.Addr().String(), pgpFingerprint(want), nil)
	if err != nil || len(kr) != 1 || pgpFingerprint(kr[0]) != pgpFingerprint(want) {
		t.Fatalf("got %d keys, %v", len(kr), err)
	}
	// And the fetched key verifies what it signed.
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, want, strings.NewReader("index"), nil); err != nil {
		t.Fatal(err)
	}
	if err := VerifyDetached(kr, "index-system", []byte("index"), sig.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func TestFetchKeyDown(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	keyserver, client := srv.URL, srv.Client()
	srv.Close()
	_, err := fastKeys.fetch(context.Background(), keyserver, BuiltinFingerprint, client)
	if err == nil || !strings.HasPrefix(err.Error(), keyserver+": ") || !strings.HasSuffix(err.Error(), "(3 attempts)") {
		t.Fatalf("got %v", err)
	}
	t.Logf("Unable to fetch GPG key from keyserver: %v", err)
}

func TestFetchKeyCancelled(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel) // during the first 1 s backoff
	_, err := FetchKey(ctx, srv.URL, BuiltinFingerprint, srv.Client())
	if !errors.Is(err, context.Canceled) || requests.Load() != 1 {
		t.Fatalf("got %v after %d requests", err, requests.Load())
	}
}

func TestFetchKeyLimits(t *testing.T) {
	want := pgpNewKey(t, "wanted", nil)
	var secret bytes.Buffer
	if err := want.SerializePrivate(&secret, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		err  string
	}{
		{"huge answer", func(w http.ResponseWriter, r *http.Request) {
			io.CopyN(w, keyserverZeros{}, maxKeyringSize+1)
		}, "answer larger than 16 MiB"},
		{"secret key", func(w http.ResponseWriter, r *http.Request) {
			w.Write(secret.Bytes())
		}, "answered with a secret key for " + pgpFingerprint(want) + ": refused"},
		{"teapot", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTeapot)
		}, "answered 418 I'm a teapot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(tc.h)
			defer srv.Close()
			_, err := fastKeys.fetch(context.Background(), srv.URL, pgpFingerprint(want), srv.Client())
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
		})
	}
	if _, err := fastKeys.fetch(context.Background(), "gopher://x", pgpFingerprint(want), nil); err == nil || !strings.Contains(err.Error(), "scheme gopher") {
		t.Fatalf("bad keyserver: %v", err)
	}
}

type keyserverZeros struct{}

func (keyserverZeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestFetchKeyStatusText: a keyserver's reason phrase is its own text;
// the error gives Go's for the status instead.
func TestFetchKeyStatusText(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			http.ReadRequest(bufio.NewReader(c))
			io.WriteString(c, "HTTP/1.1 418 \x1b[2J\rERROR: forged\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			c.Close()
		}
	}()
	_, err = fastKeys.fetch(context.Background(), "hkp://"+ln.Addr().String(), BuiltinFingerprint, nil)
	if err == nil || !strings.Contains(err.Error(), "answered 418 I'm a teapot") || strings.ContainsAny(err.Error(), "\x1b\r") {
		t.Fatalf("got %q", err)
	}
}

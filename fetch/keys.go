package fetch

import (
	"bytes"
	"context"
	_ "embed" // the built-in key
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// BuiltinFingerprint is the fingerprint of the key that signs the images of
// images.linuxcontainers.org. It is pinned here, apart from the key file in
// keys/, so that replacing that file is a visible decision in the code: a
// key whose fingerprint differs is refused when it is loaded.
const BuiltinFingerprint = "E7FB0CAEC8173D669066514CBAEFF88C22F6E216"

//go:embed keys/images.linuxcontainers.org.asc
var builtinKeyArmored []byte

// builtinKeyring parses the embedded key on first use only: a run that does
// not validate (or never reaches the network) pays nothing for it.
var builtinKeyring = sync.OnceValues(func() (openpgp.EntityList, error) {
	return pinnedKeyring(builtinKeyArmored, BuiltinFingerprint)
})

// BuiltinKeyring returns the built-in keyring: the signing key of
// images.linuxcontainers.org, checked against BuiltinFingerprint.
func BuiltinKeyring() (openpgp.EntityList, error) {
	kr, err := builtinKeyring()
	if err != nil {
		return nil, err
	}
	// A fresh slice, so a caller that appends to it leaves the cached one
	// alone.
	return append(openpgp.EntityList(nil), kr...), nil
}

// pinnedKeyring parses an armored key that must be exactly one public key
// with fingerprint fpr.
func pinnedKeyring(armored []byte, fpr string) (openpgp.EntityList, error) {
	kr, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil {
		return nil, fmt.Errorf("built-in key: %w", err)
	}
	if len(kr) != 1 {
		return nil, fmt.Errorf("built-in key: the key file holds %d keys, want exactly 1", len(kr))
	}
	if got := entityFingerprint(kr[0]); got != fpr {
		return nil, fmt.Errorf("built-in key: the key file holds key %s, but the pinned fingerprint is %s", got, fpr)
	}
	return kr, nil
}

// entityFingerprint is the primary key's fingerprint of e in upper-case hex.
func entityFingerprint(e *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
}

// maxKeyringSize bounds what is read as a keyring, from a file or a
// keyserver: a real keyring of a few keys is kilobytes, while keyservers
// have served keys flooded with megabytes of third-party signatures.
const maxKeyringSize = 16 << 20

// ReadKeyring reads the OpenPGP public keys in the file at path, armored
// (gpg --export --armor) or binary (gpg --export, or an old-style
// pubring.gpg / trustedkeys.gpg).
func ReadKeyring(path string) (openpgp.EntityList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyringSize+1))
	if err != nil {
		return nil, fmt.Errorf("read keyring %s: %w", path, err)
	}
	if len(data) > maxKeyringSize {
		return nil, fmt.Errorf("read keyring %s: larger than %d MiB", path, maxKeyringSize>>20)
	}
	kr, err := parseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("read keyring %s: %w", path, err)
	}
	return kr, nil
}

// armorBegin starts every armored OpenPGP block.
const armorBegin = "-----BEGIN PGP "

// parseKeyring reads armored or binary OpenPGP keys and insists on at least
// one: go-crypto skips keys it cannot read and returns an empty list for
// input that holds none. Armored input may hold several blocks, as when
// exported keys are concatenated with cat.
func parseKeyring(data []byte) (openpgp.EntityList, error) {
	if !bytes.Contains(data, []byte(armorBegin)) {
		if len(data) >= 12 && string(data[8:12]) == "KBXf" {
			// GnuPG 2.1+ keeps its keys in a keybox, which is not OpenPGP.
			return nil, errors.New("this is a GnuPG keybox (pubring.kbx), not an OpenPGP keyring; export the keys with gpg --export")
		}
		return readKeys(bytes.NewReader(data))
	}
	var kr openpgp.EntityList
	for rest := data; ; {
		i := bytes.Index(rest, []byte(armorBegin))
		if i < 0 {
			break
		}
		block := rest[i:]
		rest = nil
		if j := bytes.Index(block[len(armorBegin):], []byte(armorBegin)); j >= 0 {
			block, rest = block[:len(armorBegin)+j], block[len(armorBegin)+j:]
		}
		b, err := armor.Decode(bytes.NewReader(block))
		if err != nil {
			return nil, fmt.Errorf("bad armor: %w", err)
		}
		if b.Type != openpgp.PublicKeyType && b.Type != openpgp.PrivateKeyType {
			return nil, fmt.Errorf("armored block is a %q, not a public key block", b.Type)
		}
		keys, err := readKeys(b.Body)
		if err != nil {
			return nil, err
		}
		kr = append(kr, keys...)
	}
	return kr, nil
}

func readKeys(r io.Reader) (openpgp.EntityList, error) {
	kr, err := openpgp.ReadKeyRing(r)
	if err != nil {
		return nil, fmt.Errorf("not an OpenPGP keyring: %w", err)
	}
	if len(kr) == 0 {
		return nil, errors.New("no OpenPGP public key found")
	}
	return kr, nil
}

// ErrNoKey is wrapped by SelectKey's error when no key in the keyring
// matches the key id.
var ErrNoKey = errors.New("key not in the keyring")

// keyID is a --keyid value in canonical form: upper-case hex, no spaces or
// 0x. Its length says what it is: 8 (short id), 16 (long id), 40 (v4
// fingerprint) or 64 (v6 fingerprint).
type keyID string

func parseKeyID(s string) (keyID, error) {
	id := strings.Join(strings.Fields(s), "")
	if len(id) > 2 && (id[:2] == "0x" || id[:2] == "0X") {
		id = id[2:]
	}
	id = strings.ToUpper(id)
	if _, err := hex.DecodeString(id); err != nil || (len(id) != 8 && len(id) != 16 && len(id) != 40 && len(id) != 64) {
		return "", fmt.Errorf("invalid key id %q: want a 40-hex-digit fingerprint, or a 16- or 8-hex-digit key id", s)
	}
	return keyID(id), nil
}

func (id keyID) isFingerprint() bool { return len(id) == 40 || len(id) == 64 }

// matches reports whether the primary key or a subkey of e has this id.
func (id keyID) matches(e *openpgp.Entity) bool {
	if id.matchesKey(e.PrimaryKey.Fingerprint, e.PrimaryKey.KeyIdString(), e.PrimaryKey.Version) {
		return true
	}
	for _, sk := range e.Subkeys {
		if id.matchesKey(sk.PublicKey.Fingerprint, sk.PublicKey.KeyIdString(), sk.PublicKey.Version) {
			return true
		}
	}
	return false
}

func (id keyID) matchesKey(fpr []byte, long string, version int) bool {
	switch len(id) {
	case 8:
		// Short ids exist only for v4 keys: the low 32 bits of the key id.
		return version == 4 && long[8:] == string(id)
	case 16:
		return long == string(id)
	default:
		return strings.ToUpper(hex.EncodeToString(fpr)) == string(id)
	}
}

// SelectKey returns the keys of kr that keyid names: a full fingerprint
// (spaces, a 0x prefix and lower case are tolerated), a 16-hex-digit long
// key id or an 8-hex-digit short key id, of a primary key or of a subkey
// (the whole key is selected then). A long or short id that matches more
// than one key is refused as ambiguous, since ids that short can be forged;
// no match gives an error wrapping ErrNoKey.
func SelectKey(kr openpgp.EntityList, keyid string) (openpgp.EntityList, error) {
	id, err := parseKeyID(keyid)
	if err != nil {
		return nil, err
	}
	var sel openpgp.EntityList
	distinct := map[string]bool{}
	var fprs []string
	for _, e := range kr {
		if !id.matches(e) {
			continue
		}
		sel = append(sel, e)
		// A keyring may hold the same key twice (two exports concatenated):
		// that is one key, not an ambiguity.
		if f := entityFingerprint(e); !distinct[f] {
			distinct[f] = true
			fprs = append(fprs, f)
		}
	}
	switch {
	case len(sel) == 0:
		return nil, fmt.Errorf("%w: %s", ErrNoKey, id)
	case len(fprs) > 1:
		return nil, fmt.Errorf("key id %s is ambiguous: it matches %d keys (%s); give the full fingerprint", id, len(fprs), strings.Join(fprs, ", "))
	}
	return sel, nil
}

// Keyserver fetches are tried this many times, waiting keyFetch's
// retryWait, then twice that, between attempts.
const fetchKeyAttempts = 3

// keyFetch is how FetchKey asks a keyserver (tests wait less).
type keyFetch struct {
	retryWait time.Duration
}

// FetchKey fetches the key with fingerprint keyid from an HKP keyserver
// (GET /pks/lookup?op=get&options=mr&search=0x<FINGERPRINT>) and returns it
// only if the keyserver answered with exactly that one key.
//
// keyserver is hkp://host[:port] (plain HTTP, port 11371 by default),
// hkps://host[:port] (HTTPS, port 443), an https:// or http:// base URL, or
// a bare host name (taken as hkp://, as gpg does). Plain HTTP is allowed
// because the transport adds nothing to the trust: the key is accepted only
// by its full fingerprint, so a keyserver, or anyone between it and us, can
// at worst withhold the key. For the same reason keyid must be a full
// fingerprint: a short or long id names a key that anyone can make.
//
// Connection errors, 429 and 5xx answers are retried, 3 attempts in all.
// hc nil means a client with proxies from the environment and timeouts.
// The errors are written to read well after "Unable to fetch GPG key from
// keyserver: ".
func FetchKey(ctx context.Context, keyserver, keyid string, hc *http.Client) (openpgp.EntityList, error) {
	return keyFetch{retryWait: time.Second}.fetch(ctx, keyserver, keyid, hc)
}

// fetch is FetchKey.
func (kf keyFetch) fetch(ctx context.Context, keyserver, keyid string, hc *http.Client) (openpgp.EntityList, error) {
	id, err := parseKeyID(keyid)
	if err != nil {
		return nil, err
	}
	if !id.isFingerprint() {
		return nil, fmt.Errorf("key id %s is not a full fingerprint: a key from a keyserver is only accepted by its full 40-hex-digit fingerprint", id)
	}
	base, err := keyserverURL(keyserver)
	if err != nil {
		return nil, err
	}
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/pks/lookup"
	u.RawQuery = url.Values{"op": {"get"}, "options": {"mr"}, "search": {"0x" + string(id)}}.Encode()
	if hc == nil {
		hc = defaultKeyserverClient()
	}

	var data []byte
	backoff := kf.retryWait
	for attempt := 1; ; attempt++ {
		var retry bool
		data, retry, err = keyserverGet(ctx, hc, u.String())
		if err == nil {
			break
		}
		if !retry || attempt == fetchKeyAttempts {
			if retry {
				err = fmt.Errorf("%w (%d attempts)", err, attempt)
			}
			return nil, fmt.Errorf("%s: %w", keyserver, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", keyserver, ctx.Err())
		case <-time.After(backoff):
		}
		backoff *= 2
	}

	kr, err := parseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("%s answered with something that is not a key: %w", keyserver, err)
	}
	if len(kr) != 1 {
		return nil, fmt.Errorf("%s answered with %d keys for %s, want exactly that one key", keyserver, len(kr), id)
	}
	if got := entityFingerprint(kr[0]); got != string(id) {
		return nil, fmt.Errorf("%s answered with key %s, not the requested %s: refused", keyserver, got, id)
	}
	if kr[0].PrivateKey != nil {
		// Never expected from a keyserver; keep only public material.
		return nil, fmt.Errorf("%s answered with a secret key for %s: refused", keyserver, id)
	}
	return kr, nil
}

// keyserverURL turns a --keyserver value into the base URL to ask.
func keyserverURL(s string) (*url.URL, error) {
	raw := s
	if !strings.Contains(s, "://") {
		raw = "hkp://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid keyserver %q: %w", s, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("invalid keyserver %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("invalid keyserver %q: want hkp://HOST[:PORT], hkps://HOST[:PORT] or an https:// URL without query or user", s)
	}
	switch u.Scheme {
	case "hkp":
		u.Scheme = "http"
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "11371")
		}
	case "hkps":
		u.Scheme = "https"
	case "http", "https":
	default:
		return nil, fmt.Errorf("invalid keyserver %q: scheme %s is not hkp, hkps, https or http", s, u.Scheme)
	}
	return u, nil
}

// keyserverGet makes one keyserver request. retry says whether a failure may be
// temporary: a connection error, 429 or a 5xx answer.
func keyserverGet(ctx context.Context, hc *http.Client, u string) (data []byte, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Accept", "application/pgp-keys, */*;q=0.1")
	resp, err := hc.Do(req)
	if err != nil {
		// The keyserver is named by the caller; net/http's "Get URL:"
		// would only repeat it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, ctx.Err() == nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound:
		return nil, false, errors.New("key not found (404 Not Found)")
	default:
		retry = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		// The status text is Go's: the server's reason phrase is its
		// own text, which could hold anything.
		return nil, retry, fmt.Errorf("answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, maxKeyringSize+1))
	if err != nil {
		return nil, ctx.Err() == nil, fmt.Errorf("read answer: %w", err)
	}
	if len(data) > maxKeyringSize {
		return nil, false, fmt.Errorf("answer larger than %d MiB", maxKeyringSize>>20)
	}
	return data, false, nil
}

// defaultKeyserverClient is used when FetchKey's caller gives no client:
// proxies from the environment, and timeouts so a dead keyserver fails in
// seconds, not minutes.
func defaultKeyserverClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyFromEnvironment
	t.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 15 * time.Second
	t.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: t, Timeout: 60 * time.Second}
}

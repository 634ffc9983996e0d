package fetch

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ErrInvalidSignature is matched (errors.Is) by every *SignatureError.
var ErrInvalidSignature = errors.New("invalid signature")

// ErrChecksum is matched (errors.Is) by every *ChecksumError.
var ErrChecksum = errors.New("checksum mismatch")

// A SignatureError is a file whose detached signature does not prove that
// it comes from a key of the keyring. Its text is exactly the shell
// template's "Invalid signature for FILE"; Reason says why, for logs,
// warnings and --verbose.
type SignatureError struct {
	// File is the file's name as the user knows it, e.g. "rootfs.tar.xz"
	// or "index-system.7".
	File string
	// Reason is what was wrong: no signature, a key not in the keyring, a
	// revoked or expired key, a weak hash, data that does not match.
	Reason error
}

func (e *SignatureError) Error() string { return "Invalid signature for " + e.File }

// Unwrap gives ErrInvalidSignature and the reason.
func (e *SignatureError) Unwrap() []error { return []error{ErrInvalidSignature, e.Reason} }

// A ChecksumError is a file whose SHA256 is not the one SHA256SUMS lists
// for it, or a file that SHA256SUMS does not list at all.
type ChecksumError struct {
	// File is the file's name as the user knows it.
	File string
	// Unlisted is set when SHA256SUMS has no entry for File; Want and Got
	// are empty then.
	Unlisted bool
	// Want is the expected SHA256 and Got the SHA256 of what was received,
	// in lower-case hex.
	Want, Got string
}

func (e *ChecksumError) Error() string {
	if e.Unlisted {
		return e.File + " is not listed in SHA256SUMS"
	}
	return fmt.Sprintf("SHA256 mismatch for %s: expected %s, got %s", e.File, e.Want, e.Got)
}

// Unwrap gives ErrChecksum.
func (e *ChecksumError) Unwrap() error { return ErrChecksum }

// Limits on SHA256SUMS: the real file lists a handful of files in a few
// hundred bytes, so anything near these is not one.
const (
	sha256sumsMaxSize    = 1 << 20
	sha256sumsMaxEntries = 10000
	sha256sumsMaxLine    = 4096
)

// ParseSHA256SUMS parses a SHA256SUMS file as sha256sum writes it: one
// "HEX  NAME" line per file ("HEX *NAME" for binary mode; a leading
// backslash when NAME has an escaped backslash, newline or carriage return).
// It returns file names, without any leading "./", mapped to lower-case hex
// digests. It is strict, since the file is signed and machine-written: a
// malformed line, a name listed twice, a name with control characters, or a
// file over the size and entry limits is an error naming the line.
func ParseSHA256SUMS(data []byte) (map[string]string, error) {
	if len(data) > sha256sumsMaxSize {
		return nil, fmt.Errorf("SHA256SUMS is larger than %d KiB", sha256sumsMaxSize>>10)
	}
	sums := map[string]string{}
	text := string(data)
	for n := 1; text != ""; n++ {
		line, rest, found := strings.Cut(text, "\n")
		text = rest
		if !found && line == "" {
			break
		}
		if len(sums) == sha256sumsMaxEntries {
			return nil, fmt.Errorf("SHA256SUMS has more than %d entries", sha256sumsMaxEntries)
		}
		name, sum, err := parseSumLine(line)
		if err != nil {
			return nil, fmt.Errorf("SHA256SUMS line %d: %w: %s", n, err, quoteLine(line))
		}
		if _, dup := sums[name]; dup {
			return nil, fmt.Errorf("SHA256SUMS line %d: %s is listed twice", n, strconv.Quote(name))
		}
		sums[name] = sum
	}
	return sums, nil
}

// parseSumLine parses one line of sha256sum's output.
func parseSumLine(line string) (name, sum string, err error) {
	if len(line) > sha256sumsMaxLine {
		return "", "", fmt.Errorf("line longer than %d bytes", sha256sumsMaxLine)
	}
	if strings.HasPrefix(line, "SHA256 (") {
		return "", "", errors.New("BSD-style (--tag) line, want \"HEX  NAME\"")
	}
	escaped := strings.HasPrefix(line, `\`)
	if escaped {
		line = line[1:]
	}
	if len(line) < 2*sha256.Size+2 || line[2*sha256.Size] != ' ' || (line[2*sha256.Size+1] != ' ' && line[2*sha256.Size+1] != '*') {
		return "", "", errors.New("malformed line, want \"HEX  NAME\"")
	}
	sum = strings.ToLower(line[:2*sha256.Size])
	if _, err := hex.DecodeString(sum); err != nil {
		return "", "", errors.New("malformed SHA256, want 64 hex digits")
	}
	name = line[2*sha256.Size+2:]
	if escaped {
		if name, err = unescapeSumName(name); err != nil {
			return "", "", err
		}
	}
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	if name == "" {
		return "", "", errors.New("no file name")
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return "", "", fmt.Errorf("control character %q in the file name", c)
		}
	}
	return name, sum, nil
}

// unescapeSumName undoes sha256sum's escaping of names that contain a
// backslash, newline or carriage return.
func unescapeSumName(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", errors.New("file name ends in a lone backslash")
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", fmt.Errorf("unknown escape \\%c in the file name", s[i])
		}
	}
	return b.String(), nil
}

// quoteLine quotes a line for an error message, cut to a readable length.
func quoteLine(line string) string {
	const max = 100
	if len(line) > max {
		return strconv.Quote(line[:max]) + "..."
	}
	return strconv.Quote(line)
}

// LookupSHA256 returns the digest that sums (from ParseSHA256SUMS) lists
// for name, or a *ChecksumError saying that name is not listed.
func LookupSHA256(sums map[string]string, name string) (string, error) {
	if sum, ok := sums[strings.TrimPrefix(name, "./")]; ok {
		return sum, nil
	}
	return "", &ChecksumError{File: name, Unlisted: true}
}

// A Check verifies a file while it is written to it, so a download is
// hashed as it arrives with no second pass over the file. It checks a
// detached OpenPGP signature, an expected SHA256, or both (both must then
// hold). For a resumed download, write the part already on disk first,
// then the rest. Finish gives the verdict.
//
// A Check is not safe for concurrent use.
type Check struct {
	name string
	// now is the clock the signature and its key are judged by.
	now func() time.Time

	// The signature and the keys of the keyring that may have made it
	// (usually one; more only when key ids collide).
	sig  *packet.Signature
	keys []openpgp.Key
	// sigHash is the hash the signature is checked against; sigIn is where
	// the data goes into it (the same hash, or a wrapper that
	// canonicalises line endings for a text-mode signature).
	sigHash hash.Hash
	sigIn   io.Writer

	// sum is the SHA256 of the bytes written; it is sigHash itself when the
	// signature uses plain SHA256 over binary data, so those bytes are not
	// hashed twice.
	sum     hash.Hash
	want    string
	written int64

	finished bool
	digest   string
	result   error
}

// NewCheck returns a Check of the file name (used in error messages) that
// verifies the detached signature sig (armored or binary) with the keys of
// kr, and/or that the file's SHA256 is sha256Hex. sig nil means the file
// has no signature of its own; sha256Hex "" means no checksum is known. At
// least one of them must be given.
//
// Problems found in the signature itself (not a signature, made by a key
// that is not in kr, a revoked or expired key, a weak hash) are reported
// here, as a *SignatureError, so a download can be refused before it
// starts.
func NewCheck(name string, kr openpgp.EntityList, sig []byte, sha256Hex string) (*Check, error) {
	return newCheck(name, kr, sig, sha256Hex, time.Now)
}

// newCheck is NewCheck judging by the clock now.
func newCheck(name string, kr openpgp.EntityList, sig []byte, sha256Hex string, now func() time.Time) (*Check, error) {
	c := &Check{name: name, now: now}
	if sig == nil && sha256Hex == "" {
		return nil, fmt.Errorf("nothing to verify %s with: no signature and no SHA256", name)
	}
	if sha256Hex != "" {
		want := strings.ToLower(sha256Hex)
		if b, err := hex.DecodeString(want); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("expected SHA256 for %s is not 64 hex digits: %q", name, sha256Hex)
		}
		c.want = want
	}
	if sig != nil {
		var err error
		if c.sig, c.keys, err = readSignature(kr, sig); err != nil {
			return nil, &SignatureError{File: name, Reason: err}
		}
	}
	if err := c.start(); err != nil {
		return nil, &SignatureError{File: name, Reason: err}
	}
	return c, nil
}

// start sets up empty hashes.
func (c *Check) start() error {
	c.written = 0
	c.sum, c.sigHash, c.sigIn = nil, nil, nil
	if c.sig != nil {
		h, err := c.sig.PrepareVerify()
		if err != nil {
			return fmt.Errorf("signature: %w", err)
		}
		c.sigHash, c.sigIn = h, h
		if c.sig.SigType == packet.SigTypeText {
			c.sigIn = openpgp.NewCanonicalTextHash(h)
		} else if c.sig.Hash == crypto.SHA256 && c.sig.Version == 4 {
			// Unsalted SHA256 over the raw bytes: the same digest.
			c.sum = h
		}
	}
	if c.sum == nil {
		c.sum = sha256.New()
	}
	return nil
}

// Write hashes p. It fails only after Finish.
func (c *Check) Write(p []byte) (int, error) {
	if c.finished {
		return 0, fmt.Errorf("verify %s: write after Finish", c.name)
	}
	if c.sigIn != nil {
		c.sigIn.Write(p)
	}
	if c.sum != c.sigHash {
		c.sum.Write(p)
	}
	c.written += int64(len(p))
	return len(p), nil
}

// Reset forgets everything written, for a download that must start over
// from the first byte (the server ignored a range request, or its copy
// changed).
func (c *Check) Reset() {
	c.finished, c.digest, c.result = false, "", nil
	// start cannot fail here: it already succeeded once for this signature.
	_ = c.start()
}

// Size is the number of bytes written.
func (c *Check) Size() int64 { return c.written }

// SHA256 is the lower-case hex SHA256 of the bytes written, e.g. to record
// with a cached file.
func (c *Check) SHA256() string {
	if c.finished {
		return c.digest
	}
	// Sum does not change the hash's state.
	return hex.EncodeToString(c.sum.Sum(nil))
}

// Finish checks what was written against the signature and/or the
// expected SHA256: nil only if every check that was asked for holds. It
// returns a *SignatureError or a *ChecksumError otherwise. Calling it again
// returns the same result; Write fails after it (until Reset).
func (c *Check) Finish() error {
	if c.finished {
		return c.result
	}
	c.digest = hex.EncodeToString(c.sum.Sum(nil))
	c.finished = true
	if c.sig != nil {
		if err := verifySignature(c.sig, c.keys, c.sigHash, c.now()); err != nil {
			c.result = &SignatureError{File: c.name, Reason: err}
			return c.result
		}
	}
	if c.want != "" && c.digest != c.want {
		c.result = &ChecksumError{File: c.name, Want: c.want, Got: c.digest}
	}
	return c.result
}

// VerifyDetached checks that sig (armored or binary) is a valid detached
// signature of data by a key of kr, for small files held in memory such as
// the index or SHA256SUMS. name is used in the error, a *SignatureError.
func VerifyDetached(kr openpgp.EntityList, name string, data, sig []byte) error {
	_, err := verifyDetached(kr, name, data, sig, time.Now)
	return err
}

// verifyDetached is VerifyDetached judging by the clock now; it also
// returns when the signature says it was made.
func verifyDetached(kr openpgp.EntityList, name string, data, sig []byte, now func() time.Time) (time.Time, error) {
	if sig == nil {
		sig = []byte{}
	}
	c, err := newCheck(name, kr, sig, "", now)
	if err != nil {
		return time.Time{}, err
	}
	c.Write(data)
	if err := c.Finish(); err != nil {
		return time.Time{}, err
	}
	return c.sig.CreationTime, nil
}

// Bounds on a detached signature: a real one is a single packet of a few
// hundred bytes.
const (
	maxSignaturePackets = 16
	maxSignatureBytes   = 1 << 20
)

// acceptedHash reports whether a data signature may use h: not MD5,
// SHA1 or RIPEMD160, which can be collided or are close to it.
func acceptedHash(h crypto.Hash) bool {
	switch h {
	case crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA3_256, crypto.SHA3_512:
		return true
	}
	return false
}

// readSignature parses a detached signature and picks its first signature
// packet made by a signing key of kr, as go-crypto's CheckDetachedSignature
// does, then checks what can be checked before the data is seen.
func readSignature(kr openpgp.EntityList, data []byte) (*packet.Signature, []openpgp.Key, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, errors.New("the signature is empty")
	}
	if len(data) > maxSignatureBytes {
		return nil, nil, fmt.Errorf("the signature is larger than %d KiB", maxSignatureBytes>>10)
	}
	if len(kr) == 0 {
		return nil, nil, errors.New("no keys to check the signature with")
	}
	var r io.Reader = bytes.NewReader(data)
	if i := bytes.Index(data, []byte(armorBegin)); i >= 0 {
		block, err := armor.Decode(bytes.NewReader(data[i:]))
		if err != nil {
			return nil, nil, fmt.Errorf("bad armor: %w", err)
		}
		if block.Type != openpgp.SignatureType {
			return nil, nil, fmt.Errorf("armored block is a %q, not a signature", block.Type)
		}
		r = block.Body
	}
	packets := packet.NewReader(r)
	var issuers []string
	var unsupported error
	for n := 0; ; n++ {
		p, err := packets.NextWithUnsupported()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("not an OpenPGP signature: %w", err)
		}
		if n == maxSignaturePackets {
			return nil, nil, fmt.Errorf("more than %d packets in the signature", maxSignaturePackets)
		}
		if u, ok := p.(*packet.UnsupportedPacket); ok {
			// A signature with an algorithm go-crypto does not know (MD5
			// among them): another packet may still be usable.
			unsupported = u.Error
			continue
		}
		sig, ok := p.(*packet.Signature)
		if !ok {
			return nil, nil, fmt.Errorf("not a detached signature: it holds a %T packet", p)
		}
		if sig.IssuerKeyId == nil {
			return nil, nil, errors.New("the signature does not name the key that made it")
		}
		id := *sig.IssuerKeyId
		keys := kr.KeysByIdUsage(id, packet.KeyFlagSign)
		if len(keys) == 0 {
			if len(kr.KeysById(id)) > 0 {
				return nil, nil, fmt.Errorf("made by key %016X, which is not a signing key", id)
			}
			issuers = append(issuers, fmt.Sprintf("%016X", id))
			continue
		}
		if sig.SigType != packet.SigTypeBinary && sig.SigType != packet.SigTypeText {
			return nil, nil, fmt.Errorf("not a signature of a document (signature type %#x)", uint8(sig.SigType))
		}
		if !acceptedHash(sig.Hash) {
			return nil, nil, fmt.Errorf("made with the weak or unsupported hash %s", sig.Hash)
		}
		return sig, keys, nil
	}
	if len(issuers) == 0 && unsupported != nil {
		return nil, nil, fmt.Errorf("unusable signature: %w", unsupported)
	}
	if len(issuers) == 0 {
		return nil, nil, errors.New("no signature packet found")
	}
	return nil, nil, fmt.Errorf("made by key %s, which is not in the keyring", strings.Join(issuers, ", "))
}

// verifySignature finishes what readSignature began, once the data is
// hashed into h: the signature must verify with one of keys, and that key
// must be usable at now.
func verifySignature(sig *packet.Signature, keys []openpgp.Key, h hash.Hash, now time.Time) error {
	var err error
	for i, key := range keys {
		kh := h
		if i < len(keys)-1 {
			// VerifySignature consumes the hash (it adds the signature's
			// trailer), so every key but the last gets a copy.
			if cl, ok := h.(hash.Cloner); ok {
				if c, cerr := cl.Clone(); cerr == nil {
					kh = c
				}
			}
		}
		if err = key.PublicKey.VerifySignature(kh, sig); err == nil {
			return checkSigner(key, sig, now)
		}
		if kh == h {
			break
		}
	}
	return fmt.Errorf("the data does not match the signature: %w", err)
}

// checkSigner rejects a good signature whose key cannot vouch for it:
// revoked, expired, or with a critical notation nobody here understands.
// It does what go-crypto's CheckDetachedSignature does after the
// cryptographic check, with one difference: the key and signature are
// judged at the later of now and the signature's creation time, so a host
// whose clock is behind (boards without a real-time clock boot in 1970)
// still accepts a fresh signature, while a clock that is behind can never
// make an expired or revoked key look valid.
func checkSigner(key openpgp.Key, sig *packet.Signature, now time.Time) error {
	t := now
	if sig.CreationTime.After(t) {
		t = sig.CreationTime
	}
	fpr := entityFingerprint(key.Entity)
	primarySig, primaryID := key.Entity.PrimarySelfSignature()
	bySubkey := key.PublicKey != key.Entity.PrimaryKey
	related := []*packet.Signature{sig, primarySig}
	if bySubkey {
		related = append(related, key.SelfSignature)
		if key.SelfSignature != nil {
			related = append(related, key.SelfSignature.EmbeddedSignature)
		}
	}
	for _, s := range related {
		if s == nil {
			continue
		}
		for _, n := range s.Notations {
			if n.IsCritical {
				return fmt.Errorf("key %s: unknown critical notation %q", fpr, n.Name)
			}
		}
	}
	if key.Entity.Revoked(t) || (bySubkey && key.Revoked(t)) || (primaryID != nil && primaryID.Revoked(t)) {
		return fmt.Errorf("key %s is revoked", fpr)
	}
	if primarySig == nil {
		return fmt.Errorf("key %s has no valid self-signature", fpr)
	}
	if key.Entity.PrimaryKey.KeyExpired(primarySig, t) {
		return fmt.Errorf("key %s %s", fpr, expiry(key.Entity.PrimaryKey, primarySig, t))
	}
	if bySubkey && (key.SelfSignature == nil || key.PublicKey.KeyExpired(key.SelfSignature, t)) {
		return fmt.Errorf("signing subkey %s of key %s %s", key.PublicKey.KeyIdString(), fpr, expiry(key.PublicKey, key.SelfSignature, t))
	}
	if sig.SigExpired(t) {
		return fmt.Errorf("the signature expired on %s", sig.CreationTime.Add(time.Duration(*sig.SigLifetimeSecs)*time.Second).UTC().Format(time.DateOnly))
	}
	for _, s := range related[1:] {
		if s != nil && s.SigExpired(t) {
			return fmt.Errorf("key %s: its self-signature expired", fpr)
		}
	}
	return nil
}

// expiry says why pk is not valid at t according to its self-signature.
func expiry(pk *packet.PublicKey, self *packet.Signature, t time.Time) string {
	if pk.CreationTime.After(t) {
		return "was created after the signature"
	}
	if self == nil || self.KeyLifetimeSecs == nil {
		return "is not valid"
	}
	return "expired on " + pk.CreationTime.Add(time.Duration(*self.KeyLifetimeSecs)*time.Second).UTC().Format(time.DateOnly)
}

// Recheck verifies again, against the keys of kr, a file of an image that
// was verified with evidence when it was downloaded and stored with the
// SHA256 sha256Hex (lower-case hex): a cached copy, before it is used. The
// evidence itself must verify with kr. When the signed SHA256SUMS names the
// file, its sum there must be sha256Hex, and the stored file need only be
// checked against sha256Hex as it is read; Recheck then returns nil. Where
// only the file's own signature vouches for it, the returned Check must be
// given every byte of the stored file and its Finish must succeed.
func Recheck(kr openpgp.EntityList, ev Evidence, name, sha256Hex string) (*Check, error) {
	if len(ev.SHA256SUMS) > 0 {
		if err := VerifyDetached(kr, "SHA256SUMS", ev.SHA256SUMS, ev.SHA256SUMSSig); err != nil {
			return nil, err
		}
		sums, err := ParseSHA256SUMS(ev.SHA256SUMS)
		if err != nil {
			return nil, err
		}
		if want, err := LookupSHA256(sums, name); err == nil {
			if want != strings.ToLower(sha256Hex) {
				return nil, &ChecksumError{File: name, Want: want, Got: sha256Hex}
			}
			return nil, nil
		}
	}
	sig := ev.Signatures[name]
	if len(sig) == 0 {
		return nil, &SignatureError{File: name, Reason: errors.New("no signed SHA256SUMS line and no signature kept for it")}
	}
	return NewCheck(name, kr, sig, "")
}

// EvidenceTime verifies the signatures of evidence with the keys of kr
// and returns when the newest of them was made: an image cannot have been
// downloaded before it was signed, so a copy of unknown age (one moved
// between hosts) is taken to be that old, and no younger.
func EvidenceTime(kr openpgp.EntityList, ev Evidence) (time.Time, error) {
	var newest time.Time
	if len(ev.SHA256SUMS) > 0 {
		t, err := verifyDetached(kr, "SHA256SUMS", ev.SHA256SUMS, ev.SHA256SUMSSig, time.Now)
		if err != nil {
			return time.Time{}, err
		}
		newest = t
	}
	for name, sig := range ev.Signatures {
		s, _, err := readSignature(kr, sig)
		if err != nil {
			return time.Time{}, &SignatureError{File: name, Reason: err}
		}
		if s.CreationTime.After(newest) {
			newest = s.CreationTime
		}
	}
	if newest.IsZero() {
		return time.Time{}, &SignatureError{File: "SHA256SUMS", Reason: errors.New("no signed evidence")}
	}
	return newest, nil
}

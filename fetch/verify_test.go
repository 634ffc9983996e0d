package fetch

import (
	"bytes"
	"crypto"
	_ "crypto/md5" // so a test can make an MD5 signature
	"crypto/sha256"
	_ "crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// pgpSign makes an armored detached signature of data, as the image
// server's .asc files are.
func pgpSign(t testing.TB, e *openpgp.Entity, data []byte, cfg *packet.Config) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, e, bytes.NewReader(data), cfg); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pgpRawSign makes a binary signature packet by hand, for the kinds of
// signature go-crypto's writer refuses to make: weak hashes, odd types.
func pgpRawSign(t testing.TB, e *openpgp.Entity, data []byte, typ packet.SignatureType, h crypto.Hash, when time.Time) []byte {
	t.Helper()
	pk := e.PrimaryKey
	sig := &packet.Signature{
		Version:           4,
		SigType:           typ,
		PubKeyAlgo:        pk.PubKeyAlgo,
		Hash:              h,
		CreationTime:      when,
		IssuerKeyId:       &pk.KeyId,
		IssuerFingerprint: pk.Fingerprint,
	}
	hh, err := sig.PrepareSign(nil)
	if err != nil {
		t.Fatal(err)
	}
	hh.Write(data)
	// No salt notation: go-crypto only knows salts for strong hashes.
	noSalt := false
	if err := sig.Sign(hh, e.PrivateKey, &packet.Config{NonDeterministicSignaturesViaNotation: &noSalt}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := sig.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// wantSigErr checks that err is the SPEC's "Invalid signature for FILE"
// with a reason containing reason.
func wantSigErr(t testing.TB, err error, file, reason string) {
	t.Helper()
	var se *SignatureError
	if !errors.As(err, &se) || !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("got %v (%T), want a *SignatureError", err, err)
	}
	if err.Error() != "Invalid signature for "+file {
		t.Errorf("text %q, want %q", err.Error(), "Invalid signature for "+file)
	}
	if se.Reason == nil || !strings.Contains(se.Reason.Error(), reason) {
		t.Errorf("reason %v, want it to say %q", se.Reason, reason)
	}
}

// verifyAt is VerifyDetached on a host whose clock says now.
func verifyAt(now time.Time, kr openpgp.EntityList, name string, data, sig []byte) error {
	_, err := verifyDetached(kr, name, data, sig, func() time.Time { return now })
	return err
}

func TestVerifyDetached(t *testing.T) {
	signer, stranger := pgpNewKey(t, "signer", nil), pgpNewKey(t, "stranger", nil)
	kr := pgpKeyring(t, signer)
	data := []byte("debian;bookworm;amd64;default;20261120_05:24;/images/debian/bookworm/amd64/default/20261120_05:24/\n")
	good := pgpSign(t, signer, data, nil)

	var binary bytes.Buffer
	if err := openpgp.DetachSign(&binary, signer, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := openpgp.ArmoredDetachSignText(&text, signer, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	// Two signatures in one file, the first by a key we do not hold.
	var both bytes.Buffer
	openpgp.DetachSign(&both, stranger, bytes.NewReader(data), nil)
	both.Write(binary.Bytes())

	for _, tc := range []struct {
		name string
		data []byte
		sig  []byte
		kr   openpgp.EntityList
	}{
		{"armored", data, good, kr},
		{"binary", data, binary.Bytes(), kr},
		{"text mode", data, text.Bytes(), kr},
		{"text mode, CRLF line ends", bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")), text.Bytes(), kr},
		{"second signature is ours", data, both.Bytes(), kr},
		{"keyring of several keys", data, good, pgpKeyring(t, stranger, signer)},
		{"built-in key beside ours", data, good, append(mustBuiltin(t), kr...)},
		{"armor after text", data, append([]byte("signature follows\n"), good...), kr},
		{"SHA256", data, pgpSign(t, signer, data, &packet.Config{DefaultHash: crypto.SHA256}), kr},
		{"SHA384", data, pgpSign(t, signer, data, &packet.Config{DefaultHash: crypto.SHA384}), kr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := VerifyDetached(tc.kr, "index-system.7", tc.data, tc.sig); err != nil {
				t.Fatalf("%v (%v)", err, errors.Unwrap(err))
			}
		})
	}

	tampered := bytes.Clone(data)
	tampered[0] ^= 1
	for _, tc := range []struct {
		name   string
		data   []byte
		sig    []byte
		kr     openpgp.EntityList
		reason string
	}{
		{"tampered data", tampered, good, kr, "the data does not match the signature"},
		{"extra byte", append(bytes.Clone(data), '\n'), good, kr, "the data does not match the signature"},
		{"truncated data", data[:len(data)-1], good, kr, "the data does not match the signature"},
		{"another key", data, pgpSign(t, stranger, data, nil), kr, fmt.Sprintf("made by key %016X, which is not in the keyring", stranger.PrimaryKey.KeyId)},
		{"built-in keyring only", data, good, mustBuiltin(t), "which is not in the keyring"},
		{"empty keyring", data, good, nil, "no keys to check the signature with"},
		{"nil signature", data, nil, kr, "the signature is empty"},
		{"blank signature", data, []byte("\n \n"), kr, "the signature is empty"},
		{"garbage", data, []byte("<html>404</html>"), kr, "not an OpenPGP signature"},
		{"public key instead", data, pgpPublicArmored(t, signer), kr, `armored block is a "PGP PUBLIC KEY BLOCK", not a signature`},
		{"binary key instead", data, pgpPublicBinary(t, signer), kr, "not a detached signature: it holds a *packet.PublicKey packet"},
		{"truncated signature", data, binary.Bytes()[:binary.Len()-10], kr, "not an OpenPGP signature"},
		{"SHA1", data, pgpRawSign(t, signer, data, packet.SigTypeBinary, crypto.SHA1, time.Now()), kr, "weak or unsupported hash SHA-1"},
		{"standalone type", data, pgpRawSign(t, signer, nil, packet.SignatureType(0x02), crypto.SHA256, time.Now()), kr, "not a signature of a document (signature type 0x2)"},
		{"huge", data, make([]byte, maxSignatureBytes+1), kr, "the signature is larger than 1024 KiB"},
		{"too many packets", data, bytes.Repeat(binary.Bytes(), maxSignaturePackets+1), pgpKeyring(t, pgpNewKey(t, "third", nil)), "more than 16 packets in the signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantSigErr(t, VerifyDetached(tc.kr, "index-system.7", tc.data, tc.sig), "index-system.7", tc.reason)
		})
	}
}

func TestVerifyDetachedOddPackets(t *testing.T) {
	signer := pgpNewKey(t, "signer", nil)
	kr := pgpKeyring(t, signer)
	// A v4 EdDSA signature packet, by hand, with a creation time but no
	// issuer subpacket.
	body := []byte{4, 0, byte(packet.PubKeyAlgoEdDSA), 8, 0, 6, 5, 2, 0x66, 0, 0, 0, 0, 0, 0xab, 0xcd, 0, 1, 1, 0, 1, 1}
	noIssuer := append([]byte{0xc2, byte(len(body))}, body...)
	marker := []byte{0xca, 3, 'P', 'G', 'P'}

	// A keyring whose key may certify but not sign.
	certOnly := pgpKeyring(t, signer)
	self, _ := certOnly[0].PrimarySelfSignature()
	self.FlagSign = false

	for _, tc := range []struct {
		name, reason string
		sig          []byte
		kr           openpgp.EntityList
	}{
		{"no issuer", "the signature does not name the key that made it", noIssuer, kr},
		{"only a marker packet", "no signature packet found", marker, kr},
		{"broken armor", "bad armor", []byte("-----BEGIN PGP SIGNATURE\n"), kr},
		{"key may not sign", fmt.Sprintf("made by key %016X, which is not a signing key", signer.PrimaryKey.KeyId), pgpSign(t, signer, []byte("x"), nil), certOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantSigErr(t, VerifyDetached(tc.kr, "index-user", []byte("x"), tc.sig), "index-user", tc.reason)
		})
	}
}

func TestVerifyDetachedMD5(t *testing.T) {
	// go-crypto does not write MD5 signatures: make a SHA1 one and relabel
	// its hash as MD5 (id 1). It can never verify, but it must be refused
	// as a signature failure, whatever go-crypto makes of it.
	signer := pgpNewKey(t, "signer", nil)
	sig := pgpRawSign(t, signer, []byte("x"), packet.SigTypeBinary, crypto.SHA1, time.Now())
	i := bytes.Index(sig[:8], []byte{4, 0, byte(packet.PubKeyAlgoEdDSA), 2})
	if i < 0 {
		t.Fatalf("no v4 signature header in % x", sig[:8])
	}
	sig[i+3] = 1
	wantSigErr(t, VerifyDetached(pgpKeyring(t, signer), "rootfs.tar.xz", []byte("x"), sig), "rootfs.tar.xz", "unusable signature: openpgp: unsupported feature: hash function")
}

func mustBuiltin(t testing.TB) openpgp.EntityList {
	kr, err := BuiltinKeyring()
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestVerifyKeyValidity(t *testing.T) {
	data := []byte("rootfs bytes")
	past := time.Now().Add(-2 * 365 * 24 * time.Hour)
	at := func(t time.Time) *packet.Config { return &packet.Config{Time: func() time.Time { return t }} }

	// A key that expired a year after it was made, and a signature it made
	// while valid.
	expiring := pgpNewKey(t, "expiring", &packet.Config{Time: func() time.Time { return past }, KeyLifetimeSecs: 365 * 24 * 3600})
	expiredSig := pgpSign(t, expiring, data, at(past.Add(time.Hour)))

	revoked := pgpNewKey(t, "revoked", nil)
	revokedSig := pgpSign(t, revoked, data, nil)
	if err := revoked.RevokeKey(packet.KeyRetired, "retired", nil); err != nil {
		t.Fatal(err)
	}

	shortSig := pgpNewKey(t, "short-lived signatures", at(time.Now().Add(-24*time.Hour)))
	shortSigSig := pgpSign(t, shortSig, data, &packet.Config{Time: func() time.Time { return time.Now().Add(-2 * time.Hour) }, SigLifetimeSecs: 3600})

	withSub := pgpNewKey(t, "with signing subkey", nil)
	if err := withSub.AddSigningSubkey(nil); err != nil {
		t.Fatal(err)
	}
	subSig := pgpSign(t, withSub, data, nil)
	subID := withSub.Subkeys[len(withSub.Subkeys)-1].PublicKey.KeyId
	revokedSub := pgpNewKey(t, "with revoked subkey", nil)
	if err := revokedSub.AddSigningSubkey(nil); err != nil {
		t.Fatal(err)
	}
	revokedSubSig := pgpSign(t, revokedSub, data, nil)
	if err := revokedSub.RevokeSubkey(&revokedSub.Subkeys[len(revokedSub.Subkeys)-1], packet.KeyCompromised, "lost", nil); err != nil {
		t.Fatal(err)
	}

	t.Run("expired key", func(t *testing.T) {
		wantSigErr(t, VerifyDetached(pgpKeyring(t, expiring), "meta.tar.xz", data, expiredSig), "meta.tar.xz",
			"key "+pgpFingerprint(expiring)+" expired on "+past.Add(365*24*time.Hour).UTC().Format(time.DateOnly))
	})
	t.Run("expired key, clock in the past", func(t *testing.T) {
		// Judged at the signature's time, the key was valid: a clock that
		// is behind does not break good signatures...
		epoch := time.Unix(0, 0)
		if err := verifyAt(epoch, pgpKeyring(t, expiring), "meta.tar.xz", data, expiredSig); err != nil {
			t.Fatal(err)
		}
		// ...but a signature made after the key expired is refused.
		lateSig := pgpRawSign(t, expiring, data, packet.SigTypeBinary, crypto.SHA256, past.Add(366*24*time.Hour))
		wantSigErr(t, verifyAt(epoch, pgpKeyring(t, expiring), "meta.tar.xz", data, lateSig), "meta.tar.xz", "expired on")
	})
	t.Run("fresh signature, clock in 1970", func(t *testing.T) {
		signer := pgpNewKey(t, "signer", nil)
		if err := verifyAt(time.Unix(0, 0), pgpKeyring(t, signer), "meta.tar.xz", data, pgpSign(t, signer, data, nil)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("revoked key", func(t *testing.T) {
		wantSigErr(t, VerifyDetached(pgpKeyring(t, revoked), "meta.tar.xz", data, revokedSig), "meta.tar.xz", "key "+pgpFingerprint(revoked)+" is revoked")
	})
	t.Run("expired signature", func(t *testing.T) {
		wantSigErr(t, VerifyDetached(pgpKeyring(t, shortSig), "meta.tar.xz", data, shortSigSig), "meta.tar.xz", "the signature expired on")
	})
	t.Run("signing subkey", func(t *testing.T) {
		if _, _, err := readSignature(pgpKeyring(t, withSub), subSig); err != nil {
			t.Fatal(err)
		}
		sig, _, _ := readSignature(pgpKeyring(t, withSub), subSig)
		if *sig.IssuerKeyId != subID {
			t.Fatalf("signed by %X, not the subkey %X", *sig.IssuerKeyId, subID)
		}
		if err := VerifyDetached(pgpKeyring(t, withSub), "meta.tar.xz", data, subSig); err != nil {
			t.Fatal(err)
		}
		kr, err := SelectKey(pgpKeyring(t, withSub, revoked), pgpFingerprint(withSub))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyDetached(kr, "meta.tar.xz", data, subSig); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("expired subkey", func(t *testing.T) {
		e := pgpNewKey(t, "with expiring subkey", at(past))
		if err := e.AddSigningSubkey(&packet.Config{Time: func() time.Time { return past }, KeyLifetimeSecs: 24 * 3600}); err != nil {
			t.Fatal(err)
		}
		sig := pgpSign(t, e, data, at(past.Add(time.Hour)))
		sub := e.Subkeys[len(e.Subkeys)-1].PublicKey
		wantSigErr(t, VerifyDetached(pgpKeyring(t, e), "meta.tar.xz", data, sig), "meta.tar.xz",
			"signing subkey "+sub.KeyIdString()+" of key "+pgpFingerprint(e)+" expired on "+past.Add(24*time.Hour).UTC().Format(time.DateOnly))
	})
	t.Run("revoked subkey", func(t *testing.T) {
		wantSigErr(t, VerifyDetached(pgpKeyring(t, revokedSub), "meta.tar.xz", data, revokedSubSig), "meta.tar.xz", "is revoked")
	})
	t.Run("critical notation", func(t *testing.T) {
		signer := pgpNewKey(t, "notary", nil)
		sig := pgpSign(t, signer, data, &packet.Config{SignatureNotations: []*packet.Notation{{Name: "policy@example.org", Value: []byte("x"), IsCritical: true, IsHumanReadable: true}}})
		wantSigErr(t, VerifyDetached(pgpKeyring(t, signer), "meta.tar.xz", data, sig), "meta.tar.xz", `unknown critical notation "policy@example.org"`)
	})
}

func TestVerifyRSA(t *testing.T) {
	// The image server's key is RSA; the other tests use Ed25519 for speed.
	signer := pgpNewKey(t, "rsa", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048})
	data := []byte("meta")
	kr := pgpKeyring(t, signer)
	if err := VerifyDetached(kr, "meta.tar.xz", data, pgpSign(t, signer, data, &packet.Config{DefaultHash: crypto.SHA512})); err != nil {
		t.Fatal(err)
	}
	wantSigErr(t, VerifyDetached(kr, "meta.tar.xz", []byte("Meta"), pgpSign(t, signer, data, nil)), "meta.tar.xz", "does not match")
}

func TestVerifyKeyIDCollision(t *testing.T) {
	// Two keys of the keyring share the signer's key id: the signature is
	// tried against each, whichever comes first.
	signer := pgpNewKey(t, "signer", nil)
	kr := pgpKeyring(t, signer)
	twin := pgpKeyring(t, pgpNewKey(t, "twin", nil))[0]
	twinPK := *twin.PrimaryKey
	twinPK.KeyId = kr[0].PrimaryKey.KeyId
	twin.PrimaryKey = &twinPK
	data := []byte("data")
	for _, order := range []openpgp.EntityList{{twin, kr[0]}, {kr[0], twin}} {
		c, err := NewCheck("rootfs.tar.xz", order, pgpSign(t, signer, data, &packet.Config{DefaultHash: crypto.SHA256}), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(c.keys) != 2 {
			t.Fatalf("%d candidate keys", len(c.keys))
		}
		c.Write(data)
		if err := c.Finish(); err != nil {
			t.Fatal(err)
		}
		if c.SHA256() != sumHex(data) {
			t.Fatal("SHA256 changed by verification")
		}
	}
}

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeUneven writes data to w in uneven pieces, as a download arrives.
func writeUneven(w io.Writer, data []byte) {
	for n := 1; len(data) > 0; n = n*3 + 1 {
		n = min(n, len(data))
		w.Write(data[:n])
		data = data[n:]
	}
}

func TestCheck(t *testing.T) {
	signer, stranger := pgpNewKey(t, "signer", nil), pgpNewKey(t, "stranger", nil)
	kr := pgpKeyring(t, signer)
	data := bytes.Repeat([]byte("rootfs.tar.xz contents "), 10000)
	sum := sumHex(data)
	tampered := bytes.Clone(data)
	tampered[len(tampered)/2] ^= 0x20
	badSum := sumHex(tampered)
	sig512 := pgpSign(t, signer, data, &packet.Config{DefaultHash: crypto.SHA512})
	sig256 := pgpSign(t, signer, data, &packet.Config{DefaultHash: crypto.SHA256})
	var textSig bytes.Buffer
	if err := openpgp.DetachSignText(&textSig, signer, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		sig  []byte
		want string // expected SHA256 given to NewCheck
		data []byte
		err  string // "" for success
	}{
		{"signature", sig512, "", data, ""},
		{"SHA256 signature", sig256, "", data, ""},
		{"text signature", textSig.Bytes(), "", data, ""},
		{"checksum", nil, sum, data, ""},
		{"checksum upper case", nil, strings.ToUpper(sum), data, ""},
		{"both", sig512, sum, data, ""},
		{"both, SHA256 signature", sig256, sum, data, ""},
		{"tampered, signature", sig512, "", tampered, "Invalid signature for rootfs.tar.xz"},
		{"tampered, SHA256 signature", sig256, "", tampered, "Invalid signature for rootfs.tar.xz"},
		{"tampered, checksum", nil, sum, tampered, "SHA256 mismatch for rootfs.tar.xz: expected " + sum + ", got " + badSum},
		{"both, checksum wrong", sig512, badSum, data, "SHA256 mismatch for rootfs.tar.xz: expected " + badSum + ", got " + sum},
		{"both, SHA256 signature, checksum wrong", sig256, badSum, data, "SHA256 mismatch for rootfs.tar.xz"},
		{"both, signature of other data", pgpSign(t, signer, tampered, nil), sum, data, "Invalid signature for rootfs.tar.xz"},
		{"both, signature by another key", pgpSign(t, stranger, data, nil), sum, data, "Invalid signature for rootfs.tar.xz"},
		{"both wrong", sig512, sum, tampered, "Invalid signature for rootfs.tar.xz"},
		{"empty file", nil, sumHex(nil), nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCheck("rootfs.tar.xz", kr, tc.sig, tc.want)
			if err == nil {
				writeUneven(c, tc.data)
				err = c.Finish()
				if c.Size() != int64(len(tc.data)) || c.SHA256() != sumHex(tc.data) {
					t.Errorf("Size %d, SHA256 %s; want %d, %s", c.Size(), c.SHA256(), len(tc.data), sumHex(tc.data))
				}
				if again := c.Finish(); again != err {
					t.Errorf("second Finish: %v, first %v", again, err)
				}
				if _, werr := c.Write([]byte("x")); werr == nil {
					t.Error("Write after Finish accepted")
				}
			}
			if tc.err == "" {
				if err != nil {
					t.Fatalf("%v (%v)", err, errors.Unwrap(err))
				}
				return
			}
			if err == nil || err.Error() != tc.err && !strings.HasPrefix(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
			if strings.HasPrefix(tc.err, "SHA256") != errors.Is(err, ErrChecksum) || strings.HasPrefix(tc.err, "Invalid") != errors.Is(err, ErrInvalidSignature) {
				t.Errorf("%v: errors.Is(ErrChecksum) = %v, errors.Is(ErrInvalidSignature) = %v", err, errors.Is(err, ErrChecksum), errors.Is(err, ErrInvalidSignature))
			}
		})
	}
}

func TestNewCheckErrors(t *testing.T) {
	signer, stranger := pgpNewKey(t, "signer", nil), pgpNewKey(t, "stranger", nil)
	kr := pgpKeyring(t, signer)
	if _, err := NewCheck("rootfs.tar.xz", kr, nil, ""); err == nil || err.Error() != "nothing to verify rootfs.tar.xz with: no signature and no SHA256" {
		t.Errorf("nothing to check: %v", err)
	}
	if _, err := NewCheck("rootfs.tar.xz", kr, nil, "abc"); err == nil || !strings.Contains(err.Error(), "not 64 hex digits") {
		t.Errorf("short SHA256: %v", err)
	}
	if _, err := NewCheck("rootfs.tar.xz", kr, nil, strings.Repeat("g", 64)); err == nil || !strings.Contains(err.Error(), "not 64 hex digits") {
		t.Errorf("non-hex SHA256: %v", err)
	}
	// A signature that cannot succeed is refused before any byte is
	// downloaded.
	_, err := NewCheck("rootfs.tar.xz", kr, pgpSign(t, stranger, []byte("x"), nil), sumHex(nil))
	wantSigErr(t, err, "rootfs.tar.xz", "not in the keyring")
	_, err = NewCheck("rootfs.tar.xz", kr, []byte{}, "")
	wantSigErr(t, err, "rootfs.tar.xz", "the signature is empty")
}

func TestCheckResume(t *testing.T) {
	signer := pgpNewKey(t, "signer", nil)
	kr := pgpKeyring(t, signer)
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	sig := pgpSign(t, signer, data, nil)

	// A first run stopped after 300000 bytes; the partial file is on disk.
	partial := filepath.Join(t.TempDir(), "rootfs.tar.xz.partial")
	if err := os.WriteFile(partial, data[:300000], 0o644); err != nil {
		t.Fatal(err)
	}

	// The next run feeds the bytes on disk, then appends the rest of the
	// download to the file and the check at once.
	for _, tc := range []struct {
		name string
		rest []byte
		ok   bool
	}{
		{"resumed", data[300000:], true},
		{"resumed from a changed file", append([]byte{data[300000] ^ 1}, data[300001:]...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(partial)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			c, err := NewCheck("rootfs.tar.xz", kr, sig, sumHex(data))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(c, f); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			writeUneven(io.MultiWriter(&out, c), tc.rest)
			if tc.ok && c.SHA256() != sumHex(data) {
				t.Errorf("SHA256 before Finish: %s", c.SHA256())
			}
			err = c.Finish()
			if tc.ok != (err == nil) {
				t.Fatalf("Finish: %v", err)
			}
			if c.Size() != int64(len(data)) {
				t.Errorf("size %d", c.Size())
			}
		})
	}

	t.Run("restarted after a failed resume", func(t *testing.T) {
		c, err := NewCheck("rootfs.tar.xz", kr, sig, sumHex(data))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("bytes of the old copy"))
		c.Reset()
		writeUneven(c, data)
		if err := c.Finish(); err != nil {
			t.Fatal(err)
		}
		c.Reset()
		c.Write(data[1:])
		if err := c.Finish(); err == nil {
			t.Fatal("Reset kept the old verdict")
		}
	})
}

func TestParseSHA256SUMS(t *testing.T) {
	h1, h2, h3 := sumHex([]byte("1")), sumHex([]byte("2")), sumHex([]byte("3"))
	in := h1 + "  meta.tar.xz\n" +
		strings.ToUpper(h2) + " *./rootfs.tar.xz\n" +
		`\` + h3 + `  dir/odd\\name` + "\n" +
		h3 + "  ././rootfs.squashfs" // no final newline
	got, err := ParseSHA256SUMS([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"meta.tar.xz": h1, "rootfs.tar.xz": h2, `dir/odd\name`: h3, "rootfs.squashfs": h3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if got, err := ParseSHA256SUMS(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty file: %v, %v", got, err)
	}

	for _, tc := range []struct {
		name, in, err string
	}{
		{"one space", h1 + " meta.tar.xz\n", `SHA256SUMS line 1: malformed line, want "HEX  NAME": "` + h1 + ` meta.tar.xz"`},
		{"tab", h1 + "\tmeta.tar.xz\n", "SHA256SUMS line 1: malformed line"},
		{"short hash", h1[:63] + "  meta.tar.xz\n", "SHA256SUMS line 1: malformed line"},
		{"not hex", "z" + h1[1:] + "  meta.tar.xz\n", "SHA256SUMS line 1: malformed SHA256, want 64 hex digits"},
		{"SHA512 line", sumHex(nil) + sumHex(nil) + "  meta.tar.xz\n", "SHA256SUMS line 1: malformed line"},
		{"no name", h1 + "  \n", "SHA256SUMS line 1: no file name"},
		{"only ./", h1 + "  ./\n", "SHA256SUMS line 1: no file name"},
		{"blank line", h1 + "  a\n\n" + h2 + "  b\n", "SHA256SUMS line 2: malformed line"},
		{"CRLF", h1 + "  meta.tar.xz\r\n", `SHA256SUMS line 1: control character '\r' in the file name`},
		{"escaped newline", `\` + h1 + `  a\nb` + "\n", `SHA256SUMS line 1: control character '\n' in the file name`},
		{"unknown escape", `\` + h1 + `  a\tb` + "\n", `SHA256SUMS line 1: unknown escape \t in the file name`},
		{"lone backslash", `\` + h1 + `  a\` + "\n", "SHA256SUMS line 1: file name ends in a lone backslash"},
		{"duplicate", h1 + "  meta.tar.xz\n" + h2 + "  ./meta.tar.xz\n", `SHA256SUMS line 2: "meta.tar.xz" is listed twice`},
		{"BSD style", "SHA256 (meta.tar.xz) = " + h1 + "\n", "SHA256SUMS line 1: BSD-style (--tag) line"},
		{"third line", h1 + "  a\n" + h2 + "  b\n" + "garbage\n", `SHA256SUMS line 3: malformed line, want "HEX  NAME": "garbage"`},
		{"long line", h1 + "  " + strings.Repeat("n", sha256sumsMaxLine) + "\n", "SHA256SUMS line 1: line longer than 4096 bytes: \"" + h1 + "  nnn"},
		{"too big", strings.Repeat(h1+"  "+strings.Repeat("n", 1000)+"\n", 1100), "SHA256SUMS is larger than 1024 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSHA256SUMS([]byte(tc.in))
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Fatalf("got %v, %v; want error %q", got, err, tc.err)
			}
		})
	}

	var many strings.Builder
	for i := range sha256sumsMaxEntries + 1 {
		fmt.Fprintf(&many, "%s  f%d\n", h1, i)
	}
	if _, err := ParseSHA256SUMS([]byte(many.String())); err == nil || err.Error() != "SHA256SUMS has more than 10000 entries" {
		t.Fatalf("too many entries: %v", err)
	}
}

func TestLookupSHA256(t *testing.T) {
	sums := map[string]string{"rootfs.tar.xz": sumHex(nil)}
	if got, err := LookupSHA256(sums, "rootfs.tar.xz"); err != nil || got != sumHex(nil) {
		t.Fatalf("got %q, %v", got, err)
	}
	_, err := LookupSHA256(sums, "meta.tar.xz")
	var ce *ChecksumError
	if err == nil || err.Error() != "meta.tar.xz is not listed in SHA256SUMS" || !errors.As(err, &ce) || !ce.Unlisted || !errors.Is(err, ErrChecksum) {
		t.Fatalf("unlisted: %v", err)
	}
}

// TestSHA256SUMSFlow is how an image directory with a signed SHA256SUMS
// is checked: the signature of SHA256SUMS, then each file's digest while
// it downloads.
func TestSHA256SUMSFlow(t *testing.T) {
	signer := pgpNewKey(t, "signer", nil)
	kr := pgpKeyring(t, signer)
	rootfs, meta := []byte("the rootfs"), []byte("the meta")
	sumsFile := []byte(sumHex(rootfs) + "  rootfs.tar.xz\n" + sumHex([]byte("another meta")) + "  meta.tar.xz\n")
	sumsSig := pgpSign(t, signer, sumsFile, nil)

	if err := VerifyDetached(kr, "SHA256SUMS", sumsFile, sumsSig); err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(sumsFile, []byte(sumHex([]byte("another meta"))), []byte(sumHex(meta)), 1)
	wantSigErr(t, VerifyDetached(kr, "SHA256SUMS", forged, sumsSig), "SHA256SUMS", "does not match")

	sums, err := ParseSHA256SUMS(sumsFile)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, data []byte) error {
		want, err := LookupSHA256(sums, name)
		if err != nil {
			return err
		}
		c, err := NewCheck(name, kr, nil, want)
		if err != nil {
			return err
		}
		writeUneven(c, data)
		return c.Finish()
	}
	if err := check("rootfs.tar.xz", rootfs); err != nil {
		t.Fatal(err)
	}
	// SHA256SUMS disagrees with the file.
	want := "SHA256 mismatch for meta.tar.xz: expected " + sumHex([]byte("another meta")) + ", got " + sumHex(meta)
	if err := check("meta.tar.xz", meta); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	if err := check("rootfs.squashfs", rootfs); err == nil || err.Error() != "rootfs.squashfs is not listed in SHA256SUMS" {
		t.Fatalf("got %v", err)
	}
}

func FuzzParseSHA256SUMS(f *testing.F) {
	h := sumHex([]byte("seed"))
	for _, seed := range []string{
		h + "  rootfs.tar.xz\n" + h + "  meta.tar.xz\n",
		h + " *./rootfs.tar.xz\n",
		`\` + h + `  a\\b` + "\n",
		h + " rootfs.tar.xz\n",
		"SHA256 (rootfs.tar.xz) = " + h + "\n",
		h + "  rootfs.tar.xz\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sums, err := ParseSHA256SUMS(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "SHA256SUMS ") {
				t.Fatalf("error does not name SHA256SUMS: %v", err)
			}
			return
		}
		// Whatever is accepted is well formed, and reads back the same
		// when written out the way sha256sum writes it.
		var out strings.Builder
		for name, sum := range sums {
			if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size || strings.ToLower(sum) != sum {
				t.Fatalf("digest %q for %q", sum, name)
			}
			if name == "" || strings.HasPrefix(name, "./") || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("name %q", name)
			}
			line := sum + "  " + name
			if strings.Contains(name, `\`) {
				line = `\` + sum + "  " + strings.ReplaceAll(name, `\`, `\\`)
			}
			if len(line) > sha256sumsMaxLine {
				return // escaping made it longer than a line may be
			}
			out.WriteString(line + "\n")
		}
		if out.Len() > sha256sumsMaxSize {
			return
		}
		again, err := ParseSHA256SUMS([]byte(out.String()))
		if err != nil || !maps.Equal(sums, again) {
			t.Fatalf("round trip: %v\n%v\n%v", err, sums, again)
		}
	})
}

// fuzzSigner is the key of FuzzVerifyDetached: the same in every run, so
// the seed corpus in testdata can hold signatures it made.
func fuzzSigner(t testing.TB) (*openpgp.Entity, *packet.Config) {
	noSalt := false
	return pgpSeededKey(t, 1), &packet.Config{
		Time:                                  func() time.Time { return pgpEpoch.Add(time.Hour) },
		DefaultHash:                           crypto.SHA256,
		NonDeterministicSignaturesViaNotation: &noSalt,
	}
}

// fuzzSigned are the only messages fuzzSigner ever signs.
var fuzzSigned = [][]byte{
	nil,
	[]byte("debian;bookworm;amd64;default;20240101_05:24;/images/debian/bookworm/amd64/default/20240101_05:24/\n"),
	[]byte("rootfs"),
}

func FuzzVerifyDetached(f *testing.F) {
	key, cfg := fuzzSigner(f)
	kr := pgpKeyring(f, key)
	for _, m := range fuzzSigned {
		var bin bytes.Buffer
		if err := openpgp.DetachSign(&bin, key, bytes.NewReader(m), cfg); err != nil {
			f.Fatal(err)
		}
		armored := pgpSign(f, key, m, cfg)
		f.Add(m, armored)
		f.Add(m, bin.Bytes())
		f.Add(append(bytes.Clone(m), 'x'), armored)
	}
	f.Fuzz(func(t *testing.T, data, sig []byte) {
		err := VerifyDetached(kr, "index-system.7", data, sig)
		// The streaming check, fed in two writes, must agree.
		c, cerr := NewCheck("index-system.7", kr, sig, "")
		if cerr == nil {
			c.Write(data[:len(data)/2])
			c.Write(data[len(data)/2:])
			cerr = c.Finish()
		}
		if (err == nil) != (cerr == nil) {
			t.Fatalf("VerifyDetached: %v; Check: %v", err, cerr)
		}
		if err == nil {
			for _, m := range fuzzSigned {
				if bytes.Equal(m, data) {
					return
				}
			}
			t.Fatalf("accepted data the key never signed: %q", data)
		}
		var se *SignatureError
		if !errors.As(err, &se) || err.Error() != "Invalid signature for index-system.7" || se.Reason == nil {
			t.Fatalf("error %v (%T)", err, err)
		}
	})
}

// BenchmarkCheck measures the verification cost a download pays per byte,
// for a file with a signature (SHA256 or SHA512) and a SHA256SUMS entry.
func BenchmarkCheck(b *testing.B) {
	signer := pgpNewKey(b, "signer", nil)
	kr := pgpKeyring(b, signer)
	data := make([]byte, 8<<20)
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA512} {
		sig := pgpSign(b, signer, data, &packet.Config{DefaultHash: h})
		b.Run(h.String(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				c, err := NewCheck("rootfs.tar.xz", kr, sig, sumHex(data))
				if err != nil {
					b.Fatal(err)
				}
				for p := data; len(p) > 0; p = p[32<<10:] {
					c.Write(p[:32<<10])
				}
				if err := c.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

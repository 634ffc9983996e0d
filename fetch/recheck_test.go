package fetch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
)

// TestRecheck: a cached file is trusted again only through evidence that
// still verifies with the keyring, and only as the bytes it vouches for.
func TestRecheck(t *testing.T) {
	signer, stranger := pgpNewKey(t, "signer", nil), pgpNewKey(t, "stranger", nil)
	kr := pgpKeyring(t, signer)
	rootfs := []byte("the rootfs tarball")
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	sums := []byte(fmt.Sprintf("%s  rootfs.tar.xz\n%s  meta.tar.xz\n", sum(rootfs), sum([]byte("meta"))))
	withSums := Evidence{SHA256SUMS: sums, SHA256SUMSSig: pgpSign(t, signer, sums, nil)}

	if c, err := Recheck(kr, withSums, "rootfs.tar.xz", sum(rootfs)); err != nil || c != nil {
		t.Errorf("signed sums naming the file: %v, %v; want nil, nil", c, err)
	}
	var ce *ChecksumError
	if _, err := Recheck(kr, withSums, "rootfs.tar.xz", sum([]byte("other"))); !errors.As(err, &ce) {
		t.Errorf("a recorded sum the signed sums disagree with: %v, want a *ChecksumError", err)
	}
	var se *SignatureError
	forged := Evidence{SHA256SUMS: sums, SHA256SUMSSig: pgpSign(t, stranger, sums, nil)}
	if _, err := Recheck(kr, forged, "rootfs.tar.xz", sum(rootfs)); !errors.As(err, &se) {
		t.Errorf("sums signed by another key: %v, want a *SignatureError", err)
	}
	altered := Evidence{SHA256SUMS: append([]byte("# edited\n"), sums...), SHA256SUMSSig: withSums.SHA256SUMSSig}
	if _, err := Recheck(kr, altered, "rootfs.tar.xz", sum(rootfs)); !errors.As(err, &se) {
		t.Errorf("sums changed after signing: %v, want a *SignatureError", err)
	}
	if _, err := Recheck(kr, Evidence{}, "rootfs.tar.xz", sum(rootfs)); !errors.As(err, &se) {
		t.Errorf("no evidence at all: %v, want a *SignatureError", err)
	}

	// Only the file's own signature: the bytes themselves must be read.
	sigOnly := Evidence{Signatures: map[string][]byte{"rootfs.tar.xz": pgpSign(t, signer, rootfs, nil)}}
	c, err := Recheck(kr, sigOnly, "rootfs.tar.xz", sum(rootfs))
	if err != nil || c == nil {
		t.Fatalf("signature only: %v, %v; want a Check", c, err)
	}
	c.Write(rootfs)
	if err := c.Finish(); err != nil {
		t.Errorf("the signed bytes: %v", err)
	}
	c, _ = Recheck(kr, sigOnly, "rootfs.tar.xz", sum(rootfs))
	c.Write([]byte("tampered"))
	if err := c.Finish(); !errors.As(err, &se) {
		t.Errorf("other bytes: %v, want a *SignatureError", err)
	}
	if _, err := Recheck(pgpKeyring(t, stranger), sigOnly, "rootfs.tar.xz", sum(rootfs)); !errors.As(err, &se) {
		t.Errorf("signature by a key no longer trusted: %v, want a *SignatureError", err)
	}
}

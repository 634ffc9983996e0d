package fetchtest

import (
	"bytes"
	"crypto"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// keyConfig makes EdDSA (ed25519) keys: generating one takes microseconds
// where RSA takes a good part of a second, and every test server has its
// own key. Signatures use SHA-256, like the image server's.
var keyConfig = &packet.Config{
	Algorithm:   packet.PubKeyAlgoEdDSA,
	Curve:       packet.Curve25519,
	DefaultHash: crypto.SHA256,
}

// NewKey makes an OpenPGP signing key (EdDSA over ed25519, with an ECDH
// encryption subkey) whose identity is name <name@fetchtest.invalid>.
func NewKey(name string) (*openpgp.Entity, error) {
	e, err := openpgp.NewEntity(name, "fetchtest", name+"@fetchtest.invalid", keyConfig)
	if err != nil {
		return nil, fmt.Errorf("new openpgp key %s: %w", name, err)
	}
	return e, nil
}

// Sign is the armored detached signature of data by key, what
// `gpg --armor --detach-sign` writes next to each file on the image
// server. It panics if key cannot sign (it has no private key).
func Sign(key *openpgp.Entity, data []byte) []byte {
	var buf bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&buf, key, bytes.NewReader(data), keyConfig); err != nil {
		panic(fmt.Sprintf("fetchtest: sign with %X: %v", key.PrimaryKey.Fingerprint, err))
	}
	return buf.Bytes()
}

// SignAt is Sign with a signature that says it was made at t, which may be
// before the key was made or in the future: a replayed old signature, or
// one from a server whose clock is ahead of the client's.
func SignAt(key *openpgp.Entity, data []byte, t time.Time) []byte {
	pk := key.PrimaryKey
	sig := &packet.Signature{
		Version:           pk.Version,
		SigType:           packet.SigTypeBinary,
		PubKeyAlgo:        pk.PubKeyAlgo,
		Hash:              crypto.SHA256,
		CreationTime:      t,
		IssuerKeyId:       &pk.KeyId,
		IssuerFingerprint: pk.Fingerprint,
	}
	cfg := &packet.Config{DefaultHash: crypto.SHA256, Time: func() time.Time { return t }}
	h, err := sig.PrepareSign(cfg)
	if err == nil {
		h.Write(data)
		err = sig.Sign(h, key.PrivateKey, cfg)
	}
	var buf bytes.Buffer
	var w io.WriteCloser
	if err == nil {
		w, err = armor.Encode(&buf, openpgp.SignatureType, nil)
	}
	if err == nil {
		err = sig.Serialize(w)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		panic(fmt.Sprintf("fetchtest: sign with %X at %v: %v", pk.Fingerprint, t, err))
	}
	return buf.Bytes()
}

// ArmoredPublicKey is key's public part, armored, as `gpg --export --armor`
// writes it and as an HKP keyserver answers for it.
func ArmoredPublicKey(key *openpgp.Entity) []byte {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err == nil {
		err = key.Serialize(w)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		panic(fmt.Sprintf("fetchtest: serialize key %X: %v", key.PrimaryKey.Fingerprint, err))
	}
	return buf.Bytes()
}

// Fingerprint is key's fingerprint in upper-case hexadecimal, the form
// --keyid takes.
func Fingerprint(key *openpgp.Entity) string {
	return fmt.Sprintf("%X", key.PrimaryKey.Fingerprint)
}

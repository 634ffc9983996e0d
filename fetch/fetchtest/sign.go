package fetchtest

import (
	"bytes"
	"crypto"
	"fmt"

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

package fetch

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	pathpkg "path"
	"path/filepath"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// A file and its detached signature are two requests, and a server that
// replaces both (a mirror publishing a new index) can answer one before
// the switch and the other after it: whatever order the two renames are
// made in, a reader whose requests straddle them gets a pair that does not
// match. No server can prevent that, so the reader makes up for it: a pair
// that does not verify is read once more, after a pause in which a mirror
// has long finished its switch, and only a second failure counts. A
// signature that is genuinely bad fails twice, so nothing is accepted that
// was not accepted before.

// fetchSignedPair fetches path and its detached signature sigPath from the
// primary server at once and verifies them, reading both again once when
// they do not match. With optional, a missing signature (404) is not an
// error: sig is nil then. name is the file as messages call it.
func (c *Client) fetchSignedPair(ctx context.Context, path, sigPath string, limit int64, optional bool) (data, sig []byte, signedAt time.Time, err error) {
	for attempt := 0; ; attempt++ {
		got := c.getSmallAll(ctx, []smallFile{{path, limit}, {sigPath, maxSignatureSize}})
		if data, err = got[0].data, got[0].err; err != nil {
			return nil, nil, time.Time{}, err
		}
		switch sig, err = got[1].data, got[1].err; {
		case optional && isNotFound(err):
			return data, nil, time.Time{}, nil
		case err != nil:
			return nil, nil, time.Time{}, err
		}
		// Name the file as the user knows it: "Invalid signature for
		// index-system.7", as the GPG-era template said.
		signedAt, err = verifyDetached(c.o.Keyring, pathpkg.Base(path), data, sig, c.o.now)
		if err == nil {
			return data, sig, signedAt, nil
		}
		if attempt > 0 || !errors.Is(err, ErrInvalidSignature) {
			return nil, nil, time.Time{}, err
		}
		c.verbose("%s and its signature do not match; reading both again (the server may have been replacing them)", c.urlFor(path))
		if serr := sleep(ctx, c.o.RetryWait); serr != nil {
			return nil, nil, time.Time{}, err
		}
	}
}

// SignedFile is a small file of the server, such as an index, with its
// detached signature, verified.
type SignedFile struct {
	// Path is the file's path below the server's prefix,
	// "/meta/1.0/index-system.7"; its signature is Path + ".asc".
	Path string
	// Data and Sig are the file and its signature as served.
	Data, Sig []byte
	// SignedAt is when the signature says it was made.
	SignedAt time.Time
}

// FetchSignedFile downloads path and path.asc from the primary server and
// verifies the signature with the keyring, as FetchIndex does for the
// index it picks (a pair that does not match is read once more), but for
// exactly the path given, with no fallback to another name and no age
// limit: a mirror takes every index variant the server publishes. It needs
// Options.Validate. A missing file or signature is a *StatusError with
// code 404 (IsNotFound).
func (c *Client) FetchSignedFile(ctx context.Context, path string) (*SignedFile, error) {
	if !c.o.Validate {
		return nil, errors.New("fetch a signed file: the client does not validate")
	}
	path = cleanPath(path)
	data, sig, at, err := c.fetchSignedPair(ctx, path, path+".asc", maxIndexSize, false)
	if err != nil {
		return nil, err
	}
	return &SignedFile{Path: path, Data: data, Sig: sig, SignedAt: at}, nil
}

// FetchFileSHA256 downloads path from the server (a mirror it redirects
// to included) into dir/name, as FetchImage downloads an image's files:
// through dir/name.partial, resumed from what an earlier call left there,
// within Options.MaxRootfsSize (Options.MaxMetaSize for meta.tar.xz) and
// the disk reserve, and renamed to dir/name only once its SHA256 is
// sha256Hex. A file whose digest differs is deleted and reported as a
// *ChecksumError. It needs Options.Validate: the digest must come from
// something the caller verified.
func (c *Client) FetchFileSHA256(ctx context.Context, path, dir, name, sha256Hex string) (File, error) {
	if !c.o.Validate {
		return File{}, errors.New("fetch a file by its SHA256: the client does not validate")
	}
	if name == "" || name != filepath.Base(name) || name[0] == '.' {
		return File{}, fmt.Errorf("fetch %s: bad file name %q", path, name)
	}
	f, err := c.fetchFile(ctx, cleanPath(path), name, dir, trust{sha256: sha256Hex}, newProgressUI(c.o.Progress, c.o.ProgressTerminal), nil)
	if err != nil {
		return File{}, err
	}
	final := filepath.Join(dir, name)
	if err := os.Rename(f.Path, final); err != nil {
		return File{}, fmt.Errorf("store %s: %w", name, err)
	}
	os.Remove(f.Path + ".info")
	f.Path = final
	return f, nil
}

// ReadSigningKey reads an OpenPGP secret key (armored or binary, as
// gpg --export-secret-keys writes it) that can sign, for a mirror that
// signs what it publishes. The key must not be protected by a passphrase:
// the program runs unattended.
func ReadSigningKey(path string) (*openpgp.Entity, error) {
	kr, err := ReadKeyring(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	for _, e := range kr {
		if e.PrivateKey == nil {
			continue
		}
		key, ok := e.SigningKey(time.Now())
		if !ok || key.PrivateKey == nil {
			continue
		}
		if key.PrivateKey.Encrypted {
			return nil, fmt.Errorf("read signing key %s: key %s is protected by a passphrase; export it without one (gpg --export-secret-keys after gpg --passwd with an empty passphrase, on a copy)", path, entityFingerprint(e))
		}
		return e, nil
	}
	return nil, fmt.Errorf("read signing key %s: no secret key that can sign (a public key only? export it with gpg --export-secret-keys)", path)
}

// SignDetached is key's armored detached signature of data, with SHA-512,
// in the form the image server publishes next to its files.
func SignDetached(key *openpgp.Entity, data []byte) ([]byte, error) {
	var buf bytes.Buffer
	cfg := &packet.Config{DefaultHash: crypto.SHA512}
	if err := openpgp.ArmoredDetachSign(&buf, key, bytes.NewReader(data), cfg); err != nil {
		return nil, fmt.Errorf("sign with key %s: %w", entityFingerprint(key), err)
	}
	return buf.Bytes(), nil
}

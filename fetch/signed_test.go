package fetch_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// TestIndexPairReadAgain: an index and a signature that do not match
// because the server was replacing them (the client's two requests
// straddled the switch) are read again, and the settled pair verifies; a
// pair that still does not match is refused, after the second reading.
// The streams' pairs are read the same way.
func TestIndexPairReadAgain(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, path, sigPath string
		fetch               func(*fetch.Client) error
	}{
		{"index", "/meta/1.0/index-system.7", "/meta/1.0/index-system.7.asc", func(c *fetch.Client) error {
			_, err := c.FetchIndex(ctx, compat.System)
			return err
		}},
		{"streams", fetchtest.StreamsImagesPath, fetchtest.StreamsImagesPath + fetchtest.StreamsSignatureSuffix, func(c *fetch.Client) error {
			_, err := c.FetchStreams(ctx)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			if err := r.srv.EnableStreams(fetchtest.StreamsOptions{}); err != nil {
				t.Fatal(err)
			}
			old, _ := r.srv.Get(c.path)
			// The new file is there, its signature not yet; the old file
			// is back (its signature matching again) as soon as the
			// client has been answered both.
			r.srv.Set(c.path, append(bytes.Clone(old), '\n'))
			n, nData := len(r.srv.RequestsFor(c.sigPath)), len(r.srv.RequestsFor(c.path))
			answered := func(p string, after int) bool {
				for _, q := range r.srv.RequestsFor(p)[after:] {
					if q.Status != 0 {
						return true
					}
				}
				return false
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					if answered(c.sigPath, n) && answered(c.path, nData) {
						r.srv.Set(c.path, old)
						return
					}
				}
			}()
			err := c.fetch(r.client(func(o *fetch.Options) { o.RetryWait = 300 * time.Millisecond }))
			<-done
			if err != nil {
				t.Fatalf("the settled pair: %v", err)
			}
			if got := len(r.srv.RequestsFor(c.sigPath)) - n; got != 2 {
				t.Errorf("the signature was read %d times, want 2", got)
			}
			if !bytes.Contains([]byte(r.verbose.String()), []byte("reading both again")) {
				t.Errorf("--verbose does not say why it read them again: %q", r.verbose.String())
			}

			// A pair that never matches: refused after two readings.
			r.srv.Set(c.path, append(bytes.Clone(old), '\n'))
			n = len(r.srv.RequestsFor(c.sigPath))
			err = c.fetch(r.client())
			if !errors.Is(err, fetch.ErrInvalidSignature) {
				t.Errorf("a pair that does not match: %v", err)
			}
			if got := len(r.srv.RequestsFor(c.sigPath)) - n; got != 2 {
				t.Errorf("the signature was read %d times, want 2", got)
			}
		})
	}
}

// TestFetchSignedFile: exactly the path asked for, with its signature,
// verified; a missing one is a 404, with no fallback; a signature that
// does not match is refused; without validation it is refused outright.
func TestFetchSignedFile(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	c := r.client()
	f, err := c.FetchSignedFile(ctx, "meta/1.0/index-user")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := r.srv.Get("/meta/1.0/index-user")
	sig, _ := r.srv.Get("/meta/1.0/index-user.asc")
	if f.Path != "/meta/1.0/index-user" || !bytes.Equal(f.Data, data) || !bytes.Equal(f.Sig, sig) || time.Since(f.SignedAt) > time.Hour {
		t.Errorf("got %+v", f)
	}
	r.srv.Remove("/meta/1.0/index-user.7")
	if _, err := c.FetchSignedFile(ctx, "/meta/1.0/index-user.7"); !fetch.IsNotFound(err) {
		t.Errorf("a missing file: %v", err)
	}
	r.srv.Set("/meta/1.0/index-user", []byte("x;y;z;w;1;/images/x/\n"))
	_, err = c.FetchSignedFile(ctx, "/meta/1.0/index-user")
	wantErr(t, err, "Invalid signature for index-user")
	if _, err := r.client(func(o *fetch.Options) { o.Validate = false }).FetchSignedFile(ctx, "/meta/1.0/index-system"); err == nil {
		t.Error("no validation, no error")
	}
}

// TestFetchFileSHA256: a file is renamed into place only when its SHA256
// is the one given; a partial file left by an interrupted call is resumed;
// a file that does not match is deleted and reported.
func TestFetchFileSHA256(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	c := r.client()
	body := bytes.Repeat([]byte("incus metadata "), 10000)
	r.srv.Set("/images/x/incus.tar.xz", body)
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])

	r.srv.DropAfter("/images/x/incus.tar.xz", int64(len(body)/3), 1)
	f, err := c.FetchFileSHA256(ctx, "/images/x/incus.tar.xz", r.dir, "incus.tar.xz", want)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(r.dir, "incus.tar.xz")); !bytes.Equal(got, body) || f.SHA256 != want || f.Size != int64(len(body)) {
		t.Errorf("got %+v", f)
	}
	reqs := r.srv.RequestsFor("/images/x/incus.tar.xz")
	if len(reqs) != 2 || reqs[1].Range == "" {
		t.Errorf("the dropped download was not resumed: %+v", reqs)
	}

	other := sha256.Sum256([]byte("other"))
	_, err = c.FetchFileSHA256(ctx, "/images/x/incus.tar.xz", r.dir, "lxd.tar.xz", hex.EncodeToString(other[:]))
	var ce *fetch.ChecksumError
	if !errors.As(err, &ce) {
		t.Errorf("a file that does not match: %v", err)
	}
	for _, n := range []string{"lxd.tar.xz", "lxd.tar.xz.partial"} {
		if _, err := os.Stat(filepath.Join(r.dir, n)); err == nil {
			t.Errorf("%s is left", n)
		}
	}
	if _, err := c.FetchFileSHA256(ctx, "/images/x/incus.tar.xz", r.dir, "../x", want); err == nil {
		t.Error("a name with a slash is taken")
	}
}

// TestSigningKey: a secret key signs what verifies with its public part;
// a public key, or a secret key under a passphrase, is refused with a
// message that says what to do.
func TestSigningKey(t *testing.T) {
	key, err := fetchtest.NewKey("operator")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, serialize func(w *bytes.Buffer) error, blockType string) string {
		var buf bytes.Buffer
		w, err := armor.Encode(&buf, blockType, nil)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		if err := serialize(&body); err != nil {
			t.Fatal(err)
		}
		w.Write(body.Bytes())
		w.Close()
		p := filepath.Join(dir, name)
		os.WriteFile(p, buf.Bytes(), 0o600)
		return p
	}
	secret := write("secret.asc", func(b *bytes.Buffer) error { return key.SerializePrivate(b, nil) }, openpgp.PrivateKeyType)
	signer, err := fetch.ReadSigningKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("debian;bookworm;amd64;default;20261120_05:24;/images/debian/bookworm/amd64/default/20261120_05:24/\n")
	sig, err := fetch.SignDetached(signer, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := fetch.VerifyDetached(openpgp.EntityList{key}, "index", data, sig); err != nil {
		t.Errorf("the signature does not verify: %v", err)
	}
	if !bytes.HasPrefix(sig, []byte("-----BEGIN PGP SIGNATURE-----")) {
		t.Errorf("not armored: %q", sig)
	}

	public := filepath.Join(dir, "public.asc")
	os.WriteFile(public, fetchtest.ArmoredPublicKey(key), 0o644)
	_, err = fetch.ReadSigningKey(public)
	wantErr(t, err, "no secret key that can sign")

	locked, err := fetchtest.NewKey("locked")
	if err != nil {
		t.Fatal(err)
	}
	if err := locked.EncryptPrivateKeys([]byte("passphrase"), nil); err != nil {
		t.Fatal(err)
	}
	lockedPath := write("locked.asc", func(b *bytes.Buffer) error { return locked.SerializePrivateWithoutSigning(b, nil) }, openpgp.PrivateKeyType)
	_, err = fetch.ReadSigningKey(lockedPath)
	wantErr(t, err, "protected by a passphrase")
}

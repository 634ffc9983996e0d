package cmd_test

// End-to-end proof of issue 3 (trust), through the real binary run as
// lxc-create runs it: what the user sees (SPEC 9), the exit status, and that
// nothing unverified reaches the cache or the rootfs. Each attack is built
// so that, were verification skipped, the run would succeed with the
// attacker's image (a rootfs holding etc/evil): the tests then fail on the
// exit status, the rootfs check or the cache check.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// evilBuild is the build an attacker pushes.
const evilBuild = "20261121_00:00"

// evilImage is the default image with a file an attacker added, under
// build.
func evilImage(build string) fetchtest.Image {
	img := fetchtest.DefaultImage()
	img.Build = build
	img.Rootfs = append(img.Rootfs, fetchtest.File{Name: "./etc/evil", Mode: 0o644, Body: "pwned\n"})
	return img
}

// evilRootfs is a well-formed rootfs.tar.xz that the signing key never
// signed.
func evilRootfs(t *testing.T) []byte {
	t.Helper()
	b, err := fetchtest.RootfsTarball(evilImage(fetchtest.DefaultImage().Build))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// defaultDir is the default image's directory on the server.
var defaultDir = fetchtest.ImageDir(fetchtest.DefaultImage())

// imageArgs are the image arguments of env.image without its --keyring.
func imageArgs(e *env, extra ...string) []string {
	return append([]string{"-d", "debian", "-r", "bookworm", "-a", "amd64", "--server", e.srv.Host}, extra...)
}

// runWithEnv is env.run with extra environment variables.
func runWithEnv(e *env, extra []string, args ...string) result {
	e.t.Helper()
	full := append([]string{"--path=" + e.path, "--name=" + e.name, "--rootfs=" + e.rootfs}, args...)
	return e.runWithEnv(extra, binary, full...)
}

// stderrLines are the lines of stderr that start with prefix and contain
// every one of subs.
func stderrLines(r result, prefix string, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// mustSucceed checks a run that must create the container from the genuine
// default image.
func mustSucceed(t *testing.T, e *env, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("run failed:\n%s", r)
	}
	if l := stderrLines(r, "ERROR"); len(l) != 0 {
		t.Errorf("ERROR lines in a successful run:\n%s", r)
	}
	checkRootfs(t, e.rootfs, fetchtest.DefaultRootfs())
	noEvil(t, e.rootfs)
}

// noEvil checks that the attacker's file is not in rootfs.
func noEvil(t *testing.T, rootfs string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/evil")); err == nil {
		t.Errorf("the attacker's etc/evil is in the rootfs %s", rootfs)
	}
}

// wantErrorLine checks that stderr holds exactly the line ERROR: msg.
func wantErrorLine(t *testing.T, r result, msg string) {
	t.Helper()
	for _, l := range stderrLines(r, "ERROR: ") {
		if l == "ERROR: "+msg {
			return
		}
	}
	t.Errorf("want the line %q on stderr\n%s", "ERROR: "+msg, r)
}

// cacheFiles reads every regular file under the cache, by path relative
// to it.
func cacheFiles(t *testing.T, e *env) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(e.cache, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == e.cache {
			return fs.SkipAll
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(e.cache, p)
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// noUnverifiedInCache checks that the bytes bad are nowhere in the cache,
// whole or as a download kept to resume, and that no entry was made unless
// one was there before (hadEntry).
func noUnverifiedInCache(t *testing.T, e *env, bad []byte, hadEntry bool) {
	t.Helper()
	entry, _ := filepath.Rel(e.cache, filepath.Join(e.cacheDir(), "rootfs.tar.xz"))
	for rel, b := range cacheFiles(t, e) {
		if bad != nil && bytes.Equal(b, bad) {
			t.Errorf("the unverified file is in the cache as %s", rel)
		}
		if strings.HasPrefix(filepath.Base(rel), "rootfs.tar.xz") && (rel != entry || !hadEntry) {
			t.Errorf("cache holds %s after the run failed", rel)
		}
	}
}

// TestTrustKeyringNoKeyserver: a --keyring that holds the key is all that
// is needed; no keyserver is asked, not the one given, not the default one.
func TestTrustKeyringNoKeyserver(t *testing.T) {
	t.Parallel()
	t.Run("keyserver without keyid", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ks := newKeyserver(t, e.srv.Key)
		r := e.run(e.image("--keyserver", ks.URL)...)
		mustSucceed(t, e, r)
		if !strings.HasPrefix(r.stdout, "Setting up the GPG keyring\n") {
			t.Errorf("stdout does not start with Setting up the GPG keyring:\n%s", r)
		}
		if n := len(ks.Requests()); n != 0 {
			t.Errorf("%d requests to the keyserver, want none", n)
		}
		if w := stderrLines(r, "WARNING"); len(w) != 0 {
			t.Errorf("warnings: %q", w)
		}
	})
	t.Run("keyid in keyring, default keyserver", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// The default keyserver is a public host, so it would be reached
		// through a proxy from the environment (the image server, on
		// loopback, never is): a proxy that notes each connection shows
		// whether it was asked.
		proxy := newTripwire(t)
		env := []string{"HTTPS_PROXY=" + proxy.URL, "https_proxy=" + proxy.URL, "HTTP_PROXY=" + proxy.URL,
			"http_proxy=" + proxy.URL, "NO_PROXY=", "no_proxy="}
		r := runWithEnv(e, env, e.image("--keyid", fetchtest.Fingerprint(e.srv.Key))...)
		mustSucceed(t, e, r)
		if !strings.Contains(r.stdout, "Setting up the GPG keyring\n") {
			t.Errorf("no Setting up the GPG keyring:\n%s", r)
		}
		if w := stderrLines(r, "WARNING"); len(w) != 0 {
			t.Errorf("warnings: %q", w)
		}
		if n := proxy.count(); n != 0 {
			t.Errorf("%d connections through the proxy (to the default keyserver), want none", n)
		}
	})
}

// tripwire is a listener that counts the connections it gets and closes
// them, for use as a proxy that must not be used.
type tripwire struct {
	URL string
	mu  sync.Mutex
	n   int
}

func newTripwire(t *testing.T) *tripwire {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	w := &tripwire{URL: "http://" + l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			w.mu.Lock()
			w.n++
			w.mu.Unlock()
			c.Close()
		}
	}()
	return w
}

func (w *tripwire) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func newKeyserver(t *testing.T, keys ...*openpgp.Entity) *fetchtest.Keyserver {
	t.Helper()
	ks, err := fetchtest.NewKeyserver(keys...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Close)
	return ks
}

// writeKeyring writes key's public part, armored, to a new file in dir.
func writeKeyring(t *testing.T, dir string, key *openpgp.Entity) string {
	t.Helper()
	p := filepath.Join(dir, "keyring-"+fetchtest.Fingerprint(key)[:8]+".asc")
	if err := os.WriteFile(p, fetchtest.ArmoredPublicKey(key), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t *testing.T, name string) *openpgp.Entity {
	t.Helper()
	k, err := fetchtest.NewKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTrustTamperedIndex: an index changed after signing, pointing at an
// image whose own files are signed (a replayed or older build), is refused
// before anything else is fetched.
func TestTrustTamperedIndex(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) *env {
		e := newEnv(t)
		if err := e.srv.AddImage(evilImage(evilBuild)); err != nil {
			t.Fatal(err)
		}
		return e
	}
	evilIndex := []byte(fetchtest.Index(evilImage(evilBuild)))
	t.Run("compat index", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.srv.Set("/meta/1.0/index-system.7", evilIndex)
		r := e.run(e.image()...)
		e.mustFail(r, "Invalid signature for")
		wantErrorLine(t, r, "Invalid signature for index-system.7")
		if n := len(e.srv.RequestsFor("/meta/1.0/index-system")); n != 0 {
			t.Errorf("fell back to the plain index after a bad signature (%d requests)", n)
		}
		for _, q := range e.srv.Requests() {
			if strings.HasPrefix(q.Path, "/images/") {
				t.Errorf("fetched %s after the index failed verification", q.Path)
			}
		}
		noUnverifiedInCache(t, e, nil, false)
	})
	t.Run("plain index", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.srv.Remove("/meta/1.0/index-system.7")
		e.srv.Set("/meta/1.0/index-system", evilIndex)
		r := e.run(e.image()...)
		e.mustFail(r, "Invalid signature for")
		wantErrorLine(t, r, "Invalid signature for index-system")
		noUnverifiedInCache(t, e, nil, false)
	})
	t.Run("list", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		e.srv.Set("/meta/1.0/index-system.7", evilIndex)
		r := e.runRaw("--list", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
		e.mustFail(r, "Invalid signature for")
		if strings.Contains(r.stdout, evilBuild) {
			t.Errorf("listed the forged index:\n%s", r)
		}
	})
}

// TestTrustTamperedRootfs: a rootfs changed after signing is refused, is
// not kept, and leaves the previous cache entry as it was.
func TestTrustTamperedRootfs(t *testing.T) {
	t.Parallel()
	t.Run("fresh", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		bad := evilRootfs(t)
		e.srv.Set(defaultDir+"rootfs.tar.xz", bad)
		r := e.run(e.image()...)
		e.mustFail(r, "rootfs.tar.xz")
		wantErrorLine(t, r, "Invalid signature for rootfs.tar.xz")
		if strings.Contains(r.stdout, "The image cache is now ready") {
			t.Errorf("claims to have cached the image:\n%s", r)
		}
		noUnverifiedInCache(t, e, bad, false)
	})
	t.Run("keeps old cache", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		mustSucceed(t, e, e.run(e.image()...))
		// The server publishes a new build, properly indexed, whose rootfs
		// was then replaced.
		next := fetchtest.DefaultImage()
		next.Build = evilBuild
		if err := e.srv.AddImage(next); err != nil {
			t.Fatal(err)
		}
		e.srv.SetIndex(fetchtest.Index(next))
		bad := evilRootfs(t)
		e.srv.Set(fetchtest.ImageDir(next)+"rootfs.tar.xz", bad)
		// The cached copy has expired, so the run asks the server.
		expire(t, e.cacheDir())
		before := cacheFiles(t, e)

		e.newContainer("c2")
		r := e.run(e.image()...)
		e.mustFail(r, "rootfs.tar.xz")
		wantErrorLine(t, r, "Invalid signature for rootfs.tar.xz")
		if !strings.Contains(r.stdout, "The cached copy has expired, re-downloading...\n") {
			t.Errorf("the run did not go to the server:\n%s", r)
		}
		noUnverifiedInCache(t, e, bad, true)
		after := cacheFiles(t, e)
		prefix, _ := filepath.Rel(e.cache, e.cacheDir())
		for rel, b := range before {
			if !strings.HasPrefix(rel, prefix+string(filepath.Separator)) {
				continue
			}
			if a, ok := after[rel]; !ok {
				t.Errorf("cache entry lost %s", rel)
			} else if !bytes.Equal(a, b) {
				t.Errorf("cache entry's %s changed", rel)
			}
		}
		for rel := range after {
			if _, ok := before[rel]; !ok && strings.HasPrefix(rel, prefix+string(filepath.Separator)) {
				t.Errorf("cache entry gained %s", rel)
			}
		}

		// The old entry is still usable.
		e.newContainer("c3")
		requests := len(e.srv.Requests())
		r = e.run(e.image("--force-cache")...)
		mustSucceed(t, e, r)
		if !strings.Contains(r.stdout, "Using image from local cache\n") {
			t.Errorf("did not use the cache:\n%s", r)
		}
		if n := len(e.srv.Requests()) - requests; n != 0 {
			t.Errorf("--force-cache made %d requests", n)
		}
	})
}

// TestTrustOtherKey: signatures by a key the user does not trust are
// refused, for the index and for a file whose SHA256SUMS line is fine.
func TestTrustOtherKey(t *testing.T) {
	t.Parallel()
	t.Run("index", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		other := writeKeyring(t, e.dir, newKey(t, "someone else"))
		r := e.run(imageArgs(e, "--keyring", other)...)
		e.mustFail(r, "Invalid signature for")
		wantErrorLine(t, r, "Invalid signature for index-system.7")
		noUnverifiedInCache(t, e, nil, false)
	})
	t.Run("rootfs signature", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// The attacker signs the genuine rootfs with their own key: the
		// signed SHA256SUMS still matches, but where both exist both must
		// hold.
		rootfs, _ := e.srv.Get(defaultDir + "rootfs.tar.xz")
		e.srv.Set(defaultDir+"rootfs.tar.xz.asc", fetchtest.Sign(newKey(t, "attacker"), rootfs))
		r := e.run(e.image()...)
		e.mustFail(r, "rootfs.tar.xz")
		wantErrorLine(t, r, "Invalid signature for rootfs.tar.xz")
		noUnverifiedInCache(t, e, rootfs, false)
	})
}

// TestTrustMissingSignature: without a signature nothing is trusted, unless
// the user said --no-validate.
func TestTrustMissingSignature(t *testing.T) {
	t.Parallel()
	t.Run("rootfs", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.srv.Remove(defaultDir + "rootfs.tar.xz.asc")
		e.srv.Remove(defaultDir + "SHA256SUMS.asc")
		// Unsigned sums prove nothing: they must not stand in for the
		// missing signature, even when they list a forged rootfs.
		bad := evilRootfs(t)
		e.srv.Set(defaultDir+"rootfs.tar.xz", bad)
		meta, _ := e.srv.Get(defaultDir + "meta.tar.xz")
		e.srv.Set(defaultDir+"SHA256SUMS", []byte(fmt.Sprintf("%x  meta.tar.xz\n%x  rootfs.tar.xz\n", sha256.Sum256(meta), sha256.Sum256(bad))))
		r := e.run(e.image()...)
		e.mustFail(r, "signature for rootfs.tar.xz")
		noUnverifiedInCache(t, e, bad, false)
	})
	t.Run("index", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.srv.Remove("/meta/1.0/index-system.7.asc")
		e.srv.Remove("/meta/1.0/index-system.asc")
		r := e.run(e.image()...)
		e.mustFail(r, "index-system.asc")
		noUnverifiedInCache(t, e, nil, false)
	})
	t.Run("compat index signature only", func(t *testing.T) {
		t.Parallel()
		// SPEC 4: a compat index without its signature gives way to the
		// plain pair.
		e := newEnv(t)
		e.srv.Remove("/meta/1.0/index-system.7.asc")
		mustSucceed(t, e, e.run(e.image()...))
		if len(e.srv.RequestsFor("/meta/1.0/index-system.asc")) == 0 {
			t.Error("the plain index's signature was not fetched")
		}
	})
	t.Run("no-validate", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, p := range e.srv.Paths() {
			if strings.HasSuffix(p, ".asc") {
				e.srv.Remove(p)
			}
		}
		e.srv.Remove(defaultDir + "SHA256SUMS")
		r := e.run(e.image("--no-validate")...)
		mustSucceed(t, e, r)
		if n := strings.Count(r.stderr, "WARNING: Running without gpg validation!\n"); n != 1 {
			t.Errorf("the --no-validate warning is on stderr %d times, want once:\n%s", n, r)
		}
		if strings.Contains(r.stdout, "WARNING") {
			t.Errorf("a warning on stdout:\n%s", r)
		}
		if strings.Contains(r.stdout, "Setting up the GPG keyring") {
			t.Errorf("set up a keyring without validation:\n%s", r)
		}
		for _, q := range e.srv.Requests() {
			if strings.HasSuffix(q.Path, ".asc") || strings.HasSuffix(q.Path, "SHA256SUMS") {
				t.Errorf("fetched %s without validation", q.Path)
			}
		}
	})
}

// TestTrustChecksum: a signed SHA256SUMS that disagrees with the file is a
// precise checksum error, whether or not the file has its own signature.
func TestTrustChecksum(t *testing.T) {
	t.Parallel()
	for _, keepSig := range []bool{false, true} {
		name := "sums only"
		if keepSig {
			name = "sums and signature"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rootfs, _ := e.srv.Get(defaultDir + "rootfs.tar.xz")
			meta, _ := e.srv.Get(defaultDir + "meta.tar.xz")
			wrong := sha256.Sum256([]byte("not the rootfs"))
			e.srv.SetSigned(defaultDir+"SHA256SUMS", []byte(fmt.Sprintf("%x  meta.tar.xz\n%x  rootfs.tar.xz\n", sha256.Sum256(meta), wrong)))
			if !keepSig {
				e.srv.Remove(defaultDir + "rootfs.tar.xz.asc")
			}
			r := e.run(e.image()...)
			e.mustFail(r, "rootfs.tar.xz")
			wantErrorLine(t, r, fmt.Sprintf("SHA256 mismatch for rootfs.tar.xz: expected %x, got %x", wrong, sha256.Sum256(rootfs)))
			noUnverifiedInCache(t, e, rootfs, false)
		})
	}
	t.Run("unlisted", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		meta, _ := e.srv.Get(defaultDir + "meta.tar.xz")
		e.srv.SetSigned(defaultDir+"SHA256SUMS", []byte(fmt.Sprintf("%x  meta.tar.xz\n", sha256.Sum256(meta))))
		e.srv.Remove(defaultDir + "rootfs.tar.xz.asc")
		r := e.run(e.image()...)
		e.mustFail(r, "rootfs.tar.xz is not listed in SHA256SUMS")
		noUnverifiedInCache(t, e, nil, false)
	})
}

// TestTrustKeyserver: --keyid with --keyserver or DOWNLOAD_KEYSERVER.
func TestTrustKeyserver(t *testing.T) {
	t.Parallel()
	// lookups are the keyserver's requests for fpr.
	lookups := func(ks *fetchtest.Keyserver, fpr string) int {
		n := 0
		for _, q := range ks.Requests() {
			if q.Path == fetchtest.LookupPath && strings.Contains(q.Query, "op=get") && strings.Contains(strings.ToUpper(q.Query), fpr) {
				n++
			}
		}
		return n
	}
	t.Run("fetched key replaces the built-in one", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ks := newKeyserver(t, e.srv.Key)
		fpr := fetchtest.Fingerprint(e.srv.Key)
		r := e.run(imageArgs(e, "--keyid", fpr, "--keyserver", ks.URL)...)
		mustSucceed(t, e, r)
		if !strings.HasPrefix(r.stdout, "Setting up the GPG keyring\n") {
			t.Errorf("stdout does not start with Setting up the GPG keyring:\n%s", r)
		}
		if w := stderrLines(r, "WARNING"); len(w) != 0 {
			t.Errorf("warnings: %q", w)
		}
		if n := lookups(ks, fpr); n != 1 {
			t.Errorf("%d lookups of %s, want 1: %+v", n, fpr, ks.Requests())
		}
		for _, q := range ks.Requests() {
			if !q.TLS {
				t.Errorf("keyserver asked over plain HTTP for %s", ks.URL)
			}
		}
	})
	t.Run("DOWNLOAD_KEYSERVER", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ks := newKeyserver(t, e.srv.Key)
		fpr := fetchtest.Fingerprint(e.srv.Key)
		r := runWithEnv(e, []string{"DOWNLOAD_KEYSERVER=" + ks.HKPS}, imageArgs(e, "--keyid", fpr)...)
		mustSucceed(t, e, r)
		if n := lookups(ks, fpr); n != 1 {
			t.Errorf("%d lookups of %s, want 1", n, fpr)
		}
	})
	t.Run("down, key in keyring", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ks := newKeyserver(t, e.srv.Key)
		ks.SetDown(true)
		r := e.run(e.image("--keyid", fetchtest.Fingerprint(e.srv.Key), "--keyserver", ks.URL)...)
		mustSucceed(t, e, r)
		if w := stderrLines(r, "WARNING: ", "keyserver"); len(w) != 1 {
			t.Errorf("want one WARNING about the keyserver:\n%s", r)
		}
	})
	t.Run("down, built-in key", func(t *testing.T) {
		t.Parallel()
		// The built-in images.linuxcontainers.org key is used, with the
		// warning: this server, which signs with another key, is then
		// refused.
		e := newEnv(t)
		ks := newKeyserver(t)
		ks.SetDown(true)
		r := e.run(imageArgs(e, "--keyid", fetch.BuiltinFingerprint, "--keyserver", ks.URL)...)
		if w := stderrLines(r, "WARNING: ", "keyserver"); len(w) != 1 {
			t.Errorf("want one WARNING about the keyserver:\n%s", r)
		}
		e.mustFail(r, "Invalid signature for")
		wantErrorLine(t, r, "Invalid signature for index-system.7")
	})
	t.Run("different key", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		fpr := fetchtest.Fingerprint(e.srv.Key)
		ks := newKeyserver(t, e.srv.Key)
		stranger := newKey(t, "stranger")
		ks.Substitute(fpr, stranger)
		r := e.run(imageArgs(e, "--keyid", fpr, "--keyserver", ks.URL)...)
		e.mustFail(r, "Unable to fetch GPG key from keyserver: ")
		if l := stderrLines(r, "ERROR: Unable to fetch GPG key from keyserver: ", fetchtest.Fingerprint(stranger)); len(l) != 1 {
			t.Errorf("the error does not name the key the keyserver gave:\n%s", r)
		}
		if n := len(e.srv.Requests()); n != 0 {
			t.Errorf("%d requests to the image server after the key was refused", n)
		}
		noUnverifiedInCache(t, e, nil, false)
	})
	t.Run("different key, evil server", func(t *testing.T) {
		t.Parallel()
		// The keyserver hands out the key this (hostile) server signs
		// with in place of the one the user trusts and holds: the local
		// copy is used, so the server is refused.
		e := newEnv(t)
		trusted := newKey(t, "trusted")
		ks := newKeyserver(t, trusted)
		ks.Substitute(fetchtest.Fingerprint(trusted), e.srv.Key)
		r := e.run(imageArgs(e, "--keyring", writeKeyring(t, e.dir, trusted),
			"--keyid", fetchtest.Fingerprint(trusted), "--keyserver", ks.URL)...)
		e.mustFail(r, "Invalid signature for")
		if w := stderrLines(r, "WARNING: ", "keyserver"); len(w) != 1 {
			t.Errorf("want one WARNING about the keyserver:\n%s", r)
		}
		noUnverifiedInCache(t, e, nil, false)
	})
	for _, n := range []int{8, 16} {
		t.Run(fmt.Sprintf("%d-digit key id", n), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ks := newKeyserver(t, e.srv.Key)
			fpr := fetchtest.Fingerprint(e.srv.Key)
			r := e.run(imageArgs(e, "--keyid", fpr[len(fpr)-n:], "--keyserver", ks.URL)...)
			e.mustFail(r, "full fingerprint")
			if len(stderrLines(r, "ERROR: ", fpr[len(fpr)-n:])) != 1 {
				t.Errorf("the error does not name the key id:\n%s", r)
			}
			if n := len(ks.Requests()); n != 0 {
				t.Errorf("%d requests to the keyserver for a short id, want none", n)
			}
		})
	}
}

// TestTrustMirror: a mirror that serves bad bytes, or fails, costs a
// download from the primary server and a warning naming it, never trust.
func TestTrustMirror(t *testing.T) {
	t.Parallel()
	rootfsPath := defaultDir + "rootfs.tar.xz"
	setup := func(t *testing.T) (*env, *fetchtest.Server) {
		e := newEnv(t)
		m, err := fetchtest.NewMirror(e.srv)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return e, m
	}
	check := func(t *testing.T, e *env, m *fetchtest.Server, r result) {
		t.Helper()
		mustSucceed(t, e, r)
		if w := stderrLines(r, "WARNING: ", m.Host, "rootfs.tar.xz"); len(w) != 1 {
			t.Errorf("want one WARNING naming the mirror %s:\n%s", m.Host, r)
		}
		if w := stderrLines(r, "WARNING: "); len(w) != 1 {
			t.Errorf("want exactly one warning, got %q", w)
		}
		if len(m.RequestsFor(rootfsPath)) == 0 {
			t.Errorf("the mirror was never asked for %s", rootfsPath)
		}
		var redirected, direct int
		for _, q := range e.srv.RequestsFor(rootfsPath) {
			switch {
			case q.Status == 302 && q.NoGeoIP == "":
				redirected++
			case q.Status == 200 && q.NoGeoIP == "on":
				direct++
			default:
				t.Errorf("unexpected request to the primary server: %+v", q)
			}
		}
		if redirected == 0 || direct != 1 {
			t.Errorf("primary server: %d redirected and %d direct (X-LXC-No-GeoIP: on) requests for %s, want >0 and 1",
				redirected, direct, rootfsPath)
		}
		good, _ := e.srv.Get(rootfsPath)
		if b, err := os.ReadFile(filepath.Join(e.cacheDir(), "rootfs.tar.xz")); err != nil || !bytes.Equal(b, good) {
			t.Errorf("the cached rootfs is not the primary server's (%v)", err)
		}
	}
	t.Run("garbage", func(t *testing.T) {
		t.Parallel()
		e, m := setup(t)
		m.Set(rootfsPath, evilRootfs(t))
		r := e.run(e.image()...)
		check(t, e, m, r)
	})
	t.Run("failing", func(t *testing.T) {
		t.Parallel()
		e, m := setup(t)
		m.Fail(rootfsPath, 500)
		r := e.run(e.image()...)
		check(t, e, m, r)
	})
}

// TestTrustNoHTTPFallback: plain HTTP is never used unless the server is
// given as http://. With HTTPS refused, or answered with a certificate
// that does not verify, and a plain HTTP server on the same port that
// would serve the image, the run fails without one plain request; a
// certificate failure says how to trust a private CA.
func TestTrustNoHTTPFallback(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		setup func(*fetchtest.Server)
		args  []string
		want  string
	}{
		{"https down", func(s *fetchtest.Server) { s.SetHTTPSDown(true) }, nil, "https://"},
		{"https down no-validate", func(s *fetchtest.Server) { s.SetHTTPSDown(true) }, []string{"--no-validate"}, "https://"},
		{"bad certificate", func(s *fetchtest.Server) { s.SetUntrustedCertificate(true) }, nil, "--ca-cert"},
		{"bad certificate no-validate", func(s *fetchtest.Server) { s.SetUntrustedCertificate(true) }, []string{"--no-validate"}, "--ca-cert"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c.setup(e.srv)
			r := e.run(e.image(c.args...)...)
			e.mustFail(r, c.want)
			if strings.Contains(r.stderr, "WARNING: Failed to download the file over HTTPs") || strings.Contains(r.stderr, "using plain HTTP") {
				t.Errorf("a warning about plain HTTP:\n%s", r)
			}
			for _, q := range e.srv.Requests() {
				if !q.TLS {
					t.Errorf("plain HTTP request: %s", q.Path)
				}
			}
			noUnverifiedInCache(t, e, nil, false)
		})
	}
}

// TestTrustKeyringFile: --keyring takes binary keyrings too, and a bad one
// is one error naming it.
func TestTrustKeyringFile(t *testing.T) {
	t.Parallel()
	t.Run("binary", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		blk, err := armor.Decode(bytes.NewReader(fetchtest.ArmoredPublicKey(e.srv.Key)))
		if err != nil {
			t.Fatal(err)
		}
		bin, err := io.ReadAll(blk.Body)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(e.dir, "trustedkeys.gpg")
		if err := os.WriteFile(p, bin, 0o644); err != nil {
			t.Fatal(err)
		}
		mustSucceed(t, e, e.run(imageArgs(e, "--keyring", p)...))
	})
	for _, c := range []struct {
		name    string
		content []byte // nil: no file
	}{
		{"missing", nil},
		{"not a keyring", []byte("this is not an OpenPGP keyring\n")},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := filepath.Join(e.dir, "keyring.gpg")
			if c.content != nil {
				if err := os.WriteFile(p, c.content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := e.run(imageArgs(e, "--keyring", p)...)
			e.mustFail(r, p)
			if n := len(e.srv.Requests()); n != 0 {
				t.Errorf("%d requests to the server without a keyring", n)
			}
		})
	}
}

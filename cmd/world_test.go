package cmd_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// When the world is broken: failures that explain themselves, fallbacks
// that stay safe.

// TestArchAliases: the architecture may be given as uname or a
// distribution calls it; the run says which server name it used.
func TestArchAliases(t *testing.T) {
	e := newEnv(t)
	r := e.run("-d", "debian", "-r", "bookworm", "-a", "x86_64", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
	mustSucceed(t, e, r)
	if !strings.Contains(r.stdout, "Using architecture amd64 for x86_64\n") {
		t.Errorf("the mapping was not said:\n%s", r)
	}
	r = e.runRaw("--list", "-a", "x86_64", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
	if r.code != 0 || !strings.Contains(r.stdout, "debian") || !strings.Contains(r.stdout, "amd64") {
		t.Errorf("--list -a x86_64:\n%s", r)
	}
}

// TestUnusableCachePath: a cache path that cannot be a cache (a regular
// file) is warned about once, and the run goes on without a cache.
func TestUnusableCachePath(t *testing.T) {
	e := newEnv(t)
	e.cache = filepath.Join(e.dir, "not-a-dir")
	if err := os.WriteFile(e.cache, []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run(e.image()...)
	mustSucceed(t, e, r)
	if w := stderrLines(r, "WARNING: Not using the cache "+e.cache); len(w) != 1 {
		t.Errorf("want one warning naming the cache:\n%s", r)
	}
	if b, _ := os.ReadFile(e.cache); string(b) != "a file" {
		t.Errorf("the file was changed")
	}
	checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
}

// TestStandaloneCleanUp: a standalone run that fails removes the rootfs
// directory it made, and the parents it made for it; what was there
// before stays.
func TestStandaloneCleanUp(t *testing.T) {
	e := newEnv(t)
	rootfs := filepath.Join(e.dir, "new", "deeper", "rootfs")
	r := e.runRaw(append([]string{"--rootfs", rootfs}, "-d", "debian", "-r", "trixie", "-a", "amd64",
		"--server", e.srv.Host, "--keyring", e.srv.KeyFile)...)
	e.mustFail(r, "Couldn't find a matching image")
	if _, err := os.Stat(filepath.Join(e.dir, "new")); !os.IsNotExist(err) {
		t.Errorf("the directories the run made are left: %v", err)
	}
	if _, err := os.Stat(e.dir); err != nil {
		t.Errorf("what was there before is gone: %v", err)
	}
}

// TestNotFoundExplains: a typo in any field names the nearest values and
// what is on offer, after the one ERROR line.
func TestNotFoundExplains(t *testing.T) {
	e := newEnv(t, fetchtest.DefaultImage(), fetchtest.NewImage("debian", "trixie", "arm64", "default", "20261120_05:24"))
	for _, c := range []struct {
		args       []string
		err, hints string
	}{
		{[]string{"-d", "debain", "-r", "bookworm", "-a", "amd64"}, `no distribution "debain" (did you mean debian?)`, "Distributions of this server: debian"},
		{[]string{"-d", "debian", "-r", "bokworm", "-a", "amd64"}, `no release "bokworm" for debian (did you mean bookworm?)`, "Releases of debian: bookworm, trixie"},
		{[]string{"-d", "debian", "-r", "trixie", "-a", "amd64"}, `no architecture "amd64" for debian trixie`, "Architectures of debian trixie: arm64"},
		{[]string{"-d", "debian", "-r", "bookworm", "-a", "amd64", "--variant", "defualt"}, `no variant "defualt" for debian bookworm amd64 (did you mean default?)`, "Variants of debian bookworm amd64: default"},
	} {
		e.newContainer("c1")
		r := e.run(append(c.args, "--server", e.srv.Host, "--keyring", e.srv.KeyFile)...)
		e.mustFail(r, "Couldn't find a matching image: "+c.err)
		if !strings.Contains(r.stderr, "\n"+c.hints+"\n") {
			t.Errorf("%v: the hints lack %q:\n%s", c.args, c.hints, r)
		}
	}
}

// TestCacheExportImport: verified images move between hosts with their
// evidence; an import verifies everything again and stores nothing that
// does not verify, and what it stores serves an offline run.
func TestCacheExportImport(t *testing.T) {
	e := newEnv(t)
	mustSucceed(t, e, e.run(e.image()...))
	fetched, err := os.Stat(filepath.Join(e.cacheDir(), "build_id"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(e.dir, "images.tar")
	if r := e.runRaw("cache", "export", "-d", "debian", file); r.code != 0 {
		t.Fatalf("export:\n%s", r)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	// Another host: an empty cache, and a server that is down.
	e.cache = filepath.Join(e.dir, "other-cache")
	if r := e.runRaw("cache", "import", file); r.code != 1 || !strings.Contains(r.stderr, "did not verify") {
		t.Errorf("import with the built-in key only:\n%s", r)
	}
	tampered := append([]byte(nil), data...)
	i := bytes.LastIndex(tampered, []byte("rootfs.tar.xz"))
	tampered[i+2048] ^= 1 // inside the rootfs tarball's data
	bad := filepath.Join(e.dir, "tampered.tar")
	if err := os.WriteFile(bad, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	e.newContainer("c2")
	r := e.runRaw("cache", "import", "--keyring", e.srv.KeyFile, bad)
	e.mustFail(r, "1 of 1 images in "+bad+" did not verify and were not imported: debian/bookworm/amd64/default")
	if _, err := os.Stat(e.cacheDir()); !os.IsNotExist(err) {
		t.Errorf("a tampered image was stored: %v", err)
	}
	if r := e.runRaw("cache", "import", "--keyring", e.srv.KeyFile, file); r.code != 0 {
		t.Fatalf("import:\n%s", r)
	}
	// An imported copy is as old as its signatures say, not as new as
	// the import: the 30 days of the cache run from then.
	if fi, err := os.Stat(filepath.Join(e.cacheDir(), "build_id")); err != nil || fi.ModTime().After(fetched.ModTime()) {
		t.Errorf("imported copy fetched at %v, after the original download at %v", fi.ModTime(), fetched.ModTime())
	}
	before := len(e.srv.Requests())
	r = e.run(e.image("--force-cache")...)
	mustSucceed(t, e, r)
	checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
	if n := len(e.srv.Requests()) - before; n != 0 {
		t.Errorf("%d requests to the server by a run from the imported image", n)
	}
}

// TestFallbackToOlderBuild: the index names a build whose files the server
// does not have (404); the run takes the newest older build the server
// retains, saying so, never one older than what the host has cached, and
// not at all with --exact-build.
func TestFallbackToOlderBuild(t *testing.T) {
	older := fetchtest.NewImage("debian", "bookworm", "amd64", "default", "20261110_05:24")
	middle := fetchtest.NewImage("debian", "bookworm", "amd64", "default", "20261115_05:24")
	newest := fetchtest.DefaultImage() // 20261120_05:24
	lose := func(e *env, img fetchtest.Image) {
		for _, f := range []string{"rootfs.tar.xz", "meta.tar.xz", "rootfs.tar.xz.asc", "meta.tar.xz.asc", "SHA256SUMS", "SHA256SUMS.asc"} {
			e.srv.Remove(fetchtest.ImageDir(img) + f)
		}
	}
	t.Run("older retained", func(t *testing.T) {
		e := newEnv(t, newest)
		if err := e.srv.AddRetainedBuild(older); err != nil {
			t.Fatal(err)
		}
		if err := e.srv.AddRetainedBuild(middle); err != nil {
			t.Fatal(err)
		}
		lose(e, newest)
		r := e.run(e.image()...)
		mustSucceed(t, e, r)
		if w := stderrLines(r, "WARNING: The index names build "+newest.Build, "using build "+middle.Build); len(w) != 1 {
			t.Errorf("want one warning naming both builds:\n%s", r)
		}
		if b, _ := os.ReadFile(filepath.Join(e.cacheDir(), "build_id")); string(b) != middle.Build+"\n" {
			t.Errorf("cached build %q, want %s", b, middle.Build)
		}
		e.newContainer("c2")
		e.mustFail(e.run(e.image("--flush-cache", "--exact-build")...), "the index names build "+newest.Build+" of debian/bookworm/amd64/default, but its files are gone from the server")
	})
	t.Run("not older than the cache", func(t *testing.T) {
		e := newEnv(t, middle)
		mustSucceed(t, e, e.run(e.image()...))
		// Later: the index names a newer build that is missing, and the
		// server retains only a build older than the cached one.
		if err := e.srv.AddImage(newest); err != nil {
			t.Fatal(err)
		}
		e.srv.SetIndex(fetchtest.Index(newest))
		if err := e.srv.AddRetainedBuild(older); err != nil {
			t.Fatal(err)
		}
		lose(e, newest)
		expire(t, e.cacheDir())
		e.newContainer("c2")
		before := len(e.srv.RequestsFor(rootfsPath(older)))
		r := e.run(e.image()...)
		mustSucceed(t, e, r)
		if !strings.Contains(r.stderr, "using build "+middle.Build+" from the local cache") {
			t.Errorf("want the cached build used, with a warning:\n%s", r)
		}
		if n := len(e.srv.RequestsFor(rootfsPath(older))) - before; n != 0 {
			t.Errorf("the build older than the cached one was downloaded")
		}
	})
	t.Run("nothing older", func(t *testing.T) {
		e := newEnv(t, newest)
		lose(e, newest)
		e.mustFail(e.run(e.image()...), "its files are gone from the server")
	})
}

// TestExitStatus: each class of failure has its documented exit status,
// and its message says which it is.
func TestExitStatus(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(e *env) []string
		code  int
		want  string
	}{
		{"bad option", func(e *env) []string { return []string{"--bogus"} }, 1, "unknown option --bogus"},
		{"not in the index", func(e *env) []string { return e.image("-r", "trixie") }, 2, "Couldn't find a matching image"},
		{"removed from the server", func(e *env) []string {
			e.srv.Remove(defaultRootfsPath)
			return e.image()
		}, 3, "gone from the server"},
		{"connection refused", func(e *env) []string {
			return []string{"-d", "debian", "-r", "bookworm", "-a", "amd64", "--server", closedPort(t), "--keyring", e.srv.KeyFile}
		}, 4, "connection refused"},
		{"certificate", func(e *env) []string {
			e.srv.SetUntrustedCertificate(true)
			return e.image()
		}, 4, "certificate"},
		{"signature", func(e *env) []string {
			e.srv.Set(defaultRootfsPath, evilRootfs(t))
			return e.image()
		}, 5, "Invalid signature for rootfs.tar.xz"},
		{"rootfs not empty", func(e *env) []string {
			os.WriteFile(filepath.Join(e.rootfs, "leftover"), nil, 0o644)
			return e.image()
		}, 6, "is not empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			args := c.setup(e)
			full := args
			if c.name != "bad option" {
				full = append([]string{"--path=" + e.path, "--name=" + e.name, "--rootfs=" + e.rootfs}, args...)
			}
			r := e.runRaw(full...)
			if r.code != c.code || len(errorLines(r.stderr)) != 1 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("want exit status %d and one ERROR line with %q:\n%s", c.code, c.want, r)
			}
		})
	}
}

// TestSeveralServers: servers are tried in order for the index; one that
// cannot be reached, or whose index does not verify, moves the run to the
// next with a warning. A later server may not take the run back to an
// older build than an earlier one gave.
func TestSeveralServers(t *testing.T) {
	e := newEnv(t)
	stranger, err := fetchtest.NewKey("stranger")
	if err != nil {
		t.Fatal(err)
	}
	forged, err := fetchtest.NewServerWithKey(stranger, fetchtest.DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	dead := closedPort(t)
	image := []string{"-d", "debian", "-r", "bookworm", "-a", "amd64", "--keyring", e.srv.KeyFile}
	r := e.run(append(image, "--server", dead, "--server", forged.Host, "--server", e.srv.Host)...)
	mustSucceed(t, e, r)
	if len(stderrLines(r, "WARNING: The image server "+dead+" failed", "connection refused", "trying "+forged.Host)) != 1 ||
		len(stderrLines(r, "WARNING: The image server "+forged.Host+" failed", "Invalid signature", "trying "+e.srv.Host)) != 1 {
		t.Errorf("want a warning for each failed server:\n%s", r)
	}
	if len(forged.RequestsFor(rootfsPath(fetchtest.DefaultImage()))) != 0 {
		t.Errorf("an image was taken from the server whose index did not verify")
	}

	// The server that comes first now offers an older build, correctly
	// signed: refused, as from one server.
	older := fetchtest.NewImage("debian", "bookworm", "amd64", "default", "20261101_05:24")
	behind, err := fetchtest.NewServerWithKey(e.srv.Key, older)
	if err != nil {
		t.Fatal(err)
	}
	defer behind.Close()
	e.newContainer("c2")
	r = e.run(append(image, "--flush-cache", "--server", behind.Host, "--server", e.srv.Host)...)
	e.mustFail(r, "older than build "+fetchtest.DefaultImage().Build)
}

// TestListingCache: a listing keeps what it read: a second one soon after
// asks nothing, a later one asks on condition (304: no body again), and one
// when the server cannot be reached lists the copy with a warning.
func TestListingCache(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.EnableStreams(fetchtest.StreamsOptions{}); err != nil {
		t.Fatal(err)
	}
	list := func(extra ...string) result {
		return e.runRaw(append([]string{"list", "--server", e.srv.Host, "--keyring", e.srv.KeyFile, "--format", "csv"}, extra...)...)
	}
	first := list()
	if first.code != 0 || !strings.Contains(first.stdout, "debian") {
		t.Fatalf("%s", first)
	}
	before := len(e.srv.Requests())
	if r := list(); r.code != 0 || r.stdout != first.stdout {
		t.Errorf("second listing:\n%s", r)
	}
	if n := len(e.srv.Requests()) - before; n != 0 {
		t.Errorf("a listing within --index-ttl asked the server %d times", n)
	}
	before = len(e.srv.Requests())
	if r := list("--index-ttl", "off"); r.code != 0 || r.stdout != first.stdout {
		t.Errorf("conditional listing:\n%s\nwant stdout\n%s", r, first.stdout)
	}
	for _, q := range e.srv.Requests()[before:] {
		if q.Status != 304 {
			t.Errorf("%s answered %d, want 304 Not Modified", q.Path, q.Status)
		}
	}
	e.srv.SetHTTPSDown(true)
	r := list("--index-ttl", "off")
	if r.code != 0 || r.stdout != first.stdout || len(stderrLines(r, "WARNING: The image server cannot be reached", "listing the copy read")) != 1 {
		t.Errorf("listing with the server down:\n%s", r)
	}
	// The template's --list keeps its copy too, and its output is as ever.
	e.srv.SetHTTPSDown(false)
	tl := e.runRaw("--list", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
	e.srv.SetHTTPSDown(true)
	if r := e.runRaw("--list", "--server", e.srv.Host, "--keyring", e.srv.KeyFile, "--index-ttl", "off"); r.code != 0 || r.stdout != tl.stdout {
		t.Errorf("--list with the server down:\n%s\nwant stdout\n%s", r, tl.stdout)
	}
}

// TestRoomCheckedFirst: a rootfs whose filesystem cannot hold the image is
// refused before anything is unpacked, saying how much it has and needs.
func TestRoomCheckedFirst(t *testing.T) {
	needRoot(t, "a small tmpfs is mounted for the rootfs")
	e := newBigEnv(t)
	mustSucceedBig := e.run(e.image()...)
	if mustSucceedBig.code != 0 {
		t.Fatalf("first create:\n%s", mustSucceedBig)
	}
	e.newContainer("c2")
	mountTmpfs(t, e.rootfs, "1m")
	r := e.run(e.image()...)
	e.mustFail(r, "MB free, and the image unpacks to")
	if r.code != 6 {
		t.Errorf("exit status %d, want 6 (a local problem)", r.code)
	}
}

package cmd_test

// End-to-end tests: the real binary, run as a subprocess the way lxc-create
// runs its template, against the in-process HTTPS image server of
// fetch/fetchtest.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lxc-download-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Tests that run the binary as another user need to reach it.
	os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "lxc-download")
	build := exec.Command("go", "build", "-trimpath", "-o", binary, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the binary: %v\n%s", err, out)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// defaultConfig is what lxc-create writes into LXC_PATH/config before it
// runs the template (Debian's /etc/lxc/default.conf plus the rootfs line).
const defaultConfig = `lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.net.0.flags = up

lxc.apparmor.profile = generated
lxc.apparmor.allow_nesting = 1
lxc.rootfs.path = dir:%s
`

// env is one container about to be created, the way lxc-create prepares it,
// with a cache and an image server of its own.
type env struct {
	t      *testing.T
	srv    *fetchtest.Server
	dir    string
	path   string // LXC_PATH
	rootfs string
	cache  string
	name   string
	uid    int // when not 0, runs of the binary are made as this user (and group)
}

func newEnv(t *testing.T, images ...fetchtest.Image) *env {
	t.Helper()
	if len(images) == 0 {
		images = []fetchtest.Image{fetchtest.DefaultImage()}
	}
	srv, err := fetchtest.NewServer(images...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, dir: t.TempDir(), name: "c1"}
	e.cache = filepath.Join(e.dir, "cache")
	e.newContainer("c1")
	return e
}

// newContainer makes LXC_PATH/config (mode 0640), an empty partial file and
// an empty rootfs, as lxc-create does.
func (e *env) newContainer(name string) {
	e.t.Helper()
	e.name = name
	e.path = filepath.Join(e.dir, "lxc", strings.ReplaceAll(name, "/", "_"))
	e.rootfs = filepath.Join(e.path, "rootfs")
	if err := os.MkdirAll(e.rootfs, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.path, "config"), []byte(fmt.Sprintf(defaultConfig, e.rootfs)), 0o640); err != nil {
		e.t.Fatal(err)
	}
	// Mode 0, as lxc-create makes it: only root may write it again, so a
	// second container of the same name starts from a new one.
	os.Remove(filepath.Join(e.path, "partial"))
	if err := os.WriteFile(filepath.Join(e.path, "partial"), nil, 0); err != nil {
		e.t.Fatal(err)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs the binary with lxc-create's own arguments first, then args.
func (e *env) run(args ...string) result {
	e.t.Helper()
	full := []string{"--path=" + e.path, "--name=" + e.name, "--rootfs=" + e.rootfs}
	return e.runRaw(append(full, args...)...)
}

// image arguments for the default image on this env's server.
func (e *env) image(extra ...string) []string {
	return append([]string{"-d", "debian", "-r", "bookworm", "-a", "amd64",
		"--server", e.srv.Host, "--keyring", e.srv.KeyFile}, extra...)
}

func (e *env) runRaw(args ...string) result {
	e.t.Helper()
	return e.runWith(binary, args...)
}

// runWith runs prog (the binary, or a program that runs it: qemu, chroot)
// in this env's environment.
func (e *env) runWith(prog string, args ...string) result {
	e.t.Helper()
	return e.runWithEnv(nil, prog, args...)
}

// runWithEnv is runWith with extra environment variables; the last value
// of a repeated variable wins (os/exec).
func (e *env) runWithEnv(extra []string, prog string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = append(e.environ(), extra...)
	if e.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(e.uid), Gid: uint32(e.uid)}}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LXC_") && !strings.HasPrefix(kv, "SSL_CERT_") && !strings.HasPrefix(kv, "DOWNLOAD_") {
			env = append(env, kv)
		}
	}
	return append(env, "SSL_CERT_FILE="+e.srv.CAFile, "LXC_CACHE_PATH="+e.cache)
}

func (e *env) read(rel string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.path, rel))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *env) cacheDir() string {
	return filepath.Join(e.cache, "download", "debian", "bookworm", "amd64", "default")
}

// mustFail checks the contract for bad input: a failure's exit status (1,
// or that of its class: TestExitStatus checks which), exactly one ERROR
// line containing want, and an untouched rootfs.
func (e *env) mustFail(r result, want string) {
	e.t.Helper()
	if r.code < 1 || r.code > 6 {
		e.t.Errorf("exit status %d, want 1 to 6\n%s", r.code, r)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	var errs []string
	for _, l := range lines {
		if strings.HasPrefix(l, "ERROR: ") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], want) {
		e.t.Errorf("want one ERROR line containing %q\n%s", want, r)
	}
	if names, _ := os.ReadDir(e.rootfs); len(names) != 0 {
		e.t.Errorf("rootfs left half-made: %d entries", len(names))
	}
}

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

func TestCreate(t *testing.T) {
	e := newEnv(t)
	r := e.run(e.image()...)
	if r.code != 0 {
		t.Fatalf("create failed:\n%s", r)
	}
	img := fetchtest.DefaultImage()
	wantOut := []string{
		"Setting up the GPG keyring",
		"Downloading the image index",
		"Downloading the rootfs",
		"Downloading the metadata",
		"The image cache is now ready",
		"Unpacking the rootfs",
		"",
		"---",
	}
	wantOut = append(wantOut, lines(img.Meta["create-message"])...)
	if got := lines(r.stdout); strings.Join(got, "\n") != strings.Join(wantOut, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, strings.Join(wantOut, "\n"))
	}
	if os.Geteuid() == 0 && r.stderr != "" {
		t.Errorf("unexpected stderr as root: %q", r.stderr)
	}

	wantConfig := "\n# Distribution configuration\n" +
		strings.ReplaceAll(img.Meta["config"], "LXC_TEMPLATE_CONFIG", "/usr/share/lxc/config") +
		"\n# Container specific configuration\n" +
		"lxc.apparmor.profile = generated\nlxc.apparmor.allow_nesting = 1\nlxc.rootfs.path = dir:" + e.rootfs + "\n"
	if _, ok := img.Meta["fstab"]; ok {
		wantConfig += "lxc.mount.fstab = " + e.path + "/fstab\n"
	}
	wantConfig += "lxc.uts.name = c1\n" +
		"\n# Network configuration\nlxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\n"
	// The blank line of default.conf stays where it was.
	wantConfig = "\n" + wantConfig
	if got := e.read("config"); got != wantConfig {
		t.Errorf("config:\n%s\nwant:\n%s", got, wantConfig)
	}
	if fi, err := os.Stat(filepath.Join(e.path, "config")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("config mode: %v %v, want 0640", fi.Mode(), err)
	}
	if fstab, ok := img.Meta["fstab"]; ok {
		if got := e.read("fstab"); got != fstab {
			t.Errorf("fstab %q, want %q", got, fstab)
		}
	}
	checkRootfs(t, e.rootfs, img.Rootfs)
	// Templates were applied inside the rootfs.
	if b, _ := os.ReadFile(filepath.Join(e.rootfs, "etc/hostname")); string(b) != "c1\n" {
		t.Errorf("etc/hostname %q, want %q", b, "c1\n")
	}
	if fi, err := os.Stat(filepath.Join(e.rootfs, "dev/pts")); err != nil || !fi.IsDir() {
		t.Errorf("dev/pts missing: %v", err)
	}
	// The cache has the shell template's layout.
	for _, f := range []string{"rootfs.tar.xz", "config", "build_id"} {
		if _, err := os.Stat(filepath.Join(e.cacheDir(), f)); err != nil {
			t.Errorf("cache: %v", err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(e.cacheDir(), "build_id")); string(b) != img.Build+"\n" {
		t.Errorf("build_id %q", b)
	}
}

// TestCache walks through SPEC 6: a warm cache needs no network, an expired
// one asks the index, the 30-day cap, --flush-cache and --force-cache.
func TestCache(t *testing.T) {
	e := newEnv(t)
	if r := e.run(e.image()...); r.code != 0 {
		t.Fatalf("first create:\n%s", r)
	}
	step := func(name string, extra []string, want ...string) {
		t.Helper()
		e.newContainer(name)
		before := len(e.srv.Requests())
		r := e.run(e.image(extra...)...)
		if r.code != 0 {
			t.Fatalf("%s:\n%s", name, r)
		}
		for _, w := range want {
			if !strings.Contains(r.stdout, w+"\n") {
				t.Errorf("%s: stdout lacks %q:\n%s", name, w, r.stdout)
			}
		}
		if name == "warm" || name == "force" {
			if n := len(e.srv.Requests()) - before; n != 0 {
				t.Errorf("%s: %d requests to the server, want none", name, n)
			}
		}
	}
	step("warm", nil, "Using image from local cache")
	// Fetched 31 days ago: past the cache's own cap, whatever the image's
	// expiry says.
	expire(t, e.cacheDir())
	step("force", []string{"--force-cache"}, "Using image from local cache")
	step("capped", nil, "The cached copy has expired, re-downloading...", "Downloading the rootfs", "The image cache is now ready")
	step("flush", []string{"--flush-cache"}, "Flushing the cache...", "Downloading the rootfs", "The image cache is now ready")
}

// TestCacheImageExpiry: an image past its own expiry (from its meta
// tarball, as kept in the cache) is asked for again; the same build is
// then used from the cache.
func TestCacheImageExpiry(t *testing.T) {
	img := fetchtest.DefaultImage()
	img.Meta["expiry"] = fmt.Sprint(time.Now().Add(-time.Hour).Unix())
	e := newEnv(t, img)
	if r := e.run(e.image()...); r.code != 0 {
		t.Fatalf("first create:\n%s", r)
	}
	e.newContainer("c2")
	before := len(e.srv.RequestsFor(rootfsPath(img)))
	r := e.run(e.image()...)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	for _, w := range []string{"The cached copy has expired, re-downloading...", "Downloading the image index",
		"The cache is already up to date", "Using image from local cache"} {
		if !strings.Contains(r.stdout, w+"\n") {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
	if n := len(e.srv.RequestsFor(rootfsPath(img))) - before; n != 0 {
		t.Errorf("the rootfs was downloaded again (%d requests)", n)
	}
	// The loose copy of expiry is the shell template's: changing it
	// changes nothing.
	if err := os.WriteFile(filepath.Join(e.cacheDir(), "expiry"), []byte(fmt.Sprint(time.Now().Add(time.Hour).Unix())), 0o644); err != nil {
		t.Fatal(err)
	}
	e.newContainer("c3")
	if r := e.run(e.image()...); r.code != 0 || !strings.Contains(r.stdout, "The cached copy has expired, re-downloading...") {
		t.Errorf("the loose expiry file was believed:\n%s", r)
	}
}

func TestList(t *testing.T) {
	img2 := fetchtest.DefaultImage()
	img2.Dist, img2.Release, img2.Build = "alpine", "3.20", "20261121_13:00"
	e := newEnv(t, fetchtest.DefaultImage(), img2)
	r := e.runRaw("--list", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	want := "Setting up the GPG keyring\nDownloading the image index\n\n---\n" +
		fmt.Sprintf("%-15s  %-10s  %-5s  %-7s  %-14s\n", "DIST", "RELEASE", "ARCH", "VARIANT", "BUILD") + "---\n" +
		fmt.Sprintf("%-15s  %-10s  %-5s  %-7s  %-14s\n", "debian", "bookworm", "amd64", "default", "20261120_05:24") +
		fmt.Sprintf("%-15s  %-10s  %-5s  %-7s  %-14s\n", "alpine", "3.20", "amd64", "default", "20261121_13:00") + "---\n"
	if r.stdout != want {
		t.Errorf("list:\n%q\nwant:\n%q", r.stdout, want)
	}
	r = e.runRaw("-l", "-d", "alpine", "--format=json", "--server", e.srv.Host, "--keyring", e.srv.KeyFile)
	wantJSON := `[{"dist":"alpine","release":"3.20","arch":"amd64","variant":"default","build":"20261121_13:00","path":"/images/alpine/3.20/amd64/default/20261121_13:00/"}]`
	if r.code != 0 || strings.TrimSpace(r.stdout) != wantJSON {
		t.Errorf("json list:\n%s\nwant %s", r, wantJSON)
	}
	// Without the compat-level index the plain one is used.
	e.srv.Remove("/meta/1.0/index-system.7")
	if r := e.runRaw("-l", "--server", e.srv.Host, "--keyring", e.srv.KeyFile); r.code != 0 || !strings.Contains(r.stdout, "alpine") {
		t.Errorf("fallback to the plain index:\n%s", r)
	}
}

func TestNonInteractiveMissing(t *testing.T) {
	e := newEnv(t)
	r := e.run("--server", e.srv.Host, "-r", "bookworm")
	e.mustFail(r, "missing --dist, --arch")
}

// TestBadInput covers each bad input of the issue: one ERROR line, exit 1,
// nothing half-made, and the cache that was there still intact.
func TestBadInput(t *testing.T) {
	t.Run("missing container args", func(t *testing.T) {
		e := newEnv(t)
		r := e.runRaw(append([]string{"--name=c1", "--path=" + e.path}, e.image()...)...)
		e.mustFail(r, "Please pass the name, path, and rootfs for the container")
	})
	t.Run("no such image", func(t *testing.T) {
		e := newEnv(t)
		e.mustFail(e.run("-d", "debian", "-r", "trixie", "-a", "amd64", "--server", e.srv.Host, "--keyring", e.srv.KeyFile),
			"Couldn't find a matching image")
	})
	t.Run("rootfs missing", func(t *testing.T) {
		e := newEnv(t)
		os.Remove(e.rootfs)
		r := e.run(e.image()...)
		if r.code != 1 || !strings.Contains(r.stderr, "ERROR: rootfs directory "+e.rootfs+" does not exist") {
			t.Errorf("%s", r)
		}
	})
	for _, c := range []struct {
		name  string
		index string
		want  string
	}{
		{"short line", "debian;bookworm;amd64\n", "index line 1"},
		{"url path", "debian;bookworm;amd64;default;1;https://evil.example/x/\n", "index line 1"},
		{"dotdot path", "debian;bookworm;amd64;default;1;/images/../../etc/\n", "index line 1"},
	} {
		t.Run("index "+c.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.SetIndex(c.index)
			e.mustFail(e.run(e.image()...), c.want)
		})
	}

	img := fetchtest.DefaultImage()
	dir := "/images/debian/bookworm/amd64/default/" + img.Build + "/"
	cases := []struct {
		name   string
		break_ func(s *fetchtest.Server)
		want   string
	}{
		{"meta without config", func(s *fetchtest.Server) {
			i := fetchtest.DefaultImage()
			delete(i.Meta, "config")
			delete(i.Meta, "config-user")
			s.SetMeta(i)
		}, "meta tarball is missing the configuration file"},
		{"rootfs truncated", func(s *fetchtest.Server) {
			b, _ := s.Get(dir + "rootfs.tar.xz")
			s.SetSigned(dir+"rootfs.tar.xz", b[:len(b)/2])
		}, "rootfs"},
		{"rootfs not xz", func(s *fetchtest.Server) {
			s.SetSigned(dir+"rootfs.tar.xz", []byte("this is not xz at all"))
		}, "xz"},
		{"rootfs 404", func(s *fetchtest.Server) { s.Remove(dir + "rootfs.tar.xz") }, "404"},
		{"index 500", func(s *fetchtest.Server) {
			s.Fail("/meta/1.0/index-system.7", 500)
			s.Fail("/meta/1.0/index-system", 500)
		}, "500"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			c.break_(e.srv)
			e.mustFail(e.run(e.image()...), c.want)
			if _, err := os.Stat(e.cacheDir()); err == nil {
				t.Errorf("a broken image was cached")
			}
		})
		t.Run(c.name+" keeps old cache", func(t *testing.T) {
			e := newEnv(t)
			if r := e.run(e.image()...); r.code != 0 {
				t.Fatalf("%s", r)
			}
			before := readDir(t, e.cacheDir())
			// Past the 30-day cap, so the run must ask the server again.
			old := time.Now().Add(-31 * 24 * time.Hour)
			if err := os.Chtimes(filepath.Join(e.cacheDir(), "build_id"), old, old); err != nil {
				t.Fatal(err)
			}
			c.break_(e.srv)
			e.newContainer("c2")
			r := e.run(e.image()...)
			if c.name == "index 500" {
				// The server cannot serve the index: the old copy is
				// used, with a warning (issue 4).
				if r.code != 0 || !strings.Contains(r.stderr, "WARNING: The image server cannot be reached") ||
					!strings.Contains(r.stdout, "Using image from local cache") {
					t.Errorf("with the server failing, the cached copy should be used:\n%s", r)
				}
			} else {
				e.mustFail(r, c.want)
			}
			if after := readDir(t, e.cacheDir()); !reflect.DeepEqual(after, before) {
				t.Errorf("the cached entry changed")
			}
			e.newContainer("c3")
			if r := e.run(e.image("--force-cache")...); r.code != 0 {
				t.Errorf("the old entry is no longer usable:\n%s", r)
			}
		})
	}
}

// TestTemplatesLiteral: container names are data, never sed patterns.
func TestTemplatesLiteral(t *testing.T) {
	e := newEnv(t)
	e.newContainer(`we#ird&na\me`)
	if r := e.run(e.image()...); r.code != 0 {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(e.read("config"), "lxc.uts.name = we#ird&na\\me\n") {
		t.Errorf("config:\n%s", e.read("config"))
	}
	if b, _ := os.ReadFile(filepath.Join(e.rootfs, "etc/hostname")); string(b) != "we#ird&na\\me\n" {
		t.Errorf("etc/hostname %q", b)
	}
}

// TestStandalone: --rootfs alone unpacks the image and writes no config.
func TestStandalone(t *testing.T) {
	e := newEnv(t)
	dst := filepath.Join(e.dir, "chroot", "bookworm")
	r := e.runRaw(append([]string{"--rootfs", dst}, e.image()...)...)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if _, err := os.Stat(filepath.Join(dst, "etc/hosts")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "config")); err == nil {
		t.Error("standalone run wrote a config")
	}
}

var _ = runtime.GOARCH

// TestReadOnlyCache: a cache that cannot be written still serves what it
// holds, and a download then goes next to the container (never /tmp) and
// is not kept (issue 4). Root ignores permissions, so as root the binary
// runs as nobody.
func TestReadOnlyCache(t *testing.T) {
	e := newEnv(t)
	if os.Geteuid() == 0 {
		e.uid = 65534
		// nobody must reach the container, its rootfs and the server's
		// CA and key files; temporary directories are 0700.
		for _, p := range []string{e.srv.CAFile, e.srv.KeyFile, e.rootfs} {
			openParents(p)
		}
		for _, p := range []string{e.path, e.rootfs, filepath.Join(e.path, "config")} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(e.cache, 0o555); err != nil {
		t.Fatal(err)
	}
	os.Chmod(e.cache, 0o555)
	r := e.run(e.image()...)
	if r.code != 0 {
		t.Fatalf("create with a read-only cache:\n%s", r)
	}
	if !strings.Contains(r.stderr, "WARNING: The cache "+e.cache+" is not writable") {
		t.Errorf("no warning about the read-only cache:\n%s", r)
	}
	if strings.Contains(r.stdout, "The image cache is now ready") {
		t.Errorf("claims to have cached the image:\n%s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(e.rootfs, "etc/hostname")); string(b) != "c1\n" {
		t.Errorf("etc/hostname %q", b)
	}
	if names, _ := os.ReadDir(e.cache); len(names) != 0 {
		t.Errorf("the read-only cache was written: %v", names)
	}
	ents, _ := os.ReadDir(e.path)
	for _, d := range ents {
		if strings.HasPrefix(d.Name(), ".lxc-download") {
			t.Errorf("temporary stage left in %s: %s", e.path, d.Name())
		}
	}

	// A cache filled earlier is used although it cannot be written.
	os.Chmod(e.cache, 0o755)
	e.uid = 0
	e.newContainer("c2")
	if r := e.run(e.image()...); r.code != 0 {
		t.Fatalf("fill the cache:\n%s", r)
	}
	if err := filepath.WalkDir(e.cache, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, 0o555)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		filepath.WalkDir(e.cache, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	e.newContainer("c3")
	if os.Geteuid() == 0 {
		e.uid = 65534
		for _, p := range []string{e.path, e.rootfs, filepath.Join(e.path, "config")} {
			os.Chown(p, 65534, 65534)
		}
	}
	before := len(e.srv.Requests())
	r = e.run(e.image()...)
	if r.code != 0 || !strings.Contains(r.stdout, "Using image from local cache") {
		t.Fatalf("create from a read-only warm cache:\n%s", r)
	}
	if n := len(e.srv.Requests()) - before; n != 0 {
		t.Errorf("%d requests to the server, want none", n)
	}
}

// openParents makes the directories above p, up to the temporary
// directory, searchable by everyone (t.TempDir and os.MkdirTemp make them
// 0700), for runs of the binary as another user.
func openParents(p string) {
	for d := filepath.Dir(p); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
}

// readDir returns the contents of the regular files in dir by name.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, d := range ents {
		if b, err := os.ReadFile(filepath.Join(dir, d.Name())); err == nil {
			files[d.Name()] = string(b)
		}
	}
	return files
}

// TestUserMode runs the binary in a user namespace where root is mapped to
// itself (`unshare -r` as root: uid_map "0 0 1"), the shell template's
// "userns-root": user mode with the system cache. The user index and the
// -user meta files are used: config-user goes into the config and the
// excludes-user devices are not unpacked.
func TestUserMode(t *testing.T) {
	needRoot(t, "unshare -r maps root to itself only for root")
	need(t, "unshare (util-linux)", have("unshare"))
	e := newEnv(t)
	r := e.runWith("unshare", append([]string{"-r", binary, "--path=" + e.path, "--name=c1", "--rootfs=" + e.rootfs}, e.image()...)...)
	if r.code != 0 {
		if strings.Contains(r.stderr, "unshare failed") {
			t.Skipf("no user namespaces here: %s", r.stderr)
		}
		t.Fatalf("create in a user namespace:\n%s", r)
	}
	user := false
	for _, q := range e.srv.Requests() {
		if strings.HasPrefix(q.Path, "/meta/1.0/index-system") {
			t.Errorf("asked for %s in user mode", q.Path)
		}
		user = user || strings.HasPrefix(q.Path, "/meta/1.0/index-user")
	}
	if !user {
		t.Errorf("the user index was not asked for")
	}
	img := fetchtest.DefaultImage()
	cfgUser := strings.ReplaceAll(img.Meta["config-user"], "LXC_TEMPLATE_CONFIG", "/usr/share/lxc/config")
	if !strings.Contains(e.read("config"), "# Distribution configuration\n"+cfgUser) {
		t.Errorf("config does not hold config-user:\n%s", e.read("config"))
	}
	if _, err := os.Lstat(filepath.Join(e.rootfs, "dev/null")); err == nil {
		t.Errorf("dev/null unpacked although excludes-user lists it")
	}
	if _, err := os.Stat(e.cacheDir()); err != nil {
		t.Errorf("userns-root uses the system cache: %v", err)
	}
}

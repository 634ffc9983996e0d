package cmd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// The security model's end-to-end cases: each builds the attack so that
// the run would do what the attacker wants if the defence were missing.

// TestServerTextFiltered: what the server says reaches the terminal
// without the escape sequences that would let it rewrite the screen.
func TestServerTextFiltered(t *testing.T) {
	img := fetchtest.DefaultImage()
	img.Meta["create-message"] = "Welcome\x1b]0;owned\x07 to \x1b[2J\x1b[31mred\x1b[0m\u009b31m\n\ttabbed\n"
	e := newEnv(t, img)
	r := e.run(e.image()...)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if strings.ContainsAny(r.stdout, "\x1b\x07\u009b") {
		t.Errorf("control characters of the create-message reached stdout:\n%q", r.stdout)
	}
	if !strings.Contains(r.stdout, "Welcome]0;owned to [2J[31mred[0m31m\n\ttabbed\n") {
		t.Errorf("the create-message's text was not kept:\n%q", r.stdout)
	}
}

// TestNameControlCharacters: a --name with a newline would add lines of
// its own to the container's config.
func TestNameControlCharacters(t *testing.T) {
	for _, name := range []string{"c1\nlxc.mount.entry = /etc etc none bind 0 0", "c1\x1b[2J", "c1\r"} {
		e := newEnv(t)
		before, err := os.ReadFile(filepath.Join(e.path, "config"))
		if err != nil {
			t.Fatal(err)
		}
		r := e.runRaw(append([]string{"--path=" + e.path, "--name=" + name, "--rootfs=" + e.rootfs}, e.image()...)...)
		e.mustFail(r, "--name")
		if strings.ContainsAny(r.stderr, "\x1b\r") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("the ERROR line carries the name's control characters:\n%q", r.stderr)
		}
		after, _ := os.ReadFile(filepath.Join(e.path, "config"))
		if string(after) != string(before) {
			t.Errorf("config changed:\n%s", after)
		}
		if len(e.srv.Requests()) != 0 {
			t.Errorf("the server was asked %d times before the name was refused", len(e.srv.Requests()))
		}
	}
}

// asNobody runs name with args as uid and gid 65534 and reports whether it
// succeeded: what another local user could do.
func asNobody(t *testing.T, name string, args ...string) bool {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd.Run() == nil
}

// stagesOf are the private stages of runs beside and inside the rootfs.
func stagesOf(e *env) []string {
	a, _ := filepath.Glob(filepath.Join(filepath.Dir(e.rootfs), ".lxc-download-*"))
	b, _ := filepath.Glob(filepath.Join(e.rootfs, ".lxc-download-*"))
	return append(a, b...)
}

// TestSecurityUnverifiedUnreachable: while the download stalls just before
// its end (its one xz block already unpacked), the setuid-root binary of
// the unverified image exists only in a stage no other user can enter, and
// the rootfs is empty. SIGKILL leaves it so; the next run removes the
// stage and makes the container. SIGTERM, SIGINT and SIGQUIT stop a run
// cleanly: no stage is left.
func TestSecurityUnverifiedUnreachable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the unverified files must be setuid root, and the check runs as another user")
	}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			img := fetchtest.DefaultImage()
			e := newEnv(t, img)
			xz, _ := e.srv.Get(rootfsPath(img))
			e.srv.Stall(rootfsPath(img), int64(len(xz)-20), time.Minute, 1)
			// (The last 20 bytes are the xz index and footer.)
			// Other users may reach the container's directory, as with
			// LXC's 0755 /var/lib/lxc/NAME of a privileged container.
			openParents(e.rootfs)
			p := e.start(nil, e.image()...)
			var passwd string
			for deadline := time.Now().Add(30 * time.Second); passwd == ""; time.Sleep(20 * time.Millisecond) {
				if p.exited() || time.Now().After(deadline) {
					r, _ := p.wait(0)
					t.Fatalf("no unpacked usr/bin/passwd in a stage while the download stalled:\n%s", r)
				}
				for _, st := range stagesOf(e) {
					if fi, err := os.Lstat(filepath.Join(st, "usr/bin/passwd")); err == nil && fi.Mode()&os.ModeSetuid != 0 {
						passwd = filepath.Join(st, "usr/bin/passwd")
					}
				}
			}
			if names, _ := os.ReadDir(e.rootfs); len(names) != 0 {
				t.Errorf("the rootfs holds unverified files: %s, ...", names[0].Name())
			}
			if asNobody(t, "/bin/ls", "-l", passwd) || asNobody(t, passwd, "--help") {
				t.Errorf("another user reaches the unverified %s", passwd)
			}
			if !asNobody(t, "/bin/ls", filepath.Dir(e.rootfs)) {
				t.Fatalf("the test's directories are not open to others: the check above proves nothing")
			}
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			r, _ := p.wait(20 * time.Second)
			if names, _ := os.ReadDir(e.rootfs); len(names) != 0 {
				t.Errorf("after %v the rootfs holds %s, ...", sig, names[0].Name())
			}
			if sig != syscall.SIGKILL {
				e.mustFail(r, "interrupted")
				if st := stagesOf(e); len(st) != 0 {
					t.Errorf("after %v a stage is left: %v", sig, st)
				}
				return
			}
			if len(stagesOf(e)) == 0 {
				t.Fatalf("SIGKILL left no stage: the clean-up below proves nothing")
			}
			r = e.run(e.image()...)
			mustSucceed(t, e, r)
			checkRootfs(t, e.rootfs, img.Rootfs)
			if st := stagesOf(e); len(st) != 0 {
				t.Errorf("the stage of the killed run is still there: %v", st)
			}
		})
	}
}

// TestSecurityTargetNotEmpty: a run never merges into what is in the
// rootfs: leftovers (planted files, another run's tree) are refused
// before anything is downloaded, and left as they are. A filesystem's
// lost+found is allowed.
func TestSecurityTargetNotEmpty(t *testing.T) {
	e := newEnv(t)
	planted := filepath.Join(e.rootfs, "usr", "bin", "planted")
	if err := os.MkdirAll(filepath.Dir(planted), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(planted, []byte("#!/bin/sh\n"), 0o4755); err != nil {
		t.Fatal(err)
	}
	r := e.run(e.image()...)
	if r.code != 6 || !strings.Contains(r.stderr, "ERROR: rootfs "+e.rootfs+" is not empty") {
		t.Errorf("want one ERROR saying the rootfs is not empty:\n%s", r)
	}
	if n := len(e.srv.Requests()); n != 0 {
		t.Errorf("%d requests before the rootfs was refused", n)
	}
	if b, err := os.ReadFile(planted); err != nil || string(b) != "#!/bin/sh\n" {
		t.Errorf("the leftover was touched: %q, %v", b, err)
	}

	e.newContainer("c2")
	if err := os.Mkdir(filepath.Join(e.rootfs, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, e, e.run(e.image()...))
	checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
}

// TestSecurityFreshness: an index signed too long ago, or older than one
// this host has seen from the server, or offering an older build than it
// has seen, is refused with both builds named, unless a downgrade is
// allowed explicitly.
func TestSecurityFreshness(t *testing.T) {
	t.Run("old index", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.srv.SetIndexSignedAt(fetchtest.Index(fetchtest.DefaultImage()), time.Now().Add(-20*24*time.Hour))
		r := e.run(e.image()...)
		e.mustFail(r, "--max-index-age")
		noUnverifiedInCache(t, e, nil, false)
		e.newContainer("c2")
		mustSucceed(t, e, e.run(e.image("--max-index-age", "30d")...))
	})
	t.Run("replayed index", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		index := fetchtest.Index(fetchtest.DefaultImage())
		e.srv.SetIndexSignedAt(index, time.Now().Add(-time.Hour))
		mustSucceed(t, e, e.run(e.image()...))
		// The same index, signed earlier: what an attacker kept.
		e.srv.SetIndexSignedAt(index, time.Now().Add(-2*time.Hour))
		e.newContainer("c2")
		e.mustFail(e.run(e.image("--flush-cache")...), "before the one seen earlier")
	})
	t.Run("rollback", func(t *testing.T) {
		t.Parallel()
		older := fetchtest.DefaultImage()
		newer := fetchtest.NewImage("debian", "bookworm", "amd64", "default", "20261201_05:24")
		e := newEnv(t, newer)
		if err := e.srv.AddImage(older); err != nil {
			t.Fatal(err)
		}
		e.srv.SetIndex(fetchtest.Index(newer))
		mustSucceed(t, e, e.run(e.image()...))
		// A later, correctly signed index offering the older build.
		e.srv.SetIndex(fetchtest.Index(older))
		e.newContainer("c2")
		r := e.run(e.image("--flush-cache")...)
		e.mustFail(r, "offers build "+older.Build+", older than build "+newer.Build)
		if n := len(e.srv.RequestsFor(rootfsPath(older))); n != 0 {
			t.Errorf("the older build was downloaded (%d requests)", n)
		}
		e.newContainer("c3")
		mustSucceed(t, e, e.run(e.image("--flush-cache", "--allow-downgrade")...))
		if b, _ := os.ReadFile(filepath.Join(e.cacheDir(), "build_id")); string(b) != older.Build+"\n" {
			t.Errorf("--allow-downgrade: cached build %q, want %s", b, older.Build)
		}
		// An allowed downgrade does not lower what was seen.
		e.newContainer("c4")
		e.mustFail(e.run(e.image("--flush-cache")...), newer.Build)
	})
}

// TestSecurityBoundedDownload: a mirror or server that sends forever is
// stopped at the cap, and nothing is left behind.
func TestSecurityBoundedDownload(t *testing.T) {
	e := newEnv(t)
	e.srv.EndlessBody(defaultRootfsPath, 0)
	r := e.run(e.image("--max-rootfs-size", "8M")...)
	e.mustFail(r, "--max-rootfs-size")
	noUnverifiedInCache(t, e, nil, false)
	if _, n := findPartial(e.cache); n >= 0 {
		t.Errorf("a partial download of %d bytes is left", n)
	}
	if st := stagesOf(e); len(st) != 0 {
		t.Errorf("stages left: %v", st)
	}
}

// TestSecurityNoValidateNoHTTPRedirect: without validation, a redirect of
// the rootfs to plain HTTP is not followed.
func TestSecurityNoValidateNoHTTPRedirect(t *testing.T) {
	e := newEnv(t)
	e.srv.RedirectImagesToHTTP(true)
	r := e.run(e.image("--no-validate")...)
	if r.code != 0 {
		t.Logf("%s", r)
	}
	for _, q := range e.srv.Requests() {
		if !q.TLS && q.Status == 200 {
			t.Errorf("taken over plain HTTP without validation: %s", q.Path)
		}
	}
}

// TestSecurityUntrustedCache: a cache another user can write to (a 1777
// directory planted by another user) is not used, with one warning; the
// container is still made, from a private download.
func TestSecurityUntrustedCache(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the cache must belong to another user")
	}
	e := newEnv(t)
	if err := os.MkdirAll(e.cache, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(e.cache, 0o1777)
	os.Chown(e.cache, 65534, 65534)
	r := e.run(e.image()...)
	mustSucceed(t, e, r)
	if w := stderrLines(r, "WARNING: Not using the cache "+e.cache); len(w) != 1 {
		t.Errorf("want one warning about the cache:\n%s", r)
	}
	if names, _ := os.ReadDir(e.cache); len(names) != 0 {
		t.Errorf("the untrusted cache was written to: %v", names)
	}
	checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
	if st := stagesOf(e); len(st) != 0 {
		t.Errorf("stages left: %v", st)
	}
}

// TestSecurityCachedCopyVerified: a cached copy is used only with its
// record, and only as the bytes its evidence vouches for: deleting the
// record or tampering with the tarball does not get a changed rootfs
// installed.
func TestSecurityCachedCopyVerified(t *testing.T) {
	evil := evilRootfs(t)
	t.Run("record deleted", func(t *testing.T) {
		e := newEnv(t)
		mustSucceed(t, e, e.run(e.image()...))
		if err := os.WriteFile(filepath.Join(e.cacheDir(), "rootfs.tar.xz"), evil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(e.cacheDir(), ".lxc-download"))
		e.newContainer("c2")
		r := e.run(e.image()...)
		mustSucceed(t, e, r)
		checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
	})
	t.Run("tarball replaced", func(t *testing.T) {
		e := newEnv(t)
		mustSucceed(t, e, e.run(e.image()...))
		if err := os.WriteFile(filepath.Join(e.cacheDir(), "rootfs.tar.xz"), evil, 0o644); err != nil {
			t.Fatal(err)
		}
		e.newContainer("c2")
		r := e.run(e.image()...)
		// Its size gives it away at once: it is downloaded again.
		mustSucceed(t, e, r)
		checkRootfs(t, e.rootfs, fetchtest.DefaultImage().Rootfs)
	})
	t.Run("same size", func(t *testing.T) {
		e := newEnv(t)
		mustSucceed(t, e, e.run(e.image()...))
		p := filepath.Join(e.cacheDir(), "rootfs.tar.xz")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// Another valid xz file of the same size (xz allows zero padding
		// after a stream): it unpacks, only the hash tells.
		small := fetchtest.DefaultImage()
		small.Rootfs = []fetchtest.File{{Name: "./planted", Mode: 0o4755, Body: "#!/bin/sh\n"}}
		evil, err := fetchtest.RootfsTarball(small)
		if err != nil {
			t.Fatal(err)
		}
		if len(evil) > len(b) {
			t.Fatalf("the evil rootfs (%d bytes) is larger than the image's (%d)", len(evil), len(b))
		}
		same := append(append([]byte(nil), evil...), make([]byte, len(b)-len(evil))...)
		if err := os.WriteFile(p, same, 0o644); err != nil {
			t.Fatal(err)
		}
		e.newContainer("c2")
		r := e.run(e.image()...)
		e.mustFail(r, "does not match the SHA256 recorded")
		if st := stagesOf(e); len(st) != 0 {
			t.Errorf("stages left: %v", st)
		}
	})
}

// TestSecurityContainerConfigSymlink: a container config that is a
// symbolic link (to a host secret) is refused, not copied or handed over.
func TestSecurityContainerConfigSymlink(t *testing.T) {
	e := newEnv(t)
	secret := filepath.Join(e.dir, "shadow")
	if err := os.WriteFile(secret, []byte("root:secret:1::::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(e.path, "config")
	os.Remove(config)
	if err := os.Symlink(secret, config); err != nil {
		t.Fatal(err)
	}
	r := e.run(e.image("--mapped-uid", "65534", "--mapped-gid", "65534")...)
	e.mustFail(r, "config")
	if n := len(e.srv.Requests()); n != 0 {
		t.Errorf("%d requests before the config was refused", n)
	}
	fi, err := os.Stat(secret)
	if b, _ := os.ReadFile(secret); err != nil || string(b) != "root:secret:1::::::\n" || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Errorf("the file behind the link was changed or handed over")
	}
}

// TestSecurityLockFilePrivate: no other user can open, and so flock, the
// lock file of an image and hold every run up.
func TestSecurityLockFilePrivate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the check runs as another user")
	}
	e := newEnv(t)
	mustSucceed(t, e, e.run(e.image()...))
	lock := filepath.Join(filepath.Dir(e.cacheDir()), ".default.lock")
	fi, err := os.Stat(lock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode %v, want 0600", fi.Mode().Perm())
	}
	openParents(lock)
	if asNobody(t, "/usr/bin/flock", "-n", lock, "true") {
		t.Errorf("another user took the lock")
	}
}

// TestSecurityMemoryBudget: a rootfs of a few KB that decodes to 64 MiB of
// zeros in one block is decoded within the memory budget, as a stream; a
// budget too small even for that is refused before decoding, saying how
// to give it more.
func TestSecurityMemoryBudget(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("needs xz to pack a 64 MiB block")
	}
	dir := t.TempDir()
	zeros := filepath.Join(dir, "zeros")
	f, err := os.Create(zeros)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.Close()
	tarball := filepath.Join(dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", dir, "-cf", tarball, "--transform", "s|^|./|", "zeros").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	xz, err := exec.Command("xz", "-6", "-T2", "--block-size=64MiB", "-c", tarball).Output()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.srv.SetSigned(defaultRootfsPath, xz)
	r := e.run(e.image("--memory-budget", "4M")...)
	e.mustFail(r, "--memory-budget")
	e.newContainer("c2")
	if r := e.run(e.image()...); r.code != 0 {
		t.Fatalf("with the default budget:\n%s", r)
	}
	if fi, err := os.Stat(filepath.Join(e.rootfs, "zeros")); err != nil || fi.Size() != 64<<20 {
		t.Errorf("the 64 MiB file: %v, %v", fi, err)
	}
}

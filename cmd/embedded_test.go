package cmd_test

// Tests for the hosts the binary exists for (issue 6): a busybox-only
// chroot, the sh shim that OpenWrt's LuCI runs, and foreign architectures
// under qemu-user. CI installs busybox-static and qemu-user-static (.ci/run);
// where they are missing these tests skip, except in CI where that fails.

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// crossBinary builds the program for GOARCH (and GOARM) into dir.
func crossBinary(t *testing.T, dir, goarch, goarm string) string {
	t.Helper()
	out := filepath.Join(dir, "lxc-download-"+goarch+goarm)
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build for %s: %v\n%s", goarch, err, b)
	}
	return out
}

// TestForeignArch runs the arm64 and armhf binaries under qemu-user through
// the whole flow: list, then create a container from the test server.
func TestForeignArch(t *testing.T) {
	for _, c := range []struct{ goarch, goarm, qemu string }{
		{"arm64", "", "qemu-aarch64-static"},
		{"arm", "7", "qemu-arm-static"},
	} {
		t.Run(c.goarch+c.goarm, func(t *testing.T) {
			need(t, c.qemu+" (Debian's qemu-user-static)", have(c.qemu))
			e := newEnv(t)
			bin := crossBinary(t, e.dir, c.goarch, c.goarm)
			run := func(args ...string) result {
				t.Helper()
				return e.runWith(c.qemu, append([]string{bin}, args...)...)
			}
			if r := run("--list", "--server", e.srv.Host, "--keyring", e.srv.KeyFile); r.code != 0 || !strings.Contains(r.stdout, "bookworm") {
				t.Fatalf("list under %s:\n%s", c.qemu, r)
			}
			r := run(append([]string{"--path=" + e.path, "--name=c1", "--rootfs=" + e.rootfs}, e.image()...)...)
			if r.code != 0 {
				t.Fatalf("create under %s:\n%s", c.qemu, r)
			}
			if b, err := os.ReadFile(filepath.Join(e.rootfs, "etc/hostname")); err != nil || string(b) != "c1\n" {
				t.Errorf("etc/hostname = %q, %v", b, err)
			}
			if !strings.Contains(e.read("config"), "lxc.uts.name = c1\n") {
				t.Errorf("config:\n%s", e.read("config"))
			}
		})
	}
}

// busyboxPath is where Debian's busybox-static installs the static busybox.
const busyboxPath = "/bin/busybox"

// isStaticBusybox reports whether busyboxPath is a static executable (no
// ELF interpreter), so that it runs in a chroot with no libc.
func isStaticBusybox() bool {
	f, err := elf.Open(busyboxPath)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// TestBusyboxOnly builds a chroot holding only a static busybox (as /bin/sh
// and its applets), the binary, the sh template shim and a CA file: no /tmp,
// no /etc/resolv.conf, no tar, xz, wget, gpg or getopt. Inside it, the binary
// lists the images, is run through the shim the way LuCI runs the template
// (`sh /usr/share/lxc/templates/lxc-download --list ...`) and directly, and
// creates a container.
func TestBusyboxOnly(t *testing.T) {
	needRoot(t, "chroot")
	need(t, "a static "+busyboxPath+" (Debian's busybox-static)", isStaticBusybox())
	e := newEnv(t)
	root := filepath.Join(e.dir, "chroot")
	for _, d := range []string{"bin", "usr/bin", "usr/share/lxc/templates", "etc/ssl/certs", "keys", "var/lib/lxc/c1/rootfs"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, busyboxPath, filepath.Join(root, "bin/busybox"), 0o755)
	copyFile(t, binary, filepath.Join(root, "usr/bin/lxc-download"), 0o755)
	copyFile(t, e.srv.CAFile, filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"), 0o644)
	copyFile(t, e.srv.KeyFile, filepath.Join(root, "keys/server.asc"), 0o644)
	// The shim `make install` writes.
	shim := "#!/bin/sh\nexec /usr/bin/lxc-download \"$@\"\n"
	if err := os.WriteFile(filepath.Join(root, "usr/share/lxc/templates/lxc-download"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chroot", root, "/bin/busybox", "--install", "-s", "/bin").CombinedOutput(); err != nil {
		t.Fatalf("busybox --install: %v\n%s", err, out)
	}
	for _, absent := range []string{"tar", "xz", "wget", "gpg", "getopt"} {
		// busybox has tar, xz and wget applets: take them out, so only the
		// binary can be doing the work.
		os.Remove(filepath.Join(root, "bin", absent))
		if _, err := os.Lstat(filepath.Join(root, "usr/bin", absent)); err == nil {
			t.Fatalf("%s is in the chroot", absent)
		}
	}
	for _, p := range []string{"tmp", "etc/resolv.conf"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Fatalf("/%s exists in the chroot", p)
		}
	}
	os.WriteFile(filepath.Join(root, "var/lib/lxc/c1/config"), []byte("lxc.net.0.type = empty\nlxc.rootfs.path = dir:/var/lib/lxc/c1/rootfs\n"), 0o640)

	sh := func(script string) result {
		t.Helper()
		r := e.runWith("chroot", root, "/bin/sh", "-c", script)
		return r
	}
	server := " --server " + e.srv.Host + " --keyring /keys/server.asc"
	env := "PATH=/bin:/usr/bin LXC_CACHE_PATH=/var/cache/lxc "
	if r := sh(env + "sh /usr/share/lxc/templates/lxc-download --list" + server); r.code != 0 || !strings.Contains(r.stdout, "debian           bookworm") {
		t.Fatalf("list through the shim with busybox sh:\n%s", r)
	}
	if r := sh(env + "/usr/share/lxc/templates/lxc-download -l -d debian" + server); r.code != 0 || !strings.Contains(r.stdout, "bookworm") {
		t.Fatalf("list through the shim, executed directly:\n%s", r)
	}
	r := sh(env + "lxc-download --path=/var/lib/lxc/c1 --name=c1 --rootfs=/var/lib/lxc/c1/rootfs -d debian -r bookworm -a amd64" + server)
	if r.code != 0 {
		t.Fatalf("create in the busybox chroot:\n%s", r)
	}
	if b, err := os.ReadFile(filepath.Join(root, "var/lib/lxc/c1/rootfs/etc/hostname")); err != nil || string(b) != "c1\n" {
		t.Errorf("etc/hostname = %q, %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "var/lib/lxc/c1/config")); !strings.Contains(string(b), "lxc.uts.name = c1\n") {
		t.Errorf("config:\n%s", b)
	}
	if _, err := os.Lstat(filepath.Join(root, "tmp")); err == nil {
		t.Errorf("the binary created /tmp")
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestBinarySize keeps the amd64 binary, built as make dist builds it (the
// Makefile's tags, stripped), under 12 MiB: the budget of the binary with
// the command line, listing, mirror and lxc-local. It also guards against
// what cost the most so far: a reachable function that calls reflect's
// Method or MethodByName with a name known only at run time (text/template's
// executor, which urfave/cli's App.Run reaches through its help printer)
// makes the linker keep every exported method of every type in the
// program, 2.4 MB. The linker marks such a function <ReflectMethod> in
// -dumpdep.
func TestBinarySize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	tags := makefileTags(t)
	out := filepath.Join(t.TempDir(), "lxc-download")
	build := exec.Command("go", "build", "-tags", tags, "-trimpath", "-ldflags=-s -w", "-o", out, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("amd64, -tags %s: %d bytes", tags, fi.Size())
	if fi.Size() >= 12<<20 {
		t.Errorf("the amd64 binary is %d bytes, over 12 MiB", fi.Size())
	}
	dump := exec.Command("go", "build", "-tags", tags, "-trimpath", "-ldflags=-dumpdep", "-o", os.DevNull, "..")
	dump.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	deps, err := dump.CombinedOutput()
	if err != nil {
		t.Fatalf("go build -ldflags=-dumpdep: %v", err)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(string(deps), "\n") {
		for _, sym := range strings.Split(l, " -> ") {
			if name, ok := strings.CutSuffix(sym, " <ReflectMethod>"); ok && !seen[name] {
				seen[name] = true
				t.Errorf("%s calls reflect's Method or MethodByName: the linker now keeps every exported method", name)
			}
		}
	}
}

// makefileTags are the build tags of the Makefile (TAGS), those of make
// build and make dist.
func makefileTags(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TAGS\s*\?=\s*(\S+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no TAGS ?= line in the Makefile")
	}
	return string(m[1])
}

// TestBuildsForEveryArchitecture: the packages build for the narrowest
// targets of make dist too: 32-bit (386), and MIPS, whose Stat_t device
// numbers are 32 bits wide. (TestForeignArch runs arm64 and armhf.)
func TestBuildsForEveryArchitecture(t *testing.T) {
	for _, env := range [][]string{{"GOARCH=386"}, {"GOARCH=mips", "GOMIPS=softfloat"}} {
		build := exec.Command("go", "build", "-o", os.DevNull, "../...")
		build.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), env...)
		if b, err := build.CombinedOutput(); err != nil {
			t.Errorf("build for %v: %v\n%s", env, err, b)
		}
	}
}

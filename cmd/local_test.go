package cmd_test

// Tests of the lxc-local template (cmd.MainLocal): argument parsing against
// GNU getopt, the result against LXC's own shell lxc-local on the same
// tarballs, and bad input. They run MainLocal in-process through
// runLocal; once the command is wired into the binary, runLocal can run
// the binary instead and every test stays as it is.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/lxc/lxc-download/cmd"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

const shellLocal = "/usr/share/lxc/templates/lxc-local"

// localMainEnv makes the test binary, run with it set, be the lxc-local
// template: a process of its own for the tests that need one (a user
// namespace), until the template is part of the real binary.
const localMainEnv = "LXC_DOWNLOAD_TEST_LOCAL_MAIN"

func init() {
	if os.Getenv(localMainEnv) == "1" {
		os.Exit(cmd.MainLocal(os.Args[1:], cmd.Stdio()))
	}
}

// runLocalProcess runs the lxc-local template as a process of its own,
// through prog (such as unshare) when it is given, for e's container.
func runLocalProcess(e *env, prog []string, args ...string) result {
	e.t.Helper()
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	argv := append(append(prog, self, "--path="+e.path, "--name="+e.name, "--rootfs="+e.rootfs), args...)
	return runClean(e.t, []string{localMainEnv + "=1"}, argv...)
}

// runLocal runs the lxc-local template with lxc-create's arguments for e's
// container first, then args.
func runLocal(e *env, args ...string) result {
	e.t.Helper()
	full := []string{"--path=" + e.path, "--name=" + e.name, "--rootfs=" + e.rootfs}
	return runLocalRaw(append(full, args...)...)
}

// runLocalRaw runs the lxc-local template with exactly args, in an
// environment without LXC_* variables.
func runLocalRaw(args ...string) result {
	var out, errb bytes.Buffer
	s := cmd.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		if strings.HasPrefix(k, "LXC_") {
			return ""
		}
		return os.Getenv(k)
	}}
	code := cmd.MainLocal(args, s)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// newLocalEnv is a container about to be made by lxc-create, without an
// image server.
func newLocalEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.newContainer("c1")
	return e
}

// compressions are the formats lxc-local takes, by the name of the file
// written in each.
var compressions = []string{"tar.xz", "tar.gz", "tar.zst", "tar"}

func compress(t *testing.T, format string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch format {
	case "tar":
		return data
	case "tar.xz":
		out, err := fetchtest.XZ(data, 0)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case "tar.gz":
		w := gzip.NewWriter(&b)
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "tar.zst":
		w, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("no format %q", format)
	}
	return b.Bytes()
}

// metaTar is an uncompressed meta tarball of files, as the image builders
// pack them.
func metaTar(t *testing.T, meta map[string]string) []byte {
	t.Helper()
	names := make([]string, 0, len(meta))
	for n := range meta {
		names = append(names, n)
	}
	sort.Strings(names)
	var files []fetchtest.File
	for _, n := range names {
		files = append(files, fetchtest.File{Name: n, Mode: 0o644, Body: meta[n]})
	}
	data, err := fetchtest.Tarball(files)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// localImage is DefaultImage as uncompressed rootfs and meta tarballs,
// with a tty.conf for the mingetty fix.
func localImage(t *testing.T) (rootfs []byte, meta map[string]string) {
	t.Helper()
	img := fetchtest.DefaultImage()
	files := append(img.Rootfs,
		fetchtest.File{Name: "./etc/init/", Type: tar.TypeDir, Mode: 0o755},
		fetchtest.File{Name: "./etc/init/tty.conf", Mode: 0o644, Body: "exec /sbin/mingetty tty1\n"})
	rootfs, err := fetchtest.Tarball(files)
	if err != nil {
		t.Fatal(err)
	}
	return rootfs, img.Meta
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runShellLocal runs LXC's shell lxc-local for e's container.
func runShellLocal(e *env, args ...string) result {
	e.t.Helper()
	return runClean(e.t, nil, append([]string{"sh", shellLocal, "--path=" + e.path, "--name=" + e.name, "--rootfs=" + e.rootfs}, args...)...)
}

// runClean runs argv in this process's environment without LXC_*
// variables, plus extra.
func runClean(t *testing.T, extra []string, argv ...string) result {
	t.Helper()
	c := exec.Command(argv[0], argv[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LXC_") {
			c.Env = append(c.Env, kv)
		}
	}
	c.Env = append(c.Env, extra...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// containerFiles describes LXC_PATH but the rootfs: names, modes, owners,
// and contents with the path itself written LXCPATH.
func containerFiles(t *testing.T, e *env) string {
	t.Helper()
	ents, err := os.ReadDir(e.path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ent := range ents {
		if ent.Name() == "rootfs" {
			continue
		}
		fi, err := ent.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(e.path, ent.Name()))
		b.WriteString(ent.Name() + " " + fi.Mode().String() + "\n" + strings.ReplaceAll(string(data), e.path, "LXCPATH") + "\n")
	}
	return b.String()
}

func needShellLocal(t *testing.T) []byte {
	t.Helper()
	needRoot(t, "the shell template unpacks owners and devices")
	need(t, "LXC's shell template "+shellLocal, isShellTemplate(shellLocal))
	need(t, "tar, xz, gzip and zstd for the shell template", have("tar") && have("xz") && have("gzip") && have("zstd"))
	tmpl, err := os.ReadFile(shellLocal)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// compareWithShell checks that ours made what theirs did: the same
// messages, the same files beside the rootfs (config and fstab byte for
// byte), and the same rootfs tree.
func compareWithShell(t *testing.T, ours, theirs *env, ro, rt result, xattrs bool) {
	t.Helper()
	if ro.code != 0 || rt.code != 0 {
		t.Fatalf("ours:\n%s\nshell template:\n%s", ro, rt)
	}
	if ro.stdout != rt.stdout || ro.stderr != rt.stderr {
		t.Errorf("output differs:\n--- ours\n%s\n--- shell template\n%s", ro, rt)
	}
	if a, b := containerFiles(t, ours), containerFiles(t, theirs); a != b {
		t.Errorf("container files differ:\n--- ours\n%s\n--- shell template\n%s", a, b)
	}
	// Both rewrite tty.conf for the mingetty fix, so its modification
	// time is when that happened: the same only by chance.
	for _, e := range []*env{ours, theirs} {
		os.Chtimes(filepath.Join(e.rootfs, "etc/init/tty.conf"), fetchtest.DefaultModTime, fetchtest.DefaultModTime)
	}
	if a, b := describeTree(t, ours.rootfs, xattrs), describeTree(t, theirs.rootfs, xattrs); a != b {
		t.Errorf("rootfs differs from the shell template's:\n--- ours\n%s\n--- shell template\n%s", a, b)
	}
	// describeTree leaves out the content of the templated files.
	for _, f := range []string{"etc/hostname", "etc/hosts", "etc/init/tty.conf"} {
		a, _ := os.ReadFile(filepath.Join(ours.rootfs, f))
		b, _ := os.ReadFile(filepath.Join(theirs.rootfs, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: ours %q, shell template's %q", f, a, b)
		}
	}
}

// TestLocalShellIdentical runs LXC's shell lxc-local and ours on the same
// tarballs, in every compression, and compares what they made. Debian
// 12's lxc-local (LXC 5.0) reads only xz, so it gets the xz tarballs of
// the same tar streams; a template that detects the compression itself
// (LXC 7.0) gets the same files as ours.
func TestLocalShellIdentical(t *testing.T) {
	tmpl := needShellLocal(t)
	autoDetect := bytes.Contains(tmpl, []byte("-xpaf"))
	// xattrs are restored since upstream 07e3a516e (LXC 6.0); LXC 5.0's
	// template drops them, so they are compared only where it keeps them.
	xattrs := bytes.Contains(tmpl, []byte("--xattrs-include"))
	rootfsTar, meta := localImage(t)
	metaRaw := metaTar(t, meta)
	files := t.TempDir()

	var shellRun result
	var shell *env
	parent := t
	for _, format := range compressions {
		t.Run(format, func(t *testing.T) {
			m := writeFile(t, files, "meta."+format, compress(t, format, metaRaw))
			r := writeFile(t, files, "rootfs."+format, compress(t, format, rootfsTar))
			if shell == nil || autoDetect {
				shell = newLocalEnv(parent)
				shellM, shellR := m, r
				if !autoDetect {
					shellM = writeFile(t, files, "shell-meta.tar.xz", compress(t, "tar.xz", metaRaw))
					shellR = writeFile(t, files, "shell-rootfs.tar.xz", compress(t, "tar.xz", rootfsTar))
				}
				shellRun = runShellLocal(shell, "-m", shellM, "-f", shellR)
			}
			ours := newLocalEnv(t)
			got := runLocal(ours, "-m", m, "-f", r)
			compareWithShell(t, ours, shell, got, shellRun, xattrs)
			if !xattrs {
				// Ours restores them, as lxc-download does.
				if out, err := exec.Command("getfattr", "-d", "-m", "security.capability", filepath.Join(ours.rootfs, "usr/bin/ping")).CombinedOutput(); err == nil && !bytes.Contains(out, []byte("security.capability")) {
					t.Errorf("usr/bin/ping lost its capability: %s", out)
				}
			}
		})
	}
}

// TestLocalNoDev: --no-dev does what LXC's lxc-local meant it to (it adds
// --exclude=./dev/* to tar, but its getopt takes the next argument as the
// option's value): compared with the shell template given that exclude in
// the image's excludes file.
func TestLocalNoDev(t *testing.T) {
	tmpl := needShellLocal(t)
	xattrs := bytes.Contains(tmpl, []byte("--xattrs-include"))
	rootfsTar, meta := localImage(t)
	files := t.TempDir()
	r := writeFile(t, files, "rootfs.tar.xz", compress(t, "tar.xz", rootfsTar))

	withExclude := map[string]string{"excludes": "./dev/*\n"}
	for k, v := range meta {
		withExclude[k] = v
	}
	shell := newLocalEnv(t)
	rt := runShellLocal(shell, "-m", writeFile(t, files, "shell-meta.tar.xz", compress(t, "tar.xz", metaTar(t, withExclude))), "-f", r)

	ours := newLocalEnv(t)
	ro := runLocal(ours, "--no-dev", "-m", writeFile(t, files, "meta.tar.xz", compress(t, "tar.xz", metaTar(t, meta))), "-f", r)
	compareWithShell(t, ours, shell, ro, rt, xattrs)
	ents, err := os.ReadDir(filepath.Join(ours.rootfs, "dev"))
	if err != nil || len(ents) != 1 || ents[0].Name() != "pts" {
		t.Errorf("dev holds %v, %v; want only pts", ents, err)
	}
}

// TestLocalWithoutMetadata: with no -m, the config only gains its
// lxc.uts.name (as LXC 6.0's lxc-local does; 5.0's cannot run without
// metadata) and nothing is substituted.
func TestLocalWithoutMetadata(t *testing.T) {
	rootfsTar, _ := localImage(t)
	for _, format := range []string{"tar.gz", "tar"} {
		e := newLocalEnv(t)
		before := e.read("config")
		r := runLocal(e, "-f", writeFile(t, t.TempDir(), "rootfs."+format, compress(t, format, rootfsTar)))
		// Without root, the unpacker warns about the owners and devices
		// it cannot restore.
		if r.code != 0 || r.stdout != "Unpacking the rootfs\n" || (r.stderr != "" && os.Geteuid() == 0) {
			t.Fatalf("%s", r)
		}
		if got := e.read("config"); got != before+"lxc.uts.name = c1\n" {
			t.Errorf("config:\n%s", got)
		}
		if _, err := os.Stat(filepath.Join(e.path, "fstab")); err == nil {
			t.Error("an fstab was written")
		}
		if b, _ := os.ReadFile(filepath.Join(e.rootfs, "etc/hostname")); string(b) != "LXC_NAME\n" {
			t.Errorf("etc/hostname = %q", b)
		}
		if fi, err := os.Stat(filepath.Join(e.rootfs, "dev/pts")); err != nil || !fi.IsDir() {
			t.Errorf("dev/pts: %v", err)
		}
	}
}

// TestLocalUserMode: in a user namespace the relevant files are the -user
// ones (config-user, excludes-user), and what only real root may restore
// is skipped with a warning.
func TestLocalUserMode(t *testing.T) {
	needRoot(t, "unshare -r maps root to itself only for root")
	need(t, "unshare (util-linux)", have("unshare"))
	rootfsTar, meta := localImage(t)
	dir := t.TempDir()
	e := newLocalEnv(t)
	r := runLocalProcess(e, []string{"unshare", "-r"}, "-m", writeFile(t, dir, "meta.tar.gz", compress(t, "tar.gz", metaTar(t, meta))),
		"-f", writeFile(t, dir, "rootfs.tar.zst", compress(t, "tar.zst", rootfsTar)))
	if r.code != 0 {
		if strings.Contains(r.stderr, "unshare failed") {
			t.Skipf("no user namespaces here: %s", r.stderr)
		}
		t.Fatalf("create in a user namespace:\n%s", r)
	}
	cfgUser := strings.ReplaceAll(meta["config-user"], "LXC_TEMPLATE_CONFIG", "/usr/share/lxc/config")
	if !strings.Contains(e.read("config"), "# Distribution configuration\n"+cfgUser) {
		t.Errorf("config does not hold config-user:\n%s", e.read("config"))
	}
	if _, err := os.Lstat(filepath.Join(e.rootfs, "dev/null")); err == nil {
		t.Errorf("dev/null unpacked although excludes-user lists it")
	}
	if !strings.Contains(r.stderr, "WARNING: ") || strings.Contains(r.stderr, "ERROR") {
		t.Errorf("want warnings about owners, no error:\n%s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(e.rootfs, "etc/hostname")); string(b) != "c1\n" {
		t.Errorf("etc/hostname = %q", b)
	}
}

// TestLocalLXCCreate runs the real lxc-create with the lxc-local template
// (a shim that runs this test binary as it), and gets a container that
// lxc-create accepts.
func TestLocalLXCCreate(t *testing.T) {
	needRoot(t, "lxc-create writes containers as root")
	need(t, "lxc-create (Debian's lxc package)", have("lxc-create"))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	shim := writeFile(t, dir, "lxc-local", []byte("#!/bin/sh\n"+localMainEnv+"=1 exec '"+self+"' \"$@\"\n"))
	os.Chmod(shim, 0o755)
	// The image includes LXC_TEMPLATE_CONFIG/debian.common.conf, which
	// Debian's lxc package does not ship (see TestLXCCreate).
	tc := filepath.Join(dir, "lxc-config")
	os.MkdirAll(tc, 0o755)
	writeFile(t, tc, "debian.common.conf", []byte("lxc.include = /usr/share/lxc/config/common.conf\n"))
	rootfsTar, meta := localImage(t)
	lxcpath := filepath.Join(dir, "lxcpath")
	r := runClean(t, []string{"LXC_TEMPLATE_CONFIG=" + tc}, "lxc-create", "-P", lxcpath, "-t", shim, "-n", "ct1", "--",
		"-m", writeFile(t, dir, "meta.tar.zst", compress(t, "tar.zst", metaTar(t, meta))),
		"-f", writeFile(t, dir, "rootfs.tar.gz", compress(t, "tar.gz", rootfsTar)))
	if r.code != 0 {
		t.Fatalf("lxc-create:\n%s", r)
	}
	config, err := os.ReadFile(filepath.Join(lxcpath, "ct1", "config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"# Template used to create this container: " + shim,
		"lxc.include = " + tc + "/debian.common.conf\n",
		"lxc.uts.name = ct1\n",
		"lxc.mount.fstab = " + filepath.Join(lxcpath, "ct1", "fstab") + "\n",
	} {
		if !strings.Contains(string(config), w) {
			t.Errorf("config lacks %q:\n%s", w, config)
		}
	}
	if b, err := os.ReadFile(filepath.Join(lxcpath, "ct1", "rootfs", "etc", "hostname")); err != nil || string(b) != "ct1\n" {
		t.Errorf("rootfs/etc/hostname = %q, %v", b, err)
	}
	// A failing template makes lxc-create fail and clean up.
	bad := runClean(t, nil, "lxc-create", "-P", lxcpath, "-t", shim, "-n", "ct2", "--", "-f", writeFile(t, dir, "bad.tar", []byte("not a tarball")))
	if bad.code == 0 || !strings.Contains(bad.stderr+bad.stdout, "ERROR: ") {
		t.Errorf("lxc-create with a bad tarball:\n%s", bad)
	}
	if _, err := os.Stat(filepath.Join(lxcpath, "ct2")); err == nil {
		t.Errorf("lxc-create left the failed container behind")
	}
}

// TestLocalStandalone: --rootfs alone unpacks there and writes no config.
func TestLocalStandalone(t *testing.T) {
	rootfsTar, meta := localImage(t)
	dir := t.TempDir()
	dst := filepath.Join(dir, "chroot", "bookworm")
	r := runLocalRaw("--rootfs", dst, "-m", writeFile(t, dir, "meta.tar", metaTar(t, meta)), "-f", writeFile(t, dir, "rootfs.tar.zst", compress(t, "tar.zst", rootfsTar)))
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

// TestLocalTemplatesStayInside: a templates entry that leads outside the
// rootfs, by "..", an absolute symlink or a relative one, touches nothing
// outside it.
func TestLocalTemplatesStayInside(t *testing.T) {
	e := newLocalEnv(t)
	secret := writeFile(t, e.dir, "secret", []byte("LXC_NAME secret\n"))
	rootfsTar, err := fetchtest.Tarball([]fetchtest.File{
		{Name: "./", Type: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/abs", Type: tar.TypeSymlink, Linkname: secret},
		{Name: "./etc/rel", Type: tar.TypeSymlink, Linkname: "../../../../secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{"config": "lxc.arch = x86_64\n", "templates": "/etc/abs\n/etc/rel\n../../secret\n/../../secret\n"}
	r := runLocal(e, "-m", writeFile(t, t.TempDir(), "meta.tar", metaTar(t, meta)), "-f", writeFile(t, t.TempDir(), "rootfs.tar", rootfsTar))
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if b, _ := os.ReadFile(secret); string(b) != "LXC_NAME secret\n" {
		t.Errorf("the file outside became %q", b)
	}
	for _, l := range []string{"etc/abs", "etc/rel"} {
		if fi, err := os.Lstat(filepath.Join(e.rootfs, l)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is no longer a symlink: %v", l, err)
		}
	}
}

// TestLocalBadInput: every bad input gives one ERROR line and exit status
// 1, and leaves the rootfs empty and the config as lxc-create wrote it.
func TestLocalBadInput(t *testing.T) {
	rootfsTar, meta := localImage(t)
	files := t.TempDir()
	good := map[string]string{}
	for _, f := range compressions {
		good[f] = writeFile(t, files, "rootfs."+f, compress(t, f, rootfsTar))
	}
	goodMeta := writeFile(t, files, "meta.tar.xz", compress(t, "tar.xz", metaTar(t, meta)))
	damaged := func(format string, mangle func([]byte) []byte) string {
		return writeFile(t, files, "damaged-"+format+"-"+strings.ReplaceAll(t.Name(), "/", "_"), mangle(compress(t, format, rootfsTar)))
	}
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0x55; return b }
	cut := func(b []byte) []byte { return b[:len(b)*2/3] }
	escapes := 0
	escape := func(entries ...fetchtest.File) string {
		escapes++
		data, err := fetchtest.Tarball(append([]fetchtest.File{
			{Name: "./", Type: tar.TypeDir, Mode: 0o755},
			{Name: "./etc/", Type: tar.TypeDir, Mode: 0o755},
			{Name: "./etc/hostname", Mode: 0o644, Body: "x\n"},
		}, entries...))
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, files, fmt.Sprintf("escape%d.tar.gz", escapes), compress(t, "tar.gz", data))
	}
	noConfig := writeFile(t, files, "noconfig.tar.gz", compress(t, "tar.gz", metaTar(t, map[string]string{"config-user": "x\n", "fstab": "x\n"})))
	badMeta := writeFile(t, files, "badmeta.tar", metaTar(t, map[string]string{"config": "x\n", "../escape": "x\n"}))
	text := writeFile(t, files, "text.tar.xz", bytes.Repeat([]byte("this is not a tarball\n"), 100))
	empty := writeFile(t, files, "empty.tar", nil)
	bzip2 := writeFile(t, files, "rootfs.tar.bz2", []byte("BZh91AY&SY"))

	for _, c := range []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"no -f", []string{"-m", goodMeta}, "no rootfs tarball given: pass -f/--fstree FILE", false},
		{"empty -f", []string{"-f", ""}, "no rootfs tarball given", false},
		{"-f missing", []string{"-f", filepath.Join(files, "nosuch.tar.xz")}, "rootfs tarball: open " + files + "/nosuch.tar.xz: no such file or directory", false},
		{"-f directory", []string{"-f", files}, files + ": rootfs tarball: not a regular file", false},
		{"-f text", []string{"-f", text}, text + ": rootfs tarball: not a tarball", false},
		{"-f empty", []string{"-f", empty}, "rootfs tarball: not a tarball: the file is empty", false},
		{"-f bzip2", []string{"-f", bzip2}, "bzip2-compressed archives are not supported", false},
		{"-f corrupt xz", []string{"-f", damaged("tar.xz", flip)}, "xz", false},
		{"-f corrupt gzip", []string{"-f", damaged("tar.gz", flip)}, "gzip", false},
		{"-f corrupt zstd", []string{"-f", damaged("tar.zst", flip)}, "zstd", false},
		{"-f truncated xz", []string{"-f", damaged("tar.xz", cut)}, "xz", false},
		{"-f truncated gzip", []string{"-f", damaged("tar.gz", cut)}, "gzip: truncated file", false},
		{"-f truncated zstd", []string{"-f", damaged("tar.zst", cut)}, "zstd", false},
		{"-f truncated tar", []string{"-f", damaged("tar", func(b []byte) []byte { return b[:len(b)/2+700] })}, "truncated archive", false},
		{"-f ..", []string{"-f", escape(fetchtest.File{Name: "./../escaped", Mode: 0o644, Body: "x\n"})}, `name contains ".."`, false},
		{"-f through a symlink", []string{"-f", escape(
			fetchtest.File{Name: "./etc/out", Type: tar.TypeSymlink, Linkname: "/"},
			fetchtest.File{Name: "./etc/out/", Type: tar.TypeDir, Mode: 0o755},
			fetchtest.File{Name: "./etc/out/escaped", Mode: 0o644, Body: "x\n"},
			fetchtest.File{Name: "./etc/hostname/x", Mode: 0o644, Body: "x\n"},
		)}, "etc/hostname/x", false},
		{"-m missing", []string{"-m", filepath.Join(files, "nosuch"), "-f", good["tar.xz"]}, "meta tarball: open", false},
		{"-m not a tarball", []string{"-m", text, "-f", good["tar.xz"]}, text + ": meta tarball: not a tarball", false},
		{"-m corrupt", []string{"-m", writeFile(t, files, "meta-corrupt.tar.gz", flip(compress(t, "tar.gz", metaTar(t, meta)))), "-f", good["tar.xz"]}, "meta tarball: ", false},
		{"-m without config", []string{"-m", noConfig, "-f", good["tar.gz"]}, "meta tarball is missing the configuration file", false},
		{"-m with a path", []string{"-m", badMeta, "-f", good["tar.gz"]}, `meta tarball: "../escape" is not a plain file name at the root`, false},
		{"unknown option", []string{"-f", good["tar"], "--bogus"}, "unknown option --bogus", true},
		{"unknown short option", []string{"-x", "-f", good["tar"]}, "unknown option -x", true},
		{"ambiguous option", []string{"--m", "x", "-f", good["tar"]}, "option --m is ambiguous (--metadata, --mapped-uid, --mapped-gid)", true},
		{"value to --no-dev", []string{"--no-dev=yes", "-f", good["tar"]}, "option --no-dev takes no value", true},
		{"positional", []string{"-f", good["tar"], "extra"}, `unexpected argument "extra"`, true},
		{"-f without value", []string{"-f"}, "option -f needs a value", true},
		{"bad mapped uid", []string{"-f", good["tar"], "--mapped-uid", "root"}, `--mapped-uid must be a numeric id or -1, not "root"`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newLocalEnv(t)
			before := containerFiles(t, e)
			r := runLocal(e, c.args...)
			e.mustFail(r, c.want)
			if after := containerFiles(t, e); after != before {
				t.Errorf("container files changed:\n%s\nwere:\n%s", after, before)
			}
			if hasUsage := strings.Contains(r.stderr, "LXC internal arguments"); hasUsage != c.usage {
				t.Errorf("usage shown: %v, want %v\n%s", hasUsage, c.usage, r)
			}
			if r.stdout != "" && r.stdout != "Unpacking the rootfs\n" {
				t.Errorf("stdout %q", r.stdout)
			}
			if _, err := os.Stat("/escaped"); err == nil {
				os.Remove("/escaped")
				t.Error("wrote /escaped outside the rootfs")
			}
		})
	}
}

// TestLocalHelp: -h and --help print the usage and succeed.
func TestLocalHelp(t *testing.T) {
	for _, a := range []string{"-h", "--help", "--he"} {
		r := runLocalRaw(a)
		if r.code != 0 || !strings.Contains(r.stdout, "[ --no-dev ]") || r.stderr != "" {
			t.Errorf("%s: %s", a, r)
		}
	}
}

// getoptLocal is how LXC's lxc-local reads its arguments, with --no-dev
// taking no value (as upstream meant).
var getoptLocal = []string{"-o", "hm:f:", "-l", "help,metadata:,fstree:,no-dev,name:,path:,rootfs:,mapped-uid:,mapped-gid:", "--"}

// TestParseLocal parses each command line as the shell template's GNU
// getopt does, and compares: the same options and values, the same
// refusals.
func TestParseLocal(t *testing.T) {
	need(t, "GNU getopt (util-linux)", have("getopt"))
	for _, c := range []struct {
		args []string
		want cmd.LocalOptions // compared when err is empty
		err  string
	}{
		// lxc-create's own forms.
		{[]string{"--path=/p", "--name=c1", "--rootfs=/p/rootfs", "-m", "meta.tar.xz", "-f", "rootfs.tar.xz"},
			cmd.LocalOptions{Path: "/p", Name: "c1", Rootfs: "/p/rootfs", Metadata: "meta.tar.xz", Fstree: "rootfs.tar.xz", MappedUID: -1, MappedGID: -1}, ""},
		{[]string{"--path=/p", "--name=c1", "--rootfs=/p/rootfs", "--fstree", "r", "--mapped-uid", "65536", "--mapped-gid", "65536"},
			cmd.LocalOptions{Path: "/p", Name: "c1", Rootfs: "/p/rootfs", Fstree: "r", MappedUID: 65536, MappedGID: 65536}, ""},
		// getopt's forms.
		{[]string{"-mmeta", "-frootfs"}, cmd.LocalOptions{Metadata: "meta", Fstree: "rootfs", MappedUID: -1, MappedGID: -1}, ""},
		{[]string{"--meta=m", "--fs", "r", "--no"}, cmd.LocalOptions{Metadata: "m", Fstree: "r", NoDev: true, MappedUID: -1, MappedGID: -1}, ""},
		{[]string{"-hf", "r"}, cmd.LocalOptions{Help: true, Fstree: "r", MappedUID: -1, MappedGID: -1}, ""},
		{[]string{"-hfr", "--"}, cmd.LocalOptions{Help: true, Fstree: "r", MappedUID: -1, MappedGID: -1}, ""},
		{[]string{"-f", "-m", "--no-dev", "-f", "--name"}, cmd.LocalOptions{Fstree: "--name", NoDev: true, MappedUID: -1, MappedGID: -1}, ""},
		{[]string{"-f", "a", "-f", "b", "--mapped-uid=-1", "--mapped-gid="}, cmd.LocalOptions{Fstree: "b", MappedUID: -1, MappedGID: -1}, ""},
		{[]string{"--name", "", "-f", ""}, cmd.LocalOptions{MappedUID: -1, MappedGID: -1}, ""},
		// Refused by both.
		{[]string{"--bogus"}, cmd.LocalOptions{}, "unknown option --bogus"},
		{[]string{"-x"}, cmd.LocalOptions{}, "unknown option -x"},
		{[]string{"-hx"}, cmd.LocalOptions{}, "unknown option -x"},
		{[]string{"--ma=1"}, cmd.LocalOptions{}, "option --ma is ambiguous (--mapped-uid, --mapped-gid)"},
		{[]string{"--n", "x"}, cmd.LocalOptions{}, "option --n is ambiguous (--no-dev, --name)"},
		{[]string{"--no-dev=1"}, cmd.LocalOptions{}, "option --no-dev takes no value"},
		{[]string{"--help=1"}, cmd.LocalOptions{}, "option --help takes no value"},
		{[]string{"-f", "r", "-m"}, cmd.LocalOptions{}, "option -m needs a value"},
		{[]string{"-f", "r", "--metadata"}, cmd.LocalOptions{}, "option --metadata needs a value"},
		{[]string{"--=x"}, cmd.LocalOptions{}, "unknown option --=x"},
	} {
		got, err := cmd.ParseLocal(c.args)
		name := strings.Join(c.args, " ")
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%s: error %v, want %q", name, err, c.err)
			}
		} else if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %+v, %v; want %+v", name, got, err, c.want)
		}

		// GNU getopt on the same line: it fails where ParseLocal does, and
		// its normalised line (each option alone, each value an argument
		// of its own) means the same to ParseLocal.
		out, gerr := exec.Command("getopt", append(getoptLocal, c.args...)...).Output()
		if (gerr != nil) != (c.err != "") {
			t.Errorf("%s: getopt %v (%q), ParseLocal %v", name, gerr, out, err)
			continue
		}
		if gerr != nil {
			continue
		}
		normal, serr := exec.Command("sh", "-c", `eval set -- "$1"; printf '%s\0' "$@"`, "sh", string(out)).Output()
		if serr != nil {
			t.Fatal(serr)
		}
		words := strings.Split(strings.TrimSuffix(string(normal), "\x00"), "\x00")
		if words[len(words)-1] != "--" {
			t.Errorf("%s: getopt left arguments %q", name, words)
			continue
		}
		fromGetopt, err := cmd.ParseLocal(words)
		if err != nil || !reflect.DeepEqual(fromGetopt, got) {
			t.Errorf("%s: getopt made it %q, which parses as %+v, %v; want %+v", name, words, fromGetopt, err, got)
		}
	}
}

// FuzzParseLocal: any command line is parsed or refused without a panic,
// and what is parsed reads the same when written out again in lxc-create's
// --opt=value form.
func FuzzParseLocal(f *testing.F) {
	f.Add("--path=/p\x00--name=c1\x00--rootfs=/p/rootfs\x00-m\x00meta.tar.xz\x00-f\x00rootfs.tar.xz")
	f.Add("-hmmeta\x00--no\x00--fs\x00r\x00--")
	f.Add("--mapped-uid\x0065536\x00--ma=1\x00-x")
	f.Fuzz(func(t *testing.T, line string) {
		o, err := cmd.ParseLocal(strings.Split(line, "\x00"))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of more than one line: %q", err)
			}
			return
		}
		again := []string{"--metadata=" + o.Metadata, "--fstree=" + o.Fstree, "--name=" + o.Name, "--path=" + o.Path, "--rootfs=" + o.Rootfs,
			"--mapped-uid=" + fmt.Sprint(o.MappedUID), "--mapped-gid=" + fmt.Sprint(o.MappedGID)}
		if o.Help {
			again = append(again, "--help")
		}
		if o.NoDev {
			again = append(again, "--no-dev")
		}
		if o2, err := cmd.ParseLocal(again); err != nil || !reflect.DeepEqual(o, o2) {
			t.Errorf("%q parsed as %+v; written out %q, as %+v, %v", line, o, again, o2, err)
		}
	})
}

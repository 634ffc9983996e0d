package cmd_test

// Tests of the local command, LXC's lxc-local template: the real binary,
// run as `lxc-download local` and through a link named lxc-local, against
// LXC's own shell lxc-local on the same tarballs; bad input; and lxc-create
// through the installed shim. Argument parsing is compared with GNU
// getopt in-process.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/lxc/lxc-download/cmd"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

const shellLocal = "/usr/share/lxc/templates/lxc-local"

var (
	localLinkOnce sync.Once
	localLinkPath string
	localLinkErr  error
)

// localLink is a symbolic link named lxc-local to the binary, as a
// packager may install it.
func localLink(t *testing.T) string {
	t.Helper()
	localLinkOnce.Do(func() {
		localLinkPath = filepath.Join(filepath.Dir(binary), "lxc-local")
		localLinkErr = os.Symlink(binary, localLinkPath)
	})
	if localLinkErr != nil {
		t.Fatal(localLinkErr)
	}
	return localLinkPath
}

// How the local template is run: as the binary's command, or through a
// link named lxc-local.
const (
	asCommand = "lxc-download local"
	asLink    = "lxc-local"
)

func localArgv(t *testing.T, how string) []string {
	if how == asLink {
		return []string{localLink(t)}
	}
	return []string{binary, "local"}
}

// runLocal runs the local command with lxc-create's arguments for e's
// container first, then args.
func runLocal(e *env, args ...string) result {
	e.t.Helper()
	return runLocalAs(e, asCommand, args...)
}

func runLocalAs(e *env, how string, args ...string) result {
	e.t.Helper()
	argv := append(localArgv(e.t, how), "--path="+e.path, "--name="+e.name, "--rootfs="+e.rootfs)
	return runClean(e.t, nil, append(argv, args...)...)
}

// newLocalEnv is a container about to be made by lxc-create, without an
// image server.
func newLocalEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.newContainer("c1")
	return e
}

// compressions are the formats the local template takes, by the suffix of
// the files written in each.
var compressions = []string{"tar.xz", "tar.gz", "tar.zst", "tar"}

// compress compresses data with the real tool of format.
func compress(t *testing.T, format string, data []byte) []byte {
	t.Helper()
	var tool []string
	switch format {
	case "tar":
		return data
	case "tar.xz":
		tool = []string{"xz", "-c"}
	case "tar.gz":
		tool = []string{"gzip", "-c", "-n"}
	case "tar.zst":
		tool = []string{"zstd", "-q", "-c"}
	default:
		t.Fatalf("no format %q", format)
	}
	need(t, tool[0], have(tool[0]))
	c := exec.Command(tool[0], tool[1:]...)
	c.Stdin = bytes.NewReader(data)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s: %v", tool[0], err)
	}
	return out
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
		st := fi.Sys().(*syscall.Stat_t)
		data, _ := os.ReadFile(filepath.Join(e.path, ent.Name()))
		fmt.Fprintf(&b, "%s %s %d:%d\n%s\n", ent.Name(), fi.Mode(), st.Uid, st.Gid, strings.ReplaceAll(string(data), e.path, "LXCPATH"))
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

// TestLocalShellIdentical runs LXC's shell lxc-local and ours, both as
// `lxc-download local` and as lxc-local, on the same tarballs in every
// compression, and compares what they made. Debian 12's lxc-local (LXC
// 5.0) reads only xz, so it gets the xz tarballs of the same tar streams;
// a template that detects the compression itself (LXC 7.0) gets the same
// files as ours.
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
			for _, how := range []string{asCommand, asLink} {
				ours := newLocalEnv(t)
				got := runLocalAs(ours, how, "-m", m, "-f", r)
				compareWithShell(t, ours, shell, got, shellRun, xattrs)
				if !xattrs {
					// Ours restores them, as lxc-download does.
					if out, err := exec.Command("getfattr", "-d", "-m", "security.capability", filepath.Join(ours.rootfs, "usr/bin/ping")).CombinedOutput(); err == nil && !bytes.Contains(out, []byte("security.capability")) {
						t.Errorf("%s: usr/bin/ping lost its capability: %s", how, out)
					}
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
	// Without it, dev keeps its devices.
	full := newLocalEnv(t)
	if r := runLocalAs(full, asLink, "-m", writeFile(t, files, "meta2.tar.xz", compress(t, "tar.xz", metaTar(t, meta))), "-f", r); r.code != 0 {
		t.Fatalf("%s", r)
	}
	if _, err := os.Lstat(filepath.Join(full.rootfs, "dev/null")); err != nil {
		t.Errorf("without --no-dev: %v", err)
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
	argv := append([]string{"unshare", "-r"}, localArgv(t, asLink)...)
	argv = append(argv, "--path="+e.path, "--name="+e.name, "--rootfs="+e.rootfs,
		"-m", writeFile(t, dir, "meta.tar.gz", compress(t, "tar.gz", metaTar(t, meta))),
		"-f", writeFile(t, dir, "rootfs.tar.zst", compress(t, "tar.zst", rootfsTar)))
	r := runClean(t, nil, argv...)
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

// TestLocalLXCCreate runs the real lxc-create with the local template
// through the shim make install writes (TEMPLATES' default now names it),
// in a temporary prefix, and gets a container that lxc-create accepts; a
// failing run makes lxc-create fail and clean up.
func TestLocalLXCCreate(t *testing.T) {
	needRoot(t, "lxc-create writes containers as root")
	need(t, "lxc-create (Debian's lxc package)", have("lxc-create"))
	dir := makeDir(t)
	root := t.TempDir()
	runMake(t, dir, "install", "PREFIX="+root+"/usr", "TEMPLATEDIR="+root+"/templates", "DIVERT=")
	shim := filepath.Join(root, "templates", "lxc-local")
	if !strings.Contains(readFile(t, shim), "/lxc-download local \"$@\"\n") {
		t.Fatalf("the lxc-local shim:\n%s", readFile(t, shim))
	}
	work := t.TempDir()
	// The image includes LXC_TEMPLATE_CONFIG/debian.common.conf, which
	// Debian's lxc package does not ship (see TestLXCCreate).
	tc := filepath.Join(work, "lxc-config")
	copyContent(t, filepath.Join(tc, "debian.common.conf"), "lxc.include = /usr/share/lxc/config/common.conf\n", 0o644)
	rootfsTar, meta := localImage(t)
	lxcpath := filepath.Join(work, "lxcpath")
	r := runClean(t, []string{"LXC_TEMPLATE_CONFIG=" + tc}, "lxc-create", "-P", lxcpath, "-t", shim, "-n", "ct1", "--",
		"-m", writeFile(t, work, "meta.tar.zst", compress(t, "tar.zst", metaTar(t, meta))),
		"-f", writeFile(t, work, "rootfs.tar.gz", compress(t, "tar.gz", rootfsTar)))
	if r.code != 0 {
		t.Fatalf("lxc-create:\n%s", r)
	}
	config := readFile(t, filepath.Join(lxcpath, "ct1", "config"))
	for _, w := range []string{
		"# Template used to create this container: " + shim,
		"lxc.include = " + tc + "/debian.common.conf\n",
		"lxc.uts.name = ct1\n",
		"lxc.mount.fstab = " + filepath.Join(lxcpath, "ct1", "fstab") + "\n",
	} {
		if !strings.Contains(config, w) {
			t.Errorf("config lacks %q:\n%s", w, config)
		}
	}
	if b, err := os.ReadFile(filepath.Join(lxcpath, "ct1", "rootfs", "etc", "hostname")); err != nil || string(b) != "ct1\n" {
		t.Errorf("rootfs/etc/hostname = %q, %v", b, err)
	}
	bad := runClean(t, nil, "lxc-create", "-P", lxcpath, "-t", shim, "-n", "ct2", "--", "-f", writeFile(t, work, "bad.tar", []byte("not a tarball")))
	if bad.code == 0 || !strings.Contains(bad.stderr+bad.stdout, "ERROR: ") {
		t.Errorf("lxc-create with a bad tarball:\n%s", bad)
	}
	if _, err := os.Stat(filepath.Join(lxcpath, "ct2")); err == nil {
		t.Errorf("lxc-create left the failed container behind")
	}
}

// TestLocalStandalone: --rootfs alone unpacks there (made if missing) and
// writes no config.
func TestLocalStandalone(t *testing.T) {
	rootfsTar, meta := localImage(t)
	dir := t.TempDir()
	dst := filepath.Join(dir, "chroot", "bookworm")
	r := runClean(t, nil, binary, "local", "--rootfs", dst, "-m", writeFile(t, dir, "meta.tar", metaTar(t, meta)), "-f", writeFile(t, dir, "rootfs.tar.zst", compress(t, "tar.zst", rootfsTar)))
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if _, err := os.Stat(filepath.Join(dst, "etc/hosts")); err != nil {
		t.Error(err)
	}
	if names, _ := os.ReadDir(filepath.Dir(dst)); len(names) != 1 {
		t.Errorf("beside the rootfs: %v", names)
	}
	// A failed standalone run removes the directory it made.
	gone := filepath.Join(dir, "chroot", "failed")
	r = runClean(t, nil, binary, "local", "--rootfs", gone, "-f", writeFile(t, dir, "corrupt.tar.gz", flipMiddle(compress(t, "tar.gz", rootfsTar))))
	if r.code != 1 {
		t.Fatalf("%s", r)
	}
	if _, err := os.Lstat(gone); err == nil {
		t.Errorf("the failed run left %s", gone)
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

func flipMiddle(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)/2] ^= 0x55
	return b
}

// TestLocalBadInput: every bad input gives one ERROR line and exit status
// 1, and leaves the rootfs empty and the container's files as lxc-create
// wrote them.
func TestLocalBadInput(t *testing.T) {
	rootfsTar, meta := localImage(t)
	files := t.TempDir()
	good := map[string]string{}
	for _, f := range compressions {
		good[f] = writeFile(t, files, "rootfs."+f, compress(t, f, rootfsTar))
	}
	goodMeta := writeFile(t, files, "meta.tar.xz", compress(t, "tar.xz", metaTar(t, meta)))
	damaged := 0
	damage := func(format string, mangle func([]byte) []byte) string {
		damaged++
		return writeFile(t, files, fmt.Sprintf("damaged%d.%s", damaged, format), mangle(compress(t, format, rootfsTar)))
	}
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
	bigMeta := writeFile(t, files, "bigmeta.tar", append(metaTar(t, meta), make([]byte, 8<<20)...))
	// A good gzip meta tarball followed by empty gzip members: a few
	// bytes of tar from more than 8 MiB of file.
	emptyMember := compress(t, "tar.gz", nil)
	longMeta := writeFile(t, files, "longmeta.tar.gz", append(compress(t, "tar.gz", metaTar(t, meta)), bytes.Repeat(emptyMember, (8<<20)/len(emptyMember)+1)...))
	text := writeFile(t, files, "text.tar.xz", bytes.Repeat([]byte("this is not a tarball\n"), 100))
	empty := writeFile(t, files, "empty.tar", nil)
	bzip2 := writeFile(t, files, "rootfs.tar.bz2", []byte("BZh91AY&SY"))
	fifo := filepath.Join(files, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no -f", []string{"-m", goodMeta}, "no rootfs tarball given: pass -f/--fstree FILE"},
		{"empty -f", []string{"-f", ""}, "no rootfs tarball given"},
		{"-f missing", []string{"-f", filepath.Join(files, "nosuch.tar.xz")}, "rootfs tarball: open " + files + "/nosuch.tar.xz: no such file or directory"},
		{"-f directory", []string{"-f", files}, files + ": rootfs tarball: not a regular file"},
		{"-f fifo", []string{"-f", fifo}, fifo + ": rootfs tarball: not a regular file"},
		{"-f device", []string{"-f", "/dev/zero"}, "/dev/zero: rootfs tarball: not a regular file"},
		{"-f text", []string{"-f", text}, text + ": rootfs tarball: not a tarball"},
		{"-f empty", []string{"-f", empty}, "rootfs tarball: not a tarball: the file is empty"},
		{"-f bzip2", []string{"-f", bzip2}, "bzip2-compressed archives are not supported"},
		{"-f corrupt xz", []string{"-f", damage("tar.xz", flipMiddle)}, "xz"},
		{"-f corrupt gzip", []string{"-f", damage("tar.gz", flipMiddle)}, "gzip"},
		{"-f corrupt zstd", []string{"-f", damage("tar.zst", flipMiddle)}, "zstd"},
		{"-f truncated xz", []string{"-f", damage("tar.xz", cut)}, "xz"},
		{"-f truncated gzip", []string{"-f", damage("tar.gz", cut)}, "gzip: truncated file"},
		{"-f truncated zstd", []string{"-f", damage("tar.zst", cut)}, "zstd"},
		{"-f truncated tar", []string{"-f", damage("tar", func(b []byte) []byte { return b[:len(b)/2+700] })}, "truncated archive"},
		{"-f ..", []string{"-f", escape(fetchtest.File{Name: "./../escaped", Mode: 0o644, Body: "x\n"})}, `name contains ".."`},
		{"-f through a symlink", []string{"-f", escape(
			fetchtest.File{Name: "./etc/out", Type: tar.TypeSymlink, Linkname: "/"},
			fetchtest.File{Name: "./etc/out/", Type: tar.TypeDir, Mode: 0o755},
			fetchtest.File{Name: "./etc/out/escaped", Mode: 0o644, Body: "x\n"},
			fetchtest.File{Name: "./etc/hostname/x", Mode: 0o644, Body: "x\n"},
		)}, "etc/hostname/x"},
		{"-m missing", []string{"-m", filepath.Join(files, "nosuch"), "-f", good["tar.xz"]}, "meta tarball: open"},
		{"-m not a tarball", []string{"-m", text, "-f", good["tar.xz"]}, text + ": meta tarball: not a tarball"},
		{"-m corrupt gzip", []string{"-m", writeFile(t, files, "meta-corrupt.tar.gz", flipMiddle(compress(t, "tar.gz", metaTar(t, meta)))), "-f", good["tar.xz"]}, "meta tarball: "},
		{"-m corrupt xz", []string{"-m", writeFile(t, files, "meta-corrupt.tar.xz", flipMiddle(compress(t, "tar.xz", metaTar(t, meta)))), "-f", good["tar.xz"]}, "meta tarball: xz: "},
		{"-m without config", []string{"-m", noConfig, "-f", good["tar.gz"]}, noConfig + ": meta tarball is missing the configuration file"},
		{"-m with a path", []string{"-m", badMeta, "-f", good["tar.gz"]}, `meta tarball: "../escape" is not a plain file name at the root`},
		{"-m too large", []string{"-m", bigMeta, "-f", good["tar.gz"]}, "bytes, more than 8388608"},
		{"-m too long", []string{"-m", longMeta, "-f", good["tar.gz"]}, "bytes, more than 8388608"},
		{"unknown option", []string{"-f", good["tar"], "--bogus"}, "unknown option --bogus"},
		{"unknown short option", []string{"-x", "-f", good["tar"]}, "unknown option -x"},
		{"ambiguous option", []string{"--m", "x", "-f", good["tar"]}, "option --m is ambiguous; possibilities: --mapped-gid --mapped-uid --metadata"},
		{"value to --no-dev", []string{"--no-dev=yes", "-f", good["tar"]}, "option --no-dev takes no value"},
		{"positional", []string{"-f", good["tar"], "extra"}, `local takes options only, not "extra"`},
		{"-f without value", []string{"-f"}, "option -f needs a value"},
		{"bad mapped uid", []string{"-f", good["tar"], "--mapped-uid", "root"}, `--mapped-uid must be a numeric id or -1, not "root"`},
		{"a control character in --name", []string{"--name", "c1\nlxc.init.cmd = /evil", "-f", good["tar"]}, "--name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newLocalEnv(t)
			before := containerFiles(t, e)
			r := runLocal(e, c.args...)
			e.mustFail(r, c.want)
			if after := containerFiles(t, e); after != before {
				t.Errorf("container files changed:\n%s\nwere:\n%s", after, before)
			}
			if r.stdout != "" && r.stdout != "Unpacking the rootfs\n" {
				t.Errorf("stdout %q", r.stdout)
			}
			if _, err := os.Stat("/escaped"); err == nil {
				os.Remove("/escaped")
				t.Error("wrote /escaped outside the rootfs")
			}
			if names, _ := os.ReadDir(filepath.Dir(e.path)); len(names) != 1 {
				t.Errorf("beside the container: %v", names)
			}
		})
	}
}

// TestLocalNotEmpty: a rootfs that holds something is refused before
// anything is unpacked, and stays as it was.
func TestLocalNotEmpty(t *testing.T) {
	rootfsTar, meta := localImage(t)
	files := t.TempDir()
	e := newLocalEnv(t)
	leftover := writeFile(t, e.rootfs, "leftover", []byte("mine\n"))
	before := containerFiles(t, e)
	r := runLocal(e, "-m", writeFile(t, files, "meta.tar", metaTar(t, meta)), "-f", writeFile(t, files, "rootfs.tar", rootfsTar))
	if r.code != 6 || len(errorLines(r.stderr)) != 1 || !strings.Contains(r.stderr, "ERROR: rootfs "+e.rootfs+` is not empty: it holds "leftover"`) {
		t.Errorf("%s", r)
	}
	if names, _ := os.ReadDir(e.rootfs); len(names) != 1 {
		t.Errorf("rootfs holds %v", names)
	}
	if b, _ := os.ReadFile(leftover); string(b) != "mine\n" {
		t.Errorf("leftover = %q", b)
	}
	if after := containerFiles(t, e); after != before {
		t.Errorf("container files changed:\n%s\nwere:\n%s", after, before)
	}
}

// TestLocalFailsAfterInstall: when writing the container's files fails,
// after the rootfs is in place, the rootfs is emptied again.
func TestLocalFailsAfterInstall(t *testing.T) {
	rootfsTar, meta := localImage(t)
	files := t.TempDir()
	e := newLocalEnv(t)
	// An fstab that is a directory cannot be replaced.
	if err := os.Mkdir(filepath.Join(e.path, "fstab"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runLocal(e, "-m", writeFile(t, files, "meta.tar", metaTar(t, meta)), "-f", writeFile(t, files, "rootfs.tar", rootfsTar))
	e.mustFail(r, "write container fstab: ")
}

// TestLocalHelp: -h and --help print the command's usage and succeed,
// however the command is called.
func TestLocalHelp(t *testing.T) {
	for _, argv := range [][]string{
		{binary, "local", "-h"}, {binary, "local", "--he"}, {binary, "help", "local"}, {localLink(t), "--help"},
	} {
		r := runClean(t, nil, argv...)
		if r.code != 0 || !strings.Contains(r.stdout, "--no-dev") || !strings.Contains(r.stdout, "--fstree FILE, -f FILE") || r.stderr != "" {
			t.Errorf("%q: %s", argv[1:], r)
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
	none := cmd.LocalOptions{MappedUID: -1, MappedGID: -1}
	with := func(f func(*cmd.LocalOptions)) cmd.LocalOptions {
		o := none
		f(&o)
		return o
	}
	for _, c := range []struct {
		args []string
		want cmd.LocalOptions // compared when err is empty
		help bool
		err  string
	}{
		// lxc-create's own forms.
		{args: []string{"--path=/p", "--name=c1", "--rootfs=/p/rootfs", "-m", "meta.tar.xz", "-f", "rootfs.tar.xz"},
			want: cmd.LocalOptions{Path: "/p", Name: "c1", Rootfs: "/p/rootfs", Metadata: "meta.tar.xz", Fstree: "rootfs.tar.xz", MappedUID: -1, MappedGID: -1}},
		{args: []string{"--path=/p", "--name=c1", "--rootfs=/p/rootfs", "--fstree", "r", "--mapped-uid", "65536", "--mapped-gid", "65536"},
			want: cmd.LocalOptions{Path: "/p", Name: "c1", Rootfs: "/p/rootfs", Fstree: "r", MappedUID: 65536, MappedGID: 65536}},
		// getopt's forms.
		{args: []string{"-mmeta", "-frootfs"}, want: with(func(o *cmd.LocalOptions) { o.Metadata, o.Fstree = "meta", "rootfs" })},
		{args: []string{"--meta=m", "--fs", "r", "--no"}, want: with(func(o *cmd.LocalOptions) { o.Metadata, o.Fstree, o.NoDev = "m", "r", true })},
		{args: []string{"-hf", "r"}, help: true},
		{args: []string{"-hfr", "--"}, help: true},
		{args: []string{"-f", "-m", "--no-dev", "-f", "--name"}, want: with(func(o *cmd.LocalOptions) { o.Fstree, o.NoDev = "--name", true })},
		{args: []string{"-f", "a", "-f", "b", "--mapped-uid=-1", "--mapped-gid="}, want: with(func(o *cmd.LocalOptions) { o.Fstree = "b" })},
		{args: []string{"--name", "", "-f", ""}, want: none},
		// Refused by both.
		{args: []string{"--bogus"}, err: "unknown option --bogus"},
		{args: []string{"-x"}, err: "unknown option -x"},
		{args: []string{"-hx"}, err: "unknown option -x in -hx"},
		{args: []string{"--ma=1"}, err: "option --ma is ambiguous; possibilities: --mapped-gid --mapped-uid"},
		{args: []string{"--n", "x"}, err: "option --n is ambiguous; possibilities: --name --no-dev"},
		{args: []string{"--no-dev=yes"}, err: "option --no-dev takes no value"},
		{args: []string{"-f", "r", "-m"}, err: "option -m needs a value"},
		{args: []string{"-f", "r", "--metadata"}, err: "option --metadata needs a value"},
		{args: []string{"--=x"}, err: "unknown option --"},
	} {
		got, req, err := cmd.ParseLocal(c.args)
		name := strings.Join(c.args, " ")
		switch {
		case c.err != "":
			if err == nil || !strings.HasSuffix(err.Error(), ": "+c.err) {
				t.Errorf("%s: error %v, want %q", name, err, c.err)
			}
		case err != nil || (req == cmd.HelpRequest) != c.help:
			t.Errorf("%s: request %v, error %v; want help %v", name, req, err, c.help)
		case !c.help && !reflect.DeepEqual(got, c.want):
			t.Errorf("%s: got %+v; want %+v", name, got, c.want)
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
		fromGetopt, req2, err := cmd.ParseLocal(words)
		if err != nil || req2 != req || !reflect.DeepEqual(fromGetopt, got) {
			t.Errorf("%s: getopt made it %q, which parses as %+v, %v, %v; want %+v", name, words, fromGetopt, req2, err, got)
		}
	}
}

// FuzzParseLocal: any command line is parsed or refused without a panic
// (the ERROR line of a refusal is made one line as every error is),
// and what is parsed reads the same when written out again in lxc-create's
// --opt=value form.
func FuzzParseLocal(f *testing.F) {
	f.Add("--path=/p\x00--name=c1\x00--rootfs=/p/rootfs\x00-m\x00meta.tar.xz\x00-f\x00rootfs.tar.xz")
	f.Add("-mmeta\x00--no\x00--fs\x00r\x00--")
	f.Add("--mapped-uid\x0065536\x00--ma=1\x00-x")
	f.Fuzz(func(t *testing.T, line string) {
		o, req, err := cmd.ParseLocal(strings.Split(line, "\x00"))
		if err != nil || req == cmd.HelpRequest {
			return
		}
		again := []string{"--metadata=" + o.Metadata, "--fstree=" + o.Fstree, "--name=" + o.Name, "--path=" + o.Path, "--rootfs=" + o.Rootfs,
			"--mapped-uid=" + fmt.Sprint(o.MappedUID), "--mapped-gid=" + fmt.Sprint(o.MappedGID)}
		if o.NoDev {
			again = append(again, "--no-dev")
		}
		if o2, _, err := cmd.ParseLocal(again); err != nil || !reflect.DeepEqual(o, o2) {
			t.Errorf("%q parsed as %+v; written out %q, as %+v, %v", line, o, again, o2, err)
		}
	})
}

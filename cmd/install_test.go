package cmd_test

// make install and make uninstall, run for real in temporary directories:
// the Makefile and the files it installs are copied beside the test's
// binary, so nothing is built or written in the source tree.

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// lxcTemplate stands for LXC's own template files.
const lxcTemplate = "#!/bin/sh\n# LXC's own %s template\n"

// makeDir is a directory holding the Makefile, the files install takes
// (man/) and the binary, as the repository holds them after make build.
func makeDir(t *testing.T) string {
	t.Helper()
	need(t, "make", have("make"))
	dir := t.TempDir()
	installCopy(t, "../Makefile", filepath.Join(dir, "Makefile"), 0o644)
	installCopy(t, binary, filepath.Join(dir, "lxc-download"), 0o755)
	for _, f := range []string{"lxc-download.1", "completion/lxc-download.bash", "completion/_lxc-download", "completion/lxc-download.fish"} {
		installCopy(t, filepath.Join("../man", f), filepath.Join(dir, "man", f), 0o644)
	}
	return dir
}

func installCopy(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// runMake runs make TARGET in dir with vars; "-o build" keeps it from
// building (the binary is there).
func runMake(t *testing.T, dir, target string, vars ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-s", "-C", dir, "-o", "build", target}, vars...)...)
	cmd.Env = append(os.Environ(), "MAKEFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s %q: %v\n%s", target, vars, err, out)
	}
	return string(out)
}

// tree is every file and link below root, with its mode and content.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[rel] = fmt.Sprintf("%v %q", fi.Mode(), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var diff []string
	for p, w := range want {
		if got[p] != w {
			diff = append(diff, fmt.Sprintf("%s: %s, want %s", p, got[p], w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diff = append(diff, fmt.Sprintf("%s: %s, not there before", p, g))
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Errorf("%s:\n%s", what, strings.Join(diff, "\n"))
	}
}

// lxcRoot is a DESTDIR with LXC's templates in it.
func lxcRoot(t *testing.T) string {
	root := t.TempDir()
	templates := filepath.Join(root, "usr/share/lxc/templates")
	for _, name := range []string{"download", "local"} {
		copyContent(t, filepath.Join(templates, "lxc-"+name), fmt.Sprintf(lxcTemplate, name), 0o755)
	}
	return root
}

func copyContent(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInstallRoundTrip: install into a DESTDIR that has LXC's templates,
// install again, uninstall: LXC's templates are kept aside and put back,
// and nothing install wrote is left.
func TestInstallRoundTrip(t *testing.T) {
	dir := makeDir(t)
	root := lxcRoot(t)
	before := tree(t, root)
	vars := []string{"DESTDIR=" + root, "TEMPLATES=download local", "DIVERT="}
	out := runMake(t, dir, "install", vars...)
	if !strings.Contains(out, "LXC's /usr/share/lxc/templates/lxc-download is kept as /usr/share/lxc/templates/.lxc-download.distrib") {
		t.Errorf("install does not say what it did with LXC's template:\n%s", out)
	}
	templates := filepath.Join(root, "usr/share/lxc/templates")
	checkInstalled(t, root, templates)
	// Installing again keeps LXC's template aside as it was.
	runMake(t, dir, "install", vars...)
	checkInstalled(t, root, templates)
	out = runMake(t, dir, "uninstall", vars...)
	if !strings.Contains(out, "is restored") {
		t.Errorf("uninstall does not say it put LXC's template back:\n%s", out)
	}
	sameTree(t, "after install and uninstall", tree(t, root), before)
}

func checkInstalled(t *testing.T, root, templates string) {
	t.Helper()
	for name, args := range map[string]string{"download": "", "local": " local"} {
		shim := readFile(t, filepath.Join(templates, "lxc-"+name))
		if !strings.Contains(shim, "\nexec /usr/local/bin/lxc-download"+args+` "$@"`+"\n") {
			t.Errorf("lxc-%s shim:\n%s", name, shim)
		}
		if kept := readFile(t, filepath.Join(templates, ".lxc-"+name+".distrib")); kept != fmt.Sprintf(lxcTemplate, name) {
			t.Errorf("LXC's lxc-%s was not kept: %q", name, kept)
		}
	}
	for _, f := range []string{"usr/local/bin/lxc-download", "usr/local/share/man/man1/lxc-download.1",
		"usr/local/share/bash-completion/completions/lxc-download", "usr/local/share/zsh/site-functions/_lxc-download",
		"usr/local/share/fish/vendor_completions.d/lxc-download.fish"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "usr/local/bin/lxc-download")); !bytes.Equal(b, mustRead(t, binary)) {
		t.Errorf("the installed binary is not the one built")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInstallDivert: where dpkg-divert is used, LXC's templates (download
// and local, the default TEMPLATES) are diverted (dpkg-divert --root works
// on the DESTDIR as on /), and uninstall removes the diversions.
func TestInstallDivert(t *testing.T) {
	need(t, "dpkg-divert", have("dpkg-divert"))
	dir := makeDir(t)
	root := lxcRoot(t)
	if err := os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)
	divert := "DIVERT=dpkg-divert --root=" + root
	runMake(t, dir, "install", "DESTDIR="+root, divert)
	templates := filepath.Join(root, "usr/share/lxc/templates")
	for _, name := range []string{"download", "local"} {
		out, err := exec.Command("dpkg-divert", "--root="+root, "--truename", "/usr/share/lxc/templates/lxc-"+name).Output()
		if err != nil || strings.TrimSpace(string(out)) != "/usr/share/lxc/templates/.lxc-"+name+".distrib" {
			t.Errorf("lxc-%s not diverted: %q %v", name, out, err)
		}
		if kept := readFile(t, filepath.Join(templates, ".lxc-"+name+".distrib")); kept != fmt.Sprintf(lxcTemplate, name) {
			t.Errorf("the diverted lxc-%s: %q", name, kept)
		}
	}
	runMake(t, dir, "install", "DESTDIR="+root, divert)
	runMake(t, dir, "uninstall", "DESTDIR="+root, divert)
	after := tree(t, root)
	// dpkg-divert keeps its (now empty) list and its backup of it.
	for p := range after {
		if strings.HasPrefix(p, "var/lib/dpkg/") {
			if p == "var/lib/dpkg/diversions" && after[p] != `-rw-r--r-- ""` {
				t.Errorf("diversions left: %s", after[p])
			}
			delete(after, p)
		}
	}
	sameTree(t, "after install and uninstall", after, before)
}

// TestInstalledShims runs the installed shims with the shells LXC hosts
// have: dash (Debian's /bin/sh) and busybox (OpenWrt, Alpine).
func TestInstalledShims(t *testing.T) {
	dir := makeDir(t)
	root := t.TempDir() // no LXC here: nothing to keep aside
	vars := []string{"PREFIX=" + root + "/usr", "TEMPLATEDIR=" + root + "/templates", "TEMPLATES=download local", "DIVERT="}
	runMake(t, dir, "install", vars...)
	for _, sh := range [][]string{{"dash"}, {"busybox", "sh"}} {
		if !have(sh[0]) {
			continue
		}
		run := func(shim string, args ...string) result {
			cmd := exec.Command(sh[0], append(append(sh[1:], filepath.Join(root, "templates", shim)), args...)...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			r := result{stdout: out.String(), stderr: errb.String()}
			if ee, ok := err.(*exec.ExitError); ok {
				r.code = ee.ExitCode()
			}
			return r
		}
		if r := run("lxc-download", "--version"); r.code != 0 || !strings.HasPrefix(r.stdout, "lxc-download ") {
			t.Errorf("%s lxc-download --version:\n%s", sh[0], r)
		}
		// The shim reaches the binary as "lxc-download local".
		if r := run("lxc-local", "--help"); r.code != 0 || !strings.Contains(r.stdout, "lxc-download local - LXC's local template") {
			t.Errorf("%s lxc-local --help:\n%s", sh[0], r)
		}
		if r := run("lxc-local", "--name", "c1"); r.code != 1 || !strings.Contains(r.stderr, "ERROR: no rootfs tarball given") {
			t.Errorf("%s lxc-local:\n%s", sh[0], r)
		}
	}
	runMake(t, dir, "uninstall", vars...)
	if left := tree(t, root); len(left) != 0 {
		t.Errorf("uninstall left %v", left)
	}
}

// TestLXCCreateThroughShim: lxc-create runs the installed shim as its
// template, as `lxc-create -t download` does after make install.
func TestLXCCreateThroughShim(t *testing.T) {
	needRoot(t, "lxc-create writes containers as root")
	need(t, "lxc-create (Debian's lxc package)", have("lxc-create"))
	dir := makeDir(t)
	root := t.TempDir()
	runMake(t, dir, "install", "PREFIX="+root+"/usr", "TEMPLATEDIR="+root+"/templates", "DIVERT=")
	e := newEnv(t)
	lxcpath := filepath.Join(e.dir, "lxcpath")
	// As in TestLXCCreate: the image includes a file Debian's lxc package
	// does not ship.
	tc := filepath.Join(e.dir, "lxc-config")
	copyContent(t, filepath.Join(tc, "debian.common.conf"), "lxc.include = /usr/share/lxc/config/common.conf\n", 0o644)
	args := append([]string{"-P", lxcpath, "-t", filepath.Join(root, "templates", "lxc-download"), "-n", "ct1", "--"}, e.image("-ddebian", "--rel", "bookworm")...)
	cmd := exec.Command("lxc-create", args...)
	cmd.Env = append(e.environ(), "LXC_TEMPLATE_CONFIG="+tc)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lxc-create: %v\n%s", err, out)
	}
	if config := readFile(t, filepath.Join(lxcpath, "ct1", "config")); !strings.Contains(config, "lxc.uts.name = ct1\n") {
		t.Errorf("config:\n%s", config)
	}
	if b, err := os.ReadFile(filepath.Join(lxcpath, "ct1", "rootfs", "etc", "hostname")); err != nil || string(b) != "ct1\n" {
		t.Errorf("rootfs/etc/hostname = %q, %v", b, err)
	}
}

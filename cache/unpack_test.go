package cache

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestExtractRootfs extracts every kind of entry a rootfs has and checks
// owners, modes, times, xattrs and links as root would restore them.
func TestExtractRootfs(t *testing.T) {
	needRoot(t)
	dirTime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	linkTime := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	capV2 := string([]byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // cap_net_raw+ep
	tb := newTar(t).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./etc/", Mode: 0o755, ModTime: dirTime}, "").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/shadow", Mode: 0o640, Gid: 42}, "root:*:1::::::\n").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/everyone", Mode: 0o666}, "rw\n").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/gshadow", Mode: 0}, "root:*::\n").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./usr/", Mode: 0o755}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./usr/bin/", Mode: 0o755}, "").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/su", Mode: 0o4755}, "#!su\n").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/wall", Mode: 0o2755, Gid: 5}, "#!wall\n").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/ping", Mode: 0o755,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capV2}}, "#!ping\n").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/tagged", Mode: 0o644,
			PAXRecords: map[string]string{"SCHILY.xattr.user.mime": "text/plain", "SCHILY.xattr.trusted.t": "x"}}, "tagged\n").
		add(&tar.Header{Typeflag: tar.TypeLink, Name: "./usr/bin/su-again", Linkname: "./usr/bin/su"}, "").
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./bin", Linkname: "usr/bin", Uid: 7, Gid: 8, ModTime: linkTime}, "").
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./etc/mtab", Linkname: "/proc/self/mounts"}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./home/", Mode: 0o755}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./home/user/", Mode: 0o700, Uid: 1000, Gid: 1000}, "").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./home/user/.profile", Mode: 0o600, Uid: 1000, Gid: 1000}, "PS1=$\n").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./tmp/", Mode: 0o1777}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./var/", Mode: 0o755}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./var/mail/", Mode: 0o2775, Gid: 8}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./ro/", Mode: 0o555}, "").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./ro/file", Mode: 0o444}, "read only\n").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./dev/", Mode: 0o755}, "").
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "./dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, "").
		add(&tar.Header{Typeflag: tar.TypeBlock, Name: "./dev/loop0", Mode: 0o660, Gid: 6, Devmajor: 7, Devminor: 0}, "").
		add(&tar.Header{Typeflag: tar.TypeFifo, Name: "./dev/initctl", Mode: 0o600,
			PAXRecords: map[string]string{"SCHILY.xattr.trusted.fifo": "f"}}, "").
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./dev/stdin", Linkname: "/proc/self/fd/0",
			PAXRecords: map[string]string{"SCHILY.xattr.trusted.link": "l"}}, "").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./empty", Mode: 0o644}, "")
	s := newSandbox(t)
	if err := os.Chmod(s.rootfs, 0o700); err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	mustExtract(t, s, tb.bytes(), UnpackOptions{Warn: &warn})
	if warn.Len() != 0 {
		t.Errorf("warnings as root: %s", warn.String())
	}

	type want struct {
		typ      uint32
		perm     uint32
		uid, gid uint32
		content  string
	}
	for rel, w := range map[string]want{
		".":                  {unix.S_IFDIR, 0o755, 0, 0, ""},
		"etc/shadow":         {unix.S_IFREG, 0o640, 0, 42, "root:*:1::::::\n"},
		"etc/everyone":       {unix.S_IFREG, 0o666, 0, 0, "rw\n"},
		"etc/gshadow":        {unix.S_IFREG, 0, 0, 0, "root:*::\n"},
		"usr/bin/su":         {unix.S_IFREG, 0o4755, 0, 0, "#!su\n"},
		"usr/bin/wall":       {unix.S_IFREG, 0o2755, 0, 5, "#!wall\n"},
		"usr/bin/ping":       {unix.S_IFREG, 0o755, 0, 0, "#!ping\n"},
		"bin":                {unix.S_IFLNK, 0o777, 7, 8, ""},
		"home/user":          {unix.S_IFDIR, 0o700, 1000, 1000, ""},
		"home/user/.profile": {unix.S_IFREG, 0o600, 1000, 1000, "PS1=$\n"},
		"tmp":                {unix.S_IFDIR, 0o1777, 0, 0, ""},
		"var/mail":           {unix.S_IFDIR, 0o2775, 0, 8, ""},
		"ro":                 {unix.S_IFDIR, 0o555, 0, 0, ""},
		"ro/file":            {unix.S_IFREG, 0o444, 0, 0, "read only\n"},
		"dev/null":           {unix.S_IFCHR, 0o666, 0, 0, ""},
		"dev/loop0":          {unix.S_IFBLK, 0o660, 0, 6, ""},
		"dev/initctl":        {unix.S_IFIFO, 0o600, 0, 0, ""},
		"empty":              {unix.S_IFREG, 0o644, 0, 0, ""},
		"usr/bin/tagged":     {unix.S_IFREG, 0o644, 0, 0, "tagged\n"},
		"usr/bin/su-again":   {unix.S_IFREG, 0o4755, 0, 0, "#!su\n"},
	} {
		st := lstat(t, s.path(rel))
		if st.Mode&unix.S_IFMT != w.typ || st.Mode&0o7777 != w.perm || st.Uid != w.uid || st.Gid != w.gid {
			t.Errorf("%s: type %o mode %o owner %d:%d, want %o %o %d:%d", rel, st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid, w.typ, w.perm, w.uid, w.gid)
		}
		if w.typ == unix.S_IFREG {
			if got := readFile(t, s.path(rel)); got != w.content {
				t.Errorf("%s: content %q, want %q", rel, got, w.content)
			}
		}
	}
	if st := lstat(t, s.path("dev/null")); unix.Major(uint64(st.Rdev)) != 1 || unix.Minor(uint64(st.Rdev)) != 3 {
		t.Errorf("dev/null is %d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	}
	if a, b := lstat(t, s.path("usr/bin/su")), lstat(t, s.path("usr/bin/su-again")); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("su-again is not a hard link of su (inodes %d, %d; links %d)", a.Ino, b.Ino, a.Nlink)
	}
	for p, target := range map[string]string{"bin": "usr/bin", "etc/mtab": "/proc/self/mounts"} {
		if got, err := os.Readlink(s.path(p)); err != nil || got != target {
			t.Errorf("readlink %s = %q, %v; want %q", p, got, err, target)
		}
	}
	for p, mt := range map[string]time.Time{"etc": dirTime, "bin": linkTime, "etc/shadow": testTime, "ro": testTime, ".": testTime, "dev/null": testTime, "dev/initctl": testTime} {
		st := lstat(t, s.path(p))
		if got := time.Unix(st.Mtim.Unix()); !got.Equal(mt) {
			t.Errorf("%s: mtime %v, want %v", p, got, mt)
		}
	}
	for p, x := range map[string][2]string{
		"usr/bin/ping":   {"security.capability", capV2},
		"usr/bin/tagged": {"user.mime", "text/plain"},
	} {
		if got := getxattr(t, s.path(p), x[0]); got != x[1] {
			t.Errorf("%s: xattr %s = %q, want %q", p, x[0], got, x[1])
		}
	}
	if got := getxattr(t, s.path("usr/bin/tagged"), "trusted.t"); got != "x" {
		t.Errorf("trusted.t = %q", got)
	}
	if got := getxattr(t, s.path("dev/initctl"), "trusted.fifo"); got != "f" {
		t.Errorf("trusted.fifo = %q", got)
	}
	if got := getxattr(t, s.path("dev/stdin"), "trusted.link"); got != "l" {
		t.Errorf("trusted.link = %q", got)
	}
}

// TestLsetxattrat covers both ways of setting an attribute on a symlink
// without following it: setxattrat(2) and, for kernels before 6.13, the
// parent's handle in /proc.
func TestLsetxattrat(t *testing.T) {
	needRoot(t) // user.* attributes are not allowed on symlinks
	for _, viaProc := range []bool{false, true} {
		s := newSandbox(t)
		if err := os.Symlink(filepath.Join(s.canary, "file"), s.path("link")); err != nil {
			t.Fatal(err)
		}
		e, err := newExtractor(context.Background(), s.rootfs, UnpackOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e.noSetxattrat = viaProc
		if err := e.lsetxattrat(e.rootFd, "link", "trusted.x", []byte("v")); err != nil {
			t.Fatalf("via /proc %v: %v", viaProc, err)
		}
		e.close()
		if got := getxattr(t, s.path("link"), "trusted.x"); got != "v" {
			t.Errorf("via /proc %v: trusted.x = %q", viaProc, got)
		}
		s.checkOutside()
		if _, err := unix.Getxattr(filepath.Join(s.canary, "file"), "trusted.x", nil); err == nil {
			t.Errorf("via /proc %v: the link was followed", viaProc)
		}
	}
}

func getxattr(t testing.TB, p, name string) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		t.Errorf("getxattr %s %s: %v", p, name, err)
		return ""
	}
	return string(buf[:n])
}

// TestExtractUserns is the user mode of LXC as seen from inside: device
// nodes are skipped with one warning for all of them.
func TestExtractUserns(t *testing.T) {
	tb := newTar(t).
		dir("dev/", 0o755).
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, "").
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/zero", Mode: 0o666, Devmajor: 1, Devminor: 5}, "").
		add(&tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8}, "").
		add(&tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o600}, "").
		file("etc/hostname", 0o644, "LXC_NAME\n")
	s := newSandbox(t)
	var warn bytes.Buffer
	mustExtract(t, s, tb.bytes(), UnpackOptions{Userns: true, Warn: &warn})
	if n := strings.Count(warn.String(), "device nodes"); n != 1 {
		t.Errorf("want one warning about device nodes, got:\n%s", warn.String())
	}
	for _, p := range []string{"dev/null", "dev/zero", "dev/sda"} {
		if _, err := os.Lstat(s.path(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was made in user mode: %v", p, err)
		}
	}
	if st := lstat(t, s.path("dev/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("dev/fifo not a fifo: %o", st.Mode)
	}
	if got := readFile(t, s.path("etc/hostname")); got != "LXC_NAME\n" {
		t.Errorf("etc/hostname = %q", got)
	}
}

func TestExtractExcludes(t *testing.T) {
	tb := newTar(t).
		dir("./", 0o755).
		dir("./dev/", 0o755).
		file("./dev/console", 0o600, "c").
		dir("./dev/pts/", 0o755).
		file("./dev/pts/0", 0o600, "p").
		dir("./etc/", 0o755).
		file("./etc/keep", 0o644, "k").
		file("./etc/drop.bak", 0o644, "d").
		hardlink("./etc/link-to-excluded", "./etc/keep").
		dir("./var/", 0o755).
		dir("./var/cache/", 0o755).
		dir("./var/cache/apt/", 0o755).
		file("./var/cache/apt/pkgcache.bin", 0o644, "x").
		file("./var/cachefile", 0o644, "y").
		file("sub/etc/keep", 0o644, "not anchored").
		file("./x[1]", 0o644, "bracket")
	s := newSandbox(t)
	mustExtract(t, s, tb.bytes(), UnpackOptions{Excludes: []string{
		"./dev/*", "  ", "var/cache", "*.bak", "etc/keep/", `./x\[1\]`,
	}})
	for p, present := range map[string]bool{
		"dev": true, "dev/console": false, "dev/pts": false, "dev/pts/0": false,
		"etc/keep": false, "etc/drop.bak": false, "etc/link-to-excluded": false,
		"var": true, "var/cache": false, "var/cache/apt/pkgcache.bin": false, "var/cachefile": true,
		"sub/etc/keep": true, "x[1]": false,
	} {
		_, err := os.Lstat(s.path(p))
		if present != (err == nil) {
			t.Errorf("%s: present %v, want %v (%v)", p, err == nil, present, err)
		}
	}
}

func TestMatchExclude(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"dev/*", "dev/console", true},
		{"dev/*", "dev", false},
		{"dev/*", "dev/pts/0", true},
		{"dev", "dev/pts/0", true},
		{"dev", "devices", false},
		{"de?", "dev", true},
		{"d*v", "dev", true},
		{"*", "a/b/c", true},
		{"a*c", "ab/xc", true},
		{"*.log", "var/log/syslog.log", true},
		{"*.log", "var/log/syslog.log.1", false},
		{"var/log", "var/log.1", false},
		{"[a-c]x", "bx", true},
		{"[a-c]x", "dx", false},
		{"[!a-c]x", "dx", true},
		{"[^a-c]x", "ax", false},
		{"[]]", "]", true},
		{"[[:digit:]]", "7", true},
		{"[[:digit:]]", "x", false},
		{"[[:alpha:]_]*", "_x", true},
		{"[", "[", true},
		{"a[", "a[", true},
		{`\*`, "*", true},
		{`\*`, "a", false},
		{`a\`, `a\`, true},
		{"**", "", true},
		{"a**b", "ab", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"", "", true},
		{"?", "", false},
		{"x", "", false},
	} {
		got := fnmatch(c.pattern, c.name)
		if strings.Contains(c.pattern, "/") || c.pattern == "dev" || c.pattern == "var/log" {
			got = matchExclude(c.pattern, c.name)
		}
		if got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
	if !matchExclude(".", "anything") {
		t.Error(`the pattern "." excludes everything, as with tar`)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"./":            ".",
		".":             ".",
		"/":             ".",
		"./etc/":        "etc",
		"etc":           "etc",
		"/etc/passwd":   "etc/passwd",
		"//a//b/./c/":   "a/b/c",
		"././a/./":      "a",
		"a/.b/..c/c..":  "a/.b/..c/c..",
		"./.hidden":     ".hidden",
		"a/b/c/d/e/f/g": "a/b/c/d/e/f/g",
	} {
		got, err := cleanName(in)
		if err != nil || got != want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "..", "../x", "a/../../x", "a/..", "/..", "./a/b/../../..", "a\x00b"} {
		if got, err := cleanName(in); err == nil {
			t.Errorf("cleanName(%q) = %q, want an error", in, got)
		}
	}
}

func TestExtractErrors(t *testing.T) {
	t.Run("rootfs missing", func(t *testing.T) {
		err := Extract(context.Background(), bytes.NewReader(newTar(t).file("a", 0o644, "a").bytes()), filepath.Join(t.TempDir(), "nope"), UnpackOptions{})
		wantErr(t, err, "rootfs", "no such file")
	})
	t.Run("not tar", func(t *testing.T) {
		s := newSandbox(t)
		wantErr(t, s.extract(bytes.Repeat([]byte("not a tarball "), 100), UnpackOptions{}), "rootfs", "tar")
	})
	t.Run("truncated tar", func(t *testing.T) {
		s := newSandbox(t)
		tb := newTar(t).file("a", 0o644, strings.Repeat("a", 5000)).file("b", 0o644, "b").bytes()
		wantErr(t, s.extract(tb[:2048], UnpackOptions{}), "rootfs", `entry "a"`, "truncated")
		wantErr(t, s.extract(tb[:512*11+100], UnpackOptions{}), "rootfs", `after entry "a"`, "truncated")
	})
	t.Run("cancelled", func(t *testing.T) {
		s := newSandbox(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := Extract(ctx, bytes.NewReader(newTar(t).file("a", 0o644, "a").bytes()), s.rootfs, UnpackOptions{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if _, err := os.Lstat(s.path("a")); err == nil {
			t.Error("extracted after cancellation")
		}
	})
	t.Run("unsupported type", func(t *testing.T) {
		s := newSandbox(t)
		tb := newTar(t).add(&tar.Header{Typeflag: 'V', Name: "volume", Format: tar.FormatGNU}, "").bytes()
		wantErr(t, s.extract(tb, UnpackOptions{}), `entry "volume"`, "unsupported")
	})
	t.Run("rootfs as file", func(t *testing.T) {
		s := newSandbox(t)
		wantErr(t, s.extract(newTar(t).file(".", 0o644, "x").bytes(), UnpackOptions{}), "rootfs itself")
		wantErr(t, s.extract(newTar(t).symlink("/", "/etc").bytes(), UnpackOptions{}), "rootfs itself")
	})
	t.Run("file under a file", func(t *testing.T) {
		s := newSandbox(t)
		err := s.extract(newTar(t).file("a", 0o644, "x").file("a/b", 0o644, "y").bytes(), UnpackOptions{})
		wantErr(t, err, `entry "a/b"`, "not a directory")
	})
	t.Run("file over a full directory", func(t *testing.T) {
		s := newSandbox(t)
		err := s.extract(newTar(t).file("d/f", 0o644, "x").file("d", 0o644, "y").bytes(), UnpackOptions{})
		wantErr(t, err, `entry "d"`, "directory not empty")
	})
	t.Run("hard link to a directory", func(t *testing.T) {
		s := newSandbox(t)
		err := s.extract(newTar(t).dir("d", 0o755).hardlink("h", "d").bytes(), UnpackOptions{})
		wantErr(t, err, `entry "h"`, `hard link to "d"`)
	})
	t.Run("invalid owner", func(t *testing.T) {
		if strconv.IntSize < 64 {
			t.Skip("a tar header's owner is an int, which cannot hold an id over 32 bits here")
		}
		s := newSandbox(t)
		uid := uint64(1) << 33
		tb := newTar(t).add(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Uid: int(uid), Format: tar.FormatPAX}, "").bytes()
		wantErr(t, s.extract(tb, UnpackOptions{}), `entry "f"`, "invalid owner")
	})
	t.Run("invalid device", func(t *testing.T) {
		needRoot(t)
		s := newSandbox(t)
		tb := newTar(t).add(&tar.Header{Typeflag: tar.TypeChar, Name: "c", Devmajor: 1 << 40, Format: tar.FormatGNU}, "").bytes()
		wantErr(t, s.extract(tb, UnpackOptions{}), `entry "c"`, "invalid device")
	})
}

// TestExtractXattrUnsupported: attributes the system does not support give
// one warning, not one per file, and do not stop the unpack.
func TestExtractXattrUnsupported(t *testing.T) {
	x := func(name string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644,
			PAXRecords: map[string]string{"SCHILY.xattr.bogus.attr": "1", "SCHILY.xattr.nonamespace": "2"}}
	}
	tb := newTar(t).add(x("a"), "a").add(x("b"), "b").add(x("c"), "c")
	s := newSandbox(t)
	var warn bytes.Buffer
	mustExtract(t, s, tb.bytes(), UnpackOptions{Warn: &warn})
	if n := strings.Count(warn.String(), "does not support"); n != 1 {
		t.Errorf("want one warning, got:\n%s", warn.String())
	}
	if got := readFile(t, s.path("c")); got != "c" {
		t.Errorf("c = %q", got)
	}
}

func TestExtractDuplicates(t *testing.T) {
	s := newSandbox(t)
	tb := newTar(t).
		file("f", 0o600, "first").
		file("f", 0o644, "second").
		dir("d", 0o700).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "d", Mode: 0o751}, "").
		dir("e", 0o755).
		file("e", 0o644, "file over empty dir").
		file("g", 0o644, "file").
		dir("g", 0o755).
		file("g/inner", 0o644, "inner").
		symlink("l", "f").
		file("l", 0o644, "file over symlink").
		file("h", 0o644, "target").
		hardlink("h2", "h").
		hardlink("h2", "h").
		file("n", 0o644, "old").
		hardlink("n", "h")
	mustExtract(t, s, tb.bytes(), UnpackOptions{})
	for p, want := range map[string]string{"f": "second", "e": "file over empty dir", "g/inner": "inner", "l": "file over symlink", "h2": "target", "n": "target"} {
		if got := readFile(t, s.path(p)); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if got := readFile(t, s.path("f")); got != "second" {
		t.Errorf("l was written through: f = %q", got)
	}
	if st := lstat(t, s.path("f")); st.Mode&0o777 != 0o644 {
		t.Errorf("f mode %o", st.Mode&0o777)
	}
	if st := lstat(t, s.path("d")); st.Mode&0o777 != 0o751 {
		t.Errorf("d mode %o, want the later entry's 751", st.Mode&0o777)
	}
}

// TestExtractSparse extracts GNU tar's sparse formats (made by tar
// --sparse, kept in testdata): the content reads back and the holes stay.
func TestExtractSparse(t *testing.T) {
	for _, name := range []string{"sparse-gnu.tar", "sparse-pax.tar"} {
		t.Run(name, func(t *testing.T) {
			tb, err := os.ReadFile(filepath.Join("testdata", "unpack", name))
			if err != nil {
				t.Fatal(err)
			}
			s := newSandbox(t)
			mustExtract(t, s, tb, UnpackOptions{})
			data := readFile(t, s.path("sparse"))
			if len(data) != 8<<20 {
				t.Fatalf("size %d", len(data))
			}
			if data[:5] != "start" || data[4<<20:4<<20+6] != "middle" || data[len(data)-3:] != "end" {
				t.Errorf("content wrong")
			}
			if strings.Trim(data[5:4<<20], "\x00") != "" {
				t.Errorf("hole not zero")
			}
			if st := lstat(t, s.path("sparse")); st.Blocks*512 > 1<<20 {
				t.Errorf("holes were written: %d bytes allocated", st.Blocks*512)
			}
		})
	}
}

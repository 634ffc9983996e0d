package cache

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The tests here feed crafted hostile tarballs to Extract. Each checks that
// what the archive asks for lands inside the rootfs or is refused with a
// clear error, and (through the sandbox) that nothing beside the rootfs
// changed. The canary directory beside the rootfs is where an escape would
// write: its absolute path is what the archives aim at.

func TestSafetyDotDot(t *testing.T) {
	for _, name := range []string{"../escape", "a/../../escape", "./../canary/file", "a/b/../../../canary/file"} {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			err := s.extract(newTar(t).dir("a", 0o755).file(name, 0o644, "pwned").bytes(), UnpackOptions{})
			wantErr(t, err, "rootfs", `".."`, name)
		})
	}
}

func TestSafetyAbsolute(t *testing.T) {
	s := newSandbox(t)
	abs := filepath.Join(s.canary, "file")
	mustExtract(t, s, newTar(t).file(abs, 0o644, "inside").file("/etc/hostname", 0o644, "h").bytes(), UnpackOptions{})
	if got := readFile(t, s.path(abs)); got != "inside" {
		t.Errorf("absolute name not put inside the rootfs: %q", got)
	}
	if got := readFile(t, s.path("etc/hostname")); got != "h" {
		t.Errorf("etc/hostname = %q", got)
	}
}

// TestSafetySymlinkParent: a symlink pointing out of the rootfs, then an
// entry below it. As in a chroot, the link resolves inside the rootfs.
func TestSafetySymlinkParent(t *testing.T) {
	for _, c := range []struct {
		name   string
		build  func(canary string, tb *tarBuilder) // makes a symlink, and the entry "x/file" below it
		landed func(canary string) string          // where the file must be, inside the rootfs
	}{
		{"absolute", func(canary string, tb *tarBuilder) { tb.symlink("x", canary) },
			func(canary string) string { return canary + "/file" }},
		{"root", func(canary string, tb *tarBuilder) { tb.symlink("x", "/") },
			func(string) string { return "file" }},
		{"relative", func(canary string, tb *tarBuilder) { tb.symlink("x", "../canary") },
			func(string) string { return "canary/file" }},
		{"deep relative", func(canary string, tb *tarBuilder) {
			tb.dir("a", 0o755).dir("a/b", 0o755).symlink("a/b/c", "../../../../../../../canary").symlink("x", "a/b/c")
		}, func(string) string { return "canary/file" }},
		{"chain", func(canary string, tb *tarBuilder) { tb.symlink("y", canary).symlink("x", "y") },
			func(canary string) string { return canary + "/file" }},
		{"proc", func(canary string, tb *tarBuilder) { tb.symlink("x", "/proc/self/root"+canary) },
			func(canary string) string { return "proc/self/root" + canary + "/file" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The link's target exists inside the rootfs: the file lands there.
			s := newSandbox(t)
			tb := newTar(t).file(filepath.Join(filepath.Dir(c.landed(s.canary)), "marker"), 0o644, "")
			c.build(s.canary, tb)
			tb.file("x/file", 0o644, "pwned")
			mustExtract(t, s, tb.bytes(), UnpackOptions{})
			if got := readFile(t, s.path(c.landed(s.canary))); got != "pwned" {
				t.Errorf("file landed elsewhere: %q", got)
			}
		})
		if c.name == "root" {
			continue
		}
		t.Run(c.name+" dangling", func(t *testing.T) {
			// It does not: as in a chroot, the path does not exist.
			s := newSandbox(t)
			tb := newTar(t)
			c.build(s.canary, tb)
			tb.file("x/file", 0o644, "pwned")
			wantErr(t, s.extract(tb.bytes(), UnpackOptions{}), "rootfs", `entry "x/file"`)
		})
	}
}

// TestSafetySymlinkFinal: a symlink in the place of a later file is
// replaced, never written through.
func TestSafetySymlinkFinal(t *testing.T) {
	s := newSandbox(t)
	tb := newTar(t).
		symlink("passwd", filepath.Join(s.canary, "file")).
		file("passwd", 0o644, "root::0:0::/:/bin/sh\n").
		symlink("dangling", filepath.Join(s.canary, "new")).
		file("dangling", 0o644, "x").
		symlink("node", filepath.Join(s.canary, "fifo")).
		add(&tar.Header{Typeflag: tar.TypeFifo, Name: "node", Mode: 0o644}, "").
		symlink("sym", filepath.Join(s.canary, "file")).
		symlink("sym", "elsewhere")
	mustExtract(t, s, tb.bytes(), UnpackOptions{})
	if st := lstat(t, s.path("passwd")); st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("passwd is not a regular file")
	}
	if got, _ := os.Readlink(s.path("sym")); got != "elsewhere" {
		t.Errorf("sym -> %q", got)
	}
}

// TestSafetyDirOverSymlink: a directory entry replaces a symlink of the same
// name, so what comes below it lands in the new directory.
func TestSafetyDirOverSymlink(t *testing.T) {
	s := newSandbox(t)
	tb := newTar(t).
		file(filepath.Join(s.canary, "marker"), 0o644, "").
		symlink("d", s.canary).
		file("d/first", 0o644, "through the link"). // inside the rootfs, at the link's target
		dir("d", 0o755).
		file("d/file", 0o644, "pwned")
	mustExtract(t, s, tb.bytes(), UnpackOptions{})
	if st := lstat(t, s.path("d")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("d is not a directory: %o", st.Mode)
	}
	if got := readFile(t, s.path("d/file")); got != "pwned" {
		t.Errorf("d/file = %q", got)
	}
	if got := readFile(t, s.path(filepath.Join(s.canary, "first"))); got != "through the link" {
		t.Errorf("file through the link = %q", got)
	}
}

func TestSafetyHardlinks(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func(s *sandbox, tb *tarBuilder)
		err   string
	}{
		{"absolute outside", func(s *sandbox, tb *tarBuilder) {
			tb.hardlink("h", filepath.Join(s.canary, "file"))
		}, "no such file earlier"},
		{"dotdot", func(s *sandbox, tb *tarBuilder) {
			tb.hardlink("h", "../canary/file")
		}, `".."`},
		{"through symlink", func(s *sandbox, tb *tarBuilder) {
			tb.symlink("out", s.canary).hardlink("h", "out/file")
		}, "no such file earlier"},
		{"through relative symlink", func(s *sandbox, tb *tarBuilder) {
			tb.symlink("out", "../canary").hardlink("h", "out/file")
		}, "no such file earlier"},
		{"not yet extracted", func(s *sandbox, tb *tarBuilder) {
			tb.hardlink("h", "later").file("later", 0o644, "x")
		}, "no such file earlier"},
		{"to itself", func(s *sandbox, tb *tarBuilder) {
			tb.hardlink("h", "h")
		}, "no such file earlier"},
		{"rootfs", func(s *sandbox, tb *tarBuilder) {
			tb.hardlink("h", "./")
		}, "rootfs itself"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSandbox(t)
			tb := newTar(t)
			c.build(s, tb)
			wantErr(t, s.extract(tb.bytes(), UnpackOptions{}), "rootfs", `entry "h"`, c.err)
			if st := lstat(t, filepath.Join(s.canary, "file")); st.Nlink != 1 {
				t.Errorf("canary file got a hard link")
			}
		})
	}
	t.Run("symlink target", func(t *testing.T) {
		// A hard link to a symlink links the symlink itself, as tar does,
		// and does not follow it out.
		s := newSandbox(t)
		mustExtract(t, s, newTar(t).symlink("out", filepath.Join(s.canary, "file")).hardlink("h", "out").bytes(), UnpackOptions{})
		if got, err := os.Readlink(s.path("h")); err != nil || got != filepath.Join(s.canary, "file") {
			t.Errorf("h -> %q, %v", got, err)
		}
	})
}

// TestSafetySetuidUserns: in user mode a setuid file keeps its bits only
// when its owner could be restored inside the namespace (see
// TestExtractAsUser and TestExtractInUserns for the unprivileged runs).
func TestSafetySetuidUserns(t *testing.T) {
	needRoot(t)
	s := newSandbox(t)
	tb := newTar(t).add(&tar.Header{Typeflag: tar.TypeReg, Name: "su", Mode: 0o4755}, "su")
	mustExtract(t, s, tb.bytes(), UnpackOptions{Userns: true})
	if st := lstat(t, s.path("su")); st.Mode&0o7777 != 0o4755 {
		t.Errorf("su mode %o", st.Mode&0o7777)
	}
}

func TestSafetySizes(t *testing.T) {
	t.Run("huge", func(t *testing.T) {
		s := newSandbox(t)
		// Only the header: the size is what matters, not data.
		var buf bytes.Buffer
		w := tar.NewWriter(&buf)
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: 1 << 50, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		err := s.extract(buf.Bytes(), UnpackOptions{})
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != "MaxFileSize" {
			t.Fatalf("err = %v, want a MaxFileSize LimitError", err)
		}
		wantErr(t, err, "rootfs", `entry "big"`, "Limits.MaxFileSize")
		if _, err := os.Lstat(s.path("big")); err == nil {
			t.Error("big was created")
		}
	})
	t.Run("negative", func(t *testing.T) {
		s := newSandbox(t)
		hdr := newTar(t).file("neg", 0o644, "").bytes()[:512]
		// A base-256 size field of all ones is -1.
		copy(hdr[124:136], bytes.Repeat([]byte{0xff}, 12))
		sum := 0
		copy(hdr[148:156], "        ")
		for _, b := range hdr {
			sum += int(b)
		}
		copy(hdr[148:156], []byte(strings.Repeat("0", 6-len(octal(sum)))+octal(sum)+"\x00 "))
		err := s.extract(append(hdr, make([]byte, 1024)...), UnpackOptions{})
		wantErr(t, err, "rootfs", "invalid tar header")
	})
	t.Run("sparse bomb", func(t *testing.T) {
		// 8 MiB of (mostly) holes in 20 KiB: the logical size counts.
		tb, err := os.ReadFile(filepath.Join("testdata", "unpack", "sparse-pax.tar"))
		if err != nil {
			t.Fatal(err)
		}
		s := newSandbox(t)
		err = s.extract(tb, UnpackOptions{Limits: Limits{MaxFileSize: 1 << 20}})
		wantErr(t, err, "Limits.MaxFileSize", "8388608")
	})
}

func octal(n int) string {
	const digits = "01234567"
	s := ""
	for ; n > 0; n /= 8 {
		s = string(digits[n%8]) + s
	}
	return s
}

func TestSafetyTarBomb(t *testing.T) {
	t.Run("entries", func(t *testing.T) {
		s := newSandbox(t)
		tb := newTar(t)
		for i := range 20 {
			tb.file("f"+octal(i+8), 0o644, "")
		}
		err := s.extract(tb.bytes(), UnpackOptions{Limits: Limits{MaxEntries: 10}})
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != "MaxEntries" || le.Value != 11 || le.Max != 10 {
			t.Fatalf("err = %#v", err)
		}
		wantErr(t, err, "number of entries 11 exceeds the limit of 10 (Limits.MaxEntries)")
	})
	t.Run("total size", func(t *testing.T) {
		s := newSandbox(t)
		tb := newTar(t)
		for _, n := range []string{"a", "b", "c", "d"} {
			tb.file(n, 0o644, strings.Repeat("x", 400))
		}
		err := s.extract(tb.bytes(), UnpackOptions{Limits: Limits{MaxTotalSize: 1000}})
		wantErr(t, err, `entry "c"`, "total size of files 1200 exceeds the limit of 1000 (Limits.MaxTotalSize)")
		if _, err := os.Lstat(s.path("c")); err == nil {
			t.Error("c was created")
		}
	})
	t.Run("default limits", func(t *testing.T) {
		if DefaultLimits.MaxEntries < 100000 || DefaultLimits.MaxTotalSize < 8<<30 || DefaultLimits.MaxFileSize < 1<<30 {
			t.Errorf("DefaultLimits too tight for real images: %+v", DefaultLimits)
		}
		if (Limits{}).withDefaults() != DefaultLimits {
			t.Error("zero Limits do not take the defaults")
		}
	})
}

func TestSafetyPAX(t *testing.T) {
	long := strings.Repeat("long-directory-name/", 12) + strings.Repeat("n", 200)
	xattrs := map[string]string{"SCHILY.xattr.user.big": strings.Repeat("v", 3000), "SCHILY.xattr.user.small": "s"}
	t.Run("long names and xattrs", func(t *testing.T) {
		s := newSandbox(t)
		tb := newTar(t).
			add(&tar.Header{Typeflag: tar.TypeReg, Name: long, Mode: 0o644, PAXRecords: xattrs}, "deep").
			add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: long}, "").
			add(&tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: long}, "")
		mustExtract(t, s, tb.bytes(), UnpackOptions{})
		if got := readFile(t, s.path("link")); got != "deep" {
			t.Errorf("link = %q", got)
		}
		if got := readFile(t, s.path("hard")); got != "deep" {
			t.Errorf("hard = %q", got)
		}
		if got := getxattr(t, s.path(long), "user.big"); got != xattrs["SCHILY.xattr.user.big"] {
			t.Errorf("user.big is %d bytes", len(got))
		}
	})
	for _, c := range []struct {
		name  string
		hdr   *tar.Header
		lim   Limits
		limit string
	}{
		{"name", &tar.Header{Typeflag: tar.TypeReg, Name: long}, Limits{MaxPathLength: 100}, "MaxPathLength"},
		{"symlink", &tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: long}, Limits{MaxPathLength: 100}, "MaxPathLength"},
		{"hardlink", &tar.Header{Typeflag: tar.TypeLink, Name: "l", Linkname: long}, Limits{MaxPathLength: 100}, "MaxPathLength"},
		{"xattr size", &tar.Header{Typeflag: tar.TypeReg, Name: "x", PAXRecords: xattrs}, Limits{MaxXattrSize: 1000}, "MaxXattrSize"},
		{"xattr count", &tar.Header{Typeflag: tar.TypeReg, Name: "x", PAXRecords: xattrs}, Limits{MaxXattrs: 1}, "MaxXattrs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSandbox(t)
			err := s.extract(newTar(t).add(c.hdr, "").bytes(), UnpackOptions{Limits: c.lim})
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != c.limit {
				t.Fatalf("err = %v, want a %s LimitError", err, c.limit)
			}
			wantErr(t, err, "rootfs", "Limits."+c.limit)
		})
	}
}

// TestSafetyReadOnlyDir: a directory that ends up read-only (or without
// search permission) still gets its content, and its mode at the end.
func TestSafetyReadOnlyDir(t *testing.T) {
	s := newSandbox(t)
	tb := newTar(t).
		dir("ro", 0o555).
		dir("ro/none", 0o000).
		file("ro/none/file", 0o644, "x").
		file("ro/file", 0o644, "y")
	mustExtract(t, s, tb.bytes(), UnpackOptions{})
	if st := lstat(t, s.path("ro")); st.Mode&0o777 != 0o555 {
		t.Errorf("ro mode %o", st.Mode&0o777)
	}
	if st := lstat(t, s.path("ro/none")); st.Mode&0o777 != 0 {
		t.Errorf("ro/none mode %o", st.Mode&0o777)
	}
	if os.Geteuid() == 0 {
		if got := readFile(t, s.path("ro/none/file")); got != "x" {
			t.Errorf("ro/none/file = %q", got)
		}
	}
	// Let t.TempDir's cleanup remove it.
	os.Chmod(s.path("ro/none"), 0o755)
	os.Chmod(s.path("ro"), 0o755)
}

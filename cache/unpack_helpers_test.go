package cache

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// tarBuilder writes crafted tarballs for the tests.
type tarBuilder struct {
	t   testing.TB
	buf bytes.Buffer
	w   *tar.Writer
}

// testTime is the mtime of every entry unless a test says otherwise.
var testTime = time.Date(2023, 6, 1, 12, 30, 45, 0, time.UTC)

func newTar(t testing.TB) *tarBuilder {
	b := &tarBuilder{t: t}
	b.w = tar.NewWriter(&b.buf)
	return b
}

// add writes hdr (PAX, mtime testTime unless set) and body.
func (b *tarBuilder) add(hdr *tar.Header, body string) *tarBuilder {
	b.t.Helper()
	if hdr.ModTime.IsZero() {
		hdr.ModTime = testTime
	}
	if hdr.Format == tar.FormatUnknown {
		hdr.Format = tar.FormatPAX
	}
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == 0 {
		hdr.Size = int64(len(body))
	}
	if err := b.w.WriteHeader(hdr); err != nil {
		b.t.Fatalf("tar header %s: %v", hdr.Name, err)
	}
	if body != "" {
		if _, err := b.w.Write([]byte(body)); err != nil {
			b.t.Fatalf("tar body %s: %v", hdr.Name, err)
		}
	}
	return b
}

func (b *tarBuilder) dir(name string, mode int64) *tarBuilder {
	return b.add(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}, "")
}

func (b *tarBuilder) file(name string, mode int64, body string) *tarBuilder {
	return b.add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body)
}

func (b *tarBuilder) symlink(name, target string) *tarBuilder {
	return b.add(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, "")
}

func (b *tarBuilder) hardlink(name, target string) *tarBuilder {
	return b.add(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}, "")
}

func (b *tarBuilder) bytes() []byte {
	b.t.Helper()
	if err := b.w.Close(); err != nil {
		b.t.Fatal(err)
	}
	return b.buf.Bytes()
}

// xzCompress compresses data with blocks of blockSize bytes (0: one block).
func xzCompress(t testing.TB, data []byte, blockSize int64) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := xz.WriterConfig{BlockSize: blockSize}.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// sandbox is a temporary directory holding the rootfs to extract into and,
// beside it, a canary directory with one file that no extraction may touch.
type sandbox struct {
	t      testing.TB
	base   string
	rootfs string
	canary string
	before string
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{t: t, base: base, rootfs: filepath.Join(base, "rootfs"), canary: filepath.Join(base, "canary")}
	for _, d := range []string{s.rootfs, s.canary} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.canary, "file"), []byte("canary\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.before = s.outside()
	return s
}

// outside describes everything in the sandbox but the rootfs.
func (s *sandbox) outside() string {
	s.t.Helper()
	var b strings.Builder
	err := filepath.Walk(s.base, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == s.rootfs {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.WriteString(" " + string(data))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return b.String()
}

// checkOutside fails the test if anything beside the rootfs changed.
func (s *sandbox) checkOutside() {
	s.t.Helper()
	if now := s.outside(); now != s.before {
		s.t.Fatalf("extraction changed files outside the rootfs:\nbefore:\n%s\nafter:\n%s", s.before, now)
	}
}

func (s *sandbox) path(rel string) string {
	return filepath.Join(s.rootfs, rel)
}

// extract runs Extract on a tarball into the sandbox's rootfs and checks
// that nothing outside changed.
func (s *sandbox) extract(tarball []byte, o UnpackOptions) error {
	s.t.Helper()
	err := Extract(context.Background(), bytes.NewReader(tarball), s.rootfs, o)
	s.checkOutside()
	return err
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown, mknod, privileged extended attributes)")
	}
}

func lstat(t testing.TB, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustExtract(t testing.TB, s *sandbox, tarball []byte, o UnpackOptions) {
	t.Helper()
	if err := s.extract(tarball, o); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not mention %q", err, p)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %q is not one line", err)
	}
}

package cache

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// richRootfs is a tarball with every kind of entry, owner, mode and
// attribute a clone must restore as the unpack did.
func richRootfs(t testing.TB) []byte {
	t.Helper()
	at := time.Date(2024, 2, 3, 4, 5, 6, 123456789, time.UTC)
	big := make([]byte, 200<<10) // above reflinkMin
	rand.NewChaCha8([32]byte{1}).Read(big)
	b := newTar(t)
	hdr := func(h *tar.Header) *tar.Header {
		h.AccessTime = at
		if h.ModTime.IsZero() {
			h.ModTime = at.Add(-time.Hour)
		}
		return h
	}
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./etc/", Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.user.dir": "d"}}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/passwd", Mode: 0o644}), "root:x:0:0::/root:/bin/sh\n")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/shadow", Mode: 0o640, Gid: 42}), "root:*:19000::::::\n")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/same-a", Mode: 0o644}), "same content\n")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/same-b", Mode: 0o600, Uid: 1000, Gid: 1000}), "same content\n")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/empty", Mode: 0o644}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./usr/", Mode: 0o755}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./usr/bin/", Mode: 0o755}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/su", Mode: 0o4755}), "#!su\n")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeLink, Name: "./usr/bin/su2", Linkname: "./usr/bin/su"}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/ping", Mode: 0o755,
		PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "SCHILY.xattr.user.note": "a\x00b"}}), "#!ping\n")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/big", Mode: 0o2755, Gid: 5}), string(big))
	b.add(hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./bin", Linkname: "usr/bin", Mode: 0o777}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./etc/mtab", Linkname: "/proc/self/mounts", Mode: 0o777, Uid: 7, Gid: 7}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./dev/", Mode: 0o755}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeChar, Name: "./dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeBlock, Name: "./dev/loop0", Mode: 0o660, Gid: 6, Devmajor: 7, Devminor: 0}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./run/", Mode: 0o755}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeFifo, Name: "./run/initctl", Mode: 0o600}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./tmp/", Mode: 0o1777}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./var/", Mode: 0o755}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./var/mail/", Mode: 0o2775, Gid: 8}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./var/ro/", Mode: 0o555}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./var/ro/file", Mode: 0o444}), "read only\n")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./var/odd name\nwith \"quotes\" \xff", Mode: 0o644}), "odd\n")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./home/", Mode: 0o755}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./home/user/", Mode: 0o700, Uid: 1000, Gid: 1000}), "")
	b.add(hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "./home/user/.profile", Mode: 0o600, Uid: 1000, Gid: 1000}), "PATH=/bin\n")
	return b.bytes()
}

// describe lists every entry under root with all a clone must restore:
// type, mode, owner, size, content hash, link target, device, link count,
// extended attributes, and times to the nanosecond (directories' too).
func describe(t testing.TB, root string) string {
	t.Helper()
	var lines []string
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%q %o %d:%d nlink=%d mtime=%d.%09d", rel, st.Mode, st.Uid, st.Gid, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec)
		if typ := st.Mode & unix.S_IFMT; typ != unix.S_IFDIR && typ != unix.S_IFLNK {
			// (Reading a directory or a link, as this does, sets
			// its access time.)
			line += fmt.Sprintf(" atime=%d.%09d", st.Atim.Sec, st.Atim.Nsec)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			// Without changing the access time another link of the
			// file shows.
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOATIME|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fh := os.NewFile(uintptr(fd), p)
			h := sha256.New()
			n, err := io.Copy(h, fh)
			fh.Close()
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" size=%d sha256=%x", n, h.Sum(nil))
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			line += " -> " + l
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" dev=%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
		}
		if n, _ := unix.Llistxattr(p, nil); n > 0 {
			buf := make([]byte, n)
			n, _ = unix.Llistxattr(p, buf)
			names := splitNul(buf[:n])
			sort.Strings(names)
			for _, name := range names {
				v := make([]byte, 64<<10)
				m, _ := unix.Lgetxattr(p, name, v)
				line += fmt.Sprintf(" %s=%q", name, v[:max(m, 0)])
			}
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// unpackedFixture is a cache holding an image whose rootfs was unpacked
// into a container, and that container.
type unpackedFixture struct {
	c        Cache
	img      testImage
	base     string // where containers go
	unpacked string // the first container's rootfs, from the tarball
}

// newUnpackedFixture stores an image with rootfs in a cache under dir (a
// new temporary directory when ""), and unpacks it into a first container
// beside it, keeping its unpacked copy with policy p. keepErr is what
// KeepUnpacked said.
func newUnpackedFixture(t *testing.T, dir string, rootfs []byte, p UnpackedPolicy) (*unpackedFixture, error) {
	t.Helper()
	needRoot(t)
	if dir == "" {
		dir = t.TempDir()
	}
	f := &unpackedFixture{c: Cache{Root: filepath.Join(dir, "cache")}, base: dir}
	f.img = newTestImage(t, "20240101_00:00", 0, nil)
	f.img.rootfs = xzCompress(t, rootfs, 0)
	storeImage(t, f.c, testKey, f.img)
	f.unpacked = f.target(t, "first")
	rs := f.unpackXZ(t, f.unpacked)
	err := f.c.KeepUnpacked(t.Context(), testKey, f.img.sum(), rs, p, false)
	if err := rs.Install(); err != nil {
		t.Fatal(err)
	}
	return f, err
}

// target makes an empty rootfs directory for a container called name.
func (f *unpackedFixture) target(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join(f.base, name, "rootfs")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// entry looks the image up, under its lock.
func (f *unpackedFixture) entry(t *testing.T) *Entry {
	t.Helper()
	unlock, err := f.c.Lock(t.Context(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	e, err := f.c.Lookup(testKey)
	if err != nil || e == nil {
		t.Fatalf("lookup: %v, %v", e, err)
	}
	return e
}

// unpackXZ unpacks the cached tarball into a stage for target, as cmd
// does, and returns the stage.
func (f *unpackedFixture) unpackXZ(t *testing.T, target string) *RootfsStage {
	t.Helper()
	e := f.entry(t)
	r, err := e.OpenRootfs()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rs, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.UnpackReader(t.Context(), r, UnpackOptions{Warn: testWriter{t}}); err != nil {
		t.Fatal(err)
	}
	return rs
}

// clone clones the entry's unpacked copy into target and installs it.
func (f *unpackedFixture) clone(t *testing.T, target string, o CloneOptions) error {
	t.Helper()
	e := f.entry(t)
	u, err := e.OpenUnpacked()
	if err != nil {
		return err
	}
	defer u.Close()
	rs, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Clone(t.Context(), u, o); err != nil {
		if derr := rs.Discard(); derr != nil {
			t.Errorf("discard: %v", derr)
		}
		if names := dirNames(t, filepath.Dir(target)); len(names) != 1 || len(dirNames(t, target)) != 0 {
			t.Errorf("a failed clone left %v beside and %v in the target", names, dirNames(t, target))
		}
		return err
	}
	return rs.Install()
}

// objectOf is the name of the copy's object of the unpacked file rel.
func (f *unpackedFixture) objectOf(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.unpacked, rel))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return objectName(&sum)
}

// copyDir is the entry's unpacked copy directory.
func (f *unpackedFixture) copyDir(t *testing.T) string {
	return filepath.Join(f.entry(t).Dir, unpackedName)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Errorf("unexpected warning: %s", p)
	return len(p), nil
}

// TestUnpackedCloneIsTheUnpack: a container cloned from the unpacked copy
// is the one the tarball unpacks to, to the nanosecond, the attribute and
// the link count; by copying (NoReflink) and with the defaults.
func TestUnpackedCloneIsTheUnpack(t *testing.T) {
	f, err := newUnpackedFixture(t, "", richRootfs(t), UnpackedAlways)
	if err != nil {
		t.Fatalf("KeepUnpacked: %v", err)
	}
	want := describe(t, f.unpacked)
	for _, o := range []CloneOptions{{NoReflink: true}, {}, {Workers: 1}, {Workers: 7}} {
		target := f.target(t, fmt.Sprintf("clone-%v-%d", o.NoReflink, o.Workers))
		if err := f.clone(t, target, o); err != nil {
			t.Fatalf("clone %+v: %v", o, err)
		}
		if got := describe(t, target); got != want {
			t.Errorf("clone %+v differs from the unpack:\n%s", o, diffLines(want, got))
		}
	}
	// And from a second unpack of the tarball: what the clone is
	// compared with is what an unpack makes every time.
	again := f.target(t, "again")
	rs := f.unpackXZ(t, again)
	if err := rs.Install(); err != nil {
		t.Fatal(err)
	}
	if got := describe(t, again); got != want {
		t.Errorf("two unpacks differ:\n%s", diffLines(want, got))
	}
	// The copy holds content only: one private file per content, no
	// owner, mode or device of the image.
	names := dirNames(t, f.copyDir(t))
	if len(names) != 11 { // manifest, identity and 9 distinct non-empty contents
		t.Errorf("copy holds %v", names)
	}
	for _, n := range names {
		st := lstat(t, filepath.Join(f.copyDir(t), n))
		if st.Mode != unix.S_IFREG|0o600 || st.Uid != 0 {
			t.Errorf("%s: mode %o owner %d", n, st.Mode, st.Uid)
		}
	}
	if st := lstat(t, f.copyDir(t)); st.Mode != unix.S_IFDIR|0o700 {
		t.Errorf("copy directory mode %o", st.Mode)
	}
}

// diffLines shows the lines of want and got that differ.
func diffLines(want, got string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	var out []string
	for l := range w {
		if !g[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range g {
		if !w[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// mountLoop makes a filesystem of kind (mkfs.KIND) in a loop-mounted
// image, or skips.
func mountLoop(t *testing.T, kind string, args ...string) string {
	t.Helper()
	needRoot(t)
	mkfs, err := exec.LookPath("mkfs." + kind)
	if err != nil {
		t.Skipf("no mkfs.%s", kind)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, kind+".img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 512<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, append(args, img)...).CombinedOutput(); err != nil {
		t.Skipf("mkfs.%s: %v: %s", kind, err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount %s here: %v: %s", kind, err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

// TestUnpackedReflink: on xfs, the default keeps a copy whose files share
// their blocks with the container they came from, and clones share them
// too; the clone is the unpack still.
func TestUnpackedReflink(t *testing.T) {
	dir := mountLoop(t, "xfs", "-q", "-f", "-m", "reflink=1")
	f, err := newUnpackedFixture(t, dir, richRootfs(t), UnpackedAuto)
	if err != nil {
		t.Fatalf("KeepUnpacked: %v", err)
	}
	e := f.entry(t)
	u, err := e.OpenUnpacked()
	if err != nil {
		t.Fatal(err)
	}
	if !u.Reflinked {
		t.Error("the copy was not made with reflinks")
	}
	u.Close()
	target := f.target(t, "clone")
	if err := f.clone(t, target, CloneOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := describe(t, target), describe(t, f.unpacked); got != want {
		t.Errorf("reflinked clone differs from the unpack:\n%s", diffLines(want, got))
	}
	// The big file's extents are shared (FIEMAP's FIEMAP_EXTENT_SHARED).
	if !sharedExtents(t, filepath.Join(target, "usr/bin/big")) {
		t.Error("usr/bin/big shares no blocks with the copy")
	}
}

// sharedExtents reports whether the file's first extent is shared.
func sharedExtents(t *testing.T, p string) bool {
	t.Helper()
	out, err := exec.Command("filefrag", "-v", p).CombinedOutput()
	if err != nil {
		t.Skipf("filefrag: %v", err)
	}
	return strings.Contains(string(out), "shared")
}

// TestUnpackedAutoWithoutReflinks: by default, a filesystem without
// reflinks gets no copy (it would double the image's disk use), and the
// entry is left as it was.
func TestUnpackedAutoWithoutReflinks(t *testing.T) {
	dir := mountTmpfs(t, "size=64m")
	f, err := newUnpackedFixture(t, dir, richRootfs(t), UnpackedAuto)
	if !errors.Is(err, ErrNoReflink) {
		t.Fatalf("KeepUnpacked: %v, want ErrNoReflink", err)
	}
	e := f.entry(t)
	if e.HasUnpacked() {
		t.Error("the record names a copy")
	}
	if names := dirNames(t, e.Dir); strings.Contains(strings.Join(names, " "), "unpacked") || strings.Contains(strings.Join(names, " "), "probe") {
		t.Errorf("entry holds %v", names)
	}
	if _, err := e.OpenUnpacked(); !errors.Is(err, ErrNoUnpacked) {
		t.Errorf("OpenUnpacked: %v", err)
	}
	if n := dirNames(t, filepath.Dir(e.Dir)); len(n) != 2 { // the entry and its lock
		t.Errorf("beside the entry: %v", n)
	}
}

// TestUnpackedOtherFilesystem: a copy is neither kept nor used across
// filesystems.
func TestUnpackedOtherFilesystem(t *testing.T) {
	needRoot(t)
	dir := mountTmpfs(t, "size=64m")
	// The cache on the tmpfs, the container on another filesystem.
	f := &unpackedFixture{c: Cache{Root: filepath.Join(dir, "cache")}, base: t.TempDir()}
	f.img = newTestImage(t, "20240101_00:00", 0, nil)
	f.img.rootfs = xzCompress(t, richRootfs(t), 0)
	storeImage(t, f.c, testKey, f.img)
	rs := f.unpackXZ(t, f.target(t, "other"))
	if err := f.c.KeepUnpacked(t.Context(), testKey, f.img.sum(), rs, UnpackedAlways, false); !errors.Is(err, ErrOtherFilesystem) {
		t.Errorf("KeepUnpacked across filesystems: %v", err)
	}
	rs.Discard()
	if f.entry(t).HasUnpacked() {
		t.Fatal("kept a copy across filesystems")
	}
	// A copy made on the cache's filesystem is not cloned onto another.
	f.base = dir
	rs = f.unpackXZ(t, f.target(t, "same"))
	if err := f.c.KeepUnpacked(t.Context(), testKey, f.img.sum(), rs, UnpackedAlways, false); err != nil {
		t.Fatalf("KeepUnpacked on one filesystem: %v", err)
	}
	rs.Discard()
	f.base = t.TempDir()
	if err := f.clone(t, f.target(t, "far"), CloneOptions{}); !errors.Is(err, ErrOtherFilesystem) {
		t.Errorf("clone across filesystems: %v", err)
	}
}

// TestUnpackedTampered: a copy changed after it was kept is refused as a
// whole, whatever was changed; nothing of it is left in the target.
func TestUnpackedTampered(t *testing.T) {
	rootfs := richRootfs(t)
	bigSum := fmt.Sprintf("%x", sha256.Sum256(nil)) // replaced below
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, copyDir, object string)
		want   string
	}{
		{"content", func(t *testing.T, _, obj string) { flipMiddleByte(t, obj) }, "does not match its SHA256"},
		{"content, times put back", func(t *testing.T, _, obj string) {
			// The change time still moves, so the object is hashed.
			st := lstat(t, obj)
			flipMiddleByte(t, obj)
			mtime := time.Unix(st.Mtim.Unix())
			os.Chtimes(obj, mtime, mtime)
		}, "does not match its SHA256"},
		{"truncated", func(t *testing.T, _, obj string) { os.Truncate(obj, 10) }, "manifest says"},
		{"grown", func(t *testing.T, _, obj string) {
			fh, _ := os.OpenFile(obj, os.O_APPEND|os.O_WRONLY, 0)
			fh.Write([]byte("x"))
			fh.Close()
		}, "manifest says"},
		{"missing", func(t *testing.T, _, obj string) { os.Remove(obj) }, "no such file"},
		{"symlink", func(t *testing.T, _, obj string) {
			os.Remove(obj)
			os.Symlink("/etc/passwd", obj)
		}, "symbolic link"},
		{"readable by others", func(t *testing.T, _, obj string) { os.Chmod(obj, 0o644) }, "open to others"},
		{"other owner", func(t *testing.T, _, obj string) { os.Chown(obj, 1000, 0) }, "owned by uid 1000"},
		{"setuid object", func(t *testing.T, _, obj string) { os.Chmod(obj, 0o4600) }, ""},
		{"manifest", func(t *testing.T, dir, _ string) {
			p := filepath.Join(dir, manifestName)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), "f 755 ", "f 775 ", 1)), 0o600)
		}, "manifest does not match"},
		{"manifest mode", func(t *testing.T, dir, _ string) { os.Chmod(filepath.Join(dir, manifestName), 0o644) }, "open to others"},
		{"directory mode", func(t *testing.T, dir, _ string) { os.Chmod(dir, 0o755) }, "open to others"},
		{"directory symlink", func(t *testing.T, dir, _ string) {
			os.Rename(dir, dir+".moved")
			os.Symlink(filepath.Base(dir)+".moved", dir)
		}, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := newUnpackedFixture(t, "", rootfs, UnpackedAlways)
			if err != nil {
				t.Fatal(err)
			}
			dir := f.copyDir(t)
			// The big file's content, so that the clone reaches it
			// after others.
			st := lstat(t, filepath.Join(f.unpacked, "usr/bin/big"))
			_ = st
			b, err := os.ReadFile(filepath.Join(f.unpacked, "usr/bin/big"))
			if err != nil {
				t.Fatal(err)
			}
			bigSum = fmt.Sprintf("%x", sha256.Sum256(b))
			tc.tamper(t, dir, filepath.Join(dir, bigSum))
			target := f.target(t, "clone")
			err = f.clone(t, target, CloneOptions{NoReflink: true})
			if tc.want == "" {
				// Its mode is the copy's own business: only the
				// manifest gives modes.
				if err != nil {
					t.Fatalf("clone: %v", err)
				}
				if st := lstat(t, filepath.Join(target, "usr/bin/big")); st.Mode&0o7777 != 0o2755 {
					t.Errorf("mode %o", st.Mode)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("clone of a copy with its %s tampered with: %v, want %q", tc.name, err, tc.want)
			}
			if len(dirNames(t, target)) != 0 {
				t.Error("the target is not empty")
			}
		})
	}
}

// TestUnpackedKeepChecks: a copy is kept only of the entry the unpack
// came from, only from a stage exactly as unpacked, and is replaced only
// when asked.
func TestUnpackedKeepChecks(t *testing.T) {
	f, err := newUnpackedFixture(t, "", richRootfs(t), UnpackedNever)
	if err != nil || f.entry(t).HasUnpacked() {
		t.Fatalf("UnpackedNever kept a copy (%v)", err)
	}
	rs := f.unpackXZ(t, f.target(t, "b"))
	defer rs.Discard()
	other := strings.Repeat("0", 64)
	if err := f.c.KeepUnpacked(t.Context(), testKey, other, rs, UnpackedAlways, false); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("KeepUnpacked for another tarball: %v", err)
	}
	if f.entry(t).HasUnpacked() {
		t.Fatal("kept a copy for another tarball")
	}
	// A stage not filled by an unpack is not kept.
	empty, err := NewRootfsStage(f.target(t, "c"))
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Discard()
	if err := f.c.KeepUnpacked(t.Context(), testKey, f.img.sum(), empty, UnpackedAlways, false); !errors.Is(err, ErrNotPristine) {
		t.Errorf("KeepUnpacked of an empty stage: %v", err)
	}
	if err := f.c.KeepUnpacked(t.Context(), testKey, f.img.sum(), rs, UnpackedAlways, false); err != nil {
		t.Fatal(err)
	}
	before := f.entry(t).unpacked.Manifest
	// Not replaced unless asked; replaced when asked.
	mark := filepath.Join(f.copyDir(t), "mark")
	os.WriteFile(mark, nil, 0o600)
	if err := f.c.KeepUnpacked(t.Context(), testKey, f.img.sum(), rs, UnpackedAlways, false); err != nil || !exists(mark) {
		t.Errorf("KeepUnpacked again: %v, mark kept %v", err, exists(mark))
	}
	if err := f.c.KeepUnpacked(t.Context(), testKey, f.img.sum(), rs, UnpackedAlways, true); err != nil || exists(mark) {
		t.Errorf("KeepUnpacked replacing: %v, mark kept %v", err, exists(mark))
	}
	if after := f.entry(t).unpacked.Manifest; after != before {
		t.Errorf("the same unpack gave another manifest: %v, %v", before, after)
	}
}

// TestUnpackedCrash: a run killed between putting the copy in place and
// recording it leaves a copy no record names: it is not used, it shows as
// an orphan, and the next keep or DropUnpacked removes it.
func TestUnpackedCrash(t *testing.T) {
	f, err := newUnpackedFixture(t, "", richRootfs(t), UnpackedNever)
	if err != nil {
		t.Fatal(err)
	}
	rs := f.unpackXZ(t, f.target(t, "b"))
	defer rs.Discard()
	crashed := errors.New("crashed")
	c := f.c
	c.hooks = &testHooks{crash: func(step string) {
		if step == "unpacked-renamed" {
			panic(crashed)
		}
	}}
	func() {
		defer func() {
			if r := recover(); r != crashed {
				t.Fatalf("recovered %v", r)
			}
		}()
		c.KeepUnpacked(t.Context(), testKey, f.img.sum(), rs, UnpackedAlways, false)
	}()
	e := f.entry(t)
	if e.HasUnpacked() {
		t.Fatal("the record names the copy")
	}
	if _, err := e.OpenUnpacked(); !errors.Is(err, ErrNoUnpacked) {
		t.Errorf("OpenUnpacked of an orphan: %v", err)
	}
	u, found, err := e.UnpackedUsage()
	if err != nil || !found || !u.Orphan || u.Files == 0 {
		t.Errorf("usage of an orphan: %+v %v %v", u, found, err)
	}
	dropped, err := f.c.DropUnpacked(testKey)
	if err != nil || !dropped || exists(filepath.Join(e.Dir, unpackedName)) {
		t.Errorf("DropUnpacked: %v %v", dropped, err)
	}
	// And a recorded copy is dropped record first.
	if err := f.c.KeepUnpacked(t.Context(), testKey, f.img.sum(), rs, UnpackedAlways, false); err != nil {
		t.Fatal(err)
	}
	// Files counts the contents (9 distinct), not the manifest or the
	// identity file.
	if u, found, err := f.entry(t).UnpackedUsage(); err != nil || !found || u.Orphan || u.Bytes < 200<<10 || u.Files != 9 {
		t.Errorf("usage: %+v %v %v", u, found, err)
	}
	if dropped, err := f.c.DropUnpacked(testKey); err != nil || !dropped {
		t.Errorf("DropUnpacked: %v %v", dropped, err)
	}
	if e := f.entry(t); e.HasUnpacked() || exists(filepath.Join(e.Dir, unpackedName)) {
		t.Error("the copy or its record stayed")
	}
}

// TestParseManifest: a manifest that would make a clone leave the rootfs,
// follow a link, or make what an unpack cannot, is refused.
func TestParseManifest(t *testing.T) {
	head := manifestHeader + "\nrootfs " + strings.Repeat("ab", 32) + "\n"
	sum := strings.Repeat("cd", 32)
	good := head + "d 755 0 0 - - \".\"\n" +
		"d 755 0 0 1.500000000 2.000000001 \"etc\"\n" +
		"f 644 0 0 - - \"etc/a b\\n\" 3 " + sum + " x \"user.x\" \"\\x00\"\n" +
		"l 777 0 0 - - \"etc/l\" \"/etc\"\n" +
		"h 0 0 0 - - \"etc/h\" \"etc/a b\\n\"\n" +
		"c 666 0 0 - - \"etc/null\" 1 3\n" +
		"p 600 0 0 - - \"etc/fifo\"\n"
	m, err := parseManifest([]byte(good), Limits{})
	if err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	if len(m.entries) != 7 || m.entries[2].path != "etc/a b\n" || string(m.entries[2].xattrs[0].value) != "\x00" ||
		m.entries[1].mtime != (unix.Timespec{Sec: 2, Nsec: 1}) || m.entries[0].atime.Nsec != unix.UTIME_OMIT {
		t.Errorf("parsed %+v", m.entries)
	}
	if got := (&manifest{rootfs: m.rootfs, entries: m.entries}).marshal(); string(got) != good {
		t.Errorf("marshal:\n%s\nwant\n%s", got, good)
	}
	for _, bad := range []string{
		head + "f 644 0 0 - - \"../x\" 3 " + sum + "\n",
		head + "f 644 0 0 - - \"/etc/x\" 3 " + sum + "\n",
		head + "f 644 0 0 - - \"a//b\" 3 " + sum + "\n",
		head + "f 644 0 0 - - \"nodir/x\" 3 " + sum + "\n",
		head + "l 777 0 0 - - \"l\" \"/etc\"\nf 644 0 0 - - \"l/x\" 3 " + sum + "\n",
		head + "f 644 0 0 - - \"x\" 3 " + sum + "\nf 644 0 0 - - \"x\" 3 " + sum + "\n",
		head + "h 0 0 0 - - \"h\" \"later\"\nf 644 0 0 - - \"later\" 3 " + sum + "\n",
		head + "d 755 0 0 - - \"d\"\nh 0 0 0 - - \"h\" \"d\"\n",
		head + "f 644 0 0 - - \"x\"\n",
		head + "f 644 0 0 - - \"x\" 3 zz\n",
		head + "f 10644 0 0 - - \"x\" 3 " + sum + "\n",
		head + "s 644 0 0 - - \"x\"\n",
		head + "d 755 0 0 - - \"d\"\nd 755 0 0 - - \".\"\n",
		head + "f 644 0 0 - - \"x\" 3 " + sum + " y\n",
		head + "f 644 0 0 - - \"x\" 3 " + sum + " x \"\" \"v\"\n",
		head + "l 777 0 0 - - \"l\" \"\"\n",
		head + "f 644 0 0 1.1000000000 - \"x\" 3 " + sum + "\n",
		head + "f 644 0 0 - - x 3 " + sum + "\n",
		"lxc-download unpacked 2\nrootfs " + strings.Repeat("ab", 32) + "\n",
		manifestHeader + "\nrootfs abc\n",
	} {
		if _, err := parseManifest([]byte(bad), Limits{}); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
	many := head
	for i := range 5 {
		many += fmt.Sprintf("f 644 0 0 - - \"f%d\" 3 %s\n", i, sum)
	}
	if _, err := parseManifest([]byte(many), Limits{MaxEntries: 4}); err == nil {
		t.Error("accepted more entries than the limit")
	}
	if _, err := parseManifest([]byte(many), Limits{MaxTotalSize: 14}); err == nil {
		t.Error("accepted more bytes than the limit")
	}
}

// FuzzParseManifest: whatever parseManifest accepts, marshal writes back
// as it was read, and describes a tree whose every path is clean and
// under a directory listed before it.
func FuzzParseManifest(f *testing.F) {
	head := manifestHeader + "\nrootfs " + strings.Repeat("ab", 32) + "\n"
	sum := strings.Repeat("cd", 32)
	f.Add([]byte(head + "d 755 0 0 - - \".\"\nd 700 1 2 3.000000004 5.000000006 \"a\"\nf 4755 0 0 - - \"a/b\" 1 " + sum + " x \"user.a\" \"\\xff\"\nh 0 0 0 - - \"c\" \"a/b\"\n"))
	f.Add([]byte(head + "l 777 0 0 - - \"l\" \"../..\"\nb 660 0 6 - - \"blk\" 7 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseManifest(b, Limits{})
		if err != nil {
			return
		}
		again, err := parseManifest(m.marshal(), Limits{})
		if err != nil {
			t.Fatalf("marshal of an accepted manifest is refused: %v", err)
		}
		if len(again.entries) != len(m.entries) {
			t.Fatal("marshal lost entries")
		}
		dirs := map[string]bool{"": true}
		for _, en := range m.entries {
			if en.path == "." {
				continue
			}
			if c, err := cleanName(en.path); err != nil || c != en.path {
				t.Fatalf("unclean path %q", en.path)
			}
			d, _ := splitName(en.path)
			if !dirs[d] {
				t.Fatalf("%q is not in a directory listed before it", en.path)
			}
			if en.kind == 'd' {
				dirs[en.path] = true
			}
		}
	})
}

// TestUnpackedCancel: a clone stops when its context is cancelled.
func TestUnpackedCancel(t *testing.T) {
	f, err := newUnpackedFixture(t, "", richRootfs(t), UnpackedAlways)
	if err != nil {
		t.Fatal(err)
	}
	e := f.entry(t)
	u, err := e.OpenUnpacked()
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	rs, err := NewRootfsStage(f.target(t, "cancelled"))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Discard()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := rs.Clone(ctx, u, CloneOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("clone with a cancelled context: %v", err)
	}
}

// flipMiddleByte changes one bit in the middle of the file at p, in place.
func flipMiddleByte(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUnpackedCloneSkipsHashing: a clone reads again only the objects
// that changed since the copy was made (identityName); without the
// record of what they were, it hashes them all.
func TestUnpackedCloneSkipsHashing(t *testing.T) {
	f, err := newUnpackedFixture(t, "", richRootfs(t), UnpackedAlways)
	if err != nil {
		t.Fatal(err)
	}
	want := describe(t, f.unpacked)
	clone := func(name string) CloneStats {
		t.Helper()
		var st CloneStats
		target := f.target(t, name)
		if err := f.clone(t, target, CloneOptions{NoReflink: true, Stats: &st}); err != nil {
			t.Fatalf("clone %s: %v", name, err)
		}
		if got := describe(t, target); got != want {
			t.Errorf("clone %s differs from the unpack:\n%s", name, diffLines(want, got))
		}
		return st
	}
	st := clone("unchanged")
	if st.Copied == 0 || st.Hashed != 0 {
		t.Errorf("clone of an unchanged copy: %+v, want files copied and none hashed", st)
	}
	// A change of an object's times (its content is the same) moves its
	// change time: that object alone is hashed.
	obj := filepath.Join(f.copyDir(t), f.objectOf(t, "usr/bin/big"))
	when := time.Now().Add(-time.Hour)
	if err := os.Chtimes(obj, when, when); err != nil {
		t.Fatal(err)
	}
	if st := clone("touched"); st.Hashed != 1 {
		t.Errorf("clone after one object was touched: %+v, want 1 hashed", st)
	}
	// Without the identity file, or with one out of form, all are.
	for _, c := range []struct {
		name   string
		change func(p string) error
	}{
		{"no identity", os.Remove},
		{"identity out of form", func(p string) error { return os.WriteFile(p, []byte(identityHeader+"\ndev x\n"), 0o600) }},
	} {
		if err := c.change(filepath.Join(f.copyDir(t), identityName)); err != nil {
			t.Fatal(err)
		}
		if st := clone(strings.ReplaceAll(c.name, " ", "-")); st.Hashed != st.Copied+st.Reflinked || st.Hashed == 0 {
			t.Errorf("clone with %s: %+v, want every file hashed", c.name, st)
		}
	}
}

// TestUnpackedVerifyHashesEverything: Verify (cache verify) reads every
// object whatever the identity file says, so it finds what a clone
// trusting the file would not: here, an object changed by someone who
// also wrote its new identity into the file (root could).
func TestUnpackedVerifyHashesEverything(t *testing.T) {
	f, err := newUnpackedFixture(t, "", richRootfs(t), UnpackedAlways)
	if err != nil {
		t.Fatal(err)
	}
	dir := f.copyDir(t)
	name := f.objectOf(t, "usr/bin/big")
	obj := filepath.Join(dir, name)
	flipMiddleByte(t, obj)
	idPath := filepath.Join(dir, identityName)
	ids, err := os.ReadFile(idPath)
	if err != nil {
		t.Fatal(err)
	}
	st := lstat(t, obj)
	var lines []string
	for _, l := range strings.Split(string(ids), "\n") {
		if strings.HasPrefix(l, name+" ") {
			l = fmt.Sprintf("%s %d %d %d %d", name, st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano())
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(idPath, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	var cs CloneStats
	if err := f.clone(t, f.target(t, "trusting"), CloneOptions{NoReflink: true, Stats: &cs}); err != nil || cs.Hashed != 0 {
		t.Fatalf("clone with a forged identity: %v, %+v (the test needs it to trust the file)", err, cs)
	}
	e := f.entry(t)
	u, err := e.OpenUnpacked()
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.Verify(t.Context()); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "does not match its SHA256") {
		t.Errorf("Verify of a changed object: %v", err)
	}
}

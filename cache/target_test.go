package cache

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newTarget makes PARENT/rootfs, an empty directory, with PARENT and its
// parent open to everyone (so that a probe as another user is stopped by
// the stage, not by them).
func newTarget(t *testing.T) string {
	t.Helper()
	parent := t.TempDir()
	os.Chmod(parent, 0o755)
	os.Chmod(filepath.Dir(parent), 0o755)
	target := filepath.Join(parent, "rootfs")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	return target
}

func TestCheckEmptyTarget(t *testing.T) {
	target := newTarget(t)
	if err := CheckEmptyTarget(target); err != nil {
		t.Fatalf("empty: %v", err)
	}
	os.Mkdir(filepath.Join(target, "lost+found"), 0o700)
	if err := CheckEmptyTarget(target); err != nil {
		t.Fatalf("with lost+found: %v", err)
	}
	os.WriteFile(filepath.Join(target, "leftover"), []byte("x"), 0o644)
	err := CheckEmptyTarget(target)
	if !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), "rootfs "+target+` is not empty: it holds "leftover"`) {
		t.Errorf("with a file: %v", err)
	}
	if names := dirNames(t, target); !reflect.DeepEqual(names, []string{"leftover", "lost+found"}) {
		t.Errorf("the check touched the target: %v", names)
	}
	os.Remove(filepath.Join(target, "leftover"))
	os.Remove(filepath.Join(target, "lost+found"))
	os.WriteFile(filepath.Join(target, "lost+found"), nil, 0o644)
	if err := CheckEmptyTarget(target); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("lost+found a file: %v", err)
	}
	if err := CheckEmptyTarget(filepath.Join(target, "missing")); err == nil || errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("missing target: %v", err)
	}
	if err := CheckEmptyTarget(filepath.Join(target, "lost+found")); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("a file as target: %v", err)
	}
	// NewRootfsStage refuses it the same way, touching nothing.
	if _, err := NewRootfsStage(target); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("NewRootfsStage of a target that is not empty: %v", err)
	}
	if names := dirNames(t, filepath.Dir(target)); !reflect.DeepEqual(names, []string{"rootfs"}) {
		t.Errorf("beside the target: %v", names)
	}
}

// stageTarball is a rootfs whose root entry asks for mode 0751 and, as
// root, owner 1234:5678, with a setuid file in it.
func stageTarball(t *testing.T) []byte {
	return newTar(t).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o751, Uid: 1234, Gid: 5678}, "").
		dir("./usr/", 0o755).
		dir("./usr/bin/", 0o755).
		file("./usr/bin/su", 0o4755, "#!/bin/sh\n").
		dir("./ro/", 0o555).
		file("./ro/file", 0o444, "read-only\n").
		bytes()
}

// TestRootfsStage: the stage is private and beside the target; the root
// entry waits for Install, which replaces the target in one rename.
func TestRootfsStage(t *testing.T) {
	target := newTarget(t)
	s, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Discard()
	if s.Inside() || filepath.Dir(s.Dir) != filepath.Dir(target) || !strings.HasPrefix(filepath.Base(s.Dir), ".lxc-download-stage-") {
		t.Fatalf("stage %s (inside %v), want a hidden directory beside %s", s.Dir, s.Inside(), target)
	}
	checkPrivate(t, s.Dir)
	if err := s.UnpackReader(t.Context(), bytes.NewReader(xzCompress(t, stageTarball(t), 0)), UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	// The root entry is kept for Install: the stage stays 0700.
	checkPrivate(t, s.Dir)
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	st := lstat(t, target)
	if st.Mode&0o7777 != 0o751 || !time.Unix(st.Mtim.Unix()).Equal(testTime) {
		t.Errorf("target mode %o mtime %v, want the root entry's 0751 %v", st.Mode&0o7777, time.Unix(st.Mtim.Unix()), testTime)
	}
	if os.Geteuid() == 0 && (st.Uid != 1234 || st.Gid != 5678) {
		t.Errorf("target owned by %d:%d, want the root entry's 1234:5678", st.Uid, st.Gid)
	}
	if b := readFile(t, filepath.Join(target, "usr/bin/su")); b != "#!/bin/sh\n" {
		t.Errorf("usr/bin/su = %q", b)
	}
	if names := dirNames(t, filepath.Dir(target)); !reflect.DeepEqual(names, []string{"rootfs"}) {
		t.Errorf("beside the target after Install: %v", names)
	}
	if err := s.Install(); err == nil {
		t.Error("a second Install succeeded")
	}
	if err := s.Discard(); err != nil {
		t.Errorf("Discard after Install: %v", err)
	}
	if b := readFile(t, filepath.Join(target, "usr/bin/su")); b != "#!/bin/sh\n" {
		t.Errorf("Discard after Install removed the rootfs")
	}
}

// TestRootfsStageKeepsTarget: without a root entry, the installed tree
// takes the target's own mode and owner.
func TestRootfsStageKeepsTarget(t *testing.T) {
	target := newTarget(t)
	os.Chmod(target, 0o711)
	if os.Geteuid() == 0 {
		os.Chown(target, 4321, 8765)
	}
	s, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Discard()
	tarball := newTar(t).file("etc/hostname", 0o644, "LXC_NAME\n").bytes()
	if err := s.UnpackReader(t.Context(), bytes.NewReader(xzCompress(t, tarball, 0)), UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	st := lstat(t, target)
	if st.Mode&0o7777 != 0o711 {
		t.Errorf("target mode %o, want its own 0711", st.Mode&0o7777)
	}
	if os.Geteuid() == 0 && (st.Uid != 4321 || st.Gid != 8765) {
		t.Errorf("target owned by %d:%d, want its own 4321:8765", st.Uid, st.Gid)
	}
}

// checkPrivate fails unless p is a 0700 directory of the running user.
func checkPrivate(t *testing.T, p string) {
	t.Helper()
	st := lstat(t, p)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o7777 != 0o700 || st.Uid != uint32(os.Geteuid()) {
		t.Errorf("%s: mode %o owner %d, want a 0700 directory of uid %d", p, st.Mode, st.Uid, os.Geteuid())
	}
}

// gateReader hands out r's bytes up to at, then waits for open to be
// closed.
type gateReader struct {
	r    io.Reader
	at   int64
	n    int64
	open chan struct{}
}

func (g *gateReader) Read(p []byte) (int, error) {
	if g.n >= g.at {
		<-g.open
	} else if int64(len(p)) > g.at-g.n {
		p = p[:g.at-g.n]
	}
	n, err := g.r.Read(p)
	g.n += int64(n)
	return n, err
}

// TestRootfsStageUnreachable: while a rootfs is unpacked, and until it is
// installed, another user reaches none of it, not even the setuid file
// that is already written. Checked as uid 65534.
func TestRootfsStageUnreachable(t *testing.T) {
	needRoot(t)
	target := newTarget(t)
	s, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Discard()
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7919 >> 8)
	}
	tarball := newTar(t).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}, "").
		dir("./usr/", 0o755).dir("./usr/bin/", 0o755).
		file("./usr/bin/su", 0o4755, "#!/bin/sh\n").
		file("./big", 0o644, string(big)).
		bytes()
	xzData := xzCompress(t, tarball, 64<<10)
	gate := &gateReader{r: bytes.NewReader(xzData), at: int64(len(xzData)) - 4096, open: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.UnpackReader(t.Context(), gate, UnpackOptions{}) }()
	su := filepath.Join(s.Dir, "usr/bin/su")
	for deadline := time.Now().Add(20 * time.Second); !exists(su); {
		if time.Now().After(deadline) {
			close(gate.open)
			t.Fatalf("usr/bin/su not written: %v", <-done)
		}
		time.Sleep(5 * time.Millisecond)
	}
	probe := func(want string, paths ...string) {
		t.Helper()
		cmd := nobodyCmd(t, "-test.run=^TestCacheHelperProcess$")
		cmd.Env = append(cmd.Env, helperEnv+"=probe", "HELPER_ARGS=-\x1f"+strings.Join(paths, "\x1f"))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		got := "unreachable"
		if errors.As(err, &ee) && ee.ExitCode() == 3 {
			got = "reachable"
		} else if err != nil {
			t.Fatalf("probe: %v\n%s", err, out)
		}
		if got != want {
			t.Errorf("as uid 65534: %s, want %s:\n%s", got, want, out)
		}
	}
	// Mid-stream.
	probe("unreachable", su, s.Dir, filepath.Join(target, "usr/bin/su"))
	close(gate.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Unpacked, not yet installed.
	probe("unreachable", su, s.Dir)
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	// The probe itself works.
	probe("reachable", filepath.Join(target, "usr/bin/su"))
}

// TestRootfsStageMountPoint: a target that is a mount point (lxc-create's
// lvm, zfs, btrfs) with lost+found gets a stage inside it, and Install
// moves the entries in; the target stays the mount point.
func TestRootfsStageMountPoint(t *testing.T) {
	needRoot(t)
	target := newTarget(t)
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "mode=0700,size=16m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	os.Mkdir(filepath.Join(target, "lost+found"), 0o700)
	os.WriteFile(filepath.Join(target, "lost+found/#1234"), []byte("the filesystem's"), 0o600)
	s, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Discard()
	if !s.Inside() || filepath.Dir(s.Dir) != target {
		t.Fatalf("stage %s (inside %v), want it inside the mount point %s", s.Dir, s.Inside(), target)
	}
	checkPrivate(t, s.Dir)
	tarball := newTar(t).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}, "").
		dir("./lost+found/", 0o700).
		dir("./etc/", 0o755).file("./etc/hostname", 0o644, "c1\n").
		bytes()
	if err := s.UnpackReader(t.Context(), bytes.NewReader(xzCompress(t, tarball, 0)), UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, target); st.Mode&0o7777 != 0o700 {
		t.Errorf("the root entry was applied before Install: mode %o", st.Mode&0o7777)
	}
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, target); !reflect.DeepEqual(names, []string{"etc", "lost+found"}) {
		t.Errorf("target holds %v", names)
	}
	if b := readFile(t, filepath.Join(target, "lost+found/#1234")); b != "the filesystem's" {
		t.Errorf("the target's lost+found was replaced")
	}
	if st := lstat(t, target); st.Mode&0o7777 != 0o755 {
		t.Errorf("target mode %o, want the root entry's 0755", st.Mode&0o7777)
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, target, 0, unix.STATX_BASIC_STATS, &stx); err == nil &&
		stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		t.Error("the target is no longer the mount point")
	}
}

// TestRootfsStageLostFound: a target that is no mount point but holds
// lost+found cannot be replaced by a rename either.
func TestRootfsStageLostFound(t *testing.T) {
	target := newTarget(t)
	os.Mkdir(filepath.Join(target, "lost+found"), 0o700)
	s, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Discard()
	if !s.Inside() {
		t.Fatalf("stage %s beside a target with lost+found", s.Dir)
	}
	if err := s.UnpackReader(t.Context(), bytes.NewReader(xzCompress(t, newTar(t).file("a", 0o644, "a").bytes(), 0)), UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, target); !reflect.DeepEqual(names, []string{"a", "lost+found"}) {
		t.Errorf("target holds %v", names)
	}
}

// TestRootfsStageNotEmptyAnyMore: something appearing in the target while
// the stage was filled makes Install fail, and nothing is merged.
func TestRootfsStageNotEmptyAnyMore(t *testing.T) {
	for _, inside := range []bool{false, true} {
		t.Run(map[bool]string{false: "beside", true: "inside"}[inside], func(t *testing.T) {
			target := newTarget(t)
			if inside {
				os.Mkdir(filepath.Join(target, "lost+found"), 0o700)
			}
			s, err := NewRootfsStage(target)
			if err != nil {
				t.Fatal(err)
			}
			tarball := newTar(t).file("a", 0o644, "image").file("b", 0o644, "image").bytes()
			if err := s.UnpackReader(t.Context(), bytes.NewReader(xzCompress(t, tarball, 0)), UnpackOptions{}); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(target, "b"), []byte("planted"), 0o644)
			if err := s.Install(); !errors.Is(err, ErrTargetNotEmpty) {
				t.Fatalf("Install = %v", err)
			}
			if err := s.Discard(); err != nil {
				t.Fatal(err)
			}
			want := []string{"b"}
			if inside {
				want = []string{"b", "lost+found"}
			}
			if names := dirNames(t, target); !reflect.DeepEqual(names, want) {
				t.Errorf("target holds %v, want %v", names, want)
			}
			if names := dirNames(t, filepath.Dir(target)); !reflect.DeepEqual(names, []string{"rootfs"}) {
				t.Errorf("beside the target: %v", names)
			}
		})
	}
}

// TestRootfsStageDiscard: Discard removes a stage with read-only and
// unsearchable directories, as root and (run again) as uid 65534.
func TestRootfsStageDiscard(t *testing.T) {
	target := newTarget(t)
	s, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	tarball := newTar(t).
		dir("./ro/", 0o555).file("./ro/file", 0o444, "x").
		dir("./ro/sub/", 0o500).file("./ro/sub/file", 0o400, "x").
		dir("./locked/", 0o000).file("./locked/file", 0o000, "x").
		bytes()
	if err := s.UnpackReader(t.Context(), bytes.NewReader(xzCompress(t, tarball, 0)), UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, filepath.Join(s.Dir, "locked")); st.Mode&0o777 != 0 {
		t.Fatalf("locked has mode %o", st.Mode&0o777)
	}
	if err := s.Discard(); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, filepath.Dir(target)); !reflect.DeepEqual(names, []string{"rootfs"}) {
		t.Errorf("after Discard: %v", names)
	}
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestRootfsStageDiscard")
	}
}

// TestCleanStaleStages: stages that killed runs left beside and inside a
// target go, read-only directories and all; a live run's stage, another
// user's directory, a symlink and a plain file with the same prefix stay.
func TestCleanStaleStages(t *testing.T) {
	target := newTarget(t)
	parent := filepath.Dir(target)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "precious"), []byte("x"), 0o644)
	stale := func(dir string) {
		os.MkdirAll(filepath.Join(dir, "ro/sub"), 0o755)
		os.WriteFile(filepath.Join(dir, "ro/sub/file"), []byte("x"), 0o444)
		os.MkdirAll(filepath.Join(dir, "locked/inner"), 0o755)
		os.WriteFile(filepath.Join(dir, "locked/inner/file"), []byte("x"), 0o644)
		os.Symlink(host, filepath.Join(dir, "link"))
		os.Chmod(filepath.Join(dir, "ro/sub"), 0o555)
		os.Chmod(filepath.Join(dir, "ro"), 0o555)
		os.Chmod(filepath.Join(dir, "locked/inner"), 0o500)
		os.Chmod(filepath.Join(dir, "locked"), 0)
		os.Chmod(dir, 0o500)
	}
	stale(filepath.Join(parent, ".lxc-download-stage-killed"))
	stale(filepath.Join(parent, ".lxc-download-tmp-killed"))
	stale(filepath.Join(target, ".lxc-download-stage-killed"))
	live, lock, err := makePrivateDir(parent, rootfsStagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	os.Symlink(host, filepath.Join(parent, ".lxc-download-stage-link"))
	os.WriteFile(filepath.Join(parent, ".lxc-download-stage-file"), nil, 0o644)
	want := []string{".lxc-download-stage-file", ".lxc-download-stage-link", filepath.Base(live), "rootfs"}
	if os.Geteuid() == 0 {
		other := filepath.Join(parent, ".lxc-download-stage-other")
		os.Mkdir(other, 0o700)
		os.Chown(other, 65534, 65534)
		want = append(want, filepath.Base(other))
	}
	if err := CleanStaleStages(target); err != nil {
		t.Fatal(err)
	}
	got := dirNames(t, parent)
	wantSorted := append([]string(nil), want...)
	slices.Sort(wantSorted)
	if !reflect.DeepEqual(got, wantSorted) {
		t.Errorf("beside the target: %v, want %v", got, wantSorted)
	}
	if names := dirNames(t, target); len(names) != 0 {
		t.Errorf("inside the target: %v", names)
	}
	if names := dirNames(t, host); !reflect.DeepEqual(names, []string{"precious"}) {
		t.Errorf("the symlinks' target: %v", names)
	}
	if err := CheckEmptyTarget(target); err != nil {
		t.Error(err)
	}
	// Once the live run is gone, its stage is stale too.
	lock.Close()
	if err := CleanStaleStages(target); err != nil {
		t.Fatal(err)
	}
	if exists(live) {
		t.Error("a released stage was not removed")
	}
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestCleanStaleStages")
	}
}

func TestReadContainerConfig(t *testing.T) {
	dir := t.TempDir()
	if b, err := ReadContainerConfig(dir); b != nil || err != nil {
		t.Fatalf("no config: %q, %v", b, err)
	}
	os.WriteFile(filepath.Join(dir, "config"), []byte("lxc.arch = x86_64\n"), 0o640)
	if b, err := ReadContainerConfig(dir); string(b) != "lxc.arch = x86_64\n" || err != nil {
		t.Fatalf("config: %q, %v", b, err)
	}
	secret := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(secret, []byte("root:$6$secret\n"), 0o600)
	os.Remove(filepath.Join(dir, "config"))
	os.Symlink(secret, filepath.Join(dir, "config"))
	if b, err := ReadContainerConfig(dir); err == nil || !strings.Contains(err.Error(), "is a symbolic link, not a regular file; refusing to use it") || b != nil {
		t.Errorf("config a symlink: %q, %v", b, err)
	}
	os.Remove(filepath.Join(dir, "config"))
	unix.Mkfifo(filepath.Join(dir, "config"), 0o644)
	if _, err := ReadContainerConfig(dir); err == nil || !strings.Contains(err.Error(), "is a fifo") {
		t.Errorf("config a fifo: %v", err)
	}
	os.Remove(filepath.Join(dir, "config"))
	os.WriteFile(filepath.Join(dir, "config"), make([]byte, MaxContainerConfigSize+1), 0o644)
	if _, err := ReadContainerConfig(dir); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("config too large: %v", err)
	}
}

func TestWriteContainerFile(t *testing.T) {
	dir := t.TempDir()
	if err := WriteContainerFile(dir, "fstab", []byte("proc proc proc\n"), 0o644, -1, -1); err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, filepath.Join(dir, "fstab")); st.Mode&0o7777 != 0o644 {
		t.Errorf("new fstab mode %o", st.Mode&0o7777)
	}
	p := filepath.Join(dir, "config")
	os.WriteFile(p, []byte("old\n"), 0o600)
	if os.Geteuid() == 0 {
		os.Chown(p, 1000, 1000)
	}
	if err := WriteContainerFile(dir, "config", []byte("new\n"), 0o640, -1, -1); err != nil {
		t.Fatal(err)
	}
	st := lstat(t, p)
	if readFile(t, p) != "new\n" || st.Mode&0o7777 != 0o600 {
		t.Errorf("config %q mode %o, want new and the old 0600", readFile(t, p), st.Mode&0o7777)
	}
	if os.Geteuid() == 0 {
		if st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("config owned by %d:%d, want 1000:1000 kept", st.Uid, st.Gid)
		}
		// The container's mapped ids.
		if err := WriteContainerFile(dir, "config", []byte("mapped\n"), 0o640, 100000, 100000); err != nil {
			t.Fatal(err)
		}
		if st := lstat(t, p); st.Uid != 100000 || st.Gid != 100000 {
			t.Errorf("config owned by %d:%d, want 100000:100000", st.Uid, st.Gid)
		}
	}
	// A config symlinked to a host secret is neither written through nor
	// handed over.
	secret := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(secret, []byte("root:$6$secret\n"), 0o600)
	os.Remove(p)
	os.Symlink(secret, p)
	if err := WriteContainerFile(dir, "config", []byte("x\n"), 0o640, 100000, 100000); err == nil || !strings.Contains(err.Error(), "is a symbolic link, not a regular file") {
		t.Errorf("config a symlink: %v", err)
	}
	var sst syscall.Stat_t
	syscall.Stat(secret, &sst)
	if readFile(t, secret) != "root:$6$secret\n" || sst.Uid != uint32(os.Geteuid()) {
		t.Errorf("the secret was changed: %q owner %d", readFile(t, secret), sst.Uid)
	}
	if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"config", "fstab"}) {
		t.Errorf("left in the directory: %v", names)
	}
	if err := WriteContainerFile(dir, "../x", nil, 0o644, -1, -1); err == nil {
		t.Error("a path was accepted as a name")
	}
}

// TestRootfsStageUnwritableParent: a standalone rootfs in a directory the
// user may not write to gets its stage inside.
func TestRootfsStageUnwritableParent(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestRootfsStageUnwritableParent")
		return
	}
	target := newTarget(t)
	os.Chmod(filepath.Dir(target), 0o555)
	defer os.Chmod(filepath.Dir(target), 0o755)
	s, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Discard()
	if !s.Inside() {
		t.Fatalf("stage %s beside the target", s.Dir)
	}
	if err := s.UnpackReader(t.Context(), bytes.NewReader(xzCompress(t, newTar(t).file("a", 0o644, "a").bytes(), 0)), UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, target); !reflect.DeepEqual(names, []string{"a"}) {
		t.Errorf("target holds %v", names)
	}
}

// TestEmptyTarget: undoing an Install removes the tree, read-only
// directories included, keeps lost+found and never follows a link out.
func TestEmptyTarget(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	target := filepath.Join(dir, "rootfs")
	for _, d := range []string{outside, filepath.Join(target, "lost+found"), filepath.Join(target, "etc", "ro")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	keep := filepath.Join(outside, "keep")
	if err := os.WriteFile(keep, []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "etc", "ro", "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(target, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(target, "etc", "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := EmptyTarget(target); err != nil {
		t.Fatal(err)
	}
	names, _ := os.ReadDir(target)
	if len(names) != 1 || names[0].Name() != "lost+found" {
		t.Errorf("left in the target: %v", names)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "host file" {
		t.Errorf("the file behind the link: %q, %v", b, err)
	}
}

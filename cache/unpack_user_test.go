package cache

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The unprivileged paths of the extractor are tested for real: the test
// binary runs itself as a child that is either a plain user (nobody) or
// root of a new user namespace (LXC's user mode), extracts there, and the
// parent, as root, looks at the result with the host's ids.

const childEnv = "LXC_DOWNLOAD_UNPACK_CHILD" // "USERNS TARBALL ROOTFS"

// unprivilegedTar has what an unprivileged unpack cannot fully restore.
func unprivilegedTar(t testing.TB) []byte {
	capV2 := string([]byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	return newTar(t).
		dir("./", 0o755).
		dir("./dev/", 0o755).
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "./dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, "").
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "./dev/zero", Mode: 0o666, Devmajor: 1, Devminor: 5}, "").
		add(&tar.Header{Typeflag: tar.TypeFifo, Name: "./dev/fifo", Mode: 0o620}, "").
		dir("./usr/", 0o755).
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/su", Mode: 0o4755}, "su").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/wall", Mode: 0o2755, Gid: 5}, "wall").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/far", Mode: 0o4755, Uid: 70000}, "far").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/user", Mode: 0o640, Uid: 1000, Gid: 1000}, "user").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/ping", Mode: 0o755,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capV2, "SCHILY.xattr.user.u": "u"}}, "ping").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/trusted", Mode: 0o644,
			PAXRecords: map[string]string{"SCHILY.xattr.trusted.a": "1"}}, "t1").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/trusted2", Mode: 0o644,
			PAXRecords: map[string]string{"SCHILY.xattr.trusted.b": "2"}}, "t2").
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./usr/link", Linkname: "su", Uid: 1000, Gid: 1000}, "").
		dir("./ro/", 0o555).
		file("./ro/file", 0o444, "read only").
		dir("./ro/sub/", 0o500).
		file("./ro/sub/file", 0o400, "deeper").
		bytes()
}

// runChild extracts tarball into a fresh rootfs as a child process with
// the given credentials, and returns the rootfs, the child's output and
// how to turn a uid inside the child into one of the host.
func runChild(t *testing.T, userns bool) (rootfs, output string) {
	t.Helper()
	needRoot(t)
	// A directory everyone can reach, with a copy of this test binary:
	// go test's own directories are private to root.
	dir, err := os.MkdirTemp("", "unpack-child-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "cache.test")
	copyFile(t, self, bin, 0o755)
	tarball := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(tarball, unprivilegedTar(t), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs = filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestUnpackChild$", "-test.v")
	mode := "user"
	uid := 65534
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if userns {
		mode, uid = "userns", 100000
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		}
	}
	if err := os.Chown(rootfs, uid, uid); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), childEnv+"="+mode+" "+tarball+" "+rootfs)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestUnpackChild") {
		if userns && strings.Contains(string(out), "operation not permitted") {
			t.Skipf("no user namespaces here: %v: %s", err, out)
		}
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Cleanup(func() { chmodTree(rootfs) })
	return rootfs, string(out)
}

// TestUnpackChild is the child's side; it only runs when runChild starts it.
func TestUnpackChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("the child process of TestExtractAsUser and TestExtractInUserns")
	}
	f := strings.Fields(spec)
	data, err := os.ReadFile(f[1])
	if err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	err = Extract(context.Background(), bytes.NewReader(data), f[2], UnpackOptions{Userns: f[0] == "userns", Warn: &warn})
	t.Logf("euid %d\n%s", os.Geteuid(), warn.String())
	if err != nil {
		t.Fatal(err)
	}
}

func TestExtractAsUser(t *testing.T) {
	rootfs, out := runChild(t, false)
	for _, w := range []string{"not running as root: file owners", "not running as root: device nodes", `"trusted" namespace`, `"security" namespace`} {
		if strings.Count(out, w) != 1 {
			t.Errorf("want one warning with %q:\n%s", w, out)
		}
	}
	if n := strings.Count(out, "WARNING:"); n != 4 {
		t.Errorf("%d warnings, want 4:\n%s", n, out)
	}
	checkModes(t, rootfs, map[string]uint32{
		"usr/su":   0o755, // setuid dropped: root could not be restored as its owner
		"usr/wall": 0o755,
		"usr/far":  0o755,
		"usr/user": 0o640,
		"ro":       0o555,
		"ro/sub":   0o500,
		"ro/file":  0o444,
		"dev/fifo": 0o620,
	}, 65534)
	for _, p := range []string{"dev/null", "dev/zero"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err == nil {
			t.Errorf("%s made without privilege", p)
		}
	}
	if got := getxattr(t, filepath.Join(rootfs, "usr/ping"), "user.u"); got != "u" {
		t.Errorf("user.u = %q", got)
	}
}

// TestExtractInUserns is LXC's user mode: root of a user namespace mapping
// 0-65535 to 100000-165535 on the host.
func TestExtractInUserns(t *testing.T) {
	rootfs, out := runChild(t, true)
	for _, w := range []string{"device nodes cannot be made in a user namespace", "owners outside this user namespace's id map", `"trusted" namespace`} {
		if strings.Count(out, w) != 1 {
			t.Errorf("want one warning with %q:\n%s", w, out)
		}
	}
	if n := strings.Count(out, "WARNING:"); n != 3 {
		t.Errorf("%d warnings, want 3:\n%s", n, out)
	}
	for p, w := range map[string]struct{ mode, uid, gid uint32 }{
		"usr/su":   {0o4755, 100000, 100000}, // setuid kept: its owner is the namespace's root
		"usr/wall": {0o2755, 100000, 100005},
		"usr/far":  {0o755, 100000, 100000}, // uid 70000 is outside the map
		"usr/user": {0o640, 101000, 101000},
		"usr/link": {0o777, 101000, 101000},
		"ro":       {0o555, 100000, 100000},
		"ro/sub":   {0o500, 100000, 100000},
	} {
		st := lstat(t, filepath.Join(rootfs, p))
		if st.Mode&0o7777 != w.mode || st.Uid != w.uid || st.Gid != w.gid {
			t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", p, st.Mode&0o7777, st.Uid, st.Gid, w.mode, w.uid, w.gid)
		}
	}
	// The capability was written by the namespace's root: the kernel
	// stores it as a v3 capability tied to the host uid 100000.
	capv := getxattr(t, filepath.Join(rootfs, "usr/ping"), "security.capability")
	if len(capv) != 24 || capv[3] != 3 || capv[20] != 0xa0 || capv[21] != 0x86 || capv[22] != 0x01 {
		t.Errorf("security.capability = %x, want v3 with rootid 100000", capv)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "dev/null")); err == nil {
		t.Error("dev/null made in a user namespace")
	}
}

func checkModes(t *testing.T, rootfs string, modes map[string]uint32, uid uint32) {
	t.Helper()
	for p, mode := range modes {
		st := lstat(t, filepath.Join(rootfs, p))
		if st.Mode&0o7777 != mode || st.Uid != uid {
			t.Errorf("%s: mode %o uid %d, want %o %d", p, st.Mode&0o7777, st.Uid, mode, uid)
		}
	}
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// chmodTree makes a tree removable by its owner again.
func chmodTree(root string) {
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			unix.Chmod(p, 0o755)
		}
		return nil
	})
}

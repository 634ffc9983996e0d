package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/compat"
)

var testVars = compat.Vars{Name: "c1", Path: "/var/lib/lxc/c1", Rootfs: "/var/lib/lxc/c1/rootfs", TemplateConfig: "/usr/share/lxc/config", HookDir: "/usr/share/lxc/hooks"}

// TestApplyTemplates: words are substituted in regular files, paths stay
// inside the rootfs, and an unchanged file is not written.
func TestApplyTemplates(t *testing.T) {
	rootfs := t.TempDir()
	host := t.TempDir()
	hostFile := filepath.Join(host, "secret")
	os.WriteFile(hostFile, []byte("LXC_NAME host secret\n"), 0o600)
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/hostname"), []byte("LXC_NAME\n"), 0o640)
	os.Link(filepath.Join(rootfs, "etc/hostname"), filepath.Join(rootfs, "etc/hostname.link"))
	os.WriteFile(filepath.Join(rootfs, "etc/hosts"), []byte("127.0.1.1 LXC_NAME # LXC_PATH LXC_ROOTFS\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/plain"), []byte("nothing to change\n"), 0o644)
	old := time.Unix(1700000000, 0)
	os.Chtimes(filepath.Join(rootfs, "etc/plain"), old, old)
	// An absolute symlink on the way: resolved inside the rootfs.
	os.Symlink("/etc", filepath.Join(rootfs, "conf"))
	// A directory symlink to the host (absolute, so inside the rootfs it
	// names /host-dir of the rootfs, which does not exist).
	os.Symlink(host, filepath.Join(rootfs, "escape"))
	var warn bytes.Buffer
	err := ApplyTemplates(rootfs, []string{"/etc/hostname", "etc/hosts", "/conf/plain", "/escape/secret", "/etc/missing", "/../../etc/hostname"}, testVars, &warn)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"etc/hostname":      "c1\n",
		"etc/hostname.link": "c1\n",
		"etc/hosts":         "127.0.1.1 c1 # /var/lib/lxc/c1 /var/lib/lxc/c1/rootfs\n",
	} {
		if b, _ := os.ReadFile(filepath.Join(rootfs, name)); string(b) != want {
			t.Errorf("%s = %q, want %q", name, b, want)
		}
	}
	if fi, _ := os.Stat(filepath.Join(rootfs, "etc/hostname")); fi.Mode().Perm() != 0o640 {
		t.Errorf("etc/hostname has mode %v, want 0640 kept", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(rootfs, "etc/plain")); !fi.ModTime().Equal(old) {
		t.Errorf("an unchanged file was written: mtime %v", fi.ModTime())
	}
	if b, _ := os.ReadFile(hostFile); string(b) != "LXC_NAME host secret\n" {
		t.Errorf("a file outside the rootfs was changed: %q", b)
	}
	if warn.Len() != 0 {
		t.Errorf("warnings: %s", &warn)
	}
}

// TestTemplateNotRegular: a templates entry that is a symlink, device
// node, fifo or socket is skipped with a warning and never opened (an
// inotify watch would see the open).
func TestTemplateNotRegular(t *testing.T) {
	rootfs := t.TempDir()
	host := filepath.Join(t.TempDir(), "target")
	os.WriteFile(host, []byte("LXC_NAME\n"), 0o644)
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	type node struct {
		name, kind string
		make       func(p string) error
	}
	nodes := []node{
		{"etc/link", "a symbolic link", func(p string) error { return os.Symlink(host, p) }},
		{"etc/relative-link", "a symbolic link", func(p string) error {
			os.WriteFile(filepath.Join(rootfs, "etc/real"), []byte("LXC_NAME\n"), 0o644)
			return os.Symlink("real", p)
		}},
		{"etc/fifo", "a fifo", func(p string) error { return unix.Mkfifo(p, 0o644) }},
		{"etc/socket", "a socket", func(p string) error {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Bind(fd, &unix.SockaddrUnix{Name: p})
		}},
		{"etc/dir", "a directory", func(p string) error { return os.Mkdir(p, 0o755) }},
	}
	if os.Geteuid() == 0 {
		// The image's "console": the host's /dev/null, by number.
		nodes = append(nodes, node{"etc/device", "a character device", func(p string) error {
			return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
		}})
	} else {
		t.Log("not root: no device node is made")
	}
	ino, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ino)
	var names []string
	for _, n := range nodes {
		p := filepath.Join(rootfs, n.name)
		if err := n.make(p); err != nil {
			t.Fatalf("make %s: %v", n.name, err)
		}
		names = append(names, n.name)
		if n.kind != "a symbolic link" {
			if _, err := unix.InotifyAddWatch(ino, p, unix.IN_OPEN|unix.IN_DONT_FOLLOW); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := unix.InotifyAddWatch(ino, host, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	if err := ApplyTemplates(rootfs, names, testVars, &warn); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, _ := unix.Read(ino, buf); n > 0 {
		t.Errorf("a non-regular templates entry, or what a link points to, was opened (%d bytes of inotify events)", n)
	}
	for _, n := range nodes {
		want := "WARNING: the image's template /" + n.name + " is " + n.kind + ", not a regular file; it is left alone\n"
		if !strings.Contains(warn.String(), want) {
			t.Errorf("no warning %q in:\n%s", want, &warn)
		}
	}
	if b, _ := os.ReadFile(host); string(b) != "LXC_NAME\n" {
		t.Errorf("the link's target was changed: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/real")); string(b) != "LXC_NAME\n" {
		t.Errorf("the relative link's target was changed: %q", b)
	}
}

// TestTemplateSizeCap: a file over the cap, or whose result would be, is
// left alone with a warning.
func TestTemplateSizeCap(t *testing.T) {
	rootfs := t.TempDir()
	os.WriteFile(filepath.Join(rootfs, "big"), bytes.Repeat([]byte("x"), 101), 0o644)
	os.WriteFile(filepath.Join(rootfs, "grows"), bytes.Repeat([]byte("LXC_NAME "), 10), 0o644)
	os.WriteFile(filepath.Join(rootfs, "fits"), []byte("LXC_NAME\n"), 0o644)
	vars := testVars
	vars.Name = strings.Repeat("n", 20)
	var warn bytes.Buffer
	for _, name := range []string{"big", "grows", "fits"} {
		if err := rewriteInRootfs(rootfs, name, 100, vars.SubstituteStream, &warn); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "grows")); string(b) != strings.Repeat("LXC_NAME ", 10) {
		t.Errorf("grows = %q, want it unchanged", b)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "fits")); string(b) != vars.Name+"\n" {
		t.Errorf("fits = %q", b)
	}
	for _, want := range []string{
		"WARNING: the image's template /big is 101 bytes, more than the 100 substituted in; it is left alone\n",
		"WARNING: the image's template /grows would grow beyond 100 bytes; it is left alone\n",
	} {
		if !strings.Contains(warn.String(), want) {
			t.Errorf("no warning %q in:\n%s", want, &warn)
		}
	}
}

// TestTemplateSparse: a 2 GiB sparse templates entry (it took 8.4 GiB of
// memory when it was read whole) is skipped without being read.
func TestTemplateSparse(t *testing.T) {
	rootfs := t.TempDir()
	f, err := os.Create(filepath.Join(rootfs, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2 << 30); err != nil {
		t.Skipf("cannot make a 2 GiB sparse file here: %v", err)
	}
	f.Close()
	var warn bytes.Buffer
	alloc := allocated(t, func() {
		if err := ApplyTemplates(rootfs, []string{"sparse"}, testVars, &warn); err != nil {
			t.Fatal(err)
		}
	})
	if alloc > 1<<20 {
		t.Errorf("skipping a 2 GiB sparse file allocated %d bytes", alloc)
	}
	if !strings.Contains(warn.String(), "is 2147483648 bytes, more than the 16777216 substituted in") {
		t.Errorf("warning %q", &warn)
	}
}

// TestTemplateStreams: a file just under the cap is substituted with a
// few buffers of memory, not the file's size.
func TestTemplateStreams(t *testing.T) {
	rootfs := t.TempDir()
	line := []byte("name=LXC_NAME path=LXC_PATH\n")
	content := bytes.Repeat(line, (MaxTemplateSize/2)/len(line))
	if err := os.WriteFile(filepath.Join(rootfs, "big"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	vars := testVars
	vars.Path = "/p" // the result is smaller, so it stays under the cap
	var warn bytes.Buffer
	alloc := allocated(t, func() {
		if err := ApplyTemplates(rootfs, []string{"big"}, vars, &warn); err != nil {
			t.Fatal(err)
		}
	})
	if alloc > 2<<20 {
		t.Errorf("substituting in a %d-byte file allocated %d bytes", len(content), alloc)
	}
	b, _ := os.ReadFile(filepath.Join(rootfs, "big"))
	if want := bytes.Repeat([]byte("name=c1 path=/p\n"), len(content)/len(line)); !bytes.Equal(b, want) {
		t.Errorf("big: %d bytes, want %d", len(b), len(want))
	}
	if warn.Len() != 0 {
		t.Errorf("warnings: %s", &warn)
	}
}

// allocated returns how many bytes of heap f allocated.
func allocated(t *testing.T, f func()) uint64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestRewriteKeepsOwner: a rewritten file keeps its owner.
func TestRewriteKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file another owner needs root")
	}
	rootfs := t.TempDir()
	p := filepath.Join(rootfs, "tty.conf")
	os.WriteFile(p, []byte("exec /sbin/mingetty tty1\n"), 0o600)
	os.Chown(p, 1234, 5678)
	if err := RewriteInRootfs(rootfs, "tty.conf", RewriteBytes(compat.FixMingetty), nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "exec /sbin/mingetty --nohangup tty1\n" {
		t.Errorf("tty.conf = %q", b)
	}
	var st syscall.Stat_t
	syscall.Stat(p, &st)
	if st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o600 {
		t.Errorf("owner %d:%d mode %o, want 1234:5678 0600 kept", st.Uid, st.Gid, st.Mode&0o7777)
	}
}

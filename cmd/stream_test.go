package cmd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// TestStreamedUnpack: on a slow link the rootfs is unpacked while it
// downloads: files appear before the download is complete, but in a
// private stage (mode 0700) beside the rootfs, not in it: the rootfs stays
// empty until everything has verified. The result is the same as from the
// cache.
func TestStreamedUnpack(t *testing.T) {
	img := fetchtest.DefaultImage()
	img.Rootfs = fetchtest.SyntheticRootfs(400, 3<<20, 1)
	img.BlockSize = 256 << 10
	e := newEnv(t, img)
	rootfsXZ, _ := e.srv.Get(fetchtest.ImageDir(img) + "rootfs.tar.xz")
	// About four seconds for the rootfs.
	e.srv.SetRateLimit(int64(len(rootfsXZ)) / 4)

	cmd := exec.Command(binary, append([]string{"--path=" + e.path, "--name=c1", "--rootfs=" + e.rootfs}, e.image()...)...)
	cmd.Env = e.environ()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	entry := filepath.Join(e.cacheDir(), "rootfs.tar.xz")
	overlapped := false
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			waiting = false
		case <-time.After(20 * time.Millisecond):
			if _, err := os.Stat(entry); !os.IsNotExist(err) {
				continue // downloaded
			}
			if names, _ := os.ReadDir(e.rootfs); len(names) > 0 {
				t.Fatalf("unverified files in the rootfs while it downloads: %s, ...", names[0].Name())
			}
			stages, _ := filepath.Glob(filepath.Join(e.path, ".lxc-download-stage-*"))
			for _, st := range stages {
				fi, err := os.Stat(st)
				if err != nil {
					continue
				}
				if fi.Mode().Perm() != 0o700 {
					t.Errorf("stage %s has mode %v, want 0700", st, fi.Mode().Perm())
				}
				if names, _ := os.ReadDir(st); len(names) > 0 {
					overlapped = true
				}
			}
		}
	}
	if !overlapped {
		t.Errorf("nothing was unpacked before the download was complete")
	}
	if stages, _ := filepath.Glob(filepath.Join(e.path, ".lxc-download-*")); len(stages) > 0 {
		t.Errorf("stages left behind: %v", stages)
	}
	checkRootfs(t, e.rootfs, img.Rootfs)

	// The same image unpacked from the cache gives the same tree.
	streamed := describeTree(t, e.rootfs, true)
	e.newContainer("c2")
	if r := e.run(e.image()...); r.code != 0 {
		t.Fatalf("from the cache:\n%s", r)
	}
	if fromCache := describeTree(t, e.rootfs, true); fromCache != streamed {
		t.Errorf("streamed and cached unpacks differ:\n--- streamed\n%s\n--- from the cache\n%s", streamed, fromCache)
	}
}

// TestStreamAbandonedWarnsOnce: a streamed unpack that is given up (the
// server ignored Range after a drop, so the download started over) is
// followed by an unpack from the cache; the warnings both unpacks raise
// are said once. Owners cannot be restored by a user other than root, so
// the run is made as nobody.
func TestStreamAbandonedWarnsOnce(t *testing.T) {
	_, xz := bigRootfs(t)
	e := newBigEnv(t)
	if os.Geteuid() == 0 {
		e.uid = 65534
		for _, p := range []string{e.srv.CAFile, e.srv.KeyFile, e.rootfs} {
			openParents(p)
		}
		if err := os.MkdirAll(e.cache, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{e.path, e.rootfs, e.cache, filepath.Join(e.path, "config")} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.srv.DropAfter(defaultRootfsPath, int64(len(xz))*3/4, 1)
	// The first request uses up one (it asks for no range).
	e.srv.IgnoreRange(defaultRootfsPath, 2)
	r := e.run(e.image()...)
	if r.code != 0 {
		t.Fatalf("create:\n%s", r)
	}
	if reqs := e.srv.RequestsFor(defaultRootfsPath); len(reqs) != 2 || reqs[1].Status != 200 {
		t.Fatalf("want a dropped request, then the whole file again:\n%s", logOf(reqs))
	}
	const owners = "WARNING: not running as root: file owners are not restored"
	if n := strings.Count(r.stderr, owners); n != 1 {
		t.Errorf("%q said %d times, want once:\n%s\n%q", owners, n, r, r.stderr)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "WARNING:") {
			if seen[l] {
				t.Errorf("said twice: %s", l)
			}
			seen[l] = true
		}
	}
}

package cmd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// TestStreamedUnpack: on a slow link the rootfs is unpacked while it
// downloads (issue 5): files appear in the rootfs before the download is
// complete, and the result is the same as from the cache.
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
			names, _ := os.ReadDir(e.rootfs)
			if _, err := os.Stat(entry); len(names) > 0 && os.IsNotExist(err) {
				overlapped = true
			}
		}
	}
	if !overlapped {
		t.Errorf("nothing was unpacked before the download was complete")
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

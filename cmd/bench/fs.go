package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Every case runs on filesystems of its own, made for the run and
// loop-mounted (as root): a fresh ext4 (with its journal, as mkfs makes
// it) for the xz path, the copy and the cold case, and an xfs with
// reflinks for the clone that shares blocks. A shared host's filesystem
// says more about its neighbours than about us: on a journal-less ext4,
// each inode allocated costs a scan past every inode deleted in the last
// minutes (ext4's recently_deleted), so a run's time there follows how
// many files the previous runs removed. -fs host runs everything in the
// -cache directory instead, and has no reflink case.

// fsImageSize is the size of each loop-mounted filesystem: caches of the
// image for each side, the copies, and the trees of a round.
const fsImageSize = 8 << 30

// mount is a filesystem the bench made and mounted.
type mount struct {
	kind  string // "ext4", "xfs", or "host"
	dir   string // where it is mounted
	image string // its image file; "" for host
}

// makeFS makes a kind filesystem in an image file in dir and mounts it
// at dir/kind.
func makeFS(dir, kind string, log io.Writer) (*mount, error) {
	image := filepath.Join(dir, kind+".img")
	mnt := filepath.Join(dir, kind)
	unmount(mnt)
	os.Remove(image)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(fsImageSize)
	f.Close()
	if err != nil {
		os.Remove(image)
		return nil, err
	}
	var mkfs *exec.Cmd
	switch kind {
	case "ext4":
		// Inode tables and journal written now, not by a kernel thread
		// in the background of the runs.
		mkfs = exec.Command("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image)
	case "xfs":
		mkfs = exec.Command("mkfs.xfs", "-q", "-f", "-m", "reflink=1", image)
	default:
		return nil, fmt.Errorf("unknown filesystem %q", kind)
	}
	if out, err := mkfs.CombinedOutput(); err != nil {
		os.Remove(image)
		return nil, fmt.Errorf("%s: %v: %s", mkfs.Path, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("mount", "-o", "loop", image, mnt).CombinedOutput(); err != nil {
		os.Remove(image)
		return nil, fmt.Errorf("mount %s: %v: %s", image, err, strings.TrimSpace(string(out)))
	}
	fmt.Fprintf(log, "bench: %s on %s (loop-mounted %s)\n", kind, mnt, image)
	return &mount{kind: kind, dir: mnt, image: image}, nil
}

// close unmounts and removes what makeFS made.
func (m *mount) close() {
	if m == nil || m.image == "" {
		return
	}
	unmount(m.dir)
	os.Remove(m.image)
	os.Remove(m.dir)
}

func unmount(dir string) {
	if err := unix.Unmount(dir, 0); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		unix.Unmount(dir, unix.MNT_DETACH)
	}
}

// path is name on the filesystem.
func (m *mount) path(name string) string { return filepath.Join(m.dir, name) }

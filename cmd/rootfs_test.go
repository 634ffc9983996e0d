package cmd_test

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// checkRootfs compares the unpacked rootfs with the files the image was made
// of: type, permission bits (setuid and sticky too), numeric owner, link
// targets, device numbers, hard links and xattrs. Only root can restore
// them all; as another user the test is skipped from here on.
func checkRootfs(t *testing.T, rootfs string, files []fetchtest.File) {
	t.Helper()
	root := os.Geteuid() == 0
	if !root {
		t.Skip("needs root to compare the unpacked rootfs with the image: as another user the unpacker drops setuid/setgid bits and owners, and skips device nodes (with warnings, which the callers' checks would also count)")
	}
	for _, f := range files {
		name := strings.TrimPrefix(strings.TrimPrefix(f.Name, "./"), "/")
		if name == "" {
			continue
		}
		p := filepath.Join(rootfs, name)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if (f.Type == tar.TypeChar || f.Type == tar.TypeBlock) && !root {
				continue
			}
			t.Errorf("%s: %v", name, err)
			continue
		}
		typ := st.Mode & unix.S_IFMT
		want := map[byte]uint32{
			tar.TypeReg: unix.S_IFREG, 0: unix.S_IFREG, tar.TypeDir: unix.S_IFDIR,
			tar.TypeSymlink: unix.S_IFLNK, tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK,
			tar.TypeFifo: unix.S_IFIFO, tar.TypeLink: unix.S_IFREG,
		}[f.Type]
		if typ != want {
			t.Errorf("%s: type %o, want %o", name, typ, want)
			continue
		}
		if f.Type != tar.TypeSymlink && f.Type != tar.TypeLink && f.Mode != 0 {
			if got := int64(st.Mode & 0o7777); got != f.Mode&0o7777 && name != "dev/pts" {
				t.Errorf("%s: mode %o, want %o", name, got, f.Mode&0o7777)
			}
		}
		if root && f.Type != tar.TypeLink && (int(st.Uid) != f.Uid || int(st.Gid) != f.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, f.Uid, f.Gid)
		}
		switch f.Type {
		case tar.TypeSymlink:
			if got, _ := os.Readlink(p); got != f.Linkname {
				t.Errorf("%s: symlink to %q, want %q", name, got, f.Linkname)
			}
		case tar.TypeLink:
			var target unix.Stat_t
			if err := unix.Lstat(filepath.Join(rootfs, strings.TrimPrefix(f.Linkname, "./")), &target); err != nil || target.Ino != st.Ino {
				t.Errorf("%s: not a hard link of %s", name, f.Linkname)
			}
		case tar.TypeChar, tar.TypeBlock:
			if int64(unix.Major(uint64(st.Rdev))) != f.Devmajor || int64(unix.Minor(uint64(st.Rdev))) != f.Devminor {
				t.Errorf("%s: device %d:%d, want %d:%d", name, unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), f.Devmajor, f.Devminor)
			}
		case tar.TypeReg, 0:
			if !strings.Contains(f.Body, "LXC_") {
				if b, _ := os.ReadFile(p); string(b) != f.Body {
					t.Errorf("%s: content %q, want %q", name, b, f.Body)
				}
			}
		}
		for k, v := range f.Xattrs {
			if !root && !strings.HasPrefix(k, "user.") {
				continue
			}
			buf := make([]byte, 4096)
			n, err := unix.Lgetxattr(p, k, buf)
			if err != nil || string(buf[:n]) != v {
				t.Errorf("%s: xattr %s = %q (%v), want %q", name, k, buf[:max(n, 0)], err, v)
			}
		}
	}
}

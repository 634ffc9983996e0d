package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lxc/lxc-download/compat"
)

// treeOf lists everything under root (names, modes and contents of
// regular files), to tell whether something changed there.
func treeOf(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			out = append(out, p+": "+err.Error())
			return nil
		}
		fi, _ := d.Info()
		line := p + " " + fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	})
	return out
}

// everyOperation runs every operation of the store on testKey (and, with
// whole, those of the whole store) and returns their errors by name.
func everyOperation(t *testing.T, c Cache, whole bool) map[string]error {
	errs := map[string]error{}
	_, errs["Lookup"] = c.Lookup(testKey)
	unlock, err := c.Lock(t.Context(), testKey)
	errs["Lock"] = err
	if err == nil {
		unlock()
	}
	st, err := c.Stage(testKey)
	errs["Stage"] = err
	if err == nil {
		st.Abort()
	}
	errs["Flush"] = c.Flush(testKey)
	_, errs["Seen"] = c.Seen(testServer, testKey)
	errs["RecordSeen"] = c.RecordSeen(testServer, testKey, Seen{Build: "20261120_05:24"})
	if whole {
		// These concern the store as a whole: its root and download/.
		errs["Writable"] = c.Writable()
		errs["Chown"] = c.Chown(os.Geteuid(), -1)
	}
	return errs
}

// TestUntrustedStore: a store that another user owns or can write, or
// that leads through a symbolic link, is neither used nor written: every
// operation fails with ErrUntrusted, saying why.
func TestUntrustedStore(t *testing.T) {
	type tc struct {
		name  string
		plant func(t *testing.T, root string)
		why   string
		whole bool // the root or download/: Writable and Chown fail too
	}
	cases := []tc{
		{"root 1777", func(t *testing.T, root string) {
			os.Chmod(root, 0o777|os.ModeSticky)
			if os.Geteuid() == 0 {
				os.Chown(root, 65534, 65534) // planted by another user
			}
		}, "root", true},
		{"group-writable release", func(t *testing.T, root string) {
			os.Chmod(filepath.Join(root, "download/debian/bookworm"), 0o775)
		}, "download/debian/bookworm is writable by its group (mode 0775)", false},
		{"arch a symlink", func(t *testing.T, root string) {
			arch := filepath.Join(root, "download/debian/bookworm/amd64")
			host := filepath.Join(filepath.Dir(root), "host")
			os.Rename(arch, host)
			os.Symlink(host, arch)
		}, "download/debian/bookworm/amd64 is a symbolic link", false},
		{"download a symlink", func(t *testing.T, root string) {
			dl := filepath.Join(root, "download")
			host := filepath.Join(filepath.Dir(root), "host")
			os.Rename(dl, host)
			os.Symlink(host, dl)
		}, "download is a symbolic link", true},
	}
	if os.Geteuid() == 0 {
		cases = append(cases,
			tc{"dist owned by another user", func(t *testing.T, root string) {
				os.Chown(filepath.Join(root, "download/debian"), 65534, 65534)
			}, "download/debian is owned by uid 65534, not by root or this user (uid 0)", false},
			tc{"root a symlink of another user", func(t *testing.T, root string) {
				real := root + ".real"
				os.Rename(root, real)
				os.Symlink(real, root)
				os.Lchown(root, 65534, 65534)
			}, "is a symbolic link owned by uid 65534", true},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "cache")
			c := Cache{Root: root}
			storeImage(t, c, testKey, newTestImage(t, "b1", 100, nil))
			os.Remove(filepath.Join(root, "download/debian/bookworm/amd64/.default.lock"))
			tc.plant(t, root)
			before := treeOf(t, filepath.Dir(root))
			for op, err := range everyOperation(t, c, tc.whole) {
				if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.why) {
					t.Errorf("%s = %v, want ErrUntrusted with %q", op, err, tc.why)
				}
			}
			if after := treeOf(t, filepath.Dir(root)); !reflect.DeepEqual(before, after) {
				t.Errorf("the untrusted store changed:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// TestPlantedSymlinks: symbolic links planted at the store's own names
// (stage, lock, entry, the trash names) are never followed: whatever the
// store does, the host files they point to stay as they are, and no file
// appears in a host directory.
func TestPlantedSymlinks(t *testing.T) {
	for _, name := range []string{".default.stage", ".default.lock", ".default.lock dangling", "default", ".default.tmp", ".default.new", ".default.old", ".default.seen.tmp"} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			hostDir := filepath.Join(base, "host")
			os.MkdirAll(filepath.Join(hostDir, "sub"), 0o755)
			os.WriteFile(filepath.Join(hostDir, "passwd"), []byte("root:x:0:0\n"), 0o644)
			os.WriteFile(filepath.Join(hostDir, "sub/shadow"), []byte("root:secret\n"), 0o600)
			empty := filepath.Join(base, "empty")
			os.Mkdir(empty, 0o755)
			c := Cache{Root: filepath.Join(base, "cache")}
			a := newTestImage(t, "a", 100, nil)
			storeImage(t, c, testKey, a)
			parent := filepath.Join(c.Root, "download/debian/bookworm/amd64")
			link := filepath.Join(parent, strings.TrimSuffix(name, " dangling"))
			os.RemoveAll(link)
			switch {
			case strings.HasSuffix(name, "dangling"):
				os.Symlink(filepath.Join(empty, "created"), link)
			case name == ".default.lock":
				os.Symlink(filepath.Join(hostDir, "passwd"), link)
			default:
				os.Symlink(hostDir, link)
			}
			before := treeOf(t, hostDir)
			var warn bytes.Buffer
			c.Warn = &warn
			// A whole run: lock, look up, download, commit, seen, flush.
			unlock, err := c.Lock(t.Context(), testKey)
			if err != nil {
				t.Fatal(err)
			}
			e, err := c.Lookup(testKey)
			if err != nil {
				t.Fatal(err)
			}
			if name == "default" && e != nil {
				t.Errorf("an entry symlink was used: %+v", e)
			}
			b := newTestImage(t, "b", 100, nil)
			checkEntry(t, storeLocked(t, c, testKey, b), b)
			if err := c.RecordSeen(testServer, testKey, Seen{Build: "20261120_05:24"}); err != nil {
				t.Fatal(err)
			}
			unlock()
			if err := c.Flush(testKey); err != nil {
				t.Fatal(err)
			}
			if after := treeOf(t, hostDir); !reflect.DeepEqual(before, after) {
				t.Errorf("host files changed:\nbefore %q\nafter  %q", before, after)
			}
			if names := dirNames(t, empty); len(names) != 0 {
				t.Errorf("files created in a host directory: %v", names)
			}
		})
	}
}

// TestTamperedRootfs: a cached rootfs changed after it was stored is
// caught while it is read for unpacking, and nothing of it reaches the
// target; removing the record does not make it trusted.
func TestTamperedRootfs(t *testing.T) {
	var warn bytes.Buffer
	c := Cache{Root: t.TempDir(), Warn: &warn}
	a := newTestImage(t, "a", 3000, nil)
	e := storeImage(t, c, testKey, a)
	// Another valid image of the same size, with something evil in it.
	var evil testImage
	for i := 0; len(evil.rootfs) != len(a.rootfs); i++ {
		if i == 100 {
			t.Fatalf("no evil tarball of %d bytes", len(a.rootfs))
		}
		evil = newTestImage(t, fmt.Sprint("evil", i), 3000, nil)
	}
	if err := os.WriteFile(e.Rootfs(), evil.rootfs, 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := c.Lookup(testKey)
	if err != nil || e == nil {
		t.Fatalf("Lookup = %v, %v (the size is unchanged, so only reading tells)", e, err)
	}
	r, err := e.OpenRootfs()
	if err != nil {
		t.Fatal(err)
	}
	target := newTarget(t)
	s, err := NewRootfsStage(target)
	if err != nil {
		t.Fatal(err)
	}
	err = s.UnpackReader(t.Context(), r, UnpackOptions{})
	r.Close()
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "does not match the SHA256 recorded when it was stored") {
		t.Fatalf("unpacking the tampered rootfs: %v", err)
	}
	s.Discard()
	if names := dirNames(t, target); len(names) != 0 {
		t.Errorf("the target holds %v", names)
	}
	if names := dirNames(t, filepath.Dir(target)); !reflect.DeepEqual(names, []string{"rootfs"}) {
		t.Errorf("beside the target: %v", names)
	}

	// A byte changed: the same.
	e = storeImage(t, c, testKey, a)
	f, _ := os.OpenFile(e.Rootfs(), os.O_WRONLY, 0)
	f.WriteAt([]byte{'X'}, int64(len(a.rootfs)/2))
	f.Close()
	r, err = e.OpenRootfs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, ErrMismatch) {
		t.Errorf("reading a changed rootfs: %v", err)
	}
	r.Close()

	// Truncated or grown: at open, or as soon as it is read past its size.
	e = storeImage(t, c, testKey, a)
	os.Truncate(e.Rootfs(), int64(len(a.rootfs)-1))
	if _, err := e.OpenRootfs(); !errors.Is(err, ErrMismatch) {
		t.Errorf("opening a truncated rootfs: %v", err)
	}
	e = storeImage(t, c, testKey, a)
	if r, err = e.OpenRootfs(); err != nil {
		t.Fatal(err)
	}
	f, _ = os.OpenFile(e.Rootfs(), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("more"))
	f.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "grown beyond") {
		t.Errorf("reading a rootfs that grew: %v", err)
	}
	r.Close()

	// The tampered entry without its record is not used at all.
	e = storeImage(t, c, testKey, a)
	os.WriteFile(e.Rootfs(), evil.rootfs, 0o644)
	os.Remove(filepath.Join(e.Dir, recordName))
	warn.Reset()
	if e, err := c.Lookup(testKey); e != nil || err != nil {
		t.Errorf("Lookup of an entry without its record = %+v, %v", e, err)
	}
	if !strings.Contains(warn.String(), "it has no record of what it was verified with") {
		t.Errorf("warning %q", &warn)
	}
}

// TestTrustRoundTrip: what the caller gives CommitWith comes back from
// Lookup; an unverified download is recorded as such.
func TestTrustRoundTrip(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	img := newTestImage(t, "a", 100, nil)
	tr := img.trust()
	tr.Signatures = map[string][]byte{"rootfs.tar.xz": []byte("sig of rootfs"), "meta.tar.xz": []byte("sig of meta")}
	unlock, _ := c.Lock(t.Context(), testKey)
	st, _ := c.Stage(testKey)
	img.writeTo(t, st.Dir)
	if _, err := st.CommitWith(img.build, compat.System, tr); err != nil {
		t.Fatal(err)
	}
	unlock()
	e, err := c.Lookup(testKey)
	if err != nil || e == nil {
		t.Fatal(e, err)
	}
	if !reflect.DeepEqual(e.Trust, tr) {
		t.Errorf("Trust = %+v, want %+v", e.Trust, tr)
	}
	st, _ = c.Stage(testKey)
	img.writeTo(t, st.Dir)
	if _, err := st.CommitWith(img.build, compat.System, Trust{Verified: true}); err == nil || !strings.Contains(err.Error(), "verified, but against no key") {
		t.Errorf("CommitWith verified without material = %v", err)
	}
	if _, err := st.Commit(img.build, compat.System); err != nil {
		t.Fatal(err)
	}
	if e, _ := c.Lookup(testKey); e == nil || e.Trust.Verified {
		t.Errorf("an unverified download: %+v", e)
	}
}

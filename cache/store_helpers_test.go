package cache

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/lxc/lxc-download/compat"
)

// testKey is the image most tests store.
var testKey = Key{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default"}

// testImage is what a downloader would have verified and left in a stage.
type testImage struct {
	build  string
	rootfs []byte            // rootfs.tar.xz
	meta   []byte            // meta.tar.xz
	files  map[string]string // the meta tarball's files
}

// xzTarball makes an xz-compressed tarball of plain files.
func xzTarball(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	xw, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(xw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		body := files[n]
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newTestImage builds an image whose config names its build, with a rootfs
// holding rootfsSize bytes of incompressible data (so the tarball takes
// about that much disk).
func newTestImage(t testing.TB, build string, rootfsSize int, meta map[string]string) testImage {
	t.Helper()
	files := map[string]string{
		"config":    "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\n# build " + build + "\n",
		"expiry":    "4102444800\n", // 2100-01-01
		"templates": "/etc/hostname\n",
	}
	for n, v := range meta {
		if v == "" {
			delete(files, n)
		} else {
			files[n] = v
		}
	}
	return testImage{
		build:  build,
		files:  files,
		meta:   xzTarball(t, files),
		rootfs: testRootfs(t, build, rootfsSize),
	}
}

// rootfsMemo keeps the rootfs tarballs made so far: compressing noise is
// slow, and tests use the same ones again.
var rootfsMemo sync.Map

// testRootfs is an xz tarball holding size bytes of noise derived from
// build, so that it takes about that much disk.
func testRootfs(t testing.TB, build string, size int) []byte {
	key := fmt.Sprint(build, size)
	if b, ok := rootfsMemo.Load(key); ok {
		return b.([]byte)
	}
	noise := make([]byte, size)
	r := rand.NewChaCha8([32]byte([]byte(build + "................................")[:32]))
	r.Read(noise)
	b := xzTarball(t, map[string]string{"./etc/hostname": "LXC_NAME\n", "./noise": string(noise)})
	rootfsMemo.Store(key, b)
	return b
}

// writeTo puts the image's tarballs into dir, as a downloader does.
func (img testImage) writeTo(t testing.TB, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "rootfs.tar.xz"), img.rootfs, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "meta.tar.xz"), img.meta, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (img testImage) sum() string {
	s := sha256.Sum256(img.rootfs)
	return hex.EncodeToString(s[:])
}

// storeImage downloads img into the cache the way cmd does: lock, stage, commit.
func storeImage(t testing.TB, c Cache, k Key, img testImage) *Entry {
	t.Helper()
	unlock, err := c.Lock(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	return storeLocked(t, c, k, img)
}

// storeLocked is storeImage with the lock already held.
func storeLocked(t testing.TB, c Cache, k Key, img testImage) *Entry {
	t.Helper()
	st, err := c.Stage(k)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	img.writeTo(t, st.Dir)
	e, err := st.CommitWith(img.build, compat.System, img.trust())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// trust is what a downloader would pass to CommitWith: the cache does not
// check signatures, so any bytes do.
func (img testImage) trust() Trust {
	t := fakeTrust(img.build)
	t.SHA256SUMS = []byte(img.sum() + "  rootfs.tar.xz\n")
	return t
}

// fakeTrust is trust material for build that no one could verify, which
// the cache does not try to.
func fakeTrust(build string) Trust {
	return Trust{
		Verified:      true,
		Keys:          []string{"602F567663E593BCBD14F338C638974D64792D67"},
		SHA256SUMS:    []byte("0000  rootfs.tar.xz\n"),
		SHA256SUMSSig: []byte("-----BEGIN PGP SIGNATURE-----\n" + build + "\n-----END PGP SIGNATURE-----\n"),
	}
}

// checkEntry fails unless e is a complete, intact copy of img.
func checkEntry(t testing.TB, e *Entry, img testImage) {
	t.Helper()
	if e == nil {
		t.Fatalf("no entry, want build %s", img.build)
	}
	if e.BuildID != img.build {
		t.Fatalf("entry has build %q, want %q", e.BuildID, img.build)
	}
	b, err := os.ReadFile(e.Rootfs())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, img.rootfs) {
		t.Fatalf("entry's rootfs.tar.xz differs from build %s's", img.build)
	}
	r, err := e.OpenRootfs()
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(b, img.rootfs) {
		t.Fatalf("OpenRootfs of build %s: %d bytes, %v", img.build, len(b), err)
	}
	if !bytes.Equal(e.MetaTarball(), img.meta) {
		t.Fatalf("entry's meta.tar.xz differs from build %s's", img.build)
	}
	if b, err := os.ReadFile(filepath.Join(e.Dir, "meta.tar.xz")); err != nil || !bytes.Equal(b, img.meta) {
		t.Fatalf("entry keeps no meta.tar.xz of build %s: %v", img.build, err)
	}
	for n, want := range img.files {
		if got := e.MetaFiles()[n]; string(got) != want {
			t.Fatalf("MetaFiles()[%s] = %q, want %q", n, got, want)
		}
	}
	for n, want := range img.files {
		got, err := os.ReadFile(filepath.Join(e.Dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("entry's %s is %q, want %q (build %s)", n, got, want, img.build)
		}
	}
	if b, err := os.ReadFile(filepath.Join(e.Dir, "build_id")); err != nil || string(b) != img.build+"\n" {
		t.Fatalf("build_id %q, %v", b, err)
	}
}

// dirNames returns the names in dir, sorted.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// exists reports whether path exists, as anything.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

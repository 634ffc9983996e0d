package cmd_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The unpacked cache (--cache-unpacked): a container cloned from the
// cache's unpacked copy is the one the tarball unpacks to, and a copy that
// cannot be used (tampered with, on another filesystem) is warned about
// and the tarball unpacked instead.

const clonedLine = "Cloned the rootfs from the unpacked copy"

// unpackedDir is the cache entry's unpacked copy.
func (e *env) unpackedDir() string { return filepath.Join(e.cacheDir(), ".unpacked") }

// create makes a new container name with args (and the image's), and
// returns the run's result and its rootfs's description.
func (e *env) create(name string, args ...string) (result, string) {
	e.t.Helper()
	// Names of one length: the templated files hold the name.
	e.newContainer((name + "__________")[:10])
	r := e.run(e.image(append(args, "--verbose")...)...)
	if r.code != 0 {
		e.t.Fatalf("create %s %q:\n%s", name, args, r)
	}
	return r, describeTree(e.t, e.rootfs, true)
}

// bigObject is the copy's largest file, which a tamperer changes.
func (e *env) bigObject() string {
	e.t.Helper()
	var best string
	var size int64 = -1
	names, _ := os.ReadDir(e.unpackedDir())
	for _, n := range names {
		fi, err := n.Info()
		if err == nil && n.Name() != "manifest" && n.Name() != "identity" && fi.Size() > size {
			best, size = filepath.Join(e.unpackedDir(), n.Name()), fi.Size()
		}
	}
	if best == "" {
		e.t.Fatal("the unpacked copy holds no file")
	}
	return best
}

// TestUnpackedCache: --cache-unpacked keeps a copy after the first
// (verified) unpack and clones the next containers from it; each is the
// tree the tarball unpacks to, device nodes, owners, modes and xattrs
// included. A tampered copy is warned about once, the tarball is unpacked
// instead (the same tree), and the copy is made again.
func TestUnpackedCache(t *testing.T) {
	needRoot(t, "only root keeps unpacked copies (owners, devices)")
	e := newEnv(t)
	// The reference: the xz path, no copy.
	r, fromXZ := e.create("xz", "--cache-unpacked=false")
	if strings.Contains(r.stdout, clonedLine) || r.stderr != "" {
		t.Fatalf("xz path:\n%s", r)
	}
	if _, err := os.Stat(e.unpackedDir()); !os.IsNotExist(err) {
		t.Fatalf("--cache-unpacked=false kept a copy: %v", err)
	}
	// By default (the test's filesystem has no reflinks) no copy either.
	e.create("auto")
	if _, err := os.Stat(e.unpackedDir()); !os.IsNotExist(err) {
		t.Fatalf("the default kept a copy on a filesystem without reflinks: %v", err)
	}
	// --cache-unpacked: this run unpacks the tarball and keeps a copy.
	r, tree := e.create("keep", "--cache-unpacked")
	if strings.Contains(r.stdout, clonedLine) || r.stderr != "" || !strings.Contains(r.stdout, "Kept an unpacked copy") {
		t.Fatalf("first run with --cache-unpacked:\n%s", r)
	}
	if tree != fromXZ {
		t.Errorf("keeping a copy changed the rootfs:\n--- xz\n%s\n--- keep\n%s", fromXZ, tree)
	}
	if fi, err := os.Lstat(e.unpackedDir()); err != nil || fi.Mode() != os.ModeDir|0o700 {
		t.Fatalf("unpacked copy: %v %v", fi, err)
	}
	// The next clone from it, without a word but --verbose's.
	r, tree = e.create("clone", "--cache-unpacked")
	if !strings.Contains(r.stdout, clonedLine) || r.stderr != "" {
		t.Fatalf("clone:\n%s", r)
	}
	if tree != fromXZ {
		t.Errorf("cloned rootfs differs from the unpacked one:\n--- xz\n%s\n--- clone\n%s", fromXZ, tree)
	}
	// The default uses a copy that is there.
	if r, tree = e.create("clone-auto"); !strings.Contains(r.stdout, clonedLine) || tree != fromXZ {
		t.Errorf("default run with a copy:\n%s", r)
	}

	// Tampered with: one warning, the tarball instead, the copy made
	// again.
	obj := e.bigObject()
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(obj, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r, tree = e.create("tampered", "--cache-unpacked")
	if n := strings.Count(r.stderr, "WARNING:"); n != 1 || !strings.Contains(r.stderr, "Not using the unpacked copy") ||
		!strings.Contains(r.stderr, "does not match its SHA256") {
		t.Errorf("tampered copy: want one warning about it:\n%s", r)
	}
	if tree != fromXZ {
		t.Errorf("rootfs after a tampered copy differs:\n--- xz\n%s\n--- got\n%s", fromXZ, tree)
	}
	if r, tree = e.create("remade", "--cache-unpacked"); !strings.Contains(r.stdout, clonedLine) || r.stderr != "" || tree != fromXZ {
		t.Errorf("after the copy was made again:\n%s", r)
	}

	// The manifest tampered with: refused before anything is cloned.
	manifest := filepath.Join(e.unpackedDir(), "manifest")
	m, _ := os.ReadFile(manifest)
	os.WriteFile(manifest, []byte(strings.Replace(string(m), " 755 ", " 777 ", 1)), 0o600)
	r, tree = e.create("manifest", "--cache-unpacked")
	if !strings.Contains(r.stderr, "manifest does not match the SHA256 recorded") || strings.Contains(r.stdout, clonedLine) || tree != fromXZ {
		t.Errorf("tampered manifest:\n%s", r)
	}
	// A copy whose files others may read is not used either.
	os.Chmod(e.bigObject(), 0o644)
	if r, tree = e.create("open", "--cache-unpacked"); !strings.Contains(r.stderr, "is open to others") || tree != fromXZ {
		t.Errorf("copy open to others:\n%s", r)
	}

	// --cache-unpacked=false neither uses nor keeps one.
	r, tree = e.create("off", "--cache-unpacked=false")
	if strings.Contains(r.stdout, clonedLine) || r.stderr != "" || tree != fromXZ {
		t.Errorf("--cache-unpacked=false:\n%s", r)
	}
}

// TestUnpackedCacheList: cache list shows a copy's disk use, verify
// checks its files, prune removes damaged copies and, with --unpacked,
// every copy.
func TestUnpackedCacheList(t *testing.T) {
	needRoot(t, "only root keeps unpacked copies")
	e := newEnv(t)
	e.create("keep", "--cache-unpacked")
	type unpacked struct {
		Files     int
		Size      int64
		Disk      int64
		Reflinked bool
		Leftover  bool
		Problem   string
	}
	var got []struct {
		Status, Problem, Action string
		Unpacked                *unpacked
	}
	listJSON := func(args ...string) result {
		t.Helper()
		r := e.runRaw(append(append([]string{"cache"}, args...), "--format", "json")...)
		got = nil
		if err := jsonUnmarshal(r.stdout, &got); err != nil || len(got) != 1 {
			t.Fatalf("cache %q: %v\n%s", args, err, r)
		}
		return r
	}
	listJSON("list")
	if u := got[0].Unpacked; u == nil || u.Files == 0 || u.Size == 0 || u.Disk == 0 || u.Leftover || u.Problem != "" {
		t.Fatalf("cache list: %+v", u)
	}
	if r := e.runRaw("cache", "list"); !strings.Contains(r.stdout, "UNPACKED") || !strings.Contains(r.stdout, " MB ") {
		t.Errorf("cache list:\n%s", r)
	}
	if r := e.runRaw("cache", "verify", "--keyring", e.srv.KeyFile); r.code != 0 {
		t.Errorf("cache verify:\n%s", r)
	}
	obj := e.bigObject()
	b, _ := os.ReadFile(obj)
	b[0] ^= 1
	os.WriteFile(obj, b, 0o600)
	r := listJSON("verify", "--keyring", e.srv.KeyFile)
	if r.code == 0 || got[0].Status != "damaged" || !strings.Contains(got[0].Problem, "unpacked copy") {
		t.Errorf("verify of a tampered copy: %+v\n%s", got, r)
	}
	// prune leaves a copy that passes its cheap checks, removes it with
	// --unpacked, and keeps the image.
	listJSON("prune")
	if got[0].Action != "kept" {
		t.Errorf("prune: %+v", got)
	}
	listJSON("prune", "--unpacked", "--dry-run")
	if got[0].Action != "would remove unpacked copy" || !exists(e.unpackedDir()) {
		t.Errorf("prune --unpacked --dry-run: %+v", got)
	}
	listJSON("prune", "--unpacked")
	if got[0].Action != "removed unpacked copy" || exists(e.unpackedDir()) || !exists(filepath.Join(e.cacheDir(), "rootfs.tar.xz")) {
		t.Errorf("prune --unpacked: %+v", got)
	}
	if listJSON("list"); got[0].Unpacked != nil || got[0].Status != "verified" {
		t.Errorf("list after prune --unpacked: %+v", got[0])
	}
	// A leftover copy (no record names it) is pruned without asking.
	e.create("again", "--cache-unpacked")
	if err := os.Rename(e.unpackedDir(), e.unpackedDir()+".tmp"); err != nil {
		t.Fatal(err)
	}
	listJSON("list")
	if u := got[0].Unpacked; u == nil || !u.Leftover {
		t.Errorf("list of a leftover copy: %+v", got[0])
	}
	listJSON("prune")
	if got[0].Action != "removed unpacked copy" || exists(e.unpackedDir()+".tmp") {
		t.Errorf("prune of a leftover copy: %+v", got)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestUnpackedOtherFilesystem: with the cache on another filesystem than
// the rootfs, no copy is kept (a warning with --cache-unpacked), and a
// copy that is there is not used (a warning, and the tarball instead).
func TestUnpackedOtherFilesystem(t *testing.T) {
	needRoot(t, "mounts a tmpfs")
	e := newEnv(t)
	mountTmpfs(t, e.cache, "256m")
	r, fromXZ := e.create("far", "--cache-unpacked")
	if !strings.Contains(r.stderr, "No unpacked copy of the image is kept in the cache: the cache and the rootfs are on different filesystems") {
		t.Errorf("--cache-unpacked across filesystems:\n%s", r)
	}
	if exists(e.unpackedDir()) {
		t.Fatal("a copy was kept across filesystems")
	}
	// A container on the cache's filesystem makes a copy there...
	near := &env{t: t, srv: e.srv, dir: filepath.Join(e.cache, "containers"), cache: e.cache}
	if r, tree := near.create("near", "--cache-unpacked"); r.stderr != "" || !exists(near.unpackedDir()) || tree != fromXZ {
		t.Fatalf("on the cache's filesystem:\n%s", r)
	}
	// ... which a container elsewhere does not use.
	r, tree := e.create("far2", "--cache-unpacked")
	if !strings.Contains(r.stderr, "Not using the unpacked copy") || !strings.Contains(r.stderr, "different filesystems") ||
		strings.Contains(r.stdout, clonedLine) || tree != fromXZ {
		t.Errorf("copy on another filesystem:\n%s", r)
	}
	// (And the default says nothing about it, and keeps it.)
	if r, _ := e.create("far3"); strings.Count(r.stderr, "WARNING") > 1 || !exists(near.unpackedDir()) {
		t.Errorf("default across filesystems:\n%s", r)
	}
}

// TestUnpackedReflinkDefault: on a filesystem with reflinks (xfs), the
// default keeps a copy that shares its blocks, and clones from it.
func TestUnpackedReflinkDefault(t *testing.T) {
	needRoot(t, "loop-mounts an xfs")
	need(t, "mkfs.xfs", have("mkfs.xfs"))
	dir := t.TempDir()
	img := filepath.Join(dir, "xfs.img")
	os.WriteFile(img, nil, 0o600)
	os.Truncate(img, 512<<20)
	if out, err := exec.Command("mkfs.xfs", "-q", "-f", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.xfs: %v: %s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("loop mount: %v: %s", err, out)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	e := newEnv(t)
	e.dir, e.cache = mnt, filepath.Join(mnt, "cache")
	r, fromXZ := e.create("first")
	if r.stderr != "" || !exists(e.unpackedDir()) || !strings.Contains(r.stdout, "Kept an unpacked copy") {
		t.Fatalf("first run on xfs:\n%s", r)
	}
	r, tree := e.create("second")
	if !strings.Contains(r.stdout, clonedLine) || r.stderr != "" || tree != fromXZ {
		t.Errorf("second run on xfs:\n%s\n--- xz\n%s\n--- clone\n%s", r, fromXZ, tree)
	}
	var got []struct{ Unpacked *struct{ Reflinked bool } }
	lr := e.runRaw("cache", "list", "--format", "json")
	if err := jsonUnmarshal(lr.stdout, &got); err != nil || len(got) != 1 || got[0].Unpacked == nil || !got[0].Unpacked.Reflinked {
		t.Errorf("cache list: %v\n%s", err, lr)
	}
}

// TestUnpackedNotForMappedIDs: a run for a container of mapped ids (whose
// cache is handed to them) keeps no copy.
func TestUnpackedNotForMappedIDs(t *testing.T) {
	needRoot(t, "maps ids")
	e := newEnv(t)
	e.newContainer("mapped")
	if r := e.run(e.image("--cache-unpacked", "--mapped-uid", "100000", "--mapped-gid", "100000")...); r.code != 0 {
		t.Fatalf("create:\n%s", r)
	}
	if exists(e.unpackedDir()) {
		t.Error("a copy was kept for a container of mapped ids")
	}
}

// TestUnpackedDamagedDropped: a copy that fails its checks, on a
// filesystem where the default keeps none, is removed after the run that
// found it, so that the next run neither warns nor looks at it again.
func TestUnpackedDamagedDropped(t *testing.T) {
	needRoot(t, "only root keeps unpacked copies")
	e := newEnv(t)
	_, fromXZ := e.create("keep", "--cache-unpacked")
	obj := e.bigObject()
	b, _ := os.ReadFile(obj)
	b[0] ^= 1
	os.WriteFile(obj, b, 0o600)
	r, tree := e.create("found")
	if !strings.Contains(r.stderr, "does not match its SHA256") || tree != fromXZ {
		t.Fatalf("default run with a damaged copy:\n%s", r)
	}
	if exists(e.unpackedDir()) {
		t.Error("the damaged copy stayed")
	}
	if r, tree := e.create("after"); r.stderr != "" || strings.Contains(r.stdout, clonedLine) || tree != fromXZ {
		t.Errorf("the run after:\n%s", r)
	}
}

// TestUnpackedNotForSignatureOnly: an image vouched for by the files' own
// signatures alone (no SHA256SUMS) is verified by reading the tarball on
// every use, so every run unpacks it: no copy is kept, none used.
func TestUnpackedNotForSignatureOnly(t *testing.T) {
	needRoot(t, "only root keeps unpacked copies")
	e := newEnv(t)
	e.srv.Remove(defaultDir + "SHA256SUMS")
	e.srv.Remove(defaultDir + "SHA256SUMS.asc")
	for _, name := range []string{"first", "second"} {
		if r, _ := e.create(name, "--cache-unpacked"); strings.Contains(r.stdout, clonedLine) || r.stderr != "" {
			t.Errorf("%s run:\n%s", name, r)
		}
		if exists(e.unpackedDir()) {
			t.Fatalf("%s run kept a copy", name)
		}
	}
}

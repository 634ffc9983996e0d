package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
)

func TestKeyCheck(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	for _, tc := range []struct {
		k    Key
		want string
	}{
		{Key{"", "r", "a", "v"}, `invalid image distribution "": it is empty`},
		{Key{"d", ".", "a", "v"}, `invalid image release ".": it is not a name`},
		{Key{"d", "r", "..", "v"}, `invalid image architecture "..": it is not a name`},
		{Key{"d", "r", "a", "x/y"}, `invalid image variant "x/y": it contains "/"`},
		{Key{"d", "r", "a", "x\x00"}, `invalid image variant "x\x00": it contains a NUL byte`},
		{Key{"d", "r", "a", ".v.lock"}, `invalid image variant ".v.lock": it starts with "."`},
		{Key{"/etc", "r", "a", "v"}, `invalid image distribution "/etc": it contains "/"`},
	} {
		if err := tc.k.Check(); err == nil || err.Error() != tc.want {
			t.Errorf("%q: Check() = %v, want %s", tc.k, err, tc.want)
		}
		// Every operation refuses it before touching the filesystem.
		if _, err := c.Dir(tc.k); err == nil {
			t.Errorf("%q: Dir accepted it", tc.k)
		}
		if _, err := c.Lookup(tc.k); err == nil {
			t.Errorf("%q: Lookup accepted it", tc.k)
		}
		if _, err := c.Lock(t.Context(), tc.k); err == nil {
			t.Errorf("%q: Lock accepted it", tc.k)
		}
		if _, err := c.Stage(tc.k); err == nil {
			t.Errorf("%q: Stage accepted it", tc.k)
		}
		if err := c.Flush(tc.k); err == nil {
			t.Errorf("%q: Flush accepted it", tc.k)
		}
	}
	if names := dirNames(t, c.Root); len(names) != 0 {
		t.Errorf("invalid keys created %v", names)
	}
	if _, err := (Cache{}).Dir(testKey); err == nil {
		t.Error("a cache without a root gave a directory")
	}
}

// TestLayout checks that an entry is what the shell template makes: the
// rootfs tarball, the meta files unpacked, build_id with a newline, at
// ROOT/download/DIST/RELEASE/ARCH/VARIANT; plus only the hidden record.
func TestLayout(t *testing.T) {
	root := t.TempDir()
	c := Cache{Root: root}
	img := newTestImage(t, "20261120_05:24", 1000, map[string]string{
		"config-user": "user config\n", "fstab": "proc proc proc\n", "create-message": "hello\n",
		"excludes-user": "./dev/console\n",
	})
	e := storeImage(t, c, testKey, img)
	want := filepath.Join(root, "download", "debian", "bookworm", "amd64", "default")
	if dir, err := c.Dir(testKey); err != nil || dir != want {
		t.Fatalf("Dir = %q, %v; want %q", dir, err, want)
	}
	if e.Dir != want {
		t.Fatalf("entry in %s, want %s", e.Dir, want)
	}
	checkEntry(t, e, img)
	got := dirNames(t, want)
	wantNames := []string{".lxc-download", "build_id", "config", "config-user", "create-message", "excludes-user", "expiry", "fstab", "meta.tar.xz", "rootfs.tar.xz", "templates"}
	if !reflect.DeepEqual(got, wantNames) {
		t.Errorf("entry holds %v, want %v", got, wantNames)
	}
	// The staging directory is gone once the download is in; only the
	// lock file stays beside the entry.
	if got := dirNames(t, filepath.Dir(want)); !reflect.DeepEqual(got, []string{".default.lock", "default"}) {
		t.Errorf("beside the entry: %v", got)
	}
	if time.Since(e.Fetched) > time.Minute || e.RootfsSize != int64(len(img.rootfs)) || e.RootfsSHA256 != img.sum() {
		t.Errorf("entry %+v", e)
	}
	// Lookup finds the same.
	e2, err := c.Lookup(testKey)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEntry(e, e2) {
		t.Errorf("Lookup = %+v, Commit gave %+v", e2, e)
	}
	// The meta files are read through compat's resolver.
	if b, ok, err := e.Meta(compat.User).Read("config"); err != nil || !ok || string(b) != "user config\n" {
		t.Errorf("user config: %q %v %v", b, ok, err)
	}
}

// TestShellTemplateEntry: an entry made by the shell template (no record,
// nothing hidden) is not used: nothing says what it was verified with. A
// warning says so, and the next download replaces it.
func TestShellTemplateEntry(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	img := newTestImage(t, "20261120_05:24", 100, nil)
	dir, _ := c.Dir(testKey)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "rootfs.tar.xz"), img.rootfs, 0o644)
	for n, v := range img.files {
		os.WriteFile(filepath.Join(dir, n), []byte(v), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "build_id"), []byte(img.build+"\n"), 0o644)

	var warn bytes.Buffer
	c.Warn = &warn
	e, err := c.Lookup(testKey)
	if e != nil || err != nil {
		t.Fatalf("Lookup = %+v, %v; want nothing", e, err)
	}
	if w := warn.String(); !strings.Contains(w, "ignoring the cached copy in "+dir+": it has no record of what it was verified with") || strings.Count(w, "\n") != 1 {
		t.Errorf("warning %q", w)
	}
	img2 := newTestImage(t, "20261121_05:24", 100, nil)
	storeImage(t, c, testKey, img2)
	e, err = c.Lookup(testKey)
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, e, img2)
}

// sameEntry compares what two entries say.
func sameEntry(a, b *Entry) bool {
	if a == nil || b == nil {
		return a == b
	}
	a2, b2 := *a, *b
	a2.open, b2.open = nil, nil
	return reflect.DeepEqual(a2, b2)
}

func TestLookupAbsent(t *testing.T) {
	c := Cache{Root: filepath.Join(t.TempDir(), "not-yet")}
	if e, err := c.Lookup(testKey); e != nil || err != nil {
		t.Fatalf("Lookup in a missing cache = %v, %v", e, err)
	}
	if _, err := os.Stat(c.Root); !os.IsNotExist(err) {
		t.Errorf("Lookup created the cache root: %v", err)
	}
}

// TestLookupBroken covers lxc/lxc#1889: an entry whose rootfs is missing or
// not what was stored is treated as absent, and a warning says why.
func TestLookupBroken(t *testing.T) {
	img := newTestImage(t, "b1", 5000, nil)
	for _, tc := range []struct {
		name  string
		spoil func(dir string) error
		why   string
	}{
		{"missing rootfs", func(dir string) error { return os.Remove(filepath.Join(dir, "rootfs.tar.xz")) }, "rootfs.tar.xz is missing"},
		{"truncated rootfs", func(dir string) error { return os.Truncate(filepath.Join(dir, "rootfs.tar.xz"), 100) }, "rootfs.tar.xz is 100 bytes, but was stored with"},
		{"empty rootfs", func(dir string) error { return os.Truncate(filepath.Join(dir, "rootfs.tar.xz"), 0) }, "rootfs.tar.xz is 0 bytes"},
		{"corrupted meta", func(dir string) error {
			f, err := os.OpenFile(filepath.Join(dir, "meta.tar.xz"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("X"), 100) // same size, other bytes
			return err
		}, "meta.tar.xz does not match the size and SHA256 recorded"},
		{"no meta", func(dir string) error { return os.Remove(filepath.Join(dir, "meta.tar.xz")) }, "meta.tar.xz is missing"},
		{"no record", func(dir string) error { return os.Remove(filepath.Join(dir, ".lxc-download")) }, "it has no record of what it was verified with"},
		{"record of an older version", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ".lxc-download"), []byte(`{"format":1,"build":"b1","rootfs":{"size":1,"sha256":"`+strings.Repeat("ab", 32)+`"}}`), 0o644)
		}, "written by an older lxc-download"},
		{"record of another build", func(dir string) error { return os.WriteFile(filepath.Join(dir, "build_id"), []byte("b0\n"), 0o644) }, `its build_id says "b0", but it was stored as build "b1"`},
		{"rootfs is a symlink", func(dir string) error {
			p := filepath.Join(dir, "rootfs.tar.xz")
			os.Rename(p, p+".real")
			return os.Symlink(p+".real", p)
		}, "rootfs.tar.xz is not a regular file but a symbolic link"},
		{"rootfs is a fifo", func(dir string) error {
			p := filepath.Join(dir, "rootfs.tar.xz")
			os.Remove(p)
			return syscall.Mkfifo(p, 0o644)
		}, "rootfs.tar.xz is not a regular file but a fifo"},
		{"rootfs writable by others", func(dir string) error { return os.Chmod(filepath.Join(dir, "rootfs.tar.xz"), 0o666) }, "its rootfs.tar.xz is writable by group and others (mode 0666)"},
		{"entry writable by group", func(dir string) error { return os.Chmod(dir, 0o775) }, "it is writable by its group (mode 0775)"},
		{"build_id a directory", func(dir string) error {
			os.Remove(filepath.Join(dir, "build_id"))
			return os.Mkdir(filepath.Join(dir, "build_id"), 0o755)
		}, "build_id is not a regular file but a directory"},
		{"rootfs is a directory", func(dir string) error {
			os.Remove(filepath.Join(dir, "rootfs.tar.xz"))
			return os.Mkdir(filepath.Join(dir, "rootfs.tar.xz"), 0o755)
		}, "rootfs.tar.xz is not a regular file but a directory"},
		{"no build_id", func(dir string) error { return os.Remove(filepath.Join(dir, "build_id")) }, "it has no build_id"},
		{"damaged record", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ".lxc-download"), []byte(`{"format":2,"rootfs":{"size":-1`), 0o644)
		}, "its .lxc-download file is damaged"},
		{"entry is a file", func(dir string) error {
			os.RemoveAll(dir)
			return os.WriteFile(dir, nil, 0o644)
		}, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warn bytes.Buffer
			c := Cache{Root: t.TempDir(), Warn: &warn}
			e := storeImage(t, c, testKey, img)
			if err := tc.spoil(e.Dir); err != nil {
				t.Fatal(err)
			}
			got, err := c.Lookup(testKey)
			if got != nil || err != nil {
				t.Fatalf("Lookup = %+v, %v; want nothing", got, err)
			}
			if w := warn.String(); !strings.HasPrefix(w, "WARNING: ignoring the cached copy") || !strings.Contains(w, tc.why) || strings.Count(w, "\n") != 1 {
				t.Errorf("warning %q, want one line with %q", w, tc.why)
			}
			// A new download replaces the broken entry.
			img2 := newTestImage(t, "b2", 100, nil)
			checkEntry(t, storeImage(t, c, testKey, img2), img2)
			e2, err := c.Lookup(testKey)
			if err != nil {
				t.Fatal(err)
			}
			checkEntry(t, e2, img2)
		})
	}
}

// TestLookupUnreadable: failing to read an entry at all is an error, not an
// absent entry. Root reads files whatever their mode, so as root the test
// runs itself again as uid 65534.
func TestLookupUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestLookupUnreadable")
		return
	}
	c := Cache{Root: t.TempDir()}
	e := storeImage(t, c, testKey, newTestImage(t, "b1", 100, nil))
	os.Chmod(filepath.Join(e.Dir, "build_id"), 0)
	if _, err := c.Lookup(testKey); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Lookup = %v, want permission denied", err)
	}
	os.Chmod(filepath.Join(e.Dir, "build_id"), 0o644)
	os.Chmod(e.Rootfs(), 0)
	if _, err := c.Lookup(testKey); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Lookup = %v, want permission denied", err)
	}
	os.Chmod(e.Rootfs(), 0o644)
	os.Chmod(filepath.Join(e.Dir, "meta.tar.xz"), 0)
	if _, err := c.Lookup(testKey); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Lookup = %v, want permission denied", err)
	}
}

func testRecord() record {
	img := testImage{build: "b", rootfs: []byte("rootfs"), meta: []byte("meta")}
	return record{Format: recordFormat, Build: "b",
		Rootfs: fileSum{Size: 5, SHA256: strings.Repeat("ab", 32)},
		Meta:   fileSum{Size: 4, SHA256: strings.Repeat("cd", 32)},
		Trust:  img.trust()}
}

func TestParseRecord(t *testing.T) {
	good := testRecord()
	if r, err := parseRecord(good.marshal()); err != nil || !reflect.DeepEqual(r, good) {
		t.Fatalf("parseRecord(marshal) = %+v, %v", r, err)
	}
	unverified := testRecord()
	unverified.Trust = Trust{}
	if r, err := parseRecord(unverified.marshal()); err != nil || !reflect.DeepEqual(r, unverified) {
		t.Fatalf("parseRecord(marshal) of an unverified entry = %+v, %v", r, err)
	}
	sigs := testRecord()
	sigs.Trust.SHA256SUMS, sigs.Trust.SHA256SUMSSig = nil, nil
	sigs.Trust.Signatures = map[string][]byte{"rootfs.tar.xz": []byte("sig"), "meta.tar.xz": []byte("sig")}
	if r, err := parseRecord(sigs.marshal()); err != nil || !reflect.DeepEqual(r, sigs) {
		t.Fatalf("parseRecord(marshal) with signatures = %+v, %v", r, err)
	}
	with := func(change func(r *record)) string {
		r := testRecord()
		change(&r)
		return string(r.marshal())
	}
	for _, tc := range []struct{ in, want string }{
		{``, "record is not valid"},
		{`[]`, "record is not valid"},
		{`{"format":3}`, "record has format 3, want 2"},
		{`{"format":1,"rootfs":{"size":1,"sha256":"` + strings.Repeat("ab", 32) + `"}}`, "older lxc-download"},
		{with(func(r *record) { r.Build = "" }), "invalid build"},
		{with(func(r *record) { r.Rootfs.Size = -1 }), "negative size -1 for rootfs.tar.xz"},
		{with(func(r *record) { r.Meta.SHA256 = "xyz" }), "malformed SHA256 \"xyz\" for meta.tar.xz"},
		{with(func(r *record) { r.Rootfs.SHA256 = strings.Repeat("AB", 32) }), "malformed SHA256"},
		{with(func(r *record) { r.Rootfs.SHA256 = strings.Repeat("ab", 31) }), "malformed SHA256"},
		{with(func(r *record) { r.Trust.Keys = nil }), "verified, but against no key"},
		{with(func(r *record) { r.Trust.Keys = []string{"not hex"} }), "is not hex"},
		{with(func(r *record) { r.Trust.SHA256SUMSSig = nil }), "SHA256SUMS and its signature come together"},
		{with(func(r *record) { r.Trust.SHA256SUMS, r.Trust.SHA256SUMSSig = nil, nil }), "neither a signed SHA256SUMS nor signatures"},
		{with(func(r *record) { r.Trust.Signatures = map[string][]byte{"x": []byte("s")} }), `signature of "x": not a file of the entry`},
		{with(func(r *record) { r.Trust.SHA256SUMS = make([]byte, maxTrustSize) }), "more than"},
		{strings.Repeat(" ", maxRecordSize+1), "more than"},
	} {
		if _, err := parseRecord([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseRecord(%.60q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add(testRecord().marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord(b)
		if err != nil {
			return
		}
		// What parses is well-formed and survives a round trip.
		if r.Rootfs.Size < 0 || len(r.Rootfs.SHA256) != 64 || len(r.Meta.SHA256) != 64 || r.Trust.check() != nil {
			t.Fatalf("accepted %+v", r)
		}
		if r2, err := parseRecord(r.marshal()); err != nil || !reflect.DeepEqual(r2, r) {
			t.Fatalf("round trip of %+v: %+v, %v", r, r2, err)
		}
	})
}

// TestExpired: the expiry comes from the meta tarball the record covers,
// not from the loose files, which anyone able to write them could change.
func TestExpired(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	now := time.Now()
	store := func(build, expiry string) *Entry {
		return storeImage(t, c, testKey, newTestImage(t, build, 100, map[string]string{"expiry-user": "1000\n", "expiry": expiry}))
	}
	check := func(e *Entry, name string, mode compat.Mode, at time.Time, want bool) {
		t.Helper()
		got, err := e.Expired(at, mode)
		if err != nil || got != want {
			t.Errorf("%s: Expired = %v, %v; want %v", name, got, err, want)
		}
	}
	e := store("b1", "4102444800\n")
	check(e, "fresh", compat.System, now, false)
	// The relevant expiry: expiry-user is long past.
	check(e, "user mode", compat.User, now, true)
	// The loose copy does not count.
	os.WriteFile(filepath.Join(e.Dir, "expiry"), []byte("1000\n"), 0o644)
	e, _ = c.Lookup(testKey)
	check(e, "loose expiry changed", compat.System, now, false)
	e = store("b2", fmt.Sprint(now.Add(-time.Minute).Unix()))
	check(e, "expiry in the past", compat.System, now, true)
	e = store("b3", fmt.Sprint(now.Add(time.Hour).Unix()))
	check(e, "expiry in the future", compat.System, now, false)
	// The 30-day cap, counted from build_id's time, beats the expiry.
	e = store("b4", fmt.Sprint(now.Add(365*24*time.Hour).Unix()))
	check(e, "29 days", compat.System, e.Fetched.Add(MaxAge-time.Second), false)
	check(e, "30 days", compat.System, e.Fetched.Add(MaxAge), true)
	old := now.Add(-31 * 24 * time.Hour)
	os.Chtimes(filepath.Join(e.Dir, "build_id"), old, old)
	e, _ = c.Lookup(testKey)
	check(e, "build_id backdated", compat.System, now, true)
	// No expiry file: only the cap.
	e = store("b5", "")
	check(e, "no expiry", compat.System, now, false)
	check(e, "no expiry, capped", compat.System, e.Fetched.Add(MaxAge), true)
}

// TestStale: the 30-day rule that cmd applies when the server still offers
// the cached build.
func TestStale(t *testing.T) {
	e := &Entry{BuildID: "20261120_05:24", Fetched: time.Now()}
	for _, tc := range []struct {
		build    string
		after    time.Duration
		stale    bool
		upToDate bool
	}{
		{"20261120_05:24", 0, false, true},
		{"20261120_05:24", MaxAge - time.Second, false, true},
		{"20261120_05:24", MaxAge, true, false},
		{"20261121_05:24", 0, false, false},
	} {
		now := e.Fetched.Add(tc.after)
		if got := e.Stale(now); got != tc.stale {
			t.Errorf("after %v: Stale = %v", tc.after, got)
		}
		if got := e.UpToDate(tc.build, now); got != tc.upToDate {
			t.Errorf("build %s after %v: UpToDate = %v", tc.build, tc.after, got)
		}
	}
}

func TestFlush(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	other := testKey
	other.Variant = "cloud"
	storeImage(t, c, other, newTestImage(t, "o1", 100, nil))
	e := storeImage(t, c, testKey, newTestImage(t, "b1", 100, nil))
	st, _ := c.Stage(testKey)
	os.WriteFile(filepath.Join(st.Dir, "rootfs.tar.xz.partial"), []byte("part"), 0o644)
	if err := c.Flush(testKey); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Lookup(testKey); got != nil || err != nil {
		t.Errorf("after Flush, Lookup = %v, %v", got, err)
	}
	if got := dirNames(t, filepath.Dir(e.Dir)); !reflect.DeepEqual(got, []string{".cloud.lock", ".default.lock", "cloud"}) {
		t.Errorf("after Flush: %v", got)
	}
	if got, _ := c.Lookup(other); got == nil {
		t.Error("Flush removed another variant")
	}
	// Flushing nothing is fine.
	if err := c.Flush(testKey); err != nil {
		t.Error(err)
	}
}

func TestWritable(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cache")
	c := Cache{Root: root}
	if err := c.Writable(); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(root, "download")); len(got) != 0 {
		t.Errorf("Writable left %v", got)
	}
	// A file where the cache should be.
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if err := (Cache{Root: f}).Writable(); err == nil || !strings.Contains(err.Error(), "is not writable") {
		t.Errorf("Writable on a file = %v", err)
	}
	if err := (Cache{}).Writable(); err == nil {
		t.Error("Writable without a root")
	}
}

func TestChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	root := t.TempDir()
	c := Cache{Root: root}
	e := storeImage(t, c, testKey, newTestImage(t, "b1", 100, nil))
	os.Symlink("/etc/passwd", filepath.Join(root, "link"))
	if err := c.Chown(100000, -1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{root, filepath.Join(root, "download"), e.Dir, e.Rootfs(), filepath.Join(filepath.Dir(e.Dir), ".default.lock"), filepath.Join(root, "link")} {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 100000 || st.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want 100000:0", p, st.Uid, st.Gid)
		}
	}
	var st syscall.Stat_t
	syscall.Stat("/etc/passwd", &st)
	if st.Uid != 0 {
		t.Fatalf("Chown followed a symlink out of the cache")
	}
	// The store is 100000's now: a run as root of its user namespace
	// names it to trust it.
	if err := c.Chown(-1, 100001); err == nil || !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Chown of a store owned by another user = %v", err)
	}
	c.Owners = []int{100000}
	if e, err := c.Lookup(testKey); e == nil || err != nil {
		t.Fatalf("Lookup with the store's owner trusted = %v, %v", e, err)
	}
	if err := c.Chown(-1, 100001); err != nil {
		t.Fatal(err)
	}
	syscall.Stat(e.Rootfs(), &st)
	if st.Uid != 100000 || st.Gid != 100001 {
		t.Errorf("rootfs owned by %d:%d, want 100000:100001", st.Uid, st.Gid)
	}
	if err := (Cache{Root: filepath.Join(root, "none")}).Chown(1, 1); err == nil {
		t.Error("Chown of a missing cache succeeded")
	}
}

// BenchmarkLookup measures a lookup of an entry with a 32 MiB rootfs,
// which does not read the tarball (OpenRootfs hashes it as it is read).
func BenchmarkLookup(b *testing.B) {
	c := Cache{Root: b.TempDir()}
	bigEntry(b, c)
	for b.Loop() {
		if e, err := c.Lookup(testKey); e == nil || err != nil {
			b.Fatal(e, err)
		}
	}
}

// BenchmarkOpenRootfs measures reading a 32 MiB cached rootfs through the
// hashing reader, against a plain read in the sub-benchmark "plain": the
// ratio is what verifying at read time costs the unpack.
func BenchmarkOpenRootfs(b *testing.B) {
	c := Cache{Root: b.TempDir()}
	e := bigEntry(b, c)
	buf := make([]byte, 1<<20)
	b.Run("hashed", func(b *testing.B) {
		b.SetBytes(e.RootfsSize)
		for b.Loop() {
			r, err := e.OpenRootfs()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
				b.Fatal(err)
			}
			r.Close()
		}
	})
	b.Run("plain", func(b *testing.B) {
		b.SetBytes(e.RootfsSize)
		for b.Loop() {
			f, err := os.Open(e.Rootfs())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, f, buf); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// bigEntry stores an entry whose rootfs is 32 MiB of noise, without making
// an xz file of it (slow): its record is rewritten to match.
func bigEntry(b *testing.B, c Cache) *Entry {
	e := storeImage(b, c, testKey, newTestImage(b, "b1", 10, nil))
	rootfs := make([]byte, 32<<20)
	rand.NewChaCha8([32]byte{}).Read(rootfs)
	if err := os.WriteFile(e.Rootfs(), rootfs, 0o644); err != nil {
		b.Fatal(err)
	}
	b1, err := os.ReadFile(filepath.Join(e.Dir, recordName))
	if err != nil {
		b.Fatal(err)
	}
	rec, err := parseRecord(b1)
	if err != nil {
		b.Fatal(err)
	}
	rec.Rootfs = fileSum{Size: int64(len(rootfs)), SHA256: testImage{rootfs: rootfs}.sum()}
	if err := os.WriteFile(filepath.Join(e.Dir, recordName), rec.marshal(), 0o644); err != nil {
		b.Fatal(err)
	}
	e, err = c.Lookup(testKey)
	if err != nil || e == nil {
		b.Fatal(e, err)
	}
	return e
}

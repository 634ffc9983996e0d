package cache

import (
	"bytes"
	"fmt"
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
	wantNames := []string{".lxc-download", "build_id", "config", "config-user", "create-message", "excludes-user", "expiry", "fstab", "rootfs.tar.xz", "templates"}
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
	if !reflect.DeepEqual(e, e2) {
		t.Errorf("Lookup = %+v, Commit gave %+v", e2, e)
	}
	// The meta files are read through compat's resolver.
	if b, ok, err := e.Meta(compat.User).Read("config"); err != nil || !ok || string(b) != "user config\n" {
		t.Errorf("user config: %q %v %v", b, ok, err)
	}
}

// TestShellTemplateEntry: an entry made by the shell template (no record,
// nothing hidden) is used as it is.
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
	fetched := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	os.Chtimes(filepath.Join(dir, "build_id"), fetched, fetched)

	var warn bytes.Buffer
	c.Warn = &warn
	e, err := c.Lookup(testKey)
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, e, img)
	if !e.Fetched.Equal(fetched) || e.RootfsSHA256 != "" || e.RootfsSize != 0 {
		t.Errorf("entry %+v, want fetched %v and nothing recorded", e, fetched)
	}
	if warn.Len() != 0 {
		t.Errorf("warnings: %s", &warn)
	}
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
		{"corrupted rootfs", func(dir string) error {
			f, err := os.OpenFile(filepath.Join(dir, "rootfs.tar.xz"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("X"), 2000) // same size, other bytes
			return err
		}, "rootfs.tar.xz does not match the SHA256 recorded when it was stored"},
		{"rootfs is a directory", func(dir string) error {
			os.Remove(filepath.Join(dir, "rootfs.tar.xz"))
			return os.Mkdir(filepath.Join(dir, "rootfs.tar.xz"), 0o755)
		}, "rootfs.tar.xz is not a regular file"},
		{"no build_id", func(dir string) error { return os.Remove(filepath.Join(dir, "build_id")) }, "it has no build_id"},
		{"damaged record", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ".lxc-download"), []byte(`{"format":1,"rootfs":{"size":-1`), 0o644)
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
// absent entry.
func TestLookupUnreadable(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	e := storeImage(t, c, testKey, newTestImage(t, "b1", 100, nil))
	os.Remove(filepath.Join(e.Dir, "build_id"))
	os.Mkdir(filepath.Join(e.Dir, "build_id"), 0o755)
	if _, err := c.Lookup(testKey); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Lookup with build_id a directory = %v", err)
	}
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode")
	}
	e = storeImage(t, c, testKey, newTestImage(t, "b1", 100, nil))
	os.Chmod(filepath.Join(e.Dir, "build_id"), 0)
	if _, err := c.Lookup(testKey); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Lookup = %v, want permission denied", err)
	}
	os.Chmod(filepath.Join(e.Dir, "build_id"), 0o644)
	os.Chmod(e.Rootfs(), 0)
	if _, err := c.Lookup(testKey); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Lookup = %v, want permission denied", err)
	}
}

func TestParseRecord(t *testing.T) {
	good := record{Format: 1, Build: "b"}
	good.Rootfs.Size = 5
	good.Rootfs.SHA256 = strings.Repeat("ab", 32)
	if r, err := parseRecord(good.marshal()); err != nil || r != good {
		t.Fatalf("parseRecord(marshal) = %+v, %v", r, err)
	}
	for _, tc := range []struct{ in, want string }{
		{``, "record is not valid"},
		{`[]`, "record is not valid"},
		{`{"format":2}`, "record has format 2, want 1"},
		{`{"format":1,"rootfs":{"size":-1}}`, "negative size"},
		{`{"format":1,"rootfs":{"size":1,"sha256":"xyz"}}`, "malformed SHA256"},
		{`{"format":1,"rootfs":{"size":1,"sha256":"` + strings.Repeat("AB", 32) + `"}}`, "malformed SHA256"},
		{`{"format":1,"rootfs":{"size":1,"sha256":"` + strings.Repeat("ab", 31) + `"}}`, "malformed SHA256"},
		{strings.Repeat(" ", maxRecordSize+1), "more than"},
	} {
		if _, err := parseRecord([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseRecord(%.40q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	good := record{Format: 1, Build: "20261120_05:24"}
	good.Rootfs.Size = 123
	good.Rootfs.SHA256 = strings.Repeat("0f", 32)
	f.Add(good.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord(b)
		if err != nil {
			return
		}
		// What parses is well-formed and survives a round trip.
		if r.Rootfs.Size < 0 || len(r.Rootfs.SHA256) != 64 {
			t.Fatalf("accepted %+v", r)
		}
		if r2, err := parseRecord(r.marshal()); err != nil || r2 != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, r2, err)
		}
	})
}

func TestExpired(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	img := newTestImage(t, "b1", 100, map[string]string{"expiry-user": "1000\n"})
	e := storeImage(t, c, testKey, img)
	now := time.Now()
	check := func(name string, mode compat.Mode, at time.Time, want bool) {
		t.Helper()
		got, err := e.Expired(at, mode)
		if err != nil || got != want {
			t.Errorf("%s: Expired = %v, %v; want %v", name, got, err, want)
		}
	}
	check("fresh", compat.System, now, false)
	// The relevant expiry: expiry-user is long past.
	check("user mode", compat.User, now, true)
	exp := filepath.Join(e.Dir, "expiry")
	os.WriteFile(exp, []byte(fmt.Sprint(now.Add(-time.Minute).Unix())), 0o644)
	check("expiry in the past", compat.System, now, true)
	os.WriteFile(exp, []byte(fmt.Sprint(now.Add(time.Hour).Unix())), 0o644)
	check("expiry in the future", compat.System, now, false)
	// The 30-day cap, counted from build_id's time, beats the expiry.
	os.WriteFile(exp, []byte(fmt.Sprint(now.Add(365*24*time.Hour).Unix())), 0o644)
	check("29 days", compat.System, e.Fetched.Add(MaxAge-time.Second), false)
	check("30 days", compat.System, e.Fetched.Add(MaxAge), true)
	old := now.Add(-31 * 24 * time.Hour)
	os.Chtimes(filepath.Join(e.Dir, "build_id"), old, old)
	e, _ = c.Lookup(testKey)
	check("build_id backdated", compat.System, now, true)
	// No expiry file: only the cap.
	os.Remove(exp)
	e = storeImage(t, c, testKey, newTestImage(t, "b2", 100, map[string]string{"expiry": ""}))
	check("no expiry", compat.System, now, false)
	check("no expiry, capped", compat.System, e.Fetched.Add(MaxAge), true)
	// A malformed expiry is an error.
	os.WriteFile(filepath.Join(e.Dir, "expiry"), []byte("soon\n"), 0o644)
	if _, err := e.Expired(now, compat.System); err == nil {
		t.Error("malformed expiry accepted")
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

// BenchmarkLookup measures a lookup of an entry with a 32 MiB rootfs, which
// hashes the whole tarball to check it against the record.
func BenchmarkLookup(b *testing.B) {
	c := Cache{Root: b.TempDir()}
	e := storeImage(b, c, testKey, newTestImage(b, "b1", 10, nil))
	// A big rootfs, without making an xz file of it (slow): Lookup does
	// not decompress it, and its record is written to match.
	rootfs := make([]byte, 32<<20)
	rand.NewChaCha8([32]byte{}).Read(rootfs)
	if err := os.WriteFile(e.Rootfs(), rootfs, 0o644); err != nil {
		b.Fatal(err)
	}
	rec := record{Format: recordFormat, Build: "b1"}
	rec.Rootfs.Size = int64(len(rootfs))
	rec.Rootfs.SHA256 = testImage{rootfs: rootfs}.sum()
	if err := os.WriteFile(filepath.Join(e.Dir, recordName), rec.marshal(), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(rootfs)))
	for b.Loop() {
		if e, err := c.Lookup(testKey); e == nil || err != nil {
			b.Fatal(e, err)
		}
	}
}

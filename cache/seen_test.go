package cache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testServer = "images.linuxcontainers.org"

func TestSeen(t *testing.T) {
	c := Cache{Root: filepath.Join(t.TempDir(), "cache")}
	if s, err := c.Seen(testServer, testKey); err != nil || s != (Seen{}) {
		t.Fatalf("Seen in a missing cache = %+v, %v", s, err)
	}
	t1 := time.Date(2026, 11, 20, 5, 24, 0, 0, time.UTC)
	if err := c.RecordSeen(testServer, testKey, Seen{Build: "20261120_05:24", IndexSigned: t1}); err != nil {
		t.Fatal(err)
	}
	check := func(server string, want Seen) {
		t.Helper()
		got, err := c.Seen(server, testKey)
		if err != nil || got.Build != want.Build || !got.IndexSigned.Equal(want.IndexSigned) {
			t.Errorf("Seen(%s) = %+v, %v; want %+v", server, got, err, want)
		}
	}
	check(testServer, Seen{Build: "20261120_05:24", IndexSigned: t1})
	check("mirror.example.org", Seen{})
	// An older build or signature (an allowed downgrade) does not lower
	// what was seen; a newer one raises it.
	c.RecordSeen(testServer, testKey, Seen{Build: "20261101_05:24", IndexSigned: t1.Add(-time.Hour)})
	check(testServer, Seen{Build: "20261120_05:24", IndexSigned: t1})
	c.RecordSeen(testServer, testKey, Seen{Build: "20261121_05:24", IndexSigned: t1.Add(time.Hour)})
	check(testServer, Seen{Build: "20261121_05:24", IndexSigned: t1.Add(time.Hour)})
	c.RecordSeen("mirror.example.org", testKey, Seen{Build: "20261122_05:24"})
	check("mirror.example.org", Seen{Build: "20261122_05:24"})
	check(testServer, Seen{Build: "20261121_05:24", IndexSigned: t1.Add(time.Hour)})
	other := testKey
	other.Variant = "cloud"
	if s, err := c.Seen(testServer, other); err != nil || s != (Seen{}) {
		t.Errorf("another image: %+v, %v", s, err)
	}
	// Flushing the cache keeps what was seen.
	if err := c.Flush(testKey); err != nil {
		t.Fatal(err)
	}
	check(testServer, Seen{Build: "20261121_05:24", IndexSigned: t1.Add(time.Hour)})
	parent := filepath.Join(c.Root, "download/debian/bookworm/amd64")
	if names := dirNames(t, parent); len(names) != 1 || names[0] != ".default.seen" {
		t.Errorf("beside the entry: %v", names)
	}
	if err := c.RecordSeen(testServer, testKey, Seen{Build: "a\nb"}); err == nil {
		t.Error("a build id with a newline was recorded")
	}

	// A read-only store is read.
	if os.Geteuid() != 0 {
		setWritable(t, c.Root, false)
		defer setWritable(t, c.Root, true)
		check(testServer, Seen{Build: "20261121_05:24", IndexSigned: t1.Add(time.Hour)})
	}
}

// TestSeenDamaged: a damaged state file is an error, not a blank slate,
// and a symlink in its place is never followed.
func TestSeenDamaged(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	if err := c.RecordSeen(testServer, testKey, Seen{Build: "20261120_05:24"}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c.Root, "download/debian/bookworm/amd64/.default.seen")
	os.WriteFile(p, []byte(`{"format":1,"servers":{"x":{"build":`), 0o644)
	if _, err := c.Seen(testServer, testKey); err == nil || !strings.Contains(err.Error(), "is damaged") {
		t.Errorf("Seen of a damaged file = %v", err)
	}
	if err := c.RecordSeen(testServer, testKey, Seen{Build: "20261120_05:24"}); err == nil {
		t.Error("RecordSeen replaced a damaged file")
	}
	host := filepath.Join(t.TempDir(), "host")
	os.WriteFile(host, []byte(`{"format":1,"servers":{"images.linuxcontainers.org":{"build":"20991231_00:00"}}}`), 0o644)
	os.Remove(p)
	os.Symlink(host, p)
	if _, err := c.Seen(testServer, testKey); err == nil || !strings.Contains(err.Error(), "is a symbolic link, not a regular file") {
		t.Errorf("Seen through a symlink = %v", err)
	}
	if err := c.RecordSeen(testServer, testKey, Seen{Build: "20261120_05:24"}); err == nil {
		t.Error("RecordSeen over a symlink succeeded")
	}
	if b, _ := os.ReadFile(host); !strings.Contains(string(b), "20991231_00:00") {
		t.Errorf("the symlink's target was written: %s", b)
	}
	os.Remove(p)
	os.WriteFile(p, []byte(`{"format":1,"servers":{}}`), 0o666)
	os.Chmod(p, 0o666)
	if _, err := c.Seen(testServer, testKey); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Seen of a file others can write = %v", err)
	}
}

func TestCheckFresh(t *testing.T) {
	t1 := time.Date(2026, 11, 20, 5, 24, 0, 0, time.UTC)
	seen := Seen{Build: "20261120_05:24", IndexSigned: t1}
	for _, tc := range []struct {
		build  string
		signed time.Time
		allow  bool
		want   string
	}{
		{"20261120_05:24", t1, false, ""},
		{"20261121_05:24", t1.Add(time.Hour), false, ""},
		{"20261120_05:25", time.Time{}, false, ""},
		{"20261119_05:24", t1, false, "the server offers build 20261119_05:24, older than build 20261120_05:24 seen earlier"},
		{"20261120_05:23", t1.Add(time.Hour), false, "older than build 20261120_05:24"},
		{"20261121_05:24", t1.Add(-time.Second), false, "the image index was signed at 2026-11-20T05:23:59Z, before the one seen earlier (signed at 2026-11-20T05:24:00Z): an old index is being replayed or the mirror is stale; it offers build 20261121_05:24, the newest seen is 20261120_05:24"},
		{"20261119_05:24", t1.Add(-time.Hour), true, ""},
		// Ids of another form cannot be ordered: only the signature
		// time protects them.
		{"build-7", t1, false, ""},
		{"build-7", t1.Add(-time.Hour), false, "before the one seen earlier"},
	} {
		err := CheckFresh(seen, tc.build, tc.signed, tc.allow)
		if tc.want == "" {
			if err != nil {
				t.Errorf("CheckFresh(%s, %v, %v) = %v", tc.build, tc.signed, tc.allow, err)
			}
			continue
		}
		var de *DowngradeError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrDowngrade) || !errors.As(err, &de) {
			t.Errorf("CheckFresh(%s, %v) = %v, want %q", tc.build, tc.signed, err, tc.want)
		}
	}
	if err := CheckFresh(Seen{}, "20200101_00:00", t1, false); err != nil {
		t.Errorf("nothing seen: %v", err)
	}
}

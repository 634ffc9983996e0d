package fetch

import (
	"net/url"
	"testing"
	"time"
)

func TestParseContentRange(t *testing.T) {
	for _, c := range []struct {
		in          string
		start, size int64
		ok          bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/1", 0, 1, true},
		{"bytes 5-9/*", 5, -1, true},
		{"bytes 100-199/150", 0, 0, false}, // ends past the size
		{"bytes 200-100/300", 0, 0, false},
		{"bytes -1-5/10", 0, 0, false},
		{"bytes */200", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes 0-1", 0, 0, false},
		{"bytes 0/2", 0, 0, false},
		{"", 0, 0, false},
		{"bytes 0-1/x", 0, 0, false},
	} {
		start, size, ok := parseContentRange(c.in)
		if ok != c.ok || (ok && (start != c.start || size != c.size)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", c.in, start, size, ok)
		}
	}
}

func TestUnsatisfiedSize(t *testing.T) {
	if n, ok := unsatisfiedSize("bytes */1234"); !ok || n != 1234 {
		t.Errorf("%d %v", n, ok)
	}
	for _, bad := range []string{"", "bytes */", "bytes */-1", "bytes 0-1/2", "bytes */x"} {
		if _, ok := unsatisfiedSize(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 100-199/200")
	f.Add("bytes 5-9/*")
	f.Add("bytes */200")
	f.Fuzz(func(t *testing.T, s string) {
		start, size, ok := parseContentRange(s)
		if !ok {
			return
		}
		if start < 0 || (size != -1 && size <= start) {
			t.Errorf("%q: start %d size %d", s, start, size)
		}
	})
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "/",
		"meta/1.0/index-system":    "/meta/1.0/index-system",
		"//images//a///b/":         "/images/a/b/",
		"/images/x/rootfs.tar.xz":  "/images/x/rootfs.tar.xz",
		"images/x//SHA256SUMS.asc": "/images/x/SHA256SUMS.asc",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	for i, w := range want {
		if got := backoff(time.Second, i+1); got != w {
			t.Errorf("backoff after %d failures: %v, want %v", i+1, got, w)
		}
	}
	if got := backoff(time.Second, 80); got != 30*time.Second {
		t.Errorf("no cap: %v", got)
	}
}

func TestValidatorOf(t *testing.T) {
	h := map[string][]string{"Etag": {`"abc"`}, "Last-Modified": {"Mon, 02 Jan 2006 15:04:05 GMT"}}
	if v := validatorOf(h); v != `"abc"` {
		t.Errorf("%q", v)
	}
	h["Etag"] = []string{`W/"abc"`}
	if v := validatorOf(h); v != "Mon, 02 Jan 2006 15:04:05 GMT" {
		t.Errorf("weak ETag used for If-Range: %q", v)
	}
}

// TestServerIs: the primary server is recognised in a redirect's URL
// whether or not the URL names the scheme's default port, and only with
// the scheme it was given with.
func TestServerIs(t *testing.T) {
	for _, c := range []struct {
		server string
		urls   map[string]bool
	}{
		{"images.example.org", map[string]bool{
			"https://images.example.org/x":      true,
			"https://IMAGES.example.org/x":      true,
			"https://images.example.org:443/x":  true,
			"https://images.example.org:80/x":   false,
			"http://images.example.org/x":       false,
			"https://images.example.org:8443/x": false,
			"https://mirror.example.org/x":      false,
		}},
		{"http://images.example.org/lxc", map[string]bool{
			"http://images.example.org/lxc/x":  true,
			"http://images.example.org:80/x":   true,
			"http://images.example.org:443/x":  false,
			"https://images.example.org/lxc/x": false,
		}},
		{"https://[::1]:443/p", map[string]bool{
			"https://[::1]/x":      true,
			"https://[::1]:443/x":  true,
			"https://[::2]/x":      false,
			"https://[::1]:8443/x": false,
		}},
		{"localhost:8443", map[string]bool{
			"https://localhost:8443/": true,
			"https://localhost/":      false,
		}},
	} {
		s, err := ParseServer(c.server)
		if err != nil {
			t.Fatal(err)
		}
		for raw, want := range c.urls {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.is(u); got != want {
				t.Errorf("%s: is(%s) = %v", c.server, raw, got)
			}
		}
	}
}

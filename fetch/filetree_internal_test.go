package fetch

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFileTransport: the file tree answers the ranges and conditions the
// transfers send as a web server would.
func TestFileTransport(t *testing.T) {
	dir := t.TempDir()
	content := "0123456789abcdefghij"
	if err := os.MkdirAll(filepath.Join(dir, "meta"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "meta", "f")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(p, mod, mod); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &fileTransport{dir: dir}}
	get := func(method, path string, h map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, "file://"+dir+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	resp, body := get("GET", "/meta/f", nil)
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if resp.StatusCode != 200 || body != content || resp.ContentLength != int64(len(content)) ||
		!strings.HasPrefix(etag, `"`) || lm != mod.Format(http.TimeFormat) {
		t.Fatalf("GET: %d %q %+v", resp.StatusCode, body, resp.Header)
	}
	for _, tc := range []struct {
		name, method, path string
		h                  map[string]string
		status             int
		body               string
		contentRange       string
	}{
		{"range", "GET", "/meta/f", map[string]string{"Range": "bytes=5-"}, 206, content[5:], "bytes 5-19/20"},
		{"range, If-Range ETag", "GET", "/meta/f", map[string]string{"Range": "bytes=5-", "If-Range": etag}, 206, content[5:], "bytes 5-19/20"},
		{"range, If-Range date", "GET", "/meta/f", map[string]string{"Range": "bytes=5-", "If-Range": lm}, 206, content[5:], "bytes 5-19/20"},
		{"range, changed file", "GET", "/meta/f", map[string]string{"Range": "bytes=5-", "If-Range": `"other"`}, 200, content, ""},
		{"range past the end", "GET", "/meta/f", map[string]string{"Range": "bytes=20-"}, 416, "", "bytes */20"},
		{"If-None-Match", "GET", "/meta/f", map[string]string{"If-None-Match": etag}, 304, "", ""},
		{"If-None-Match, weak and listed", "GET", "/meta/f", map[string]string{"If-None-Match": `"x", W/` + etag}, 304, "", ""},
		{"If-None-Match, other", "GET", "/meta/f", map[string]string{"If-None-Match": `"x"`, "If-Modified-Since": lm}, 200, content, ""},
		{"If-Modified-Since", "GET", "/meta/f", map[string]string{"If-Modified-Since": lm}, 304, "", ""},
		{"If-Modified-Since, earlier", "GET", "/meta/f", map[string]string{"If-Modified-Since": mod.Add(-time.Second).Format(http.TimeFormat)}, 200, content, ""},
		{"HEAD", "HEAD", "/meta/f", nil, 200, "", ""},
		{"missing", "GET", "/meta/g", nil, 404, "", ""},
		{"below a file", "GET", "/meta/f/x", nil, 404, "", ""},
		{"directory", "GET", "/meta", nil, 404, "", ""},
	} {
		resp, body := get(tc.method, tc.path, tc.h)
		if resp.StatusCode != tc.status || body != tc.body || resp.Header.Get("Content-Range") != tc.contentRange {
			t.Errorf("%s: %d %q %q, want %d %q %q", tc.name, resp.StatusCode, body, resp.Header.Get("Content-Range"), tc.status, tc.body, tc.contentRange)
		}
	}

	req, _ := http.NewRequest("GET", "file://"+dir+"/meta/../../etc/passwd", nil)
	if _, err := hc.Do(req); err == nil || !strings.Contains(err.Error(), "leads out of the tree") || Classify(err) != ClassServer {
		t.Errorf(".. out of the tree: %v", err)
	}

	// The file changes in place: its validator does.
	later := mod.Add(time.Minute)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get("GET", "/meta/f", map[string]string{"If-None-Match": etag}); resp.StatusCode != 200 || resp.Header.Get("ETag") == etag {
		t.Errorf("after a change: %d, ETag %s", resp.StatusCode, resp.Header.Get("ETag"))
	}
}

package fetchtest

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestListen: the server answers on an IPv6 listener too, HTTPS and plain
// HTTP, with the same files; Close stops it.
func TestListen(t *testing.T) {
	s := newTestServer(t)
	host, err := s.Listen("[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	want, _ := s.Get(IndexPaths()[0])
	for _, scheme := range []string{"https", "http"} {
		resp, err := s.Client().Get(scheme + "://" + host + IndexPaths()[0])
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, want) {
			t.Errorf("%s: %d %q", scheme, resp.StatusCode, got)
		}
	}
	s.Close()
	if c, err := net.Dial("tcp", host); err == nil {
		c.Close()
		t.Error("still listening after Close")
	}
}

// TestConditionalRequests: If-None-Match and If-Modified-Since with the
// validators served are answered 304 without a body, until the file
// changes.
func TestConditionalRequests(t *testing.T) {
	s := newTestServer(t)
	p := IndexPaths()[0]
	resp, err := s.Client().Get(s.URL + p)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if etag == "" || lm == "" {
		t.Fatalf("validators: %+v", resp.Header)
	}
	ask := func(h, v string) int {
		req, _ := http.NewRequest("GET", s.URL+p, nil)
		req.Header.Set(h, v)
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if ask("If-None-Match", etag) != 304 || ask("If-Modified-Since", lm) != 304 {
		t.Error("not 304 for the current validators")
	}
	if r := s.RequestsFor(p); r[len(r)-1].Status != 304 || r[len(r)-1].Bytes != 0 {
		t.Errorf("log: %+v", r[len(r)-1])
	}
	s.SetIndex("changed\n")
	if ask("If-None-Match", etag) != 200 || ask("If-Modified-Since", lm) != 200 {
		t.Error("304 for a changed file")
	}
}

// TestWriteTree: every path served is written below the directory, with
// the bytes served.
func TestWriteTree(t *testing.T) {
	s := newTestServer(t)
	dir := t.TempDir()
	if err := s.WriteTree(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Paths() {
		want, _ := s.Get(p)
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v", p, err)
		}
	}
	s.Set("/../escape", []byte("x"))
	if err := s.WriteTree(t.TempDir()); err == nil {
		t.Error("a path out of the tree was written")
	}
}

package fetchtest

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

const rootfsPath = "/images/debian/bookworm/amd64/default/20261120_05:24/rootfs.tar.xz"

func TestFail(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	s.Fail(rootfsPath, 503)
	for range 3 {
		if r := get(t, c, s.URL+rootfsPath); r.status != 503 {
			t.Fatalf("Fail: %d", r.status)
		}
	}
	if r := get(t, c, s.URL+"/meta/1.0/index-system"); r.status != 200 {
		t.Errorf("other path: %d", r.status)
	}
	s.ClearFaults(rootfsPath)
	if r := get(t, c, s.URL+rootfsPath); r.status != 200 {
		t.Errorf("after ClearFaults: %d", r.status)
	}
	if log := s.RequestsFor(rootfsPath); len(log) != 4 || log[0].Status != 503 || log[3].Status != 200 {
		t.Errorf("log %+v", log)
	}
}

func TestFailN(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	s.FailN(rootfsPath, 500, 2)
	var got []int
	for range 4 {
		got = append(got, get(t, c, s.URL+rootfsPath).status)
	}
	if want := []int{500, 500, 200, 200}; !equalInts(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
}

func TestFaultOnDirectory(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	s.FailN("/images/", 502, 0)
	if r := get(t, c, s.URL+rootfsPath); r.status != 502 {
		t.Errorf("under /images/: %d", r.status)
	}
	if r := get(t, c, s.URL+"/meta/1.0/index-system"); r.status != 200 {
		t.Errorf("outside /images/: %d", r.status)
	}
	s.ClearFaults()
	if r := get(t, c, s.URL+rootfsPath); r.status != 200 {
		t.Errorf("after ClearFaults(): %d", r.status)
	}
}

func TestDropAfter(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	whole, _ := s.Get(rootfsPath)
	s.DropAfter(rootfsPath, 1000, 2)
	for i := range 2 {
		r := get(t, c, s.URL+rootfsPath)
		if r.status != 200 || !errors.Is(r.err, io.ErrUnexpectedEOF) || !bytes.Equal(r.body, whole[:1000]) {
			t.Errorf("drop %d: %d, %d bytes, %v", i, r.status, len(r.body), r.err)
		}
	}
	// Resuming where it stopped fetches only the rest.
	r := get(t, c, s.URL+rootfsPath, "Range", "bytes=1000-")
	if r.status != 206 || r.err != nil || !bytes.Equal(r.body, whole[1000:]) {
		t.Errorf("resume: %d %v", r.status, r.err)
	}
	log := s.RequestsFor(rootfsPath)
	if len(log) != 3 || log[0].Bytes != 1000 || log[1].Bytes != 1000 || log[2].Bytes != int64(len(whole)-1000) {
		t.Errorf("log %+v", log)
	}
	if got := s.BytesSent(rootfsPath); got != int64(len(whole)+1000) {
		t.Errorf("BytesSent %d", got)
	}
	// Dropping before any body byte.
	s.DropAfter(rootfsPath, 0, 1)
	if r := get(t, c, s.URL+rootfsPath); len(r.body) != 0 || r.err == nil {
		t.Errorf("drop at 0: %d bytes, %v", len(r.body), r.err)
	}
}

func TestLongContentLength(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	whole, _ := s.Get(rootfsPath)
	s.LongContentLength(rootfsPath, 100, 1)
	resp, err := c.Get(s.URL + rootfsPath)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ContentLength != int64(len(whole)+100) || !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(body, whole) {
		t.Errorf("Content-Length %d for %d bytes; got %d bytes, %v", resp.ContentLength, len(whole), len(body), err)
	}
	if r := get(t, c, s.URL+rootfsPath); r.err != nil || len(r.body) != len(whole) {
		t.Errorf("second request: %v", r.err)
	}
}

func TestIgnoreRange(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	whole, _ := s.Get(rootfsPath)
	s.IgnoreRange(rootfsPath, 0)
	r := get(t, c, s.URL+rootfsPath, "Range", "bytes=1000-")
	if r.status != 200 || !bytes.Equal(r.body, whole) {
		t.Errorf("%d, %d bytes", r.status, len(r.body))
	}
	if log := s.RequestsFor(rootfsPath); log[0].Range != "bytes=1000-" {
		t.Errorf("the log lost the Range the client sent: %+v", log[0])
	}
}

func TestStall(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	whole, _ := s.Get(rootfsPath)
	const pause = 300 * time.Millisecond
	s.Stall(rootfsPath, 500, pause, 1)
	resp, err := c.Get(s.URL + rootfsPath)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 500)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if waited := time.Since(start); waited < pause*8/10 {
		t.Errorf("the rest came after %v, want a stall of %v", waited, pause)
	}
	if err != nil || !bytes.Equal(append(first, rest...), whole) {
		t.Errorf("after the stall: %v", err)
	}

	// A client that gives up ends the stall; the server does not hang.
	s.Stall(rootfsPath, 10, time.Hour, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+rootfsPath, nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stalled read: %v, want the client's deadline", err)
	}
}

func TestTrickle(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	s.Set("/slow", bytes.Repeat([]byte("x"), 1000))
	s.Trickle("/slow", 100, 20*time.Millisecond, 1)
	start := time.Now()
	resp, err := c.Get(s.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	reads := 0
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			reads++
			total += n
		}
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	if total != 1000 || reads < 5 {
		t.Errorf("%d bytes in %d reads, want 1000 bytes arriving in pieces", total, reads)
	}
	if d := time.Since(start); d < 9*20*time.Millisecond {
		t.Errorf("trickled body took %v, want at least 180ms", d)
	}
}

func TestRateLimit(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	s.Set("/big", make([]byte, 200<<10))
	s.SetRateLimit(1 << 20) // 200 KiB at 1 MiB/s: at least 195 ms
	start := time.Now()
	if r := get(t, c, s.URL+"/big"); len(r.body) != 200<<10 {
		t.Fatalf("%d bytes", len(r.body))
	}
	if d := time.Since(start); d < 180*time.Millisecond {
		t.Errorf("200 KiB at 1 MiB/s took %v", d)
	}
	// The limit is shared: two transfers at once take as long as both.
	start = time.Now()
	done := make(chan struct{})
	go func() { get(t, c, s.URL+"/big"); close(done) }()
	get(t, c, s.URL+"/big")
	<-done
	if d := time.Since(start); d < 360*time.Millisecond {
		t.Errorf("2 x 200 KiB at a shared 1 MiB/s took %v", d)
	}
	s.SetRateLimit(0)
}

func TestHTTPSDown(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	if r := get(t, c, s.URL+"/meta/1.0/index-system"); r.status != 200 {
		t.Fatal(r.status)
	}
	// The shell template fell back from https://SERVER/ to http://SERVER/:
	// the same host and port.
	if s.HTTPURL != "http://"+s.Host {
		t.Errorf("HTTPURL %s is not on Host %s", s.HTTPURL, s.Host)
	}
	s.SetHTTPSDown(true)
	if _, err := c.Get(s.URL + "/meta/1.0/index-system"); err == nil {
		t.Error("HTTPS still answers while down")
	}
	if r := get(t, c, s.HTTPURL+"/meta/1.0/index-system"); r.status != 200 {
		t.Errorf("plain HTTP while HTTPS is down: %d", r.status)
	}
	s.SetHTTPDown(true)
	if _, err := c.Get(s.HTTPURL + "/meta/1.0/index-system"); err == nil {
		t.Error("HTTP still answers while down")
	}
	s.SetHTTPSDown(false)
	s.SetHTTPDown(false)
	if r := get(t, c, s.URL+"/meta/1.0/index-system"); r.status != 200 {
		t.Errorf("HTTPS back up: %d", r.status)
	}
}

func TestMirror(t *testing.T) {
	s := newTestServer(t)
	m, err := NewMirror(s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := client(t, s.CAFile)
	whole, _ := s.Get(rootfsPath)

	r := get(t, c, s.URL+rootfsPath)
	if r.status != 302 || r.header.Get("Location") != m.URL+rootfsPath {
		t.Fatalf("primary: %d Location %q, want a redirect to %s", r.status, r.header.Get("Location"), m.URL)
	}
	if r := get(t, c, m.URL+rootfsPath); r.status != 200 || !bytes.Equal(r.body, whole) {
		t.Errorf("mirror: %d", r.status)
	}
	// The index is not redirected; a request saying no GeoIP is not either.
	if r := get(t, c, s.URL+"/meta/1.0/index-system.7"); r.status != 200 {
		t.Errorf("index: %d", r.status)
	}
	if r := get(t, c, s.URL+rootfsPath, "X-LXC-No-GeoIP", "on"); r.status != 200 || !bytes.Equal(r.body, whole) {
		t.Errorf("no GeoIP: %d", r.status)
	}

	// Tampering with the mirror leaves the primary alone; the mirror's
	// signature is the primary's, so it no longer matches.
	m.Set(rootfsPath, []byte("garbage"))
	r = get(t, c, m.URL+rootfsPath)
	sig := get(t, c, m.URL+rootfsPath+".asc")
	if string(r.body) != "garbage" || verify(t, s.KeyFile, r.body, sig.body) == nil {
		t.Errorf("tampered mirror: %q", r.body)
	}
	if b, _ := s.Get(rootfsPath); !bytes.Equal(b, whole) {
		t.Error("tampering with the mirror changed the primary")
	}
	if n := len(m.RequestsFor(rootfsPath)); n != 2 {
		t.Errorf("mirror logged %d requests", n)
	}
	if log := s.RequestsFor(rootfsPath); log[0].Status != 302 || log[0].Location != m.URL+rootfsPath {
		t.Errorf("primary log %+v", log[0])
	}

	// Redirecting to the mirror over plain HTTP, and following it.
	s.RedirectImages(m.HTTPURL)
	follow := client(t, s.CAFile)
	follow.CheckRedirect = nil
	if r := get(t, follow, s.URL+"/"+rootfsPath); r.status != 200 || string(r.body) != "garbage" {
		t.Errorf("followed to the HTTP mirror: %d %q", r.status, r.body)
	}
	if log := m.RequestsFor(rootfsPath); log[len(log)-1].TLS {
		t.Error("the HTTP redirect reached the mirror over HTTPS")
	}
	s.RedirectImages("")
	if r := get(t, c, s.URL+rootfsPath); r.status != 200 {
		t.Errorf("redirects off: %d", r.status)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEndlessBody(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	whole, _ := s.Get(rootfsPath)
	s.EndlessBody(rootfsPath, 1)
	resp, err := c.Get(s.URL + rootfsPath)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
		t.Errorf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	// Far more than the file: its bytes, then zeros.
	const n = 4 << 20
	got, err := io.ReadAll(io.LimitReader(resp.Body, n))
	resp.Body.Close()
	if err != nil || len(got) != n || !bytes.Equal(got[:len(whole)], whole) || bytes.ContainsFunc(got[len(whole):], func(r rune) bool { return r != 0 }) {
		t.Errorf("read %d bytes, %v", len(got), err)
	}
	// Used up: the next one is the file.
	if r := get(t, c, s.URL+rootfsPath); r.status != 200 || !bytes.Equal(r.body, whole) {
		t.Errorf("after: %d, %d bytes", r.status, len(r.body))
	}
}

func TestRedirectImagesToHTTP(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	s.RedirectImagesToHTTP(true)
	r := get(t, c, s.URL+rootfsPath)
	if r.status != 302 || r.header.Get("Location") != s.HTTPURL+rootfsPath {
		t.Fatalf("%d Location %q", r.status, r.header.Get("Location"))
	}
	if r := get(t, c, s.HTTPURL+rootfsPath); r.status != 200 {
		t.Errorf("plain HTTP: %d", r.status)
	}
	if r := get(t, c, s.URL+rootfsPath, "X-LXC-No-GeoIP", "on"); r.status != 200 {
		t.Errorf("no GeoIP: %d", r.status)
	}
	if r := get(t, c, s.URL+"/meta/1.0/index-system.7"); r.status != 200 {
		t.Errorf("index: %d", r.status)
	}
	s.SetPrefix("/lxc")
	if r := get(t, c, s.URL+"/lxc"+rootfsPath); r.status != 302 || r.header.Get("Location") != s.HTTPURL+"/lxc"+rootfsPath {
		t.Errorf("with a prefix: %d Location %q", r.status, r.header.Get("Location"))
	}
	s.RedirectImagesToHTTP(false)
	if r := get(t, c, s.URL+"/lxc"+rootfsPath); r.status != 200 {
		t.Errorf("off: %d", r.status)
	}
}

func TestSetPrefix(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	whole, _ := s.Get(rootfsPath)
	s.SetPrefix("lxc-images/")
	s.FailN(rootfsPath, 503, 1)
	if r := get(t, c, s.URL+rootfsPath); r.status != 404 {
		t.Errorf("outside the prefix: %d", r.status)
	}
	if r := get(t, c, s.URL+"/lxc-imagesX"+rootfsPath); r.status != 404 {
		t.Errorf("beside the prefix: %d", r.status)
	}
	// The fault was left for the first request below the prefix.
	if r := get(t, c, s.URL+"/lxc-images"+rootfsPath); r.status != 503 {
		t.Errorf("fault below the prefix: %d", r.status)
	}
	if r := get(t, c, s.URL+"//lxc-images/"+rootfsPath); r.status != 200 || !bytes.Equal(r.body, whole) {
		t.Errorf("below the prefix: %d", r.status)
	}
	if r := get(t, c, s.HTTPURL+"/lxc-images/meta/1.0/index-system.7"); r.status != 200 {
		t.Errorf("plain HTTP below the prefix: %d", r.status)
	}
	// The request outside is logged as it came; those below without the
	// prefix.
	log := s.RequestsFor(rootfsPath)
	if len(log) != 3 || log[0].Status != 404 || log[0].RawPath != rootfsPath || log[2].RawPath != "//lxc-images/"+rootfsPath {
		t.Errorf("log %+v", log)
	}
	s.SetPrefix("")
	if r := get(t, c, s.URL+rootfsPath); r.status != 200 {
		t.Errorf("prefix removed: %d", r.status)
	}
}

func TestUntrustedCertificate(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	s.SetUntrustedCertificate(true)
	_, err := c.Get(s.URL + "/meta/1.0/index-system.7")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("HTTPS with the untrusted certificate: %v", err)
	}
	if r := get(t, c, s.HTTPURL+"/meta/1.0/index-system.7"); r.status != 200 {
		t.Errorf("plain HTTP: %d", r.status)
	}
	s.SetUntrustedCertificate(false)
	c.CloseIdleConnections()
	if r := get(t, c, s.URL+"/meta/1.0/index-system.7"); r.status != 200 {
		t.Errorf("trusted again: %d", r.status)
	}
}

package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// lockedBuffer collects what concurrent downloads write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rig is a test image server and what a client of it reports.
type rig struct {
	t       *testing.T
	srv     *fetchtest.Server
	img     fetchtest.Image
	warn    *lockedBuffer
	verbose *lockedBuffer
	dir     string // the download directory
}

func newRig(t *testing.T) *rig {
	t.Helper()
	img := fetchtest.DefaultImage()
	srv, err := fetchtest.NewServer(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &rig{t: t, srv: srv, img: img, warn: &lockedBuffer{}, verbose: &lockedBuffer{}, dir: t.TempDir()}
}

// options validate against the server's key, trust its CA and use short
// waits, so that retries and timeouts take milliseconds.
func (r *rig) options() fetch.Options {
	r.t.Helper()
	kr, err := fetch.ReadKeyring(r.srv.KeyFile)
	if err != nil {
		r.t.Fatal(err)
	}
	pool, err := fetchtest.CertPool()
	if err != nil {
		r.t.Fatal(err)
	}
	return fetch.Options{
		Server:         r.srv.Host,
		Version:        "6.0.0",
		Validate:       true,
		Keyring:        kr,
		Warn:           r.warn,
		Verbose:        r.verbose,
		RootCAs:        pool,
		ConnectTimeout: 5 * time.Second,
		IdleTimeout:    5 * time.Second,
		RetryWait:      time.Millisecond,
	}
}

func (r *rig) client(edit ...func(*fetch.Options)) *fetch.Client {
	r.t.Helper()
	o := r.options()
	for _, e := range edit {
		e(&o)
	}
	c, err := fetch.New(o)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// entry is the default image's index line.
func (r *rig) entry() compat.Entry {
	return compat.Entry{Dist: r.img.Dist, Release: r.img.Release, Arch: r.img.Arch,
		Variant: r.img.Variant, Build: r.img.Build, Path: fetchtest.ImageDir(r.img)}
}

func (r *rig) path(name string) string { return fetchtest.ImageDir(r.img) + name }

func (r *rig) served(name string) []byte {
	r.t.Helper()
	b, ok := r.srv.Get(r.path(name))
	if !ok {
		r.t.Fatalf("server has no %s", name)
	}
	return b
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, server := range []string{"", "host?x", "user@host", "https://", "host:99999", "ftp://host"} {
		if _, err := fetch.New(fetch.Options{Server: server}); err == nil || !strings.HasPrefix(err.Error(), "invalid server") {
			t.Errorf("server %q: %v", server, err)
		}
	}
	if _, err := fetch.New(fetch.Options{Server: "example.org", Validate: true}); err == nil {
		t.Error("validation without keys accepted")
	}
	for _, server := range []string{"example.org", "example.org:8443", "https://example.org/", "[::1]:443", "example.org/lxc-images", "http://example.org:8080/lxc"} {
		if _, err := fetch.New(fetch.Options{Server: server}); err != nil {
			t.Errorf("server %q: %v", server, err)
		}
	}
}

func TestIndex(t *testing.T) {
	r := newRig(t)
	ix, err := r.client().Index(context.Background(), compat.System)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Entries) != 1 || ix.Entries[0] != r.entry() {
		t.Errorf("index entries %+v, want %+v", ix.Entries, r.entry())
	}
	reqs := r.srv.Requests()
	var paths []string
	for _, q := range reqs {
		paths = append(paths, q.Path)
		if q.UserAgent != "lxc/6.0.0 compat:7" {
			t.Errorf("%s: User-Agent %q", q.Path, q.UserAgent)
		}
		if !q.TLS {
			t.Errorf("%s over plain HTTP", q.Path)
		}
	}
	// The index and its signature are asked for at once, in either order.
	sort.Strings(paths)
	want := []string{"/meta/1.0/index-system.7", "/meta/1.0/index-system.7.asc"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("requests %q, want %q", paths, want)
	}
	lines := strings.SplitAfter(r.verbose.String(), "\n")
	sort.Strings(lines)
	if got := strings.Join(lines, ""); got != "Download file: "+r.srv.URL+"/meta/1.0/index-system.7\nDownload file: "+r.srv.URL+"/meta/1.0/index-system.7.asc\n" {
		t.Errorf("verbose output:\n%s", got)
	}
	if r.warn.String() != "" {
		t.Errorf("warnings: %s", r.warn)
	}
}

func TestIndexUserMode(t *testing.T) {
	r := newRig(t)
	if _, err := r.client().Index(context.Background(), compat.User); err != nil {
		t.Fatal(err)
	}
	if n := len(r.srv.RequestsFor("/meta/1.0/index-user.7.asc")); n != 1 {
		t.Errorf("%d requests for index-user.7.asc", n)
	}
}

func TestIndexWithoutValidation(t *testing.T) {
	r := newRig(t)
	r.srv.Remove("/meta/1.0/index-system.7.asc")
	r.srv.Set("/meta/1.0/index-system.7", []byte("unsigned;but;fine;default;1;/images/x/\n"))
	ix, err := r.client(func(o *fetch.Options) { o.Validate = false; o.Keyring = nil }).Index(context.Background(), compat.System)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Entries) != 1 || ix.Entries[0].Dist != "unsigned" {
		t.Errorf("entries %+v", ix.Entries)
	}
	for _, q := range r.srv.Requests() {
		if strings.HasSuffix(q.Path, ".asc") {
			t.Errorf("fetched %s without validation", q.Path)
		}
	}
}

func TestIndexFallsBackToPlainIndex(t *testing.T) {
	for _, missing := range []string{"/meta/1.0/index-system.7", "/meta/1.0/index-system.7.asc"} {
		t.Run(filepath.Base(missing), func(t *testing.T) {
			r := newRig(t)
			r.srv.Remove(missing)
			if _, err := r.client().Index(context.Background(), compat.System); err != nil {
				t.Fatal(err)
			}
			if n := len(r.srv.RequestsFor("/meta/1.0/index-system.asc")); n != 1 {
				t.Errorf("%d requests for the plain index's signature", n)
			}
		})
	}
}

func TestIndexErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("missing", func(t *testing.T) {
		r := newRig(t)
		for _, p := range fetchtest.IndexPaths() {
			r.srv.Remove(p)
		}
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "404", r.srv.URL+"/meta/1.0/index-system")
		if fetch.IsUnreachable(err) {
			t.Error("404 counted as unreachable")
		}
		if n := len(r.srv.RequestsFor("/meta/1.0/index-system")); n != 1 {
			t.Errorf("404 asked %d times", n)
		}
	})
	t.Run("plain signature missing", func(t *testing.T) {
		r := newRig(t)
		r.srv.Remove("/meta/1.0/index-system.7")
		r.srv.Remove("/meta/1.0/index-system.asc")
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "404", "index-system.asc")
	})
	t.Run("tampered", func(t *testing.T) {
		r := newRig(t)
		r.srv.Set("/meta/1.0/index-system.7", []byte(fetchtest.Index(r.img)+"evil;x;amd64;default;1;/images/evil/\n"))
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "Invalid signature for")
		var se *fetch.SignatureError
		if !errors.As(err, &se) {
			t.Errorf("%v is not a *SignatureError", err)
		}
		if fetch.IsUnreachable(err) {
			t.Error("bad signature counted as unreachable")
		}
		// A forged compat index must not be answered by the plain one.
		if n := len(r.srv.RequestsFor("/meta/1.0/index-system")); n != 0 {
			t.Error("fell back to the plain index after a bad signature")
		}
	})
	t.Run("other key", func(t *testing.T) {
		r := newRig(t)
		other := newRig(t)
		_, err := r.client(func(o *fetch.Options) { o.Keyring = other.options().Keyring }).Index(ctx, compat.System)
		wantErr(t, err, "Invalid signature for")
	})
	t.Run("500", func(t *testing.T) {
		r := newRig(t)
		r.srv.Fail("/meta/1.0/index-system.7", 500)
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "500", r.srv.URL+"/meta/1.0/index-system.7")
		if !fetch.IsUnreachable(err) {
			t.Error("lasting 500 not counted as unreachable")
		}
		if n := len(r.srv.RequestsFor("/meta/1.0/index-system.7")); n != fetch.DefaultAttempts {
			t.Errorf("%d attempts, want %d", n, fetch.DefaultAttempts)
		}
	})
	t.Run("500 then success", func(t *testing.T) {
		r := newRig(t)
		r.srv.FailN("/meta/1.0/index-system.7", 503, 2)
		if _, err := r.client().Index(ctx, compat.System); err != nil {
			t.Fatal(err)
		}
		if n := len(r.srv.RequestsFor("/meta/1.0/index-system.7")); n != 3 {
			t.Errorf("%d requests, want 3", n)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetIndex("debian;bookworm\n")
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "parse index")
	})
	t.Run("too large", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetIndex(strings.Repeat("x", 33<<20))
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "larger than")
		if fetch.IsUnreachable(err) {
			t.Error("size limit counted as unreachable")
		}
	})
}

// TestIndexOnlyFromPrimary: a server that redirects the index to another
// host is not followed there, and the index is asked for with the header
// that tells the real server not to.
func TestIndexOnlyFromPrimary(t *testing.T) {
	r := newRig(t)
	redirector := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		if q.Header.Get("X-LXC-No-GeoIP") != "on" {
			t.Errorf("%s asked without X-LXC-No-GeoIP", q.URL.Path)
		}
		http.Redirect(w, q, r.srv.URL+q.URL.Path, http.StatusFound)
	}))
	defer redirector.Close()
	_, err := r.client(func(o *fetch.Options) {
		o.Server = redirector.Listener.Addr().String()
		o.RootCAs.AddCert(redirector.Certificate())
	}).Index(context.Background(), compat.System)
	wantErr(t, err, "download https://"+redirector.Listener.Addr().String()+"/meta/1.0/index-system.7: redirected to "+r.srv.URL, "only taken from the primary server")
	if n := len(r.srv.Requests()); n != 0 {
		t.Errorf("%d requests reached the other host", n)
	}
}

func TestUnreachable(t *testing.T) {
	ctx := context.Background()
	t.Run("refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		r := newRig(t)
		_, err = r.client(func(o *fetch.Options) { o.Server = addr }).Index(ctx, compat.System)
		wantErr(t, err, "https://"+addr+"/meta/1.0/index-system.7", "3 attempts")
		if !fetch.IsUnreachable(err) {
			t.Errorf("%v not unreachable", err)
		}
		var ne *fetch.NetError
		if !errors.As(err, &ne) || ne.Attempts != 3 {
			t.Errorf("%#v", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		// Fatal, not a server that is down: a cached copy must not
		// stand in for it without the user looking.
		r := newRig(t)
		_, err := r.client(func(o *fetch.Options) { o.RootCAs = nil; o.Validate = false }).Index(ctx, compat.System)
		wantErr(t, err, "certificate signed by unknown authority", "--ca-cert")
		if fetch.IsUnreachable(err) {
			t.Errorf("%v is unreachable", err)
		}
		if n := len(r.srv.Requests()); n != 0 {
			t.Errorf("%d requests got through", n)
		}
	})
	t.Run("dns", func(t *testing.T) {
		r := newRig(t)
		// A DNS server that refuses every query.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := pc.LocalAddr().String()
		pc.Close()
		_, err = r.client(func(o *fetch.Options) {
			o.Server = "images.invalid"
			o.Nameservers = []string{dead}
		}).Index(ctx, compat.System)
		wantErr(t, err, "lookup images.invalid via "+dead)
		if !fetch.IsUnreachable(err) {
			t.Errorf("%v not unreachable", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		r := newRig(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := r.client().Index(cctx, compat.System)
		if !errors.Is(err, context.Canceled) || fetch.IsUnreachable(err) {
			t.Errorf("%v", err)
		}
	})
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&fetch.StatusError{URL: "u", StatusCode: 404}, false},
		{&fetch.StatusError{URL: "u", StatusCode: 502}, true},
		{fmt.Errorf("x: %w", &fetch.NetError{URL: "u", Err: errors.New("eof")}), true},
		{&fetch.SignatureError{File: "f", Reason: errors.New("bad")}, false},
		{&fetch.ChecksumError{File: "f"}, false},
		{context.Canceled, false},
		{os.ErrNotExist, false},
	} {
		if got := fetch.IsUnreachable(c.err); got != c.want {
			t.Errorf("IsUnreachable(%v) = %v", c.err, got)
		}
	}
}

// TestIdleTimeout: a server that stops sending is abandoned after the idle
// timeout, and the download resumes.
func TestIdleTimeout(t *testing.T) {
	r := newRig(t)
	p := "/meta/1.0/index-system.7"
	r.srv.Stall(p, 10, 10*time.Second, 1)
	c := r.client(func(o *fetch.Options) { o.IdleTimeout = 200 * time.Millisecond })
	start := time.Now()
	if _, err := c.Index(context.Background(), compat.System); err != nil {
		t.Fatalf("%v\n%+v", err, r.srv.Requests())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v: the stall was waited out", d)
	}
	reqs := r.srv.RequestsFor(p)
	if len(reqs) != 2 || reqs[1].Range != "bytes=10-" {
		t.Errorf("requests %+v", reqs)
	}

	r.srv.Stall(p, 0, 10*time.Second, 0)
	_, err := c.Index(context.Background(), compat.System)
	wantErr(t, err, "no data received for 200ms")
	var ie *fetch.IdleError
	if !errors.As(err, &ie) || !fetch.IsUnreachable(err) {
		t.Errorf("%#v", err)
	}
}

// TestCACert: --ca-cert replaces every other root.
func TestCACert(t *testing.T) {
	r := newRig(t)
	if _, err := r.client(func(o *fetch.Options) { o.RootCAs = nil; o.CACert = r.srv.CAFile }).Index(context.Background(), compat.System); err != nil {
		t.Fatal(err)
	}
}

// TestConnectTimeout: a server that never accepts the connection is given
// up after the connect timeout, on each attempt.
func TestConnectTimeout(t *testing.T) {
	r := newRig(t)
	var dials atomic.Int32
	start := time.Now()
	_, err := r.client(func(o *fetch.Options) {
		o.Validate, o.Keyring = false, nil
		o.ConnectTimeout = 100 * time.Millisecond
		o.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			<-ctx.Done() // a black hole
			return nil, ctx.Err()
		}
	}).Index(context.Background(), compat.System)
	wantErr(t, err, r.srv.URL+"/meta/1.0/index-system.7", "3 attempts")
	if !fetch.IsUnreachable(err) {
		t.Errorf("%v not unreachable", err)
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("%d connections tried", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

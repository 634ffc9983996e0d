package fetch_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// checkGone checks that a failed download of name left nothing of it in
// the download directory: no partial file, no sidecar. (The other file's
// download is stopped and kept for the next run to resume, as always.)
func (r *rig) checkGone(name string) {
	r.t.Helper()
	for _, n := range r.dirFiles() {
		if strings.HasPrefix(n, name) {
			r.t.Errorf("left behind: %s", n)
		}
	}
}

// diskSafety makes a client stop after about 512 MiB written, by a disk
// reserve just below the free space: should the limit under test fail,
// an endless body then fails the test instead of filling the disk.
func (r *rig) diskSafety(o *fetch.Options) {
	r.t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.dir, &st); err != nil {
		r.t.Fatal(err)
	}
	o.DiskReserve = max(int64(st.Bavail)*int64(st.Bsize)-512<<20, 1)
}

// TestSizeLimit: a file larger than its limit is refused, from its
// Content-Length before the body is read or, with none, when the body
// grows past the limit; the error names the file, the limit and the
// value, nothing is retried and nothing is left.
func TestSizeLimit(t *testing.T) {
	t.Run("announced", func(t *testing.T) {
		r := newRig(t)
		data := r.bigRootfs()
		_, err := r.fetch(r.client(func(o *fetch.Options) { o.MaxRootfsSize = 1000 }))
		wantErr(t, err, "rootfs.tar.xz is larger than its limit of 1000 bytes", "--max-rootfs-size", "the server announced 1048576 bytes", r.srv.URL)
		var sl *fetch.SizeLimitError
		if !errors.As(err, &sl) || !sl.Announced || sl.Size != int64(len(data)) || sl.Limit != 1000 || fetch.IsUnreachable(err) {
			t.Errorf("%#v", err)
		}
		if n := len(r.srv.RequestsFor(r.path("rootfs.tar.xz"))); n != 1 {
			t.Errorf("%d requests", n)
		}
		r.checkGone("rootfs.tar.xz")
	})
	t.Run("endless body", func(t *testing.T) {
		r := newRig(t)
		r.srv.EndlessBody(r.path("rootfs.tar.xz"), 0)
		_, err := r.fetch(r.client(r.diskSafety, func(o *fetch.Options) { o.MaxRootfsSize = 3 << 20 }))
		wantErr(t, err, "rootfs.tar.xz is larger than its limit of 3 MiB (3145728 bytes; --max-rootfs-size): more than 3145728 bytes arrived")
		var sl *fetch.SizeLimitError
		if !errors.As(err, &sl) || sl.Announced {
			t.Errorf("%#v", err)
		}
		if n := len(r.srv.RequestsFor(r.path("rootfs.tar.xz"))); n != 1 {
			t.Errorf("%d requests", n)
		}
		r.checkGone("rootfs.tar.xz")
	})
	t.Run("meta", func(t *testing.T) {
		r := newRig(t)
		_, err := r.fetch(r.client(func(o *fetch.Options) { o.MaxMetaSize = 100 }))
		wantErr(t, err, "meta.tar.xz is larger than its limit of 100 bytes", "--max-meta-size")
		r.checkGone("meta.tar.xz")
	})
	t.Run("defaults", func(t *testing.T) {
		r := newRig(t)
		r.srv.EndlessBody(r.path("meta.tar.xz"), 0)
		_, err := r.fetch(r.client(r.diskSafety))
		wantErr(t, err, "meta.tar.xz is larger than its limit of 64 MiB")
		r.checkGone("meta.tar.xz")
	})
	// A mirror that sends too much is left for the primary server, as a
	// mirror that fails is; what it sent is thrown away.
	t.Run("mirror endless", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.EndlessBody(r.path("rootfs.tar.xz"), 0)
		img, err := r.fetch(r.client(r.diskSafety, func(o *fetch.Options) { o.MaxRootfsSize = 1 << 20 }))
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		if w := r.warn.String(); !strings.Contains(w, "WARNING: Mirror "+m.Host+" failed to serve rootfs.tar.xz (download "+m.URL) || !strings.Contains(w, "--max-rootfs-size") {
			t.Errorf("warnings: %s", w)
		}
		// The primary server was asked for the whole file at once: the
		// mirror's bytes were not kept to be continued.
		reqs := r.srv.RequestsFor(r.path("rootfs.tar.xz"))
		if len(reqs) != 2 || reqs[1].NoGeoIP != "on" || reqs[1].Range != "" || reqs[1].Status != 200 {
			t.Errorf("primary asked %+v", reqs)
		}
	})
	t.Run("mirror announces too much", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.Set(r.path("rootfs.tar.xz"), make([]byte, 2<<20))
		img, err := r.fetch(r.client(func(o *fetch.Options) { o.MaxRootfsSize = 1 << 20 }))
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		if w := r.warn.String(); !strings.Contains(w, "the server announced 2097152 bytes") {
			t.Errorf("warnings: %s", w)
		}
	})
}

// mountTmpfs mounts a tmpfs of size bytes on dir for the test.
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// TestDiskReserve: a download stops before the free space of its
// filesystem falls below the reserve: at once when the announced size
// does not fit, while the body comes when there is none. It needs a small
// filesystem of its own, which only root can mount.
func TestDiskReserve(t *testing.T) {
	t.Run("announced", func(t *testing.T) {
		r := newRig(t)
		r.bigRootfs()
		mountTmpfs(t, r.dir, 2<<20)
		// The meta tarball fits, the rootfs never does.
		_, err := r.fetch(r.client(func(o *fetch.Options) { o.DiskReserve = 3 << 19 }))
		wantErr(t, err, "rootfs.tar.xz.partial: 1048576 more bytes would leave less free space", "than the reserve of 1.5 MiB (1572864 bytes; --keep-free)")
		var dr *fetch.DiskReserveError
		if !errors.As(err, &dr) || !errors.Is(err, syscall.ENOSPC) || fetch.IsUnreachable(err) {
			t.Errorf("%#v", err)
		}
		if n := r.contentSent(r.path("rootfs.tar.xz")); n > 1<<20 {
			t.Errorf("%d bytes of the rootfs sent", n)
		}
		r.checkGone("rootfs.tar.xz")
	})
	t.Run("endless body, default reserve", func(t *testing.T) {
		// 5% of 32 MiB is kept free, looked at every 0.8 MiB.
		r := newRig(t)
		r.srv.EndlessBody(r.path("rootfs.tar.xz"), 0)
		mountTmpfs(t, r.dir, 32<<20)
		_, err := r.fetch(r.client())
		wantErr(t, err, "rootfs.tar.xz.partial: free space fell to", "below the reserve of 1.6 MiB (1677721 bytes; --keep-free)")
		var dr *fetch.DiskReserveError
		if !errors.As(err, &dr) || dr.Free < dr.Reserve/2 {
			t.Errorf("%#v", err)
		}
		r.checkGone("rootfs.tar.xz")
	})
	t.Run("mirror endless", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.EndlessBody(r.path("rootfs.tar.xz"), 0)
		mountTmpfs(t, r.dir, 32<<20)
		img, err := r.fetch(r.client())
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		if w := r.warn.String(); !strings.Contains(w, "WARNING: Mirror "+m.Host+" failed to serve rootfs.tar.xz") || !strings.Contains(w, "--keep-free") {
			t.Errorf("warnings: %s", w)
		}
	})
	t.Run("off", func(t *testing.T) {
		r := newRig(t)
		r.srv.EndlessBody(r.path("rootfs.tar.xz"), 0)
		mountTmpfs(t, r.dir, 4<<20)
		_, err := r.fetch(r.client(func(o *fetch.Options) { o.DiskReserve = -1 }))
		wantErr(t, err, "no space left on device")
		var dr *fetch.DiskReserveError
		if errors.As(err, &dr) {
			t.Errorf("%v: the reserve was kept", err)
		}
		r.checkGone("rootfs.tar.xz")
	})
}

// TestRedirectToPlainHTTP: with validation, a mirror over plain HTTP is
// used (what it sends is verified); without, a redirect to plain HTTP is
// never followed, and the file comes from the primary server over HTTPS.
func TestRedirectToPlainHTTP(t *testing.T) {
	t.Run("validating", func(t *testing.T) {
		r := newRig(t)
		r.srv.RedirectImagesToHTTP(true)
		img, err := r.fetch(r.client())
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		for _, name := range []string{"meta.tar.xz", "rootfs.tar.xz"} {
			plain := 0
			for _, q := range r.srv.RequestsFor(r.path(name)) {
				if !q.TLS && q.Status == 200 {
					plain++
				}
			}
			if plain != 1 {
				t.Errorf("%s: %d answers over plain HTTP", name, plain)
			}
		}
	})
	t.Run("validating, bad copy", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		r.srv.RedirectImages(m.HTTPURL)
		m.Set(r.path("rootfs.tar.xz"), []byte("mirror garbage"))
		img, err := r.fetch(r.client())
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		if w := r.warn.String(); !strings.Contains(w, "WARNING: Mirror http://"+m.Host+" served a copy of rootfs.tar.xz that failed verification") {
			t.Errorf("warnings: %s", w)
		}
	})
	t.Run("not validating", func(t *testing.T) {
		r := newRig(t)
		r.srv.RedirectImagesToHTTP(true)
		img, err := r.fetch(r.client(func(o *fetch.Options) { o.Validate, o.Keyring = false, nil }))
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		for _, q := range r.srv.Requests() {
			if !q.TLS {
				t.Errorf("%s asked over plain HTTP", q.Path)
			}
		}
		if w := r.warn.String(); !strings.Contains(w, "WARNING: Mirror http://"+r.srv.Host+" failed to serve rootfs.tar.xz (download "+r.srv.URL+r.path("rootfs.tar.xz")+": redirected to plain HTTP (http://"+r.srv.Host+"), which is not followed without validation); downloading it from "+r.srv.URL) {
			t.Errorf("warnings: %s", w)
		}
	})
	t.Run("index", func(t *testing.T) {
		// The index is taken from the primary server as it was named:
		// not over plain HTTP, even from the same host and port.
		r := newRig(t)
		var redirector *httptest.Server
		redirector = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
			http.Redirect(w, q, "http://"+redirector.Listener.Addr().String()+q.URL.Path, http.StatusFound)
		}))
		defer redirector.Close()
		addr := redirector.Listener.Addr().String()
		_, err := r.client(func(o *fetch.Options) {
			o.Server = addr
			o.RootCAs.AddCert(redirector.Certificate())
		}).Index(context.Background(), compat.System)
		wantErr(t, err, "download https://"+addr+"/meta/1.0/index-system.7: redirected to http://"+addr+": this file is only taken from the primary server")
	})
}

// TestServerPrefix: with --server HOST/PREFIX every request goes below
// the prefix, the index's image paths included; the server here answers
// nothing outside it.
func TestServerPrefix(t *testing.T) {
	for _, scheme := range []string{"", "https://", "http://"} {
		t.Run(scheme, func(t *testing.T) {
			r := newRig(t)
			r.srv.SetPrefix("/lxc-images")
			c := r.client(func(o *fetch.Options) { o.Server = scheme + r.srv.Host + "/lxc-images/" })
			res, err := c.FetchIndex(context.Background(), compat.System)
			if err != nil {
				t.Fatal(err)
			}
			wantScheme := "https"
			if scheme == "http://" {
				wantScheme = "http"
			}
			if want := wantScheme + "://" + r.srv.Host + "/lxc-images/meta/1.0/index-system.7"; res.URL() != want || res.Path != "/meta/1.0/index-system.7" {
				t.Errorf("index from %s (%s), want %s", res.URL(), res.Path, want)
			}
			img, err := r.fetch(c)
			if err != nil {
				t.Fatal(err)
			}
			r.checkFetched(img)
			for _, q := range r.srv.Requests() {
				if !strings.HasPrefix(q.RawPath, "/lxc-images/") || q.Status != 200 || q.TLS != (wantScheme == "https") {
					t.Errorf("%s: %d, TLS %v", q.RawPath, q.Status, q.TLS)
				}
			}
		})
	}
	t.Run("mirror", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		r.srv.SetPrefix("/lxc")
		m.Remove(r.path("rootfs.tar.xz"))
		img, err := r.fetch(r.client(func(o *fetch.Options) { o.Server = r.srv.Host + "/lxc" }))
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		// The mirror failed, and the primary server was asked again below
		// its prefix.
		if w := r.warn.String(); !strings.Contains(w, "downloading it from "+r.srv.URL+"/lxc\n") {
			t.Errorf("warnings: %s", w)
		}
		reqs := r.srv.RequestsFor(r.path("rootfs.tar.xz"))
		if last := reqs[len(reqs)-1]; last.RawPath != "/lxc"+r.path("rootfs.tar.xz") || last.Status != 200 {
			t.Errorf("%+v", last)
		}
	})
}

// TestPlainHTTPServer: plain HTTP when asked for by an http:// server,
// with a warning that says what it costs.
func TestPlainHTTPServer(t *testing.T) {
	t.Run("validating", func(t *testing.T) {
		r := newRig(t)
		c := r.client(func(o *fetch.Options) { o.Server = r.srv.HTTPURL })
		if _, err := c.Index(context.Background(), compat.System); err != nil {
			t.Fatal(err)
		}
		img, err := r.fetch(c)
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		for _, q := range r.srv.Requests() {
			if q.TLS {
				t.Errorf("%s over HTTPS", q.Path)
			}
		}
		want := "WARNING: Using plain HTTP for " + r.srv.HTTPURL + ", as asked: signatures still prove every file genuine, but anyone on the path can hold back updates or replay older signed files\n"
		if w := r.warn.String(); w != want {
			t.Errorf("warnings %q, want %q", w, want)
		}
	})
	t.Run("not validating", func(t *testing.T) {
		r := newRig(t)
		r.srv.RedirectImagesToHTTP(true) // the same scheme: followed
		img, err := r.fetch(r.client(func(o *fetch.Options) { o.Server, o.Validate, o.Keyring = r.srv.HTTPURL, false, nil }))
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		if w := r.warn.String(); w != "WARNING: Using plain HTTP for "+r.srv.HTTPURL+" without validation: anyone on the path can change anything downloaded\n" {
			t.Errorf("warnings %q", w)
		}
	})
}

// TestIndexAge: an index signed longer ago than the limit is refused,
// naming the date and the limit; the signature's time is returned.
func TestIndexAge(t *testing.T) {
	ctx := context.Background()
	day := 24 * time.Hour
	t.Run("fresh", func(t *testing.T) {
		r := newRig(t)
		signed := time.Now().Add(-13 * day).Truncate(time.Second)
		r.srv.SetIndexSignedAt(fetchtest.Index(r.img), signed)
		res, err := r.client().FetchIndex(ctx, compat.System)
		if err != nil {
			t.Fatal(err)
		}
		if !res.SignedAt.Equal(signed) || res.Server.Host != r.srv.Host || res.URL() != r.srv.URL+"/meta/1.0/index-system.7" || len(res.Index.Entries) != 1 {
			t.Errorf("%+v", res)
		}
	})
	t.Run("stale", func(t *testing.T) {
		r := newRig(t)
		signed := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
		r.srv.SetIndexSignedAt(fetchtest.Index(r.img), signed)
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "index-system.7 was signed on 2025-03-04 05:06:07 UTC, more than 14 days before this host's clock", "--max-index-age")
		var se *fetch.StaleIndexError
		if !errors.As(err, &se) || !se.SignedAt.Equal(signed) || se.MaxAge != fetch.DefaultMaxIndexAge || fetch.IsUnreachable(err) {
			t.Errorf("%#v", err)
		}
		// Not answered by the plain index.
		if n := len(r.srv.RequestsFor("/meta/1.0/index-system")); n != 0 {
			t.Errorf("%d requests for the plain index", n)
		}
	})
	t.Run("limit", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetIndexSignedAt(fetchtest.Index(r.img), time.Now().Add(-3*day))
		_, err := r.client(func(o *fetch.Options) { o.MaxIndexAge = 2 * day }).Index(ctx, compat.System)
		wantErr(t, err, "more than 2 days before")
		if _, err := r.client(func(o *fetch.Options) { o.MaxIndexAge = -1 }).Index(ctx, compat.System); err != nil {
			t.Errorf("no limit: %v", err)
		}
	})
	t.Run("clock behind", func(t *testing.T) {
		// A board without a battery boots in 1970: the signature is from
		// its future, and still good. The clock also judges certificates,
		// so this one asks for plain HTTP (see TestClockBehindTLS).
		r := newRig(t)
		// (Not before the key was made: that would be refused.)
		signed := time.Now().Truncate(time.Second)
		r.srv.SetIndexSignedAt(fetchtest.Index(r.img), signed)
		res, err := r.client(func(o *fetch.Options) {
			o.Server = r.srv.HTTPURL
			o.Now = func() time.Time { return time.Unix(0, 0) }
		}).FetchIndex(ctx, compat.System)
		if err != nil {
			t.Fatal(err)
		}
		if !res.SignedAt.Equal(signed) {
			t.Errorf("signed at %v, want %v", res.SignedAt, signed)
		}
		// The image's own files are judged by the same clock.
		img, err := r.fetch(r.client(func(o *fetch.Options) {
			o.Server = r.srv.HTTPURL
			o.Now = func() time.Time { return time.Unix(0, 0) }
		}))
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
	})
	t.Run("from the future", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetIndexSignedAt(fetchtest.Index(r.img), time.Now().Add(365*day))
		if _, err := r.client().Index(ctx, compat.System); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("not validating", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetIndexSignedAt(fetchtest.Index(r.img), time.Now().Add(-100*day))
		res, err := r.client(func(o *fetch.Options) { o.Validate, o.Keyring = false, nil }).FetchIndex(ctx, compat.System)
		if err != nil {
			t.Fatal(err)
		}
		if !res.SignedAt.IsZero() {
			t.Errorf("signed at %v without validation", res.SignedAt)
		}
	})
}

// TestClockBehindTLS: certificates are judged by Options.Now too, and a
// clock before a certificate's start is named as the cause.
func TestClockBehindTLS(t *testing.T) {
	r := newRig(t)
	_, err := r.client(func(o *fetch.Options) { o.Now = func() time.Time { return time.Unix(0, 0) } }).Index(context.Background(), compat.System)
	wantErr(t, err, "this host's clock (1970-01-01) is before the certificate's start", "set the clock", "http://")
	if fetch.IsUnreachable(err) {
		t.Errorf("%v is unreachable", err)
	}
	if n := len(r.srv.Requests()); n != 0 {
		t.Errorf("%d requests", n)
	}
}

// TestServerTextInErrors: text of the server's choosing (here a host name
// in its certificate) reaches errors and warnings with its control
// characters escaped: it cannot drive the terminal or forge a line.
func TestServerTextInErrors(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "evil"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"evil\x1b[2J\rERROR: forged\n.example"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: caKey}}}
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	r := newRig(t)
	_, err = r.client(func(o *fetch.Options) {
		o.Server = "localhost:" + port
		o.RootCAs.AddCert(cert)
	}).Index(context.Background(), compat.System)
	wantErr(t, err, `certificate is valid for evil\x1b[2J\rERROR: forged\n.example, not localhost`)
	if strings.ContainsAny(err.Error(), "\x1b\r\n") {
		t.Errorf("raw control characters in %q", err)
	}
}

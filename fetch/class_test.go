package fetch_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// wantClass checks the class (and, for ClassUnreachable, the kind) of a
// real error, also once wrapped by a caller.
func wantClass(t *testing.T, err error, class fetch.Class, kind fetch.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one of class %v", class)
	}
	for _, e := range []error{err, fmt.Errorf("caller: %w", err)} {
		if got := fetch.Classify(e); got != class {
			t.Errorf("Classify(%v) = %v, want %v", e, got, class)
		}
		if got := fetch.KindOf(e); got != kind {
			t.Errorf("KindOf(%v) = %v, want %v", e, got, kind)
		}
	}
	if got := fetch.IsNotFound(err); got != (class == fetch.ClassNotFound) {
		t.Errorf("IsNotFound(%v) = %v", err, got)
	}
}

// freePort is a port of 127.0.0.1 where nothing listens.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestClassifyUnreachable: each way of not reaching the server is
// ClassUnreachable, with its kind named.
func TestClassifyUnreachable(t *testing.T) {
	ctx := context.Background()
	t.Run("DNS", func(t *testing.T) {
		r := newRig(t)
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := pc.LocalAddr().String()
		pc.Close()
		_, err = r.client(func(o *fetch.Options) { o.Server = "images.invalid"; o.Nameservers = []string{dead} }).Index(ctx, compat.System)
		wantClass(t, err, fetch.ClassUnreachable, fetch.KindDNS)
	})
	t.Run("connect", func(t *testing.T) {
		r := newRig(t)
		addr := freePort(t)
		_, err := r.client(func(o *fetch.Options) { o.Server = addr }).Index(ctx, compat.System)
		host, port, _ := net.SplitHostPort(addr)
		wantErr(t, err, "connect "+host+" port "+port+": connection refused")
		wantClass(t, err, fetch.ClassUnreachable, fetch.KindConnect)
	})
	t.Run("TLS certificate", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetUntrustedCertificate(true)
		_, err := r.client().Index(ctx, compat.System)
		wantClass(t, err, fetch.ClassUnreachable, fetch.KindTLS)
		if fetch.IsUnreachable(err) {
			t.Errorf("%v: IsUnreachable, though a cached copy must not stand in for it", err)
		}
	})
	t.Run("TLS handshake", func(t *testing.T) {
		// A server that takes the connection and closes it during the
		// handshake: no TLS error type says so, the handshake does.
		r := newRig(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Read(make([]byte, 1))
				c.Close()
			}
		}()
		_, err = r.client(func(o *fetch.Options) { o.Server = ln.Addr().String() }).Index(ctx, compat.System)
		wantClass(t, err, fetch.ClassUnreachable, fetch.KindTLS)
	})
	t.Run("transfer", func(t *testing.T) {
		r := newRig(t)
		r.srv.Stall("/meta/1.0/index-system.7", 10, 10*time.Second, 0)
		_, err := r.client(func(o *fetch.Options) { o.IdleTimeout = 100 * time.Millisecond; o.Attempts = 1 }).Index(ctx, compat.System)
		wantClass(t, err, fetch.ClassUnreachable, fetch.KindTransfer)
	})
	t.Run("HTTP 5xx", func(t *testing.T) {
		r := newRig(t)
		r.srv.Fail("/meta/1.0/index-system.7", http.StatusServiceUnavailable)
		_, err := r.client().Index(ctx, compat.System)
		wantClass(t, err, fetch.ClassUnreachable, fetch.KindHTTP)
	})
}

// TestClassifyNotFound: a file the server does not have, and an image the
// index names whose files are gone ("image removed from the server"),
// which a signature error must not hide.
func TestClassifyNotFound(t *testing.T) {
	ctx := context.Background()
	t.Run("index", func(t *testing.T) {
		r := newRig(t)
		for _, p := range fetchtest.IndexPaths() {
			r.srv.Remove(p)
		}
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "404 Not Found")
		wantClass(t, err, fetch.ClassNotFound, fetch.KindNone)
	})
	removed := func(t *testing.T, r *rig, err error) {
		t.Helper()
		wantErr(t, err, "image removed from the server: "+r.img.Dist+" "+r.img.Release+" "+r.img.Arch+" "+r.img.Variant+" build "+r.img.Build, "404 Not Found")
		wantClass(t, err, fetch.ClassNotFound, fetch.KindNone)
		var re *fetch.RemovedError
		var se *fetch.StatusError
		if !errors.As(err, &re) || !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
			t.Errorf("%#v: not a *RemovedError of a 404", err)
		}
		r.checkNoFinal()
	}
	for _, validate := range []bool{true, false} {
		t.Run(fmt.Sprintf("directory gone, validate=%v", validate), func(t *testing.T) {
			r := newRig(t)
			for _, p := range r.srv.Paths() {
				if strings.HasPrefix(p, fetchtest.ImageDir(r.img)) {
					r.srv.Remove(p)
				}
			}
			_, err := r.fetch(r.client(func(o *fetch.Options) {
				if !validate {
					o.Validate, o.Keyring = false, nil
				}
			}))
			removed(t, r, err)
		})
	}
	t.Run("rootfs gone", func(t *testing.T) {
		r := newRig(t)
		r.srv.Remove(r.path("rootfs.tar.xz"))
		_, err := r.fetch(r.client())
		removed(t, r, err)
	})
	t.Run("gone, 410", func(t *testing.T) {
		r := newRig(t)
		r.srv.Fail(fetchtest.ImageDir(r.img), http.StatusGone)
		_, err := r.fetch(r.client())
		wantErr(t, err, "image removed from the server", "410 Gone")
		wantClass(t, err, fetch.ClassNotFound, fetch.KindNone)
	})
}

// TestClassifyVerification: files that do not prove genuine, a missing
// signature included, although the server answered it with a 404.
func TestClassifyVerification(t *testing.T) {
	ctx := context.Background()
	t.Run("checksum", func(t *testing.T) {
		r := newRig(t)
		bad := append(r.served("rootfs.tar.xz"), 0)
		r.srv.Set(r.path("rootfs.tar.xz"), bad)
		_, err := r.fetch(r.client())
		wantClass(t, err, fetch.ClassVerification, fetch.KindNone)
	})
	t.Run("index signature", func(t *testing.T) {
		r := newRig(t)
		r.srv.Set("/meta/1.0/index-system.7", []byte(fetchtest.Index(r.img)+"x;y;z;w;v;/images/x/\n"))
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "Invalid signature for index-system.7")
		wantClass(t, err, fetch.ClassVerification, fetch.KindNone)
	})
	t.Run("stale index", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetIndexSignedAt(fetchtest.Index(r.img), time.Now().Add(-30*24*time.Hour))
		_, err := r.client().Index(ctx, compat.System)
		var stale *fetch.StaleIndexError
		if !errors.As(err, &stale) {
			t.Fatalf("%v: not stale", err)
		}
		wantClass(t, err, fetch.ClassVerification, fetch.KindNone)
	})
	t.Run("no signature", func(t *testing.T) {
		r := newRig(t)
		r.srv.Remove(r.path("SHA256SUMS.asc"))
		r.srv.Remove(r.path("rootfs.tar.xz.asc"))
		_, err := r.fetch(r.client())
		wantErr(t, err, "no signature for rootfs.tar.xz", "404 Not Found")
		wantClass(t, err, fetch.ClassVerification, fetch.KindNone)
		var re *fetch.RemovedError
		if errors.As(err, &re) {
			t.Errorf("%v: said removed", err)
		}
	})
}

// TestClassifyLocalAndServer: this host's problems, and answers that
// cannot be used.
func TestClassifyLocalAndServer(t *testing.T) {
	ctx := context.Background()
	t.Run("no download directory", func(t *testing.T) {
		r := newRig(t)
		_, err := r.client().FetchImage(ctx, r.entry(), filepath.Join(r.dir, "missing"))
		wantClass(t, err, fetch.ClassLocal, fetch.KindNone)
	})
	t.Run("disk reserve", func(t *testing.T) {
		r := newRig(t)
		_, err := r.fetch(r.client(func(o *fetch.Options) { o.DiskReserve = 1 << 60 }))
		var dr *fetch.DiskReserveError
		if !errors.As(err, &dr) {
			t.Fatalf("%v: not the reserve", err)
		}
		wantClass(t, err, fetch.ClassLocal, fetch.KindNone)
	})
	t.Run("size limit", func(t *testing.T) {
		r := newRig(t)
		_, err := r.fetch(r.client(func(o *fetch.Options) { o.MaxRootfsSize = 16 }))
		wantClass(t, err, fetch.ClassServer, fetch.KindNone)
	})
	t.Run("403", func(t *testing.T) {
		r := newRig(t)
		r.srv.Fail("/meta/1.0/index-system.7", http.StatusForbidden)
		_, err := r.client().Index(ctx, compat.System)
		wantClass(t, err, fetch.ClassServer, fetch.KindNone)
	})
	t.Run("unparsable index", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetIndex("not;an;index\n")
		_, err := r.client().Index(ctx, compat.System)
		wantErr(t, err, "parse index")
		wantClass(t, err, fetch.ClassServer, fetch.KindNone)
	})
	t.Run("cancelled", func(t *testing.T) {
		r := newRig(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := r.client().Index(cctx, compat.System)
		wantClass(t, err, fetch.ClassOther, fetch.KindNone)
	})
	if fetch.Classify(nil) != fetch.ClassOther || fetch.KindOf(nil) != fetch.KindNone {
		t.Error("nil has a class")
	}
}

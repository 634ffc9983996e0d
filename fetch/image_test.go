package fetch_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// bigRootfs makes the default image's rootfs large enough (about 1 MiB of
// incompressible data) for faults to hit the middle of it.
func (r *rig) bigRootfs() []byte {
	r.t.Helper()
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i*7919 + i>>8)
	}
	sum := sha256.Sum256(data)
	for i := 0; i+32 <= len(data); i += 32 {
		sum = sha256.Sum256(sum[:])
		copy(data[i:], sum[:])
	}
	r.srv.SetSigned(r.path("rootfs.tar.xz"), data)
	return data
}

// contentSent is how many bytes of the file at p the server sent, over
// every response (error pages are not the file's bytes).
func (r *rig) contentSent(p string) int64 {
	var n int64
	for _, q := range r.srv.RequestsFor(p) {
		if q.Status == 200 || q.Status == 206 {
			n += q.Bytes
		}
	}
	return n
}

func (r *rig) fetch(c *fetch.Client) (*fetch.Image, error) {
	return c.FetchImage(context.Background(), r.entry(), r.dir)
}

// dirFiles lists the download directory.
func (r *rig) dirFiles() []string {
	r.t.Helper()
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// checkFetched checks that the directory holds exactly the two verified
// files, equal to what the server serves, and that img describes them.
func (r *rig) checkFetched(img *fetch.Image) {
	r.t.Helper()
	if got := strings.Join(r.dirFiles(), " "); got != "meta.tar.xz rootfs.tar.xz" {
		r.t.Errorf("download directory holds %s", got)
	}
	for _, f := range []fetch.File{img.Meta, img.Rootfs} {
		want := r.served(f.Name)
		got, err := os.ReadFile(filepath.Join(r.dir, f.Name))
		if err != nil {
			r.t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			r.t.Errorf("%s differs from the server's", f.Name)
		}
		sum := sha256.Sum256(want)
		if f.Path != filepath.Join(r.dir, f.Name) || f.Size != int64(len(want)) || f.SHA256 != hex.EncodeToString(sum[:]) {
			r.t.Errorf("%+v", f)
		}
	}
}

// checkNothingLeft checks that a failed download left no file under its
// final name.
func (r *rig) checkNoFinal() {
	r.t.Helper()
	for _, n := range r.dirFiles() {
		if n == "meta.tar.xz" || n == "rootfs.tar.xz" {
			r.t.Errorf("%s left under its final name", n)
		}
	}
}

func TestFetchImage(t *testing.T) {
	r := newRig(t)
	img, err := r.fetch(r.client())
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	if img.Meta.Name != "meta.tar.xz" || img.Rootfs.Name != "rootfs.tar.xz" || !img.Verified {
		t.Errorf("%+v", img)
	}
	for _, name := range []string{"SHA256SUMS", "SHA256SUMS.asc", "meta.tar.xz.asc", "rootfs.tar.xz.asc", "meta.tar.xz", "rootfs.tar.xz"} {
		reqs := r.srv.RequestsFor(r.path(name))
		if len(reqs) != 1 {
			t.Errorf("%s asked %d times", name, len(reqs))
			continue
		}
		if strings.Contains(reqs[0].RawPath, "//") {
			t.Errorf("asked for %s", reqs[0].RawPath)
		}
	}
	if r.warn.String() != "" {
		t.Errorf("warnings: %s", r.warn)
	}
	if !strings.Contains(r.verbose.String(), "Download file: "+r.srv.URL+r.path("rootfs.tar.xz")+"\n") {
		t.Errorf("verbose output:\n%s", r.verbose)
	}
}

func TestFetchImageWithoutValidation(t *testing.T) {
	r := newRig(t)
	// Nothing is checked: not even a server without any signature.
	for _, name := range []string{"SHA256SUMS", "SHA256SUMS.asc", "meta.tar.xz.asc", "rootfs.tar.xz.asc"} {
		r.srv.Remove(r.path(name))
	}
	img, err := r.fetch(r.client(func(o *fetch.Options) { o.Validate = false; o.Keyring = nil }))
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	if img.Verified {
		t.Error("reported as verified")
	}
	if n := len(r.srv.Requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

// TestFetchImageDoubleSlashes: index paths with doubled slashes work.
func TestFetchImageDoubleSlashes(t *testing.T) {
	r := newRig(t)
	e := r.entry()
	e.Path = "/" + strings.ReplaceAll(e.Path, "/", "//")
	if _, err := r.client().FetchImage(context.Background(), e, r.dir); err != nil {
		t.Fatal(err)
	}
}

// TestVerificationSources: each file is proven by its own signature, by
// the signed SHA256SUMS, or both, whichever the server publishes.
func TestVerificationSources(t *testing.T) {
	for _, c := range []struct {
		name    string
		remove  []string
		wantErr []string
	}{
		{"signatures only", []string{"SHA256SUMS", "SHA256SUMS.asc"}, nil},
		{"sums only", []string{"meta.tar.xz.asc", "rootfs.tar.xz.asc"}, nil},
		// Unsigned sums prove nothing.
		{"unsigned sums only", []string{"SHA256SUMS.asc", "meta.tar.xz.asc", "rootfs.tar.xz.asc"}, []string{"no signature for meta.tar.xz", "404"}},
		{"nothing", []string{"SHA256SUMS", "SHA256SUMS.asc", "rootfs.tar.xz.asc"}, []string{"no signature for rootfs.tar.xz", "404", "rootfs.tar.xz.asc"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			for _, n := range c.remove {
				r.srv.Remove(r.path(n))
			}
			img, err := r.fetch(r.client())
			if c.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				r.checkFetched(img)
				return
			}
			wantErr(t, err, c.wantErr...)
			r.checkNoFinal()
			if n := len(r.srv.RequestsFor(r.path("rootfs.tar.xz"))); n != 0 {
				t.Errorf("downloaded an unverifiable rootfs %d times", n)
			}
		})
	}
}

func TestVerificationFailures(t *testing.T) {
	t.Run("tampered rootfs", func(t *testing.T) {
		r := newRig(t)
		r.srv.Set(r.path("rootfs.tar.xz"), []byte("not the signed rootfs"))
		_, err := r.fetch(r.client())
		wantErr(t, err, "Invalid signature for rootfs.tar.xz")
		if !errors.Is(err, fetch.ErrInvalidSignature) || fetch.IsUnreachable(err) {
			t.Errorf("%#v", err)
		}
		r.checkNoFinal()
		for _, n := range r.dirFiles() {
			if strings.HasPrefix(n, "rootfs") {
				t.Errorf("bad bytes kept as %s", n)
			}
		}
	})
	t.Run("tampered rootfs, sums only", func(t *testing.T) {
		r := newRig(t)
		r.srv.Remove(r.path("rootfs.tar.xz.asc"))
		r.srv.Set(r.path("rootfs.tar.xz"), []byte("not the summed rootfs"))
		_, err := r.fetch(r.client())
		wantErr(t, err, "SHA256 mismatch for rootfs.tar.xz")
		if !errors.Is(err, fetch.ErrChecksum) {
			t.Errorf("%#v", err)
		}
		r.checkNoFinal()
	})
	t.Run("sums disagree", func(t *testing.T) {
		// The file and its own signature agree; the signed SHA256SUMS
		// says something else. Both must hold.
		r := newRig(t)
		sums := fmt.Sprintf("%064x  rootfs.tar.xz\n%x  meta.tar.xz\n", 1, sha256.Sum256(r.served("meta.tar.xz")))
		r.srv.SetSigned(r.path("SHA256SUMS"), []byte(sums))
		_, err := r.fetch(r.client())
		wantErr(t, err, "SHA256 mismatch for rootfs.tar.xz")
		r.checkNoFinal()
	})
	t.Run("sums unlisted", func(t *testing.T) {
		r := newRig(t)
		r.srv.Remove(r.path("meta.tar.xz.asc"))
		sums := fmt.Sprintf("%x  rootfs.tar.xz\n", sha256.Sum256(r.served("rootfs.tar.xz")))
		r.srv.SetSigned(r.path("SHA256SUMS"), []byte(sums))
		_, err := r.fetch(r.client())
		wantErr(t, err, "meta.tar.xz is not listed in SHA256SUMS")
	})
	t.Run("sums signature bad", func(t *testing.T) {
		r := newRig(t)
		r.srv.Set(r.path("SHA256SUMS"), []byte("0000  rootfs.tar.xz\n"))
		_, err := r.fetch(r.client())
		wantErr(t, err, "Invalid signature for SHA256SUMS")
	})
	t.Run("other key", func(t *testing.T) {
		r := newRig(t)
		other := newRig(t)
		r.srv.Set(r.path("rootfs.tar.xz.asc"), other.served("rootfs.tar.xz.asc"))
		r.srv.Remove(r.path("SHA256SUMS"))
		_, err := r.fetch(r.client())
		wantErr(t, err, "Invalid signature for rootfs.tar.xz")
		// The signature is judged before the download starts.
		if n := len(r.srv.RequestsFor(r.path("rootfs.tar.xz"))); n != 0 {
			t.Errorf("rootfs downloaded %d times", n)
		}
	})
	t.Run("404", func(t *testing.T) {
		r := newRig(t)
		r.srv.Remove(r.path("rootfs.tar.xz"))
		_, err := r.fetch(r.client())
		wantErr(t, err, "404", r.srv.URL+r.path("rootfs.tar.xz"))
		if fetch.IsUnreachable(err) {
			t.Error("404 counted as unreachable")
		}
		if n := len(r.srv.RequestsFor(r.path("rootfs.tar.xz"))); n != 1 {
			t.Errorf("404 asked %d times", n)
		}
		r.checkNoFinal()
	})
	t.Run("500", func(t *testing.T) {
		r := newRig(t)
		r.srv.Fail(r.path("rootfs.tar.xz"), 500)
		_, err := r.fetch(r.client())
		wantErr(t, err, "500", r.srv.URL+r.path("rootfs.tar.xz"))
		if !fetch.IsUnreachable(err) {
			t.Error("lasting 500 not counted as unreachable")
		}
		r.checkNoFinal()
	})
	t.Run("no directory", func(t *testing.T) {
		r := newRig(t)
		r.dir = filepath.Join(r.dir, "missing")
		_, err := r.fetch(r.client())
		wantErr(t, err, "open "+r.dir+"/")
		if fetch.IsUnreachable(err) {
			t.Error("local error counted as unreachable")
		}
	})
}

// TestResumeAfterDrop: a connection dropped mid-file is resumed with a
// Range request, and no byte is sent twice.
func TestResumeAfterDrop(t *testing.T) {
	r := newRig(t)
	data := r.bigRootfs()
	p := r.path("rootfs.tar.xz")
	r.srv.DropAfter(p, 300_000, 1)
	img, err := r.fetch(r.client())
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	reqs := r.srv.RequestsFor(p)
	if len(reqs) != 2 || reqs[0].Bytes != 300_000 || reqs[1].Range != "bytes=300000-" || reqs[1].Status != 206 || reqs[1].IfRange == "" {
		t.Errorf("requests %+v", reqs)
	}
	if n := r.contentSent(p); n != int64(len(data)) {
		t.Errorf("server sent %d bytes for a %d-byte file", n, len(data))
	}
}

// TestResumeManyDrops: a link that drops again and again still finishes,
// since each attempt moves the download forward.
func TestResumeManyDrops(t *testing.T) {
	r := newRig(t)
	data := r.bigRootfs()
	p := r.path("rootfs.tar.xz")
	r.srv.DropAfter(p, 100_000, 0)
	img, err := r.fetch(r.client())
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	if n := r.contentSent(p); n != int64(len(data)) {
		t.Errorf("server sent %d bytes for a %d-byte file", n, len(data))
	}
}

func TestRetryServerError(t *testing.T) {
	r := newRig(t)
	p := r.path("rootfs.tar.xz")
	r.srv.FailN(p, 500, 1)
	img, err := r.fetch(r.client())
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	if n := len(r.srv.RequestsFor(p)); n != 2 {
		t.Errorf("%d requests", n)
	}
}

// TestTrickle: a slow server that keeps sending is waited for; one whose
// pauses exceed the idle timeout is abandoned and resumed.
func TestTrickle(t *testing.T) {
	t.Run("slow but moving", func(t *testing.T) {
		r := newRig(t)
		p := r.path("meta.tar.xz")
		r.srv.Trickle(p, 256, 20*time.Millisecond, 1)
		img, err := r.fetch(r.client(func(o *fetch.Options) { o.IdleTimeout = time.Second }))
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		if n := len(r.srv.RequestsFor(p)); n != 1 {
			t.Errorf("%d requests", n)
		}
	})
	t.Run("pauses too long", func(t *testing.T) {
		r := newRig(t)
		p := r.path("meta.tar.xz")
		size := len(r.served("meta.tar.xz"))
		r.srv.Trickle(p, 100, 2*time.Second, 2)
		img, err := r.fetch(r.client(func(o *fetch.Options) { o.IdleTimeout = 300 * time.Millisecond }))
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		reqs := r.srv.RequestsFor(p)
		if len(reqs) != 3 || reqs[1].Range != "bytes=100-" || reqs[2].Range != "bytes=200-" {
			t.Errorf("requests %+v", reqs)
		}
		if n := r.contentSent(p); n != int64(size) {
			t.Errorf("server sent %d bytes for a %d-byte file", n, size)
		}
	})
}

// TestLongContentLength: a response that promises more than it sends is
// an interrupted transfer; asking for the rest finds there is none.
func TestLongContentLength(t *testing.T) {
	r := newRig(t)
	data := r.bigRootfs()
	p := r.path("rootfs.tar.xz")
	r.srv.LongContentLength(p, 1000, 1)
	img, err := r.fetch(r.client())
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	if n := r.contentSent(p); n != int64(len(data)) {
		t.Errorf("server sent %d bytes for a %d-byte file", n, len(data))
	}
}

// TestIgnoredRange: a server that answers a range request with the whole
// file gets the download started over, not appended to.
func TestIgnoredRange(t *testing.T) {
	r := newRig(t)
	r.bigRootfs()
	p := r.path("rootfs.tar.xz")
	r.srv.DropAfter(p, 300_000, 1)
	r.srv.IgnoreRange(p, 2)
	img, err := r.fetch(r.client())
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	reqs := r.srv.RequestsFor(p)
	if len(reqs) != 2 || reqs[1].Range == "" || reqs[1].Status != 200 {
		t.Errorf("requests %+v", reqs)
	}
}

// TestResumeNextRun: a download interrupted in one run continues in the
// next from the partial file it left.
func TestResumeNextRun(t *testing.T) {
	r := newRig(t)
	data := r.bigRootfs()
	p := r.path("rootfs.tar.xz")
	r.srv.DropAfter(p, 400_000, 1)
	_, err := r.fetch(r.client(func(o *fetch.Options) { o.Attempts = 1 }))
	wantErr(t, err, r.srv.URL+p)
	if !fetch.IsUnreachable(err) {
		t.Errorf("dropped connection not unreachable: %v", err)
	}
	r.checkNoFinal()
	if fi, err := os.Stat(filepath.Join(r.dir, "rootfs.tar.xz.partial")); err != nil || fi.Size() != 400_000 {
		t.Fatalf("partial file: %v %v", fi, err)
	}

	img, err := r.fetch(r.client())
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	reqs := r.srv.RequestsFor(p)
	if len(reqs) != 2 || reqs[1].Range != "bytes=400000-" || reqs[1].IfRange == "" || reqs[1].Status != 206 {
		t.Errorf("requests %+v", reqs)
	}
	if n := r.contentSent(p); n != int64(len(data)) {
		t.Errorf("server sent %d bytes for a %d-byte file", n, len(data))
	}
}

// TestResumeNextRunChanged: when the file changed between the runs,
// If-Range makes the server send all of the new one.
func TestResumeNextRunChanged(t *testing.T) {
	r := newRig(t)
	r.bigRootfs()
	p := r.path("rootfs.tar.xz")
	r.srv.DropAfter(p, 400_000, 1)
	if _, err := r.fetch(r.client(func(o *fetch.Options) { o.Attempts = 1 })); err == nil {
		t.Fatal("no error")
	}
	r.srv.SetSigned(p, bytes.Repeat([]byte("new build "), 100_000))
	img, err := r.fetch(r.client())
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	reqs := r.srv.RequestsFor(p)
	if len(reqs) != 2 || reqs[1].Status != 200 {
		t.Errorf("requests %+v", reqs)
	}
}

// TestResumeNextRunComplete: a file that was complete when the previous
// run stopped is verified and kept without asking the server for it.
func TestResumeNextRunComplete(t *testing.T) {
	r := newRig(t)
	meta := r.path("meta.tar.xz")
	r.srv.Stall(meta, 0, 10*time.Second, 1)
	if _, err := r.fetch(r.client(func(o *fetch.Options) { o.Attempts = 1; o.IdleTimeout = time.Second })); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(filepath.Join(r.dir, "rootfs.tar.xz.partial")); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	img, err := r.fetch(r.client(func(o *fetch.Options) { o.Progress = out }))
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	if n := len(r.srv.RequestsFor(r.path("rootfs.tar.xz"))); n != 1 {
		t.Errorf("rootfs asked %d times", n)
	}
	if !strings.Contains(out.String(), "rootfs.tar.xz: complete from an earlier download\n") {
		t.Errorf("progress:\n%s", out)
	}
}

// TestResumeNextRunBadPartial: a partial file that does not verify once
// complete (a crash wrote garbage) is fetched again whole.
func TestResumeNextRunBadPartial(t *testing.T) {
	r := newRig(t)
	r.bigRootfs()
	p := r.path("rootfs.tar.xz")
	r.srv.DropAfter(p, 400_000, 1)
	if _, err := r.fetch(r.client(func(o *fetch.Options) { o.Attempts = 1 })); err == nil {
		t.Fatal("no error")
	}
	partial := filepath.Join(r.dir, "rootfs.tar.xz.partial")
	f, err := os.OpenFile(partial, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("garbage"), 1000)
	f.Close()
	img, err := r.fetch(r.client())
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	reqs := r.srv.RequestsFor(p)
	if len(reqs) != 3 || reqs[2].Range != "" || reqs[2].NoGeoIP != "on" {
		t.Errorf("requests %+v", reqs)
	}
}

// TestMirror: files redirected to a mirror come from it; a mirror that
// serves bad bytes or fails is replaced by the primary server, with a
// warning naming it.
func TestMirror(t *testing.T) {
	t.Run("good", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		img, err := r.fetch(r.client())
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		for _, name := range []string{"meta.tar.xz", "rootfs.tar.xz"} {
			if n := len(m.RequestsFor(r.path(name))); n != 1 {
				t.Errorf("mirror asked %d times for %s", n, name)
			}
		}
		// Signatures and sums come from the primary server.
		for _, q := range m.Requests() {
			if strings.HasSuffix(q.Path, ".asc") || strings.HasSuffix(q.Path, "SHA256SUMS") {
				t.Errorf("mirror asked for %s", q.Path)
			}
		}
		if r.warn.String() != "" {
			t.Errorf("warnings: %s", r.warn)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.Set(r.path("rootfs.tar.xz"), []byte("mirror garbage"))
		img, err := r.fetch(r.client())
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		warn := r.warn.String()
		if !strings.HasPrefix(warn, "WARNING: Mirror "+m.Host+" served a copy of rootfs.tar.xz that failed verification") || strings.Count(warn, "\n") != 1 {
			t.Errorf("warnings: %s", warn)
		}
		reqs := r.srv.RequestsFor(r.path("rootfs.tar.xz"))
		if len(reqs) != 2 || reqs[1].NoGeoIP != "on" || reqs[1].Status != 200 {
			t.Errorf("primary's requests %+v", reqs)
		}
	})
	t.Run("garbage everywhere", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.Set(r.path("rootfs.tar.xz"), []byte("mirror garbage"))
		r.srv.Set(r.path("rootfs.tar.xz"), []byte("primary garbage"))
		_, err = r.fetch(r.client())
		wantErr(t, err, "Invalid signature for rootfs.tar.xz")
		r.checkNoFinal()
	})
	t.Run("down", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		img, err := r.fetch(r.client())
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		if !strings.Contains(r.warn.String(), "WARNING: Mirror "+m.Host+" failed to serve") {
			t.Errorf("warnings: %s", r.warn)
		}
	})
	t.Run("404", func(t *testing.T) {
		r := newRig(t)
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.Remove(r.path("meta.tar.xz"))
		img, err := r.fetch(r.client())
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
		if !strings.Contains(r.warn.String(), "WARNING: Mirror "+m.Host+" failed to serve meta.tar.xz") {
			t.Errorf("warnings: %s", r.warn)
		}
	})
	t.Run("drop then resume on primary", func(t *testing.T) {
		r := newRig(t)
		r.bigRootfs()
		m, err := fetchtest.NewMirror(r.srv)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.DropAfter(r.path("rootfs.tar.xz"), 300_000, 0)
		img, err := r.fetch(r.client())
		if err != nil {
			t.Fatal(err)
		}
		r.checkFetched(img)
	})
}

// TestNoPlainHTTPFallback: when HTTPS fails, to connect or to prove the
// server's certificate, plain HTTP on the same port is never tried, even
// though it answers and validation is on: an attacker on the path would
// answer it with old signed files.
func TestNoPlainHTTPFallback(t *testing.T) {
	// The server is named without a port, so https goes to :443 and http
	// to :80, which the dialer sends to the test server's one port.
	client := func(r *rig) *fetch.Client {
		return r.client(func(o *fetch.Options) {
			o.Server = "localhost"
			o.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr == "localhost:443" || addr == "localhost:80" {
					addr = r.srv.Host
				}
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}
		})
	}
	noPlain := func(t *testing.T, r *rig) {
		t.Helper()
		for _, q := range r.srv.Requests() {
			if !q.TLS {
				t.Errorf("%s asked over plain HTTP", q.Path)
			}
		}
		if r.warn.String() != "" {
			t.Errorf("warnings: %s", r.warn)
		}
	}
	t.Run("HTTPS down", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetHTTPSDown(true)
		_, err := client(r).Index(context.Background(), compat.System)
		wantErr(t, err, "https://localhost/meta/1.0/index-system.7", "3 attempts")
		if !fetch.IsUnreachable(err) {
			t.Errorf("%v not unreachable", err)
		}
		noPlain(t, r)
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetUntrustedCertificate(true)
		_, err := client(r).Index(context.Background(), compat.System)
		wantErr(t, err, "https://localhost/meta/1.0/index-system.7", "certificate signed by unknown authority", "never retried over plain HTTP", "--ca-cert")
		if strings.Contains(err.Error(), "attempts") {
			t.Errorf("%v: retried", err)
		}
		if fetch.IsUnreachable(err) {
			t.Errorf("%v is unreachable", err)
		}
		noPlain(t, r)
	})
	t.Run("untrusted certificate, no validation", func(t *testing.T) {
		r := newRig(t)
		r.srv.SetUntrustedCertificate(true)
		c := r.client(func(o *fetch.Options) { o.Validate, o.Keyring = false, nil })
		_, err := c.FetchImage(context.Background(), r.entry(), r.dir)
		wantErr(t, err, "certificate signed by unknown authority", "--ca-cert")
		noPlain(t, r)
		r.checkNoFinal()
	})
}

func TestFetchImageCancelled(t *testing.T) {
	r := newRig(t)
	r.bigRootfs()
	r.srv.SetRateLimit(200_000)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := r.client().FetchImage(ctx, r.entry(), r.dir)
	if !errors.Is(err, context.DeadlineExceeded) || fetch.IsUnreachable(err) {
		t.Errorf("%v", err)
	}
	r.checkNoFinal()
}

// TestDiskFull: a download that fills the disk fails with a local error
// (no retry, not "unreachable") and leaves nothing behind. It needs a
// small filesystem of its own, which only root can mount.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	r := newRig(t)
	r.bigRootfs()
	if err := syscall.Mount("tmpfs", r.dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	defer syscall.Unmount(r.dir, syscall.MNT_DETACH)
	_, err := r.fetch(r.client(func(o *fetch.Options) { o.DiskReserve = -1 }))
	// The meta and rootfs tarballs download at the same time: the file
	// whose write found the disk full is named, the rootfs's or, when
	// the rootfs filled it just before, one of the meta tarball's.
	wantErr(t, err, "no space left on device")
	if !strings.Contains(err.Error(), filepath.Join(r.dir, "rootfs.tar.xz.partial")) &&
		!strings.Contains(err.Error(), filepath.Join(r.dir, "meta.tar.xz.partial")) {
		t.Errorf("error %q names neither partial download", err)
	}
	if !errors.Is(err, syscall.ENOSPC) || fetch.IsUnreachable(err) {
		t.Errorf("%#v", err)
	}
	if n := len(r.srv.RequestsFor(r.path("rootfs.tar.xz"))); n > 1 {
		t.Errorf("retried %d times", n)
	}
	if n := len(r.srv.RequestsFor(r.path("meta.tar.xz"))); n > 1 {
		t.Errorf("meta tarball retried %d times", n)
	}
	for _, n := range r.dirFiles() {
		if strings.HasPrefix(n, "rootfs") {
			t.Errorf("%s left on the full disk", n)
		}
	}
}

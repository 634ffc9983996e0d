package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// recordTap keeps what a Tap is given, as an unpacker following the
// download would see it.
type recordTap struct {
	buf      bytes.Buffer
	restarts int
}

func (t *recordTap) Data(p []byte) { t.buf.Write(p) }
func (t *recordTap) Restart()      { t.restarts++; t.buf.Reset() }

func (r *rig) fetchTap(c *fetch.Client, tap *recordTap) (*fetch.Image, string, error) {
	var meta string
	img, err := c.FetchImageTap(context.Background(), r.entry(), r.dir, func(metaPath string) (fetch.Tap, error) {
		meta = metaPath
		return tap, nil
	})
	return img, meta, err
}

// TestTapFollowsResumedDownload: the Tap is told about the verified meta
// tarball before any rootfs byte, then gets every rootfs byte once, in
// order, across a dropped connection and a resume.
func TestTapFollowsResumedDownload(t *testing.T) {
	r := newRig(t)
	want := r.bigRootfs()
	r.srv.DropAfter(r.path("rootfs.tar.xz"), 300000, 1)
	tap := &recordTap{}
	img, meta, err := r.fetchTap(r.client(), tap)
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	if filepath.Dir(meta) != r.dir || filepath.Base(meta) != "meta.tar.xz.partial" {
		t.Errorf("meta path %q", meta)
	}
	if got, _ := os.ReadFile(img.Meta.Path); !bytes.Equal(got, r.served("meta.tar.xz")) {
		t.Errorf("the meta tarball given to the tap was not the verified one")
	}
	if tap.restarts != 0 || !bytes.Equal(tap.buf.Bytes(), want) {
		t.Errorf("tap: %d restarts, %d bytes, want 0 restarts and the %d bytes of the file", tap.restarts, tap.buf.Len(), len(want))
	}
}

// TestTapPartialFromEarlierRun: bytes a previous run left on disk reach the
// tap first.
func TestTapPartialFromEarlierRun(t *testing.T) {
	r := newRig(t)
	want := r.bigRootfs()
	r.srv.DropAfter(r.path("rootfs.tar.xz"), 400000, 1)
	if _, err := r.fetch(r.client(func(o *fetch.Options) { o.Attempts = 1 })); err == nil {
		t.Fatal("the first run should have been cut off")
	}
	tap := &recordTap{}
	if _, _, err := r.fetchTap(r.client(), tap); err != nil {
		t.Fatal(err)
	}
	if tap.restarts != 0 || !bytes.Equal(tap.buf.Bytes(), want) {
		t.Errorf("tap: %d restarts, %d bytes, want 0 and %d", tap.restarts, tap.buf.Len(), len(want))
	}
	if sent := r.contentSent(r.path("rootfs.tar.xz")); sent >= int64(2*len(want)) {
		t.Errorf("%d bytes sent: the second run did not resume", sent)
	}
}

// TestTapRestart: a server that ignores Range makes the download start
// over; the tap is told, then gets the whole file.
func TestTapRestart(t *testing.T) {
	r := newRig(t)
	want := r.bigRootfs()
	r.srv.DropAfter(r.path("rootfs.tar.xz"), 300000, 1)
	r.srv.IgnoreRange(r.path("rootfs.tar.xz"), 0)
	tap := &recordTap{}
	if _, _, err := r.fetchTap(r.client(), tap); err != nil {
		t.Fatal(err)
	}
	if tap.restarts == 0 || !bytes.Equal(tap.buf.Bytes(), want) {
		t.Errorf("tap: %d restarts, %d bytes; want a restart and the %d bytes of the file", tap.restarts, tap.buf.Len(), len(want))
	}
}

// TestTapMetaAndRootfsAtOnce: the rootfs download does not wait for the
// meta tarball (issue 5: both at the same time), yet the Tap is made only
// from the verified meta tarball and still gets every rootfs byte in
// order. The meta tarball is held back by the server, so a client that
// fetched one after the other would ask for the rootfs only after the Tap
// was made.
func TestTapMetaAndRootfsAtOnce(t *testing.T) {
	r := newRig(t)
	want := r.bigRootfs()
	r.srv.Stall(r.path("meta.tar.xz"), 0, time.Second, 1)
	tap := &recordTap{}
	var tapMade time.Time
	img, err := r.client().FetchImageTap(context.Background(), r.entry(), r.dir, func(string) (fetch.Tap, error) {
		tapMade = time.Now()
		return tap, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.checkFetched(img)
	reqs := r.srv.RequestsFor(r.path("rootfs.tar.xz"))
	if len(reqs) != 1 {
		t.Fatalf("rootfs asked %d times", len(reqs))
	}
	if !reqs[0].Time.Before(tapMade) {
		t.Errorf("the rootfs was asked for at %v, after the meta tarball was in (%v)", reqs[0].Time, tapMade)
	}
	if tap.restarts != 0 || !bytes.Equal(tap.buf.Bytes(), want) {
		t.Errorf("tap: %d restarts, %d bytes, want 0 restarts and the %d bytes of the file", tap.restarts, tap.buf.Len(), len(want))
	}
}

// TestTapMetaFails: when the meta tarball fails verification, the Tap is
// never made, the rootfs download stops, and the error is the meta
// tarball's, whichever download was further along.
func TestTapMetaFails(t *testing.T) {
	r := newRig(t)
	r.bigRootfs()
	r.srv.Set(r.path("meta.tar.xz"), []byte("not the signed meta tarball"))
	made := false
	_, err := r.client().FetchImageTap(context.Background(), r.entry(), r.dir, func(string) (fetch.Tap, error) {
		made = true
		return &recordTap{}, nil
	})
	wantErr(t, err, "Invalid signature for meta.tar.xz")
	if made {
		t.Error("a Tap was made from a meta tarball that failed verification")
	}
	r.checkNoFinal()
}

// TestTapRefused: an error from the caller's tap function (it could not
// read the meta tarball) ends the fetch with that error.
func TestTapRefused(t *testing.T) {
	r := newRig(t)
	r.bigRootfs()
	refused := errors.New("no excludes for you")
	_, err := r.client().FetchImageTap(context.Background(), r.entry(), r.dir, func(string) (fetch.Tap, error) {
		return nil, refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("got %v, want %v", err, refused)
	}
	r.checkNoFinal()
}

// TestTrustFilesAtOnce: the signatures and sums of an image are asked for
// together rather than one round trip
// after another. The first of them is held back by the server; the others
// must all have been asked for before it could have been answered.
func TestTrustFilesAtOnce(t *testing.T) {
	const stall = 2 * time.Second
	r := newRig(t)
	r.srv.Stall(r.path("SHA256SUMS"), 0, stall, 1)
	if _, err := r.fetch(r.client()); err != nil {
		t.Fatal(err)
	}
	first := r.srv.RequestsFor(r.path("SHA256SUMS"))[0].Time
	for _, name := range []string{"SHA256SUMS.asc", "meta.tar.xz.asc", "rootfs.tar.xz.asc"} {
		reqs := r.srv.RequestsFor(r.path(name))
		if len(reqs) != 1 {
			t.Errorf("%s asked %d times", name, len(reqs))
			continue
		}
		if reqs[0].Time.After(first.Add(stall)) {
			t.Errorf("%s was asked for %v after SHA256SUMS: after its answer", name, reqs[0].Time.Sub(first))
		}
	}
}

// TestIndexAndSignatureAtOnce: the index and its signature are asked for
// together; the index is held back by the server.
func TestIndexAndSignatureAtOnce(t *testing.T) {
	const stall = 2 * time.Second
	r := newRig(t)
	r.srv.Stall("/meta/1.0/index-system.7", 0, stall, 1)
	if _, err := r.client().Index(context.Background(), compat.System); err != nil {
		t.Fatal(err)
	}
	first := r.srv.RequestsFor("/meta/1.0/index-system.7")[0].Time
	reqs := r.srv.RequestsFor("/meta/1.0/index-system.7.asc")
	if len(reqs) != 1 {
		t.Fatalf("signature asked %d times", len(reqs))
	}
	if reqs[0].Time.After(first.Add(stall)) {
		t.Errorf("the signature was asked for %v after the index: after its answer", reqs[0].Time.Sub(first))
	}
}

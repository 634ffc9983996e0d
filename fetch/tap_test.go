package fetch_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

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

package fetch_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// TestFetchStreams: signed streams (armored or binary) verify and say so;
// unsigned ones are a discovery aid; a signature that is there but does not
// verify, or signs only one of the two files, is an error; an old
// signature is as stale as an old index; a server without streams says 404.
func TestFetchStreams(t *testing.T) {
	ctx := context.Background()
	stranger, err := fetchtest.NewKey("stranger")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		opts   fetchtest.StreamsOptions
		edit   func(*rig)
		signed bool
		err    []string
	}{
		{name: "armored", signed: true},
		{name: "binary", opts: fetchtest.StreamsOptions{BinarySignatures: true}, signed: true},
		{name: "unsigned", opts: fetchtest.StreamsOptions{Unsigned: true}},
		{name: "other key", opts: fetchtest.StreamsOptions{SigningKey: stranger}, err: []string{"index.json"}},
		{name: "tampered catalogue", edit: func(r *rig) {
			r.srv.TamperStreams(fetchtest.StreamsImagesPath, func(b []byte) []byte {
				return bytes.Replace(b, []byte(`"Debian"`), []byte(`"Debain"`), 1)
			}, false)
		}, err: []string{"images.json"}},
		{name: "catalogue unsigned", edit: func(r *rig) { r.srv.Remove(fetchtest.StreamsImagesPath + ".gpg") },
			err: []string{"signed in part only", "images.json has no .gpg"}},
		{name: "no streams", edit: func(r *rig) { r.srv.Remove(fetchtest.StreamsIndexPath) }, err: []string{"404"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			if err := r.srv.EnableStreams(c.opts); err != nil {
				t.Fatal(err)
			}
			if c.edit != nil {
				c.edit(r)
			}
			res, err := r.client().FetchStreams(ctx)
			if c.err != nil {
				wantErr(t, err, c.err...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Signed != c.signed || res.Signed == res.SignedAt.IsZero() {
				t.Errorf("signed %v at %v, want signed %v", res.Signed, res.SignedAt, c.signed)
			}
			p, ok := res.Streams.Product(compat.Query{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default"})
			if !ok {
				t.Fatalf("no debian product in %d products", len(res.Streams.Products))
			}
			if b, ok := p.Newest(); !ok || b.ID != r.img.Build || !b.HasRootfs() {
				t.Errorf("newest build %+v, want %s with a rootfs", b, r.img.Build)
			}
			if !bytes.Equal(res.IndexData, r.served2(fetchtest.StreamsIndexPath)) || res.ImagesPath != "streams/v1/images.json" {
				t.Errorf("the files as served are not kept")
			}
		})
	}

	t.Run("old signature", func(t *testing.T) {
		r := newRig(t)
		if err := r.srv.EnableStreams(fetchtest.StreamsOptions{}); err != nil {
			t.Fatal(err)
		}
		client := r.client(func(o *fetch.Options) {
			o.Now = func() time.Time { return time.Now().Add(30 * 24 * time.Hour) }
		})
		_, err := client.FetchStreams(ctx)
		var stale *fetch.StaleIndexError
		if !errors.As(err, &stale) {
			t.Errorf("streams signed 30 days before the clock: %v, want a *StaleIndexError", err)
		}
	})
	t.Run("without validation", func(t *testing.T) {
		r := newRig(t)
		if err := r.srv.EnableStreams(fetchtest.StreamsOptions{SigningKey: stranger}); err != nil {
			t.Fatal(err)
		}
		res, err := r.client(func(o *fetch.Options) { o.Validate = false }).FetchStreams(ctx)
		if err != nil || res.Signed {
			t.Errorf("%+v, %v: want unsigned streams and no error", res, err)
		}
	})
}

func (r *rig) served2(p string) []byte {
	b, _ := r.srv.Get(p)
	return b
}

// TestBuildSums: a build directory's signed SHA256SUMS is returned as
// signed; one signed by another key is an error; without a signature the
// sums are returned unsigned; a build that is gone answers 404.
func TestBuildSums(t *testing.T) {
	ctx := context.Background()
	stranger, err := fetchtest.NewKey("stranger")
	if err != nil {
		t.Fatal(err)
	}
	dir := fetchtest.ImageDir(fetchtest.DefaultImage())
	entry := compat.Entry{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default", Build: "20261120_05:24", Path: dir}

	r := newRig(t)
	sums, signed, err := r.client().BuildSums(ctx, entry)
	if err != nil || !signed {
		t.Fatalf("signed, %v: %v", signed, err)
	}
	rootfs, _ := r.srv.Get(dir + "rootfs.tar.xz")
	if want := fmt.Sprintf("%x", sha256.Sum256(rootfs)); sums["rootfs.tar.xz"] != want {
		t.Errorf("rootfs.tar.xz: %s, want %s", sums["rootfs.tar.xz"], want)
	}

	r.srv.Remove(dir + "SHA256SUMS.asc")
	if sums, signed, err = r.client().BuildSums(ctx, entry); err != nil || signed || sums["rootfs.tar.xz"] == "" {
		t.Errorf("without SHA256SUMS.asc: %v, %v, %v; want unsigned sums", sums, signed, err)
	}

	data, _ := r.srv.Get(dir + "SHA256SUMS")
	r.srv.Set(dir+"SHA256SUMS.asc", fetchtest.Sign(stranger, data))
	_, _, err = r.client().BuildSums(ctx, entry)
	wantErr(t, err, "Invalid signature for SHA256SUMS")

	r.srv.Remove(dir + "SHA256SUMS")
	_, _, err = r.client().BuildSums(ctx, entry)
	var se *fetch.StatusError
	if !errors.As(err, &se) || se.StatusCode != 404 {
		t.Errorf("a build without SHA256SUMS: %v, want a 404 *StatusError", err)
	}
}

package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// lastRequest is the last request the server received for p.
func (r *rig) lastRequest(p string) fetchtest.Request {
	r.t.Helper()
	reqs := r.srv.RequestsFor(p)
	if len(reqs) == 0 {
		r.t.Fatalf("no request for %s", p)
	}
	return reqs[len(reqs)-1]
}

// TestFetchIndexIf: a kept index is "not modified" without a body while
// the server's files are the same; a change to either file brings the
// whole index, verified.
func TestFetchIndexIf(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	c := r.client()
	first, err := c.FetchIndex(ctx, compat.System)
	if err != nil {
		t.Fatal(err)
	}
	idx, sig := "/meta/1.0/index-system.7", "/meta/1.0/index-system.7.asc"
	for _, p := range []string{idx, sig} {
		v := first.Validators[p]
		if v.ETag == "" || v.LastModified == "" {
			t.Errorf("validators of %s: %+v", p, v)
		}
	}
	served, _ := r.srv.Get(idx)
	servedSig, _ := r.srv.Get(sig)
	if !bytes.Equal(first.Data, served) || !bytes.Equal(first.Signature, servedSig) {
		t.Error("the files as served are not kept")
	}

	got, notModified, err := c.FetchIndexIf(ctx, compat.System, first.Validators)
	if err != nil || !notModified || got != nil {
		t.Fatalf("unchanged: %+v, %v, %v", got, notModified, err)
	}
	for _, p := range []string{idx, sig} {
		q := r.lastRequest(p)
		if q.Status != http.StatusNotModified || q.Bytes != 0 || q.Header.Get("If-None-Match") != first.Validators[p].ETag ||
			q.Header.Get("If-Modified-Since") != first.Validators[p].LastModified {
			t.Errorf("%s: %+v", p, q)
		}
	}

	// Signed again, the same index: the signature changed, so the index
	// (unchanged, 304) is fetched again whole, and both are verified.
	later := time.Now().Add(time.Minute).Truncate(time.Second)
	r.srv.SetIndexSignedAt(fetchtest.Index(r.img), later)
	got, notModified, err = c.FetchIndexIf(ctx, compat.System, first.Validators)
	if err != nil || notModified || got == nil || !got.SignedAt.Equal(later) || !bytes.Equal(got.Data, served) {
		t.Fatalf("re-signed: %+v, %v, %v", got, notModified, err)
	}
	if q := r.lastRequest(idx); q.Status != http.StatusOK || q.Header.Get("If-None-Match") != "" {
		t.Errorf("the index was not fetched again whole: %+v", q)
	}
	if reflect.DeepEqual(got.Validators, first.Validators) {
		t.Error("the validators did not change")
	}

	// A changed index that does not verify is refused.
	r.srv.Set(idx, []byte(fetchtest.Index(r.img)+fetchtest.Index(r.img)))
	_, _, err = c.FetchIndexIf(ctx, compat.System, got.Validators)
	wantClass(t, err, fetch.ClassVerification, fetch.KindNone)

	// Without validation only the index is asked for.
	r2 := newRig(t)
	c2 := r2.client(func(o *fetch.Options) { o.Validate, o.Keyring = false, nil })
	first2, err := c2.FetchIndex(ctx, compat.System)
	if err != nil || len(first2.Validators) != 1 || first2.Signature != nil {
		t.Fatalf("%+v, %v", first2, err)
	}
	if _, nm, err := c2.FetchIndexIf(ctx, compat.System, first2.Validators); !nm || err != nil {
		t.Errorf("unchanged, without validation: %v, %v", nm, err)
	}
}

// TestFetchIndexIfFallback: validators of index-MODE (no compat level)
// work when the server has no index-MODE.7.
func TestFetchIndexIfFallback(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	r.srv.Remove("/meta/1.0/index-system.7")
	c := r.client()
	first, err := c.FetchIndex(ctx, compat.System)
	if err != nil || first.Path != "/meta/1.0/index-system" {
		t.Fatalf("%+v, %v", first, err)
	}
	if _, nm, err := c.FetchIndexIf(ctx, compat.System, first.Validators); !nm || err != nil {
		t.Errorf("unchanged: %v, %v", nm, err)
	}
}

// TestVerifyIndex: a kept copy is checked as a download is.
func TestVerifyIndex(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	c := r.client()
	first, err := c.FetchIndex(ctx, compat.System)
	if err != nil {
		t.Fatal(err)
	}
	kept := &fetch.IndexResult{Path: first.Path, Data: first.Data, Signature: first.Signature, Validators: first.Validators}
	got, err := c.VerifyIndex(kept)
	if err != nil || !reflect.DeepEqual(got.Index, first.Index) || !got.SignedAt.Equal(first.SignedAt) || got.Server != first.Server {
		t.Fatalf("%+v, %v", got, err)
	}
	tampered := *kept
	tampered.Data = append(bytes.Clone(kept.Data), "x;y;z;w;v;/images/x/\n"...)
	if _, err := c.VerifyIndex(&tampered); !errors.Is(err, fetch.ErrInvalidSignature) {
		t.Errorf("tampered copy: %v", err)
	}
	// An old copy: the result comes with the error, for a listing shown
	// with a warning.
	old := r.client(func(o *fetch.Options) { o.Now = func() time.Time { return time.Now().Add(30 * 24 * time.Hour) } })
	got, err = old.VerifyIndex(kept)
	var stale *fetch.StaleIndexError
	if !errors.As(err, &stale) || got == nil || got.Index == nil {
		t.Errorf("old copy: %+v, %v", got, err)
	}
}

// TestFetchStreamsIf: kept simplestreams are "not modified" while their
// files are the same, signed or not; any change brings them whole.
func TestFetchStreamsIf(t *testing.T) {
	ctx := context.Background()
	for _, unsigned := range []bool{false, true} {
		name := "signed"
		if unsigned {
			name = "unsigned"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			if err := r.srv.EnableStreams(fetchtest.StreamsOptions{Unsigned: unsigned}); err != nil {
				t.Fatal(err)
			}
			c := r.client()
			first, nm, err := c.FetchStreamsIf(ctx, nil)
			if err != nil || nm {
				t.Fatal(err)
			}
			plain, err := c.FetchStreams(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if first.Signed != !unsigned || first.Signed != plain.Signed || !reflect.DeepEqual(first.Streams, plain.Streams) ||
				!bytes.Equal(first.IndexData, plain.IndexData) || !bytes.Equal(first.ImagesSig, plain.ImagesSig) || first.ImagesPath != plain.ImagesPath {
				t.Errorf("FetchStreamsIf(nil) is not FetchStreams")
			}
			wantPaths := 4
			if unsigned {
				wantPaths = 2
			}
			if len(first.Validators) != wantPaths {
				t.Errorf("validators %+v", first.Validators)
			}

			got, nm, err := c.FetchStreamsIf(ctx, first.Validators)
			if err != nil || !nm || got != nil {
				t.Fatalf("unchanged: %+v, %v, %v", got, nm, err)
			}
			for p := range first.Validators {
				if q := r.lastRequest(p); q.Status != http.StatusNotModified || q.Bytes != 0 {
					t.Errorf("%s: %+v", p, q)
				}
			}

			// A new image changes the catalogue.
			img := fetchtest.DefaultImage()
			img.Release = "trixie"
			if err := r.srv.AddImage(img); err != nil {
				t.Fatal(err)
			}
			got, nm, err = c.FetchStreamsIf(ctx, first.Validators)
			if err != nil || nm || got == nil {
				t.Fatalf("changed: %+v, %v, %v", got, nm, err)
			}
			if _, ok := got.Streams.Product(compat.Query{Dist: img.Dist, Release: "trixie", Arch: img.Arch, Variant: img.Variant}); !ok {
				t.Error("the new image is not in the streams")
			}
		})
	}
	t.Run("signatures gone", func(t *testing.T) {
		r := newRig(t)
		if err := r.srv.EnableStreams(fetchtest.StreamsOptions{}); err != nil {
			t.Fatal(err)
		}
		c := r.client()
		first, _, err := c.FetchStreamsIf(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.srv.Remove(fetchtest.StreamsIndexPath + ".gpg")
		r.srv.Remove(fetchtest.StreamsImagesPath + ".gpg")
		got, nm, err := c.FetchStreamsIf(ctx, first.Validators)
		if err != nil || nm || got == nil || got.Signed {
			t.Fatalf("%+v, %v, %v: want the streams again, unsigned", got, nm, err)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		r := newRig(t)
		if err := r.srv.EnableStreams(fetchtest.StreamsOptions{}); err != nil {
			t.Fatal(err)
		}
		c := r.client()
		first, _, err := c.FetchStreamsIf(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.srv.TamperStreams(fetchtest.StreamsImagesPath, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"Debian"`), []byte(`"Debain"`), 1)
		}, false)
		_, _, err = c.FetchStreamsIf(ctx, first.Validators)
		wantErr(t, err, "images.json")
		wantClass(t, err, fetch.ClassVerification, fetch.KindNone)
	})
}

// TestVerifyStreams: kept simplestreams are checked as downloaded ones.
func TestVerifyStreams(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	if err := r.srv.EnableStreams(fetchtest.StreamsOptions{}); err != nil {
		t.Fatal(err)
	}
	c := r.client()
	first, err := c.FetchStreams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kept := &fetch.StreamsResult{IndexData: first.IndexData, IndexSig: first.IndexSig, ImagesPath: first.ImagesPath,
		ImagesData: first.ImagesData, ImagesSig: first.ImagesSig}
	got, err := c.VerifyStreams(kept)
	if err != nil || !got.Signed || !got.SignedAt.Equal(first.SignedAt) || !reflect.DeepEqual(got.Streams, first.Streams) {
		t.Fatalf("%+v, %v", got, err)
	}
	for name, edit := range map[string]func(*fetch.StreamsResult){
		"tampered":      func(s *fetch.StreamsResult) { s.ImagesData = append(bytes.Clone(s.ImagesData), ' ') },
		"half unsigned": func(s *fetch.StreamsResult) { s.ImagesSig = nil },
		"other path":    func(s *fetch.StreamsResult) { s.ImagesPath = "streams/v1/other.json" },
	} {
		bad := *kept
		edit(&bad)
		if _, err := c.VerifyStreams(&bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	old := r.client(func(o *fetch.Options) { o.Now = func() time.Time { return time.Now().Add(30 * 24 * time.Hour) } })
	got, err = old.VerifyStreams(kept)
	var stale *fetch.StaleIndexError
	if !errors.As(err, &stale) || got == nil || got.Streams == nil {
		t.Errorf("old copy: %+v, %v", got, err)
	}
}

package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"time"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// DefaultIndexTTL is how long a listing uses the index and simplestreams it
// read last without asking the server (--index-ttl).
const DefaultIndexTTL = 5 * time.Minute

// listingCopy is what a listing keeps of a server's index and
// simplestreams in the cache (cache.WriteListing): the signed files as
// served, with their validators for conditional requests. They are
// verified again whenever they are used.
type listingCopy struct {
	Mode       string           `json:"mode"`
	Path       string           `json:"path"`
	Index      []byte           `json:"index"`
	IndexSig   []byte           `json:"index_asc,omitempty"`
	Validators fetch.Validators `json:"validators,omitempty"`
	// Streams are absent when not asked for; NoStreams says the server
	// answered that it has none.
	Streams   *streamsCopy `json:"streams,omitempty"`
	NoStreams bool         `json:"no_streams,omitempty"`
}

// streamsCopy is the simplestreams part of a listingCopy.
type streamsCopy struct {
	IndexData  []byte           `json:"index"`
	IndexSig   []byte           `json:"index_gpg,omitempty"`
	ImagesPath string           `json:"images_path"`
	ImagesData []byte           `json:"images"`
	ImagesSig  []byte           `json:"images_gpg,omitempty"`
	Validators fetch.Validators `json:"validators,omitempty"`
}

// listed is what a listing reads: the index, and, when asked for, the
// simplestreams or why there are none (a 404 means the server publishes
// none).
type listed struct {
	index      *fetch.IndexResult
	streams    *fetch.StreamsResult
	streamsErr error
}

// listing reads the index (and, withStreams, the simplestreams) for a
// listing from the first of the servers given that answers, as indexFrom
// does, through the copy the cache keeps of each server's: used as it is
// while younger than --index-ttl, else asked for again on condition that
// it changed, and shown with a warning giving its age when the server
// cannot be reached. Every copy is verified again before it is used.
func (r *run) listing(ctx context.Context, withStreams bool) (*listed, error) {
	var l *listed
	err := r.eachServer(ctx, func(*fetch.Client) (err error) {
		l, err = r.listingFrom(ctx, withStreams)
		return err
	})
	return l, err
}

// listingFrom is listing for the server r.o.Server.
func (r *run) listingFrom(ctx context.Context, withStreams bool) (*listed, error) {
	c, err := r.fetchClient(ctx)
	if err != nil {
		return nil, err
	}
	store, old, age := r.listingCopy()
	if old != nil && (!withStreams || old.Streams != nil || old.NoStreams) {
		if l, err := r.verifyListing(c, old); err == nil && age < r.indexTTL() {
			return l, nil
		}
	}
	l, fresh, err := r.fetchListing(ctx, c, old, withStreams)
	if err != nil {
		if old == nil || !fetch.IsUnreachable(err) {
			return nil, err
		}
		cached, verr := r.verifyListing(c, old)
		var stale *fetch.StaleIndexError
		if verr != nil && !errors.As(verr, &stale) {
			return nil, err
		}
		r.warnOnce("listing-offline", "The image server cannot be reached (%v); listing the copy read %s ago", err, age.Round(time.Second))
		return cached, nil
	}
	if fresh != nil && store != nil {
		if b, err := json.Marshal(fresh); err == nil {
			// A listing that cannot be kept is still a listing.
			_ = store.WriteListing(r.o.Server, b)
		}
	}
	return l, nil
}

// indexTTL is --index-ttl, or its default.
func (r *run) indexTTL() time.Duration {
	switch {
	case r.o.IndexTTL < 0:
		return 0
	case r.o.IndexTTL == 0:
		return DefaultIndexTTL
	}
	return r.o.IndexTTL
}

// listingCopy returns the cache (nil when it cannot be used) and the copy
// it keeps for r.o.Server in this mode, with its age.
func (r *run) listingCopy() (*cache.Cache, *listingCopy, time.Duration) {
	root, err := r.cacheRoot()
	if err != nil {
		return nil, nil, 0
	}
	store := &cache.Cache{Root: root}
	b, saved, err := store.ReadListing(r.o.Server)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && errors.Is(err, cache.ErrUntrusted) {
			r.warnOnce("nocache", "Not using the cache %s: %v", root, err)
			return nil, nil, 0
		}
		return store, nil, 0
	}
	var old listingCopy
	if json.Unmarshal(b, &old) != nil || old.Mode != string(r.mode) {
		return store, nil, 0
	}
	return store, &old, time.Since(saved)
}

// verifyListing checks a kept copy as a download is checked.
func (r *run) verifyListing(c *fetch.Client, old *listingCopy) (*listed, error) {
	ix, err := c.VerifyIndex(&fetch.IndexResult{Path: old.Path, Data: old.Index, Signature: old.IndexSig, Validators: old.Validators})
	if err != nil {
		return nil, err
	}
	l := &listed{index: ix}
	switch {
	case old.NoStreams:
		l.streamsErr = &fetch.StatusError{URL: compat.StreamsIndexPath, StatusCode: 404}
	case old.Streams != nil:
		s := old.Streams
		l.streams, l.streamsErr = c.VerifyStreams(&fetch.StreamsResult{IndexData: s.IndexData, IndexSig: s.IndexSig,
			ImagesPath: s.ImagesPath, ImagesData: s.ImagesData, ImagesSig: s.ImagesSig, Validators: s.Validators})
		if l.streamsErr != nil {
			return nil, l.streamsErr
		}
	}
	return l, nil
}

// fetchListing asks the server for the index (and streams), on condition
// that they changed since old, and returns what to list and the copy to
// keep (nil when nothing changed).
func (r *run) fetchListing(ctx context.Context, c *fetch.Client, old *listingCopy, withStreams bool) (*listed, *listingCopy, error) {
	var haveIndex, haveStreams fetch.Validators
	if old != nil {
		haveIndex = old.Validators
		if old.Streams != nil {
			haveStreams = old.Streams.Validators
		}
	}
	type streamsAnswer struct {
		res  *fetch.StreamsResult
		same bool
		err  error
	}
	streamsDone := make(chan streamsAnswer, 1)
	if withStreams {
		// Both at once: each is a round trip or two.
		go func() {
			res, same, err := c.FetchStreamsIf(ctx, haveStreams)
			streamsDone <- streamsAnswer{res, same, err}
		}()
	}
	ix, same, err := c.FetchIndexIf(ctx, r.mode, haveIndex)
	var sa streamsAnswer
	if withStreams {
		sa = <-streamsDone
	}
	if err != nil {
		return nil, nil, err
	}
	l := &listed{}
	keep := &listingCopy{Mode: string(r.mode)}
	if same {
		if l.index, err = c.VerifyIndex(&fetch.IndexResult{Path: old.Path, Data: old.Index, Signature: old.IndexSig, Validators: old.Validators}); err != nil {
			return nil, nil, err
		}
	} else {
		l.index = ix
	}
	keep.Path, keep.Index, keep.IndexSig, keep.Validators = l.index.Path, l.index.Data, l.index.Signature, l.index.Validators
	if withStreams {
		switch {
		case sa.err != nil:
			l.streamsErr = sa.err
			keep.NoStreams = isNotFound(sa.err)
		case sa.same:
			s := old.Streams
			l.streams, l.streamsErr = c.VerifyStreams(&fetch.StreamsResult{IndexData: s.IndexData, IndexSig: s.IndexSig,
				ImagesPath: s.ImagesPath, ImagesData: s.ImagesData, ImagesSig: s.ImagesSig, Validators: s.Validators})
		default:
			l.streams = sa.res
		}
		if l.streams != nil {
			s := l.streams
			keep.Streams = &streamsCopy{IndexData: s.IndexData, IndexSig: s.IndexSig, ImagesPath: s.ImagesPath,
				ImagesData: s.ImagesData, ImagesSig: s.ImagesSig, Validators: s.Validators}
		}
	} else if old != nil {
		keep.Streams, keep.NoStreams = old.Streams, old.NoStreams
	}
	if l.streamsErr != nil && !keep.NoStreams {
		// Only a server that has no streams is remembered so.
		keep.Streams = nil
	}
	return l, keep, nil
}

package fetch

import (
	"context"
	"fmt"
	pathpkg "path"
	"time"

	"github.com/lxc/lxc-download/compat"
)

// IndexResult is an index as FetchIndex got it.
type IndexResult struct {
	// Index is the parsed index.
	Index *compat.Index
	// SignedAt is when the index's signature says it was made; zero
	// without validation (nothing is signed then).
	SignedAt time.Time
	// Server is the server it came from, and Path its path there below
	// the server's prefix, e.g. "/meta/1.0/index-system.7".
	Server Server
	Path   string
}

// URL is the address the index was downloaded from.
func (r *IndexResult) URL() string { return r.Server.URL(r.Path) }

// Index is FetchIndex for callers that need only the index.
func (c *Client) Index(ctx context.Context, mode compat.Mode) (*compat.Index, error) {
	r, err := c.FetchIndex(ctx, mode)
	if err != nil {
		return nil, err
	}
	return r.Index, nil
}

// FetchIndex downloads, verifies (with Validate) and parses the image
// index for mode: meta/1.0/index-MODE.7 first, then meta/1.0/index-MODE
// when the compat-level file or its signature does not exist. The index
// and its signature always come from the primary server. With Validate,
// an index whose signature is older than Options.MaxIndexAge is refused
// with a *StaleIndexError; one dated in the future (a clock that is
// behind) is accepted, its time returned for the caller to keep.
func (c *Client) FetchIndex(ctx context.Context, mode compat.Mode) (*IndexResult, error) {
	base := "/meta/1.0/index-" + string(mode)
	path := fmt.Sprintf("%s.%d", base, compat.Level)
	data, signedAt, err := c.signedFile(ctx, path)
	if isNotFound(err) {
		path = base
		data, signedAt, err = c.signedFile(ctx, path)
	}
	if err != nil {
		return nil, err
	}
	if c.o.Validate && c.o.MaxIndexAge > 0 {
		now := c.o.now()
		if now.Sub(signedAt) > c.o.MaxIndexAge {
			return nil, &StaleIndexError{File: pathpkg.Base(path), SignedAt: signedAt, MaxAge: c.o.MaxIndexAge, Now: now}
		}
	}
	ix, err := compat.ParseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("parse index %s: %w", c.urlFor(path), err)
	}
	return &IndexResult{Index: ix, SignedAt: signedAt, Server: c.server, Path: path}, nil
}

// Index files and signatures are small; anything larger is not one.
const (
	maxIndexSize     = 32 << 20
	maxSignatureSize = 1 << 20
	maxSumsSize      = 1 << 20
)

// signedFile fetches path from the primary server and, with Validate, its
// signature path.asc, and verifies it, returning the signature's time. A
// missing file or signature is a *StatusError with code 404.
func (c *Client) signedFile(ctx context.Context, path string) ([]byte, time.Time, error) {
	if !c.o.Validate {
		data, err := c.getSmall(ctx, path, maxIndexSize)
		return data, time.Time{}, err
	}
	// The file and its signature at once: one round trip, not two; a
	// pair that straddled a mirror's switch is read again.
	data, _, signedAt, err := c.fetchSignedPair(ctx, path, path+".asc", maxIndexSize, false)
	if err != nil {
		return nil, time.Time{}, err
	}
	return data, signedAt, nil
}

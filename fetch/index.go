package fetch

import (
	"context"
	"errors"
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
	// Data is the index as served, and Signature its detached signature
	// (Path + ".asc"; nil without validation), for a caller that keeps a
	// copy and checks it again later with VerifyIndex.
	Data, Signature []byte
	// Validators are the ETag and Last-Modified the server sent with the
	// index and its signature, by path, for FetchIndexIf.
	Validators Validators
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
	r, _, err := c.FetchIndexIf(ctx, mode, nil)
	return r, err
}

// FetchIndexIf is FetchIndex for a caller that holds a copy of the index
// (an IndexResult it kept: its Path, Data, Signature and Validators).
// Each file is asked for on condition that it changed since the copy
// (If-None-Match with its ETag, If-Modified-Since with its Last-Modified,
// from have). When the server answers 304 Not Modified for the index and
// (with Validate) its signature, FetchIndexIf returns notModified and no
// result, having downloaded no body: the caller uses its copy, which it
// must check again with VerifyIndex (signature and age) as for any copy.
// Otherwise it downloads whatever is needed and returns the index as
// FetchIndex would, with its new validators. A nil have is FetchIndex.
func (c *Client) FetchIndexIf(ctx context.Context, mode compat.Mode, have Validators) (r *IndexResult, notModified bool, err error) {
	base := "/meta/1.0/index-" + string(mode)
	for attempt := 0; ; attempt++ {
		path := fmt.Sprintf("%s.%d", base, compat.Level)
		files := c.indexFiles(path)
		got, notModified, err := c.getListing(ctx, files, have)
		if isNotFound(err) {
			path = base
			files = c.indexFiles(path)
			got, notModified, err = c.getListing(ctx, files, have)
		}
		if err != nil {
			return nil, false, err
		}
		if notModified {
			return nil, true, nil
		}
		r = &IndexResult{Path: path, Data: got[0].data, Validators: validatorsFor(files, got)}
		if len(got) > 1 {
			r.Signature = got[1].data
		}
		r, err = c.VerifyIndex(r)
		if err == nil {
			return r, false, nil
		}
		// A pair that straddled a mirror's switch of the two files is
		// read once more (see fetchSignedPair); a bad one fails twice.
		if attempt > 0 || !errors.Is(err, ErrInvalidSignature) {
			return nil, false, err
		}
		c.verbose("%s and its signature do not match; reading both again (the server may have been replacing them)", c.urlFor(path))
		if serr := sleep(ctx, c.o.RetryWait); serr != nil {
			return nil, false, err
		}
		have = nil
	}
}

// indexFiles are the files of the index at path: the index and, with
// Validate, its signature (which must exist).
func (c *Client) indexFiles(path string) []listingFile {
	files := []listingFile{{path: path, limit: maxIndexSize}}
	if c.o.Validate {
		files = append(files, listingFile{path: path + ".asc", limit: maxSignatureSize})
	}
	return files
}

// VerifyIndex checks a copy of the index as FetchIndex checks what it
// downloads, and parses it: copy's Path (below the server's prefix, which
// names the signed file), Data and, with Validate, Signature are used, and
// Validators kept. It is for a copy kept from an earlier FetchIndex or
// FetchIndexIf of this server, before it is used again. A copy whose
// signature is older than Options.MaxIndexAge gives a *StaleIndexError
// together with the result, for a caller that shows an old listing with
// a warning when the server cannot be reached; any other error comes
// without a result.
func (c *Client) VerifyIndex(copy *IndexResult) (*IndexResult, error) {
	r := &IndexResult{Server: c.server, Path: copy.Path, Data: copy.Data, Signature: copy.Signature, Validators: copy.Validators}
	if c.o.Validate {
		signedAt, err := verifyDetached(c.o.Keyring, pathpkg.Base(r.Path), r.Data, r.Signature, c.o.now)
		if err != nil {
			return nil, err
		}
		r.SignedAt = signedAt
	} else {
		r.Signature = nil
	}
	ix, err := compat.ParseIndex(r.Data)
	if err != nil {
		return nil, withClass(fmt.Errorf("parse index %s: %w", c.urlFor(r.Path), err), ClassServer, KindNone)
	}
	r.Index = ix
	if c.o.Validate && c.o.MaxIndexAge > 0 {
		now := c.o.now()
		if now.Sub(r.SignedAt) > c.o.MaxIndexAge {
			return r, &StaleIndexError{File: pathpkg.Base(r.Path), SignedAt: r.SignedAt, MaxAge: c.o.MaxIndexAge, Now: now}
		}
	}
	return r, nil
}

// Index files and signatures are small; anything larger is not one.
const (
	maxIndexSize     = 32 << 20
	maxSignatureSize = 1 << 20
	maxSumsSize      = 1 << 20
)

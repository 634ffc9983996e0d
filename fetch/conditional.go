package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	pathpkg "path"
	"strings"
	"time"

	"github.com/lxc/lxc-download/compat"
)

// Validator is what a server said identifies the copy of a file it sent:
// its ETag and Last-Modified headers, as they came (either may be empty).
// Sent back as If-None-Match and If-Modified-Since, it lets the server
// answer "not modified" without the body.
type Validator struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// IsZero reports a server that sent neither header: nothing to ask with.
func (v Validator) IsZero() bool { return v.ETag == "" && v.LastModified == "" }

// Validators are the validators of the files a listing was made of (the
// index and its signature, the simplestreams and theirs), by path below
// the server's prefix: "/meta/1.0/index-system.7",
// "/meta/1.0/index-system.7.asc". A file that was absent (an unsigned
// stream's signature) has no entry. Callers keep them with their copy of
// the files (they marshal to JSON) and give them back to FetchIndexIf and
// FetchStreamsIf.
type Validators map[string]Validator

// validatorsOf reads the validators of a response.
func validatorsOf(h http.Header) Validator {
	return Validator{ETag: h.Get("ETag"), LastModified: h.Get("Last-Modified")}
}

// listingFile is one file of a listing: an index, a stream or a
// signature.
type listingFile struct {
	path  string
	limit int64
	// optional files may be absent: a 404 for one is no error.
	optional bool
}

// askListing fetches files at once from the primary server, each on
// condition that it changed when have holds validators for it. unchanged
// says that each file the caller has a copy of is unchanged (304) and
// each optional file it has none of is still absent: the caller's copy
// is current. The first error, in the order of files, is returned; an
// optional file's 404 is not one, but marks the file absent.
func (c *Client) askListing(ctx context.Context, files []listingFile, have Validators) (got []smallResult, unchanged bool, err error) {
	ask := make([]smallFile, len(files))
	conds := make([]*Validator, len(files))
	for i, f := range files {
		ask[i] = smallFile{path: f.path, limit: f.limit}
		if v, ok := have[f.path]; ok && !v.IsZero() {
			conds[i] = &v
		}
	}
	got = c.getSmallAllIf(ctx, ask, conds)
	unchanged = len(have) > 0
	some := false
	for i, f := range files {
		_, held := have[f.path]
		switch {
		case got[i].err == nil:
			if got[i].notModified {
				some = true
			} else {
				unchanged = false
			}
		case f.optional && isNotFound(got[i].err):
			got[i] = smallResult{absent: true}
			if held {
				unchanged = false
			}
		default:
			return nil, false, got[i].err
		}
	}
	return got, unchanged && some, nil
}

// completeListing downloads again, without conditions, each file of got
// that was answered "not modified": some other file changed, so the
// caller's copy is no use, and every file must come from the server.
func (c *Client) completeListing(ctx context.Context, files []listingFile, got []smallResult) error {
	var again []smallFile
	var at []int
	for i, f := range files {
		if got[i].notModified {
			again = append(again, smallFile{path: f.path, limit: f.limit})
			at = append(at, i)
		}
	}
	if len(again) == 0 {
		return nil
	}
	for j, r := range c.getSmallAll(ctx, again) {
		i := at[j]
		switch {
		case r.err == nil:
			got[i] = r
		case files[i].optional && isNotFound(r.err):
			got[i] = smallResult{absent: true}
		default:
			return r.err
		}
	}
	return nil
}

// getListing is askListing, then completeListing when something changed.
func (c *Client) getListing(ctx context.Context, files []listingFile, have Validators) ([]smallResult, bool, error) {
	got, unchanged, err := c.askListing(ctx, files, have)
	if err != nil || unchanged {
		return nil, unchanged, err
	}
	if err := c.completeListing(ctx, files, got); err != nil {
		return nil, false, err
	}
	return got, false, nil
}

// validatorsFor are the validators of the files got holds, by path.
func validatorsFor(files []listingFile, got []smallResult) Validators {
	v := Validators{}
	for i, f := range files {
		if !got[i].absent && !got[i].got.IsZero() {
			v[f.path] = got[i].got
		}
	}
	return v
}

// streamsFiles are the files of the simplestreams file at path: the file
// and, with Validate, its signature, which may be absent (unsigned
// streams).
func (c *Client) streamsFiles(path string, limit int64) []listingFile {
	files := []listingFile{{path: path, limit: limit}}
	if c.o.Validate {
		files = append(files, listingFile{path: path + compat.StreamsSignatureSuffix, limit: maxSignatureSize, optional: true})
	}
	return files
}

// FetchStreamsIf is FetchStreams for a caller that holds a copy of the
// simplestreams (a StreamsResult it kept: its IndexData, IndexSig,
// ImagesPath, ImagesData, ImagesSig and Validators). Each file is asked
// for on condition that it changed since the copy, as FetchIndexIf does.
// When the server answers 304 Not Modified for every file of the copy,
// and the signatures the copy lacks are still absent, it returns
// notModified and no result: the caller uses its copy, which it must
// check again with VerifyStreams. Otherwise it returns the streams as
// FetchStreams would, with their validators. A nil have downloads
// everything.
func (c *Client) FetchStreamsIf(ctx context.Context, have Validators) (r *StreamsResult, notModified bool, err error) {
	for attempt := 0; ; attempt++ {
		r, notModified, err = c.fetchStreamsIf(ctx, have)
		// Files and signatures that straddled a mirror's switch are read
		// once more (see fetchSignedPair); a bad one fails twice.
		if err == nil || attempt > 0 || !errors.Is(err, ErrInvalidSignature) {
			return r, notModified, err
		}
		c.verbose("%s and its signatures do not match; reading both again (the server may have been replacing them)", c.urlFor("/"+compat.StreamsIndexPath))
		if serr := sleep(ctx, c.o.RetryWait); serr != nil {
			return nil, false, err
		}
		have = nil
	}
}

// fetchStreamsIf is one reading of FetchStreamsIf.
func (c *Client) fetchStreamsIf(ctx context.Context, have Validators) (r *StreamsResult, notModified bool, err error) {
	indexPath := "/" + compat.StreamsIndexPath
	indexFiles := c.streamsFiles(indexPath, compat.MaxStreamsIndexSize)
	indexGot, indexSame, err := c.askListing(ctx, indexFiles, have)
	if err != nil {
		return nil, false, err
	}
	imagesPath := ""
	if indexSame {
		// The catalogue is the one the unchanged index named: the copy's.
		imagesPath = imagesPathOf(have, indexPath)
		indexSame = imagesPath != ""
	}
	if !indexSame {
		if err := c.completeListing(ctx, indexFiles, indexGot); err != nil {
			return nil, false, err
		}
		ix, err := compat.ParseStreamsIndex(indexGot[0].data)
		if err != nil {
			return nil, false, withClass(fmt.Errorf("parse %s: %w", c.urlFor(indexPath), err), ClassServer, KindNone)
		}
		imagesPath = "/" + ix.ImagesPath
	}
	imagesFiles := c.streamsFiles(imagesPath, compat.MaxStreamsSize)
	imagesGot, imagesSame, err := c.askListing(ctx, imagesFiles, have)
	if err != nil {
		return nil, false, err
	}
	if indexSame && imagesSame {
		return nil, true, nil
	}
	if err := c.completeListing(ctx, indexFiles, indexGot); err != nil {
		return nil, false, err
	}
	if err := c.completeListing(ctx, imagesFiles, imagesGot); err != nil {
		return nil, false, err
	}
	raw := &StreamsResult{
		IndexData:  indexGot[0].data,
		ImagesPath: strings.TrimPrefix(imagesPath, "/"),
		ImagesData: imagesGot[0].data,
		Validators: validatorsFor(append(indexFiles, imagesFiles...), append(indexGot, imagesGot...)),
	}
	if len(indexGot) > 1 && !indexGot[1].absent {
		raw.IndexSig = indexGot[1].data
	}
	if len(imagesGot) > 1 && !imagesGot[1].absent {
		raw.ImagesSig = imagesGot[1].data
	}
	r, err = c.VerifyStreams(raw)
	if err != nil {
		return nil, false, err
	}
	return r, false, nil
}

// imagesPathOf finds, among the paths of have, the catalogue's: the one
// that is neither the index nor a signature. "" if there is not exactly
// one.
func imagesPathOf(have Validators, indexPath string) string {
	found := ""
	for p := range have {
		if p == indexPath || strings.HasSuffix(p, compat.StreamsSignatureSuffix) {
			continue
		}
		if found != "" {
			return ""
		}
		found = p
	}
	return found
}

// VerifyStreams checks a copy of the simplestreams as FetchStreams checks
// what it downloads, and parses it: copy's IndexData, ImagesData and,
// with Validate, IndexSig and ImagesSig (nil for unsigned streams: both or
// neither) are used; ImagesPath, when set, must be the catalogue the index
// names; Validators are kept. It is for a copy kept from an earlier
// FetchStreams or FetchStreamsIf of this server, before it is used again.
// A copy signed longer ago than Options.MaxIndexAge gives a
// *StaleIndexError together with the result; any other error comes
// without a result.
func (c *Client) VerifyStreams(copy *StreamsResult) (*StreamsResult, error) {
	res := &StreamsResult{IndexData: copy.IndexData, ImagesData: copy.ImagesData, Validators: copy.Validators}
	indexPath := "/" + compat.StreamsIndexPath
	var indexSigned, imagesSigned time.Time
	var err error
	if c.o.Validate && copy.IndexSig != nil {
		res.IndexSig = copy.IndexSig
		if indexSigned, err = verifyDetached(c.o.Keyring, pathpkg.Base(indexPath), res.IndexData, res.IndexSig, c.o.now); err != nil {
			return nil, err
		}
	}
	if res.Index, err = compat.ParseStreamsIndex(res.IndexData); err != nil {
		return nil, withClass(fmt.Errorf("parse %s: %w", c.urlFor(indexPath), err), ClassServer, KindNone)
	}
	res.ImagesPath = res.Index.ImagesPath
	if copy.ImagesPath != "" && strings.TrimPrefix(copy.ImagesPath, "/") != res.ImagesPath {
		return nil, withClass(fmt.Errorf("%s names the catalogue %s, not %s", c.urlFor(indexPath), res.ImagesPath, copy.ImagesPath), ClassServer, KindNone)
	}
	if c.o.Validate && copy.ImagesSig != nil {
		res.ImagesSig = copy.ImagesSig
		if imagesSigned, err = verifyDetached(c.o.Keyring, pathpkg.Base(res.ImagesPath), res.ImagesData, res.ImagesSig, c.o.now); err != nil {
			return nil, err
		}
	}
	if c.o.Validate && (res.IndexSig == nil) != (res.ImagesSig == nil) {
		// Both or neither: a signed catalogue behind an unsigned index
		// (or the other way round) is not what any server publishes.
		unsigned := compat.StreamsIndexPath
		if res.ImagesSig == nil {
			unsigned = res.ImagesPath
		}
		return nil, fmt.Errorf("%w: the simplestreams are signed in part only: %s has no %s", ErrInvalidSignature, unsigned, compat.StreamsSignatureSuffix)
	}
	if res.Streams, err = compat.ParseStreams(res.ImagesData); err != nil {
		return nil, withClass(fmt.Errorf("parse %s: %w", c.urlFor("/"+res.ImagesPath), err), ClassServer, KindNone)
	}
	if c.o.Validate && res.IndexSig != nil {
		res.Signed = true
		res.SignedAt = indexSigned
		if imagesSigned.Before(indexSigned) {
			res.SignedAt = imagesSigned
		}
		if c.o.MaxIndexAge > 0 {
			now := c.o.now()
			if now.Sub(res.SignedAt) > c.o.MaxIndexAge {
				return res, &StaleIndexError{File: pathpkg.Base(res.ImagesPath), SignedAt: res.SignedAt, MaxAge: c.o.MaxIndexAge, Now: now}
			}
		}
	}
	return res, nil
}

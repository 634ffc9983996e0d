package cmd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// What a template run takes from the server's simplestreams: a release
// named by an alias ("-r 12"), and a pinned build (--build). The signed
// index stays the authority: an alias must name a release the index has,
// and a pinned build is verified by its own directory's signed SHA256SUMS,
// in the directory the index places the image in unless the streams are
// signed themselves.

// fetchStreams downloads the simplestreams once per run.
func (r *run) fetchStreams(ctx context.Context, c *fetch.Client) (*fetch.StreamsResult, error) {
	if r.streams == nil && r.streamsErr == nil {
		r.streams, r.streamsErr = c.FetchStreams(ctx)
	}
	return r.streams, r.streamsErr
}

// releaseAliased is findEntry's answer for a release the index does not
// have but an alias names: obtain starts again with Release.
type releaseAliased struct{ compat.ReleaseAlias }

func (e *releaseAliased) Error() string { return e.String() }

// findEntry finds the image in the index. When the index has no such
// release, and the simplestreams name one by that alias, it says so and
// returns a *releaseAliased.
func (r *run) findEntry(ctx context.Context, c *fetch.Client, ix *compat.Index) (compat.Entry, error) {
	o := r.o
	q := compat.Query{Dist: o.Dist, Release: o.Release, Arch: o.Arch, Variant: o.Variant}
	entry, err := ix.Find(q)
	var nf *compat.NotFoundError
	if err == nil || !errors.As(err, &nf) || nf.Field != "release" {
		return entry, err
	}
	alias, aerr := r.resolveAlias(ctx, c, ix, q)
	switch {
	case aerr != nil:
		return entry, aerr
	case alias == nil:
		return entry, err
	}
	return entry, &releaseAliased{*alias}
}

// resolveAlias reads q.Release as an alias of the simplestreams. It
// returns nil when the server has no simplestreams or no alias matches.
// The streams need not be signed: the release they name must be one the
// signed index has for q's distribution, architecture and variant, which
// is all a run can create anyway, and the choice is printed (with a
// warning when the streams are unsigned, since they could have named
// another of the index's releases).
func (r *run) resolveAlias(ctx context.Context, c *fetch.Client, ix *compat.Index, q compat.Query) (*compat.ReleaseAlias, error) {
	sr, err := r.fetchStreams(ctx, c)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release %q is not in the index, and the simplestreams that could name it as an alias cannot be used: %w", q.Release, err)
	}
	resolved, alias, err := sr.Streams.ResolveRelease(q)
	if err != nil || alias == nil {
		return nil, err
	}
	r.say("Using release %s for %s (alias %s)", alias.Release, alias.Asked, alias.Alias)
	if !sr.Signed && r.o.Validate {
		r.warnOnce("alias-unsigned", "The alias %s comes from unsigned simplestreams: check that %s is the release you meant", alias.Alias, alias.Release)
	}
	if _, err := ix.Find(resolved); err != nil {
		return nil, err
	}
	return alias, nil
}

// buildGoneError is a pinned build the server does not have (any more).
type buildGoneError struct {
	Build, Image string
	// Retained are the builds of the image the streams list, newest first.
	Retained []string
	// Err, when not nil, is the 404 of a build the streams still list.
	Err error
}

func (e *buildGoneError) Error() string {
	retained := "none"
	if len(e.Retained) > 0 {
		retained = strings.Join(e.Retained, ", ")
	}
	if e.Err != nil {
		return fmt.Sprintf("build %s of %s is listed in the simplestreams but gone from the server (%v); the builds it retains: %s", e.Build, e.Image, e.Err, retained)
	}
	return fmt.Sprintf("build %s of %s is not on the server (any more); the builds it retains: %s", e.Build, e.Image, retained)
}

func (e *buildGoneError) Unwrap() error { return e.Err }

// pinnedRootfs is the rootfs of a pinned build as the streams describe it.
type pinnedRootfs struct {
	build, image string
	item         compat.Item
}

// check compares the rootfs's sha256 as source gives it ("its signed
// SHA256SUMS", "the verified download") with the streams'.
func (p *pinnedRootfs) check(sha256, source string) error {
	if sha256 == p.item.SHA256 {
		return nil
	}
	return fmt.Errorf("build %s of %s: the simplestreams give %s the sha256 %s, but %s has %s: refusing a catalogue that disagrees with the build",
		p.build, p.image, compat.RootfsFile, p.item.SHA256, source, sha256)
}

// refreshPinned obtains the pinned build o.Build of the image: from the
// cache when its entry holds exactly that build (verified again), else
// from the server into a private directory, not kept in the cache. The
// cache entry holds what runs without --build downloaded, and is never
// replaced by a pinned build: a run without --build would otherwise find
// an older build there and, until it expires, use it as the current one.
func (r *run) refreshPinned(ctx context.Context, st *store, old *cache.Entry) (*image, error) {
	o := r.o
	if old != nil && old.BuildID == o.Build {
		img, err := r.open(ctx, st, old)
		if err == nil {
			r.say("Using image from local cache")
			return img, nil
		}
		if !errors.Is(err, errUnverified) {
			return nil, err
		}
		r.warnOnce("cache-unverified", "Not using the cached copy in %s: %v; downloading it again", old.Dir, err)
	}
	if _, err := r.seen(st); err != nil {
		return nil, err
	}
	c, res, err := r.indexFrom(ctx)
	if err != nil {
		return nil, err
	}
	newest, err := r.findEntry(ctx, c, res.Index)
	if err != nil {
		return nil, err
	}
	// A pinned build is a deliberate downgrade, allowed by the freshness
	// rules (cache.CheckFresh with allowDowngrade); the newest build and
	// index signature seen are still remembered, and never lowered.
	if st.usable && st.readOnly == nil && o.Validate {
		if err := r.recordSeen(st, cache.Seen{Build: newest.Build, IndexSigned: res.SignedAt}); err != nil {
			return nil, err
		}
	}
	entry, want, err := r.pinnedBuild(ctx, c, newest, o.Build)
	if err != nil {
		return nil, err
	}
	r.say("Using build %s of %s (--build; not kept in the cache)", o.Build, want.image)
	dc, capped, err := r.cappedClient(ctx, c, want.item.Size)
	if err != nil {
		return nil, err
	}
	st.transient = true
	img, err := r.download(ctx, st, dc, entry, want)
	var limit *fetch.SizeLimitError
	switch {
	case isNotFound(err):
		return nil, &buildGoneError{Build: o.Build, Image: want.image, Retained: r.retained(), Err: err}
	case capped && errors.As(err, &limit):
		return nil, fmt.Errorf("the simplestreams give %s of build %s a size of %d bytes, and the server sends more: %w", compat.RootfsFile, o.Build, want.item.Size, err)
	}
	return img, err
}

// imageRemovedError is an image the index names whose files the server
// does not have (404 or 410, from its mirrors and itself).
type imageRemovedError struct {
	Build, Image string
	Err          error
}

func (e *imageRemovedError) Error() string {
	return fmt.Sprintf("the index names build %s of %s, but its files are gone from the server: %v", e.Build, e.Image, e.Err)
}

func (e *imageRemovedError) Unwrap() error { return e.Err }

// fallBack answers an index whose build's files are missing on the server
// (on its mirrors and on itself: the download asks the primary after a
// mirror's 404) with the newest older build the server still retains, by
// its simplestreams, that verifies, and no older than the build this host
// has cached (old), which it then uses as it is. It says so, naming both
// builds; --exact-build refuses it, and a pinned build never gets here.
func (r *run) fallBack(ctx context.Context, st *store, c *fetch.Client, entry compat.Entry, old *cache.Entry, missing error) (*image, error) {
	o := r.o
	name := entry.Dist + "/" + entry.Release + "/" + entry.Arch + "/" + entry.Variant
	removed := &imageRemovedError{Build: entry.Build, Image: name, Err: missing}
	if o.ExactBuild {
		return nil, removed
	}
	// The cached copy, when it is an older build, is the floor: nothing
	// older than it is taken, and it serves when the server has nothing
	// newer that verifies.
	cached := old != nil && compat.ValidBuildID(old.BuildID) && old.BuildID < entry.Build
	if sr, err := r.fetchStreams(ctx, c); err == nil {
		p, _ := sr.Streams.Product(compat.Query{Dist: entry.Dist, Release: entry.Release, Arch: entry.Arch, Variant: entry.Variant})
		for _, b := range productBuilds(p) {
			if !b.HasRootfs() || !compat.ValidBuildID(b.ID) || b.ID >= entry.Build {
				continue
			}
			if cached && b.ID <= old.BuildID {
				break
			}
			e, want, err := r.pinnedBuild(ctx, c, entry, b.ID)
			if err != nil {
				return nil, fmt.Errorf("%w; and its older build %s: %v", removed, b.ID, err)
			}
			r.warnOnce("fallback", "The index names build %s of %s, but the server no longer has its files; using build %s, the newest older build it retains (--exact-build refuses this)", entry.Build, name, b.ID)
			dc, _, err := r.cappedClient(ctx, c, want.item.Size)
			if err != nil {
				return nil, err
			}
			img, err := r.download(ctx, st, dc, e, want)
			if isNotFound(err) {
				continue
			}
			return img, err
		}
	}
	if !cached {
		return nil, removed
	}
	r.warnOnce("fallback", "The index names build %s of %s, but the server no longer has its files; using build %s from the local cache (--exact-build refuses this)", entry.Build, name, old.BuildID)
	img, err := r.open(ctx, st, old)
	if err != nil {
		return nil, fmt.Errorf("%w; and the cached build %s: %v", removed, old.BuildID, err)
	}
	r.say("Using image from local cache")
	return img, nil
}

// productBuilds are p's builds, newest first; none for no product.
func productBuilds(p *compat.Product) []compat.Build {
	if p == nil {
		return nil
	}
	return p.Builds
}

// retained are the builds with an LXC rootfs that the streams list for
// the image, newest first.
func (r *run) retained() []string {
	if r.streams == nil {
		return nil
	}
	o := r.o
	p, ok := r.streams.Streams.Product(compat.Query{Dist: o.Dist, Release: o.Release, Arch: o.Arch, Variant: o.Variant})
	if !ok {
		return nil
	}
	var out []string
	for _, b := range p.Builds {
		if b.HasRootfs() {
			out = append(out, b.ID)
		}
	}
	return out
}

// pinnedBuild finds the pinned build in the streams and returns it as an
// index entry for the download, with its rootfs as the streams describe
// it. newest is the index's entry for the image. Unsigned streams are not
// trusted to say where the build is: it must be in the directory beside
// newest's, named for the build, or a forged catalogue could point the
// image at another image's signed build directory. The build's signed
// SHA256SUMS, when the server publishes one, must agree with the streams
// before anything large is downloaded.
func (r *run) pinnedBuild(ctx context.Context, c *fetch.Client, newest compat.Entry, build string) (compat.Entry, *pinnedRootfs, error) {
	o := r.o
	name := newest.Dist + "/" + newest.Release + "/" + newest.Arch + "/" + newest.Variant
	sr, err := r.fetchStreams(ctx, c)
	if isNotFound(err) {
		return compat.Entry{}, nil, fmt.Errorf("--build needs the server's simplestreams (%s), which it does not publish: %w", compat.StreamsIndexPath, err)
	}
	if err != nil {
		return compat.Entry{}, nil, err
	}
	p, ok := sr.Streams.Product(compat.Query{Dist: newest.Dist, Release: newest.Release, Arch: newest.Arch, Variant: newest.Variant})
	if !ok {
		return compat.Entry{}, nil, &buildGoneError{Build: build, Image: name}
	}
	b, ok := p.Build(build)
	if !ok || !b.HasRootfs() {
		return compat.Entry{}, nil, &buildGoneError{Build: build, Image: name, Retained: r.retained()}
	}
	if !sr.Signed {
		if want := siblingDir(newest.Path, build); b.Dir != want {
			return compat.Entry{}, nil, fmt.Errorf("the simplestreams, which are not signed, put build %s of %s in %s, not in %s beside the build the signed index names: refusing it", build, name, b.Dir, want)
		}
	}
	entry := p.Entry(b)
	want := &pinnedRootfs{build: build, image: name, item: *b.Rootfs}
	sums, signed, err := c.BuildSums(ctx, entry)
	switch {
	case isNotFound(err):
		// Gone, or the server signs each file instead: the download
		// tells, and checks the rootfs against the streams then.
	case err != nil:
		return compat.Entry{}, nil, err
	case signed || !o.Validate:
		source := "its signed SHA256SUMS"
		if !signed {
			source = "its SHA256SUMS"
		}
		if sum, ok := sums[compat.RootfsFile]; ok {
			if err := want.check(sum, source); err != nil {
				return compat.Entry{}, nil, err
			}
		}
	}
	return entry, want, nil
}

// siblingDir is the build directory of build beside the index path dir:
// dir with its last segment replaced, as an index path
// ("/images/debian/bookworm/amd64/default/BUILD/").
func siblingDir(dir, build string) string {
	var segs []string
	for _, s := range strings.Split(dir, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	if len(segs) == 0 {
		return "/" + build + "/"
	}
	segs[len(segs)-1] = build
	return "/" + strings.Join(segs, "/") + "/"
}

// cappedClient is c, or a client like it whose rootfs downloads stop at
// size bytes when the streams give a size below this run's limit: the
// download of a pinned build stops where the file it should be ends.
func (r *run) cappedClient(ctx context.Context, c *fetch.Client, size int64) (*fetch.Client, bool, error) {
	limit := r.o.MaxRootfsSize
	if limit <= 0 {
		limit = fetch.DefaultMaxRootfsSize
	}
	if size <= 0 || size >= limit {
		return c, false, nil
	}
	fo, err := r.fetchOptions()
	if err != nil {
		return nil, false, err
	}
	fo.MaxRootfsSize = size
	if r.o.Validate {
		if fo.Keyring, err = r.keyring(ctx); err != nil {
			return nil, false, err
		}
	}
	dc, err := fetch.New(fo)
	if err != nil {
		return nil, false, err
	}
	return dc, true, nil
}

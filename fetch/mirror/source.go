package mirror

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// IndexPaths are the index files a mirror copies from the source, where
// it publishes them, each with its signature PATH.asc: the compat-level
// variant that clients ask for first, then the plain one, for system and
// user mode.
func IndexPaths() []string {
	var out []string
	for _, mode := range []compat.Mode{compat.System, compat.User} {
		base := "meta/1.0/index-" + string(mode)
		out = append(out, fmt.Sprintf("%s.%d", base, compat.Level), base)
	}
	return out
}

// StreamsIndexPath is where the simplestreams index is published.
const StreamsIndexPath = compat.StreamsIndexPath

// source is what the source server publishes, verified.
type source struct {
	// indexes are the index files it has, in IndexPaths order, with
	// their parsed entries.
	indexes []sourceIndex
	// streams is nil when the server has no simplestreams.
	streams *fetch.StreamsResult
	// imagesPath is the catalogue's path below the root, checked.
	imagesPath string
}

type sourceIndex struct {
	rel     string // "meta/1.0/index-system.7"
	file    *fetch.SignedFile
	entries []compat.Entry
}

// fetchSource reads the source's indexes and streams. Every index must
// verify and be no older than Options.Source.MaxIndexAge; one the server
// does not have (404) is left out, but it must have at least one.
func (m *run) fetchSource(ctx context.Context) (*source, error) {
	src := &source{}
	var missing error
	for _, rel := range IndexPaths() {
		f, err := m.client.FetchSignedFile(ctx, "/"+rel)
		if fetch.IsNotFound(err) {
			if missing == nil {
				missing = err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := m.checkAge(rel, f.SignedAt); err != nil {
			return nil, err
		}
		ix, err := compat.ParseIndex(f.Data)
		if err != nil {
			return nil, fmt.Errorf("parse %s of %s: %w", rel, m.rep.Source, err)
		}
		src.indexes = append(src.indexes, sourceIndex{rel: rel, file: f, entries: ix.Entries})
	}
	if len(src.indexes) == 0 {
		return nil, fmt.Errorf("the source has no index: %w", missing)
	}
	st, err := m.client.FetchStreams(ctx)
	switch {
	case fetch.IsNotFound(err):
		if m.o.Keep > 1 {
			m.log.printf("WARNING: %s publishes no simplestreams: only the build each index names is mirrored, not %d", m.rep.Source, m.o.Keep)
		}
	case err != nil:
		return nil, err
	default:
		rel, err := cleanRel(st.ImagesPath)
		if err != nil {
			return nil, fmt.Errorf("the streams index of %s names its catalogue at %q: %w", m.rep.Source, st.ImagesPath, err)
		}
		if rel == StreamsIndexPath || strings.HasPrefix(rel, "meta/") {
			return nil, fmt.Errorf("the streams index of %s names its catalogue at %q, where other files go", m.rep.Source, st.ImagesPath)
		}
		src.streams, src.imagesPath = st, rel
	}
	return src, nil
}

// checkAge refuses an index signed longer ago than the source options
// allow, as a template run would.
func (m *run) checkAge(rel string, t time.Time) error {
	maxAge := m.o.Source.MaxIndexAge
	if maxAge == 0 {
		maxAge = fetch.DefaultMaxIndexAge
	}
	if maxAge < 0 {
		return nil
	}
	now := m.o.Now()
	if m.o.Source.Now != nil {
		now = m.o.Source.Now()
	}
	if now.Sub(t) > maxAge {
		return &fetch.StaleIndexError{File: rel[strings.LastIndexByte(rel, '/')+1:], SignedAt: t, MaxAge: maxAge, Now: now}
	}
	return nil
}

// cleanRel turns a path of the server (an index path, a catalogue path)
// into the relative path of the same file or directory in the mirror:
// no empty, "." or ".." segment, none starting with a dot (the mirror's
// own WorkDir is one), at least one segment.
func cleanRel(p string) (string, error) {
	var segs []string
	for _, s := range strings.Split(p, "/") {
		switch {
		case s == "":
			continue
		case s[0] == '.':
			return "", fmt.Errorf("segment %q starts with a dot", compat.PrintableLine(s))
		case strings.ContainsAny(s, "\\\x00"):
			return "", fmt.Errorf("segment %q has a backslash or NUL", compat.PrintableLine(s))
		}
		segs = append(segs, s)
	}
	if len(segs) == 0 {
		return "", fmt.Errorf("empty path")
	}
	return strings.Join(segs, "/"), nil
}

// buildRel is cleanRel for a build directory, which must also stay out of
// the places of the indexes and streams.
func buildRel(p string) (string, error) {
	rel, err := cleanRel(p)
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(rel, "/")
	if first == "meta" || first == "streams" || !strings.Contains(rel, "/") {
		return "", fmt.Errorf("%q is not a build directory's path", p)
	}
	return rel, nil
}

// build is one build chosen for the mirror.
type build struct {
	image compat.Query
	// entry is the build as an index line names it; entry.Path is its
	// directory on the source.
	entry compat.Entry
	// rel is its directory below the destination; "" when its path was
	// refused (err says why).
	rel string
	// rootfs is the rootfs as the source's streams list it, nil when they
	// do not list this build.
	rootfs *compat.Item

	status string
	bytes  int64
	err    error
	// adopt: a directory is there that this mirror has no record of: it
	// is verified before it counts.
	adopt bool
	// extras are the Incus files of the build (Options.Incus); with
	// extrasOnly, the build is in place but lacks some of them.
	extras     []extraFile
	extrasOnly bool
}

// selectBuilds picks the builds to mirror: for every image that has a
// build matching the filters (as listing matches them: the streams' rows
// with their aliases and titles, or the index's where the streams do not
// list the image), the build each index names and the newest keep builds
// the streams list that match. Builds come out in image order, each once.
func selectBuilds(src *source, fs compat.Filters, keep int) []*build {
	type image struct {
		q       compat.Query
		product *compat.Product
		indexed []compat.Entry
	}
	var order []compat.Query
	images := map[compat.Query]*image{}
	get := func(q compat.Query) *image {
		im := images[q]
		if im == nil {
			im = &image{q: q}
			images[q] = im
			order = append(order, q)
		}
		return im
	}
	if src.streams != nil {
		for i := range src.streams.Streams.Products {
			p := &src.streams.Streams.Products[i]
			get(compat.Query{Dist: p.Dist, Release: p.Release, Arch: p.Arch, Variant: p.Variant}).product = p
		}
	}
	for _, ix := range src.indexes {
		for _, e := range ix.entries {
			im := get(compat.Query{Dist: e.Dist, Release: e.Release, Arch: e.Arch, Variant: e.Variant})
			im.indexed = append(im.indexed, e)
		}
	}
	row := func(im *image, e compat.Entry) compat.ListRow {
		r := compat.ListRow{Dist: e.Dist, Release: e.Release, Arch: e.Arch, Variant: e.Variant, Build: e.Build, Path: e.Path}
		if p := im.product; p != nil {
			r.OS, r.ReleaseTitle, r.Aliases, r.FromStreams = p.OS, p.ReleaseTitle, p.Aliases, true
			if b, ok := p.Build(e.Build); ok && b.Rootfs != nil {
				r.Size, r.SHA256 = b.Rootfs.Size, b.Rootfs.SHA256
			}
		}
		return r
	}
	var out []*build
	seen := map[string]bool{}
	add := func(im *image, e compat.Entry) {
		key := e.File("")
		if seen[key] {
			return
		}
		seen[key] = true
		b := &build{image: im.q, entry: e}
		if im.product != nil {
			if pb, ok := im.product.Build(e.Build); ok && pb.Rootfs != nil && im.product.Entry(pb).File("") == key {
				b.rootfs = pb.Rootfs
			}
		}
		b.rel, b.err = buildRel(e.Path)
		if b.err != nil {
			b.err = fmt.Errorf("refusing to mirror it: %w", b.err)
			b.status = StatusFailed
		}
		out = append(out, b)
	}
	for _, q := range order {
		im := images[q]
		var matching []compat.Entry
		matched := false
		if p := im.product; p != nil {
			for _, pb := range p.Builds {
				if !pb.HasRootfs() {
					continue
				}
				e := p.Entry(pb)
				if fs.Match(row(im, e)) {
					matched = true
					matching = append(matching, e)
				}
			}
		}
		for _, e := range im.indexed {
			if fs.Match(row(im, e)) {
				matched = true
			}
		}
		if !matched {
			continue
		}
		for _, e := range im.indexed {
			add(im, e)
		}
		for i, e := range matching {
			if i == keep {
				break
			}
			add(im, e)
		}
	}
	return out
}

package compat

import (
	"fmt"
	"slices"
	"strings"
)

// ReleaseAlias says how ResolveRelease read a release given by one of its
// aliases, for the caller to print.
type ReleaseAlias struct {
	// Asked is the release as given ("12").
	Asked string
	// Release is the release it stands for ("bookworm").
	Release string
	// Alias is the alias that says so ("debian/12"): of those that do,
	// the shortest, then the first in byte order.
	Alias string
}

// String is what to tell the user: `release "12" is "bookworm" (alias
// debian/12)`.
func (a *ReleaseAlias) String() string {
	return fmt.Sprintf("release %q is %q (alias %s)", a.Asked, a.Release, a.Alias)
}

// ResolveRelease reads q.Release through the aliases of q.Dist's products
// when no product of q.Dist has that release: "-d debian -r 12" finds the
// products whose aliases start with "debian/12" ("debian/12",
// "debian/12/cloud") and, when they all have the same release, returns q
// with that release and how it was found. The architecture and variant of
// q play no part: an alias names a release whatever the build.
//
// It returns q unchanged and a nil *ReleaseAlias when there is nothing to
// resolve (no streams, no dist or release asked, the release exists, or
// no alias matches; the caller then reports what the index offers), and
// an error when the alias names more than one release.
func (s *Streams) ResolveRelease(q Query) (Query, *ReleaseAlias, error) {
	if s == nil || q.Dist == "" || q.Release == "" {
		return q, nil, nil
	}
	best := map[string]string{} // release: shortest alias naming it
	for i := range s.Products {
		p := &s.Products[i]
		if p.Dist != q.Dist {
			continue
		}
		if p.Release == q.Release {
			return q, nil, nil
		}
		for _, a := range p.Aliases {
			parts := strings.Split(a, "/")
			if len(parts) < 2 || parts[0] != q.Dist || parts[1] != q.Release {
				continue
			}
			if old, ok := best[p.Release]; !ok || len(a) < len(old) || (len(a) == len(old) && a < old) {
				best[p.Release] = a
			}
		}
	}
	switch len(best) {
	case 0:
		return q, nil, nil
	case 1:
		for release, alias := range best {
			out := q
			out.Release = release
			return out, &ReleaseAlias{Asked: q.Release, Release: release, Alias: alias}, nil
		}
	}
	releases := make([]string, 0, len(best))
	for r := range best {
		releases = append(releases, r)
	}
	slices.Sort(releases)
	return q, nil, fmt.Errorf("release %q of %s is an alias of several releases: %s", q.Release, q.Dist, strings.Join(releases, ", "))
}

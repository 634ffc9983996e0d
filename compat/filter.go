package compat

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// ListRow is one build of one image as `list` shows it and as its filters
// match it. Rows come from the streams (every retained build, with sizes,
// sums, titles and aliases) or from the LXC index (the build it names,
// without them; see IndexMissingFields).
type ListRow struct {
	Dist, Release, Arch, Variant string
	// Build is the build id ("20261120_05:24").
	Build string
	// Path is the build directory on the server, as an index path
	// ("/images/debian/bookworm/amd64/default/20261120_05:24/").
	Path string
	// OS and ReleaseTitle are the product's titles ("Debian", "bookworm").
	OS, ReleaseTitle string
	// Aliases are the product's aliases as the server writes them,
	// without the architecture ("debian/12").
	Aliases []string
	// Size and SHA256 are those of the rootfs, rootfs.tar.xz.
	Size   int64
	SHA256 string
	// FromStreams says the row came from the streams; when false, the
	// fields of IndexMissingFields are unknown (empty).
	FromStreams bool
}

// IndexMissingFields are the fields of a ListRow that the LXC index does
// not give, by their names in the listing: a listing from the index alone
// shows them empty, and filters on them need the streams.
var IndexMissingFields = []string{"os", "release_title", "aliases", "size", "sha256"}

// Name is the image's name, "DIST/RELEASE/ARCH/VARIANT" (its directory on
// the server below images/), which a filter word is matched against.
func (r ListRow) Name() string {
	return r.Dist + "/" + r.Release + "/" + r.Arch + "/" + r.Variant
}

// Entry is the row as a line of the LXC index, for the download code.
func (r ListRow) Entry() Entry {
	return Entry{Dist: r.Dist, Release: r.Release, Arch: r.Arch, Variant: r.Variant, Build: r.Build, Path: r.Path}
}

// Rows are the rows of every build of every product that LXC can use (it
// has a rootfs): products in key order, each one's builds newest first.
func (s *Streams) Rows() []ListRow {
	if s == nil {
		return nil
	}
	var out []ListRow
	for i := range s.Products {
		p := &s.Products[i]
		for _, b := range p.Builds {
			if !b.HasRootfs() {
				continue
			}
			out = append(out, ListRow{
				Dist: p.Dist, Release: p.Release, Arch: p.Arch, Variant: p.Variant,
				Build: b.ID, Path: b.Dir, OS: p.OS, ReleaseTitle: p.ReleaseTitle, Aliases: p.Aliases,
				Size: b.Rootfs.Size, SHA256: b.Rootfs.SHA256, FromStreams: true,
			})
		}
	}
	return out
}

// IndexRows are the rows of index entries, in their order.
func IndexRows(entries []Entry) []ListRow {
	out := make([]ListRow, 0, len(entries))
	for _, e := range entries {
		out = append(out, ListRow{Dist: e.Dist, Release: e.Release, Arch: e.Arch, Variant: e.Variant, Build: e.Build, Path: e.Path})
	}
	return out
}

// KeepIndexed returns the rows of images that the index lists (any build
// of them), in their order: the streams do not tell system images from
// user ones, and the signed index is what a template run uses.
func KeepIndexed(rows []ListRow, ix *Index) []ListRow {
	if ix == nil {
		return nil
	}
	listed := map[Query]bool{}
	for _, e := range ix.Entries {
		listed[Query{e.Dist, e.Release, e.Arch, e.Variant}] = true
	}
	var out []ListRow
	for _, r := range rows {
		if listed[Query{r.Dist, r.Release, r.Arch, r.Variant}] {
			out = append(out, r)
		}
	}
	return out
}

// Filter is one filter of `list`, as `incus image list` takes them.
//
// A word without "=" matches an image whose name (DIST/RELEASE/ARCH/
// VARIANT) or one of whose aliases contains it; an alias is also tried
// with "/ARCH" appended, as Incus names them ("debian/12/amd64").
//
// KEY=VALUE matches an image whose property KEY matches the regular
// expression VALUE (Go syntax) as a whole: "release=bookworm" does not
// match "bookworm-updates", "alias=debian/.*" matches every alias of
// Debian. As in Incus, a VALUE holding "^" or "$" is taken as written, so
// "os=^Deb" matches a prefix. For alias, any alias (or alias/ARCH) may
// match. Matching is case-sensitive; "(?i)" makes it not.
type Filter struct {
	// Text is the filter as given.
	Text string
	// Key is the property (one of FilterKeys), "" for a word.
	Key string
	// Value is the word, or the regular expression as given.
	Value string
	re    *regexp.Regexp
}

// Filters are the filters of one listing; an image must match all of them.
type Filters []Filter

// FilterKeys are the properties a KEY=VALUE filter may name, in the order
// an error lists them. "architecture" and "serial" are accepted too, as
// Incus's names of arch and build.
var FilterKeys = []string{"name", "dist", "release", "arch", "variant", "build", "os", "release_title", "alias"}

// filterKeySynonym is the key Incus's name for it stands for ("" for
// none): a switch, as no package here builds a map at start-up.
func filterKeySynonym(key string) string {
	switch key {
	case "architecture":
		return "arch"
	case "serial":
		return "build"
	}
	return ""
}

// streamsOnlyKeys are the filter keys the LXC index has no values for.
var streamsOnlyKeys = []string{"os", "release_title", "alias"}

// ParseFilters parses the filters of a listing. An unknown key, an empty
// filter, one with a control character or invalid UTF-8, or a VALUE that
// is not a regular expression is an error naming the filter.
func ParseFilters(args []string) (Filters, error) {
	var out Filters
	for _, a := range args {
		if HasControl(a) {
			// It would reach the terminal in an error, quoted by regexp
			// or by us, and no image has such a name.
			return nil, fmt.Errorf("filter %q has a control character or is not UTF-8", PrintableLine(a))
		}
		f := Filter{Text: a}
		key, value, isKey := strings.Cut(a, "=")
		if !isKey {
			if a == "" {
				return nil, fmt.Errorf("filter %q is empty", a)
			}
			f.Value = a
			out = append(out, f)
			continue
		}
		if k := filterKeySynonym(key); k != "" {
			key = k
		}
		if !slices.Contains(FilterKeys, key) {
			return nil, fmt.Errorf("filter %q: unknown key %q (known: %s)", PrintableLine(a), PrintableLine(key), strings.Join(FilterKeys, ", "))
		}
		expr := value
		if !strings.ContainsAny(value, "^$") {
			expr = "^(?:" + value + ")$"
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("filter %q: %q is not a regular expression: %w", PrintableLine(a), PrintableLine(value), err)
		}
		f.Key, f.Value, f.re = key, value, re
		out = append(out, f)
	}
	return out, nil
}

// QueryFilters are filters that match what q asks for exactly, as the -d,
// -r, -a and --variant options do: an empty field matches anything.
func QueryFilters(q Query) Filters {
	var out Filters
	for _, kv := range [...][2]string{{"dist", q.Dist}, {"release", q.Release}, {"arch", q.Arch}, {"variant", q.Variant}} {
		if kv[1] == "" {
			continue
		}
		out = append(out, Filter{Text: kv[0] + "=" + kv[1], Key: kv[0], Value: kv[1],
			re: regexp.MustCompile("^" + regexp.QuoteMeta(kv[1]) + "$")})
	}
	return out
}

// NeedStreams returns the keys among the filters that only the streams
// give values for (os, release_title, alias), each once, in FilterKeys
// order: listing from the LXC index alone, such a filter matches nothing,
// and the caller should say so.
func (fs Filters) NeedStreams() []string {
	var out []string
	for _, k := range streamsOnlyKeys {
		for _, f := range fs {
			if f.Key == k {
				out = append(out, k)
				break
			}
		}
	}
	return out
}

// Match reports whether the row matches every filter. A filter on a field
// the row does not know (from the LXC index) does not match it.
func (fs Filters) Match(r ListRow) bool {
	for _, f := range fs {
		if !f.Match(r) {
			return false
		}
	}
	return true
}

// Match reports whether the row matches the filter.
func (f Filter) Match(r ListRow) bool {
	if f.Key == "" {
		if strings.Contains(r.Name(), f.Value) {
			return true
		}
		for _, a := range r.Aliases {
			if strings.Contains(a, f.Value) || strings.Contains(a+"/"+r.Arch, f.Value) {
				return true
			}
		}
		return false
	}
	if f.re == nil {
		return false
	}
	var v string
	switch f.Key {
	case "name":
		v = r.Name()
	case "dist":
		v = r.Dist
	case "release":
		v = r.Release
	case "arch":
		v = r.Arch
	case "variant":
		v = r.Variant
	case "build":
		v = r.Build
	case "os":
		if !r.FromStreams {
			return false
		}
		v = r.OS
	case "release_title":
		if !r.FromStreams {
			return false
		}
		v = r.ReleaseTitle
	case "alias":
		if !r.FromStreams {
			return false
		}
		for _, a := range r.Aliases {
			if f.re.MatchString(a) || f.re.MatchString(a+"/"+r.Arch) {
				return true
			}
		}
		return false
	default:
		return false
	}
	return f.re.MatchString(v)
}

// SelectRows returns the rows, in their order, that match every filter.
// Unless allBuilds, only the first matching row of each image is kept: the
// newest matching build, for rows from Streams.Rows, so that "build=..."
// still finds an older build.
func SelectRows(rows []ListRow, fs Filters, allBuilds bool) []ListRow {
	var out []ListRow
	seen := map[Query]bool{}
	for _, r := range rows {
		if !fs.Match(r) {
			continue
		}
		if !allBuilds {
			k := Query{r.Dist, r.Release, r.Arch, r.Variant}
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		out = append(out, r)
	}
	return out
}

package compat

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Limits on an index, which comes from the network. The real server's
// index-system is about a thousand lines of about a hundred bytes.
const (
	// MaxIndexSize is the most bytes an index may have.
	MaxIndexSize = 16 << 20
	// MaxIndexLines is the most lines an index may have, blank ones included.
	MaxIndexLines = 100_000
	// MaxIndexField is the most bytes of dist, release, arch, variant and
	// build: each becomes a directory or file name in the cache.
	MaxIndexField = 255
	// MaxIndexPath is the most bytes of an image path (PATH_MAX).
	MaxIndexPath = 4096
)

// ErrNoImage is what Find returns when no entry matches. Its text is the
// shell template's message.
var ErrNoImage = errors.New("Couldn't find a matching image")

// indexFieldNames names the fields of an index line, in order.
var indexFieldNames = [...]string{"dist", "release", "arch", "variant", "build", "path"}

// ParseIndex parses an index file: one image per line, as
// dist;release;arch;variant;build;path.
//
// A line with an empty build or path is skipped, as the server uses them
// for images that are not ready. Blank lines and a CR before the newline are
// tolerated. Any other malformed line makes the whole index invalid, with an
// error that names the line ("index line N: ..."): a line without exactly
// six fields, a field that is too long, not UTF-8 or has control characters,
// and a path that is a URL, has a ".." segment or a character that would
// change its meaning in a URL (?, #, \). A signed index with such lines is
// broken, and guessing what it meant would be worse.
func ParseIndex(data []byte) (*Index, error) {
	if len(data) > MaxIndexSize {
		return nil, fmt.Errorf("index is %d bytes, more than the limit of %d", len(data), MaxIndexSize)
	}
	ix := &Index{}
	for n := 1; len(data) > 0; n++ {
		if n > MaxIndexLines {
			return nil, fmt.Errorf("index has more than %d lines", MaxIndexLines)
		}
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.Trim(line, " \t")) == 0 {
			continue
		}
		e, err := parseIndexLine(line)
		if err != nil {
			return nil, fmt.Errorf("index line %d: %w", n, err)
		}
		if e.Build == "" || e.Path == "" {
			continue
		}
		ix.Entries = append(ix.Entries, e)
	}
	return ix, nil
}

// parseIndexLine checks one non-blank line and splits it into an entry.
func parseIndexLine(line []byte) (Entry, error) {
	f := strings.Split(string(line), ";")
	if len(f) != len(indexFieldNames) {
		return Entry{}, fmt.Errorf("has %d fields, want 6 (dist;release;arch;variant;build;path)", len(f))
	}
	for i, v := range f {
		limit := MaxIndexField
		if i == 5 {
			limit = MaxIndexPath
		}
		if len(v) > limit {
			return Entry{}, fmt.Errorf("%s is %d bytes, more than the limit of %d", indexFieldNames[i], len(v), limit)
		}
		if !utf8.ValidString(v) {
			return Entry{}, fmt.Errorf("%s %q is not valid UTF-8", indexFieldNames[i], v)
		}
		if hasControl(v) {
			return Entry{}, fmt.Errorf("%s %q has a control character", indexFieldNames[i], v)
		}
	}
	if err := checkImagePath(f[5]); err != nil {
		return Entry{}, err
	}
	return Entry{Dist: f[0], Release: f[1], Arch: f[2], Variant: f[3], Build: f[4], Path: f[5]}, nil
}

// hasControl reports whether s, valid UTF-8, has a C0 or C1 control
// character or DEL: they would reach the terminal through --list.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return true
		}
	}
	return false
}

// checkImagePath refuses an image path that would lead anywhere but below
// the server root: the files are fetched from https://SERVER/PATH/NAME.
func checkImagePath(p string) error {
	if p == "" {
		return nil
	}
	if strings.Contains(p, "://") || strings.HasPrefix(p, "//") || hasScheme(p) {
		return fmt.Errorf("path %q is a URL, not a path on the server", p)
	}
	if i := strings.IndexAny(p, `?#\`); i >= 0 {
		return fmt.Errorf("path %q has a %q, which a path on the server may not have", p, p[i])
	}
	for _, seg := range strings.Split(p, "/") {
		// A server may decode %2e%2e before resolving the path.
		if dec, err := url.PathUnescape(seg); seg == ".." || (err == nil && dec == "..") {
			return fmt.Errorf("path %q has a \"..\" segment", p)
		}
	}
	return nil
}

// hasScheme reports whether p starts with a URL scheme ("https:",
// "file:"), which a relative path on the server could not.
func hasScheme(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return true
		default:
			return false
		}
	}
	return false
}

// Matches reports whether the entry has every non-empty field of q.
func (q Query) Matches(e Entry) bool {
	return (q.Dist == "" || q.Dist == e.Dist) &&
		(q.Release == "" || q.Release == e.Release) &&
		(q.Arch == "" || q.Arch == e.Arch) &&
		(q.Variant == "" || q.Variant == e.Variant)
}

// Filter returns the entries, in index order, that have every non-empty
// field of q: what --list shows.
func (ix *Index) Filter(q Query) []Entry {
	if ix == nil {
		return nil
	}
	var out []Entry
	for _, e := range ix.Entries {
		if q.Matches(e) {
			out = append(out, e)
		}
	}
	return out
}

// Find returns the first entry whose four keys equal q's exactly (an empty
// field of q matches only an empty field), as the shell template picked the
// image to download. When there is none, the error is a *NotFoundError,
// which errors.Is finds to be ErrNoImage.
func (ix *Index) Find(q Query) (Entry, error) {
	if ix == nil {
		return Entry{}, explain(nil, q)
	}
	for _, e := range ix.Entries {
		if e.Dist == q.Dist && e.Release == q.Release && e.Arch == q.Arch && e.Variant == q.Variant {
			return e, nil
		}
	}
	return Entry{}, explain(ix.Entries, q)
}

// File returns the server path of the file name in the entry's image
// directory, starting with one slash and with exactly one slash between
// each part: index paths end in "/" and some have doubled slashes, which
// the shell template passed on and servers tolerate, but a clean path is
// what a cache or a log should show.
func (e Entry) File(name string) string {
	var b strings.Builder
	b.Grow(len(e.Path) + len(name) + 2)
	for _, part := range [...]string{e.Path, name} {
		for _, seg := range strings.Split(part, "/") {
			if seg != "" {
				b.WriteByte('/')
				b.WriteString(seg)
			}
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

package compat

import (
	"fmt"
	"slices"
	"strings"
)

// NotFoundError is Find's error: no image has all four keys of Query. It
// says which key first had no match among the images that matched the
// keys before it (distribution, then release, architecture, variant), the
// existing values closest to what was asked, and what the index offers
// for the keys that did match, so that a typo or a retired release
// explains itself.
type NotFoundError struct {
	Query Query
	// Field is the key that matched nothing: "distribution", "release",
	// "architecture" or "variant".
	Field string
	// Value is what was asked for that key.
	Value string
	// Closest are the values of Field on offer nearest to Value, best first.
	Closest []string
	// Matched describes the keys that did match ("debian bookworm"), empty
	// when the distribution itself is unknown.
	Matched string
	// Distributions are those on offer, when the distribution is unknown;
	// otherwise Releases, Arches and Variants are the values on offer for
	// the images that matched the keys before Field (from Field on).
	Distributions, Releases, Arches, Variants []string
}

// Error starts with the shell template's message, which scripts look for.
func (e *NotFoundError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNoImage.Error())
	fmt.Fprintf(&b, ": no %s %q", e.Field, e.Value)
	if e.Matched != "" {
		fmt.Fprintf(&b, " for %s", e.Matched)
	}
	if len(e.Closest) > 0 {
		fmt.Fprintf(&b, " (did you mean %s?)", strings.Join(e.Closest, " or "))
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrNoImage) hold.
func (e *NotFoundError) Unwrap() error { return ErrNoImage }

// Hints are lines that follow the error: what is on offer for the keys
// that matched (or every distribution, when none did).
func (e *NotFoundError) Hints() []string {
	var out []string
	what := e.Matched
	if what == "" {
		what = "this server"
	}
	add := func(name string, values []string) {
		if len(values) > 0 {
			out = append(out, fmt.Sprintf("%s of %s: %s", name, what, strings.Join(values, ", ")))
		}
	}
	add("Distributions", e.Distributions)
	add("Releases", e.Releases)
	add("Architectures", e.Arches)
	add("Variants", e.Variants)
	return out
}

// explain builds the NotFoundError of q against the entries.
func explain(entries []Entry, q Query) *NotFoundError {
	keys := []struct {
		field string
		want  string
		get   func(Entry) string
	}{
		{"distribution", q.Dist, func(e Entry) string { return e.Dist }},
		{"release", q.Release, func(e Entry) string { return e.Release }},
		{"architecture", q.Arch, func(e Entry) string { return e.Arch }},
		{"variant", q.Variant, func(e Entry) string { return e.Variant }},
	}
	err := &NotFoundError{Query: q, Field: "variant", Value: q.Variant}
	var matched []string
	cur := entries
	for i, k := range keys {
		var next []Entry
		for _, e := range cur {
			if k.get(e) == k.want {
				next = append(next, e)
			}
		}
		if len(next) > 0 {
			cur = next
			matched = append(matched, k.want)
			continue
		}
		err.Field, err.Value = k.field, k.want
		err.Closest = closest(k.want, values(cur, k.get))
		err.Matched = strings.Join(matched, " ")
		if i == 0 {
			err.Distributions = values(cur, k.get)
			return err
		}
		if i <= 1 {
			err.Releases = values(cur, keys[1].get)
		}
		if i <= 2 {
			err.Arches = values(cur, keys[2].get)
		}
		err.Variants = values(cur, keys[3].get)
		return err
	}
	return err
}

// values are the distinct values of one key among the entries, sorted.
func values(entries []Entry, get func(Entry) string) []string {
	var out []string
	for _, e := range entries {
		out = append(out, get(e))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// closest returns up to three of the candidates nearest to s: the same
// but for case, or within an edit distance of a third of s's length (at
// least one edit; swapping two neighbouring letters is one), nearest first.
func closest(s string, candidates []string) []string {
	type scored struct {
		v string
		d int
	}
	var found []scored
	limit := max(1, len(s)/3)
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if d <= limit {
			found = append(found, scored{c, d})
		}
	}
	slices.SortStableFunc(found, func(a, b scored) int { return a.d - b.d })
	var out []string
	for i := 0; i < len(found) && i < 3; i++ {
		out = append(out, found[i].v)
	}
	return out
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of neighbouring
// bytes each cost one.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Names are short; a long one is no typo of another.
		return max(len(a), len(b))
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

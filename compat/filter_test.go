package compat

import (
	"reflect"
	"strings"
	"testing"
)

// rowNames are the rows as "NAME@BUILD".
func rowNames(rows []ListRow) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.Name()+"@"+r.Build)
	}
	return out
}

func selectSample(t *testing.T, all bool, args ...string) []string {
	t.Helper()
	fs, err := ParseFilters(args)
	if err != nil {
		t.Fatal(err)
	}
	return rowNames(SelectRows(sampleStreams(t).Rows(), fs, all))
}

func TestStreamsRows(t *testing.T) {
	got := rowNames(sampleStreams(t).Rows())
	want := []string{
		"alpine/3.20/amd64/default@20261121_13:00",
		"debian/bookworm/amd64/cloud@20261120_05:24",
		"debian/bookworm/amd64/default@20261120_05:24",
		"debian/bookworm/amd64/default@20261119_05:24",
		"debian/bookworm/amd64/default@20261118_05:24",
		"debian/trixie/arm64/default@20261120_05:30",
		"debian/trixie/arm64/default@20261119_05:30",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rows %q\nwant %q (no VM-only product, builds newest first)", got, want)
	}
	r := sampleStreams(t).Rows()[2]
	if !r.FromStreams || r.OS != "Debian" || r.Size != 95705728 || r.SHA256 != sha("7") || len(r.Aliases) != 4 ||
		r.Path != "/images/debian/bookworm/amd64/default/20261120_05:24/" {
		t.Errorf("row %+v", r)
	}
	if e := r.Entry(); e != (Entry{"debian", "bookworm", "amd64", "default", "20261120_05:24", r.Path}) {
		t.Errorf("entry %+v", e)
	}
}

func TestFilterWords(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"alpine/3.20/amd64/default@20261121_13:00", "debian/bookworm/amd64/cloud@20261120_05:24",
			"debian/bookworm/amd64/default@20261120_05:24", "debian/trixie/arm64/default@20261120_05:30"}},
		// A substring of the name.
		{[]string{"bookworm/amd64"}, []string{"debian/bookworm/amd64/cloud@20261120_05:24", "debian/bookworm/amd64/default@20261120_05:24"}},
		{[]string{"arm"}, []string{"debian/trixie/arm64/default@20261120_05:30"}},
		// A substring of an alias only: "debian/13" is trixie's.
		{[]string{"debian/13"}, []string{"debian/trixie/arm64/default@20261120_05:30"}},
		// An alias with the architecture, as Incus names them.
		{[]string{"debian/12/amd64"}, []string{"debian/bookworm/amd64/default@20261120_05:24"}},
		{[]string{"debian/12/cloud/amd64"}, []string{"debian/bookworm/amd64/cloud@20261120_05:24"}},
		{[]string{"12/cloud"}, []string{"debian/bookworm/amd64/cloud@20261120_05:24"}},
		// Case counts.
		{[]string{"Debian"}, []string{}},
		{[]string{"fedora"}, []string{}},
		// Several filters must all hold.
		{[]string{"debian", "cloud"}, []string{"debian/bookworm/amd64/cloud@20261120_05:24"}},
		{[]string{"debian/12", "arch=arm64"}, []string{}},
	} {
		if got := selectSample(t, false, c.args...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %q\nwant %q", c.args, got, c.want)
		}
	}
}

func TestFilterKeys(t *testing.T) {
	bookworm := []string{"debian/bookworm/amd64/cloud@20261120_05:24", "debian/bookworm/amd64/default@20261120_05:24"}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"release=bookworm"}, bookworm},
		// Anchored: neither a prefix nor a longer name matches.
		{[]string{"release=book"}, []string{}},
		{[]string{"release=bookworm-updates"}, []string{}},
		{[]string{"release=book.*"}, bookworm},
		{[]string{"dist=debian|alpine", "variant=default"}, []string{"alpine/3.20/amd64/default@20261121_13:00",
			"debian/bookworm/amd64/default@20261120_05:24", "debian/trixie/arm64/default@20261120_05:30"}},
		// A dot in a regular expression is any character; anchoring
		// still holds for each alternative.
		{[]string{"release=3.2"}, []string{}},
		{[]string{"release=3.20|trixie"}, []string{"alpine/3.20/amd64/default@20261121_13:00", "debian/trixie/arm64/default@20261120_05:30"}},
		// As in Incus, a "^" or "$" in the value leaves it as written.
		{[]string{"os=^Deb"}, []string{"debian/bookworm/amd64/cloud@20261120_05:24", "debian/bookworm/amd64/default@20261120_05:24",
			"debian/trixie/arm64/default@20261120_05:30"}},
		{[]string{"os=debian"}, []string{}},
		{[]string{"os=(?i)debian", "arch=arm64"}, []string{"debian/trixie/arm64/default@20261120_05:30"}},
		{[]string{"architecture=arm64"}, []string{"debian/trixie/arm64/default@20261120_05:30"}},
		{[]string{"release_title=3.20"}, []string{"alpine/3.20/amd64/default@20261121_13:00"}},
		// Any alias may match, with or without the architecture.
		{[]string{"alias=debian/12"}, bookworm[1:]},
		{[]string{"alias=debian/12(/.*)?"}, bookworm},
		{[]string{"alias=debian/.*/cloud"}, []string{"debian/bookworm/amd64/cloud@20261120_05:24"}},
		{[]string{"alias=debian/13/arm64"}, []string{"debian/trixie/arm64/default@20261120_05:30"}},
		{[]string{"alias=debian"}, []string{}},
		{[]string{"name=debian/bookworm/.*/default"}, []string{"debian/bookworm/amd64/default@20261120_05:24"}},
		// build= finds an older build, the newest one that matches.
		{[]string{"build=20261119_.*"}, []string{"debian/bookworm/amd64/default@20261119_05:24", "debian/trixie/arm64/default@20261119_05:30"}},
		{[]string{"serial=20261118_05:24"}, []string{"debian/bookworm/amd64/default@20261118_05:24"}},
		{[]string{"release=bookworm", "build=20261119_.*", "cloud"}, []string{}},
	} {
		if got := selectSample(t, false, c.args...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %q\nwant %q", c.args, got, c.want)
		}
	}
}

func TestSelectRowsAllBuilds(t *testing.T) {
	got := selectSample(t, true, "debian/12", "variant=default")
	want := []string{"debian/bookworm/amd64/default@20261120_05:24", "debian/bookworm/amd64/default@20261119_05:24",
		"debian/bookworm/amd64/default@20261118_05:24"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q\nwant %q", got, want)
	}
	if got := selectSample(t, false, "debian/12", "variant=default"); !reflect.DeepEqual(got, want[:1]) {
		t.Errorf("newest only: %q", got)
	}
}

func TestParseFiltersErrors(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want string
	}{
		{"release=(", `filter "release=(": "(" is not a regular expression: error parsing regexp: missing closing ): ` + "`^(?:()$`"},
		{"os=[a-", `filter "os=[a-": "[a-" is not a regular expression: error parsing regexp: invalid character class range`},
		{"colour=red", `filter "colour=red": unknown key "colour" (known: name, dist, release, arch, variant, build, os, release_title, alias)`},
		{"=x", `filter "=x": unknown key ""`},
		{"", `filter "" is empty`},
		{"a\x1b[2J=b", `filter "a[2J=b" has a control character or is not UTF-8`},
		{"os=\xb2", "filter \"os=\ufffd\" has a control character or is not UTF-8"},
	} {
		fs, err := ParseFilters([]string{"debian", c.arg})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || fs != nil {
			t.Errorf("%q: %v, %v\nwant %s", c.arg, fs, err, c.want)
		}
	}
	// The empty value matches the empty string only.
	fs, err := ParseFilters([]string{"release="})
	if err != nil || fs.Match(ListRow{Release: "bookworm"}) || !fs.Match(ListRow{}) {
		t.Errorf("release=: %v", err)
	}
}

// TestFiltersOnIndex: rows from the LXC index have no titles, aliases or
// sizes; filters on them match nothing and NeedStreams says which.
func TestFiltersOnIndex(t *testing.T) {
	ix, err := ParseIndex([]byte(sampleIndex))
	if err != nil {
		t.Fatal(err)
	}
	rows := IndexRows(ix.Entries)
	for _, r := range rows {
		if r.FromStreams {
			t.Fatalf("row %+v from the index says it is from the streams", r)
		}
	}
	for _, c := range []struct {
		args      []string
		all       bool
		want      []string
		streamsIn []string
	}{
		{[]string{"bookworm/amd64"}, true, []string{"debian/bookworm/amd64/default@20261120_05:24",
			"debian/bookworm/amd64/cloud@20261120_05:24", "debian/bookworm/amd64/default@20261119_05:24"}, nil},
		// The first line of an image, as a template run picks it.
		{[]string{"bookworm/amd64"}, false, []string{"debian/bookworm/amd64/default@20261120_05:24",
			"debian/bookworm/amd64/cloud@20261120_05:24"}, nil},
		{[]string{"release=3.20"}, false, []string{"alpine/3.20/amd64/default@20261121_13:00"}, nil},
		{[]string{"debian/12"}, false, []string{}, nil},
		{[]string{"os=.*"}, false, []string{}, []string{"os"}},
		{[]string{"alias=.*", "release_title=.*", "os=Debian", "alias=x"}, false, []string{}, []string{"os", "release_title", "alias"}},
	} {
		fs, err := ParseFilters(c.args)
		if err != nil {
			t.Fatal(err)
		}
		if got := rowNames(SelectRows(rows, fs, c.all)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %q\nwant %q", c.args, got, c.want)
		}
		if got := fs.NeedStreams(); !reflect.DeepEqual(got, c.streamsIn) {
			t.Errorf("%q: NeedStreams %q, want %q", c.args, got, c.streamsIn)
		}
	}
}

func TestQueryFilters(t *testing.T) {
	rows := sampleStreams(t).Rows()
	got := rowNames(SelectRows(rows, QueryFilters(Query{Dist: "debian", Arch: "amd64", Variant: "default"}), true))
	want := []string{"debian/bookworm/amd64/default@20261120_05:24", "debian/bookworm/amd64/default@20261119_05:24",
		"debian/bookworm/amd64/default@20261118_05:24"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q\nwant %q", got, want)
	}
	// Values are literal: "3.20" is not a pattern, "3x20" does not match it.
	r := ListRow{Dist: "alpine", Release: "3x20", Arch: "amd64", Variant: "default"}
	if QueryFilters(Query{Release: "3.20"}).Match(r) || !QueryFilters(Query{Release: "3x20"}).Match(r) || !QueryFilters(Query{}).Match(r) {
		t.Error("QueryFilters is not an exact match")
	}
	if fs := QueryFilters(Query{Dist: "a", Variant: "b"}); len(fs) != 2 || fs[0].Text != "dist=a" || fs[1].Text != "variant=b" {
		t.Errorf("filters %+v", fs)
	}
}

func TestKeepIndexed(t *testing.T) {
	ix, err := ParseIndex([]byte("debian;bookworm;amd64;default;20261119_05:24;/images/debian/bookworm/amd64/default/20261119_05:24/\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := rowNames(KeepIndexed(sampleStreams(t).Rows(), ix))
	want := []string{"debian/bookworm/amd64/default@20261120_05:24", "debian/bookworm/amd64/default@20261119_05:24",
		"debian/bookworm/amd64/default@20261118_05:24"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q\nwant %q", got, want)
	}
	if KeepIndexed(sampleStreams(t).Rows(), nil) != nil {
		t.Error("rows kept without an index")
	}
}

func TestResolveRelease(t *testing.T) {
	s := sampleStreams(t)
	for _, c := range []struct {
		q       Query
		release string
		alias   string
		err     string
	}{
		{Query{Dist: "debian", Release: "12", Arch: "amd64", Variant: "default"}, "bookworm", "debian/12", ""},
		// Whatever the architecture and variant: an alias names a release.
		{Query{Dist: "debian", Release: "13", Arch: "amd64", Variant: "cloud"}, "trixie", "debian/13", ""},
		{Query{Dist: "debian", Release: "12"}, "bookworm", "debian/12", ""},
		// A release that exists is not read as an alias.
		{Query{Dist: "debian", Release: "bookworm"}, "bookworm", "", ""},
		{Query{Dist: "alpine", Release: "3.20"}, "3.20", "", ""},
		// Nothing to read through: the caller reports what there is.
		{Query{Dist: "debian", Release: "11"}, "11", "", ""},
		{Query{Dist: "ubuntu", Release: "12"}, "12", "", ""},
		{Query{Release: "12"}, "12", "", ""},
		{Query{Dist: "debian"}, "", "", ""},
		// Only the second part of an alias is a release.
		{Query{Dist: "debian", Release: "default"}, "default", "", ""},
		{Query{Dist: "debian", Release: "debian"}, "debian", "", ""},
	} {
		got, how, err := s.ResolveRelease(c.q)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%+v: error %v, want %s", c.q, err, c.err)
			}
			continue
		}
		want := c.q
		want.Release = c.release
		if err != nil || got != want {
			t.Errorf("%+v: %+v, %v; want %+v", c.q, got, err, want)
			continue
		}
		if c.alias == "" {
			if how != nil {
				t.Errorf("%+v: resolved %+v", c.q, how)
			}
			continue
		}
		if how == nil || *how != (ReleaseAlias{Asked: c.q.Release, Release: c.release, Alias: c.alias}) {
			t.Errorf("%+v: how %+v", c.q, how)
		}
	}
	var none *Streams
	if q, how, err := none.ResolveRelease(Query{Dist: "debian", Release: "12"}); q.Release != "12" || how != nil || err != nil {
		t.Errorf("without streams: %+v %+v %v", q, how, err)
	}
	how := &ReleaseAlias{Asked: "12", Release: "bookworm", Alias: "debian/12"}
	if got := how.String(); got != `release "12" is "bookworm" (alias debian/12)` {
		t.Errorf("String %s", got)
	}
}

func TestResolveReleaseAmbiguous(t *testing.T) {
	doc := sampleStreamsDoc()
	products := doc["products"].(map[string]any)
	products["debian:trixie:arm64:default"].(map[string]any)["aliases"] = "debian/next,debian/trixie"
	products["debian:forky:arm64:default"] = streamsProduct("Debian", "debian", "forky", "forky", "arm64", "default",
		"debian/next/default,debian/forky", "20261120_05:30")
	s, err := ParseStreams(mustJSON(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	for range 10 { // map order must not matter
		q, how, err := s.ResolveRelease(Query{Dist: "debian", Release: "next"})
		if err == nil || err.Error() != `release "next" of debian is an alias of several releases: forky, trixie` || how != nil || q.Release != "next" {
			t.Fatalf("%+v %+v %v", q, how, err)
		}
	}
	// The shortest alias is the one reported, then the first in byte order.
	products["debian:trixie:arm64:default"].(map[string]any)["aliases"] = "debian/13/default,debian/13/b,debian/13/a"
	s, err = ParseStreams(mustJSON(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	if _, how, err := s.ResolveRelease(Query{Dist: "debian", Release: "13"}); err != nil || how == nil || how.Alias != "debian/13/a" {
		t.Errorf("%+v %v", how, err)
	}
}

func TestFilterTextSurvives(t *testing.T) {
	fs, err := ParseFilters([]string{"word", "arch=amd64", "serial=x"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fs {
		got = append(got, f.Text+"|"+f.Key+"|"+f.Value)
	}
	if want := "word||word arch=amd64|arch|amd64 serial=x|build|x"; strings.Join(got, " ") != want {
		t.Errorf("%q, want %q", got, want)
	}
}

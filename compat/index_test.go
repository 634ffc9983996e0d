package compat

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const sampleIndex = `debian;bookworm;amd64;default;20261120_05:24;/images/debian/bookworm/amd64/default/20261120_05:24/
debian;bookworm;arm64;default;20261120_05:24;/images/debian/bookworm/arm64/default/20261120_05:24/
debian;bookworm;amd64;cloud;20261120_05:24;/images/debian/bookworm/amd64/cloud/20261120_05:24/
alpine;3.20;amd64;default;20261121_13:00;/images/alpine/3.20/amd64/default/20261121_13:00/
debian;bookworm;amd64;default;20261119_05:24;/images/debian/bookworm/amd64/default/20261119_05:24/
`

func mustParse(t *testing.T, s string) *Index {
	t.Helper()
	ix, err := ParseIndex([]byte(s))
	if err != nil {
		t.Fatalf("ParseIndex: %v", err)
	}
	return ix
}

func TestParseIndex(t *testing.T) {
	ix := mustParse(t, sampleIndex)
	if len(ix.Entries) != 5 {
		t.Fatalf("%d entries, want 5", len(ix.Entries))
	}
	want := Entry{"alpine", "3.20", "amd64", "default", "20261121_13:00", "/images/alpine/3.20/amd64/default/20261121_13:00/"}
	if ix.Entries[3] != want {
		t.Errorf("entry 4 = %+v, want %+v", ix.Entries[3], want)
	}
}

func TestParseIndexTolerated(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []Entry
	}{
		{"empty", "", nil},
		{"only blank lines", "\n\n \t\n\r\n", nil},
		{"no final newline", "a;b;c;d;1;/p/", []Entry{{"a", "b", "c", "d", "1", "/p/"}}},
		{"CRLF", "a;b;c;d;1;/p/\r\nx;y;z;w;2;/q/\r\n", []Entry{{"a", "b", "c", "d", "1", "/p/"}, {"x", "y", "z", "w", "2", "/q/"}}},
		{"blank lines between", "\na;b;c;d;1;/p/\n\n  \nx;y;z;w;2;/q/\n\n", []Entry{{"a", "b", "c", "d", "1", "/p/"}, {"x", "y", "z", "w", "2", "/q/"}}},
		{"empty build skipped", "a;b;c;d;;/p/\nx;y;z;w;2;/q/\n", []Entry{{"x", "y", "z", "w", "2", "/q/"}}},
		{"empty path skipped", "a;b;c;d;1;\nx;y;z;w;2;/q/\n", []Entry{{"x", "y", "z", "w", "2", "/q/"}}},
		{"relative path", "a;b;c;d;1;images/a/\n", []Entry{{"a", "b", "c", "d", "1", "images/a/"}}},
		{"doubled slashes", "a;b;c;d;1;/images//a//\n", []Entry{{"a", "b", "c", "d", "1", "/images//a//"}}},
		{"dots that are not a segment", "a;b;c;d;1;/images/a..b/.../.x/./\n", []Entry{{"a", "b", "c", "d", "1", "/images/a..b/.../.x/./"}}},
		{"colon after the first segment", "a;b;c;d;20261120_05:24;/images/20261120_05:24/\n", []Entry{{"a", "b", "c", "d", "20261120_05:24", "/images/20261120_05:24/"}}},
		{"digit before a colon is no scheme", "a;b;c;d;1;2026:x/\n", []Entry{{"a", "b", "c", "d", "1", "2026:x/"}}},
		{"UTF-8 names", "débian;b;c;d;1;/p/é/\n", []Entry{{"débian", "b", "c", "d", "1", "/p/é/"}}},
		{"empty keys are kept", ";;;;1;/p/\n", []Entry{{"", "", "", "", "1", "/p/"}}},
		{"longest fields", strings.Repeat("d", MaxIndexField) + ";b;c;d;1;/" + strings.Repeat("p", MaxIndexPath-1) + "\n",
			[]Entry{{strings.Repeat("d", MaxIndexField), "b", "c", "d", "1", "/" + strings.Repeat("p", MaxIndexPath-1)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ix := mustParse(t, c.in)
			if !reflect.DeepEqual(ix.Entries, c.want) {
				t.Errorf("entries %+v, want %+v", ix.Entries, c.want)
			}
		})
	}
}

func TestParseIndexInvalid(t *testing.T) {
	good := "a;b;c;d;1;/p/\n"
	for _, c := range []struct {
		name, in, want string
	}{
		{"too few fields", "debian;bookworm;amd64\n", "index line 1: has 3 fields, want 6"},
		{"too many fields", good + "a;b;c;d;1;/p/;x\n", "index line 2: has 7 fields, want 6"},
		{"no separator", good + good + "garbage\n", "index line 3: has 1 fields"},
		{"line number counts blank lines", "\n\n" + "a;b\n", "index line 3: has 2 fields"},
		{"https URL", "debian;bookworm;amd64;default;1;https://evil.example/x/\n", `index line 1: path "https://evil.example/x/" is a URL`},
		{"scheme-relative URL", "a;b;c;d;1;//evil.example/x/\n", "index line 1: path \"//evil.example/x/\" is a URL"},
		{"scheme without slashes", "a;b;c;d;1;file:/etc/\n", "is a URL"},
		{"scheme in the middle", "a;b;c;d;1;/x/http://evil/\n", "is a URL"},
		{"dotdot", "debian;bookworm;amd64;default;1;/images/../../etc/\n", `index line 1: path "/images/../../etc/" has a ".." segment`},
		{"dotdot at the end", "a;b;c;d;1;/images/..\n", `has a ".." segment`},
		{"relative dotdot", "a;b;c;d;1;../x/\n", `has a ".." segment`},
		{"encoded dotdot", "a;b;c;d;1;/images/%2e%2E/x/\n", `has a ".." segment`},
		{"query", "a;b;c;d;1;/images/x?y=1/\n", `has a '?'`},
		{"fragment", "a;b;c;d;1;/images/x#/\n", `has a '#'`},
		{"backslash", "a;b;c;d;1;/\\evil.example/\n", `has a '\\'`},
		{"control in path", "a;b;c;d;1;/images/\x1b[2J/\n", `index line 1: path "/images/\x1b[2J/" has a control character`},
		{"control in dist", "a\tb;b;c;d;1;/p/\n", `index line 1: dist "a\tb" has a control character`},
		{"DEL", "a;b\x7f;c;d;1;/p/\n", "release \"b\\x7f\" has a control character"},
		{"C1 control", "a;b;c\u009b;d;1;/p/\n", "arch \"c\\u009b\" has a control character"},
		{"NUL", "a;b;c;d\x00;1;/p/\n", "variant \"d\\x00\" has a control character"},
		{"CR inside", "a;b;c;d;1\r2;/p/\n", "build \"1\\r2\" has a control character"},
		{"two CRs", "a;b;c;d;1;/p/\r\r\n", "path \"/p/\\r\" has a control character"},
		{"not UTF-8", "a;b;c;d;1;/p/\xff/\n", "path \"/p/\\xff/\" is not valid UTF-8"},
		{"long field", strings.Repeat("d", MaxIndexField+1) + ";b;c;d;1;/p/\n", "index line 1: dist is 256 bytes, more than the limit of 255"},
		{"long path", "a;b;c;d;1;/" + strings.Repeat("p", MaxIndexPath) + "\n", "index line 1: path is 4097 bytes, more than the limit of 4096"},
		{"bad line with an empty build is still bad", "a;b;c;d;;https://evil/\n", "is a URL"},
		{"too big", strings.Repeat("\n", MaxIndexSize+1), "index is 16777217 bytes, more than the limit of 16777216"},
		{"too many lines", strings.Repeat("\n", MaxIndexLines+1), "index has more than 100000 lines"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ix, err := ParseIndex([]byte(c.in))
			if err == nil {
				t.Fatalf("no error; entries %+v", ix.Entries)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
			if ix != nil {
				t.Errorf("an invalid index was returned too")
			}
		})
	}
	// Exactly at the line limit is fine.
	if _, err := ParseIndex([]byte(strings.Repeat("\n", MaxIndexLines))); err != nil {
		t.Errorf("%d lines: %v", MaxIndexLines, err)
	}
}

func TestFilter(t *testing.T) {
	ix := mustParse(t, sampleIndex)
	keys := func(es []Entry) []string {
		var s []string
		for _, e := range es {
			s = append(s, e.Dist+"/"+e.Release+"/"+e.Arch+"/"+e.Variant+"/"+e.Build)
		}
		return s
	}
	for _, c := range []struct {
		q    Query
		want []string
	}{
		{Query{}, []string{
			"debian/bookworm/amd64/default/20261120_05:24",
			"debian/bookworm/arm64/default/20261120_05:24",
			"debian/bookworm/amd64/cloud/20261120_05:24",
			"alpine/3.20/amd64/default/20261121_13:00",
			"debian/bookworm/amd64/default/20261119_05:24",
		}},
		{Query{Dist: "alpine"}, []string{"alpine/3.20/amd64/default/20261121_13:00"}},
		{Query{Arch: "arm64"}, []string{"debian/bookworm/arm64/default/20261120_05:24"}},
		{Query{Dist: "debian", Variant: "cloud"}, []string{"debian/bookworm/amd64/cloud/20261120_05:24"}},
		{Query{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default"}, []string{
			"debian/bookworm/amd64/default/20261120_05:24",
			"debian/bookworm/amd64/default/20261119_05:24",
		}},
		{Query{Release: "trixie"}, nil},
		{Query{Dist: "Debian"}, nil},
	} {
		if got := keys(ix.Filter(c.q)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Filter(%+v) = %q, want %q", c.q, got, c.want)
		}
	}
	var nilIndex *Index
	if got := nilIndex.Filter(Query{}); got != nil {
		t.Errorf("nil index: %v", got)
	}
}

func TestFind(t *testing.T) {
	ix := mustParse(t, sampleIndex)
	e, err := ix.Find(Query{"debian", "bookworm", "amd64", "default"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Build != "20261120_05:24" {
		t.Errorf("found build %s, want the first match 20261120_05:24", e.Build)
	}
	if e, err = ix.Find(Query{"debian", "bookworm", "amd64", "cloud"}); err != nil || e.Variant != "cloud" {
		t.Errorf("cloud: %+v, %v", e, err)
	}
	for _, q := range []Query{
		{"debian", "trixie", "amd64", "default"},
		{"debian", "bookworm", "amd64", ""}, // empty is not a wildcard here
		{"", "", "", ""},
		{"debian", "bookworm", "riscv64", "default"},
	} {
		_, err := ix.Find(q)
		if !errors.Is(err, ErrNoImage) || !strings.HasPrefix(err.Error(), "Couldn't find a matching image: ") {
			t.Errorf("Find(%+v): %v", q, err)
		}
	}
	var nilIndex *Index
	if _, err := nilIndex.Find(Query{}); !errors.Is(err, ErrNoImage) {
		t.Errorf("nil index: %v", err)
	}
	// A line whose path is empty is skipped, so the next match wins.
	ix = mustParse(t, "a;b;c;d;1;\na;b;c;d;2;/two/\n")
	if e, err := ix.Find(Query{"a", "b", "c", "d"}); err != nil || e.Build != "2" {
		t.Errorf("after a skipped line: %+v, %v", e, err)
	}
}

func TestEntryFile(t *testing.T) {
	for _, c := range []struct{ path, name, want string }{
		{"/images/debian/bookworm/amd64/default/20261120_05:24/", "rootfs.tar.xz", "/images/debian/bookworm/amd64/default/20261120_05:24/rootfs.tar.xz"},
		{"/images/debian/bookworm/amd64/default/20261120_05:24", "meta.tar.xz", "/images/debian/bookworm/amd64/default/20261120_05:24/meta.tar.xz"},
		{"/images//debian///x//", "rootfs.tar.xz.asc", "/images/debian/x/rootfs.tar.xz.asc"},
		{"images/x/", "SHA256SUMS", "/images/x/SHA256SUMS"},
		{"/images/x/", "/meta.tar.xz", "/images/x/meta.tar.xz"},
		{"/", "rootfs.tar.xz", "/rootfs.tar.xz"},
		{"", "", "/"},
	} {
		if got := (Entry{Path: c.path}).File(c.name); got != c.want {
			t.Errorf("Entry{Path: %q}.File(%q) = %q, want %q", c.path, c.name, got, c.want)
		}
	}
}

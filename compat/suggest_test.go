package compat

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestFindExplains(t *testing.T) {
	ix := mustParse(t, strings.Join([]string{
		"debian;bookworm;amd64;default;1;/d/b/a/",
		"debian;bookworm;arm64;default;1;/d/b/r/",
		"debian;bookworm;amd64;cloud;1;/d/b/c/",
		"debian;trixie;amd64;default;1;/d/t/a/",
		"ubuntu;noble;amd64;default;1;/u/n/a/",
		"alpine;3.20;amd64;default;1;/a/3/a/",
	}, "\n")+"\n")
	for _, c := range []struct {
		q         Query
		msg       string
		hints     []string
		wantField string
	}{
		{Query{"debain", "bookworm", "amd64", "default"},
			`Couldn't find a matching image: no distribution "debain" (did you mean debian?)`,
			[]string{"Distributions of this server: alpine, debian, ubuntu"}, "distribution"},
		{Query{"Debian", "bookworm", "amd64", "default"},
			`Couldn't find a matching image: no distribution "Debian" (did you mean debian?)`, nil, "distribution"},
		{Query{"debian", "bokworm", "amd64", "default"},
			`Couldn't find a matching image: no release "bokworm" for debian (did you mean bookworm?)`,
			[]string{"Releases of debian: bookworm, trixie", "Architectures of debian: amd64, arm64", "Variants of debian: cloud, default"}, "release"},
		{Query{"debian", "trixie", "arm64", "default"},
			`Couldn't find a matching image: no architecture "arm64" for debian trixie`,
			[]string{"Architectures of debian trixie: amd64", "Variants of debian trixie: default"}, "architecture"},
		{Query{"debian", "bookworm", "arm64", "clod"},
			`Couldn't find a matching image: no variant "clod" for debian bookworm arm64`,
			[]string{"Variants of debian bookworm arm64: default"}, "variant"},
		{Query{"debian", "bookworm", "amd64", "clod"},
			`Couldn't find a matching image: no variant "clod" for debian bookworm amd64 (did you mean cloud?)`,
			[]string{"Variants of debian bookworm amd64: cloud, default"}, "variant"},
		{Query{"fedora", "40", "amd64", "default"},
			`Couldn't find a matching image: no distribution "fedora"`, nil, "distribution"},
	} {
		_, err := ix.Find(c.q)
		var nf *NotFoundError
		if !errors.As(err, &nf) || !errors.Is(err, ErrNoImage) {
			t.Fatalf("Find(%+v) = %v, want a *NotFoundError", c.q, err)
		}
		if err.Error() != c.msg {
			t.Errorf("Find(%+v):\n got %s\nwant %s", c.q, err, c.msg)
		}
		if nf.Field != c.wantField {
			t.Errorf("Find(%+v): field %s, want %s", c.q, nf.Field, c.wantField)
		}
		if c.hints != nil && !reflect.DeepEqual(nf.Hints(), c.hints) {
			t.Errorf("Find(%+v) hints:\n got %q\nwant %q", c.q, nf.Hints(), c.hints)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{
		{"debian", "debian", 0}, {"debain", "debian", 1}, {"debin", "debian", 1},
		{"bokworm", "bookworm", 1}, {"", "abc", 3}, {"ubuntu", "debian", 6}, {"ab", "ba", 1},
	} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

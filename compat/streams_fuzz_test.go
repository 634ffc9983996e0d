package compat

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func FuzzParseStreams(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseStreams(data)
		if err != nil {
			if s != nil || !strings.HasPrefix(err.Error(), "streams: ") || strings.Contains(err.Error(), "\n") || HasControl(err.Error()) {
				t.Fatalf("error %q with streams %v", err, s)
			}
			return
		}
		for i, p := range s.Products {
			if i > 0 && s.Products[i-1].Key >= p.Key {
				t.Fatalf("products out of order: %q, %q", s.Products[i-1].Key, p.Key)
			}
			if p.Key != ProductKey(p.Dist, p.Release, p.Arch, p.Variant) {
				t.Fatalf("key %q, parts %q %q %q %q", p.Key, p.Dist, p.Release, p.Arch, p.Variant)
			}
			for _, v := range []string{p.Dist, p.Release, p.Arch, p.Variant} {
				if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\\:") || HasControl(v) {
					t.Fatalf("key part %q", v)
				}
			}
			for _, v := range append([]string{p.OS, p.ReleaseTitle}, p.Aliases...) {
				if HasControl(v) || len(v) > MaxIndexField {
					t.Fatalf("string %q", v)
				}
			}
			if got, ok := s.Product(Query{p.Dist, p.Release, p.Arch, p.Variant}); !ok || got.Key != p.Key {
				t.Fatalf("Product of %q: %v", p.Key, ok)
			}
			for j, b := range p.Builds {
				if !ValidBuildID(b.ID) || (j > 0 && p.Builds[j-1].ID <= b.ID) {
					t.Fatalf("build ids %q out of order or malformed", b.ID)
				}
				if !b.HasRootfs() {
					if b.Dir != "" {
						t.Fatalf("build %s without a rootfs has dir %q", b.ID, b.Dir)
					}
					continue
				}
				r := b.Rootfs
				if !isSHA256Hex(r.SHA256) || r.Size < 0 || r.Size > MaxItemSize || checkImagePath(r.Path) != nil {
					t.Fatalf("rootfs %+v", r)
				}
				if !strings.HasSuffix(b.Dir, "/"+b.ID+"/") || !strings.HasPrefix(b.Dir, "/") || strings.Contains(b.Dir, "//") {
					t.Fatalf("dir %q of build %s", b.Dir, b.ID)
				}
				for _, seg := range strings.Split(p.Entry(b).File(MetaFile), "/")[1:] {
					if seg == "" || seg == "." || seg == ".." {
						t.Fatalf("meta of %q has segment %q", b.Dir, seg)
					}
				}
			}
			if len(p.Aliases) > 0 {
				if parts := strings.Split(p.Aliases[0], "/"); len(parts) > 1 {
					q, how, err := s.ResolveRelease(Query{Dist: parts[0], Release: parts[1]})
					if err == nil && how != nil {
						if got, _, _ := s.ResolveRelease(q); got != q {
							t.Fatalf("resolving %+v again changes it to %+v", q, got)
						}
					}
				}
			}
		}
		rows := s.Rows()
		checkFormats(t, rows)
		fs, err := ParseFilters([]string{"a", "release=.*", "alias=.+"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range SelectRows(rows, fs, true) {
			if !strings.Contains(r.Name(), "a") && !slices.ContainsFunc(r.Aliases, func(a string) bool { return strings.Contains(a+"/"+r.Arch, "a") }) {
				t.Fatalf("%+v matched", r)
			}
		}
	})
}

// checkFormats writes the rows in every format and reads them back.
func checkFormats(t *testing.T, rows []ListRow) {
	for _, f := range ListFormats {
		var b bytes.Buffer
		if err := WriteRows(&b, f, rows); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		switch f {
		case ListCSV:
			recs, err := csv.NewReader(&b).ReadAll()
			if err != nil || len(recs) != len(rows)+1 {
				t.Fatalf("csv: %d records, %v", len(recs), err)
			}
			for i, r := range rows {
				if recs[i+1][0] != r.Name() || recs[i+1][len(ListFields)-1] != strings.Join(r.Aliases, ",") {
					t.Fatalf("csv row %d: %q", i, recs[i+1])
				}
			}
		case ListJSON:
			var back []jsonRow
			if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back) != len(rows) {
				t.Fatalf("json: %d rows, %v", len(back), err)
			}
			for i, r := range rows {
				if back[i].Name != r.Name() || back[i].OS == nil || *back[i].OS != r.OS || !slices.Equal(back[i].Aliases, r.Aliases) {
					t.Fatalf("json row %d: %+v", i, back[i])
				}
			}
		case ListYAML:
			checkYAMLRoundTrip(t, rows, b.Bytes())
		case ListText, ListTable:
			if n := bytes.Count(b.Bytes(), []byte("\n")); n < len(rows)+1 {
				t.Fatalf("%s: %d lines for %d rows", f, n, len(rows))
			}
		}
	}
}

func FuzzParseStreamsIndex(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := ParseStreamsIndex(data)
		if err != nil {
			if ix != nil || !strings.HasPrefix(err.Error(), "streams index: ") || strings.Contains(err.Error(), "\n") || HasControl(err.Error()) {
				t.Fatalf("error %q with index %v", err, ix)
			}
			return
		}
		if ix.ImagesPath == "" || checkImagePath(ix.ImagesPath) != nil || HasControl(ix.ImagesPath) {
			t.Fatalf("images path %q", ix.ImagesPath)
		}
		for _, k := range ix.Products {
			if _, err := splitProductKey(k); err != nil {
				t.Fatalf("product %q: %v", k, err)
			}
		}
	})
}

// FuzzFilter checks a filter against its definition on one row.
func FuzzFilter(f *testing.F) {
	f.Fuzz(func(t *testing.T, filter, release, alias string) {
		fs, err := ParseFilters([]string{filter})
		if err != nil {
			if fs != nil || !strings.HasPrefix(err.Error(), "filter ") || strings.Contains(err.Error(), "\n") || HasControl(err.Error()) {
				t.Fatalf("error %q with filters %v", err, fs)
			}
			return
		}
		r := ListRow{Dist: "d", Release: release, Arch: "a", Variant: "v", Aliases: []string{alias}, FromStreams: true}
		got := fs.Match(r)
		f := fs[0]
		switch f.Key {
		case "":
			want := strings.Contains(r.Name(), filter) || strings.Contains(alias, filter) || strings.Contains(alias+"/a", filter)
			if got != want {
				t.Fatalf("word %q on %+v: %v", filter, r, got)
			}
		case "release":
			if got && !strings.ContainsAny(f.Value, "^$") {
				if loc := f.re.FindStringIndex(release); loc == nil || loc[0] != 0 || loc[1] != len(release) {
					t.Fatalf("%q matches %q, not as a whole", filter, release)
				}
			}
		}
		r.FromStreams, r.Aliases = false, nil
		if slices.Contains(streamsOnlyKeys, f.Key) && fs.Match(r) {
			t.Fatalf("%q matched a row from the index", filter)
		}
	})
}

// streamsFuzzSeeds are the seed corpora of the fuzz targets of this file,
// as fuzzSeeds has those of the others.
func streamsFuzzSeeds(t testing.TB) map[string]map[string][]any {
	sample := mustJSON(t, sampleStreamsDoc())
	bad := sampleStreamsDoc()
	bad["products"].(map[string]any)["x:y:z:w"] = streamsProduct("X", "x", "y", "y", "z", "w", "x/1", "20261120_05:24")
	bad["products"].(map[string]any)["x:y:z:w"].(map[string]any)["versions"].(map[string]any)["20261120_05:24"].(map[string]any)["items"].(map[string]any)["root.tar.xz"].(map[string]any)["path"] = "images/../x/20261120_05:24/rootfs.tar.xz"
	return map[string]map[string][]any{
		"FuzzParseStreams": {
			"sample":         {sample},
			"dotdot":         {mustJSON(t, bad)},
			"minimal":        {[]byte(`{"format":"products:1.0","products":{"a:b:c:d":{"arch":"c","release":"b","variant":"d","aliases":"a/b,a/b/d","versions":{"20261120_05:24":{"items":{"r":{"ftype":"root.tar.xz","path":"i/20261120_05:24/rootfs.tar.xz","sha256":"` + sha("0") + `","size":0}}}}}}}`)},
			"escapes":        {[]byte(`{"format":"products:1.0","products":{"a:b:c:d":{"arch":"c","release":"b","variant":"d","os":"\u001b]0;x\u0007","versions":{}}}}`)},
			"trailing-slash": {[]byte(`{"format":"products:1.0","products":{"a:b:c:d":{"arch":"c","release":"b","variant":"d","versions":{"20261120_05:24":{"items":{"r":{"ftype":"root.tar.xz","path":"i/20261120_05:24/rootfs.tar.xz////","sha256":"` + sha("0") + `","size":0}}}}}}}`)},
			"wrong-types":    {[]byte(`{"format":"products:1.0","products":{"a:b:c:d":{"arch":1,"versions":[]}}}`)},
		},
		"FuzzParseStreamsIndex": {
			"sample":    {[]byte(sampleStreamsIndex)},
			"url":       {[]byte(`{"format":"index:1.0","index":{"i":{"datatype":"image-downloads","format":"products:1.0","path":"//evil.example/x"}}}`)},
			"two":       {[]byte(`{"format":"index:1.0","index":{"a":{"datatype":"image-downloads"},"b":{"datatype":"image-downloads"}}}`)},
			"not-utf-8": {[]byte("{\"format\":\"index:1.0\xc3\"}")},
		},
		"FuzzFilter": {
			"word":      {"debian/12", "bookworm", "debian/12"},
			"anchored":  {"release=book", "bookworm", ""},
			"caret":     {"release=^book", "bookworm", ""},
			"alias":     {"alias=debian/.*", "x", "debian/12"},
			"bad-regex": {"os=(", "", ""},
			"unknown":   {"colour=red", "", ""},
			"os-index":  {"os=.*", "", ""},
			"not-utf-8": {"os=\xb2", "", ""},
		},
	}
}

// TestStreamsFuzzSeeds checks that the seed corpora of this file's fuzz
// targets are what streamsFuzzSeeds makes, or rewrites them with
// -update-seeds.
func TestStreamsFuzzSeeds(t *testing.T) {
	for target, entries := range streamsFuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, args := range entries {
			p := filepath.Join(dir, name)
			want := corpusFile(args)
			if *updateSeeds {
				if err := os.WriteFile(p, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is not current (%v): run go test ./compat -run TestStreamsFuzzSeeds -update-seeds", p, err)
			}
		}
	}
}

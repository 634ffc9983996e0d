package mirror

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// TestBuildRel: a build directory of a signed index or catalogue lands
// below the destination, never in the mirror's work directory, over the
// indexes or streams, or outside.
func TestBuildRel(t *testing.T) {
	for p, want := range map[string]string{
		"/images/debian/bookworm/amd64/default/20261120_05:24/": "images/debian/bookworm/amd64/default/20261120_05:24",
		"images//debian/bookworm/amd64/default/20261120_05:24":  "images/debian/bookworm/amd64/default/20261120_05:24",
		"/other/place/20261120_05:24/":                          "other/place/20261120_05:24",
		"/.lxc-download-mirror/stage/x/":                        "",
		"/images/../.lxc-download-mirror/":                      "",
		"/images/./x/":                                          "",
		"/meta/1.0/":                                            "",
		"/streams/v1/":                                          "",
		"/images/":                                              "",
		"/":                                                     "",
		"/images/a\\b/c/":                                       "",
	} {
		got, err := buildRel(p)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("buildRel(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
}

func entry(dist, release, arch, variant, build string) compat.Entry {
	return compat.Entry{Dist: dist, Release: release, Arch: arch, Variant: variant, Build: build,
		Path: "/images/" + dist + "/" + release + "/" + arch + "/" + variant + "/" + build + "/"}
}

func product(dist, release, arch, variant string, aliases []string, builds ...string) compat.Product {
	p := compat.Product{Key: compat.ProductKey(dist, release, arch, variant), Dist: dist, Release: release, Arch: arch, Variant: variant, Aliases: aliases}
	for _, b := range builds {
		e := entry(dist, release, arch, variant, b)
		p.Builds = append(p.Builds, compat.Build{ID: b, Dir: e.Path,
			Rootfs: &compat.Item{Name: "root.tar.xz", Path: strings.TrimPrefix(e.Path, "/") + "rootfs.tar.xz", SHA256: strings.Repeat("a", 64), Size: 1}})
	}
	return p
}

// TestSelectBuilds: the build each index names and the newest --keep
// builds of the streams that match, for the images the filters match,
// each once, in image order.
func TestSelectBuilds(t *testing.T) {
	src := &source{
		indexes: []sourceIndex{
			{rel: "meta/1.0/index-system.7", entries: []compat.Entry{
				entry("debian", "bookworm", "amd64", "default", "20261120_05:24"),
				entry("alpine", "3.20", "amd64", "default", "20261121_13:00"),
				entry("debian", "bookworm", "arm64", "default", "20261120_05:24"),
			}},
			// The user index is late: it still names the build before.
			{rel: "meta/1.0/index-user.7", entries: []compat.Entry{
				entry("debian", "bookworm", "amd64", "default", "20261119_05:24"),
			}},
		},
		streams: &fetch.StreamsResult{Streams: &compat.Streams{Products: []compat.Product{
			product("alpine", "3.20", "amd64", "default", []string{"alpine/3.20"}, "20261121_13:00"),
			product("debian", "bookworm", "amd64", "default", []string{"debian/12"}, "20261120_05:24", "20261119_05:24", "20261118_05:24"),
			product("debian", "bookworm", "arm64", "default", []string{"debian/12"}, "20261120_05:24"),
		}}},
	}
	pick := func(filters []string, keep int) []string {
		fs, err := compat.ParseFilters(filters)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range selectBuilds(src, fs, keep) {
			out = append(out, b.rel)
			if b.rootfs == nil {
				t.Errorf("%s: the streams' rootfs is not attached", b.rel)
			}
		}
		return out
	}
	const d = "images/debian/bookworm/amd64/default/"
	for _, c := range []struct {
		filters []string
		keep    int
		want    []string
	}{
		{[]string{"arch=amd64", "dist=debian"}, 1, []string{d + "20261120_05:24", d + "20261119_05:24"}},
		{[]string{"arch=amd64", "dist=debian"}, 3, []string{d + "20261120_05:24", d + "20261119_05:24", d + "20261118_05:24"}},
		{[]string{"alias=alpine/.*"}, 1, []string{"images/alpine/3.20/amd64/default/20261121_13:00"}},
		{[]string{"build=20261118_05:24"}, 1, []string{d + "20261120_05:24", d + "20261119_05:24", d + "20261118_05:24"}},
		{[]string{"nothing"}, 1, nil},
		{nil, 1, []string{"images/alpine/3.20/amd64/default/20261121_13:00", d + "20261120_05:24", d + "20261119_05:24",
			"images/debian/bookworm/arm64/default/20261120_05:24"}},
	} {
		if got := pick(c.filters, c.keep); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q --keep %d: %q, want %q", c.filters, c.keep, got, c.want)
		}
	}

	// A hostile path is a failed build, not a file in the wrong place.
	src.indexes[0].entries[0].Path = "/.lxc-download-mirror/stage/"
	bs := selectBuilds(src, nil, 1)
	if bs[1].status != StatusFailed || bs[1].rel != "" || !strings.Contains(bs[1].err.Error(), "starts with a dot") {
		t.Errorf("hostile path: %+v", bs[1])
	}
}

// TestNamedBuilds: what the published indexes and catalogue name, and a
// published file that does not parse stops pruning.
func TestNamedBuilds(t *testing.T) {
	files := map[string]string{
		"meta/1.0/index-system.7": "debian;bookworm;amd64;default;20261120_05:24;/images/debian/bookworm/amd64/default/20261120_05:24/\n",
		"meta/1.0/index-user":     "alpine;3.20;amd64;default;20261121_13:00;/images/alpine/3.20/amd64/default/20261121_13:00/\n",
		StreamsIndexPath:          `{"format":"index:1.0","index":{"images":{"datatype":"image-downloads","path":"streams/v1/images.json","format":"products:1.0"}}}`,
		"streams/v1/images.json": `{"format":"products:1.0","products":{"debian:bookworm:amd64:default":{"arch":"amd64","release":"bookworm","variant":"default",` +
			`"versions":{"20261119_05:24":{"items":{"root.tar.xz":{"ftype":"root.tar.xz","path":"images/debian/bookworm/amd64/default/20261119_05:24/rootfs.tar.xz","sha256":"` +
			strings.Repeat("b", 64) + `","size":3}}}}}}}`,
	}
	read := func(rel string) ([]byte, bool) {
		s, ok := files[rel]
		return []byte(s), ok
	}
	named, err := namedBuilds(read)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"images/debian/bookworm/amd64/default/20261120_05:24": true,
		"images/alpine/3.20/amd64/default/20261121_13:00":     true,
		"images/debian/bookworm/amd64/default/20261119_05:24": true,
	}
	if !reflect.DeepEqual(named, want) {
		t.Errorf("named %v, want %v", named, want)
	}
	files["streams/v1/images.json"] = "{"
	if _, err := namedBuilds(read); err == nil || !strings.Contains(err.Error(), "streams/v1/images.json") {
		t.Errorf("a catalogue that does not parse: %v", err)
	}
}

// TestPairOrder: a file's signature is renamed right after it; a
// signature that is going away goes before its file changes.
func TestPairOrder(t *testing.T) {
	var got []string
	for _, f := range pair(pair(nil, "a", []byte("1"), "a.asc", []byte("s")), "b", []byte("2"), "b.gpg", nil) {
		got = append(got, f.rel+map[bool]string{true: "-", false: "+"}[f.data == nil])
	}
	if want := []string{"a+", "a.asc+", "b.gpg-", "b+"}; !reflect.DeepEqual(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
}

// TestStateRoundTrip: the record survives a save and a read.
func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	st, err := readState(dir)
	if err != nil || len(st.Builds) != 0 {
		t.Fatalf("no record: %+v, %v", st, err)
	}
	now := time.Date(2026, 11, 20, 5, 24, 0, 0, time.UTC)
	st.SignedAt["meta/1.0/index-system.7"] = now
	if err := st.setBuild("images/x/20261120_05:24", &buildState{Files: map[string]string{"rootfs.tar.xz": "ab"}, Published: now, UnnamedSince: &now}); err != nil {
		t.Fatal(err)
	}
	back, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b := back.Builds["images/x/20261120_05:24"]; b == nil || b.Files["rootfs.tar.xz"] != "ab" || !b.UnnamedSince.Equal(now) || !back.SignedAt["meta/1.0/index-system.7"].Equal(now) {
		t.Errorf("read back %+v", back)
	}
}

// TestSummary: the report's last line, for a run and a dry run.
func TestSummary(t *testing.T) {
	r := &Report{Builds: []BuildReport{
		{Image: "debian/bookworm/amd64/default", Status: StatusFetched},
		{Image: "debian/bookworm/amd64/default", Status: StatusUpToDate},
		{Image: "alpine/3.20/amd64/default", Status: StatusFailed},
	}, Fetched: 1, UpToDate: 1, Failed: 1, Bytes: 3 << 20, Published: []string{"a"}, HeldBack: "x", Pruned: []string{"p", "q"}}
	want := "2 images, 3 builds: 1 fetched (3.0 MiB), 1 up to date, 1 failed; 1 file published (indexes held back); 2 builds pruned, 0 in the grace period"
	if got := r.Summary(); got != want {
		t.Errorf("summary %q\nwant    %q", got, want)
	}
	r = &Report{DryRun: true, Builds: []BuildReport{{Image: "a", Status: StatusToFetch}}, Bytes: 10}
	want = "1 image, 1 build: 1 to fetch (10 B), 0 up to date, 0 failed; 0 files to publish; 0 builds to prune, 0 in the grace period"
	if got := r.Summary(); got != want {
		t.Errorf("summary %q\nwant    %q", got, want)
	}
}

// TestPrefixedLines: progress lines of downloads running at once reach
// the log whole, each with its build's name; a bar passes as it is.
func TestPrefixedLines(t *testing.T) {
	var out strings.Builder
	log := newLineLog(&out)
	a := &prefixed{log: log, prefix: "a: "}
	b := &prefixed{log: log, prefix: "b: "}
	a.Write([]byte("rootfs.tar.xz: 25%"))
	b.Write([]byte("rootfs.tar.xz: 50% of 1 MiB\nmeta"))
	a.Write([]byte(" of 2 MiB\n"))
	b.Write([]byte(".tar.xz: done\n"))
	if want := "b: rootfs.tar.xz: 50% of 1 MiB\na: rootfs.tar.xz: 25% of 2 MiB\nb: meta.tar.xz: done\n"; out.String() != want {
		t.Errorf("log %q\nwant %q", out.String(), want)
	}
	out.Reset()
	bar := &prefixed{log: log, prefix: "c: ", raw: true}
	bar.Write([]byte("\r[====>   ] 50%"))
	if out.String() != "\r[====>   ] 50%" {
		t.Errorf("bar %q", out.String())
	}
}

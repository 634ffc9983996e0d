package compat

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// sha is a fake sha256 in the catalogue's form, made of one hex digit.
func sha(c string) string { return strings.Repeat(c, 64) }

// streamsBuild is one version of a product in the form of images.json:
// the items the real server lists for a container build (Incus and LXD
// metadata, squashfs and, for all but the first build, a delta), and the
// LXC rootfs.
func streamsBuild(dir, prev string) map[string]any {
	items := map[string]any{
		"incus.tar.xz": map[string]any{"ftype": "incus.tar.xz", "path": dir + "/incus.tar.xz", "sha256": sha("1"), "size": 864,
			"combined_sha256": sha("2"), "combined_rootxz_sha256": sha("3"), "combined_squashfs_sha256": sha("4")},
		"lxd.tar.xz":    map[string]any{"ftype": "lxd.tar.xz", "path": dir + "/lxd.tar.xz", "sha256": sha("5"), "size": 860},
		"root.squashfs": map[string]any{"ftype": "squashfs", "path": dir + "/rootfs.squashfs", "sha256": sha("6"), "size": 93384704},
		"root.tar.xz":   map[string]any{"ftype": "root.tar.xz", "path": dir + "/rootfs.tar.xz", "sha256": sha("7"), "size": 95705728},
	}
	if prev != "" {
		items["delta-"+prev] = map[string]any{"ftype": "squashfs.vcdiff", "path": dir + "/rootfs." + prev + ".vcdiff",
			"sha256": sha("8"), "size": 4096, "delta_base": prev}
	}
	return map[string]any{"items": items}
}

// streamsProduct is a product with builds, newest last, in the real
// server's layout.
func streamsProduct(os, dist, release, title, arch, variant, aliases string, builds ...string) map[string]any {
	versions := map[string]any{}
	for i, b := range builds {
		prev := ""
		if i > 0 {
			prev = builds[i-1]
		}
		versions[b] = streamsBuild("images/"+dist+"/"+release+"/"+arch+"/"+variant+"/"+b, prev)
	}
	return map[string]any{"aliases": aliases, "arch": arch, "os": os, "release": release, "release_title": title,
		"variant": variant, "requirements": map[string]any{}, "versions": versions}
}

// sampleStreamsDoc is an images.json as the real server writes it, as a
// tree to change in tests.
func sampleStreamsDoc() map[string]any {
	vm := map[string]any{"aliases": "almalinux/9", "arch": "amd64", "os": "Almalinux", "release": "9", "release_title": "9",
		"variant": "default", "requirements": map[string]any{"secureboot": "false", "cdrom_agent": true},
		"versions": map[string]any{"20261120_23:08": map[string]any{"items": map[string]any{
			"disk-kvm.img": map[string]any{"ftype": "disk-kvm.img", "path": "images/almalinux/9/amd64/default/20261120_23:08/disk.qcow2",
				"sha256": sha("9"), "size": 1 << 30},
			"incus.tar.xz": map[string]any{"ftype": "incus.tar.xz", "path": "images/almalinux/9/amd64/default/20261120_23:08/incus.tar.xz",
				"sha256": sha("a"), "size": 800, "combined_disk-kvm-img_sha256": sha("b")},
		}}}}
	return map[string]any{
		"content_id": "images",
		"datatype":   "image-downloads",
		"format":     "products:1.0",
		"updated":    "Fri, 20 Nov 2026 06:12:40 +0000",
		"products": map[string]any{
			"debian:bookworm:amd64:default": streamsProduct("Debian", "debian", "bookworm", "bookworm", "amd64", "default",
				"debian/bookworm/default,debian/12/default,debian/bookworm,debian/12",
				"20261118_05:24", "20261119_05:24", "20261120_05:24"),
			"debian:bookworm:amd64:cloud": streamsProduct("Debian", "debian", "bookworm", "bookworm", "amd64", "cloud",
				"debian/bookworm/cloud,debian/12/cloud", "20261120_05:24"),
			"debian:trixie:arm64:default": streamsProduct("Debian", "debian", "trixie", "trixie", "arm64", "default",
				"debian/trixie/default,debian/13/default,debian/trixie,debian/13", "20261119_05:30", "20261120_05:30"),
			"alpine:3.20:amd64:default": streamsProduct("Alpine", "alpine", "3.20", "3.20", "amd64", "default",
				"alpine/3.20/default,alpine/3.20", "20261121_13:00"),
			"almalinux:9:amd64:default": vm,
		},
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleStreams(t testing.TB) *Streams {
	t.Helper()
	s, err := ParseStreams(mustJSON(t, sampleStreamsDoc()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseStreams(t *testing.T) {
	s := sampleStreams(t)
	if s.ContentID != "images" || s.Updated != "Fri, 20 Nov 2026 06:12:40 +0000" {
		t.Errorf("content_id %q, updated %q", s.ContentID, s.Updated)
	}
	var keys []string
	for _, p := range s.Products {
		keys = append(keys, p.Key)
	}
	want := []string{"almalinux:9:amd64:default", "alpine:3.20:amd64:default", "debian:bookworm:amd64:cloud",
		"debian:bookworm:amd64:default", "debian:trixie:arm64:default"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("products %q, want %q", keys, want)
	}

	p, ok := s.Product(Query{"debian", "bookworm", "amd64", "default"})
	if !ok {
		t.Fatal("no debian:bookworm:amd64:default")
	}
	if p.Dist != "debian" || p.Release != "bookworm" || p.Arch != "amd64" || p.Variant != "default" ||
		p.OS != "Debian" || p.ReleaseTitle != "bookworm" || p.Name() != "debian/bookworm/amd64/default" {
		t.Errorf("product %+v", p)
	}
	if want := []string{"debian/bookworm/default", "debian/12/default", "debian/bookworm", "debian/12"}; !reflect.DeepEqual(p.Aliases, want) {
		t.Errorf("aliases %q, want %q", p.Aliases, want)
	}
	var ids []string
	for _, b := range p.Builds {
		ids = append(ids, b.ID)
	}
	if want := []string{"20261120_05:24", "20261119_05:24", "20261118_05:24"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("builds %q, want newest first %q", ids, want)
	}
	b := p.Builds[0]
	wantRootfs := &Item{Name: "root.tar.xz", Path: "images/debian/bookworm/amd64/default/20261120_05:24/rootfs.tar.xz",
		SHA256: sha("7"), Size: 95705728}
	if !reflect.DeepEqual(b.Rootfs, wantRootfs) || b.Dir != "/images/debian/bookworm/amd64/default/20261120_05:24/" || b.Ignored != 4 {
		t.Errorf("newest build %+v rootfs %+v", b, b.Rootfs)
	}
	if p.Builds[2].Ignored != 3 {
		t.Errorf("oldest build ignores %d items, want 3 (no delta)", p.Builds[2].Ignored)
	}
	e := p.Entry(b)
	if e.File(MetaFile) != "/images/debian/bookworm/amd64/default/20261120_05:24/meta.tar.xz" || e.Build != "20261120_05:24" {
		t.Errorf("entry %+v, meta at %s", e, e.File(MetaFile))
	}
	if got := b.Time().Format("2006-01-02 15:04 MST"); got != "2026-11-20 05:24 UTC" {
		t.Errorf("build time %s", got)
	}
	if old, ok := p.Build("20261118_05:24"); !ok || old.Dir != "/images/debian/bookworm/amd64/default/20261118_05:24/" {
		t.Errorf("Build(20261118_05:24) = %+v, %v", old, ok)
	}
	if _, ok := p.Build("20261117_05:24"); ok {
		t.Error("a build the catalogue does not have was found")
	}

	vm, ok := s.Product(Query{"almalinux", "9", "amd64", "default"})
	if !ok || len(vm.Builds) != 1 || vm.Builds[0].HasRootfs() || vm.Builds[0].Ignored != 2 || vm.Builds[0].Dir != "" {
		t.Fatalf("VM-only product %+v", vm)
	}
	if _, ok := vm.Newest(); ok {
		t.Error("a VM-only product has an LXC build")
	}
	if !reflect.DeepEqual(vm.Requirements, map[string]string{"secureboot": "false"}) {
		t.Errorf("requirements %v: want only the string ones", vm.Requirements)
	}
	if _, ok := s.Product(Query{"debian", "bookworm", "amd64", "nope"}); ok {
		t.Error("found a product that is not there")
	}
}

// TestParseStreamsTolerates: what the real server or another one may add
// must not make the catalogue unreadable.
func TestParseStreamsTolerates(t *testing.T) {
	doc := sampleStreamsDoc()
	doc["license"] = "various"
	p := doc["products"].(map[string]any)["debian:bookworm:amd64:default"].(map[string]any)
	p["supported"] = true
	p["release_codename"] = "bookworm"
	p["aliases"] = "debian/12,, debian/12 ,debian/bookworm,"
	v := p["versions"].(map[string]any)["20261120_05:24"].(map[string]any)
	v["label"] = "daily"
	items := v["items"].(map[string]any)
	items["disk.qcow2"] = map[string]any{"ftype": "disk-kvm.img", "path": "https://elsewhere.example/x", "size": "big"}
	items["weird"] = map[string]any{"ftype": 12}
	items["null"] = nil
	items["future.tar.zst"] = map[string]any{"ftype": "root.tar.zst", "path": "../../x", "sha256": "NOT HEX", "size": -1}
	s, err := ParseStreams(mustJSON(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	prod, _ := s.Product(Query{"debian", "bookworm", "amd64", "default"})
	if b := prod.Builds[0]; !b.HasRootfs() || b.Ignored != 8 {
		t.Errorf("build %+v: want the rootfs and 8 ignored items", b)
	}
	if want := []string{"debian/12", "debian/bookworm"}; !reflect.DeepEqual(prod.Aliases, want) {
		t.Errorf("aliases %q, want %q", prod.Aliases, want)
	}
	// No products at all is a catalogue too.
	if s, err := ParseStreams([]byte(`{"format":"products:1.0","products":{}}`)); err != nil || len(s.Products) != 0 {
		t.Errorf("empty catalogue: %v, %v", s, err)
	}
}

func TestParseStreamsRejects(t *testing.T) {
	const key = "debian:bookworm:amd64:default"
	const id = "20261120_05:24"
	product := func(doc map[string]any) map[string]any {
		return doc["products"].(map[string]any)[key].(map[string]any)
	}
	item := func(doc map[string]any) map[string]any {
		return product(doc)["versions"].(map[string]any)[id].(map[string]any)["items"].(map[string]any)["root.tar.xz"].(map[string]any)
	}
	for _, c := range []struct {
		name   string
		change func(doc map[string]any)
		want   string
	}{
		{"no format", func(d map[string]any) { delete(d, "format") }, `streams: format is missing, want "products:1.0"`},
		{"other format", func(d map[string]any) { d["format"] = "index:1.0" }, `streams: format is "index:1.0"`},
		{"other datatype", func(d map[string]any) { d["datatype"] = "image-ids" }, `streams: datatype is "image-ids"`},
		{"products not an object", func(d map[string]any) { d["products"] = []any{} }, "streams: products is a JSON array, not the object"},
		{"control in updated", func(d map[string]any) { d["updated"] = "now\x1b[2J" }, "streams: updated \"now[2J\" has a control character"},
		{"key of three parts", func(d map[string]any) {
			d["products"].(map[string]any)["debian:bookworm:amd64"] = product(d)
		}, `streams: product "debian:bookworm:amd64": product key "debian:bookworm:amd64" does not have the form DIST:RELEASE:ARCH:VARIANT`},
		{"key with a slash", func(d map[string]any) {
			d["products"].(map[string]any)["debian:../x:amd64:default"] = product(d)
		}, `release "../x" is not a valid name`},
		{"key with an empty part", func(d map[string]any) {
			d["products"].(map[string]any)["debian::amd64:default"] = product(d)
		}, "release is empty"},
		{"product not an object", func(d map[string]any) { d["products"].(map[string]any)[key] = "x" }, `product "debian:bookworm:amd64:default": not a JSON object`},
		{"arch disagrees", func(d map[string]any) { product(d)["arch"] = "arm64" },
			`streams: product "debian:bookworm:amd64:default": arch "arm64" disagrees with the product key's "amd64"`},
		{"release disagrees", func(d map[string]any) { product(d)["release"] = "12" }, `release "12" disagrees`},
		{"no variant", func(d map[string]any) { delete(product(d), "variant") }, `variant "" disagrees with the product key's "default"`},
		{"os not a string", func(d map[string]any) { product(d)["os"] = 1 }, "os is a JSON number, not the string it should be"},
		{"os with escape", func(d map[string]any) { product(d)["os"] = "Deb\u009bian" }, `os "Debian" has a control character`},
		{"alias with newline", func(d map[string]any) { product(d)["aliases"] = "debian/12,debian\n/x" }, "alias \"debian /x\" has a control character"},
		{"too many aliases", func(d map[string]any) {
			var a []string
			for i := range MaxProductAliases + 1 {
				a = append(a, "a"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)))
			}
			product(d)["aliases"] = strings.Join(a, ",")
		}, "257 aliases, more than the limit of 256"},
		{"versions not an object", func(d map[string]any) { product(d)["versions"] = []any{1} }, "versions is a JSON array"},
		{"build id of another form", func(d map[string]any) {
			product(d)["versions"].(map[string]any)["2026-11-20"] = streamsBuild("images/x/2026-11-20", "")
		}, `product "debian:bookworm:amd64:default": build "2026-11-20": not a build id of the form YYYYMMDD_HH:MM`},
		{"build id not a date", func(d map[string]any) {
			product(d)["versions"].(map[string]any)["20261340_05:24"] = streamsBuild("images/x/20261340_05:24", "")
		}, `build "20261340_05:24": not a build id`},
		{"build not an object", func(d map[string]any) { product(d)["versions"].(map[string]any)[id] = 5 }, `build "20261120_05:24": not a JSON object`},
		{"items not an object", func(d map[string]any) {
			product(d)["versions"].(map[string]any)[id] = map[string]any{"items": "x"}
		}, "items is a JSON string, not the object"},
		{"sha256 upper case", func(d map[string]any) { item(d)["sha256"] = sha("A") },
			`product "debian:bookworm:amd64:default": build "20261120_05:24": item "root.tar.xz": sha256 "AAAA`},
		{"sha256 short", func(d map[string]any) { item(d)["sha256"] = "abc" }, `sha256 "abc" is not 64 lower-case hexadecimal digits`},
		{"no sha256", func(d map[string]any) { delete(item(d), "sha256") }, `item "root.tar.xz": has no sha256`},
		{"negative size", func(d map[string]any) { item(d)["size"] = -1 }, "size -1 is not a whole number of bytes"},
		{"fractional size", func(d map[string]any) { item(d)["size"] = 1.5 }, "size 1.5 is not a whole number"},
		{"size as a string", func(d map[string]any) { item(d)["size"] = "12" }, `size "12" is not a whole number`},
		{"size as an exponent", func(d map[string]any) { item(d)["size"] = json.RawMessage("1e3") }, "size 1e3 is not a whole number"},
		{"huge size", func(d map[string]any) { item(d)["size"] = int64(MaxItemSize) + 1 }, "size 1099511627777 is not"},
		{"no size", func(d map[string]any) { delete(item(d), "size") }, "has no size"},
		{"no path", func(d map[string]any) { delete(item(d), "path") }, "has no path"},
		{"path a URL", func(d map[string]any) { item(d)["path"] = "https://evil.example/" + id + "/rootfs.tar.xz" }, "is a URL, not a path on the server"},
		{"path with dot-dot", func(d map[string]any) { item(d)["path"] = "images/../../etc/" + id + "/rootfs.tar.xz" }, `has a ".." segment`},
		{"path with encoded dot-dot", func(d map[string]any) { item(d)["path"] = "images/%2e%2e/" + id + "/rootfs.tar.xz" }, `has a ".." segment`},
		{"path with a query", func(d map[string]any) { item(d)["path"] = "images/x/" + id + "/rootfs.tar.xz?x" }, `has a '?'`},
		{"path in another build", func(d map[string]any) {
			item(d)["path"] = "images/debian/bookworm/amd64/default/20261119_05:24/rootfs.tar.xz"
		}, "is not in the build's directory: want .../20261120_05:24/rootfs.tar.xz"},
		{"path of another file", func(d map[string]any) { item(d)["path"] = "images/x/" + id + "/rootfs.squashfs" }, "is not in the build's directory"},
		{"path with a trailing slash", func(d map[string]any) { item(d)["path"] = "images/x/" + id + "/rootfs.tar.xz/" }, "is not in the build's directory"},
		{"path with a leading slash", func(d map[string]any) { item(d)["path"] = "/images/x/" + id + "/rootfs.tar.xz" }, ""},
		{"path with an empty segment", func(d map[string]any) { item(d)["path"] = "images//x/" + id + "/rootfs.tar.xz" }, "has an empty or"},
		{"two rootfs items", func(d map[string]any) {
			items := product(d)["versions"].(map[string]any)[id].(map[string]any)["items"].(map[string]any)
			items["root2"] = items["root.tar.xz"]
		}, `items "root.tar.xz" and "root2" are both of ftype root.tar.xz`},
		{"rootfs item not an object", func(d map[string]any) {
			product(d)["versions"].(map[string]any)[id].(map[string]any)["items"].(map[string]any)["x"] = []any{"root.tar.xz"}
		}, `build "20261120_05:24": item "x": not a JSON object`},
		{"rootfs ftype escaped", func(d map[string]any) {
			product(d)["versions"].(map[string]any)[id].(map[string]any)["items"].(map[string]any)["escaped"] = json.RawMessage(
				`{"ftype": "root.tar.x\u007a", "path": "x/` + id + `/rootfs.tar.xz", "sha256": "` + sha("c") + `", "size": 1}`)
		}, `items "escaped" and "root.tar.xz" are both of ftype root.tar.xz`},
		{"item null", func(d map[string]any) {
			product(d)["versions"].(map[string]any)[id].(map[string]any)["items"].(map[string]any)["x"] = nil
		}, ""}, // no item: ignored
		{"path not a string", func(d map[string]any) { item(d)["path"] = 5 }, `item "root.tar.xz": path 5 is not a string`},
		{"sha256 not a string", func(d map[string]any) { item(d)["sha256"] = true }, `sha256 true is not 64`},
		{"build null", func(d map[string]any) { product(d)["versions"].(map[string]any)[id] = nil }, `build "20261120_05:24": not a JSON object`},
		{"product null", func(d map[string]any) { d["products"].(map[string]any)[key] = nil }, `product "debian:bookworm:amd64:default": not a JSON object`},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := sampleStreamsDoc()
			c.change(doc)
			s, err := ParseStreams(mustJSON(t, doc))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one with %q", err, c.want)
			}
			if s != nil {
				t.Errorf("streams %v with the error", s)
			}
		})
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"not UTF-8", []byte(`{"format":"products:1.0","products":{},"updated":"` + "\xff" + `"}`), "streams: not valid UTF-8"},
		{"not JSON", []byte(`{"format":`), "streams: not valid JSON"},
		{"trailing data", []byte(`{"format":"products:1.0"} {}`), "streams: not valid JSON"},
		{"an array", []byte(`[]`), "streams: not a JSON object"},
		{"null", []byte(`null`), "streams: not a JSON object"},
		{"empty", nil, "streams: not a JSON object"},
		{"too big", []byte(`{"format":"products:1.0","x":"` + strings.Repeat(" ", MaxStreamsSize) + `"}`), "more than the limit of"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ParseStreams(c.data); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one with %q", err, c.want)
			}
		})
	}
}

const sampleStreamsIndex = `{
 "format": "index:1.0",
 "index": {
  "images": {
   "datatype": "image-downloads",
   "format": "products:1.0",
   "path": "streams/v1/images.json",
   "products": ["alpine:3.20:amd64:default", "debian:bookworm:amd64:default"],
   "updated": "Fri, 20 Nov 2026 06:12:40 +0000"
  },
  "other": {"datatype": "image-ids", "path": 5}
 }
}`

func TestParseStreamsIndex(t *testing.T) {
	ix, err := ParseStreamsIndex([]byte(sampleStreamsIndex))
	if err != nil {
		t.Fatal(err)
	}
	want := &StreamsIndex{ImagesPath: "streams/v1/images.json", Products: []string{"alpine:3.20:amd64:default", "debian:bookworm:amd64:default"},
		Updated: "Fri, 20 Nov 2026 06:12:40 +0000"}
	if !reflect.DeepEqual(ix, want) {
		t.Errorf("got %+v, want %+v", ix, want)
	}
	images := `"images": {"datatype": "image-downloads", "format": "products:1.0", "path": "streams/v1/images.json", "products": []}`
	for _, c := range []struct{ name, doc, want string }{
		{"no format", `{"index": {` + images + `}}`, `streams index: format is missing, want "index:1.0"`},
		{"products format", `{"format": "products:1.0", "index": {}}`, `format is "products:1.0"`},
		{"no catalogue", `{"format": "index:1.0", "index": {}}`, `streams index: no catalogue of datatype "image-downloads"`},
		{"two catalogues", `{"format": "index:1.0", "index": {` + images + `, ` + strings.Replace(images, `"images"`, `"more"`, 1) + `}}`,
			`catalogues "images" and "more" are both image-downloads`},
		{"catalogue format", `{"format": "index:1.0", "index": {` + strings.Replace(images, "products:1.0", "products:2.0", 1) + `}}`,
			`catalogue "images": format is "products:2.0"`},
		{"no path", `{"format": "index:1.0", "index": {` + strings.Replace(images, `"path": "streams/v1/images.json"`, `"path": ""`, 1) + `}}`,
			`catalogue "images" has no path`},
		{"URL path", `{"format": "index:1.0", "index": {` + strings.Replace(images, `"streams/v1/images.json"`, `"https://evil.example/i.json"`, 1) + `}}`,
			"is a URL"},
		{"dot-dot path", `{"format": "index:1.0", "index": {` + strings.Replace(images, `"streams/v1/images.json"`, `"../images.json"`, 1) + `}}`,
			`has a ".." segment`},
		{"bad product key", `{"format": "index:1.0", "index": {` + strings.Replace(images, `[]`, `["a:b"]`, 1) + `}}`,
			`product key "a:b" does not have the form`},
		{"products not strings", `{"format": "index:1.0", "index": {` + strings.Replace(images, `[]`, `[1]`, 1) + `}}`,
			"is a JSON number, not the string"},
		{"not JSON", `{"format": "index:1.0", "index": {`, "streams index: not valid JSON"},
		{"not UTF-8", "{\"format\": \"index:1.0\xff\"}", "streams index: not valid UTF-8"},
		{"too big", `{"format": "index:1.0", "x": "` + strings.Repeat(" ", MaxStreamsIndexSize) + `"}`, "more than the limit of"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ix, err := ParseStreamsIndex([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) || ix != nil {
				t.Fatalf("got %v, error %v, want one with %q", ix, err, c.want)
			}
		})
	}
}

func TestValidBuildID(t *testing.T) {
	for id, want := range map[string]bool{
		"20261120_05:24": true, "20240229_23:59": true,
		"20230229_05:24": false, "20261120_24:00": false, "20261120-05:24": false, "20261120_05:24 ": false,
		"2026112_005:24": false, "+0261120_05:24": false, "": false, "20261120_5:24": false,
	} {
		if got := ValidBuildID(id); got != want {
			t.Errorf("ValidBuildID(%q) = %v", id, got)
		}
	}
}

// bigStreamsDoc is a catalogue of the real server's size: 2000 products
// of three builds, each with the Incus items next to the rootfs.
func bigStreamsDoc(tb testing.TB) []byte {
	products := map[string]any{}
	for i := range 2000 {
		dist := fmt.Sprintf("dist%d", i/20)
		release := fmt.Sprintf("r%d", i%20)
		products[ProductKey(dist, release, "amd64", "default")] = streamsProduct("Dist", dist, release, release, "amd64", "default",
			dist+"/"+release+"/default,"+dist+"/"+release, "20261118_05:24", "20261119_05:24", "20261120_05:24")
	}
	doc := sampleStreamsDoc()
	doc["products"] = products
	return mustJSON(tb, doc)
}

// BenchmarkParseStreams parses a catalogue of the real server's size;
// BenchmarkUnmarshalStreamsGeneric decodes the same bytes into
// map[string]any, the least any JSON reader does, for a ratio.
func BenchmarkParseStreams(b *testing.B) {
	data := bigStreamsDoc(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseStreams(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalStreamsGeneric(b *testing.B) {
	data := bigStreamsDoc(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSubsetStreams(t *testing.T) {
	images := mustJSON(t, sampleStreamsDoc())
	keep := func(key string) bool { return strings.HasPrefix(key, "debian:bookworm:") }
	newIndex, newImages, err := SubsetStreams([]byte(sampleStreamsIndex), images, keep)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ParseStreamsIndex(newIndex)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"debian:bookworm:amd64:cloud", "debian:bookworm:amd64:default"}; !reflect.DeepEqual(ix.Products, want) || ix.ImagesPath != "streams/v1/images.json" || ix.Updated == "" {
		t.Errorf("index %+v", ix)
	}
	if !strings.Contains(string(newIndex), `"other":{"datatype":"image-ids","path":5}`) {
		t.Errorf("other catalogues not kept: %s", newIndex)
	}
	s, err := ParseStreams(newImages)
	if err != nil {
		t.Fatal(err)
	}
	full := sampleStreams(t)
	if len(s.Products) != 2 || s.Updated != full.Updated || s.ContentID != full.ContentID {
		t.Fatalf("subset %+v", s)
	}
	for _, p := range s.Products {
		want, _ := full.Product(Query{p.Dist, p.Release, p.Arch, p.Variant})
		if !reflect.DeepEqual(p, *want) {
			t.Errorf("product %s changed:\n%+v\nwant\n%+v", p.Key, p, *want)
		}
	}
	// The Incus items are still there.
	if !strings.Contains(string(newImages), `"ftype":"squashfs.vcdiff"`) {
		t.Error("Incus items dropped")
	}
	if _, _, err := SubsetStreams([]byte(sampleStreamsIndex), []byte(`{"format":"x"}`), keep); err == nil || !strings.HasPrefix(err.Error(), "streams: format") {
		t.Errorf("bad catalogue: %v", err)
	}
	if _, _, err := SubsetStreams([]byte(`{}`), images, keep); err == nil || !strings.HasPrefix(err.Error(), "streams index: ") {
		t.Errorf("bad index: %v", err)
	}
}

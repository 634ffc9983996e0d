package compat

import (
	"reflect"
	"strings"
	"testing"
)

// TestSelectStreams: only the items asked for are kept; builds and
// products left empty go, from the index's product list too; the rest is
// as the source wrote it.
func TestSelectStreams(t *testing.T) {
	images := mustJSON(t, sampleStreamsDoc())
	var asked []string
	keep := func(product, build, item, ftype string) bool {
		asked = append(asked, product+" "+build+" "+item+" "+ftype)
		return product == "debian:bookworm:amd64:default" && build != "20261118_05:24" && ftype == RootfsFileType
	}
	newIndex, newImages, err := SelectStreams([]byte(sampleStreamsIndex), images, keep)
	if err != nil {
		t.Fatal(err)
	}
	if !containsLine(asked, "almalinux:9:amd64:default 20261120_23:08 disk-kvm.img disk-kvm.img") {
		t.Errorf("keep was not asked about every item: %q", asked)
	}
	ix, err := ParseStreamsIndex(newIndex)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"debian:bookworm:amd64:default"}; !reflect.DeepEqual(ix.Products, want) {
		t.Errorf("index products %q, want %q", ix.Products, want)
	}
	s, err := ParseStreams(newImages)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Products) != 1 {
		t.Fatalf("products %+v", s.Products)
	}
	p := s.Products[0]
	var ids []string
	for _, b := range p.Builds {
		ids = append(ids, b.ID)
		if b.Ignored != 0 || b.Rootfs == nil {
			t.Errorf("build %s: %d other items, rootfs %v", b.ID, b.Ignored, b.Rootfs)
		}
	}
	if want := []string{"20261120_05:24", "20261119_05:24"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("builds %q, want %q", ids, want)
	}
	full := sampleStreams(t)
	orig, _ := full.Product(Query{"debian", "bookworm", "amd64", "default"})
	if !reflect.DeepEqual(p.Aliases, orig.Aliases) || p.OS != orig.OS || *p.Builds[0].Rootfs != *orig.Builds[0].Rootfs {
		t.Errorf("kept product changed:\n%+v\nwant\n%+v", p, *orig)
	}
	if _, _, err := SelectStreams([]byte(sampleStreamsIndex), []byte(`{"format":"x"}`), keep); err == nil || !strings.HasPrefix(err.Error(), "streams: format") {
		t.Errorf("bad catalogue: %v", err)
	}
	if _, _, err := SelectStreams([]byte(`{}`), images, keep); err == nil || !strings.HasPrefix(err.Error(), "streams index: ") {
		t.Errorf("bad index: %v", err)
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// TestBuildFiles: every item of every build, whatever its type; an item
// that is not well formed is left out.
func TestBuildFiles(t *testing.T) {
	doc := sampleStreamsDoc()
	vm := doc["products"].(map[string]any)["almalinux:9:amd64:default"].(map[string]any)
	items := vm["versions"].(map[string]any)["20261120_23:08"].(map[string]any)["items"].(map[string]any)
	items["bad-path"] = map[string]any{"ftype": "x", "path": "../etc/passwd", "sha256": sha("c"), "size": 1}
	items["bad-sum"] = map[string]any{"ftype": "x", "path": "images/x", "sha256": "abc", "size": 1}
	items["bad-size"] = map[string]any{"ftype": "x", "path": "images/x", "sha256": sha("c"), "size": 1.5}
	files, err := BuildFiles(mustJSON(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	got := files["almalinux:9:amd64:default 20261120_23:08"]
	want := []StreamsFile{
		{Item: "disk-kvm.img", FileType: "disk-kvm.img", Path: "images/almalinux/9/amd64/default/20261120_23:08/disk.qcow2", SHA256: sha("9"), Size: 1 << 30},
		{Item: "incus.tar.xz", FileType: "incus.tar.xz", Path: "images/almalinux/9/amd64/default/20261120_23:08/incus.tar.xz", SHA256: sha("a"), Size: 800},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("files %+v\nwant %+v", got, want)
	}
	if n := len(files["debian:bookworm:amd64:default 20261120_05:24"]); n == 0 {
		t.Errorf("no files for debian's build")
	}
	if _, err := BuildFiles([]byte(`{"format":"x"}`)); err == nil {
		t.Error("a bad catalogue is taken")
	}
}

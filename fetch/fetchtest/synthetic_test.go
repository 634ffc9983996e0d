package fetchtest

import (
	"archive/tar"
	"reflect"
	"strings"
	"testing"
)

func TestSyntheticRootfs(t *testing.T) {
	files := SyntheticRootfs(600, 2<<20, 1)
	if again := SyntheticRootfs(600, 2<<20, 1); !reflect.DeepEqual(files, again) {
		t.Error("not deterministic")
	}
	if n := len(files); n < 540 || n > 660 {
		t.Errorf("%d entries, want about 600", n)
	}
	var total int64
	kinds := map[byte]int{}
	names := map[string]int{}
	for i, f := range files {
		total += int64(len(f.Body))
		kinds[f.Type]++
		if _, dup := names[f.Name]; dup {
			t.Errorf("duplicate %s", f.Name)
		}
		names[f.Name] = i
		// Every entry's directory came before it.
		if f.Name != "./" {
			parent := f.Name[:strings.LastIndex(strings.TrimSuffix(f.Name, "/"), "/")+1]
			if j, ok := names[parent]; !ok || j > i {
				t.Errorf("%s comes before its directory %s", f.Name, parent)
			}
		}
		if f.Type == tar.TypeLink {
			if j, ok := names[f.Linkname]; !ok || j > i {
				t.Errorf("hard link %s before its target %s", f.Name, f.Linkname)
			}
		}
	}
	if total < 1900<<10 || total > 2100<<10 {
		t.Errorf("%d bytes of content, want about 2 MiB", total)
	}
	for _, k := range []byte{tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeFifo} {
		if kinds[k] == 0 {
			t.Errorf("no entry of type %q", k)
		}
	}
	tarball, err := Tarball(files)
	if err != nil {
		t.Fatal(err)
	}
	packed, err := XZ(tarball, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(len(tarball)) / float64(len(packed))
	t.Logf("tar %d bytes, xz %d bytes: ratio %.2f", len(tarball), len(packed), ratio)
	// A real rootfs packs about 3 to 4 times with xz -6; much more or
	// less would skew the decoder benchmarks.
	if ratio < 2.5 || ratio > 6 {
		t.Errorf("compression ratio %.2f, want a rootfs-like 2.5 to 6", ratio)
	}
	if got := readTarXZ(t, packed); len(got) != len(files) {
		t.Errorf("%d entries read back", len(got))
	}
}

package compat

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadMetaTar(t *testing.T) {
	tarball := makeTar(t,
		tarEntry{name: "./", typ: tar.TypeDir},
		tarEntry{name: "./config", body: "C\n"},
		tarEntry{name: "./excludes", body: "./dev/*\n"},
	)
	got, err := ReadMetaTar(bytes.NewReader(tarball))
	if err != nil {
		t.Fatal(err)
	}
	if want := (MetaFiles{"config": []byte("C\n"), "excludes": []byte("./dev/*\n")}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	// The same rules as ReadMetaTarball.
	if _, err := ReadMetaTar(bytes.NewReader(makeTar(t, tarEntry{name: "config", typ: tar.TypeSymlink, link: "/etc/shadow"}))); err == nil ||
		!strings.Contains(err.Error(), `meta tarball: "config" is a symbolic link`) {
		t.Errorf("symlink: %v", err)
	}
	if _, err := ReadMetaTar(strings.NewReader("not a tarball, not at all\n")); err == nil || !strings.HasPrefix(err.Error(), "meta tarball: ") {
		t.Errorf("not a tarball: %v", err)
	}
}

// TestReadMetaTarLimit: however the tar stream came to be, no more than
// MaxMetaTar bytes of it are read.
func TestReadMetaTarLimit(t *testing.T) {
	big := makeTar(t, tarEntry{name: "config", body: "C\n"})
	// Padding after the end of the archive is read too (see below), so a
	// decompression bomb cannot hide there either.
	big = append(big, make([]byte, MaxMetaTar)...)
	_, err := ReadMetaTar(bytes.NewReader(big))
	if err == nil || !strings.Contains(err.Error(), "more than 8388608 bytes uncompressed") {
		t.Errorf("error %v", err)
	}
	if _, err := ReadMetaTar(bytes.NewReader(big[:MaxMetaTar])); err != nil {
		t.Errorf("at the limit: %v", err)
	}
}

// TestReadMetaTarReadsToTheEnd: the decompressor's error at the very end
// of its data (a checksum after the tar's end marker) is not lost.
func TestReadMetaTarReadsToTheEnd(t *testing.T) {
	boom := errors.New("gzip: invalid checksum")
	_, err := ReadMetaTar(&errReader{data: makeTar(t, tarEntry{name: "config", body: "C\n"}), err: boom})
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want %v", err, boom)
	}
}

func TestAppendUTSName(t *testing.T) {
	for _, current := range []string{"", "lxc.rootfs.path = dir:/r\n", "lxc.rootfs.path = dir:/r", "# comment\n\n"} {
		got := string(AppendUTSName([]byte(current), "c1"))
		// What lxc-local's `echo "lxc.uts.name = ${LXC_NAME}" >> config`
		// makes of it.
		p := filepath.Join(t.TempDir(), "config")
		if err := os.WriteFile(p, []byte(current), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("sh", "-c", `echo "lxc.uts.name = $2" >> "$1"`, "sh", p, "c1").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("AppendUTSName(%q) = %q, want %q", current, got, want)
		}
	}
}

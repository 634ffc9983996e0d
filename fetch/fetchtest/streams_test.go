package fetchtest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/lxc/lxc-download/compat"
)

// getStreams fetches and parses the server's streams over HTTPS.
func getStreams(t *testing.T, s *Server) (*compat.StreamsIndex, *compat.Streams) {
	t.Helper()
	c := client(t, s.CAFile)
	r := get(t, c, s.URL+StreamsIndexPath)
	if r.status != 200 {
		t.Fatalf("%s: %d", StreamsIndexPath, r.status)
	}
	ix, err := compat.ParseStreamsIndex(r.body)
	if err != nil {
		t.Fatal(err)
	}
	r = get(t, c, s.URL+"/"+ix.ImagesPath)
	if r.status != 200 {
		t.Fatalf("%s: %d", ix.ImagesPath, r.status)
	}
	st, err := compat.ParseStreams(r.body)
	if err != nil {
		t.Fatal(err)
	}
	return ix, st
}

func keyRing(t *testing.T, s *Server) openpgp.EntityList {
	t.Helper()
	f, err := os.Open(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ring, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

func TestStreamsOffByDefault(t *testing.T) {
	s := newTestServer(t)
	c := client(t, s.CAFile)
	for _, p := range []string{StreamsIndexPath, StreamsImagesPath, StreamsIndexPath + ".gpg"} {
		if r := get(t, c, s.URL+p); r.status != 404 {
			t.Errorf("%s: %d without EnableStreams", p, r.status)
		}
	}
}

func TestStreamsServed(t *testing.T) {
	newest := DefaultImage()
	older := NewImage("debian", "bookworm", "amd64", "default", "20261119_05:24")
	oldest := NewImage("debian", "bookworm", "amd64", "default", "20261118_05:24")
	cloud := NewImage("debian", "bookworm", "amd64", "cloud", "20261120_05:24")
	alpine := NewImage("alpine", "3.20", "arm64", "default", "20261121_13:00")
	s := newTestServer(t, newest, cloud)
	if err := s.EnableStreams(StreamsOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, img := range []Image{older, oldest} {
		if err := s.AddRetainedBuild(img); err != nil {
			t.Fatal(err)
		}
	}
	// After EnableStreams, adding an image updates the streams.
	if err := s.AddImage(alpine); err != nil {
		t.Fatal(err)
	}
	ix, st := getStreams(t, s)
	wantKeys := []string{"alpine:3.20:arm64:default", "debian:bookworm:amd64:cloud", "debian:bookworm:amd64:default"}
	if ix.ImagesPath != "streams/v1/images.json" || !reflect.DeepEqual(ix.Products, wantKeys) {
		t.Errorf("index %+v", ix)
	}
	if len(st.Products) != 3 {
		t.Fatalf("%d products", len(st.Products))
	}
	p, ok := st.Product(compat.Query{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default"})
	if !ok {
		t.Fatal("no debian:bookworm:amd64:default")
	}
	if p.OS != "Debian" || p.ReleaseTitle != "bookworm" ||
		!reflect.DeepEqual(p.Aliases, []string{"debian/bookworm/default", "debian/12/default", "debian/bookworm", "debian/12"}) {
		t.Errorf("product %+v", p)
	}
	var ids []string
	for _, b := range p.Builds {
		ids = append(ids, b.ID)
	}
	if want := []string{"20261120_05:24", "20261119_05:24", "20261118_05:24"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("builds %q, want %q", ids, want)
	}
	if got := s.StreamsBuilds(newest); !reflect.DeepEqual(got, ids) {
		t.Errorf("StreamsBuilds %q", got)
	}

	// The index names only the newest build; every build's directory is
	// served in full, and the streams' sums are those of its files and of
	// its SHA256SUMS.
	index, _ := s.Get(IndexPaths()[0])
	if strings.Contains(string(index), "20261119") || !strings.Contains(string(index), IndexLine(newest)) {
		t.Errorf("index:\n%s", index)
	}
	c := client(t, s.CAFile)
	for i, img := range []Image{newest, older, oldest} {
		b := p.Builds[i]
		dir := ImageDir(img)
		if b.Dir != dir || p.Entry(b).File("meta.tar.xz") != dir+"meta.tar.xz" {
			t.Errorf("build %s: dir %q", b.ID, b.Dir)
		}
		for _, name := range []string{"rootfs.tar.xz", "rootfs.tar.xz.asc", "meta.tar.xz", "meta.tar.xz.asc", "SHA256SUMS", "SHA256SUMS.asc"} {
			if r := get(t, c, s.URL+dir+name); r.status != 200 {
				t.Errorf("%s%s: %d", dir, name, r.status)
			}
		}
		rootfs, _ := s.Get(dir + "rootfs.tar.xz")
		sum := fmt.Sprintf("%x", sha256.Sum256(rootfs))
		if b.Rootfs.SHA256 != sum || b.Rootfs.Size != int64(len(rootfs)) {
			t.Errorf("build %s: rootfs %+v, served %d bytes %s", b.ID, b.Rootfs, len(rootfs), sum)
		}
		sums, _ := s.Get(dir + "SHA256SUMS")
		if !strings.Contains(string(sums), sum+"  rootfs.tar.xz\n") {
			t.Errorf("SHA256SUMS of %s:\n%s", b.ID, sums)
		}
		sig, _ := s.Get(dir + "SHA256SUMS.asc")
		if err := verify(t, s.KeyFile, sums, sig); err != nil {
			t.Errorf("SHA256SUMS.asc of %s: %v", b.ID, err)
		}
		// Incus items: listed, served with their sums, and ignored by LXC.
		wantIgnored := 4
		if i == 2 {
			wantIgnored = 3 // the oldest has no delta
		}
		if b.Ignored != wantIgnored {
			t.Errorf("build %s: %d items ignored, want %d", b.ID, b.Ignored, wantIgnored)
		}
		for _, name := range []string{"incus.tar.xz", "lxd.tar.xz", "rootfs.squashfs"} {
			r := get(t, c, s.URL+dir+name)
			if r.status != 200 || !bytes.Equal(r.body, IncusItem(img, name)) {
				t.Errorf("%s%s: %d %q", dir, name, r.status, r.body)
			}
			images, _ := s.Get(StreamsImagesPath)
			if !strings.Contains(string(images), fmt.Sprintf("%x", sha256.Sum256(r.body))) {
				t.Errorf("images.json has no sum of %s%s", dir, name)
			}
		}
	}
	images, _ := s.Get(StreamsImagesPath)
	for _, want := range []string{`"delta_base":"20261119_05:24"`, `"ftype":"squashfs.vcdiff"`, `"combined_squashfs_sha256":`,
		`"path":"images/debian/bookworm/amd64/default/20261120_05:24/rootfs.20261119_05:24.vcdiff"`} {
		if !strings.Contains(string(images), want) {
			t.Errorf("images.json has no %s", want)
		}
	}

	// Listing and alias resolution work on what the server publishes.
	q, how, err := st.ResolveRelease(compat.Query{Dist: "debian", Release: "12", Arch: "amd64", Variant: "default"})
	if err != nil || how == nil || q.Release != "bookworm" || how.Alias != "debian/12" {
		t.Errorf("ResolveRelease: %+v %+v %v", q, how, err)
	}
	fs, err := compat.ParseFilters([]string{"debian/12", "build=20261119_.*"})
	if err != nil {
		t.Fatal(err)
	}
	if rows := compat.SelectRows(st.Rows(), fs, true); len(rows) != 1 || rows[0].Path != ImageDir(older) {
		t.Errorf("rows %+v", rows)
	}
}

func TestStreamsSignatures(t *testing.T) {
	s := newTestServer(t)
	if err := s.EnableStreams(StreamsOptions{}); err != nil {
		t.Fatal(err)
	}
	ring := keyRing(t, s)
	c := client(t, s.CAFile)
	for _, p := range []string{StreamsIndexPath, StreamsImagesPath} {
		data := get(t, c, s.URL+p).body
		sig := get(t, c, s.URL+p+".gpg")
		if sig.status != 200 || !bytes.HasPrefix(sig.body, []byte("-----BEGIN PGP SIGNATURE-----")) {
			t.Fatalf("%s.gpg: %d %.40q", p, sig.status, sig.body)
		}
		if _, err := openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(data), bytes.NewReader(sig.body), nil); err != nil {
			t.Errorf("%s.gpg: %v", p, err)
		}
	}

	// Binary signatures, as an option.
	if err := s.EnableStreams(StreamsOptions{BinarySignatures: true}); err != nil {
		t.Fatal(err)
	}
	data, _ := s.Get(StreamsImagesPath)
	sig, _ := s.Get(StreamsImagesPath + ".gpg")
	if bytes.HasPrefix(sig, []byte("-----")) {
		t.Fatalf("armored: %.40q", sig)
	}
	if _, err := openpgp.CheckDetachedSignature(ring, bytes.NewReader(data), bytes.NewReader(sig), nil); err != nil {
		t.Errorf("binary signature: %v", err)
	}

	// Tampered with, the old signature no longer verifies; signed again,
	// the tampered file does.
	sigBefore, _ := s.Get(StreamsImagesPath + ".gpg")
	s.TamperStreams(StreamsImagesPath, func(b []byte) []byte { return bytes.Replace(b, []byte(`"Debian"`), []byte(`"Evil"`), 1) }, false)
	data, _ = s.Get(StreamsImagesPath)
	sig, _ = s.Get(StreamsImagesPath + ".gpg")
	if !bytes.Contains(data, []byte(`"Evil"`)) || !bytes.Equal(sig, sigBefore) {
		t.Fatal("TamperStreams did not tamper, or changed the signature")
	}
	if _, err := openpgp.CheckDetachedSignature(ring, bytes.NewReader(data), bytes.NewReader(sig), nil); err == nil {
		t.Error("the signature of the old images.json verifies the tampered one")
	}
	if _, err := compat.ParseStreams(data); err != nil {
		t.Errorf("tampered images.json no longer parses: %v", err)
	}
	s.TamperStreams(StreamsImagesPath, func(b []byte) []byte { return b }, true)
	sig, _ = s.Get(StreamsImagesPath + ".gpg")
	if _, err := openpgp.CheckDetachedSignature(ring, bytes.NewReader(data), bytes.NewReader(sig), nil); err != nil {
		t.Errorf("signed again: %v", err)
	}

	// Signed by another key.
	other, err := NewKey("other")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnableStreams(StreamsOptions{SigningKey: other}); err != nil {
		t.Fatal(err)
	}
	data, _ = s.Get(StreamsIndexPath)
	sig, _ = s.Get(StreamsIndexPath + ".gpg")
	if _, err := openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(data), bytes.NewReader(sig), nil); err == nil {
		t.Error("a signature by another key verifies with the server's")
	}
	if _, err := openpgp.CheckArmoredDetachedSignature(openpgp.EntityList{other}, bytes.NewReader(data), bytes.NewReader(sig), nil); err != nil {
		t.Error(err)
	}

	// Unsigned: no .gpg at all.
	if err := s.EnableStreams(StreamsOptions{Unsigned: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{StreamsIndexPath, StreamsImagesPath} {
		if r := get(t, c, s.URL+p+".gpg"); r.status != 404 {
			t.Errorf("%s.gpg: %d when unsigned", p, r.status)
		}
		if r := get(t, c, s.URL+p); r.status != 200 {
			t.Errorf("%s: %d when unsigned", p, r.status)
		}
	}
}

func TestStreamsRemoveAndRefresh(t *testing.T) {
	img := DefaultImage()
	older := NewImage("debian", "bookworm", "amd64", "default", "20261119_05:24")
	s := newTestServer(t, img)
	if err := s.AddRetainedBuild(older); err != nil {
		t.Fatal(err)
	}
	if got := s.StreamsBuilds(img); !reflect.DeepEqual(got, []string{"20261120_05:24", "20261119_05:24"}) {
		t.Fatalf("builds %q", got)
	}
	// A build removed from the server is gone from the streams; its files
	// answer 404.
	if err := s.RemoveBuild(older); err != nil {
		t.Fatal(err)
	}
	c := client(t, s.CAFile)
	for _, name := range []string{"rootfs.tar.xz", "meta.tar.xz", "SHA256SUMS", "SHA256SUMS.asc", "incus.tar.xz"} {
		if r := get(t, c, s.URL+ImageDir(older)+name); r.status != 404 {
			t.Errorf("%s of a removed build: %d", name, r.status)
		}
	}
	_, st := getStreams(t, s)
	if p := st.Products[0]; len(p.Builds) != 1 || p.Builds[0].ID != img.Build {
		t.Errorf("builds after removal: %+v", p.Builds)
	}
	// Removing the build the index names leaves the index as it was.
	if err := s.RemoveBuild(img); err != nil {
		t.Fatal(err)
	}
	index, _ := s.Get(IndexPaths()[0])
	if string(index) != IndexLine(img) {
		t.Errorf("index %q", index)
	}
	if _, st := getStreams(t, s); len(st.Products) != 0 {
		t.Errorf("products after removing every build: %+v", st.Products)
	}

	// A rootfs replaced after the streams were written keeps its old sum
	// there, until RefreshStreams.
	s2 := newTestServer(t, img)
	if err := s2.EnableStreams(StreamsOptions{NoIncusItems: true}); err != nil {
		t.Fatal(err)
	}
	_, st = getStreams(t, s2)
	before := st.Products[0].Builds[0].Rootfs.SHA256
	if st.Products[0].Builds[0].Ignored != 0 {
		t.Errorf("NoIncusItems: %d items ignored", st.Products[0].Builds[0].Ignored)
	}
	changed := img
	changed.Rootfs = append(DefaultRootfs(), File{Name: "./etc/new", Body: "x\n", Mode: 0o644})
	if err := s2.SetRootfs(changed); err != nil {
		t.Fatal(err)
	}
	if _, st = getStreams(t, s2); st.Products[0].Builds[0].Rootfs.SHA256 != before {
		t.Error("the streams followed a changed rootfs without RefreshStreams")
	}
	if err := s2.RefreshStreams(); err != nil {
		t.Fatal(err)
	}
	rootfs, _ := s2.Get(ImageDir(img) + "rootfs.tar.xz")
	if _, st = getStreams(t, s2); st.Products[0].Builds[0].Rootfs.SHA256 != fmt.Sprintf("%x", sha256.Sum256(rootfs)) {
		t.Error("RefreshStreams did not take the new rootfs")
	}
}

func TestStreamsAliases(t *testing.T) {
	img := DefaultImage()
	cloud := NewImage("debian", "bookworm", "amd64", "cloud", "20261120_05:24")
	s := newTestServer(t, img, cloud)
	opts := StreamsOptions{
		ReleaseAliases: map[string][]string{"debian/bookworm": {"12", "stable"}},
		ReleaseTitles:  map[string]string{"debian/bookworm": "12 (bookworm)"},
		Aliases:        map[string]string{ProductKey(cloud): "debian/next/cloud, x"},
	}
	if err := s.EnableStreams(opts); err != nil {
		t.Fatal(err)
	}
	_, st := getStreams(t, s)
	def, _ := st.Product(compat.Query{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default"})
	cl, _ := st.Product(compat.Query{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "cloud"})
	if want := []string{"debian/bookworm/default", "debian/12/default", "debian/stable/default", "debian/bookworm", "debian/12", "debian/stable"}; !reflect.DeepEqual(def.Aliases, want) {
		t.Errorf("aliases %q, want %q", def.Aliases, want)
	}
	if def.ReleaseTitle != "12 (bookworm)" {
		t.Errorf("release title %q", def.ReleaseTitle)
	}
	if want := []string{"debian/next/cloud", "x"}; !reflect.DeepEqual(cl.Aliases, want) {
		t.Errorf("aliases %q, want %q", cl.Aliases, want)
	}
	if q, how, err := st.ResolveRelease(compat.Query{Dist: "debian", Release: "stable"}); err != nil || how == nil || q.Release != "bookworm" {
		t.Errorf("stable: %+v %+v %v", q, how, err)
	}
}

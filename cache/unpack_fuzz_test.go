package cache

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// escapeMarker is where the seed corpus's hostile archives aim, outside any
// test directory; the fuzz target fails if it ever appears.
const escapeMarker = "/lxc-download-fuzz-escape"

// FuzzExtract feeds raw bytes to Extract as a tarball: it must never panic
// and never write outside the rootfs (the sandbox checks a canary directory
// beside it, and escapeMarker). Seeds: testdata/fuzz/FuzzExtract, written
// by TestWriteFuzzCorpus.
func FuzzExtract(f *testing.F) {
	if _, err := os.Lstat(escapeMarker); err == nil {
		f.Fatalf("%s exists before fuzzing: remove it", escapeMarker)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		defer chmodTree(s.rootfs)
		o := UnpackOptions{
			Excludes: []string{"./dev/*", "excluded"},
			Limits:   Limits{MaxEntries: 100, MaxTotalSize: 16 << 20, MaxFileSize: 4 << 20},
		}
		// Errors are expected; only escapes and panics are failures.
		_ = s.extract(fixTarChecksums(data), o)
		if _, err := os.Lstat(escapeMarker); err == nil {
			os.RemoveAll(escapeMarker)
			t.Fatalf("archive wrote %s", escapeMarker)
		}
	})
}

// fixTarChecksums returns data with the checksum of every tar header it
// can find set right, so that mutated headers reach the extractor instead
// of all failing archive/tar's checksum test.
func fixTarChecksums(data []byte) []byte {
	data = bytes.Clone(data)
	for off := 0; off+512 <= len(data); {
		blk := data[off : off+512]
		if bytes.Count(blk, []byte{0}) == 512 {
			off += 512
			continue
		}
		copy(blk[148:156], "        ")
		sum := 0
		for _, b := range blk {
			sum += int(b)
		}
		copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum&0o777777))
		off += 512
		switch blk[156] {
		case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
			continue // no data, whatever the size says
		}
		var size int64
		if blk[124]&0x80 != 0 {
			for _, b := range blk[125:136] {
				size = size<<8 | int64(b)
			}
		} else {
			for _, b := range blk[124:136] {
				if b >= '0' && b <= '7' {
					size = size*8 + int64(b-'0')
				}
			}
		}
		if size < 0 || size > int64(len(data)) {
			break
		}
		off += int((size + 511) &^ 511)
	}
	return data
}

// TestWriteFuzzCorpus writes the seed corpus of FuzzExtract when
// LXC_DOWNLOAD_WRITE_CORPUS is set; otherwise it checks the corpus is there.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzExtract")
	if os.Getenv("LXC_DOWNLOAD_WRITE_CORPUS") == "" {
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) < 10 {
			t.Fatalf("seed corpus missing (%v): run with LXC_DOWNLOAD_WRITE_CORPUS=1", err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fuzzSeeds are crafted archives covering every path of the extractor.
func fuzzSeeds(t *testing.T) map[string][]byte {
	out := escapeMarker
	longName := strings.Repeat("d/", 60) + strings.Repeat("n", 150)
	seeds := map[string][]byte{
		"rootfs": newTar(t).dir("./", 0o755).dir("./etc/", 0o755).file("./etc/hostname", 0o644, "LXC_NAME\n").
			symlink("./bin", "usr/bin").dir("./usr/", 0o755).dir("./usr/bin/", 0o755).
			add(&tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/su", Mode: 0o4755, Uid: 0, Gid: 0}, "su").
			hardlink("./usr/bin/su2", "./usr/bin/su").
			add(&tar.Header{Typeflag: tar.TypeDir, Name: "./tmp/", Mode: 0o1777}, "").
			add(&tar.Header{Typeflag: tar.TypeFifo, Name: "./run-fifo", Mode: 0o600}, "").
			add(&tar.Header{Typeflag: tar.TypeDir, Name: "./ro/", Mode: 0o555}, "").file("./ro/f", 0o444, "ro").bytes(),
		"devices": newTar(t).dir("dev", 0o755).
			add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, "").
			add(&tar.Header{Typeflag: tar.TypeBlock, Name: "loop", Mode: 0o660, Devmajor: 7}, "").bytes(),
		"dotdot":          newTar(t).file("../escape", 0o644, "x").bytes(),
		"dotdot-deep":     newTar(t).dir("a", 0o755).file("a/../../escape", 0o644, "x").bytes(),
		"absolute":        newTar(t).file(out+"/file", 0o644, "x").bytes(),
		"symlink-abs":     newTar(t).symlink("etc", out).file("etc/passwd", 0o644, "x").bytes(),
		"symlink-abs-dir": newTar(t).symlink("etc", out).dir("etc/sub", 0o755).file("etc/sub/f", 0o644, "x").bytes(),
		"symlink-root":    newTar(t).symlink("r", "/").file("r"+out, 0o644, "x").bytes(),
		"symlink-rel":     newTar(t).symlink("up", "../../../../../../../../..").file("up"+out, 0o644, "x").bytes(),
		"symlink-chain":   newTar(t).symlink("a", "b").symlink("b", "/").file("a"+out, 0o644, "x").bytes(),
		"symlink-loop":    newTar(t).symlink("a", "b").symlink("b", "a").file("a/x", 0o644, "x").bytes(),
		"symlink-final":   newTar(t).symlink("f", out).file("f", 0o644, "x").bytes(),
		"dir-over-link":   newTar(t).symlink("d", out).dir("d", 0o755).file("d/f", 0o644, "x").bytes(),
		"hardlink-out":    newTar(t).hardlink("h", out).bytes(),
		"hardlink-dotdot": newTar(t).hardlink("h", "../x").bytes(),
		"hardlink-via":    newTar(t).symlink("s", "/etc").hardlink("h", "s/passwd").bytes(),
		"hardlink-later":  newTar(t).hardlink("h", "later").file("later", 0o644, "x").bytes(),
		"duplicates": newTar(t).file("f", 0o644, "1").file("f", 0o600, "2").dir("f", 0o755).
			file("g", 0o644, "").symlink("g", "f").hardlink("g", "f").dir("d", 0o700).dir("d", 0o755).bytes(),
		"excluded":  newTar(t).dir("dev", 0o755).file("dev/console", 0o600, "c").dir("excluded", 0o755).file("excluded/f", 0o644, "x").bytes(),
		"pax-xattr": newTar(t).add(&tar.Header{Typeflag: tar.TypeReg, Name: longName, Mode: 0o644, PAXRecords: map[string]string{"SCHILY.xattr.user.a": "1", "SCHILY.xattr.trusted.b": "2", "SCHILY.xattr.bogus": "3", "SCHILY.xattr.security.capability": "\x00\x00\x00\x02"}}, "long").bytes(),
		"gnu-long": newTar(t).add(&tar.Header{Typeflag: tar.TypeReg, Name: longName, Format: tar.FormatGNU, Mode: 0o644}, "gnu").
			add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: longName, Format: tar.FormatGNU}, "").bytes(),
		"ustar": newTar(t).add(&tar.Header{Typeflag: tar.TypeReg, Name: "u", Format: tar.FormatUSTAR, Mode: 0o640, Uid: 5, Gid: 6}, "ustar").bytes(),
		"many":  manyEntries(t, 110),
	}
	var huge bytes.Buffer
	w := tar.NewWriter(&huge)
	w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Size: 1 << 40, Format: tar.FormatPAX})
	w.Flush()
	seeds["huge"] = huge.Bytes()
	for _, name := range []string{"sparse-gnu.tar", "sparse-pax.tar"} {
		data, err := os.ReadFile(filepath.Join("testdata", "unpack", name))
		if err != nil {
			t.Fatal(err)
		}
		seeds[strings.TrimSuffix(name, ".tar")] = data
	}
	return seeds
}

func manyEntries(t *testing.T, n int) []byte {
	tb := newTar(t)
	for i := range n {
		tb.file(fmt.Sprintf("f%d", i), 0o644, "")
	}
	return tb.bytes()
}

package cache

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func gzipCompress(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstdCompress(t testing.TB, data []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := zstd.NewWriter(&b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// compressed returns sampleTar in every supported compression.
func compressed(t testing.TB) map[Compression][]byte {
	raw, xzs := sample(t)
	return map[Compression][]byte{
		Uncompressed: raw,
		XZ:           xzs[64<<10],
		Gzip:         gzipCompress(t, raw),
		Zstd:         zstdCompress(t, raw),
	}
}

func TestDetectCompression(t *testing.T) {
	raw, _ := sample(t)
	v7 := bytes.Clone(raw[:512])
	copy(v7[257:265], make([]byte, 8)) // no magic, no version
	// The checksum no longer matches: recompute it as a V7 tar would.
	sum := 0
	for i, b := range v7 {
		if i >= 148 && i < 156 {
			b = ' '
		}
		sum += int(b)
	}
	copy(v7[148:156], []byte(strings.Repeat("0", 6-len(octal(sum)))+octal(sum)+"\x00 "))
	badSum := bytes.Clone(v7)
	badSum[0] ^= 1
	for _, c := range []struct {
		name string
		head []byte
		want Compression
		err  string
	}{
		{"xz", []byte("\xfd7zXZ\x00\x00\x04"), XZ, ""},
		{"gzip", []byte{0x1f, 0x8b, 8, 0}, Gzip, ""},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04}, Zstd, ""},
		{"ustar", raw[:512], Uncompressed, ""},
		{"v7 tar", v7, Uncompressed, ""},
		{"v7 tar, bad checksum", badSum, "", "not a tarball"},
		{"zero block", make([]byte, 512), "", "not a tarball"},
		{"short", raw[:300], "", "not a tarball"},
		{"empty", nil, "", "empty"},
		{"text", []byte(strings.Repeat("hello world\n", 100)), "", "not a tarball"},
		{"bzip2", []byte("BZh91AY&SY"), "", "bzip2-compressed archives are not supported"},
		{"lzip", []byte("LZIP\x01"), "", "lzip"},
	} {
		got, err := DetectCompression(c.head)
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: got %q, %v; want %q, error with %q", c.name, got, err, c.want, c.err)
		}
	}
}

// TestUnpackArchive unpacks the same tar in every compression and gets the
// same tree, with progress reported up to the file's size.
func TestUnpackArchive(t *testing.T) {
	var want string
	for _, c := range []Compression{Uncompressed, XZ, Gzip, Zstd} {
		data := compressed(t)[c]
		t.Run(string(c), func(t *testing.T) {
			s := newSandbox(t)
			f, err := os.Open(writeTemp(t, data))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var mu sync.Mutex
			var last, total int64
			o := UnpackOptions{Progress: func(done, size int64) {
				mu.Lock()
				defer mu.Unlock()
				last, total = done, size
			}}
			if err := UnpackArchive(context.Background(), f, s.rootfs, o); err != nil {
				t.Fatal(err)
			}
			s.checkOutside()
			if last != int64(len(data)) || total != int64(len(data)) {
				t.Errorf("progress ended at %d of %d, want %d of %d", last, total, len(data), len(data))
			}
			got := relTree(t, s.rootfs)
			if want == "" {
				want = got
			} else if got != want {
				t.Errorf("tree differs from the uncompressed tar's:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestRootfsStageUnpackArchive: in every compression, the stage keeps the
// archive's root entry for Install, so it stays private while it is filled
// and the target gets the entry's mode.
func TestRootfsStageUnpackArchive(t *testing.T) {
	raw := stageTarball(t)
	for c, data := range map[Compression][]byte{Uncompressed: raw, XZ: xzCompress(t, raw, 0), Gzip: gzipCompress(t, raw), Zstd: zstdCompress(t, raw)} {
		t.Run(string(c), func(t *testing.T) {
			target := newTarget(t)
			s, err := NewRootfsStage(target)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Discard()
			f, err := os.Open(writeTemp(t, data))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := s.UnpackArchive(t.Context(), f, UnpackOptions{}); err != nil {
				t.Fatal(err)
			}
			checkPrivate(t, s.Dir)
			if err := s.Install(); err != nil {
				t.Fatal(err)
			}
			if st := lstat(t, target); st.Mode&0o7777 != 0o751 {
				t.Errorf("target mode %o, want the root entry's 0751", st.Mode&0o7777)
			}
			if b := readFile(t, filepath.Join(target, "usr/bin/su")); b != "#!/bin/sh\n" {
				t.Errorf("usr/bin/su = %q", b)
			}
		})
	}
}

// relTree lists the paths, modes and contents under root.
func relTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b.WriteString(rel + " " + fi.Mode().String())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.WriteString(" " + string(data))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestUnpackArchiveErrors(t *testing.T) {
	all := compressed(t)
	notTar := bytes.Repeat([]byte("not a tarball\n"), 1000)
	// A member whose CRC-32 (the 8 bytes before its size) is wrong: only
	// reading past the end of the tar stream finds it.
	badCRC := bytes.Clone(all[Gzip])
	badCRC[len(badCRC)-5] ^= 0xff
	// zstd's frame checksum is its last 4 bytes.
	badZstdSum := bytes.Clone(all[Zstd])
	badZstdSum[len(badZstdSum)-1] ^= 0xff
	big := zstdCompress(t, all[Uncompressed], zstd.WithWindowSize(256<<20), zstd.WithSingleSegment(false))
	for _, c := range []struct {
		name  string
		data  []byte
		parts []string
	}{
		{"gzip truncated", all[Gzip][:len(all[Gzip])/2], []string{"rootfs", "gzip", "truncated"}},
		{"gzip truncated trailer", all[Gzip][:len(all[Gzip])-3], []string{"rootfs", "gzip"}},
		{"gzip corrupt", flipMiddle(all[Gzip]), []string{"rootfs", "gzip", "damaged"}},
		{"gzip bad crc", badCRC, []string{"rootfs", "after the end of the archive", "gzip", "checksum"}},
		{"gzip trailing garbage", append(bytes.Clone(all[Gzip]), "garbage"...), []string{"rootfs", "gzip"}},
		{"gzip not tar", gzipCompress(t, notTar), []string{"rootfs", "tar"}},
		{"zstd truncated", all[Zstd][:len(all[Zstd])/2], []string{"rootfs", "zstd"}},
		{"zstd corrupt", flipMiddle(all[Zstd]), []string{"rootfs", "zstd", "damaged"}},
		{"zstd bad checksum", badZstdSum, []string{"rootfs", "zstd", "CRC"}},
		{"zstd window too large", big, []string{"rootfs", "zstd", "window"}},
		{"zstd not tar", zstdCompress(t, notTar), []string{"rootfs", "tar"}},
		{"xz corrupt", flipMiddle(all[XZ]), []string{"rootfs", "xz"}},
		// Cut inside an entry; cut between entries, an uncompressed tar
		// cannot be told from a whole one (GNU tar accepts it too).
		{"tar truncated", all[Uncompressed][:len(all[Uncompressed])/2+700], []string{"rootfs", "truncated"}},
		{"not a tarball", notTar, []string{"rootfs", "not a tarball"}},
		{"empty", nil, []string{"rootfs", "empty"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSandbox(t)
			f, err := os.Open(writeTemp(t, c.data))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = UnpackArchive(context.Background(), f, s.rootfs, UnpackOptions{})
			s.checkOutside()
			wantErr(t, err, c.parts...)
			t.Log(err)
		})
	}
}

func flipMiddle(data []byte) []byte {
	out := bytes.Clone(data)
	out[len(out)/2] ^= 0x55
	return out
}

// TestUnpackArchiveSafety: the safety rules of Extract hold whatever the
// compression.
func TestUnpackArchiveSafety(t *testing.T) {
	evil := newTar(t).dir("./", 0o755).file("./ok", 0o644, "fine\n").file("../escape", 0o644, "out\n").bytes()
	for c, data := range map[Compression][]byte{Uncompressed: evil, Gzip: gzipCompress(t, evil), Zstd: zstdCompress(t, evil)} {
		t.Run(string(c), func(t *testing.T) {
			s := newSandbox(t)
			f, err := os.Open(writeTemp(t, data))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = UnpackArchive(context.Background(), f, s.rootfs, UnpackOptions{})
			s.checkOutside()
			wantErr(t, err, "../escape", "..")
		})
	}
}

// TestDecompressGNU reads what the real gzip and zstd tools write,
// several gzip members concatenated included (as `cat a.gz b.gz` makes).
func TestDecompressGNU(t *testing.T) {
	raw, _ := sample(t)
	for _, c := range []struct {
		tool string
		args []string
		want Compression
	}{
		{"gzip", []string{"-c", "-9"}, Gzip},
		{"zstd", []string{"-q", "-c", "-19"}, Zstd},
		{"xz", []string{"-c", "-T2", "--block-size=65536"}, XZ},
	} {
		t.Run(c.tool, func(t *testing.T) {
			if _, err := exec.LookPath(c.tool); err != nil {
				t.Skipf("needs %s", c.tool)
			}
			half := len(raw) / 2
			var data []byte
			for _, part := range [][]byte{raw[:half], raw[half:]} {
				cmd := exec.Command(c.tool, c.args...)
				cmd.Stdin = bytes.NewReader(part)
				out, err := cmd.Output()
				if err != nil {
					t.Fatal(err)
				}
				data = append(data, out...)
			}
			dec, got, err := Decompress(bytes.NewReader(data), UnpackOptions{})
			if err != nil || got != c.want {
				t.Fatalf("Decompress: %q, %v", got, err)
			}
			defer dec.Close()
			out, err := io.ReadAll(dec)
			if err != nil || !bytes.Equal(out, raw) {
				t.Fatalf("read %d bytes, %v; want the %d bytes compressed", len(out), err, len(raw))
			}
			tr := tar.NewReader(bytes.NewReader(out))
			if _, err := tr.Next(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// FuzzDetectCompression: any first bytes are told apart or refused
// without a panic, and a format is only found where its magic is.
func FuzzDetectCompression(f *testing.F) {
	raw, _ := sample(f)
	f.Add(raw[:512])
	f.Add([]byte("\xfd7zXZ\x00"))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte("BZh9"))
	f.Fuzz(func(t *testing.T, head []byte) {
		c, err := DetectCompression(head)
		if (err == nil) == (c == "") {
			t.Fatalf("%q, %v", c, err)
		}
		if c == Uncompressed {
			if _, err := tar.NewReader(bytes.NewReader(append(bytes.Clone(head), make([]byte, 1024)...))).Next(); err != nil && !bytes.Equal(head[257:262], []byte("ustar")) {
				t.Errorf("taken for a tar header, but archive/tar says %v", err)
			}
		}
	})
}

func BenchmarkUnpackArchive(b *testing.B) {
	all := compressed(b)
	for _, c := range []Compression{Uncompressed, XZ, Gzip, Zstd} {
		b.Run(string(c), func(b *testing.B) {
			p := writeTemp(b, all[c])
			b.SetBytes(int64(len(all[Uncompressed])))
			for b.Loop() {
				b.StopTimer()
				s := newSandbox(b)
				f, err := os.Open(p)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := UnpackArchive(context.Background(), f, s.rootfs, UnpackOptions{}); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}

package compat

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

// tarEntry is one entry of a tarball made for a test.
type tarEntry struct {
	name string
	typ  byte // tar.TypeReg when zero
	body string
	link string
	pax  map[string]string
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link, PAXRecords: e.pax, ModTime: time.Unix(1700000000, 0)}
		if h.Typeflag == tar.TypeXGlobalHeader {
			h = &tar.Header{Typeflag: e.typ, PAXRecords: e.pax}
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// xzCompress compresses data with cfg; with a 64 KiB dictionary unless
// cfg says otherwise, as the encoder's default 8 MiB takes it a tenth of a
// second to set up.
func xzCompress(t testing.TB, data []byte, cfg xz.WriterConfig) []byte {
	t.Helper()
	if cfg.DictCap == 0 {
		cfg.DictCap = 64 << 10
	}
	var b bytes.Buffer
	w, err := cfg.NewWriter(&b)
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

// distrobuilderMeta is a meta tarball laid out as distrobuilder packs it:
// tar -C metadata --sort=name with the file names, no directory entry.
func distrobuilderMeta(t testing.TB) []byte {
	return xzCompress(t, makeTar(t,
		tarEntry{name: "config", body: "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\nlxc.arch = linux64\n"},
		tarEntry{name: "config-user", body: "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\nlxc.include = LXC_TEMPLATE_CONFIG/debian.userns.conf\nlxc.arch = linux64\n"},
		tarEntry{name: "config-user.1", body: "lxc.include = LXC_TEMPLATE_CONFIG/debian.userns.conf\n"},
		tarEntry{name: "config.1", body: "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\n"},
		tarEntry{name: "create-message", body: "You just created a Debian bookworm x86_64 (20261120_05:24) container.\n"},
		tarEntry{name: "excludes-user", body: "./dev/console\n./dev/null\n"},
		tarEntry{name: "expiry", body: "1766000000\n"},
		tarEntry{name: "templates", body: "/etc/hostname\n/etc/hosts\n"},
	), xz.WriterConfig{})
}

func TestReadMetaTarballShapes(t *testing.T) {
	want := MetaFiles{"config": []byte("C\n"), "expiry": []byte("1766000000\n"), "templates": []byte("/etc/hostname\n")}
	files := func(prefix string) []tarEntry {
		return []tarEntry{
			{name: prefix + "config", body: "C\n"},
			{name: prefix + "expiry", body: "1766000000\n"},
			{name: prefix + "templates", body: "/etc/hostname\n"},
		}
	}
	for _, c := range []struct {
		name    string
		entries []tarEntry
	}{
		{"bare names (distrobuilder)", files("")},
		{"./ names", files("./")},
		{"./ directory first", append([]tarEntry{{name: "./", typ: tar.TypeDir}}, files("./")...)},
		{". directory", append([]tarEntry{{name: ".", typ: tar.TypeDir}}, files("")...)},
		{"pax global header", append([]tarEntry{{name: "pax_global_header", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "x"}}}, files("")...)},
		{"xattrs (tar --xattrs)", []tarEntry{
			{name: "config", body: "C\n", pax: map[string]string{"SCHILY.xattr.user.x": "1"}},
			{name: "expiry", body: "1766000000\n"},
			{name: "templates", body: "/etc/hostname\n"},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadMetaTarball(bytes.NewReader(xzCompress(t, makeTar(t, c.entries...), xz.WriterConfig{})))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}

	got, err := ReadMetaTarball(bytes.NewReader(distrobuilderMeta(t)))
	if err != nil {
		t.Fatal(err)
	}
	if names := slices.Sorted(maps.Keys(got)); !reflect.DeepEqual(names, []string{"config", "config-user", "config-user.1", "config.1", "create-message", "excludes-user", "expiry", "templates"}) {
		t.Errorf("names %q", names)
	}

	// An empty file, an empty tarball.
	got, err = ReadMetaTarball(bytes.NewReader(xzCompress(t, makeTar(t, tarEntry{name: "fstab"}), xz.WriterConfig{})))
	if err != nil || got["fstab"] == nil || len(got["fstab"]) != 0 || len(got) != 1 {
		t.Errorf("empty file: %q, %v", got, err)
	}
	got, err = ReadMetaTarball(bytes.NewReader(xzCompress(t, makeTar(t), xz.WriterConfig{})))
	if err != nil || len(got) != 0 {
		t.Errorf("empty tarball: %q, %v", got, err)
	}
}

// TestReadMetaTarballXZLayouts reads xz data in the layouts encoders make:
// several blocks, several streams with padding, a CRC32 check.
func TestReadMetaTarballXZLayouts(t *testing.T) {
	tarball := makeTar(t, tarEntry{name: "config", body: strings.Repeat("lxc.arch = linux64\n", 400)}, tarEntry{name: "expiry", body: "1\n"})
	half := len(tarball) / 2
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"many blocks", xzCompress(t, tarball, xz.WriterConfig{BlockSize: 1000})},
		{"CRC32 check", xzCompress(t, tarball, xz.WriterConfig{CheckSum: xz.CRC32})},
		{"8 MiB dictionary (xz -6)", xzCompress(t, tarball, xz.WriterConfig{DictCap: 8 << 20})},
		{"no check", xzCompress(t, tarball, xz.WriterConfig{NoCheckSum: true})},
		{"two streams and padding", slices.Concat(
			xzCompress(t, tarball[:half], xz.WriterConfig{}), make([]byte, 8),
			xzCompress(t, tarball[half:], xz.WriterConfig{BlockSize: 700}), make([]byte, 4))},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadMetaTarball(bytes.NewReader(c.data))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || len(got["config"]) != 400*19 {
				t.Errorf("got %d files, config %d bytes", len(got), len(got["config"]))
			}
		})
	}
}

// TestReadMetaTarballTools reads meta tarballs made by GNU tar and xz the
// way image builders run them, when those tools are installed.
func TestReadMetaTarballTools(t *testing.T) {
	for _, tool := range []string{"tar", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if v, err := exec.Command("tar", "--version").Output(); err != nil || !strings.Contains(string(v), "GNU tar") {
		t.Skip("tar is not GNU tar, which image builders use (--sort=name, --xattrs)")
	}
	dir := t.TempDir()
	meta := filepath.Join(dir, "metadata")
	if err := os.Mkdir(meta, 0o755); err != nil {
		t.Fatal(err)
	}
	want := MetaFiles{
		"config":         []byte("lxc.arch = linux64\n"),
		"config-user":    []byte("lxc.arch = linux64\nlxc.include = userns\n"),
		"create-message": []byte("Hello\n"),
		"excludes-user":  []byte("./dev/console\n"),
		"expiry":         []byte("1766000000\n"),
		"templates":      []byte("/etc/hostname\n"),
	}
	for name, data := range want {
		writeFile(t, filepath.Join(meta, name), string(data))
	}
	names := slices.Sorted(maps.Keys(want))
	for _, c := range []struct {
		name, script string
	}{
		{"distrobuilder: tar --xattrs -C DIR --sort=name NAMES | xz", `tar --xattrs -cf - -C "$1" --sort=name ` + strings.Join(names, " ") + ` | xz`},
		{"tar -C DIR . | xz with blocks and threads", `tar -cf - -C "$1" . | xz --block-size=64 -T2 --check=sha256`},
		{"tar -cJf", `tar -cJf - -C "$1" .`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command("sh", "-c", c.script, "sh", meta).Output()
			if err != nil {
				t.Fatalf("%s: %v", c.script, err)
			}
			got, err := ReadMetaTarball(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestReadMetaTarballRefused(t *testing.T) {
	cfg := tarEntry{name: "config", body: "C\n"}
	many := []tarEntry{}
	for i := 0; i <= MaxMetaFiles; i++ {
		many = append(many, tarEntry{name: "f" + strings.Repeat("x", i%200) + string(rune('a'+i%26)) + string(rune('a'+i/26))})
	}
	big := strings.Repeat("x", MaxMetaFileSize)
	for _, c := range []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"subdirectory", []tarEntry{cfg, {name: "templates.d/", typ: tar.TypeDir}}, `meta tarball: "templates.d/" is a directory: only files at the root are allowed`},
		{"./ subdirectory", []tarEntry{{name: "./", typ: tar.TypeDir}, {name: "./etc/", typ: tar.TypeDir}}, `"./etc/" is a directory`},
		{"file in a subdirectory", []tarEntry{cfg, {name: "etc/config", body: "x"}}, `meta tarball: "etc/config" is not a plain file name at the root`},
		{"absolute name", []tarEntry{{name: "/config", body: "x"}}, `"/config" is not a plain file name`},
		{"dotdot", []tarEntry{{name: "../config", body: "x"}}, `"../config" is not a plain file name`},
		{"./dotdot", []tarEntry{{name: "./..", body: "x"}}, `"./.." is not a plain file name`},
		{"././name", []tarEntry{{name: "././config", body: "x"}}, `"././config" is not a plain file name`},
		{"control character", []tarEntry{{name: "config\n", body: "x"}}, `"config\n" is not a plain file name`},
		{"not UTF-8", []tarEntry{{name: "config\xff", body: "x"}}, `is not a plain file name`},
		{"long name", []tarEntry{{name: strings.Repeat("n", 256), body: "x"}}, `is not a plain file name`},
		{"symlink", []tarEntry{{name: "config", typ: tar.TypeSymlink, link: "/etc/shadow"}}, `meta tarball: "config" is a symbolic link: only regular files are allowed`},
		{"hard link", []tarEntry{cfg, {name: "config-user", typ: tar.TypeLink, link: "config"}}, `"config-user" is a hard link`},
		{"character device", []tarEntry{{name: "null", typ: tar.TypeChar}}, `"null" is a character device`},
		{"block device", []tarEntry{{name: "sda", typ: tar.TypeBlock}}, `"sda" is a block device`},
		{"fifo", []tarEntry{{name: "p", typ: tar.TypeFifo}}, `"p" is a fifo`},
		{"other type", []tarEntry{{name: "c", typ: 'Z'}}, `"c" is a tar entry of type 'Z'`},
		{"duplicate", []tarEntry{cfg, {name: "./config", body: "D\n"}}, `meta tarball: "config" is in it twice`},
		{"too many files", many, "meta tarball: more than 256 files"},
		{"file too big", []tarEntry{{name: "config", body: big + "x"}}, `meta tarball: "config" is 1048577 bytes, more than the limit of 1048576`},
		{"files too big together", []tarEntry{{name: "a", body: big}, {name: "b", body: big}, {name: "c", body: big}, {name: "d", body: big}, {name: "e", body: "x"}},
			"meta tarball: its files are more than 4194304 bytes together"},
	} {
		t.Run(c.name, func(t *testing.T) {
			files, err := ReadMetaTarball(bytes.NewReader(xzCompress(t, makeTar(t, c.entries...), xz.WriterConfig{})))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
			if files != nil {
				t.Errorf("files returned with the error: %q", files)
			}
		})
	}
	// At the limits exactly, all is well.
	if files, err := ReadMetaTarball(bytes.NewReader(xzCompress(t, makeTar(t, many[:MaxMetaFiles]...), xz.WriterConfig{}))); err != nil || len(files) != MaxMetaFiles {
		t.Errorf("%d files: %d, %v", MaxMetaFiles, len(files), err)
	}
	if files, err := ReadMetaTarball(bytes.NewReader(xzCompress(t, makeTar(t, tarEntry{name: "a", body: big}, tarEntry{name: "b", body: big}, tarEntry{name: "c", body: big}, tarEntry{name: "d", body: big}), xz.WriterConfig{}))); err != nil || len(files) != 4 {
		t.Errorf("4 files of the most bytes: %d, %v", len(files), err)
	}
}

func TestReadMetaTarballBadStreams(t *testing.T) {
	good := distrobuilderMeta(t)
	tarball := makeTar(t, tarEntry{name: "config", body: "C\n"})
	flip := func(b []byte, i int) []byte {
		b = slices.Clone(b)
		b[i] ^= 0x55
		return b
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "meta tarball: not xz data"},
		{"plain tar", tarball, "meta tarball: not xz data"},
		{"gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, "meta tarball: not xz data"},
		{"xz magic only", good[:6], "meta tarball: xz: file is truncated (6 bytes)"},
		{"truncated in the middle", good[:len(good)/2], "meta tarball: xz: "},
		{"footer cut", good[:len(good)-1], "meta tarball: xz: file size"},
		{"data corrupted", flip(good, len(good)/2), "meta tarball: xz: "},
		{"stream header corrupted", flip(good, 7), "meta tarball: xz: "},
		{"trailing garbage", append(slices.Clone(good), "garbage!"...), "meta tarball: xz: "},
		{"odd padding", append(slices.Clone(good), 0, 0), "meta tarball: xz: "},
		{"only padding after the magic", append(slices.Clone(xzMagic), make([]byte, 30)...), "meta tarball: xz: "},
		{"xz of something that is not tar", xzCompress(t, []byte(strings.Repeat("not a tarball\n", 100)), xz.WriterConfig{}), "meta tarball: archive/tar: invalid tar header"},
		{"tar cut short inside xz", xzCompress(t, makeTar(t, tarEntry{name: "config", body: strings.Repeat("C", 1000)})[:700], xz.WriterConfig{}), "meta tarball: read config: unexpected EOF"},
		{"too much after the tar end", xzCompress(t, append(slices.Clone(tarball), make([]byte, MaxMetaTar)...), xz.WriterConfig{}), "meta tarball: more than 8388608 bytes uncompressed"},
		{"too big compressed", append(slices.Clone(good), make([]byte, MaxMetaCompressed)...), "meta tarball: more than 4194304 bytes compressed"},
		{"index claims too much", withUncompressedSize(t, good, MaxMetaTar+1), "meta tarball: more than 8388608 bytes uncompressed"},
		{"end-of-payload marker in LZMA2", eopm(t), "meta tarball: xz: block 0 at offset 12: corrupt LZMA2 data at offset"},
		{"other filters", bcj(t), "meta tarball: xz: block 0 at offset 12: unsupported filter chain x86 BCJ (ID 0x4) + LZMA2 (ID 0x21)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			files, err := ReadMetaTarball(bytes.NewReader(c.data))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("error %v, want it to start with %q", err, c.want)
			}
			if files != nil {
				t.Errorf("files returned with the error: %q", files)
			}
		})
	}
	// A dictionary larger than the data costs no more than the data:
	// even 4 GiB is fine.
	for _, code := range []byte{28, 29, 40} {
		if _, err := ReadMetaTarball(bytes.NewReader(withDictCode(t, good, code))); err != nil {
			t.Errorf("dictionary code %d: %v", code, err)
		}
	}

	// Every truncation is an error that says xz.
	for n := 0; n < len(good); n++ {
		_, err := ReadMetaTarball(bytes.NewReader(good[:n]))
		if err == nil || !strings.Contains(err.Error(), "xz") {
			t.Fatalf("cut at %d of %d: %v", n, len(good), err)
		}
	}
	// Every flipped byte is an error (all of it is covered by a check or
	// is structure) or, for the few bytes that leave the data valid, the
	// same files.
	want, _ := ReadMetaTarball(bytes.NewReader(good))
	for i := 0; i < len(good); i++ {
		files, err := ReadMetaTarball(bytes.NewReader(flip(good, i)))
		if err == nil && !reflect.DeepEqual(files, want) {
			t.Fatalf("byte %d flipped: no error and different files %q", i, files)
		}
	}
}

// errReader fails like a broken connection after some bytes.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadMetaTarballReadError(t *testing.T) {
	boom := errors.New("connection reset")
	_, err := ReadMetaTarball(&errReader{data: distrobuilderMeta(t)[:100], err: boom})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "meta tarball: read: ") {
		t.Errorf("error %v", err)
	}
}

// withDictCode returns a copy of the single-block xz file data with the
// LZMA2 dictionary code in its block header set to code and the header's
// CRC32 fixed, so only the dictionary limit can refuse it.
func withDictCode(t testing.TB, data []byte, code byte) []byte {
	t.Helper()
	data = slices.Clone(data)
	h := data[12:] // after the stream header
	hdrLen := (int(h[0]) + 1) * 4
	if h[1] != 0 || h[2] != 0x21 || h[3] != 1 { // LZMA2 alone
		t.Fatalf("unexpected block header % x", h[:hdrLen])
	}
	h[4] = code
	crc := crc32.ChecksumIEEE(h[:hdrLen-4])
	h[hdrLen-4], h[hdrLen-3], h[hdrLen-2], h[hdrLen-1] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	return data
}

// withUncompressedSize returns a copy of the single-block xz file data
// (of less than 128 bytes of content) whose index says the block holds
// size bytes, with the index's CRC32 fixed.
func withUncompressedSize(t testing.TB, data []byte, size uint64) []byte {
	t.Helper()
	footer := data[len(data)-12:]
	indexLen := (int(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	index := data[len(data)-12-indexLen : len(data)-12]
	if index[0] != 0 || index[1] != 1 || index[2]&0x80 != 0 || index[3]&0x80 != 0 || index[4]&0x80 != 0 {
		t.Skipf("unexpected index % x", index)
	}
	// indicator, count, unpadded size (1 byte), uncompressed size
	rec := []byte{0, 1, index[2]}
	for v := size; ; v >>= 7 {
		if v < 0x80 {
			rec = append(rec, byte(v))
			break
		}
		rec = append(rec, byte(v)|0x80)
	}
	for len(rec)%4 != 0 {
		rec = append(rec, 0)
	}
	rec = binary.LittleEndian.AppendUint32(rec, crc32.ChecksumIEEE(rec))
	out := slices.Concat(data[:len(data)-12-indexLen], rec, footer)
	f := out[len(out)-12:]
	binary.LittleEndian.PutUint32(f[4:8], uint32(len(rec)/4-1))
	binary.LittleEndian.PutUint32(f[0:4], crc32.ChecksumIEEE(f[4:10]))
	return out
}

// eopm returns an xz file like xz-utils' tests/files/bad-1-lzma2-7.xz:
// its one LZMA2 chunk ends, after all of its declared output, with an
// end-of-payload marker, which xz refuses and ulikunitz/xz takes. The
// chunk's data is what xz --format=lzma writes for input of unknown size.
func eopm(t testing.TB) []byte {
	t.Helper()
	content := makeTar(t, tarEntry{name: "config", body: "C\n"})
	cmd := exec.Command(xzPath(t), "--format=lzma", "--lzma1=preset=6,lc=3,lp=0,pb=2", "-c")
	cmd.Stdin = io.MultiReader(bytes.NewReader(content)) // a pipe: size unknown
	alone, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lz := alone[13:] // after properties, dictionary size and size
	u, p := len(content)-1, len(lz)-1
	block := []byte{0xe0 | byte(u>>16), byte(u >> 8), byte(u), byte(p >> 8), byte(p), alone[0]}
	block = append(append(block, lz...), 0)
	// Stream header, block header (LZMA2, 64 KiB dictionary), the
	// chunk, padding, no check, index, footer.
	out := []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 0}
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out[6:8]))
	h := []byte{2, 0, 0x21, 1, 12, 0, 0, 0}
	h = binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(h))
	out = append(append(out, h...), block...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	index := []byte{0, 1}
	for _, v := range []int{len(h) + len(block), len(content)} {
		for ; v >= 0x80; v >>= 7 {
			index = append(index, byte(v)|0x80)
		}
		index = append(index, byte(v))
	}
	for len(index)%4 != 0 {
		index = append(index, 0)
	}
	index = binary.LittleEndian.AppendUint32(index, crc32.ChecksumIEEE(index))
	footer := binary.LittleEndian.AppendUint32(nil, uint32(len(index)/4-1))
	footer = append(footer, 0, 0)
	out = append(out, index...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(footer))
	out = append(append(out, footer...), 'Y', 'Z')
	if cmd := exec.Command(xzPath(t), "-t"); true {
		cmd.Stdin = bytes.NewReader(out)
		if cmd.Run() == nil {
			t.Fatal("xz -t accepts the end-of-payload marker")
		}
	}
	return out
}

// xzPath returns the path of the xz command; without it the test is
// skipped, but in CI (CI=true), where it must be installed, it fails.
func xzPath(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("xz")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("xz command not found")
		}
		t.Skip("xz command not found (install xz-utils)")
	}
	return path
}

// bcj returns a meta tarball compressed with the x86 BCJ filter before
// LZMA2, made by the xz command.
func bcj(t testing.TB) []byte {
	t.Helper()
	cmd := exec.Command(xzPath(t), "-c", "--x86", "--lzma2")
	cmd.Stdin = bytes.NewReader(makeTar(t, tarEntry{name: "config", body: "C\n"}))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMetaFilesRelevant(t *testing.T) {
	all := []string{"config", "config-user", "config.7", "config-user.7", "config-system", "config.6"}
	for _, c := range []struct {
		have []string
		mode Mode
		want string // "" for none
	}{
		{all, User, "config-user.7"},
		{all, System, "config-system"},
		{[]string{"config", "config-user", "config.7"}, User, "config-user"},
		{[]string{"config", "config.7"}, User, "config.7"},
		{[]string{"config"}, User, "config"},
		{[]string{"config", "config-user", "config-user.7", "config.7"}, System, "config.7"},
		{[]string{"config", "config.6", "config.8"}, System, "config"},
		{[]string{"config-user"}, System, ""},
		{[]string{"config.7"}, System, "config.7"}, // NAME.LEVEL alone still counts
		// NAME-MODE.LEVEL counts only next to NAME-MODE, as in the shell.
		{[]string{"config-user.7"}, User, ""},
		{nil, User, ""},
	} {
		m := MetaFiles{}
		for _, n := range c.have {
			m[n] = []byte(n)
		}
		data, ok := m.Relevant("config", c.mode)
		if ok != (c.want != "") || string(data) != c.want {
			t.Errorf("%q in %s mode: %q, %v; want %q", c.have, c.mode, data, ok, c.want)
		}
	}
}

func TestMetaFilesCheck(t *testing.T) {
	if err := (MetaFiles{"config": nil, "expiry": []byte("17\n")}).Check(System); err != nil {
		t.Errorf("good: %v", err)
	}
	if err := (MetaFiles{"config-user": nil}).Check(System); err != ErrNoConfig || err.Error() != "meta tarball is missing the configuration file" {
		t.Errorf("no config: %v", err)
	}
	if err := (MetaFiles{"config": nil, "expiry-user": []byte("soon")}).Check(User); err == nil || err.Error() != `meta tarball: expiry "soon" is not a Unix time` {
		t.Errorf("bad expiry: %v", err)
	}
	if err := (MetaFiles{"config": nil, "expiry-user": []byte("soon")}).Check(System); err != nil {
		t.Errorf("bad expiry of the other mode: %v", err)
	}
}

func TestParseExpiry(t *testing.T) {
	for in, want := range map[string]int64{"1766000000\n": 1766000000, " 42 ": 42, "0": 0, "-5\n": -5, "+7": 7} {
		got, err := ParseExpiry([]byte(in))
		if err != nil || got.Unix() != want {
			t.Errorf("ParseExpiry(%q) = %v, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "soon", "1.5", "0x10", "1 2", "99999999999999999999"} {
		if _, err := ParseExpiry([]byte(in)); err == nil {
			t.Errorf("ParseExpiry(%q): no error", in)
		}
	}
}

func TestMeta(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"config":         "C\n",
		"config-user":    "CU\n",
		"config-user.7":  "CU7\n",
		"fstab.7":        "F7\n",
		"fstab":          "F\n",
		"templates":      "/etc/hostname\n\n  /etc/hosts\t\r\n   \n/etc/no-newline",
		"excludes-user":  "./dev/console\n",
		"expiry":         "1766000000\n",
		"expiry-user":    "garbage\n",
		"create-message": "",
	} {
		writeFile(t, filepath.Join(dir, name), data)
	}
	sys, user := Meta{Dir: dir, Mode: System}, Meta{Dir: dir, Mode: User}

	for _, c := range []struct {
		m          Meta
		name, want string // want "" for none
	}{
		{sys, "config", "config"},
		{user, "config", "config-user.7"},
		{sys, "fstab", "fstab.7"},
		{user, "fstab", "fstab.7"},
		{sys, "excludes", ""},
		{user, "excludes", "excludes-user"},
		{sys, "create-message", "create-message"},
		{sys, "missing", ""},
		{sys, "../" + filepath.Base(dir) + "/config", ""},
		{sys, "", ""},
	} {
		p, ok := c.m.Path(c.name)
		if ok != (c.want != "") || (ok && p != filepath.Join(dir, c.want)) {
			t.Errorf("%s Path(%q) = %q, %v; want %q", c.m.Mode, c.name, p, ok, c.want)
		}
	}

	if data, ok, err := user.Read("config"); err != nil || !ok || string(data) != "CU7\n" {
		t.Errorf("user config: %q, %v, %v", data, ok, err)
	}
	if data, ok, err := sys.Read("create-message"); err != nil || !ok || data == nil || len(data) != 0 {
		t.Errorf("empty create-message: %q, %v, %v", data, ok, err)
	}
	if data, ok, err := sys.Read("missing"); err != nil || ok || data != nil {
		t.Errorf("missing: %q, %v, %v", data, ok, err)
	}

	lines, err := sys.Lines("templates")
	if want := []string{"/etc/hostname", "/etc/hosts", "/etc/no-newline"}; err != nil || !reflect.DeepEqual(lines, want) {
		t.Errorf("templates: %q, %v; want %q", lines, err, want)
	}
	if lines, err := sys.Lines("excludes"); err != nil || lines != nil {
		t.Errorf("system excludes: %q, %v", lines, err)
	}
	if lines, err := user.Lines("excludes"); err != nil || !reflect.DeepEqual(lines, []string{"./dev/console"}) {
		t.Errorf("user excludes: %q, %v", lines, err)
	}
	if lines, err := sys.Lines("create-message"); err != nil || lines != nil {
		t.Errorf("empty file: %q, %v", lines, err)
	}

	if exp, ok, err := sys.Expiry(); err != nil || !ok || exp.Unix() != 1766000000 {
		t.Errorf("system expiry: %v, %v, %v", exp, ok, err)
	}
	_, ok, err := user.Expiry()
	if want := filepath.Join(dir, "expiry-user") + `: expiry "garbage" is not a Unix time`; ok || err == nil || err.Error() != want {
		t.Errorf("user expiry: %v, %v; want error %q", ok, err, want)
	}
	if _, ok, err := (Meta{Dir: t.TempDir(), Mode: System}).Expiry(); ok || err != nil {
		t.Errorf("no expiry: %v, %v", ok, err)
	}
}

// TestMetaUnreadable gives Meta files that exist but cannot be read: a
// directory where a file should be (fails for root too), and a file without
// read permission (fails only when not root).
func TestMetaUnreadable(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"config", "expiry", "templates"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := Meta{Dir: dir, Mode: System}
	if _, ok, err := m.Read("config"); ok || err == nil || !strings.HasPrefix(err.Error(), "read meta file: ") {
		t.Errorf("Read of a directory: %v, %v", ok, err)
	}
	if _, err := m.Lines("templates"); err == nil {
		t.Error("Lines of a directory: no error")
	}
	if _, ok, err := m.Expiry(); ok || err == nil {
		t.Errorf("Expiry of a directory: %v, %v", ok, err)
	}

	if os.Geteuid() == 0 {
		t.Log("as root, a file without read permission can still be read; skipping that case")
		return
	}
	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "config"), "C\n")
	if err := os.Chmod(filepath.Join(dir, "config"), 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := (Meta{Dir: dir, Mode: System}).Read("config"); ok || !errors.Is(err, os.ErrPermission) {
		t.Errorf("Read without permission: %v, %v", ok, err)
	}
}

// otherFilter reports whether xz-utils' test file name uses a filter
// besides LZMA2 (Delta or a BCJ filter), by the names it has had (xz-utils
// 5.4, which CI takes from Debian, names some otherwise than later ones).
func otherFilter(name string) bool {
	for _, f := range []string{"delta", "bcj", "x86", "sparc", "powerpc", "ia64", "arm", "riscv"} {
		if strings.Contains(name, f) {
			return true
		}
	}
	return false
}

// TestReadMetaTarballXZUtilsFiles reads xz-utils' test files (tests/files
// of github.com/tukaani-project/xz, 0BSD), named by $XZ_TEST_FILES, as
// meta tarballs: the bad and unsupported ones must fail, as xz refuses
// them (in xz, or on the size the index declares); the good ones (which
// hold no tar) may only fail in tar, or, with filters other than LZMA2,
// as unsupported.
func TestReadMetaTarballXZUtilsFiles(t *testing.T) {
	dir := os.Getenv("XZ_TEST_FILES")
	if dir == "" {
		t.Skip("XZ_TEST_FILES is not set: it names a copy of xz-utils' tests/files (github.com/tukaani-project/xz, 0BSD)")
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.xz"))
	if err != nil || len(names) < 60 {
		t.Fatalf("%d files in %s: %v", len(names), dir, err)
	}
	for _, path := range names {
		name := filepath.Base(path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ReadMetaTarball(bytes.NewReader(data))
		xzErr := err != nil && (strings.HasPrefix(err.Error(), "meta tarball: xz: ") || strings.HasPrefix(err.Error(), "meta tarball: not xz data"))
		switch {
		case strings.HasPrefix(name, "bad-") || strings.HasPrefix(name, "unsupported-"):
			if err == nil || !strings.HasPrefix(err.Error(), "meta tarball: ") {
				t.Errorf("%s: %v, want an error", name, err)
			}
		case otherFilter(name):
			if !xzErr || !strings.Contains(err.Error(), "unsupported filter chain") {
				t.Errorf("%s: %v, want an unsupported filter chain", name, err)
			}
		case xzErr:
			t.Errorf("%s: %v", name, err)
		}
	}
}

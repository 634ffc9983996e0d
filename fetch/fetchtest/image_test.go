package fetchtest

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// readTarXZ decodes an .tar.xz with the xz reader the project uses and
// turns it back into Files.
func readTarXZ(t *testing.T, data []byte) []File {
	t.Helper()
	zr, err := xz.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var files []File
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f := File{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, Linkname: h.Linkname,
			Devmajor: h.Devmajor, Devminor: h.Devminor, Body: string(body), ModTime: h.ModTime}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if f.Xattrs == nil {
					f.Xattrs = map[string]string{}
				}
				f.Xattrs[name] = v
			}
		}
		files = append(files, f)
	}
	return files
}

func TestTarballRoundTrip(t *testing.T) {
	img := DefaultImage()
	data, err := RootfsTarball(img)
	if err != nil {
		t.Fatal(err)
	}
	got := readTarXZ(t, data)
	if len(got) != len(img.Rootfs) {
		t.Fatalf("%d entries, want %d", len(got), len(img.Rootfs))
	}
	for i, want := range img.Rootfs {
		if want.Type == 0 {
			want.Type = tar.TypeReg
		}
		if want.ModTime.IsZero() {
			want.ModTime = DefaultModTime
		}
		if !got[i].ModTime.Equal(want.ModTime) {
			t.Errorf("%s: mtime %v, want %v", want.Name, got[i].ModTime, want.ModTime)
		}
		got[i].ModTime = want.ModTime
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, got[i], want)
		}
	}

	// What the rootfs must exercise is really there.
	has := func(name string, ok func(File) bool) {
		t.Helper()
		for _, f := range got {
			if f.Name == name && ok(f) {
				return
			}
		}
		t.Errorf("DefaultImage lacks the expected %s", name)
	}
	has("./", func(f File) bool { return f.Type == tar.TypeDir })
	has("./tmp/", func(f File) bool { return f.Type == tar.TypeDir && f.Mode == 0o1777 })
	has("./usr/bin/passwd", func(f File) bool { return f.Mode == 0o4755 })
	has("./bin", func(f File) bool { return f.Type == tar.TypeSymlink && f.Linkname == "usr/bin" })
	has("./usr/bin/perl5.36.0", func(f File) bool { return f.Type == tar.TypeLink && f.Linkname == "./usr/bin/perl" })
	has("./run/initctl", func(f File) bool { return f.Type == tar.TypeFifo })
	has("./dev/null", func(f File) bool { return f.Type == tar.TypeChar && f.Devmajor == 1 && f.Devminor == 3 })
	has("./dev/loop0", func(f File) bool { return f.Type == tar.TypeBlock && f.Devmajor == 7 })
	has("./home/user/", func(f File) bool { return f.Uid == 1000 && f.Gid == 1000 })
	has("./etc/hostname", func(f File) bool { return f.Body == "LXC_NAME\n" })
	has("./etc/hosts", func(f File) bool { return strings.Contains(f.Body, "LXC_NAME") })
	has("./etc/motd", func(f File) bool { return f.Xattrs["user.comment"] != "" })
	has("./usr/bin/ping", func(f File) bool { return f.Xattrs["security.capability"] == PingCapability })
}

func TestPingCapability(t *testing.T) {
	b := []byte(PingCapability)
	if len(b) != 20 {
		t.Fatalf("%d bytes, want 20 (VFS_CAP_U32_2)", len(b))
	}
	if magic := binary.LittleEndian.Uint32(b); magic != 0x02000001 {
		t.Errorf("magic_etc %#x, want revision 2 with the effective flag", magic)
	}
	if perm := binary.LittleEndian.Uint32(b[4:]); perm != 1<<13 {
		t.Errorf("permitted %#x, want cap_net_raw (bit 13)", perm)
	}
	// getcap, where installed, reads the blob as what setcap wrote.
	getcap, err := exec.LookPath("getcap")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("getcap and root are needed to check the blob with the kernel")
	}
	p := filepath.Join(t.TempDir(), "ping")
	os.WriteFile(p, nil, 0o755)
	if err := setxattr(p, "security.capability", b); err != nil {
		t.Skipf("this filesystem takes no security.capability: %v", err)
	}
	out, err := exec.Command(getcap, p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cap_net_raw") || !strings.Contains(string(out), "ep") {
		t.Errorf("getcap: %v %s", err, out)
	}
}

func TestTarballGNUTar(t *testing.T) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("no tar")
	}
	data, err := RootfsTarball(DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rootfs.tar.xz")
	os.WriteFile(p, data, 0o644)
	out, err := exec.Command(tarBin, "--xattrs", "--xattrs-include=*", "-tvvJf", p).CombinedOutput()
	if err != nil {
		t.Skipf("tar cannot list it here: %v %s", err, out)
	}
	for _, want := range []string{"./usr/bin/perl5.36.0 link to ./usr/bin/perl", "security.capability", "user.comment", "-rwsr-xr-x", "drwxrwxrwt"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tar -tvv lacks %q:\n%s", want, out)
		}
	}
}

func TestMetaTarball(t *testing.T) {
	img := DefaultImage()
	for _, name := range []string{"config", "config-user", "fstab", "create-message", "expiry", "templates", "excludes-user"} {
		if img.Meta[name] == "" {
			t.Errorf("DefaultImage meta lacks %s", name)
		}
	}
	if !strings.Contains(img.Meta["config"], "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\n") ||
		!strings.Contains(img.Meta["config"], "lxc.arch = ") {
		t.Errorf("config:\n%s", img.Meta["config"])
	}
	if !strings.Contains(img.Meta["config-user"], "LXC_TEMPLATE_CONFIG/debian.userns.conf") {
		t.Errorf("config-user:\n%s", img.Meta["config-user"])
	}
	if !strings.Contains(img.Meta["excludes-user"], "./dev/null\n") || strings.Contains(img.Meta["excludes-user"], "./etc") {
		t.Errorf("excludes-user:\n%s", img.Meta["excludes-user"])
	}
	var expiry int64
	if _, err := fmt.Sscan(img.Meta["expiry"], &expiry); err != nil || expiry < time.Now().Add(24*time.Hour).Unix() {
		t.Errorf("expiry %q is not a Unix time days ahead", img.Meta["expiry"])
	}
	if len(strings.Split(strings.TrimSpace(img.Meta["create-message"]), "\n")) < 3 {
		t.Errorf("create-message is not multi-line:\n%s", img.Meta["create-message"])
	}

	data, err := MetaTarball(img.Meta)
	if err != nil {
		t.Fatal(err)
	}
	files := readTarXZ(t, data)
	if len(files) != len(img.Meta) {
		t.Fatalf("%d files, want %d", len(files), len(img.Meta))
	}
	for _, f := range files {
		if f.Body != img.Meta[f.Name] || f.Type != tar.TypeReg || f.Mode != 0o644 {
			t.Errorf("%+v", f)
		}
	}
}

// xzBlock is one block of an xz file as its index and header describe it.
type xzBlock struct {
	offset            int64 // of the block header
	unpadded          int64
	uncompressed      int64
	headerHasSizes    bool
	headerCompressed  int64
	headerUncompresed int64
}

// xzBlocks reads the stream footer and index of a single-stream xz file,
// the way a parallel decoder would, and each block's header.
func xzBlocks(t *testing.T, data []byte) []xzBlock {
	t.Helper()
	if len(data) < 24 || string(data[len(data)-2:]) != "YZ" {
		t.Fatal("no xz stream footer")
	}
	footer := data[len(data)-12:]
	if crc32.ChecksumIEEE(footer[4:10]) != binary.LittleEndian.Uint32(footer) {
		t.Fatal("footer CRC")
	}
	indexSize := (int64(binary.LittleEndian.Uint32(footer[4:])) + 1) * 4
	index := data[int64(len(data))-12-indexSize : len(data)-12]
	if crc32.ChecksumIEEE(index[:len(index)-4]) != binary.LittleEndian.Uint32(index[len(index)-4:]) {
		t.Fatal("index CRC")
	}
	r := bytes.NewReader(index[1:])
	n := readVarint(t, r)
	var blocks []xzBlock
	off := int64(12)
	for range n {
		b := xzBlock{offset: off, unpadded: readVarint(t, r), uncompressed: readVarint(t, r)}
		h := data[off:]
		hlen := (int64(h[0]) + 1) * 4
		if crc32.ChecksumIEEE(h[:hlen-4]) != binary.LittleEndian.Uint32(h[hlen-4:]) {
			t.Fatalf("block header CRC at %d", off)
		}
		if h[1]&0xc0 == 0xc0 {
			hr := bytes.NewReader(h[2:hlen])
			b.headerHasSizes = true
			b.headerCompressed = readVarint(t, hr)
			b.headerUncompresed = readVarint(t, hr)
		}
		blocks = append(blocks, b)
		off += (b.unpadded + 3) &^ 3
	}
	return blocks
}

func readVarint(t *testing.T, r io.ByteReader) int64 {
	t.Helper()
	var v uint64
	for shift := 0; ; shift += 7 {
		c, err := r.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(v)
		}
	}
}

func pseudoText(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d of a file that compresses like text, %x\n", i, uint64(i)*2654435761)
	}
	return b.Bytes()[:n]
}

func TestXZMultiBlock(t *testing.T) {
	data := pseudoText(1<<20 + 12345)
	const blockSize = 256 << 10
	packed, err := XZ(data, blockSize)
	if err != nil {
		t.Fatal(err)
	}
	blocks := xzBlocks(t, packed)
	if len(blocks) != 5 {
		t.Fatalf("%d blocks, want 5", len(blocks))
	}
	var total int64
	for i, b := range blocks {
		want := int64(blockSize)
		if i == len(blocks)-1 {
			want = int64(len(data)) - 4*blockSize
		}
		if b.uncompressed != want || !b.headerHasSizes || b.headerUncompresed != want {
			t.Errorf("block %d: %+v, want %d bytes with sizes in the header", i, b, want)
		}
		// Each block decodes on its own: its LZMA2 data starts a fresh
		// dictionary, so a parallel decoder can take them in any order.
		h := packed[b.offset:]
		hlen := (int64(h[0]) + 1) * 4
		lr, err := lzma.Reader2Config{DictCap: xzDictCap}.NewReader2(bytes.NewReader(h[hlen : hlen+b.headerCompressed]))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(lr)
		if err != nil || !bytes.Equal(got, data[total:total+want]) {
			t.Errorf("block %d alone: %d bytes, %v", i, len(got), err)
		}
		total += b.uncompressed
	}
	zr, err := xz.NewReader(bytes.NewReader(packed))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, data) {
		t.Errorf("whole file: %d bytes, %v", len(got), err)
	}
	checkWithXZ(t, packed, len(blocks))
}

func TestXZSingleBlock(t *testing.T) {
	data := pseudoText(300 << 10)
	packed, err := XZ(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	blocks := xzBlocks(t, packed)
	if len(blocks) != 1 || blocks[0].headerHasSizes || blocks[0].uncompressed != int64(len(data)) {
		t.Fatalf("blocks %+v", blocks)
	}
	zr, _ := xz.NewReader(bytes.NewReader(packed))
	if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, data) {
		t.Errorf("%d bytes, %v", len(got), err)
	}
	checkWithXZ(t, packed, 1)

	empty, err := XZ(nil, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if b := xzBlocks(t, empty); len(b) != 0 {
		t.Errorf("empty input: %d blocks", len(b))
	}
	zr, _ = xz.NewReader(bytes.NewReader(empty))
	if got, err := io.ReadAll(zr); err != nil || len(got) != 0 {
		t.Errorf("empty: %q %v", got, err)
	}
	checkWithXZ(t, empty, 0)
}

// checkWithXZ has xz-utils, where installed, test the file and count its
// blocks.
func checkWithXZ(t *testing.T, packed []byte, blocks int) {
	t.Helper()
	bin, err := exec.LookPath("xz")
	if err != nil {
		t.Log("xz not installed: not checked with xz-utils")
		return
	}
	p := filepath.Join(t.TempDir(), "f.xz")
	os.WriteFile(p, packed, 0o644)
	out, err := exec.Command(bin, "--robot", "--list", p).CombinedOutput()
	if err != nil {
		t.Fatalf("xz --list: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Split(l, "\t"); f[0] == "file" && f[2] != fmt.Sprint(blocks) {
			t.Errorf("xz counts %s blocks, want %d", f[2], blocks)
		}
	}
	if out, err := exec.Command(bin, "--test", p).CombinedOutput(); err != nil {
		t.Errorf("xz --test: %v\n%s", err, out)
	}
}

func TestImageBlockSize(t *testing.T) {
	img := DefaultImage()
	img.BlockSize = 4096
	data, err := RootfsTarball(img)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(xzBlocks(t, data)); n < 3 {
		t.Errorf("%d blocks with BlockSize 4096", n)
	}
	if got := readTarXZ(t, data); len(got) != len(img.Rootfs) {
		t.Errorf("%d entries", len(got))
	}
}

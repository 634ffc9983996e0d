package xzpar

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// This file holds the tests that hold every decoding path to xz's
// strictness: xz-utils' own test files, their LZMA2 data rewrapped into
// files of other layouts, hand-made cases of what ulikunitz/xz lets
// through, and thousands of mutations judged by xz -t.

// decodePath is one way a file can be decoded.
type decodePath struct {
	name   string
	decode func(tb testing.TB, file []byte) ([]byte, error)
}

// open opens file the way p decodes it.
func (p decodePath) open(file []byte) (io.ReadCloser, error) {
	o := pathOptions
	if strings.HasSuffix(p.name, "as streams") {
		o = streamsOnly
	}
	if strings.HasPrefix(p.name, "file") {
		return NewReader(bytes.NewReader(file), int64(len(file)), o)
	}
	return NewStreamReader(bytes.NewReader(file), o)
}

// decodePaths are every way this package decodes: NewReader and
// NewStreamReader, each with blocks decoded whole where they can be and
// with every block decoded as a stream.
var decodePaths = []decodePath{
	{"file", func(tb testing.TB, file []byte) ([]byte, error) {
		out, _, err := decodeAll(tb, file, pathOptions)
		return out, err
	}},
	{"file as streams", func(tb testing.TB, file []byte) ([]byte, error) {
		out, _, err := decodeAll(tb, file, streamsOnly)
		return out, err
	}},
	{"stream", func(tb testing.TB, file []byte) ([]byte, error) {
		out, _, err := decodeStream(tb, file, pathOptions)
		return out, err
	}},
	{"stream as streams", func(tb testing.TB, file []byte) ([]byte, error) {
		out, _, err := decodeStream(tb, file, streamsOnly)
		return out, err
	}},
}

// pathOptions are decodePaths' options: a budget of its own saves
// reading the memory available for each of thousands of decodes;
// streamsOnly decodes every block as a stream.
var (
	pathOptions = Options{Workers: 2, MemoryBudget: 64 << 20}
	streamsOnly = Options{Workers: 2, MemoryBudget: 64 << 20, streamsOnly: true}
)

// xzOracle runs xz -t on files (paths) and returns, for each, whether xz
// accepts it: ok (nil), warns (errXZWarning: an unsupported check, which
// xz decodes without verifying) or refuses it (the message).
func xzOracle(tb testing.TB, files []string) []error {
	tb.Helper()
	xzPath := requireXZ(tb)
	results := make([]error, len(files))
	for start := 0; start < len(files); start += 500 {
		batch := files[start:min(start+500, len(files))]
		cmd := exec.Command(xzPath, append([]string{"-t", "--"}, batch...)...)
		cmd.Args[0] = "xz" // how it names itself in messages
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			tb.Fatalf("xz -t: %v", err)
		}
		index := make(map[string]int, len(batch))
		for i, f := range batch {
			index[f] = start + i
		}
		for _, line := range strings.Split(stderr.String(), "\n") {
			rest, ok := strings.CutPrefix(line, "xz: ")
			if !ok {
				continue
			}
			for f, i := range index {
				msg, ok := strings.CutPrefix(rest, f+": ")
				if !ok {
					continue
				}
				if strings.Contains(msg, "Unsupported type of integrity check") {
					results[i] = errXZWarning
				} else if results[i] == nil {
					results[i] = errors.New(msg)
				}
			}
		}
	}
	return results
}

// errXZWarning stands for a file xz decodes with a warning.
var errXZWarning = errors.New("xz warns")

// xzDecode decodes file with xz -dc.
func xzDecode(tb testing.TB, file []byte) []byte {
	tb.Helper()
	cmd := exec.Command(requireXZ(tb), "-dc")
	cmd.Stdin = bytes.NewReader(file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("xz -dc: %v: %s", err, stderr.Bytes())
	}
	return out
}

// checkLikeXZ decodes file by every path and checks that each accepts it
// exactly when xz does (xzErr, from xzOracle) and then yields want, and
// that each refusal is an xz error (ErrUnsupported where xz only warns).
func checkLikeXZ(t *testing.T, name string, file []byte, xzErr error, want []byte) {
	t.Helper()
	for _, p := range decodePaths {
		got, err := p.decode(t, file)
		switch {
		case err != nil && !strings.HasPrefix(err.Error(), "xz: "):
			t.Errorf("%s, %s: %v, not an xz error", name, p.name, err)
		case xzErr == nil && err != nil:
			t.Errorf("%s, %s: %v; xz accepts it", name, p.name, err)
		case xzErr == nil && !bytes.Equal(got, want):
			t.Errorf("%s, %s: decodes %d bytes, xz %d, differing", name, p.name, len(got), len(want))
		case xzErr == errXZWarning && !errors.Is(err, ErrUnsupported):
			t.Errorf("%s, %s: %v; xz warns, which should be ErrUnsupported", name, p.name, err)
		case xzErr != nil && err == nil:
			t.Errorf("%s, %s: accepted; xz refuses it: %v", name, p.name, xzErr)
		}
	}
}

// xzUtilsFiles returns the directory of xz-utils' test files (tests/files
// of github.com/tukaani-project/xz, under the 0BSD licence), named by
// $XZ_TEST_FILES; this repository does not carry them. Without it the
// test is skipped: the hand-made cases and the mutations of
// TestMutationsLikeXZ cover the same classes of damage.
func xzUtilsFiles(t *testing.T) string {
	dir := os.Getenv("XZ_TEST_FILES")
	if dir == "" {
		const why = "XZ_TEST_FILES is not set: it names a copy of xz-utils' tests/files (github.com/tukaani-project/xz, 0BSD; .ci/run takes them from Debian's xz-utils source package)"
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	if _, err := os.Stat(filepath.Join(dir, "good-1-lzma2-1.xz")); err != nil {
		t.Fatalf("XZ_TEST_FILES=%s: %v", dir, err)
	}
	return dir
}

// otherFilters are xz-utils' good files that use filters besides LZMA2,
// which this package refuses as unsupported.
var otherFilters = map[string]bool{
	"good-1-3delta-lzma2.xz":     true,
	"good-1-arm64-lzma2-1.xz":    true,
	"good-1-arm64-lzma2-2.xz":    true,
	"good-1-delta-lzma2.tiff.xz": true,
	"good-1-empty-bcj-lzma2.xz":  true,
	// Their names in xz-utils 5.4 (Debian 12's source, which .ci/run
	// takes the files from).
	"good-1-x86-lzma2.xz":   true,
	"good-1-sparc-lzma2.xz": true,
}

// TestXZUtilsFiles decodes xz-utils' test files by every path: good files
// decode to what xz decodes, those with other filters and unsupported-*
// files are refused as unsupported, bad files are refused, as xz -t
// refuses them.
func TestXZUtilsFiles(t *testing.T) {
	dir := xzUtilsFiles(t)
	names, err := filepath.Glob(filepath.Join(dir, "*.xz"))
	if err != nil || len(names) < 60 {
		t.Fatalf("%d files in %s: %v", len(names), dir, err)
	}
	oracle := xzOracle(t, names)
	for i, path := range names {
		name := filepath.Base(path)
		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(name, "good-") && !otherFilters[name]:
			if oracle[i] != nil {
				t.Fatalf("%s: xz -t: %v", name, oracle[i])
			}
			checkLikeXZ(t, name, file, nil, xzDecode(t, file))
		case strings.HasPrefix(name, "good-") || strings.HasPrefix(name, "unsupported-"):
			for _, p := range decodePaths {
				if _, err := p.decode(t, file); !errors.Is(err, ErrUnsupported) {
					t.Errorf("%s, %s: %v, want ErrUnsupported", name, p.name, err)
				} else if p.name == "file" {
					t.Logf("%s: %v", name, err)
				}
			}
		case strings.HasPrefix(name, "bad-"):
			if oracle[i] == nil {
				t.Fatalf("%s: xz -t accepts it", name)
			}
			checkLikeXZ(t, name, file, oracle[i], nil)
			if strings.HasPrefix(name, "bad-1-lzma2-") {
				// The LZMA2 data is bad: the error says where.
				for _, p := range decodePaths {
					if _, err := p.decode(t, file); err == nil || !strings.Contains(err.Error(), "block 0 at offset 12: ") {
						t.Errorf("%s, %s: %v, want an error naming block 0", name, p.name, err)
					}
				}
			}
		}
	}
}

// rawBlock is a block's LZMA2 data with what the container says of it.
type rawBlock struct {
	data     []byte // LZMA2
	size     int64  // uncompressed, as the index says
	dictProp byte
	check    []byte // as stored
}

// blocksOfFile returns the blocks of the single-stream xz file data, as
// its index and block headers give them, or false if it is not parsed.
func blocksOfFile(data []byte) ([]rawBlock, byte, bool) {
	l, err := parse(bytes.NewReader(data), int64(len(data)))
	if err != nil || len(l.blocks) == 0 {
		return nil, 0, false
	}
	var blocks []rawBlock
	for _, b := range l.blocks {
		h := data[b.offset : b.offset+b.headerSize]
		i := bytes.Index(h, []byte{filterLZMA2, 1})
		cs := int64(checkSize(b.check))
		end := b.paddedEnd()
		blocks = append(blocks, rawBlock{
			data:     data[b.dataOffset() : b.dataOffset()+b.compressedSize],
			size:     b.size,
			dictProp: h[i+2],
			check:    data[end-cs : end],
		})
	}
	return blocks, l.blocks[0].check, true
}

// wrap makes an xz file of one stream with check ID check and blocks,
// whose headers give their sizes if sizes is set.
func wrap(check byte, blocks []rawBlock, sizes bool) []byte {
	flags := []byte{0, check}
	out := append(bytes.Clone(headerMagic), flags...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(flags))
	index := []byte{0}
	index = putVLI(index, uint64(len(blocks)))
	for _, b := range blocks {
		h := []byte{0, 0}
		if sizes {
			h[1] = 0xc0
			h = putVLI(h, uint64(len(b.data)))
			h = putVLI(h, uint64(b.size))
		}
		h = append(h, filterLZMA2, 1, b.dictProp)
		for len(h)%4 != 0 {
			h = append(h, 0)
		}
		h[0] = byte(len(h) / 4)
		h = binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(h))
		out = append(out, h...)
		out = append(out, b.data...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
		out = append(out, b.check...)
		index = putVLI(index, uint64(len(h)+len(b.data)+len(b.check)))
		index = putVLI(index, uint64(b.size))
	}
	for len(index)%4 != 0 {
		index = append(index, 0)
	}
	index = binary.LittleEndian.AppendUint32(index, crc32.ChecksumIEEE(index))
	out = append(out, index...)
	footer := binary.LittleEndian.AppendUint32(nil, uint32(len(index)/4-1))
	footer = append(footer, flags...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(footer))
	out = append(out, footer...)
	return append(out, footerMagic...)
}

// TestRewrappedLikeXZ takes the LZMA2 data of xz-utils' files (and of
// the hand-made end-of-payload marker) and wraps it into files of other
// layouts: one block with sizes in its header and one without, and
// between valid blocks of a multi-block file, with and without sizes. By
// every path, each must decode as xz decodes it, or be refused as xz
// refuses it.
func TestRewrappedLikeXZ(t *testing.T) {
	dir := xzUtilsFiles(t)
	names, err := filepath.Glob(filepath.Join(dir, "*.xz"))
	if err != nil {
		t.Fatal(err)
	}
	type variant struct {
		name string
		file []byte
	}
	var variants []variant
	// Valid blocks to put around the others, for each check.
	around := map[byte][]rawBlock{}
	for _, check := range []string{"none", "crc32", "crc64", "sha256"} {
		file := xzCompress(t, sampleData()[:3000], "-6", "-T2", "--block-size=1000", "-C", check)
		blocks, id, ok := blocksOfFile(file)
		if !ok {
			t.Fatal("xz's own file does not parse")
		}
		around[id] = blocks
	}
	add := func(name string, file []byte) {
		blocks, check, ok := blocksOfFile(file)
		if !ok {
			return // bad in the container: nothing to rewrap
		}
		a := around[check]
		for _, sizes := range []bool{true, false} {
			variants = append(variants,
				variant{fmt.Sprintf("%s, one stream, sizes %v", name, sizes), wrap(check, blocks, sizes)},
				variant{fmt.Sprintf("%s, between others, sizes %v", name, sizes), wrap(check, slices.Concat(a[:2], blocks, a[2:]), sizes)})
		}
	}
	for _, path := range names {
		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		add(filepath.Base(path), file)
	}
	eopm, _ := eopmFile(t)
	add("end-of-payload marker", eopm)
	if len(variants) < 100 {
		t.Fatalf("only %d variants", len(variants))
	}
	paths := make([]string, len(variants))
	for i, v := range variants {
		paths[i] = writeTemp(t, v.file)
	}
	oracle := xzOracle(t, paths)
	accepted := 0
	for i, v := range variants {
		var want []byte
		if oracle[i] == nil {
			want = xzDecode(t, v.file)
			accepted++
		}
		checkLikeXZ(t, v.name, v.file, oracle[i], want)
	}
	t.Logf("%d variants, %d of them valid", len(variants), accepted)
}

// eopmFile returns an xz file whose one LZMA2 chunk ends, after all of its
// declared output, with an end-of-payload marker, as xz-utils'
// bad-1-lzma2-7.xz: xz refuses it, ulikunitz/xz takes it. The chunk's LZMA
// data is what xz --format=lzma writes for a stream of unknown size.
func eopmFile(t testing.TB) (file, content []byte) {
	t.Helper()
	content = []byte(strings.Repeat("end of payload marker, ", 40))
	cmd := exec.Command(requireXZ(t), "--format=lzma", "--lzma1=preset=6,lc=3,lp=0,pb=2", "-c")
	cmd.Stdin = io.MultiReader(bytes.NewReader(content)) // a pipe: size unknown
	alone, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	// .lzma: properties (1), dictionary size (4), size (8: unknown).
	if alone[0] != 3+9*(0+5*2) || binary.LittleEndian.Uint64(alone[5:13]) != 1<<64-1 {
		t.Fatalf("unexpected .lzma header % x", alone[:13])
	}
	lz := alone[13:]
	u, p := len(content)-1, len(lz)-1
	chunk := []byte{0xe0 | byte(u>>16), byte(u >> 8), byte(u), byte(p >> 8), byte(p), alone[0]}
	chunk = append(append(chunk, lz...), 0)
	sum := crc32.ChecksumIEEE(content)
	file = wrap(checkCRC32, []rawBlock{{data: chunk, size: int64(len(content)), dictProp: 16,
		check: binary.LittleEndian.AppendUint32(nil, sum)}}, true)
	return file, content
}

// TestEndOfPayloadMarker checks that every path refuses the end-of-payload
// marker that ulikunitz/xz takes.
func TestEndOfPayloadMarker(t *testing.T) {
	file, content := eopmFile(t)
	if err := xzOracle(t, []string{writeTemp(t, file)})[0]; err == nil {
		t.Fatal("xz -t accepts it")
	}
	// ulikunitz/xz decodes it whole: a check around it could not tell.
	got, err := ulikunitzDecode(file)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("ulikunitz/xz: %d bytes, %v", len(got), err)
	}
	for _, p := range decodePaths {
		_, err := p.decode(t, file)
		// The chunk's range coder data runs on past its output: that
		// is where it goes wrong, at the chunk's data (offset 30).
		if err == nil || !strings.Contains(err.Error(), "block 0 at offset 12: corrupt LZMA2 data at offset 30: LZMA chunk ends after 36 of its 42 bytes") {
			t.Errorf("%s: %v", p.name, err)
		}
	}
}

// ulikunitzDecode decodes file with ulikunitz/xz.
func ulikunitzDecode(file []byte) ([]byte, error) {
	r, err := xz.ReaderConfig{DictCap: lzma.MinDictCap}.NewReader(bytes.NewReader(file))
	if err != nil {
		return nil, err
	}
	out, tooBig, err := readBounded(r)
	if tooBig {
		err = errTooBig
	}
	return out, err
}

// writeTemp writes data to a new file in the test's directory and returns
// its path.
func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.xz")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

var _ = fmt.Sprint

// mutate returns single-byte mutations of file: at every offset, the
// byte plus and minus one (sizes off by one, and the lowest bit), and at
// every third one its highest bit flipped.
func mutate(file []byte) [][]byte {
	var out [][]byte
	for i := range file {
		for k, delta := range []byte{1, 0xff, 0x80} {
			if k == 2 && i%3 != 0 {
				continue
			}
			m := bytes.Clone(file)
			m[i] += delta
			out = append(out, m)
		}
	}
	return out
}

// TestMutationsLikeXZ decodes thousands of mutations of small files, one
// of each layout (one block without sizes in its header, one with, several
// blocks, several blocks packed tighter than 16:1), by every path, and
// checks each accepts exactly what xz -t accepts and decodes it as
// ulikunitz/xz does.
func TestMutationsLikeXZ(t *testing.T) {
	text := sampleData()[5000:5900]
	files := map[string][]byte{
		"one block":              xzCompress(t, text, "--lzma2=preset=6,dict=64KiB", "-T1"),
		"one block with sizes":   xzCompress(t, text, "--lzma2=preset=6,dict=64KiB", "-T2", "--block-size=1MiB", "-C", "crc32"),
		"blocks":                 xzCompress(t, text, "--lzma2=preset=6,dict=64KiB", "-T2", "--block-size=500", "-C", "sha256"),
		"blocks tighter than 16": xzCompress(t, bytes.Repeat([]byte("0123"), 1000), "--lzma2=preset=6,dict=64KiB", "-T2", "--block-size=1400", "-C", "crc64"),
	}
	var names []string
	var mutations [][]byte
	for _, name := range slices.Sorted(maps.Keys(files)) {
		for i, m := range mutate(files[name]) {
			names = append(names, fmt.Sprintf("%s, mutation %d", name, i))
			mutations = append(mutations, m)
		}
	}
	dir := t.TempDir()
	paths := make([]string, len(mutations))
	for i, m := range mutations {
		paths[i] = filepath.Join(dir, fmt.Sprintf("%d.xz", i))
		writeFile(t, paths[i], m)
	}
	oracle := xzOracle(t, paths)
	accepted, looser := 0, 0
	for i, m := range mutations {
		var want []byte
		ref, refErr := ulikunitzDecode(m)
		if oracle[i] == nil {
			accepted++
			want = ref
			if refErr != nil {
				want = xzDecode(t, m)
			}
		} else if refErr == nil {
			looser++ // ulikunitz/xz takes what xz refuses
		}
		checkLikeXZ(t, names[i], m, oracle[i], want)
		if t.Failed() && i > 0 && !testing.Verbose() {
			t.FailNow() // one layout's failures are enough to read
		}
	}
	t.Logf("%d mutations: %d valid; ulikunitz/xz takes %d that xz refuses", len(mutations), accepted, looser)
}

// TestPackedSizeOffByOne checks that every path refuses an LZMA chunk
// whose packed size is one more than its data, which ulikunitz/xz takes:
// it does not check that a chunk's range coder used all of its bytes.
func TestPackedSizeOffByOne(t *testing.T) {
	text := sampleData()[:20000]
	file := xzCompress(t, text, "-6", "-T1")
	b := blocksOf(t, file)[0]
	chunk := file[b.dataOffset():]
	if chunk[0] < 0xe0 {
		t.Fatalf("first chunk's control byte %#x", chunk[0])
	}
	packed := int(chunk[3])<<8 | int(chunk[4]) + 1
	bad := bytes.Clone(file)
	binary.BigEndian.PutUint16(bad[b.dataOffset()+3:], uint16(packed)) // packed + 1, less 1
	if got, err := ulikunitzDecode(bad); err != nil || !bytes.Equal(got, text) {
		t.Fatalf("ulikunitz/xz: %d bytes, %v", len(got), err)
	}
	want := fmt.Sprintf("xz: block 0 at offset 12: corrupt LZMA2 data at offset %d: LZMA chunk ends after %d of its %d bytes", b.dataOffset()+6, packed, packed+1)
	for _, p := range decodePaths {
		if _, err := p.decode(t, bad); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", p.name, err, want)
		}
	}
}

// TestNoDataBeyondDeclaredSize checks that no path hands out more of a
// block than its header or the index declares before it fails.
func TestNoDataBeyondDeclaredSize(t *testing.T) {
	text := sampleData()[:40000]
	file := xzCompress(t, text, "-6", "-T2", "--block-size=20000")
	blocks := blocksOf(t, file)
	// The header says 19999 bytes (with or without the compressed
	// size), the index too.
	for _, compressed := range []int64{blocks[1].compressedSize, -1} {
		lie := withHeader(t, file, blocks[1], compressed, 19999)
		recs := lastStream(t, lie).records
		recs[1].uncompressed = 19999
		recs[1].unpadded += int64(blockHeaderSize(lie[blocks[1].offset])) - blocks[1].headerSize
		lie = withIndex(t, lie, recs)
		for _, p := range decodePaths {
			r, err := p.open(lie)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			n, err := io.Copy(io.Discard, r)
			r.Close()
			if err == nil || n > 20000+19999 {
				t.Errorf("%s: %d bytes handed out, then %v", p.name, n, err)
			}
		}
	}
}

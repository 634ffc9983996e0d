package xzpar

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

var (
	sampleOnce sync.Once
	sample     []byte
)

// sampleData is 300 KB of rootfs-like data shared by the tests.
func sampleData() []byte {
	sampleOnce.Do(func() { sample = tarLike(300_000, 7) })
	return sample
}

func TestRoundTripXZ(t *testing.T) {
	data := sampleData()
	tests := []struct {
		name  string
		args  []string
		sizes bool // in block headers
	}{
		{"threads0-blocks", []string{"-1", "-T0", "--block-size=64KiB"}, true},
		{"T2-odd-blocks", []string{"-1", "-T2", "--block-size=50001"}, true},
		{"level6-small-blocks", []string{"-6", "-T2", "--block-size=40KiB"}, true},
		{"crc32", []string{"-1", "-C", "crc32", "-T2", "--block-size=64KiB"}, true},
		{"crc64", []string{"-1", "-C", "crc64", "-T2", "--block-size=64KiB"}, true},
		{"sha256", []string{"-1", "-C", "sha256", "-T2", "--block-size=64KiB"}, true},
		{"none", []string{"-1", "-C", "none", "-T2", "--block-size=64KiB"}, true},
		{"single-threaded", []string{"-T1", "-1"}, false},
		{"threads-one-block", []string{"-T0", "-1"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			xzData := xzCompress(t, data, tc.args...)
			for _, workers := range []int{0, 1, 2, 3, 16} {
				o := Options{Workers: workers}
				got, st, err := decodeAll(t, xzData, o)
				if err != nil {
					t.Fatalf("workers=%d: %v", workers, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("workers=%d: decoded %d bytes differ from the %d bytes compressed", workers, len(got), len(data))
				}
				if st.workers == 0 || st.streamed > 0 {
					t.Errorf("workers=%d: %+v, want every block decoded whole by workers", workers, st)
				}
				got, st, err = decodeStream(t, xzData, o)
				if err != nil {
					t.Fatalf("stream, workers=%d: %v", workers, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("stream, workers=%d: decoded %d bytes differ from the %d bytes compressed", workers, len(got), len(data))
				}
				// xz --threads writes sizes in block headers, so
				// workers decode them whole; xz -T1 does not, so
				// its block is decoded as read.
				if want := (decodeStats{0, 1}); !tc.sizes && st != want {
					t.Errorf("stream, workers=%d: %+v, want %+v", workers, st, want)
				}
				if tc.sizes && (st.workers == 0 || st.streamed > 0) {
					t.Errorf("stream, workers=%d: %+v, want every block decoded whole by workers", workers, st)
				}
			}
		})
	}
}

func TestSmallInputs(t *testing.T) {
	for _, data := range [][]byte{{}, {'x'}, bytes.Repeat([]byte{'a'}, 100_000)} {
		for _, args := range [][]string{{"-T1"}, {"-T2", "--block-size=4096"}} {
			file := xzCompress(t, data, args...)
			got, _, err := decodeAll(t, file, Options{Workers: 2})
			if err != nil {
				t.Fatalf("%d bytes, xz %v: %v", len(data), args, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%d bytes, xz %v: got %d bytes", len(data), args, len(got))
			}
			got, _, err = decodeStream(t, file, Options{Workers: 2})
			if err != nil {
				t.Fatalf("stream, %d bytes, xz %v: %v", len(data), args, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("stream, %d bytes, xz %v: got %d bytes", len(data), args, len(got))
			}
		}
	}
}

func TestConcatenatedStreamsAndPadding(t *testing.T) {
	data := sampleData()
	a, b := data[:100_000], data[100_000:]
	xa := xzCompress(t, a, "-T1", "-C", "crc32")
	xb := xzCompress(t, b, "-T2", "--block-size=30000", "-C", "sha256")
	empty := xzCompress(t, nil)
	pad := make([]byte, 8)
	tests := []struct {
		name  string
		parts [][]byte
		want  []byte
	}{
		{"two streams", [][]byte{xa, xb}, data},
		{"padding between and after", [][]byte{xa, pad, xb, pad[:4]}, data},
		{"empty stream in the middle", [][]byte{xa, empty, pad, xb}, data},
		{"single-block streams", [][]byte{xa, xa}, append(append([]byte(nil), a...), a...)},
		{"only an empty stream", [][]byte{empty}, nil},
		{"empty streams and padding", [][]byte{empty, pad, empty, pad}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := bytes.Join(tc.parts, nil)
			got, _, err := decodeAll(t, file, Options{Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(tc.want))
			}
			got, _, err = decodeStream(t, file, Options{Workers: 2})
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("stream: got %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}
}

// ulikunitzFile compresses data with ulikunitz/xz in blocks of blockSize;
// its block headers carry no sizes, so only the index has them.
func ulikunitzFile(t testing.TB, data []byte, blockSize int64, check byte) []byte {
	var buf bytes.Buffer
	w, err := xz.WriterConfig{BlockSize: blockSize, CheckSum: check, DictCap: 1 << 16}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTripUlikunitzWriter(t *testing.T) {
	data := sampleData()
	for _, check := range []byte{xz.CRC32, xz.CRC64, xz.SHA256, xz.None} {
		file := ulikunitzFile(t, data, 20_000, check)
		got, st, err := decodeAll(t, file, Options{Workers: 3})
		if err != nil {
			t.Fatalf("check %#x: %v", check, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("check %#x: got %d bytes, want %d", check, len(got), len(data))
		}
		if st.streamed > 0 {
			t.Errorf("check %#x: %+v, want every block decoded whole", check, st)
		}
		// Without sizes in the headers, a stream is decoded as read.
		got, st, err = decodeStream(t, file, Options{Workers: 3})
		if err != nil || !bytes.Equal(got, data) || st.workers != 0 {
			t.Fatalf("stream, check %#x: %d bytes, %+v, err %v", check, len(got), st, err)
		}
	}
}

func TestNotXZ(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte("not an xz file "), 100)} {
		_, err := NewReader(bytes.NewReader(data), int64(len(data)), Options{})
		if err == nil || !strings.HasPrefix(err.Error(), "xz: ") {
			t.Errorf("%q...: err = %v, want an xz error", data[:min(len(data), 8)], err)
		}
	}
}

// mustFail decodes data and checks the error starts with "xz: " and
// contains want.
func mustFail(t *testing.T, data []byte, o Options, want string) {
	t.Helper()
	_, _, err := decodeAll(t, data, o)
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.HasPrefix(err.Error(), "xz: ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %q, want an xz error containing %q", err, want)
	}
}

func TestTrailingGarbage(t *testing.T) {
	file := xzCompress(t, sampleData(), "-T2", "--block-size=64KiB")
	mustFail(t, append(file, "junk"...), Options{}, "no stream footer")
	mustFail(t, append(file, "junk!"...), Options{}, "not a multiple of four")
	mustFail(t, append(make([]byte, 4), file...), Options{}, "not an xz file")
}

func TestTruncated(t *testing.T) {
	data := sampleData()[:40_000]
	for _, file := range [][]byte{
		xzCompress(t, data, "-T2", "--block-size=10000"),
		xzCompress(t, data, "-T1"),
	} {
		for n := 0; n < len(file); n++ {
			_, _, err := decodeAll(t, file[:n], Options{Workers: 2})
			if err == nil || !strings.HasPrefix(err.Error(), "xz: ") {
				t.Fatalf("truncated to %d of %d bytes: err = %v, want an xz error", n, len(file), err)
			}
		}
	}
}

func TestCorruptBlock(t *testing.T) {
	// Random bytes are stored in uncompressed LZMA2 chunks, so a flipped
	// byte there decodes fine and only the check can catch it.
	data := make([]byte, 200_000)
	x := uint32(12345)
	for i := range data {
		x = x*1664525 + 1013904223
		data[i] = byte(x >> 24)
	}
	for _, check := range []string{"crc32", "crc64", "sha256"} {
		t.Run(check, func(t *testing.T) {
			file := xzCompress(t, data, "-T2", "--block-size=50000", "-C", check)
			blocks := blocksOf(t, file)
			b := blocks[2]
			name := map[string]string{"crc32": "CRC32", "crc64": "CRC64", "sha256": "SHA-256"}[check]

			bad := bytes.Clone(file)
			bad[b.dataOffset()+b.compressedSize/2] ^= 0x55
			mustFail(t, bad, Options{Workers: 2}, "block 2 at offset")
			mustFail(t, bad, Options{Workers: 2}, name+" check mismatch")

			bad = bytes.Clone(file)
			bad[b.paddedEnd()-1] ^= 1 // the stored check itself
			mustFail(t, bad, Options{Workers: 2}, "block 2 at offset")
			mustFail(t, bad, Options{Workers: 2}, name+" check mismatch")
		})
	}

	// Damage to compressed data breaks the LZMA2 decoder or the sizes.
	file := xzCompress(t, sampleData(), "-T2", "--block-size=64KiB")
	b := blocksOf(t, file)[1]
	bad := bytes.Clone(file)
	for i := int64(10); i < b.compressedSize-10; i += 97 {
		bad[b.dataOffset()+i] ^= 0xff
	}
	mustFail(t, bad, Options{Workers: 2}, "block 1 at offset")

	// Non-zero block padding.
	for _, blk := range blocksOf(t, file) {
		if pad4(blk.headerSize+blk.compressedSize) > blk.headerSize+blk.compressedSize {
			bad := bytes.Clone(file)
			bad[blk.dataOffset()+blk.compressedSize] = 1
			mustFail(t, bad, Options{Workers: 2}, "non-zero block padding")
			return
		}
	}
	t.Error("no block with padding to corrupt")
}

func TestCorruptHeaders(t *testing.T) {
	file := xzCompress(t, sampleData(), "-T2", "--block-size=64KiB")
	blocks := blocksOf(t, file)
	s := lastStream(t, file)
	tests := []struct {
		name   string
		modify func(f []byte)
		want   string
	}{
		{"stream header CRC", func(f []byte) { f[8] ^= 1 }, "stream header at offset 0: CRC32 mismatch"},
		{"stream flags", func(f []byte) {
			f[7] = 0x20
			binary.LittleEndian.PutUint32(f[8:], crc32.ChecksumIEEE(f[6:8]))
		}, "header and footer flags differ"},
		{"footer CRC", func(f []byte) { f[len(f)-12] ^= 1 }, "stream footer at offset"},
		{"footer flags", func(f []byte) {
			f[len(f)-4] = 1
			binary.LittleEndian.PutUint32(f[len(f)-12:], crc32.ChecksumIEEE(f[len(f)-8:len(f)-2]))
		}, "unsupported stream flags"},
		{"backward size", func(f []byte) {
			binary.LittleEndian.PutUint32(f[len(f)-8:], 1<<30)
			binary.LittleEndian.PutUint32(f[len(f)-12:], crc32.ChecksumIEEE(f[len(f)-8:len(f)-2]))
		}, "exceeds the stream"},
		{"index CRC", func(f []byte) { f[s.indexStart+s.indexSize-1] ^= 1 }, "index at offset"},
		{"index indicator", func(f []byte) { f[s.indexStart] = 1 }, "bad index indicator"},
		{"block header CRC", func(f []byte) { f[blocks[1].offset+2] ^= 1 }, "block 1 at offset"},
		{"block flags", func(f []byte) {
			f[blocks[1].offset+1] |= 0x04
			fixHeaderCRC(f, blocks[1].offset)
		}, "unsupported block flags"},
		{"index indicator as block", func(f []byte) { f[blocks[2].offset] = 0 }, "index indicator where the index puts a block"},
		{"LZMA2 properties", func(f []byte) {
			h := f[blocks[0].offset:]
			i := bytes.Index(h[:blocks[0].headerSize], []byte{0x21, 0x01})
			h[i+2] = 41
			fixHeaderCRC(f, blocks[0].offset)
		}, "invalid LZMA2 properties 29"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := bytes.Clone(file)
			tc.modify(bad)
			mustFail(t, bad, Options{Workers: 2}, tc.want)
		})
	}
}

func TestLyingIndex(t *testing.T) {
	data := sampleData()
	// xz writes sizes in block headers too: they must agree with the index.
	file := xzCompress(t, data, "-T2", "--block-size=64KiB")
	recs := lastStream(t, file).records
	lie := append([]record(nil), recs...)
	lie[1].uncompressed++
	mustFail(t, withIndex(t, file, lie), Options{}, "uncompressed size 65536 in the header, 65537 in the index")

	lie = append([]record(nil), recs...)
	lie[1].unpadded += 4
	mustFail(t, withIndex(t, file, lie), Options{}, "xz: ")

	lie = append([]record(nil), recs...)
	lie = append(lie, record{100, 100})
	mustFail(t, withIndex(t, file, lie), Options{}, "xz: ")

	// ulikunitz/xz writes no sizes in block headers: only decoding can
	// tell the index lies.
	file = ulikunitzFile(t, data, 20_000, xz.CRC64)
	recs = lastStream(t, file).records
	k := slices.IndexFunc(recs, func(r record) bool { return r.unpadded%4 >= 2 })
	if k < 0 {
		t.Fatal("no block with two bytes of padding")
	}
	for _, tc := range []struct {
		name   string
		modify func(r []record)
		want   string
	}{
		{"longer", func(r []record) { r[3].uncompressed++ }, "block 3 at offset"},
		{"shorter", func(r []record) { r[3].uncompressed-- }, "more data than the 19999 bytes the index says"},
		// Moving a block's end within its padding keeps the next
		// header in place.
		{"compressed larger", func(r []record) { r[k].unpadded++ }, "bytes of compressed data, but the index says"},
		{"compressed smaller", func(r []record) { r[k].unpadded-- }, "compressed data runs past"},
		{"boundary moved", func(r []record) { r[3].unpadded += 4; r[4].unpadded -= 4 }, "block 4 at offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lie := append([]record(nil), recs...)
			tc.modify(lie)
			mustFail(t, withIndex(t, file, lie), Options{Workers: 2}, tc.want)
		})
	}
}

func TestHugeDeclaredSizes(t *testing.T) {
	data := sampleData()
	file := ulikunitzFile(t, data, 20_000, xz.CRC64)
	recs := lastStream(t, file).records

	measure := allocated

	// A block bigger than the budget is decoded as a stream, which
	// needs no block buffer and finds the lie.
	lie := append([]record(nil), recs...)
	lie[2].uncompressed = 1 << 50
	alloc := measure(func() {
		mustFail(t, withIndex(t, file, lie), Options{Workers: 2}, "block 2 at offset 17296: less data than the 1125899906842624 bytes the index says (20000)")
	})
	if alloc > 64<<20 {
		t.Errorf("allocated %d bytes for a lying index", alloc)
	}

	// Buffers are what the budget allows, whatever the index declares.
	lie = append([]record(nil), recs...)
	for i := range lie {
		lie[i].uncompressed = 200 << 20
	}
	alloc = measure(func() {
		mustFail(t, withIndex(t, file, lie), Options{Workers: 8, MemoryBudget: 64 << 20}, "less data than the 209715200 bytes the index says")
	})
	if alloc > 64<<20 {
		t.Errorf("allocated %d bytes for blocks declared at 200 MiB", alloc)
	}

	lie = append([]record(nil), recs...)
	lie[1].uncompressed = 1 << 62
	lie[2].uncompressed = 1 << 62
	mustFail(t, withIndex(t, file, lie), Options{}, "total uncompressed size overflows")

	lie = append([]record(nil), recs...)
	lie[1].unpadded = 1 << 62
	mustFail(t, withIndex(t, file, lie), Options{}, "does not fit in the file")

	// A 4 GiB dictionary in a small block costs no more than the block.
	huge := bytes.Clone(file)
	for _, b := range blocksOf(t, file) {
		h := huge[b.offset:]
		i := bytes.Index(h[:b.headerSize], []byte{0x21, 0x01})
		h[i+2] = 40
		fixHeaderCRC(huge, b.offset)
	}
	alloc = measure(func() {
		got, _, err := decodeAll(t, huge, Options{Workers: 2})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("4 GiB dictionary: err=%v", err)
		}
		// Decoded as streams, too.
		got, _, err = decodeAll(t, huge, Options{Workers: 2, MemoryBudget: 4200 << 10})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("4 GiB dictionary, as streams: err=%v", err)
		}
	})
	if alloc > 64<<20 {
		t.Errorf("allocated %d bytes for a 4 GiB dictionary", alloc)
	}

	// More blocks than the decoder keeps track of.
	many := make([]record, maxBlocks+1)
	for i := range many {
		many[i] = record{8, 1}
	}
	mustFail(t, withIndex(t, file, many), Options{}, "more than 65536 blocks")

	// A record count that cannot fit in the index.
	s := lastStream(t, file)
	bad := bytes.Clone(file)
	idx := bad[s.indexStart:]
	idx[1], idx[2], idx[3] = 0xff, 0xff, 0x7f
	mustFail(t, bad, Options{}, "xz: index at offset")
}

func TestUnsupportedFilters(t *testing.T) {
	data := sampleData()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-T2", "--block-size=64KiB", "--x86", "--lzma2"}, "block 0 at offset 12: unsupported filter chain x86 BCJ (ID 0x4) + LZMA2 (ID 0x21): only LZMA2 alone is supported"},
		{[]string{"-T1", "--delta=dist=4", "--lzma2"}, "block 0 at offset 12: unsupported filter chain Delta (ID 0x3) + LZMA2 (ID 0x21)"},
		{[]string{"-T1", "--arm64", "--lzma2"}, "unsupported filter chain ARM64 BCJ (ID 0xa) + LZMA2"},
	} {
		file := xzCompress(t, data, tc.args...)
		mustFail(t, file, Options{}, tc.want)
		mustFailStream(t, file, Options{}, tc.want)
		if _, err := Stat(bytes.NewReader(file), int64(len(file))); !errors.Is(err, ErrUnsupported) {
			t.Errorf("xz %v: Stat: %v, want ErrUnsupported", tc.args, err)
		}
	}
}

// TestMemoryBudget decodes blocks too large for the budget as streams, in
// workers, refuses blocks that do not fit even so, and never maps more
// buffers than the budget, whatever the number of workers.
func TestMemoryBudget(t *testing.T) {
	data := tarLike(12<<20, 5)
	// 5 MiB blocks with a 1 MiB dictionary: about 6.2 MiB whole, 5 MiB
	// and 15 bytes as a stream (1 MiB of dictionary, 2 MiB for a chunk,
	// two pieces of 1 MiB); the last block is 2 MiB.
	file := xzCompress(t, data, "-1", "-T2", "--block-size=5MiB")
	for _, tc := range []struct {
		budget   int64
		streamed int64
	}{
		{0, 0},
		{13 << 20, 0}, // whole, two at a time
		{7 << 20, 0},  // whole, one at a time
		{6 << 20, 2},  // as streams, but the last
	} {
		for _, workers := range []int{1, 16} {
			o := Options{Workers: workers, MemoryBudget: tc.budget}
			arenaPeak.Store(arenaInUse.Load())
			got, st, err := decodeAll(t, file, o)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("budget %d, %d workers: %d bytes, %v", tc.budget, workers, len(got), err)
			}
			if st.streamed != tc.streamed {
				t.Errorf("budget %d, %d workers: %d blocks decoded as streams, want %d", tc.budget, workers, st.streamed, tc.streamed)
			}
			if peak := arenaPeak.Load(); tc.budget > 0 && peak > tc.budget {
				t.Errorf("budget %d, %d workers: %d bytes of buffers", tc.budget, workers, peak)
			}
			arenaPeak.Store(arenaInUse.Load())
			got, _, err = decodeStream(t, file, o)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("stream: budget %d, %d workers: %d bytes, %v", tc.budget, workers, len(got), err)
			}
			if peak := arenaPeak.Load(); tc.budget > 0 && peak > tc.budget {
				t.Errorf("stream: budget %d, %d workers: %d bytes of buffers", tc.budget, workers, peak)
			}
		}
	}

	// Under 5 MiB, pieces of output are smaller: 3 MiB and 15 bytes
	// for the window, 128 KiB for pieces.
	got, st, err := decodeAll(t, file, Options{MemoryBudget: 5<<20 - 1})
	if err != nil || !bytes.Equal(got, data) || st.streamed != 2 {
		t.Errorf("budget of 5 MiB less 1: %d bytes, %+v, %v", len(got), st, err)
	}
	// Under 3 MiB and 128 KiB (and 15 bytes), the 5 MiB blocks cannot
	// be decoded.
	want := "block 0 at offset 12: LZMA2 dictionary of 1048576 bytes needs 3276815 bytes of memory, more than the memory budget of 3276814"
	_, err = NewReader(bytes.NewReader(file), int64(len(file)), Options{MemoryBudget: 3276814})
	var le *LimitError
	if !errors.As(err, &le) || err.Error() != "xz: "+want {
		t.Errorf("NewReader: %v, want a *LimitError %q", err, want)
	}
	_, _, err = decodeStream(t, file, Options{MemoryBudget: 3276814})
	if !errors.As(err, &le) || err.Error() != "xz: "+want {
		t.Errorf("NewStreamReader: %v, want a *LimitError %q", err, want)
	}
}

func TestCloseEarly(t *testing.T) {
	data := tarLike(6<<20, 11)
	blocks := xzCompress(t, data, "-0", "-T2", "--block-size=256KiB")
	one := xzCompress(t, data, "-0", "-T1")
	for _, tc := range []struct {
		name   string
		file   []byte
		budget int64
	}{
		{"blocks", blocks, 0},
		{"one block", one, 0},
		{"one block as a stream", one, 5 << 20},
	} {
		file := tc.file
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			for _, readFirst := range []int{0, 1, 300_000, 2 << 20} {
				r, err := NewReader(bytes.NewReader(file), int64(len(file)), Options{Workers: 4, MemoryBudget: tc.budget})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(r, make([]byte, readFirst)); err != nil {
					t.Fatal(err)
				}
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
				if err := r.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				if _, err := r.Read(make([]byte, 1<<20)); !errors.Is(err, errClosed) && readFirst == 0 {
					t.Fatalf("Read after Close: %v", err)
				}
				waitGoroutines(t, base)
				if pr, ok := r.(*parallelReader); ok && pr.arena.buffers() != 0 {
					t.Fatalf("%d buffers left after Close", pr.arena.buffers())
				}
			}

			// Close while a Read is waiting for a block.
			r, err := NewReader(bytes.NewReader(file), int64(len(file)), Options{Workers: 1, MemoryBudget: tc.budget})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error)
			go func() {
				_, err := io.Copy(io.Discard, r)
				done <- err
			}()
			r.Close()
			if err := <-done; err != nil && !errors.Is(err, errClosed) {
				t.Fatalf("Read during Close: %v", err)
			}
			waitGoroutines(t, base)
		})
	}
}

func TestErrorIsSticky(t *testing.T) {
	file := xzCompress(t, sampleData(), "-T2", "--block-size=64KiB")
	b := blocksOf(t, file)[1]
	file[b.paddedEnd()-1] ^= 1
	base := runtime.NumGoroutine()
	r, err := NewReader(bytes.NewReader(file), int64(len(file)), Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	n, err1 := io.Copy(io.Discard, r)
	if err1 == nil || n != 65536 {
		t.Fatalf("copied %d bytes, err %v; want the first block then an error", n, err1)
	}
	if _, err2 := r.Read(make([]byte, 10)); err2 != err1 {
		t.Fatalf("second Read: %v, want %v", err2, err1)
	}
	r.Close()
	waitGoroutines(t, base)
	if n := r.(*parallelReader).arena.buffers(); n != 0 {
		t.Fatalf("%d buffers left after Close", n)
	}
}

// TestBlocksInFlight checks that blocks decoded ahead of Read are bounded
// by the workers (at least two), whatever the budget allows.
func TestBlocksInFlight(t *testing.T) {
	file := xzCompress(t, sampleData(), "-T2", "--block-size=16KiB")
	for _, workers := range []int{1, 2, 5} {
		arenaPeak.Store(arenaInUse.Load())
		r, err := NewReader(bytes.NewReader(file), int64(len(file)), Options{Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		var p [1000]byte
		for {
			_, err := r.Read(p[:])
			time.Sleep(10 * time.Microsecond) // a slow reader
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		r.Close()
		// A block's output and compressed data (at most 16 KiB and a
		// little), for each block in flight and as many kept for reuse.
		slots := max(workers, 2)
		if peak, want := arenaPeak.Load(), int64(slots*2*17<<10+3*slots*17<<10); peak > want {
			t.Errorf("workers=%d: %d bytes of buffers, want at most %d", workers, peak, want)
		}
	}
}

func TestProgress(t *testing.T) {
	for _, args := range [][]string{{"-T2", "--block-size=64KiB"}, {"-T1"}} {
		file := xzCompress(t, sampleData(), args...)
		var calls []int64
		o := Options{Workers: 2, Progress: func(n int64) { calls = append(calls, n) }}
		if _, _, err := decodeAll(t, file, o); err != nil {
			t.Fatal(err)
		}
		if len(calls) == 0 {
			t.Fatalf("xz %v: no progress reported", args)
		}
		for i := 1; i < len(calls); i++ {
			if calls[i] < calls[i-1] {
				t.Fatalf("xz %v: progress went back: %v", args, calls)
			}
		}
		if last := calls[len(calls)-1]; last <= 0 || last > int64(len(file)) {
			t.Fatalf("xz %v: last progress %d of %d", args, last, len(file))
		}
	}
}

func TestStat(t *testing.T) {
	data := sampleData()
	file := bytes.Join([][]byte{
		xzCompress(t, data[:100_000], "-1", "-T1"),
		make([]byte, 4),
		xzCompress(t, data[100_000:], "-1", "-T2", "--block-size=64KiB"),
	}, nil)
	info, err := Stat(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Blocks: 1 + (len(data)-100_000+65535)/65536, Size: int64(len(data)), MaxBlockSize: 100_000}
	if info != want {
		t.Errorf("Stat = %+v, want %+v", info, want)
	}
	if _, err := Stat(bytes.NewReader(file[:len(file)-1]), int64(len(file)-1)); err == nil || !strings.HasPrefix(err.Error(), "xz: ") {
		t.Errorf("Stat of a truncated file: %v", err)
	}
}

package xzpar

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ulikunitz/xz"
)

// mustFailStream decodes data with NewStreamReader and checks the error
// starts with "xz: " and contains want.
func mustFailStream(t *testing.T, data []byte, o Options, want string) {
	t.Helper()
	_, _, err := decodeStream(t, data, o)
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.HasPrefix(err.Error(), "xz: ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %q, want an xz error containing %q", err, want)
	}
}

func TestStreamNotXZ(t *testing.T) {
	for data, want := range map[string]string{
		"":                       "file is truncated",
		"\xfd7z":                 "file is truncated",
		"hello, this is not xz":  "not an xz file",
		"\xfd7zXZ\x00\x00\x04xx": "file is truncated",
	} {
		mustFailStream(t, []byte(data), Options{}, want)
	}
}

func TestStreamTruncated(t *testing.T) {
	data := sampleData()[:40_000]
	for _, file := range [][]byte{
		xzCompress(t, data, "-1", "-T2", "--block-size=10000"),
		xzCompress(t, data, "-1", "-T1"),
	} {
		// Every cut in the headers at both ends, some in the data (each
		// decodes what comes before it).
		for n := 0; n < len(file); n++ {
			if n > 300 && n < len(file)-300 && n%61 != 0 {
				continue
			}
			_, _, err := decodeStream(t, file[:n], Options{Workers: 2})
			if err == nil || !strings.HasPrefix(err.Error(), "xz: ") {
				t.Fatalf("truncated to %d of %d bytes: err = %v, want an xz error", n, len(file), err)
			}
		}
	}
}

func TestStreamTrailingData(t *testing.T) {
	file := xzCompress(t, sampleData(), "-1", "-T2", "--block-size=64KiB")
	mustFailStream(t, append(bytes.Clone(file), "junk"...), Options{}, "no stream header at offset")
	mustFailStream(t, append(bytes.Clone(file), "ju"...), Options{}, "2 bytes of trailing data")
	mustFailStream(t, append(bytes.Clone(file), 0, 0, 0, 0, 0), Options{}, "1 bytes of trailing data")
}

func TestStreamCorrupt(t *testing.T) {
	// Random bytes end up in uncompressed LZMA2 chunks, where only the
	// check catches a flipped byte.
	data := make([]byte, 200_000)
	x := uint32(99)
	for i := range data {
		x = x*1664525 + 1013904223
		data[i] = byte(x >> 24)
	}
	for _, args := range [][]string{
		{"-1", "-T2", "--block-size=50000", "-C", "crc32"}, // blocks in workers
		{"-1", "-T1", "-C", "sha256"},                      // one block, decoded as read
	} {
		file := xzCompress(t, data, args...)
		blocks := blocksOf(t, file)
		b := blocks[len(blocks)-1]
		bad := bytes.Clone(file)
		bad[b.dataOffset()+b.compressedSize/2] ^= 0x55
		mustFailStream(t, bad, Options{Workers: 2}, "check mismatch")
		bad = bytes.Clone(file)
		bad[b.paddedEnd()-1] ^= 1
		mustFailStream(t, bad, Options{Workers: 2}, "check mismatch")
	}

	file := xzCompress(t, sampleData(), "-1", "-T2", "--block-size=64KiB")
	b := blocksOf(t, file)[1]
	bad := bytes.Clone(file)
	bad[b.offset+2] ^= 1
	mustFailStream(t, bad, Options{Workers: 2}, "block 1 at offset")
	mustFailStream(t, bad, Options{Workers: 2}, "header CRC32 mismatch")

	bad = bytes.Clone(file)
	bad[8] ^= 1
	mustFailStream(t, bad, Options{}, "stream header at offset 0: CRC32 mismatch")
	bad = bytes.Clone(file)
	bad[len(bad)-12] ^= 1
	mustFailStream(t, bad, Options{}, "stream footer at offset")

	s := lastStream(t, file)
	bad = bytes.Clone(file)
	bad[s.indexStart+s.indexSize-1] ^= 1
	mustFailStream(t, bad, Options{}, "index at offset")

	// Output before an error comes out first, in order.
	bad = bytes.Clone(file)
	bad[b.paddedEnd()-1] ^= 1
	r, err := NewStreamReader(bytes.NewReader(bad), Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	r.Close()
	if n != 65536 || err == nil || !strings.Contains(err.Error(), "block 1 at offset") {
		t.Fatalf("copied %d bytes, err %v; want block 0 then block 1's error", n, err)
	}
}

func TestStreamLyingIndex(t *testing.T) {
	data := sampleData()
	for _, file := range [][]byte{
		xzCompress(t, data, "-1", "-T2", "--block-size=64KiB"),
		ulikunitzFile(t, data, 20_000, xz.CRC64),
	} {
		recs := lastStream(t, file).records
		lie := append([]record(nil), recs...)
		lie[1].uncompressed++
		mustFailStream(t, withIndex(t, file, lie), Options{Workers: 2}, "record 1 says")
		mustFailStream(t, withIndex(t, file, recs[1:]), Options{Workers: 2}, "records for")
		mustFailStream(t, withIndex(t, file, append(recs, record{8, 1})), Options{Workers: 2}, "records for")

		// A footer that disagrees with the index's size.
		bad := bytes.Clone(file)
		binary.LittleEndian.PutUint32(bad[len(bad)-8:], binary.LittleEndian.Uint32(bad[len(bad)-8:])+1)
		binary.LittleEndian.PutUint32(bad[len(bad)-12:], crc32.ChecksumIEEE(bad[len(bad)-8:len(bad)-2]))
		mustFailStream(t, bad, Options{Workers: 2}, "but the index has")
	}
}

// withHeaderSizes returns file with the header of block b (one with both
// sizes) replaced by one declaring the given sizes.
func withHeaderSizes(t *testing.T, file []byte, b block, compressed, uncompressed uint64) []byte {
	t.Helper()
	return withHeader(t, file, b, int64(compressed), int64(uncompressed))
}

// withHeader returns file with the header of block b (one with both
// sizes) replaced by one declaring the given sizes, -1 for none.
func withHeader(t *testing.T, file []byte, b block, compressed, uncompressed int64) []byte {
	t.Helper()
	old := file[b.offset : b.offset+b.headerSize]
	if old[1]&0xc0 != 0xc0 {
		t.Fatal("header without both sizes")
	}
	r := bytes.NewReader(old[2 : len(old)-4])
	readVLI(r)
	readVLI(r)
	filters := old[len(old)-4-r.Len() : len(old)-4]
	h := []byte{0, old[1] &^ 0xc0}
	if compressed >= 0 {
		h[1] |= 0x40
		h = putVLI(h, uint64(compressed))
	}
	if uncompressed >= 0 {
		h[1] |= 0x80
		h = putVLI(h, uint64(uncompressed))
	}
	h = append(h, filters...) // with the old padding, trimmed below
	h = bytes.TrimRight(h, "\x00")
	for (len(h)+4)%4 != 0 {
		h = append(h, 0)
	}
	h[0] = byte((len(h)+4)/4 - 1)
	h = binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(h))
	out := append([]byte(nil), file[:b.offset]...)
	out = append(out, h...)
	return append(out, file[b.offset+b.headerSize:]...)
}

func TestStreamHeaderSizes(t *testing.T) {
	data := sampleData()
	file := xzCompress(t, data, "-1", "-T2", "--block-size=64KiB")
	b := blocksOf(t, file)[1]

	measure := allocated
	// Blocks claiming to be huge are decoded as streams, not buffered.
	bad := withHeaderSizes(t, file, b, uint64(b.compressedSize), 1<<41+65536)
	alloc := measure(func() {
		mustFailStream(t, bad, Options{Workers: 2}, "block 1 at offset 26520: less data than the 2199023321088 bytes the header says (65536)")
	})
	if alloc > 64<<20 {
		t.Errorf("allocated %d bytes for a block claiming 2 TiB", alloc)
	}
	bad = withHeaderSizes(t, file, b, 1<<41, 65536)
	alloc = measure(func() {
		mustFailStream(t, bad, Options{Workers: 2}, "block 1 at offset 26520: 22196 bytes of compressed data, but the header says 2199023255552")
	})
	if alloc > 64<<20 {
		t.Errorf("allocated %d bytes for a block claiming 2 TiB of compressed data", alloc)
	}
	// Sizes off by a little are caught by the worker.
	if _, _, err := decodeStream(t, withHeaderSizes(t, file, b, uint64(b.compressedSize), 65536), Options{}); err != nil {
		t.Fatalf("header rewritten with its own sizes: %v", err)
	}
	bad = withHeaderSizes(t, file, b, uint64(b.compressedSize), 65535)
	mustFailStream(t, bad, Options{Workers: 2}, "more data than the 65535 bytes")
	bad = withHeaderSizes(t, file, b, uint64(b.compressedSize-1), 65536)
	mustFailStream(t, bad, Options{Workers: 2}, "block 1 at offset")

	// A 4 GiB dictionary is refused when it would be allocated: in a
	// block without sizes.
	one := xzCompress(t, data[:1000], "-T1")
	ob := blocksOf(t, one)[0]
	i := bytes.Index(one[ob.offset:ob.offset+ob.headerSize], []byte{0x21, 0x01})
	one[ob.offset+int64(i)+2] = 40
	fixHeaderCRC(one, ob.offset)
	mustFailStream(t, one, Options{}, "block 0 at offset 12: LZMA2 dictionary of 4294967295 bytes needs 4297195534 bytes of memory, more than the memory budget of")
}

func TestStreamUnsupported(t *testing.T) {
	data := sampleData()
	file := xzCompress(t, data, "-T2", "--block-size=64KiB", "--x86", "--lzma2=preset=1")
	mustFailStream(t, file, Options{}, "block 0 at offset 12: unsupported filter chain x86 BCJ (ID 0x4) + LZMA2 (ID 0x21)")
	file = xzCompress(t, data, "-1", "-T2", "--block-size=64KiB", "--check=crc32")
	// Check ID 2 is reserved (4 bytes, like CRC32): valid, but unknown.
	file[7] = 0x02
	binary.LittleEndian.PutUint32(file[8:], crc32.ChecksumIEEE(file[6:8]))
	mustFailStream(t, file, Options{}, "stream header at offset 0: unsupported check ID 0x2")
}

func TestStreamReadError(t *testing.T) {
	file := xzCompress(t, sampleData(), "-1", "-T2", "--block-size=64KiB")
	boom := errors.New("connection reset")
	for _, cut := range []int{3, 100, len(file) / 2, len(file) - 10} {
		r, err := NewStreamReader(io.MultiReader(bytes.NewReader(file[:cut]), iotest.ErrReader(boom)), Options{Workers: 2})
		if err != nil {
			if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "xz: ") {
				t.Fatalf("cut at %d: NewStreamReader: %v", cut, err)
			}
			continue
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		if !strings.HasPrefix(err.Error(), "xz: ") || !strings.Contains(err.Error(), "connection reset") {
			t.Fatalf("cut at %d: err = %v, want the read error, from xz", cut, err)
		}
	}
}

func TestStreamCloseEarly(t *testing.T) {
	data := tarLike(3<<20, 11)
	for name, file := range map[string][]byte{
		"workers": xzCompress(t, data, "-0", "-T2", "--block-size=256KiB"),
		"as read": xzCompress(t, data, "-0", "-T1"),
		// 3 MiB whole, 2.3 MiB as a stream (with a dictionary of 256 KiB)
		"streams in workers": xzCompress(t, data, "-0", "-T2", "--block-size=3MiB"),
	} {
		t.Run(name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			for _, readFirst := range []int{0, 1, 300_000, 2 << 20} {
				r, err := NewStreamReader(bytes.NewReader(file), Options{Workers: 4})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(r, make([]byte, readFirst)); err != nil {
					t.Fatal(err)
				}
				r.Close()
				if _, err := r.Read(make([]byte, 10)); !errors.Is(err, errClosed) {
					t.Fatalf("Read after Close: %v", err)
				}
				waitGoroutines(t, base)
				if n := r.(*parallelReader).arena.buffers(); n != 0 {
					t.Fatalf("%d buffers left after Close", n)
				}
			}
			// Close while the input is stalled: Close returns, and the
			// goroutine reading the input ends when that Read does.
			pr, pw := io.Pipe()
			r, err := NewStreamReader(io.MultiReader(bytes.NewReader(file[:len(file)/2]), pr), Options{Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error)
			go func() {
				_, err := io.Copy(io.Discard, r)
				done <- err
			}()
			r.Close()
			if err := <-done; !errors.Is(err, errClosed) {
				t.Fatalf("Read during Close: %v", err)
			}
			pw.CloseWithError(errors.New("gone"))
			waitGoroutines(t, base)
			// The parser held buffers until it returned.
			if n := r.(*parallelReader).arena.buffers(); n != 0 {
				t.Fatalf("%d buffers left after the parser returned", n)
			}
		})
	}
}

// TestStreamDecodesWhileArriving: a block whose data is still arriving is
// already being decoded by an idle worker, so that little is left to do
// after the last byte of a download. The input stalls in the middle of
// the first block until a worker waits for it there.
func TestStreamDecodesWhileArriving(t *testing.T) {
	data := tarLike(1<<20, 5)
	file := xzCompress(t, data, "-1", "-T2", "--block-size=512KiB")
	b := blocksOf(t, file)[0]
	mid := b.dataOffset() + b.compressedSize/2
	pr, pw := io.Pipe()
	// NewStreamReader reads the stream header, so the writer starts first
	// and learns the reader through a channel.
	started := make(chan *parallelReader, 1)
	go func() {
		arriveAndStall(pw, file[:mid], started)
		pw.Write(file[mid:])
		pw.Close()
	}()
	rc, err := NewStreamReader(pr, Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r := rc.(*parallelReader)
	started <- r
	out, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, data) {
		t.Fatal("output differs from the input")
	}
	if r.arrivingBlocks.Load() == 0 {
		t.Error("no block was decoded while its data arrived")
	}
}

// trickle writes p to w in pieces of 4 KiB, as a download arrives: a block
// goes to a worker at the first read after one is idle, and one read of
// all of it could come before the workers have started.
func trickle(w io.Writer, p []byte) {
	for len(p) > 0 {
		n := min(len(p), 4096)
		w.Write(p[:n])
		p = p[n:]
		time.Sleep(100 * time.Microsecond)
	}
}

// arriveAndStall trickles head into w, then stalls until the reader sent
// on started has a block decoded while it arrives. It gives the worker
// time to reach the stall but goes on without it after 10 s: the test
// then fails rather than hangs.
func arriveAndStall(w io.Writer, head []byte, started <-chan *parallelReader) {
	trickle(w, head)
	r := <-started
	for deadline := time.Now().Add(10 * time.Second); r.arrivingBlocks.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// TestStreamArrivingTruncated: a block decoded while it arrives that ends
// early, in its data or in its check, fails with the error of the read,
// as a block read whole first does.
func TestStreamArrivingTruncated(t *testing.T) {
	data := tarLike(1<<20, 6)
	file := xzCompress(t, data, "-1", "-T2", "--block-size=512KiB")
	b := blocksOf(t, file)[0]
	for _, cut := range []int64{b.dataOffset() + b.compressedSize/2, b.dataOffset() + b.compressedSize + 2} {
		pr, pw := io.Pipe()
		started := make(chan *parallelReader, 1)
		go func() {
			arriveAndStall(pw, file[:cut], started)
			pw.Close()
		}()
		rc, err := NewStreamReader(pr, Options{Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		r := rc.(*parallelReader)
		started <- r
		_, err = io.ReadAll(rc)
		rc.Close()
		want := fmt.Sprintf("xz: read block 0 at offset %d: ", b.dataOffset())
		if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, errTruncated) {
			t.Errorf("cut at %d: err = %v, want %q... (truncated)", cut, err, want)
		}
		if r.arrivingBlocks.Load() == 0 {
			t.Errorf("cut at %d: the block was not decoded while it arrived", cut)
		}
	}
}

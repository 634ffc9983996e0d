package xzpar

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// requireXZ skips the test when the xz command is missing.
func requireXZ(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("xz")
	if err != nil {
		tb.Skip("xz command not found (install xz-utils): round trips against liblzma need it")
	}
	return path
}

// xzCompress runs xz with args on data and returns what it writes.
func xzCompress(tb testing.TB, data []byte, args ...string) []byte {
	tb.Helper()
	cmd := exec.Command(requireXZ(tb), append([]string{"-c", "-q"}, args...)...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("xz %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// tarLike returns about size bytes of a deterministic tar archive whose
// members resemble a root filesystem's: mostly text and machine code,
// some already-compressed data and runs of zeros. xz -6 packs it about 4:1,
// like a Debian rootfs.
func tarLike(size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	vocab := make([]string, 4096)
	for i := range vocab {
		n := 2 + rng.IntN(9)
		b := make([]byte, n)
		for j := range b {
			b[j] = "etaoinshrdlucmfwypvbgkqjxz_etaoinshr"[rng.IntN(36)]
		}
		vocab[i] = string(b)
	}
	zipf := rand.NewZipf(rng, 1.1, 8, uint64(len(vocab)-1))
	// Machine code repeats a limited set of instruction patterns.
	ops := make([][]byte, 512)
	for i := range ops {
		ops[i] = make([]byte, 2+rng.IntN(6))
		for j := range ops[i] {
			ops[i][j] = byte(rng.Uint32())
		}
	}
	opZipf := rand.NewZipf(rng, 1.3, 2, uint64(len(ops)-1))

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	var content bytes.Buffer
	for i := 0; out.Len() < size; i++ {
		content.Reset()
		kind := rng.IntN(100)
		n := int(rng.ExpFloat64()*24000) + 1
		switch {
		case kind < 60: // text: docs, scripts, configuration
			for content.Len() < n {
				for w := 0; w < 10; w++ {
					content.WriteString(vocab[zipf.Uint64()])
					if rng.IntN(8) == 0 {
						content.WriteByte(".,_/="[rng.IntN(5)])
					}
					content.WriteByte(' ')
				}
				content.WriteByte('\n')
			}
		case kind < 90: // machine code with addresses
			for content.Len() < n {
				content.Write(ops[opZipf.Uint64()])
				if rng.IntN(6) == 0 {
					var addr [4]byte
					binary.LittleEndian.PutUint32(addr[:], 0x400000+uint32(rng.IntN(1<<12))*16)
					content.Write(addr[:])
				}
			}
		case kind < 92: // compressed files (.gz docs, images)
			b := make([]byte, n)
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			content.Write(b)
		default: // sparse-ish data: zeros with a few values
			b := make([]byte, n)
			for j := 0; j < n/64; j++ {
				b[rng.IntN(n)] = byte(rng.Uint32())
			}
			content.Write(b)
		}
		hdr := &tar.Header{
			Name:    fmt.Sprintf("usr/share/pkg%03d/file%05d", i%211, i),
			Mode:    0o644,
			Size:    int64(content.Len()),
			ModTime: time.Unix(1700000000, 0),
			Format:  tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			panic(err)
		}
		tw.Write(content.Bytes())
	}
	tw.Close()
	return out.Bytes()
}

// decodeStats says how a reader decoded: how many blocks workers decoded,
// and how many blocks were decoded as streams (in workers or not).
type decodeStats struct {
	workers, streamed int64
}

// stats returns r's decodeStats.
func stats(r io.Reader) decodeStats {
	pr := r.(*parallelReader)
	return decodeStats{pr.workerBlocks.Load(), pr.streamedBlocks.Load()}
}

// decodeAll decodes data with NewReader.
func decodeAll(tb testing.TB, data []byte, o Options) ([]byte, decodeStats, error) {
	tb.Helper()
	r, err := NewReader(bytes.NewReader(data), int64(len(data)), o)
	if err != nil {
		return nil, decodeStats{}, err
	}
	out, err := io.ReadAll(r)
	if cerr := r.Close(); cerr != nil {
		tb.Errorf("Close: %v", cerr)
	}
	return out, stats(r), err
}

// decodeStream decodes data with NewStreamReader, reading it in pieces of
// varying sizes.
func decodeStream(tb testing.TB, data []byte, o Options) ([]byte, decodeStats, error) {
	tb.Helper()
	r, err := NewStreamReader(&choppyReader{data: data}, o)
	if err != nil {
		return nil, decodeStats{}, err
	}
	out, err := io.ReadAll(r)
	if cerr := r.Close(); cerr != nil {
		tb.Errorf("Close: %v", cerr)
	}
	return out, stats(r), err
}

// choppyReader returns its data in pieces of 1 to 8000 bytes, like a
// network connection.
type choppyReader struct {
	data []byte
	n    int
}

// Read implements io.Reader.
func (c *choppyReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	c.n = (c.n*7919 + 13) % 8000
	n := copy(p[:min(len(p), c.n+1)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// allocated returns the bytes f allocates, in the Go heap and in arenas.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	arena := arenaAllocated.Load()
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc + uint64(arenaAllocated.Load()-arena)
}

// waitGoroutines fails the test if the number of goroutines does not come
// back down to want within a few seconds.
func waitGoroutines(tb testing.TB, want int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Fatalf("%d goroutines left, want %d:\n%s", runtime.NumGoroutine(), want, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// streamInfo locates the parts of the last stream of an xz file, for tests
// that rewrite them.
type streamInfo struct {
	indexStart, indexSize int64
	records               []record
	flags                 [2]byte
}

// lastStream parses the last stream of a file without trailing padding.
func lastStream(tb testing.TB, data []byte) streamInfo {
	tb.Helper()
	ra := bytes.NewReader(data)
	end := int64(len(data))
	footer := data[end-streamFooterSize:]
	indexSize := (int64(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	indexStart := end - streamFooterSize - indexSize
	records, err := readIndex(ra, indexStart, indexSize, maxBlocks)
	if err != nil {
		tb.Fatal(err)
	}
	return streamInfo{indexStart, indexSize, records, [2]byte{footer[8], footer[9]}}
}

// putVLI appends an xz variable-length integer.
func putVLI(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// withIndex returns data with the last stream's index replaced by one made
// of records, and the footer fixed to match.
func withIndex(tb testing.TB, data []byte, records []record) []byte {
	tb.Helper()
	s := lastStream(tb, data)
	index := []byte{0}
	index = putVLI(index, uint64(len(records)))
	for _, r := range records {
		index = putVLI(index, uint64(r.unpadded))
		index = putVLI(index, uint64(r.uncompressed))
	}
	for len(index)%4 != 0 {
		index = append(index, 0)
	}
	index = binary.LittleEndian.AppendUint32(index, crc32.ChecksumIEEE(index))
	out := append([]byte(nil), data[:s.indexStart]...)
	out = append(out, index...)
	footer := make([]byte, 12)
	binary.LittleEndian.PutUint32(footer[4:], uint32(len(index)/4-1))
	footer[8], footer[9] = s.flags[0], s.flags[1]
	binary.LittleEndian.PutUint32(footer[0:], crc32.ChecksumIEEE(footer[4:10]))
	copy(footer[10:], footerMagic)
	return append(out, footer...)
}

// blocksOf returns the blocks of a valid file, as the parser sees them.
func blocksOf(tb testing.TB, data []byte) []block {
	tb.Helper()
	l, err := parse(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		tb.Fatal(err)
	}
	return l.blocks
}

// fixHeaderCRC recomputes the CRC32 of the block header at off.
func fixHeaderCRC(data []byte, off int64) {
	size := (int64(data[off]) + 1) * 4
	h := data[off : off+size]
	binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
}

// writeFile is os.WriteFile failing the test.
func writeFile(tb testing.TB, name string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(name, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

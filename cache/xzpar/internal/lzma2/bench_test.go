package lzma2

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/ulikunitz/xz/lzma"
)

// benchSample reads the raw LZMA2 stream named by LZMA2_BENCH (made with
// xz --format=raw --lzma2=preset=6 from the file LZMA2_BENCH_RAW names)
// and returns it with the size of that file.
func benchSample(b *testing.B) (z []byte, size int) {
	zp, rp := os.Getenv("LZMA2_BENCH"), os.Getenv("LZMA2_BENCH_RAW")
	if zp == "" || rp == "" {
		b.Skip("LZMA2_BENCH and LZMA2_BENCH_RAW name a raw LZMA2 stream and its data")
	}
	z, err := os.ReadFile(zp)
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(rp)
	if err != nil {
		b.Fatal(err)
	}
	return z, int(st.Size())
}

func BenchmarkDecoder(b *testing.B) {
	z, size := benchSample(b)
	out := make([]byte, size)
	var d Decoder
	b.SetBytes(int64(size))
	for b.Loop() {
		if _, err := d.Decode(out, z, 8<<20); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUlikunitz(b *testing.B) {
	z, size := benchSample(b)
	b.SetBytes(int64(size))
	for b.Loop() {
		r, err := lzma.Reader2Config{DictCap: 8 << 20}.NewReader2(bytes.NewReader(z))
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != int64(size) {
			b.Fatal(n, err)
		}
	}
}

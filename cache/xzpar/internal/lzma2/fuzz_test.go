package lzma2

import (
	"bytes"
	"fmt"
	"os/exec"
	"testing"
)

// FuzzLZMA2 decodes arbitrary streams into buffers of arbitrary sizes,
// which must never panic, compares what decodes with ulikunitz/xz, and
// checks that Stream (in a window that must move) accepts and decodes
// exactly what Decode does.
func FuzzLZMA2(f *testing.F) {
	// Both small, so that each run is cheap: the fuzzer runs an input
	// thousands of times while minimizing it.
	const dictSize = 64 << 10
	const maxSize = 1 << 20 // LZMA2 can expand a few bytes into megabytes
	var d Decoder
	var s Stream
	buf := make([]byte, maxSize)
	f.Fuzz(func(t *testing.T, z []byte, size uint32) {
		size %= maxSize
		out := buf[:size]
		n, err := d.Decode(out, z, dictSize)
		if n < 0 || n > len(z) {
			t.Fatalf("Decode took %d of %d bytes", n, len(z))
		}
		streamed, consumed, serr := streamAll(&s, z, dictSize, int64(size))
		if serr == nil && len(streamed) != int(size) {
			serr = ErrTooLittleData
		}
		switch {
		case (err == nil) != (serr == nil):
			t.Fatalf("Decode: %v; Stream: %v", err, serr)
		case err == nil && (!bytes.Equal(streamed, out) || consumed != int64(n)):
			t.Fatalf("Stream decodes %d bytes from %d, Decode %d from %d, differing", len(streamed), consumed, len(out), n)
		}
		ref, refErr := ulikunitz(z, dictSize, int(size)+1)
		refOK := refErr == nil && len(ref) == int(size)
		switch {
		case err == nil && !refOK:
			t.Fatalf("Decode succeeded; ulikunitz/xz decodes %d bytes of %d: %v", len(ref), size, refErr)
		case err == nil && !bytes.Equal(out, ref):
			t.Fatal("Decode and ulikunitz/xz decode different data")
		case err != nil && refOK:
			// ulikunitz/xz is laxer than liblzma in places (it does
			// not insist on an LZMA chunk's packed size, for one):
			// liblzma, through the xz binary, has the last word.
			if xzOut, xzErr := xzDecodeRaw(t, z, dictSize); xzErr == nil && bytes.Equal(xzOut, ref) {
				t.Fatalf("Decode failed where ulikunitz/xz and liblzma decode the stream: %v", err)
			}
		}
	})
}

// xzDecodeRaw decodes a raw LZMA2 stream with the xz binary. The stream
// must end at the end of z, as it must for xz.
func xzDecodeRaw(t *testing.T, z []byte, dictSize int) ([]byte, error) {
	path, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("no xz binary:", err)
	}
	cmd := exec.Command(path, "--format=raw", fmt.Sprintf("--lzma2=dict=%d", dictSize), "-dc")
	cmd.Stdin = bytes.NewReader(z)
	return cmd.Output()
}

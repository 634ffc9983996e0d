package lzma2

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

// window is streamAll's, reused: tests allocate less.
var window []byte

// streamAll decodes z with a Stream whose window holds dictSize bytes of
// dictionary (so it moves every chunk or so when that is small), reading z
// through a small buffer, and returns the output and the bytes consumed.
func streamAll(s *Stream, z []byte, dictSize int, limit int64) ([]byte, int64, error) {
	if n := WindowSize(int64(dictSize), limit); int64(len(window)) < n {
		window = make([]byte, n)
	}
	s.Reset(window[:WindowSize(int64(dictSize), limit)], dictSize)
	r := bufio.NewReaderSize(bytes.NewReader(z), 16)
	var out []byte
	left := limit
	if left < 0 {
		left = math.MaxInt64
	}
	for {
		p, err := s.Next(r, left)
		out = append(out, p...)
		left -= int64(len(p))
		if err == io.EOF {
			return out, s.Consumed(), nil
		}
		if err != nil {
			return out, s.Consumed(), err
		}
	}
}

// TestStreamDifferential decodes what xz makes of the test inputs with
// Stream, in windows from the smallest to the whole output, and compares
// with the input and with Decode.
func TestStreamDifferential(t *testing.T) {
	inputs := testInputs()
	options := []string{"-0", "-6", "-9e", "--lzma2=lc=0,lp=4,pb=4", "--lzma2=lc=1,lp=3,pb=1,dict=4KiB", "--lzma2=dict=64KiB,mf=hc3"}
	if testing.Short() {
		options = options[:2]
	}
	var s Stream
	for _, name := range []string{"empty", "one", "short", "random", "text", "zero", "mixed", "binary"} {
		for _, o := range options {
			data := inputs[name]
			if len(data) > 512<<10 && o != "-0" && o != "-6" {
				data = data[:512<<10] // keep xz's time down
			}
			t.Run(name+o, func(t *testing.T) {
				z := xzRaw(t, data, o)
				// Matches reach at most len(data) back, so any
				// dictionary size at least that decodes; 4 KiB
				// and 1 MiB + 8 (not a multiple of 16) make the
				// window move many times, where it must keep
				// the position bits aligned.
				for _, dict := range []int{len(data), 4 << 10, 1<<20 + 8} {
					if dict < len(data) && strings.Contains(o, "e") {
						continue // -9e matches reach far back
					}
					for _, limit := range []int64{-1, int64(len(data))} {
						out, n, err := streamAll(&s, z, max(dict, len(data)), limit)
						if err != nil || !bytes.Equal(out, data) || n != int64(len(z)) {
							t.Fatalf("dict %d, limit %d: %d bytes (consumed %d of %d), %v", dict, limit, len(out), n, len(z), err)
						}
					}
				}
			})
		}
	}
}

// TestStreamSmallWindow decodes a stream whose matches reach up to 64 KiB
// back through a window of 64 KiB of dictionary, which must move many
// times, and fails with 32 KiB, as Decode does.
func TestStreamSmallWindow(t *testing.T) {
	data := testInputs()["mixed"]
	z := xzRaw(t, data, "--lzma2=dict=64KiB")
	var s Stream
	out, _, err := streamAll(&s, z, 64<<10, -1)
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("64 KiB: %d bytes, %v", len(out), err)
	}
	if _, _, err := streamAll(&s, z, 32<<10, -1); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "beyond the dictionary") {
		t.Fatalf("32 KiB: err = %v, want a match beyond the dictionary", err)
	}
}

// TestStreamErrors checks that Stream fails where Decode does, with the
// same kind of error, on the malformed streams of TestMalformed and on
// every prefix and a few thousand corruptions of a real stream; and that it
// never returns output of a chunk that fails.
func TestStreamErrors(t *testing.T) {
	data := testInputs()["mixed"][:30000]
	z := xzRaw(t, data, "-6")
	var d Decoder
	var s Stream
	check := func(t *testing.T, in []byte, size int) {
		t.Helper()
		out := make([]byte, size)
		_, derr := d.Decode(out, in, 1<<20)
		got, _, serr := streamAll(&s, in, 1<<20, int64(size))
		if serr == nil && len(got) != size {
			serr = ErrTooLittleData
		}
		if (derr == nil) != (serr == nil) {
			t.Fatalf("Decode: %v; Stream: %v", derr, serr)
		}
		if derr == nil {
			if !bytes.Equal(got, out) {
				t.Fatal("Decode and Stream decode different data")
			}
			return
		}
		var de *Error
		if errors.As(derr, &de) && !errors.Is(serr, de.Kind) {
			t.Fatalf("Decode: %v; Stream: %v", derr, serr)
		}
	}
	for i := range len(z) {
		check(t, z[:i], len(data))
	}
	for i := 0; i < len(z); i += 7 {
		for _, x := range []byte{1, 0x80, 0xff} {
			bad := bytes.Clone(z)
			bad[i] ^= x
			check(t, bad, len(data))
		}
	}
}

// TestStreamTooMuchData checks that a chunk beyond the allowed output is
// refused whole: none of its data comes out.
func TestStreamTooMuchData(t *testing.T) {
	stored := []byte{1, 0, 2, 'a', 'b', 'c', 2, 0, 1, 'd', 'e', 0}
	var s Stream
	out, _, err := streamAll(&s, stored, 4096, 4)
	if !errors.Is(err, ErrTooMuchData) || string(out) != "abc" {
		t.Fatalf("out %q, err %v; want abc and ErrTooMuchData", out, err)
	}
	z := xzRaw(t, testInputs()["text"][:100000], "-6")
	out, _, err = streamAll(&s, z, 1<<20, 99999)
	if !errors.Is(err, ErrTooMuchData) || len(out) != 0 {
		t.Fatalf("%d bytes, err %v; want none and ErrTooMuchData", len(out), err)
	}
}

// TestStreamReadError checks that an error of the reader comes through.
func TestStreamReadError(t *testing.T) {
	boom := errors.New("boom")
	var s Stream
	s.Reset(make([]byte, WindowSize(4096, -1)), 4096)
	r := io.MultiReader(bytes.NewReader([]byte{1, 0}), iotestErr{boom})
	if _, err := s.Next(r, 100); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
}

// iotestErr is a reader that fails.
type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

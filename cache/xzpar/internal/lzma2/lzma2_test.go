package lzma2

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz/lzma"
)

// xzRaw compresses data with the xz binary into a raw LZMA2 stream. The
// data goes through a file so that xz shrinks large dictionaries to it.
func xzRaw(t testing.TB, data []byte, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("no xz binary:", err)
	}
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, append(append([]string{"--format=raw", "-c"}, args...), in)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz %v: %v: %s", args, err, stderr.Bytes())
	}
	return out
}

// ulikunitz decodes a raw LZMA2 stream with github.com/ulikunitz/xz/lzma,
// reading at most limit bytes. Some malformed streams make its Read return
// nothing, without an error, for ever; those fail here.
func ulikunitz(z []byte, dictSize, limit int) ([]byte, error) {
	r, err := lzma.Reader2Config{DictCap: max(dictSize, lzma.MinDictCap)}.NewReader2(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, min(limit, 1<<20))
	buf := make([]byte, 32<<10)
	for idle := 0; len(out) < limit; {
		n, err := r.Read(buf[:min(len(buf), limit-len(out))])
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if n > 0 {
			idle = 0
		} else if idle++; idle > 100 {
			return out, errors.New("ulikunitz/xz makes no progress")
		}
	}
	return out, nil
}

// testInputs are the data the differential test compresses.
func testInputs() map[string][]byte {
	r := rand.New(rand.NewSource(1))
	random := make([]byte, 2200<<10) // over one 2 MiB chunk: stored chunks
	r.Read(random)
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua /usr/lib/x86_64-linux-gnu libc.so.6 0x7f \x00\x00\x00 root:x:0:0")
	var text bytes.Buffer
	for text.Len() < 2500<<10 {
		text.WriteString(words[r.Intn(len(words))])
		text.WriteByte(" \n\t/"[r.Intn(4)])
	}
	// Alternating compressible and random stretches make xz mix stored
	// and LZMA chunks without resetting the dictionary in between.
	var mixed bytes.Buffer
	for i := 0; mixed.Len() < 2500<<10; i++ {
		mixed.Write(text.Bytes()[i*100000 : i*100000+200000])
		mixed.Write(random[i*70000 : i*70000+70000])
	}
	binary := make([]byte, 1<<20)
	for i := range binary {
		binary[i] = byte(i*i>>7) ^ byte(r.Intn(3))
	}
	return map[string][]byte{
		"empty":  {},
		"one":    {'x'},
		"short":  []byte("abcabcabcabcabcabcabc"),
		"random": random,
		"text":   text.Bytes(),
		"zero":   make([]byte, 2500<<10),
		"mixed":  mixed.Bytes(),
		"binary": binary,
	}
}

// checkDecode decodes z into a buffer of len(want) bytes and compares it
// with want and with what ulikunitz/xz decodes.
func checkDecode(t *testing.T, d *Decoder, z, want []byte, dictSize int) {
	t.Helper()
	out := make([]byte, len(want))
	n, err := d.Decode(out, z, dictSize)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if n != len(z) {
		t.Fatalf("Decode took %d of %d bytes", n, len(z))
	}
	if !bytes.Equal(out, want) {
		t.Fatal("Decode's output differs from the input to xz")
	}
	ref, err := ulikunitz(z, dictSize, len(want)+1)
	if err != nil || !bytes.Equal(ref, out) {
		t.Fatalf("ulikunitz/xz decodes %d bytes (%v), differing", len(ref), err)
	}
}

// TestDifferential decodes what xz makes of many inputs with many
// options, comparing with the input and with ulikunitz/xz.
func TestDifferential(t *testing.T) {
	inputs := testInputs()
	options := []string{
		"-0", "-1", "-2", "-3", "-4", "-5", "-6", "-7", "-8", "-9", "-0e", "-6e", "-9e",
		"--lzma2=lc=0,lp=0,pb=0", "--lzma2=lc=4,lp=0,pb=4", "--lzma2=lc=0,lp=4,pb=0",
		"--lzma2=lc=1,lp=3,pb=1", "--lzma2=lc=2,lp=2,pb=3", "--lzma2=lc=3,lp=1,pb=2",
		"--lzma2=dict=4KiB", "--lzma2=dict=64KiB,mf=hc3", "--lzma2=dict=1MiB,mf=bt2,nice=273",
		"--lzma2=preset=6,mode=fast,mf=hc4", "--lzma2=preset=6,depth=1000,nice=273",
	}
	if testing.Short() {
		options = options[:2]
	}
	var d Decoder // reused throughout, as xzpar's workers do
	for _, name := range []string{"empty", "one", "short", "random", "text", "zero", "mixed", "binary"} {
		data := inputs[name]
		for _, o := range options {
			if len(data) > 512<<10 && !strings.Contains("-0 -1 -6 -6e", o) {
				data = data[:512<<10] // keep xz's memory and the time down
			}
			t.Run(name+o, func(t *testing.T) {
				z := xzRaw(t, data, o)
				// The dictionary: xz's for the option, large enough.
				checkDecode(t, &d, z, data, 64<<20)
			})
		}
	}
}

// TestDictionaryLimit checks that a match further back than the
// dictionary size fails, as it would with a window of that size.
func TestDictionaryLimit(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	block := make([]byte, 64<<10)
	r.Read(block)
	data := append(bytes.Clone(block), block...) // a match 64 KiB back
	z := xzRaw(t, data, "--lzma2=dict=1MiB")
	var d Decoder
	checkDecode(t, &d, z, data, 1<<20)
	out := make([]byte, len(data))
	if _, err := d.Decode(out, z, 32<<10); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "beyond the dictionary") {
		t.Fatalf("with a 32 KiB dictionary: err = %v, want a match beyond the dictionary", err)
	}
}

// TestSizes checks that an output buffer of the wrong size fails.
func TestSizes(t *testing.T) {
	data := testInputs()["text"][:300000]
	z := xzRaw(t, data, "-6")
	var d Decoder
	if _, err := d.Decode(make([]byte, len(data)-1), z, 8<<20); !errors.Is(err, ErrTooMuchData) {
		t.Errorf("output one byte short: err = %v, want ErrTooMuchData", err)
	}
	if _, err := d.Decode(make([]byte, len(data)+1), z, 8<<20); !errors.Is(err, ErrTooLittleData) {
		t.Errorf("output one byte long: err = %v, want ErrTooLittleData", err)
	}
	// Data after the end marker is not the stream's: Decode says where
	// the stream ended.
	n, err := d.Decode(make([]byte, len(data)), append(bytes.Clone(z), 1, 2, 3), 8<<20)
	if err != nil || n != len(z) {
		t.Errorf("with trailing bytes: n = %d, err = %v; want %d, nil", n, err, len(z))
	}
}

// TestTruncated decodes every proper prefix of a few streams, which must
// all fail (and not panic).
func TestTruncated(t *testing.T) {
	inputs := testInputs()
	var d Decoder
	for _, c := range []struct{ name, opt string }{
		{"short", "-6"}, {"binary", "-6"}, {"mixed", "-1"}, {"text", "--lzma2=lc=0,lp=4,pb=0"},
	} {
		data := inputs[c.name]
		if len(data) > 20000 {
			data = data[:20000]
		}
		z := xzRaw(t, data, c.opt)
		out := make([]byte, len(data))
		for i := range len(z) {
			if _, err := d.Decode(out, z[:i], 8<<20); err == nil {
				t.Fatalf("%s %s: %d of %d bytes decoded without an error", c.name, c.opt, i, len(z))
			}
		}
	}
}

// TestCorrupt flips random bytes of streams: decoding must fail or give
// data that differs, which a block check then rejects, and never panic.
func TestCorrupt(t *testing.T) {
	inputs := testInputs()
	r := rand.New(rand.NewSource(3))
	var d Decoder
	var failed, wrong, same int
	for _, name := range []string{"text", "binary", "mixed", "zero"} {
		data := inputs[name][:100000]
		z := xzRaw(t, data, "-6")
		out := make([]byte, len(data))
		for range 1000 {
			bad := bytes.Clone(z)
			for range 1 + r.Intn(3) {
				bad[r.Intn(len(bad))] ^= byte(1 + r.Intn(255))
			}
			switch _, err := d.Decode(out, bad, 8<<20); {
			case err != nil:
				failed++
			case !bytes.Equal(out, data):
				wrong++
			default:
				same++
			}
		}
	}
	t.Logf("corrupted streams: %d failed, %d decoded to other data, %d to the same", failed, wrong, same)
	if failed == 0 {
		t.Error("no corrupted stream failed")
	}
}

// TestMalformed provokes each error of the chunk layer.
func TestMalformed(t *testing.T) {
	valid := xzRaw(t, []byte("hello, hello, hello"), "-6")
	lzmaChunk := valid[:len(valid)-1] // without the end marker
	stored := []byte{1, 0, 2, 'a', 'b', 'c'}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, c := range []struct {
		name string
		in   []byte
		size int
		kind error
		msg  string
	}{
		{"empty input", nil, 0, ErrTruncated, "no end marker"},
		{"only end marker, data expected", []byte{0}, 1, ErrTooLittleData, ""},
		{"invalid control", cat(stored, []byte{3}), 4, ErrCorrupt, "invalid chunk control byte"},
		{"no dictionary reset first, stored", []byte{2, 0, 0, 'a', 0}, 1, ErrCorrupt, "does not reset the dictionary"},
		{"no dictionary reset first, LZMA", cat([]byte{0xc0}, lzmaChunk[1:], []byte{0}), 19, ErrCorrupt, "does not reset the dictionary"},
		{"LZMA chunk without properties after reset", cat(stored, []byte{0xa0}, lzmaChunk[1:5], lzmaChunk[6:], []byte{0}), 22, ErrCorrupt, "without properties"},
		{"invalid properties", cat(lzmaChunk[:5], []byte{225}, lzmaChunk[6:], []byte{0}), 19, ErrCorrupt, "invalid properties byte"},
		{"lc+lp > 4", cat(lzmaChunk[:5], []byte{3 + 9*2}, lzmaChunk[6:], []byte{0}), 19, ErrCorrupt, "exceed 4"},
		{"bad range coder start", cat(lzmaChunk[:6], []byte{1}, lzmaChunk[7:], []byte{0}), 19, ErrCorrupt, "bad range coder start"},
		{"truncated stored header", []byte{1, 0}, 1, ErrTruncated, "chunk header"},
		{"truncated stored data", []byte{1, 0, 2, 'a'}, 3, ErrTruncated, "stored chunk"},
		{"truncated LZMA header", lzmaChunk[:4], 19, ErrTruncated, "chunk header"},
		{"truncated LZMA data", lzmaChunk[:len(lzmaChunk)-1], 19, ErrTruncated, "LZMA chunk"},
		{"stored chunk too large", cat(stored, []byte{0}), 2, ErrTooMuchData, ""},
		{"LZMA chunk too large", valid, 18, ErrTooMuchData, ""},
		{"rep match in an empty dictionary", lzmaStream(t, []int{1, 1}, 5), 5, ErrCorrupt, "empty dictionary"},
		{"match crosses the chunk's end", lzmaStream(t, literalThenMatch, 2), 2, ErrCorrupt, "crosses the end"},
		{"end marker", lzmaStream(t, endMarker, 5), 5, ErrCorrupt, "end marker inside a chunk"},
		{"chunk data left over", packedDelta(lzmaStream(t, literalThenMatch, 3), +1), 3, ErrCorrupt, "ends after"},
		{"chunk data missing", packedDelta(lzmaStream(t, literalThenMatch, 3), -1), 3, ErrCorrupt, "needs more than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d Decoder
			_, err := d.Decode(make([]byte, c.size), c.in, 1<<20)
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want %v with %q", err, c.kind, c.msg)
			}
		})
	}
}

// literalThenMatch are the bits of 'a' followed by a match of length 2 at
// distance 1, each bit of a model used for the first time.
var literalThenMatch = []int{
	0, 0, 1, 1, 0, 0, 0, 0, 1, // isMatch, then 'a' = 0x61
	1, 0, // isMatch, isRep
	0, 0, 0, 0, // length: choice, low tree 000 = 2
	0, 0, 0, 0, 0, 0, // distance slot 0 = distance 1
}

// endMarker are the bits of 'a' followed by a match with the distance of
// the end marker.
var endMarker = append(append(append(literalThenMatch[:15:15],
	1, 1, 1, 1, 1, 1), // distance slot 63
	ones(26, -1)...), // direct bits
	1, 1, 1, 1) // align bits

// ones is n ones, or n times -1 (a direct bit one) when one is -1.
func ones(n, one int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = one
	}
	return s
}

// packedDelta changes the packed size in the header of the first chunk of
// a stream from lzmaStream by delta, adding a zero byte or dropping the
// last byte of its data.
func packedDelta(s []byte, delta int) []byte {
	s = bytes.Clone(s)
	packed := int(s[3])<<8 | int(s[4]) + delta
	s[3], s[4] = byte(packed>>8), byte(packed)
	body := s[6 : len(s)-1]
	if delta > 0 {
		body = append(body, 0)
	} else {
		body = body[:len(body)-1]
	}
	return append(append(s[:6:6], body...), 0)
}

// TestHandMade checks the hand-made stream itself, and that changing the
// last byte of its range coder data fails.
func TestHandMade(t *testing.T) {
	s := lzmaStream(t, literalThenMatch, 3)
	var d Decoder
	out := make([]byte, 3)
	if _, err := d.Decode(out, s, 1<<20); err != nil || string(out) != "aaa" {
		t.Fatalf("Decode = %q, %v; want aaa", out, err)
	}
	s[len(s)-2] ^= 1
	if _, err := d.Decode(out, s, 1<<20); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "does not end cleanly") {
		t.Fatalf("with the last byte changed: err = %v", err)
	}
}

// TestStop checks that a closed Stop ends decoding.
func TestStop(t *testing.T) {
	stop := make(chan struct{})
	close(stop)
	d := Decoder{Stop: stop}
	if _, err := d.Decode(make([]byte, 1), []byte{1, 0, 0, 'a', 0}, 1<<20); err != ErrStopped {
		t.Fatalf("err = %v, want ErrStopped", err)
	}
}

// lzmaStream range-encodes bits, each with a probability model used for
// the first time (or, for -1, as a direct bit one), into one LZMA chunk
// with properties lc=3 lp=0 pb=2 claiming size bytes, and the end marker:
// enough to build the first operations of a stream by hand.
func lzmaStream(t *testing.T, bits []int, size int) []byte {
	t.Helper()
	var e rangeEncoder
	e.rng = 0xffffffff
	e.cacheSize = 1
	for _, b := range bits {
		if b < 0 {
			e.rng >>= 1
			e.low += uint64(e.rng)
			e.normalize()
			continue
		}
		e.encode(probInit, b)
	}
	for range 5 {
		e.shiftLow()
	}
	body := e.out
	chunk := []byte{0xe0 | byte((size-1)>>16), byte((size - 1) >> 8), byte(size - 1),
		byte((len(body) - 1) >> 8), byte(len(body) - 1), 3 + 9*(0+5*2)}
	return append(append(chunk, body...), 0)
}

// rangeEncoder is the encoder half of the range coder, for tests.
type rangeEncoder struct {
	low       uint64
	rng       uint32
	cache     byte
	cacheSize int
	out       []byte
}

func (e *rangeEncoder) encode(p uint32, b int) {
	bound := (e.rng >> 11) * p
	if b == 0 {
		e.rng = bound
	} else {
		e.low += uint64(bound)
		e.rng -= bound
	}
	e.normalize()
}

func (e *rangeEncoder) normalize() {
	for e.rng < 1<<24 {
		e.rng <<= 8
		e.shiftLow()
	}
}

func (e *rangeEncoder) shiftLow() {
	if uint32(e.low) < 0xff000000 || e.low >= 1<<32 {
		carry := byte(e.low >> 32)
		temp := e.cache
		for {
			e.out = append(e.out, temp+carry)
			temp = 0xff
			e.cacheSize--
			if e.cacheSize == 0 {
				break
			}
		}
		e.cache = byte(e.low >> 24)
	}
	e.cacheSize++
	e.low = uint64(uint32(e.low) << 8)
}

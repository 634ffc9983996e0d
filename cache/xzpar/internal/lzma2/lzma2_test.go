package lzma2

import (
	"bytes"
	"math/rand"
	"os/exec"
	"testing"
)

// xzRaw compresses data with the xz binary into a raw LZMA2 stream.
func xzRaw(t testing.TB, data []byte, lzma2Opts string) []byte {
	t.Helper()
	path, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("no xz binary:", err)
	}
	cmd := exec.Command(path, "--format=raw", "--lzma2="+lzma2Opts, "-c")
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz --lzma2=%s: %v: %s", lzma2Opts, err, stderr.Bytes())
	}
	return out
}

func TestQuick(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog 0123456789\n"), 5000)
	rnd := make([]byte, 300000)
	r.Read(rnd)
	for _, data := range [][]byte{text, rnd, make([]byte, 1<<20), append(text[:100000:100000], rnd[:100000]...)} {
		for _, o := range []string{"preset=6", "preset=0", "preset=9e", "lc=0,lp=4,pb=0", "lc=4,lp=0,pb=4", "lc=1,lp=3,pb=2"} {
			z := xzRaw(t, data, o)
			out := make([]byte, len(data))
			var d Decoder
			n, err := d.Decode(out, z, 8<<20)
			if err != nil || n != len(z) || !bytes.Equal(out, data) {
				t.Fatalf("%s: n=%d/%d err=%v equal=%v", o, n, len(z), err, bytes.Equal(out, data))
			}
		}
	}
}

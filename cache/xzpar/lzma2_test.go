package xzpar

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestCorruptBlockData flips bytes in the compressed data of blocks that
// internal/lzma2 decodes: every corruption must fail, in the LZMA2 decoder
// or at the block's check, and none may panic.
func TestCorruptBlockData(t *testing.T) {
	data := tarLike(3<<20, 7)
	for _, check := range []string{"crc32", "crc64", "sha256"} {
		packed := xzCompress(t, data, "-6", "-T2", "--block-size=1MiB", "--check="+check)
		blocks := blocksOf(t, packed)
		if len(blocks) < 3 {
			t.Fatalf("%d blocks, want 3 or more", len(blocks))
		}
		rng := rand.New(rand.NewPCG(uint64(len(check)), 1))
		var lzmaErrs, checkErrs, otherErrs int
		for range 60 {
			b := blocks[rng.IntN(len(blocks))]
			bad := bytes.Clone(packed)
			bad[b.dataOffset()+rng.Int64N(b.compressedSize)] ^= byte(1 + rng.IntN(255))
			out, _, err := decodeAll(t, bad, Options{Workers: 2})
			switch {
			case err == nil:
				if !bytes.Equal(out, data) {
					t.Fatalf("%s: corrupt data decoded without an error", check)
				}
			case strings.Contains(err.Error(), "check mismatch"):
				checkErrs++
			case strings.Contains(err.Error(), "LZMA2 data at offset"):
				lzmaErrs++
			default:
				otherErrs++
			}
		}
		t.Logf("%s: %d failed in internal/lzma2, %d at the check, %d otherwise", check, lzmaErrs, checkErrs, otherErrs)
		if lzmaErrs == 0 {
			t.Errorf("%s: no corruption was caught by internal/lzma2", check)
		}
	}
}

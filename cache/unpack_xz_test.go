package cache

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// sampleTar is a small rootfs of some 600 KiB in many files, so that xz
// blocks of 64 KiB give a file of several blocks.
func sampleTar(t testing.TB) []byte {
	tb := newTar(t).dir("./", 0o755).dir("./etc/", 0o755).dir("./usr/", 0o755).dir("./usr/share/", 0o755)
	for i := range 60 {
		d := fmt.Sprintf("./usr/share/d%02d/", i)
		tb.dir(d, 0o755)
		for j := range 5 {
			tb.file(fmt.Sprintf("%sf%d", d, j), 0o644, strings.Repeat(fmt.Sprintf("line %d of file %d in %s\n", j, i, d), 40*(j+1)))
		}
	}
	return tb.file("./etc/hostname", 0o644, "LXC_NAME\n").bytes()
}

var (
	sampleOnce sync.Once
	sampleRaw  []byte
	sampleXZ   = map[int64][]byte{} // by xz block size
)

// sample returns sampleTar, and its xz compression in blocks of each size
// (0: one block), made once for all tests: compressing is slow.
func sample(t testing.TB) (raw []byte, xz map[int64][]byte) {
	sampleOnce.Do(func() {
		sampleRaw = sampleTar(t)
		for _, bs := range []int64{0, 64 << 10} {
			sampleXZ[bs] = xzCompress(t, sampleRaw, bs)
		}
	})
	return sampleRaw, sampleXZ
}

// unpackers are the two ways in from an xz file.
var unpackers = map[string]func(ctx context.Context, path, rootfs string, o UnpackOptions) error{
	"Unpack": func(ctx context.Context, path, rootfs string, o UnpackOptions) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return Unpack(ctx, f, rootfs, o)
	},
	"UnpackReader": func(ctx context.Context, path, rootfs string, o UnpackOptions) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return UnpackReader(ctx, f, rootfs, o)
	},
}

func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rootfs.tar.xz")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnpack(t *testing.T) {
	_, xzs := sample(t)
	for blocks, blockSize := range map[string]int64{"one block": 0, "many blocks": 64 << 10} {
		xzFile := writeTemp(t, xzs[blockSize])
		for name, unpack := range unpackers {
			t.Run(blocks+"/"+name, func(t *testing.T) {
				s := newSandbox(t)
				var mu sync.Mutex
				var calls, last, total int64
				o := UnpackOptions{Workers: 3, Progress: func(done, size int64) {
					mu.Lock()
					defer mu.Unlock()
					if done < last {
						t.Errorf("progress went back from %d to %d", last, done)
					}
					calls, last, total = calls+1, done, size
				}}
				if err := unpack(context.Background(), xzFile, s.rootfs, o); err != nil {
					t.Fatal(err)
				}
				s.checkOutside()
				if got := readFile(t, s.path("usr/share/d59/f4")); !strings.HasPrefix(got, "line 4 of file 59") || len(got) != 200*len("line 4 of file 59 in ./usr/share/d59/\n") {
					t.Errorf("last file wrong: %d bytes", len(got))
				}
				fi, _ := os.Stat(xzFile)
				wantTotal := fi.Size()
				if name == "UnpackReader" {
					wantTotal = -1
				}
				if calls == 0 || last != fi.Size() || total != wantTotal {
					t.Errorf("progress: %d calls, last %d of %d; want last %d of %d", calls, last, total, fi.Size(), wantTotal)
				}
			})
		}
	}
}

func TestUnpackErrors(t *testing.T) {
	_, xzs := sample(t)
	for blocks, blockSize := range map[string]int64{"one block": 0, "many blocks": 64 << 10} {
		good := xzs[blockSize]
		corrupt := bytes.Clone(good)
		corrupt[len(corrupt)/2] ^= 0x55
		notTar := xzCompress(t, bytes.Repeat([]byte("not a tarball\n"), 1000), blockSize)
		for name, unpack := range unpackers {
			for _, c := range []struct {
				name  string
				data  []byte
				parts []string
			}{
				{"not xz", []byte("this is not xz at all"), []string{"rootfs", "xz"}},
				{"empty", nil, []string{"rootfs", "xz"}},
				{"truncated", good[:len(good)/2], []string{"rootfs", "xz"}},
				{"truncated end", good[:len(good)-4], []string{"rootfs", "xz"}},
				{"corrupt", corrupt, []string{"rootfs", "xz"}},
				{"not tar", notTar, []string{"rootfs", "tar"}},
			} {
				t.Run(blocks+"/"+name+"/"+c.name, func(t *testing.T) {
					s := newSandbox(t)
					err := unpack(context.Background(), writeTemp(t, c.data), s.rootfs, UnpackOptions{})
					s.checkOutside()
					wantErr(t, err, c.parts...)
				})
			}
		}
	}
	t.Run("cancelled", func(t *testing.T) {
		xzFile := writeTemp(t, xzs[64<<10])
		for name, unpack := range unpackers {
			s := newSandbox(t)
			ctx, cancel := context.WithCancel(context.Background())
			o := UnpackOptions{Progress: func(int64, int64) { cancel() }}
			err := unpack(ctx, xzFile, s.rootfs, o)
			wantErr(t, err, "context canceled")
			if _, err := os.Stat(s.path("etc/hostname")); err == nil {
				t.Errorf("%s: unpacked to the end after cancellation", name)
			}
			cancel()
		}
	})
}

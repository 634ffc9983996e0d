package xzpar

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// rssMargin is what the process may take beyond the memory budget: the Go
// runtime, the test binary, stacks, the LZMA2 decoders' tables and input
// buffers.
const rssMargin = 32 << 20

// zeroBlocksInput returns the path of an xz file of four blocks of 256 MiB
// of zeros, packed by xz --threads (about 160 KB): each block's output is
// 6,000 times its compressed data, the most memory for the least input.
// It is kept under testdata/bench, which git ignores.
func zeroBlocksInput(b *testing.B) string {
	path := filepath.Join("testdata", "bench", "zero-4x256MiB.xz")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	requireXZ(b)
	b.Logf("packing 1 GiB of zeros into %s (once)", path)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("xz", "-6", "-T2", "--block-size=256MiB", "-c")
	cmd.Stdin = io.LimitReader(zeros{}, 4<<28)
	cmd.Stdout = f
	cmd.Stderr = os.Stderr
	err = cmd.Run()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		b.Fatalf("xz: %v", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// zeros reads as zero bytes for ever.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// BenchmarkPeakRSS decodes, in a child process, the zero-block file (four
// blocks of 256 MiB of zeros) and the real-size input
// (LXC_DOWNLOAD_BENCH_INPUT, or a synthetic 170 MB tarball packed with
// xz -T0) with 1, 8 and 16 workers, each by NewReader and by
// NewStreamReader reading the file from start to end. It reports the
// child's peak RSS (its rusage maxrss), the budget (XZPAR_BENCH_BUDGET
// bytes, else DefaultMemoryBudget) plus 32 MiB, and their ratio, which
// must stay at most 1.
//
// A child's maxrss starts from its parent's peak RSS at the time of the
// fork (Linux carries the peak of the address space it leaves over exec),
// so this process first gives its memory back and resets its own peak;
// what is left of it still counts against the child. The child's own
// VmHWM, which starts afresh at exec, is reported too.
func BenchmarkPeakRSS(b *testing.B) {
	budget := DefaultMemoryBudget()
	if s := os.Getenv("XZPAR_BENCH_BUDGET"); s != "" {
		var err error
		if budget, err = strconv.ParseInt(s, 10, 64); err != nil || budget <= 0 {
			b.Fatalf("XZPAR_BENCH_BUDGET=%q: want a positive number of bytes", s)
		}
	}
	limit := budget + rssMargin
	b.Logf("memory budget %d MiB, RSS limit %d MiB", budget>>20, limit>>20)
	inputs := []struct {
		name, path string
		workers    []int
	}{
		{"zero-blocks", zeroBlocksInput(b), []int{1, 8, 16}},
		{"real", benchInput(b), []int{1, 8, 16}},
	}
	runtime.GC()
	debug.FreeOSMemory()
	for _, in := range inputs {
		for _, reader := range []string{"file", "stream"} {
			for _, workers := range in.workers {
				b.Run(fmt.Sprintf("%s/%s/workers=%d", in.name, reader, workers), func(b *testing.B) {
					var peak, hwm int64
					for range b.N {
						// Writing 5 resets this process's VmHWM.
						os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
						rss, childHWM := decodeInChild(b, in.path, reader, workers, budget)
						peak, hwm = max(peak, rss), max(hwm, childHWM)
					}
					b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
					b.ReportMetric(float64(hwm)/(1<<20), "child-VmHWM-MiB")
					b.ReportMetric(float64(limit)/(1<<20), "limit-MiB")
					b.ReportMetric(float64(peak)/float64(limit), "RSS/limit")
					if peak > limit {
						b.Errorf("peak RSS %d MiB, over the budget plus 32 MiB (%d MiB)", peak>>20, limit>>20)
					}
				})
			}
		}
	}
}

// decodeInChild decodes the file at path in a child process (this test
// binary running TestDecodeChild) and returns its peak RSS from rusage and
// the VmHWM it reports itself, in bytes.
func decodeInChild(b *testing.B, path, reader string, workers int, budget int64) (rss, hwm int64) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDecodeChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"XZPAR_CHILD_INPUT="+path,
		"XZPAR_CHILD_READER="+reader,
		"XZPAR_CHILD_WORKERS="+strconv.Itoa(workers),
		"XZPAR_CHILD_BUDGET="+strconv.FormatInt(budget, 10))
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child: %v: %s", err, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		b.Skip("no rusage on this system")
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM "); ok {
			hwm, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return int64(ru.Maxrss) << 10, hwm // kilobytes on Linux
}

// TestDecodeChild is BenchmarkPeakRSS's child: it decodes
// $XZPAR_CHILD_INPUT and nothing else. Without that variable it does
// nothing.
func TestDecodeChild(t *testing.T) {
	path := os.Getenv("XZPAR_CHILD_INPUT")
	if path == "" {
		return
	}
	workers, _ := strconv.Atoi(os.Getenv("XZPAR_CHILD_WORKERS"))
	budget, _ := strconv.ParseInt(os.Getenv("XZPAR_CHILD_BUDGET"), 10, 64)
	o := Options{Workers: workers, MemoryBudget: budget}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.ReadCloser
	if os.Getenv("XZPAR_CHILD_READER") == "stream" {
		r, err = NewStreamReader(bufio.NewReaderSize(f, 1<<20), o)
	} else {
		fi, serr := f.Stat()
		if serr != nil {
			t.Fatal(serr)
		}
		r, err = NewReader(f, fi.Size(), o)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("VmHWM %d\n", peakRSS())
}

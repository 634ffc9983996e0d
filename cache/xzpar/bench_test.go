package xzpar

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

// benchInput returns the path of the benchmark's input:
// $LXC_DOWNLOAD_BENCH_INPUT if set (a real rootfs.tar.xz, say, as for the
// cache package's benchmarks), otherwise a rootfs-like tarball of
// $XZPAR_BENCH_MB (default 170) MB packed like the image builders pack
// theirs (xz --threads=0 at the default level: 24 MiB blocks). Packing
// takes minutes on a small machine, so the file is kept under
// testdata/bench, which git ignores.
func benchInput(b *testing.B) string {
	if path := os.Getenv("LXC_DOWNLOAD_BENCH_INPUT"); path != "" {
		return path
	}
	mb := 170
	if s := os.Getenv("XZPAR_BENCH_MB"); s != "" {
		var err error
		if mb, err = strconv.Atoi(s); err != nil || mb <= 0 {
			b.Fatalf("XZPAR_BENCH_MB=%q: want a positive number", s)
		}
	}
	path := filepath.Join("testdata", "bench", fmt.Sprintf("tarlike-v1-%dMB-T0-6.tar.xz", mb))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	requireXZ(b)
	b.Logf("packing %d MB of rootfs-like data into %s (once)", mb, path)
	data := tarLike(mb*1000*1000, 1)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("xz", "-T0", "-6", "-c")
	cmd.Stdin = bytes.NewReader(data)
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
	data = nil
	debug.FreeOSMemory()
	return path
}

// benchFile is the benchmark's input, open.
type benchFile struct {
	path  string
	f     *os.File
	size  int64 // compressed
	total int64 // decompressed
}

// openBenchInput opens the benchmark's input; it is closed with the
// benchmark.
func openBenchInput(b *testing.B) *benchFile {
	path := benchInput(b)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	info, err := Stat(f, fi.Size())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: %d bytes, %d blocks, %d bytes decompressed, largest block %d",
		path, fi.Size(), info.Blocks, info.Size, info.MaxBlockSize)
	return &benchFile{path: path, f: f, size: fi.Size(), total: info.Size}
}

// benchDecoder decodes the whole input and returns the peak RSS and CPU
// time of a child process that did the work, or zeros when the work was
// done in this one.
type benchDecoder func(tb testing.TB, in *benchFile) (childRSS uint64, childCPU time.Duration)

// drain reads r to its end and checks it yielded the input's size.
func drain(tb testing.TB, in *benchFile, r io.Reader) {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		tb.Fatal(err)
	}
	if n != in.total {
		tb.Fatalf("decoded %d bytes, want %d", n, in.total)
	}
}

// ulikunitzSerial decodes with ulikunitz/xz alone, its input buffered.
func ulikunitzSerial(tb testing.TB, in *benchFile) (uint64, time.Duration) {
	xr, err := xz.NewReader(bufio.NewReaderSize(io.NewSectionReader(in.f, 0, in.size), inputBufferSize))
	if err != nil {
		tb.Fatal(err)
	}
	drain(tb, in, xr)
	return 0, 0
}

// xzpar decodes with NewReader.
func xzpar(workers int) benchDecoder {
	return func(tb testing.TB, in *benchFile) (uint64, time.Duration) {
		r, err := NewReader(in.f, in.size, Options{Workers: workers})
		if err != nil {
			tb.Fatal(err)
		}
		defer r.Close()
		drain(tb, in, r)
		return 0, 0
	}
}

// xzparStream decodes with NewStreamReader.
func xzparStream(workers int) benchDecoder {
	return func(tb testing.TB, in *benchFile) (uint64, time.Duration) {
		r, err := NewStreamReader(io.NewSectionReader(in.f, 0, in.size), Options{Workers: workers})
		if err != nil {
			tb.Fatal(err)
		}
		defer r.Close()
		drain(tb, in, r)
		return 0, 0
	}
}

// xzCommand decodes with xz -dc -T threads (liblzma) into /dev/null.
func xzCommand(xzPath, threads string) benchDecoder {
	return func(tb testing.TB, in *benchFile) (uint64, time.Duration) {
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			tb.Fatal(err)
		}
		defer null.Close()
		cmd := exec.Command(xzPath, "-dc", "-T"+threads, in.path)
		cmd.Stdout = null
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			tb.Fatalf("xz -dc: %v: %s", err, stderr.Bytes())
		}
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			return uint64(ru.Maxrss) << 10, cpu // kilobytes on Linux
		}
		return 0, cpu
	}
}

// BenchmarkDecode decodes one multi-block xz file to io.Discard with
// ulikunitz/xz alone, with NewReader and 1, 2 and 4 workers, with
// NewStreamReader and 2 workers, and with liblzma (xz -dc, single- and
// multi-threaded), reporting MB/s of decompressed data, CPU time, peak
// heap, peak block buffers and peak RSS.
func BenchmarkDecode(b *testing.B) {
	in := openBenchInput(b)
	run := func(name string, decode benchDecoder) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(in.total)
			runtime.GC()
			debug.FreeOSMemory()
			peak := watchMemory()
			cpu0 := processCPU()
			b.ResetTimer()
			var child uint64
			var childCPU time.Duration
			for range b.N {
				rss, cpu := decode(b, in)
				child = max(child, rss)
				childCPU += cpu
			}
			b.StopTimer()
			cpu := processCPU() - cpu0
			if child > 0 {
				cpu = childCPU
			}
			// CPU time tells the decoders' efficiency apart even when
			// other work on the machine makes wall time noisy.
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			heap, arena, rss := peak()
			if child > 0 {
				rss = child
			} else {
				b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(arena)/(1<<20), "peak-buffers-MiB")
			}
			if rss > 0 {
				b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
			}
		})
	}

	run("ulikunitz-serial", ulikunitzSerial)
	for _, workers := range []int{1, 2, 4} {
		run(fmt.Sprintf("xzpar-workers=%d", workers), xzpar(workers))
	}
	run("xzpar-stream-workers=2", xzparStream(2))
	xzPath, err := exec.LookPath("xz")
	if err != nil {
		b.Log("xz command not found: no liblzma reference")
		return
	}
	for _, threads := range []string{"1", "0"} {
		run("xz-dc-T"+threads, xzCommand(xzPath, threads))
	}
}

// BenchmarkDecodeRatio times xzpar with 1 and 2 workers (NewReader, and
// NewStreamReader reading the file once), ulikunitz/xz alone and xz -dc
// (single-threaded, as tar -J runs it) on the same input, each round
// running them one after the other in a rotating order, and reports the
// medians of the ratios of their wall times and of their CPU times: on a
// shared machine, load that changes between runs skews separate benchmarks
// more than it skews these. An iteration is $XZPAR_RATIO_ROUNDS rounds
// (default 3); run it with -benchtime 1x.
func BenchmarkDecodeRatio(b *testing.B) {
	in := openBenchInput(b)
	xzPath := requireXZ(b)
	decoders := []struct {
		name   string
		decode benchDecoder
	}{
		{"xzpar2", xzpar(2)},
		{"xzpar1", xzpar(1)},
		{"stream1", xzparStream(1)},
		{"ulikunitz", ulikunitzSerial},
		{"xz", xzCommand(xzPath, "1")},
	}
	rounds := 3
	if s := os.Getenv("XZPAR_RATIO_ROUNDS"); s != "" {
		var err error
		if rounds, err = strconv.Atoi(s); err != nil || rounds <= 0 {
			b.Fatalf("XZPAR_RATIO_ROUNDS=%q: want a positive number", s)
		}
	}
	times := make(map[string][]float64)
	cpus := make(map[string][]float64)
	b.ResetTimer()
	for i := range b.N * rounds {
		for k := range decoders {
			d := decoders[(i+k)%len(decoders)]
			start := time.Now()
			cpu0 := processCPU()
			_, childCPU := d.decode(b, in)
			cpu := processCPU() - cpu0
			if childCPU > 0 {
				cpu = childCPU
			}
			times[d.name] = append(times[d.name], time.Since(start).Seconds())
			cpus[d.name] = append(cpus[d.name], cpu.Seconds())
		}
	}
	b.StopTimer()
	ratio := func(of map[string][]float64, a, c string) float64 {
		var r []float64
		for i := range of[a] {
			r = append(r, of[a][i]/of[c][i])
		}
		slices.Sort(r)
		return r[len(r)/2]
	}
	b.ReportMetric(ratio(times, "xzpar2", "xz"), "xzpar2/xz-dc")
	b.ReportMetric(ratio(times, "xzpar2", "ulikunitz"), "xzpar2/ulikunitz")
	b.ReportMetric(ratio(times, "xzpar1", "ulikunitz"), "xzpar1/ulikunitz")
	b.ReportMetric(ratio(times, "ulikunitz", "xz"), "ulikunitz/xz-dc")
	b.ReportMetric(ratio(cpus, "xzpar1", "xz"), "xzpar1-cpu/xz-dc")
	b.ReportMetric(ratio(cpus, "stream1", "xz"), "stream1-cpu/xz-dc")
}

// watchMemory samples the Go heap and the arenas' buffers until the
// returned function is called, which reports their peaks and the process's
// peak resident set size since watchMemory was called (0 when the kernel
// cannot tell).
func watchMemory() func() (heap, arena, rss uint64) {
	// Writing 5 to clear_refs resets VmHWM, the peak RSS.
	resetRSS := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	var peak, peakArena uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64()+sample[1].Value.Uint64())
			peakArena = max(peakArena, uint64(arenaInUse.Load()))
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() (uint64, uint64, uint64) {
		close(stop)
		wg.Wait()
		if !resetRSS {
			return peak, peakArena, 0
		}
		return peak, peakArena, peakRSS()
	}
}

// peakRSS reads VmHWM from /proc/self/status, in bytes.
func peakRSS() uint64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// processCPU returns the user and system CPU time this process used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Command bench compares lxc-download with the tools of LXC's shell
// template on one realistic image, and prints the ratios (issues 5, 15):
//
//   - stages: each stage of a create timed alone, in-process (hashing the
//     tarball, decoding with one worker and with all, parsing the tar,
//     writing the files, the whole xz path, cloning the unpacked copy by
//     copy and by reflink), and the shell template's xz and tar, with the
//     floor the stages set on the xz path;
//   - unpack: creating a container from a warm cache (the binary), and the
//     in-process cache.Unpack, against `tar --numeric-owner
//     --xattrs-include='*' -xpJf` of the same cached rootfs.tar.xz;
//   - warm: creating a container from a warm cache by unpacking the
//     tarball (--cache-unpacked=false), against the shell template doing
//     the same;
//   - unpacked: the same from the cache's unpacked copy, cloned by copying
//     (--cache-unpacked on ext4);
//   - reflink: the same with the default options on xfs, where the copy
//     is kept and cloned with reflinks, against the shell template on xfs;
//   - cold: creating a container from an empty cache over a link limited to
//     20 MB/s, against the shell template doing the same.
//
// Every run is a child process in a fresh directory; its wall time, CPU
// time and peak RSS (from its rusage, which covers its own children, such
// as tar's xz) are recorded, and the table gives the median of the runs of
// each. The ratio is ours over the reference: below 1 means lxc-download
// is faster. The per-run ratios pair runs of the same round, and the CPU
// ratio compares CPU time, which a busy shared machine disturbs less than
// wall time. Peak RSS has a floor of a few MiB (the launcher's, see
// launch.go). Run it as root so owners and device nodes are restored by
// both sides; the runs' trees and caches are on loop-mounted filesystems
// made for the run (fs.go says why), -fs host puts them in -cache.
//
// Usage (from the repository root, after `make build`):
//
//	go run ./cmd/bench [-runs 3] [-cases stages,warm,unpacked,reflink,cold] [-workers 0] [-input rootfs.tar.xz]
//
// For the scaling figures of a bigger machine, build this driver and the
// binary statically, carry them with the input (-prepare builds it) and
// run with -cases unpack,warm -workers 1,2,4,8,16.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

const defaultTemplate = "/usr/share/lxc/templates/lxc-download"

// config is what the flags ask for.
type config struct {
	runs     int
	cases    map[string]bool
	workers  []int // 0: the binary's default
	input    string
	cacheDir string
	binary   string
	template string
	rate     int64 // bytes per second of the cold case's link
	fs       string
	keep     bool
	prepare  bool // only build and describe the input
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case childUnpack:
			os.Exit(unpackChild(os.Args[2:]))
		case childRun:
			os.Exit(launchChild(os.Args[2:]))
		case childStages:
			os.Exit(stagesChild(os.Args[2:]))
		}
	}
	var c config
	var cases, workers string
	flag.IntVar(&c.runs, "runs", 3, "runs of each measurement (the median is reported)")
	flag.StringVar(&cases, "cases", "stages,warm,unpacked,reflink,cold", "cases to run: "+strings.Join(allCases, ", "))
	flag.StringVar(&workers, "workers", "0",
		"worker counts for our side: GOMAXPROCS for the binary (its decoder runs that many), "+
			"UnpackOptions.Workers and GOMAXPROCS in-process; 0 is the default (one per CPU)")
	flag.StringVar(&c.input, "input", "", "rootfs.tar.xz to use (default: build one from a debootstrap of bookworm and keep it in -cache)")
	flag.StringVar(&c.cacheDir, "cache", "cmd/bench/.cache", "directory for the built input and the runs' scratch trees (not tmpfs)")
	flag.StringVar(&c.binary, "binary", "./lxc-download", "the lxc-download binary (make build)")
	flag.StringVar(&c.template, "template", defaultTemplate, "LXC's shell template; where missing, tar -xpJf is the reference")
	flag.Int64Var(&c.rate, "rate", 20_000_000, "bytes per second of the rate-limited link of the cold case")
	flag.StringVar(&c.fs, "fs", "loop", "where the runs make their trees: loop (fresh loop-mounted ext4 and xfs), or host (the -cache directory)")
	flag.BoolVar(&c.keep, "keep", false, "keep the scratch trees of the last run of each")
	flag.BoolVar(&c.prepare, "prepare", false, "only build (or find) the input, describe it and exit")
	flag.Parse()

	var err error
	if c.cases, err = parseCases(cases); err == nil {
		c.workers, err = parseWorkers(workers)
	}
	if err == nil {
		err = run(c, os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// allCases are the cases -cases takes.
var allCases = []string{"stages", "unpack", "warm", "unpacked", "reflink", "cold"}

func parseCases(s string) (map[string]bool, error) {
	m := map[string]bool{}
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		if !slices.Contains(allCases, c) {
			return nil, fmt.Errorf("unknown case %q (want %s)", c, strings.Join(allCases, ", "))
		}
		m[c] = true
	}
	return m, nil
}

func parseWorkers(s string) ([]int, error) {
	var ws []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad worker count %q", f)
		}
		ws = append(ws, n)
	}
	return ws, nil
}

// run prepares the input and the servers, measures and prints the table.
func run(c config, out, log io.Writer) error {
	if os.Geteuid() != 0 && !c.prepare {
		return errors.New("run as root: both sides must restore owners and device nodes")
	}
	input, origin, err := prepareInput(c.input, c.cacheDir, log)
	if err != nil {
		return err
	}
	desc, err := describeInput(input)
	if err != nil {
		return err
	}
	if c.prepare {
		fmt.Fprintf(out, "input: %s\n       %s\n", input, desc)
		return nil
	}
	if c.fs != "loop" && c.fs != "host" {
		return fmt.Errorf("-fs %q: want loop or host", c.fs)
	}
	if _, err := os.Stat(c.binary); err != nil {
		return fmt.Errorf("binary: %w (run make build first)", err)
	}
	b, err := newBench(c, input, log)
	if err != nil {
		return err
	}
	defer b.close()

	fmt.Fprintf(out, "input: %s\n       %s\n", origin, desc)
	fmt.Fprintf(out, "host: %d CPUs (GOMAXPROCS %d); %d runs each, medians; ratio = ours / reference (< 1: ours faster)\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), c.runs)
	if !b.haveTemplate {
		fmt.Fprintf(out, "note: no shell template at %s: the reference of warm and cold is tar (and wget) doing its steps\n", c.template)
		if c.cases["cold"] && !b.haveWget {
			fmt.Fprintln(out, "note: no wget either: the cold case is left out")
		}
	}
	if c.cases["stages"] {
		if err := b.stages(out, log); err != nil {
			return err
		}
	}
	rows := b.rows()
	if len(rows) == 0 {
		return nil
	}
	if err := b.measure(rows, log); err != nil {
		return err
	}
	printTable(out, rows, b.samples)
	return nil
}

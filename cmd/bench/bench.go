package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// The image every case creates: the server publishes the input under it.
var imageArgs = []string{"-d", "debian", "-r", "bookworm", "-a", "amd64"}

// side is one thing that is timed: a child process, made afresh for each
// run in an empty directory.
type side struct {
	label string
	// cmd makes the command of one run; dir is fresh and empty.
	cmd func(dir string) *exec.Cmd
	// want is text the run must print: proof it took the path the label
	// names (a warm run that went to the network would prove nothing).
	want string
	// limited runs over the rate-limited link.
	limited bool
	// fs is where its container is made.
	fs *mount
}

// row is one line of the table.
type row struct {
	name      string
	ours, ref *side
}

// sample is one timed run.
type sample struct {
	wall    time.Duration
	cpu     time.Duration // user and system, children included
	rss     int64         // bytes
	entries int           // entries in the unpacked rootfs (first run only)
}

// bench holds what all runs share: the input, the server, the
// filesystems, the primed caches, and the samples so far.
type bench struct {
	c            config
	input        string
	work         string // the server's files, removed at the end
	srv          *server
	haveTemplate bool
	haveWget     bool
	// ext4 holds the trees and caches of every case but the reflink
	// one, which xfs holds (nil: no reflink case).
	ext4, xfs *mount
	// Warm caches, filled once by each side's own create: ours for the
	// xz path, with an unpacked copy made by copying, and with one made
	// with reflinks; the shell template's on each filesystem.
	xzCache, copyCache, reflinkCache string
	theirsCache, theirsXFSCache      string
	wgetrc                           string
	self                             string // this program, for the in-process unpack
	samples                          map[*side][]sample
}

func newBench(c config, input string, log io.Writer) (*bench, error) {
	b := &bench{c: c, input: input, samples: map[*side][]sample{}}
	b.haveTemplate = isShellScript(c.template)
	_, err := exec.LookPath("wget")
	b.haveWget = err == nil
	if b.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if b.c.binary, err = filepath.Abs(c.binary); err != nil {
		return nil, err
	}
	b.work = filepath.Join(c.cacheDir, "work")
	if err := os.RemoveAll(b.work); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.work, 0o755); err != nil {
		return nil, err
	}
	if b.work, err = filepath.Abs(b.work); err != nil {
		return nil, err
	}
	if err := b.mountFilesystems(log); err != nil {
		return nil, err
	}
	if b.srv, err = startServer(input, c.rate); err != nil {
		b.ext4.close()
		b.xfs.close()
		return nil, err
	}
	b.wgetrc = filepath.Join(b.work, "wgetrc")
	err = os.WriteFile(b.wgetrc, []byte("ca_certificate = "+b.srv.caFile+"\n"), 0o644)
	if err == nil {
		err = b.prime(log)
	}
	if err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	b.srv.close()
	if !b.c.keep {
		b.ext4.close()
		b.xfs.close()
		os.RemoveAll(b.work)
	}
}

// mountFilesystems makes the filesystems the cases run on (see fs.go).
func (b *bench) mountFilesystems(log io.Writer) error {
	dir, err := filepath.Abs(b.c.cacheDir)
	if err != nil {
		return err
	}
	if b.c.fs == "host" {
		b.ext4 = &mount{kind: "host", dir: filepath.Join(b.work, "host")}
		return os.MkdirAll(b.ext4.dir, 0o755)
	}
	if b.ext4, err = makeFS(dir, "ext4", log); err != nil {
		return err
	}
	if b.c.cases["reflink"] || b.c.cases["stages"] {
		if b.xfs, err = makeFS(dir, "xfs", log); err != nil {
			fmt.Fprintf(log, "bench: no xfs, no reflink case: %v\n", err)
			b.xfs = nil
		}
	}
	return nil
}

func isShellScript(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 9)
	n, _ := io.ReadFull(f, head)
	return string(head[:n]) == "#!/bin/sh"
}

// prime fills the warm caches, each by its own side's create from an empty
// cache over the unlimited link, so both hold the same image as their own
// tool lays it out; and reads the input once so that no side pays for
// bringing it into the page cache.
func (b *bench) prime(log io.Writer) error {
	if f, err := os.Open(b.input); err == nil {
		io.Copy(io.Discard, f)
		f.Close()
	}
	cs := b.c.cases
	if !cs["warm"] && !cs["unpack"] && !cs["unpacked"] && !cs["reflink"] {
		return nil
	}
	fmt.Fprintln(log, "bench: filling the warm caches")
	type prime struct {
		cache *string
		side  *side
	}
	var primes []prime
	if cs["warm"] || cs["unpack"] {
		b.xzCache = b.ext4.path("cache-xz")
		primes = append(primes, prime{&b.xzCache, b.ours("", b.ext4, b.xzCache, 0, false, "", b.noUnpacked()...)})
	}
	if cs["unpacked"] {
		b.copyCache = b.ext4.path("cache-copy")
		primes = append(primes, prime{&b.copyCache, b.ours("", b.ext4, b.copyCache, 0, false, "", "--cache-unpacked")})
	}
	if cs["reflink"] && b.xfs != nil {
		b.reflinkCache = b.xfs.path("cache-reflink")
		primes = append(primes, prime{&b.reflinkCache, b.ours("", b.xfs, b.reflinkCache, 0, false, "")})
	}
	if b.haveTemplate && (cs["warm"] || cs["unpacked"]) {
		b.theirsCache = b.ext4.path("cache-theirs")
		primes = append(primes, prime{&b.theirsCache, b.templateCreate(b.ext4, b.theirsCache, false, false)})
	}
	if b.haveTemplate && cs["reflink"] && b.xfs != nil {
		b.theirsXFSCache = b.xfs.path("cache-theirs")
		primes = append(primes, prime{&b.theirsXFSCache, b.templateCreate(b.xfs, b.theirsXFSCache, false, false)})
	}
	for _, p := range primes {
		if err := b.runOnce(p.side, filepath.Join(p.side.fs.dir, "prime")); err != nil {
			return fmt.Errorf("fill the cache %s: %w", *p.cache, err)
		}
	}
	return nil
}

// stages runs the per-stage breakdown in a child of its own (stages.go),
// on the bench's filesystems.
func (b *bench) stages(out, log io.Writer) error {
	fmt.Fprintln(log, "bench: timing the stages one by one")
	args := []string{childStages, strconv.Itoa(b.c.runs), b.input, b.ext4.path("stages")}
	if b.xfs != nil {
		args = append(args, b.xfs.path("stages"))
	}
	for _, d := range args[3:] {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cmd := exec.Command(b.self, args...)
	cmd.Env = environ()
	cmd.Stdout, cmd.Stderr = out, log
	fmt.Fprintf(out, "stages (in-process, medians of %d; CPU = user + sys; %s trees):\n", b.c.runs, b.ext4.kind)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("stages: %w", err)
	}
	fmt.Fprintln(out)
	return nil
}

// runOnce runs s once, untimed, and removes its tree.
func (b *bench) runOnce(s *side, dir string) error {
	_, err := b.runSide(s, dir, false)
	os.RemoveAll(dir)
	return err
}

// rows are the table's lines for the cases and worker counts asked for.
// Sides shared by several rows (the tar reference, our warm create) are
// measured once per round.
func (b *bench) rows() []row {
	tar := b.tarSide(b.ext4)
	warm := "Using image from local cache"
	var rows []row
	if b.c.cases["unpack"] {
		for _, w := range b.c.workers {
			rows = append(rows, row{"unpack", b.ours("warm cache", b.ext4, b.xzCache, w, false, warm, b.noUnpacked()...), tar})
		}
		for _, w := range b.c.workers {
			rows = append(rows, row{"unpack", b.inProcess(w), tar})
		}
	}
	ref := func(fs *mount, cache string) *side {
		if b.haveTemplate {
			return b.templateCreate(fs, cache, true, false)
		}
		return b.tarSide(fs)
	}
	if b.c.cases["warm"] {
		for _, w := range b.c.workers {
			rows = append(rows, row{"warm create, xz", b.ours("warm cache", b.ext4, b.xzCache, w, false, warm, b.noUnpacked()...), ref(b.ext4, b.theirsCache)})
		}
	}
	// --verbose says where the rootfs came from.
	const cloned = "Cloned the rootfs from the unpacked copy"
	if b.c.cases["unpacked"] {
		rows = append(rows, row{"warm create, unpacked copy (" + b.ext4.kind + ")",
			b.ours("warm cache, unpacked copy", b.ext4, b.copyCache, 0, false, cloned, "--cache-unpacked", "--verbose"), ref(b.ext4, b.theirsCache)})
	}
	if b.c.cases["reflink"] && b.xfs != nil {
		rows = append(rows, row{"warm create, unpacked reflink (xfs)",
			b.ours("warm cache, unpacked reflink", b.xfs, b.reflinkCache, 0, false, cloned, "--verbose"), ref(b.xfs, b.theirsXFSCache)})
	}
	if b.c.cases["cold"] {
		var ref *side
		switch {
		case b.haveTemplate:
			ref = b.templateCreate(b.ext4, "", false, true)
		case b.haveWget:
			ref = b.wgetTar()
		}
		if ref != nil {
			name := fmt.Sprintf("cold create %g MB/s", float64(b.c.rate)/1e6)
			for _, w := range b.c.workers {
				rows = append(rows, row{name, b.ours("empty cache", b.ext4, "", w, true, "Downloading the rootfs"), ref})
			}
		}
	}
	// Rows made from the same description share one side.
	byLabel := map[string]*side{}
	for i := range rows {
		for _, s := range []**side{&rows[i].ours, &rows[i].ref} {
			key := (*s).label + fmt.Sprint((*s).limited)
			if prev, ok := byLabel[key]; ok {
				*s = prev
			} else {
				byLabel[key] = *s
			}
		}
	}
	return rows
}

// measure runs every side of rows c.runs times, interleaved (one run of
// each per round, the order reversed every other round) so that a slow
// spell of the shared machine falls on all of them alike.
func (b *bench) measure(rows []row, log io.Writer) error {
	var sides []*side
	for _, r := range rows {
		for _, s := range []*side{r.ours, r.ref} {
			if !slices.Contains(sides, s) {
				sides = append(sides, s)
			}
		}
	}
	for round := range b.c.runs {
		order := slices.Clone(sides)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for i, s := range order {
			dir := filepath.Join(s.fs.dir, fmt.Sprintf("run-%d-%d", round, i))
			fmt.Fprintf(log, "bench: run %d/%d: %s\n", round+1, b.c.runs, s.label)
			smp, err := b.runSide(s, dir, round == 0)
			if err != nil {
				return err
			}
			b.samples[s] = append(b.samples[s], smp)
			if !b.c.keep || round < b.c.runs-1 {
				os.RemoveAll(dir)
			}
		}
	}
	return nil
}

// runSide runs s in a fresh dir and times it. The previous runs' writes are
// flushed first so their writeback is not charged to this one.
func (b *bench) runSide(s *side, dir string, count bool) (sample, error) {
	if err := os.RemoveAll(dir); err != nil {
		return sample{}, err
	}
	if err := newContainer(dir); err != nil {
		return sample{}, err
	}
	cmd := s.cmd(dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if s.limited {
		b.srv.limit(true)
		defer b.srv.limit(false)
	}
	syscall.Sync()
	smp, err := launched(b.self, cmd)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w\n%s", s.label, err, lastLines(out.String(), 20))
	}
	if s.want != "" && !strings.Contains(out.String(), s.want) {
		return sample{}, fmt.Errorf("%s: output lacks %q:\n%s", s.label, s.want, lastLines(out.String(), 20))
	}
	if count {
		smp.entries = countEntries(filepath.Join(dir, "rootfs"))
	}
	return smp, nil
}

// newContainer lays out dir as lxc-create does before it runs a template:
// a config naming the rootfs, an empty partial file and an empty rootfs.
func newContainer(dir string) error {
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	config := "lxc.net.0.type = empty\nlxc.rootfs.path = dir:" + rootfs + "\n"
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o640); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "partial"), nil, 0o600)
}

// environ is this process's environment without what would steer a side
// (caches, certificates, workers), plus extra.
func environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LXC_") || strings.HasPrefix(k, "SSL_CERT_") ||
			strings.HasPrefix(k, "DOWNLOAD_") || k == "GOMAXPROCS" || k == "WGETRC" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// workerEnv pins the binary to w workers: its xz decoder runs
// GOMAXPROCS workers, and GOMAXPROCS bounds the threads running Go code.
func workerEnv(w int) []string {
	if w == 0 {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(w)}
}

// workerLabel names a worker count in a side's label: "" for the
// default, else what pins it.
func workerLabel(what string, w int) string {
	if w == 0 {
		return ""
	}
	return ", " + what + "=" + strconv.Itoa(w)
}

// noUnpacked are the options that keep our side on the xz path: none for
// a binary older than --cache-unpacked, which has only that path.
func (b *bench) noUnpacked() []string {
	out, _ := exec.Command(b.c.binary, "--help").CombinedOutput()
	if !strings.Contains(string(out), "--cache-unpacked") {
		return nil
	}
	return []string{"--cache-unpacked=false"}
}

// ours is the binary creating a container on fs from the cache in
// cacheDir, or in a fresh one of the run's own when cacheDir is "", with
// extra options; want is what it must print.
func (b *bench) ours(what string, fs *mount, cacheDir string, w int, limited bool, want string, extra ...string) *side {
	label := "lxc-download, " + what + workerLabel("GOMAXPROCS", w)
	return &side{label: label, want: want, limited: limited, fs: fs, cmd: func(dir string) *exec.Cmd {
		c := cacheDir
		if c == "" {
			c = filepath.Join(dir, "cache")
		}
		args := append([]string{"--path=" + dir, "--name=ct", "--rootfs=" + filepath.Join(dir, "rootfs")}, imageArgs...)
		args = append(args, "--server", b.srv.host, "--keyring", b.srv.keyFile)
		args = append(args, extra...)
		cmd := exec.Command(b.c.binary, args...)
		cmd.Env = environ(append(workerEnv(w), "SSL_CERT_FILE="+b.srv.caFile, "LXC_CACHE_PATH="+c)...)
		return cmd
	}}
}

// templateCreate is LXC's shell template doing the same on fs.
func (b *bench) templateCreate(fs *mount, cacheDir string, warm, limited bool) *side {
	label, want := "shell template, warm cache", "Using image from local cache"
	if !warm {
		label, want = "shell template, empty cache", "Downloading the rootfs"
	}
	if fs.kind != "ext4" {
		label += " (" + fs.kind + ")"
	}
	return &side{label: label, want: want, limited: limited, fs: fs, cmd: func(dir string) *exec.Cmd {
		c := cacheDir
		if c == "" {
			c = filepath.Join(dir, "cache")
		}
		args := append([]string{b.c.template, "--path=" + dir, "--name=ct", "--rootfs=" + filepath.Join(dir, "rootfs")}, imageArgs...)
		args = append(args, "--server", b.srv.host)
		cmd := exec.Command("sh", args...)
		cmd.Env = environ("WGETRC="+b.wgetrc, "LXC_CACHE_PATH="+c)
		return cmd
	}}
}

// tarSide is GNU tar unpacking the cached rootfs.tar.xz, with xz as its
// decompressor, as the shell template does.
func (b *bench) tarSide(fs *mount) *side {
	label := "tar -xpJf"
	if fs.kind != "ext4" {
		label += " (" + fs.kind + ")"
	}
	return &side{label: label, fs: fs, cmd: func(dir string) *exec.Cmd {
		cmd := exec.Command("tar", "--numeric-owner", "--xattrs-include=*", "-xpJf", b.input, "-C", filepath.Join(dir, "rootfs"))
		cmd.Env = environ()
		return cmd
	}}
}

// wgetTar stands in for the shell template where it is not installed: its
// steps one after the other (both downloads, then tar).
func (b *bench) wgetTar() *side {
	script := `set -e
wget -q -O "$1/meta.tar.xz" "https://$2/$3meta.tar.xz"
wget -q -O "$1/rootfs.tar.xz" "https://$2/$3rootfs.tar.xz"
tar --numeric-owner --xattrs-include='*' -xpJf "$1/rootfs.tar.xz" -C "$1/rootfs"
echo done`
	return &side{label: "wget, wget, tar -xpJf", want: "done", limited: true, fs: b.ext4, cmd: func(dir string) *exec.Cmd {
		cmd := exec.Command("sh", "-c", script, "sh", dir, b.srv.host, b.srv.imagePath)
		cmd.Env = environ("WGETRC=" + b.wgetrc)
		return cmd
	}}
}

// inProcess is cache.Unpack called by a child of this program, so its RSS
// is measured on its own.
func (b *bench) inProcess(w int) *side {
	return &side{label: "cache.Unpack in-process" + workerLabel("Workers", w), fs: b.ext4, cmd: func(dir string) *exec.Cmd {
		cmd := exec.Command(b.self, childUnpack, strconv.Itoa(w), b.input, filepath.Join(dir, "rootfs"))
		cmd.Env = environ()
		return cmd
	}}
}

// countEntries counts what is under root, root excluded.
func countEntries(root string) int {
	n := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root {
			n++
		}
		return nil
	})
	return n
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stats are the medians of a side's samples.
func stats(ss []sample) (secs, cpuSecs, rssMiB float64) {
	var t, c, r []float64
	for _, s := range ss {
		t = append(t, s.wall.Seconds())
		c = append(c, s.cpu.Seconds())
		r = append(r, float64(s.rss)/(1<<20))
	}
	return median(t), median(c), median(r)
}

// printTable writes one line per row, then a check that every side
// unpacked the same number of entries.
func printTable(out io.Writer, rows []row, samples map[*side][]sample) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tours\treference\tours s\tref s\tratio\tper-run ratios\tCPU ratio\tours RSS\tref RSS")
	for _, r := range rows {
		ot, oc, orss := stats(samples[r.ours])
		rt, rc, rrss := stats(samples[r.ref])
		var per []string
		for i := range min(len(samples[r.ours]), len(samples[r.ref])) {
			per = append(per, fmt.Sprintf("%.2f", samples[r.ours][i].wall.Seconds()/samples[r.ref][i].wall.Seconds()))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f\t%.2fx\t%s\t%.2fx\t%.0f MiB\t%.0f MiB\n",
			r.name, r.ours.label, r.ref.label, ot, rt, ot/rt, strings.Join(per, " "), oc/rc, orss, rrss)
	}
	tw.Flush()
	counts := map[int][]string{}
	var seen []*side
	for _, r := range rows {
		for _, s := range []*side{r.ours, r.ref} {
			if !slices.Contains(seen, s) && len(samples[s]) > 0 {
				seen = append(seen, s)
				counts[samples[s][0].entries] = append(counts[samples[s][0].entries], s.label)
			}
		}
	}
	fmt.Fprintln(out, "wall seconds of each run, in order:")
	for _, s := range seen {
		var ts []string
		for _, smp := range samples[s] {
			ts = append(ts, fmt.Sprintf("%.2f", smp.wall.Seconds()))
		}
		fmt.Fprintf(out, "  %-42s %s\n", s.label, strings.Join(ts, " "))
	}
	if len(counts) > 1 {
		fmt.Fprintln(out, "WARNING: the sides unpacked different numbers of entries:")
		for n, labels := range counts {
			fmt.Fprintf(out, "  %d: %s\n", n, strings.Join(labels, "; "))
		}
	} else {
		for n := range counts {
			fmt.Fprintf(out, "every side unpacked the same %d entries\n", n)
		}
	}
}

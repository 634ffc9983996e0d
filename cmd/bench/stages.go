package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/cache/xzpar"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// childStages, as the first argument, makes this program the child that
// times the stages of a create one by one, in-process:
// childStages RUNS INPUT EXT4DIR [XFSDIR]. It prints the breakdown.
const childStages = "-child-stages"

// stage is one step of a create, timed alone.
type stage struct {
	name, what string
	// run does the step once; dir is a fresh directory on the stage's
	// filesystem.
	run func(dir string) error
	fs  string // "ext4" or "xfs"
	// prep, when set, runs untimed before each run.
	prep func(dir string) error
}

// timing is one run of a stage.
type timing struct{ wall, user, sys time.Duration }

func rusage() (user, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func stagesChild(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: bench", childStages, "RUNS INPUT EXT4DIR [XFSDIR]")
		return 2
	}
	runs, err := strconv.Atoi(args[0])
	if err == nil {
		err = timeStages(runs, args[1], args[2], args[3:], os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: stages:", err)
		return 1
	}
	return 0
}

// hashingReader hashes what it reads, as Entry.OpenRootfs's reader does.
type hashingReader struct {
	r io.Reader
	h hash.Hash
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

func timeStages(runs int, input, ext4 string, xfs []string, out io.Writer) error {
	ctx := context.Background()
	xzData, err := os.ReadFile(input)
	if err != nil {
		return err
	}
	dec, err := xzpar.NewReader(bytes.NewReader(xzData), int64(len(xzData)), xzpar.Options{})
	if err != nil {
		return err
	}
	tarData, err := io.ReadAll(dec)
	dec.Close()
	if err != nil {
		return err
	}
	dirs := map[string]string{"ext4": ext4}
	if len(xfs) > 0 {
		dirs["xfs"] = xfs[0]
	}
	// Caches holding the image, with an unpacked copy: copied on ext4,
	// reflinked on xfs.
	entries := map[string]*cache.Entry{}
	for fs, dir := range dirs {
		policy := cache.UnpackedAlways
		if fs == "xfs" {
			policy = cache.UnpackedAuto
		}
		e, err := primeCache(ctx, filepath.Join(dir, "stages-cache"), filepath.Join(dir, "stages-prime"), xzData, policy)
		if err != nil {
			return fmt.Errorf("%s: %w", fs, err)
		}
		entries[fs] = e
	}
	decode := func(workers int, stream bool) func(string) error {
		return func(string) error {
			var r io.ReadCloser
			var err error
			if stream {
				r, err = xzpar.NewStreamReader(bytes.NewReader(xzData), xzpar.Options{Workers: workers})
			} else {
				r, err = xzpar.NewReader(bytes.NewReader(xzData), int64(len(xzData)), xzpar.Options{Workers: workers})
			}
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(io.Discard, r)
			return err
		}
	}
	clone := func(fs string, noReflink bool) func(string) error {
		return func(dir string) error {
			u, err := entries[fs].OpenUnpacked()
			if err != nil {
				return err
			}
			defer u.Close()
			rs, err := cache.NewRootfsStage(dir)
			if err != nil {
				return err
			}
			if err := rs.Clone(ctx, u, cache.CloneOptions{NoReflink: noReflink}); err != nil {
				rs.Discard()
				return err
			}
			return rs.Install()
		}
	}
	stages := []stage{
		{name: "sha256", what: "hash the xz file (verifying a cached tarball)", run: func(string) error {
			h := sha256.New()
			h.Write(xzData)
			h.Sum(nil)
			return nil
		}},
		{name: "decode-1", what: "xz decode, 1 worker, to nothing", run: decode(1, false)},
		{name: "decode", what: fmt.Sprintf("xz decode, stream reader, %d workers, to nothing", runtime.GOMAXPROCS(0)), run: decode(0, true)},
		{name: "tar-parse", what: "tar headers and content, from memory, nothing written", run: func(string) error {
			tr := tar.NewReader(bytes.NewReader(tarData))
			for {
				if _, err := tr.Next(); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if _, err := io.Copy(io.Discard, tr); err != nil {
					return err
				}
			}
		}},
		{name: "extract", what: "cache.Extract from memory: files, links, owners, modes, times", fs: "ext4", run: func(dir string) error {
			return cache.Extract(ctx, bytes.NewReader(tarData), dir, cache.UnpackOptions{})
		}},
		{name: "xz-path", what: "the warm xz path: hashing reader, stream decode, stage, install", fs: "ext4", run: func(dir string) error {
			rs, err := cache.NewRootfsStage(dir)
			if err != nil {
				return err
			}
			r := &hashingReader{r: bytes.NewReader(xzData), h: sha256.New()}
			if err := rs.UnpackReader(ctx, r, cache.UnpackOptions{}); err != nil {
				rs.Discard()
				return err
			}
			return rs.Install()
		}},
		{name: "clone-copy", what: "the unpacked copy, cloned by copying (ext4), unchanged files not hashed", fs: "ext4", run: clone("ext4", true)},
	}
	if entries["xfs"] != nil {
		stages = append(stages,
			stage{name: "clone-reflink", what: "the unpacked copy, cloned with reflinks (xfs), unchanged files not hashed", fs: "xfs", run: clone("xfs", false)})
	}
	// The shell template's own steps, for scale.
	if xzBin, err := exec.LookPath("xz"); err == nil {
		stages = append(stages, stage{name: "xz -dc", what: "liblzma: xz -dc -T1 to nothing (the shell template's decoder)", run: func(string) error {
			cmd := exec.Command(xzBin, "-dc", "-T1")
			cmd.Stdin = bytes.NewReader(xzData)
			return cmd.Run()
		}})
	}
	if tarBin, err := exec.LookPath("tar"); err == nil {
		tarFile := filepath.Join(ext4, "stages.tar")
		if err := os.WriteFile(tarFile, tarData, 0o644); err != nil {
			return err
		}
		defer os.Remove(tarFile)
		stages = append(stages, stage{name: "tar -xpf", what: "GNU tar extracting the tar (the shell template's extractor)", fs: "ext4", run: func(dir string) error {
			return exec.Command(tarBin, "--numeric-owner", "--xattrs-include=*", "-xpf", tarFile, "-C", dir).Run()
		}})
	}

	times := make([][]timing, len(stages))
	for round := range runs {
		for i, st := range stages {
			dir := ""
			if st.fs != "" {
				dir = filepath.Join(dirs[st.fs], fmt.Sprintf("stage-%d-%d", round, i))
				os.RemoveAll(dir)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
			}
			syscall.Sync()
			var childUser, childSys time.Duration
			u0, s0 := rusage()
			c0 := childRusage()
			start := time.Now()
			if err := st.run(dir); err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
			wall := time.Since(start)
			u1, s1 := rusage()
			c1 := childRusage()
			childUser, childSys = c1[0]-c0[0], c1[1]-c0[1]
			times[i] = append(times[i], timing{wall, u1 - u0 + childUser, s1 - s0 + childSys})
			if dir != "" {
				os.RemoveAll(dir)
			}
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stage\twall s\tuser s\tsys s\tCPU s\twhat")
	med := map[string]timing{}
	for i, st := range stages {
		m := medianTiming(times[i])
		med[st.name] = m
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%s\n", st.name, m.wall.Seconds(), m.user.Seconds(), m.sys.Seconds(),
			(m.user + m.sys).Seconds(), st.what)
	}
	tw.Flush()
	n := float64(runtime.GOMAXPROCS(0))
	cpu := func(name string) float64 { return (med[name].user + med[name].sys).Seconds() }
	fmt.Fprintf(out, "floor of the xz path on %.0f CPUs, all stages overlapped: (decode-1 + extract + sha256 CPU) / %.0f = %.3f s (xz-path took %.3f s)\n",
		n, n, (cpu("decode-1")+cpu("extract")+cpu("sha256"))/n, med["xz-path"].wall.Seconds())
	if _, ok := med["xz -dc"]; ok {
		fmt.Fprintf(out, "decoder CPU against liblzma: decode-1 / xz -dc = %.2fx\n", cpu("decode-1")/cpu("xz -dc"))
	}
	return nil
}

// childRusage is the user and system time of the waited-for children.
func childRusage() [2]time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return [2]time.Duration{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

func medianTiming(ts []timing) timing {
	pick := func(f func(timing) time.Duration) time.Duration {
		var v []time.Duration
		for _, t := range ts {
			v = append(v, f(t))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return timing{pick(func(t timing) time.Duration { return t.wall }), pick(func(t timing) time.Duration { return t.user }),
		pick(func(t timing) time.Duration { return t.sys })}
}

// primeCache stores the image (xzData, with fetchtest's default meta) in
// a cache at root and keeps its unpacked copy with policy, unpacking it
// into a container under work.
func primeCache(ctx context.Context, root, work string, xzData []byte, policy cache.UnpackedPolicy) (*cache.Entry, error) {
	c := cache.Cache{Root: root, Warn: os.Stderr}
	k := cache.Key{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default"}
	img := fetchtest.DefaultImage()
	meta, err := fetchtest.MetaTarball(img.Meta)
	if err != nil {
		return nil, err
	}
	unlock, err := c.Lock(ctx, k)
	if err != nil {
		return nil, err
	}
	st, err := c.Stage(k)
	if err == nil {
		err = os.WriteFile(filepath.Join(st.Dir, "rootfs.tar.xz"), xzData, 0o644)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(st.Dir, "meta.tar.xz"), meta, 0o644)
	}
	var e *cache.Entry
	if err == nil {
		e, err = st.CommitWith(img.Build, compat.System, cache.Trust{})
		st.Abort()
	}
	unlock()
	if err != nil {
		return nil, err
	}
	target := filepath.Join(work, "rootfs")
	os.RemoveAll(work)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	rs, err := cache.NewRootfsStage(target)
	if err != nil {
		return nil, err
	}
	defer rs.Discard()
	r, err := e.OpenRootfs()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := rs.UnpackReader(ctx, r, cache.UnpackOptions{}); err != nil {
		return nil, err
	}
	if err := c.KeepUnpacked(ctx, k, e.RootfsSHA256, rs, policy, true); err != nil {
		return nil, err
	}
	unlock, err = c.Lock(ctx, k)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if e, err = c.Lookup(k); err == nil && (e == nil || !e.HasUnpacked()) {
		err = fmt.Errorf("no unpacked copy in %s", strings.TrimSpace(root))
	}
	return e, err
}

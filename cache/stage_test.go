package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/compat"
)

func TestCommitReplaces(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("two-step=%v", fallback), func(t *testing.T) {
			c := Cache{Root: t.TempDir(), hooks: &testHooks{noExchange: fallback}}
			a := newTestImage(t, "a", 2000, map[string]string{"fstab": "a fstab\n", "create-message": "from a\n"})
			b := newTestImage(t, "b", 3000, nil)
			checkEntry(t, storeImage(t, c, testKey, a), a)
			eb := storeImage(t, c, testKey, b)
			checkEntry(t, eb, b)
			// No file of the old build is left over.
			for _, n := range []string{"fstab", "create-message"} {
				if exists(filepath.Join(eb.Dir, n)) {
					t.Errorf("%s of the old build is still there", n)
				}
			}
			if got := dirNames(t, filepath.Dir(eb.Dir)); !reflect.DeepEqual(got, []string{".default.lock", "default"}) {
				t.Errorf("beside the entry: %v", got)
			}
		})
	}
}

// TestCommitRefuses: a stage that cannot make an entry leaves the old one
// as it was, and says why.
func TestCommitRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  compat.Mode
		build string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"no config", compat.System, "b", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, map[string]string{"config": "", "config-user": "user only\n"}).writeTo(t, dir)
		}, "meta tarball is missing the configuration file"},
		{"user config only, user mode", compat.User, "b", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, map[string]string{"config": "", "config-user": "user only\n"}).writeTo(t, dir)
		}, ""},
		{"no meta", compat.System, "b", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, nil).writeTo(t, dir)
			os.Remove(filepath.Join(dir, "meta.tar.xz"))
		}, "read meta tarball: "},
		{"meta not xz", compat.System, "b", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, nil).writeTo(t, dir)
			os.WriteFile(filepath.Join(dir, "meta.tar.xz"), []byte("not xz"), 0o644)
		}, ""},
		{"no rootfs", compat.System, "b", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, nil).writeTo(t, dir)
			os.Remove(filepath.Join(dir, "rootfs.tar.xz"))
		}, "rootfs.tar.xz: no such file or directory"},
		{"rootfs truncated", compat.System, "b", func(t *testing.T, dir string) {
			img := newTestImage(t, "b", 1000, nil)
			img.rootfs = img.rootfs[:len(img.rootfs)/2]
			img.writeTo(t, dir)
		}, "rootfs tarball: xz: "},
		{"rootfs not xz", compat.System, "b", func(t *testing.T, dir string) {
			img := newTestImage(t, "b", 10, nil)
			img.rootfs = []byte("this is not xz at all")
			img.writeTo(t, dir)
		}, "rootfs tarball: xz: "},
		{"rootfs a directory", compat.System, "b", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, nil).writeTo(t, dir)
			os.Remove(filepath.Join(dir, "rootfs.tar.xz"))
			os.Mkdir(filepath.Join(dir, "rootfs.tar.xz"), 0o755)
		}, "rootfs.tar.xz is not a regular file"},
		{"meta file named build_id", compat.System, "b", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, map[string]string{"build_id": "x"}).writeTo(t, dir)
		}, "meta tarball: it has a file named build_id, which the cache keeps for itself"},
		{"meta file named like the record", compat.System, "b", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, map[string]string{".lxc-download": "x"}).writeTo(t, dir)
		}, "which the cache keeps for itself"},
		{"malformed expiry", compat.System, "b", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, map[string]string{"expiry": "tomorrow\n"}).writeTo(t, dir)
		}, `meta tarball: expiry "tomorrow" is not a Unix time`},
		{"empty build", compat.System, "", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, nil).writeTo(t, dir)
		}, `invalid build id ""`},
		{"build with a newline", compat.System, "b\nc", func(t *testing.T, dir string) {
			newTestImage(t, "b", 10, nil).writeTo(t, dir)
		}, `invalid build id "b\nc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Cache{Root: t.TempDir()}
			a := newTestImage(t, "a", 100, nil)
			storeImage(t, c, testKey, a)
			st, err := c.Stage(testKey)
			if err != nil {
				t.Fatal(err)
			}
			tc.setup(t, st.Dir)
			e, err := st.CommitWith(tc.build, tc.mode, fakeTrust(tc.build))
			st.Abort()
			if tc.name == "meta not xz" {
				// compat's message; any error will do.
				if err == nil {
					t.Fatal("Commit accepted a meta tarball that is not xz")
				}
				tc.want = err.Error()
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Commit: %v", err)
				}
				if e.BuildID != "b" {
					t.Fatalf("entry %+v", e)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Commit = %v, want %q", err, tc.want)
			}
			if tc.name == "no config" && err.Error() != tc.want {
				t.Fatalf("Commit = %q, want exactly %q", err, tc.want)
			}
			got, err := c.Lookup(testKey)
			if err != nil {
				t.Fatal(err)
			}
			checkEntry(t, got, a)
			if names := dirNames(t, filepath.Dir(got.Dir)); !reflect.DeepEqual(names, []string{".default.lock", "default"}) {
				t.Errorf("left beside the entry: %v", names)
			}
		})
	}
}

func TestCommitTwice(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	st, _ := c.Stage(testKey)
	img := newTestImage(t, "a", 10, nil)
	img.writeTo(t, st.Dir)
	if _, err := st.CommitWith("a", compat.System, fakeTrust("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CommitWith("a", compat.System, fakeTrust("a")); err == nil {
		t.Error("second Commit of a stage succeeded")
	}
}

// TestStageKeepsPartials: the stage is the same directory every run, and
// what a killed download left there resumes, while anything else goes.
func TestStageKeepsPartials(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	st, err := c.Stage(testKey)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(c.Root, "download/debian/bookworm/amd64/.default.stage")
	if st.Dir != want {
		t.Fatalf("stage in %s, want %s", st.Dir, want)
	}
	for _, n := range []string{"rootfs.tar.xz.partial", "rootfs.tar.xz.partial.info", "meta.tar.xz", "rootfs.tar.xz", "junk"} {
		os.WriteFile(filepath.Join(st.Dir, n), []byte(n), 0o644)
	}
	os.Mkdir(filepath.Join(st.Dir, "x.partial"), 0o755) // not a file: not resumable
	// A killed run leaves everything; the next Stage keeps the partials.
	st2, err := c.Stage(testKey)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Dir != st.Dir {
		t.Fatalf("stage moved from %s to %s", st.Dir, st2.Dir)
	}
	if got := dirNames(t, st.Dir); !reflect.DeepEqual(got, []string{"rootfs.tar.xz.partial", "rootfs.tar.xz.partial.info"}) {
		t.Errorf("after Stage: %v", got)
	}
	os.WriteFile(filepath.Join(st.Dir, "meta.tar.xz"), nil, 0o644)
	st2.Abort()
	if got := dirNames(t, st.Dir); !reflect.DeepEqual(got, []string{"rootfs.tar.xz.partial", "rootfs.tar.xz.partial.info"}) {
		t.Errorf("after Abort: %v", got)
	}
	// Cleanup removes the partials too.
	st2.Cleanup()
	if exists(st.Dir) {
		t.Errorf("stage not removed by Cleanup")
	}
	st2, _ = c.Stage(testKey)
	os.WriteFile(filepath.Join(st.Dir, "rootfs.tar.xz.partial"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(st.Dir, "rootfs.tar.xz.partial.info"), []byte("x"), 0o644)
	// Without partials, Abort removes the stage.
	os.Remove(filepath.Join(st.Dir, "rootfs.tar.xz.partial"))
	os.Remove(filepath.Join(st.Dir, "rootfs.tar.xz.partial.info"))
	st2.Abort()
	if exists(st.Dir) {
		t.Errorf("empty stage not removed")
	}
	st2.Abort() // again: nothing to do
}

func TestTempStage(t *testing.T) {
	if _, err := NewTempStage(""); err == nil {
		t.Error("a temporary stage without a parent (which would be /tmp) was made")
	}
	if _, err := NewTempStage(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a temporary stage in a missing directory was made")
	}
	container := t.TempDir()
	st, err := NewTempStage(container)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(st.Dir) != container || !strings.HasPrefix(filepath.Base(st.Dir), ".") {
		t.Errorf("temporary stage %s, want a hidden directory in %s", st.Dir, container)
	}
	img := newTestImage(t, "t1", 500, nil)
	img.writeTo(t, st.Dir)
	e, err := st.CommitWith(img.build, compat.System, img.trust())
	if err != nil {
		t.Fatal(err)
	}
	st.Abort() // as cmd's defer does: the entry stays
	checkEntry(t, e, img)
	if e.Dir != st.Dir || time.Since(e.Fetched) > time.Minute {
		t.Errorf("entry %+v", e)
	}
	if exp, err := e.Expired(time.Now(), compat.System); err != nil || exp {
		t.Errorf("Expired = %v, %v", exp, err)
	}
	st.Cleanup()
	if got := dirNames(t, container); len(got) != 0 {
		t.Errorf("after Cleanup: %v", got)
	}
	// Abort before Commit removes it all.
	st, _ = NewTempStage(container)
	os.WriteFile(filepath.Join(st.Dir, "rootfs.tar.xz.partial"), nil, 0o644)
	st.Abort()
	if got := dirNames(t, container); len(got) != 0 {
		t.Errorf("after Abort: %v", got)
	}
	// Without a rootfs there is nothing to commit.
	st, _ = NewTempStage(container)
	newTestImage(t, "t2", 10, nil).writeTo(t, st.Dir)
	os.Remove(filepath.Join(st.Dir, "rootfs.tar.xz"))
	if _, err := st.CommitWith("t2", compat.System, fakeTrust("t2")); err == nil || !strings.Contains(err.Error(), "rootfs.tar.xz: no such file") {
		t.Errorf("Commit without rootfs = %v", err)
	}
	st.Abort()
	// A temporary stage refuses meta without config too.
	st, _ = NewTempStage(container)
	defer st.Cleanup()
	newTestImage(t, "t2", 10, map[string]string{"config": ""}).writeTo(t, st.Dir)
	if _, err := st.CommitWith("t2", compat.System, fakeTrust("t2")); err == nil || err.Error() != "meta tarball is missing the configuration file" {
		t.Errorf("Commit = %v", err)
	}
}

// crashCase is a commit killed at a step, and the build Lookup must find.
type crashCase struct {
	step     string
	fallback bool // the two-rename swap instead of RENAME_EXCHANGE
	want     string
}

// TestCrash kills a process storing a new build (b) over an old one (a) at
// each step of the commit, then checks that the next run finds one of the
// two complete, tidies up, and can store another.
func TestCrash(t *testing.T) {
	a := newTestImage(t, "a", 3000, map[string]string{"fstab": "from a\n"})
	b := newTestImage(t, "b", 4000, nil)
	c3 := newTestImage(t, "c", 100, nil)
	srcB := imageSource(t, b)
	for _, tc := range []crashCase{
		{"built", false, "a"},
		{"ready", false, "a"},
		{"exchanged", false, "b"},
		{"built", true, "a"},
		{"ready", true, "a"},
		{"aside", true, "b"},
		{"swapped", true, "b"},
	} {
		for _, first := range []bool{false, true} {
			if first && tc.step != "built" && tc.step != "ready" {
				continue // with no old entry there is nothing to swap
			}
			t.Run(fmt.Sprintf("%s/two-step=%v/first=%v", tc.step, tc.fallback, first), func(t *testing.T) {
				c := Cache{Root: t.TempDir()}
				want := &a
				if !first {
					storeImage(t, c, testKey, a)
				}
				cmd := helperCmd(t, "commit", c.Root, srcB)
				cmd.Env = append(cmd.Env, "CRASH_AT="+tc.step)
				if tc.fallback {
					cmd.Env = append(cmd.Env, "NO_EXCHANGE=1")
				}
				err := cmd.Run()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("helper: %v, want death by SIGKILL at %s", err, tc.step)
				}
				if tc.want == "b" || (first && tc.step == "ready") {
					want = &b
				} else if first {
					want = nil
				}
				e, err := c.Lookup(testKey)
				if err != nil {
					t.Fatal(err)
				}
				if want == nil {
					if e != nil {
						t.Fatalf("Lookup = %+v, want nothing", e)
					}
				} else {
					checkEntry(t, e, *want)
				}
				parent := filepath.Join(c.Root, "download/debian/bookworm/amd64")
				for _, n := range dirNames(t, parent) {
					if n != ".default.lock" && n != ".default.stage" && n != "default" {
						t.Errorf("%s left after Lookup", n)
					}
				}
				checkEntry(t, storeImage(t, c, testKey, c3), c3)
			})
		}
	}
}

// imageSource puts img where the helper's commitFrom reads it.
func imageSource(t *testing.T, img testImage) string {
	dir := t.TempDir()
	img.writeTo(t, dir)
	os.WriteFile(filepath.Join(dir, "build"), []byte(img.build), 0o644)
	return dir
}

// TestKillAnyInstant kills a process that stores two builds in turn, at
// random instants, and checks each time that the next run finds one of them
// complete and can go on.
func TestKillAnyInstant(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes at random instants for a few seconds")
	}
	a := newTestImage(t, "a", 200<<10, map[string]string{"fstab": "from a\n"})
	b := newTestImage(t, "b", 300<<10, nil)
	srcA, srcB := imageSource(t, a), imageSource(t, b)
	c := Cache{Root: t.TempDir()}
	storeImage(t, c, testKey, a)
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for i := range 16 {
		cmd := helperCmd(t, "commit-loop", c.Root, srcA, srcB)
		if i%2 == 1 {
			cmd.Env = append(cmd.Env, "NO_EXCHANGE=1")
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rng.IntN(200)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("helper: %v", err)
		}
		unlock, err := c.Lock(t.Context(), testKey)
		if err != nil {
			t.Fatal(err)
		}
		e, err := c.Lookup(testKey)
		unlock()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			t.Fatalf("kill %d: no entry", i)
		}
		if e.BuildID == "a" {
			checkEntry(t, e, a)
		} else {
			checkEntry(t, e, b)
		}
	}
}

// mountTmpfs mounts a tmpfs with options at a new directory, for the tests
// of full and read-only filesystems, or skips.
func mountTmpfs(t *testing.T, options string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	// A tmpfs's root is 1777 by default, which no trusted cache is.
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755,"+options); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFull: ENOSPC while writing the new entry leaves the old one
// intact, and the stage and the half-made entry are cleaned up.
func TestDiskFull(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("two-step=%v", fallback), func(t *testing.T) {
			root := mountTmpfs(t, "size=1m")
			c := Cache{Root: root, hooks: &testHooks{noExchange: fallback}}
			a := newTestImage(t, "a", 50<<10, nil)
			storeImage(t, c, testKey, a)
			// A rootfs that fits, and a meta file that does not fit beside
			// it once unpacked.
			b := newTestImage(t, "b", 700<<10, map[string]string{"templates": strings.Repeat("/etc/hostname\n", 400<<10/14)})
			st, err := c.Stage(testKey)
			if err != nil {
				t.Fatal(err)
			}
			b.writeTo(t, st.Dir)
			_, err = st.CommitWith(b.build, compat.System, b.trust())
			if err == nil {
				t.Fatal("Commit on a full disk succeeded")
			}
			if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "out of disk space") || !strings.Contains(err.Error(), "the cached copy is unchanged") {
				t.Errorf("Commit = %v", err)
			}
			st.Abort()
			e, err := c.Lookup(testKey)
			if err != nil {
				t.Fatal(err)
			}
			checkEntry(t, e, a)
			if names := dirNames(t, filepath.Dir(e.Dir)); !reflect.DeepEqual(names, []string{".default.lock", "default"}) {
				t.Errorf("left beside the entry: %v", names)
			}
			// The space is back: a smaller image fits.
			c3 := newTestImage(t, "c", 500<<10, nil)
			checkEntry(t, storeImage(t, c, testKey, c3), c3)
		})
	}
}

// TestDiskFullDownload: a download that fills the disk in the stage, as the
// fetch client writes it, leaves the old entry intact, and Cleanup gives the
// space back.
func TestDiskFullDownload(t *testing.T) {
	root := mountTmpfs(t, "size=1m")
	c := Cache{Root: root}
	a := newTestImage(t, "a", 50<<10, nil)
	storeImage(t, c, testKey, a)
	st, err := c.Stage(testKey)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(st.Dir, "rootfs.tar.xz.partial"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for err == nil {
		_, err = f.Write(chunk)
	}
	f.Close()
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("writing the download: %v, want ENOSPC", err)
	}
	st.Abort()
	if !exists(f.Name()) {
		t.Fatal("Abort removed the partial download")
	}
	st.Cleanup()
	if exists(st.Dir) {
		t.Error("Cleanup left the stage")
	}
	e, err := c.Lookup(testKey)
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, e, a)
	b := newTestImage(t, "b", 700<<10, nil)
	checkEntry(t, storeImage(t, c, testKey, b), b)
}

// TestNoInodes: ENOSPC when even a directory cannot be made.
func TestNoInodes(t *testing.T) {
	root := mountTmpfs(t, "size=4m")
	c := Cache{Root: root}
	a := newTestImage(t, "a", 1000, nil)
	storeImage(t, c, testKey, a)
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_REMOUNT, fmt.Sprintf("size=4m,nr_inodes=%d", fs.Files-fs.Ffree)); err != nil {
		t.Skipf("cannot limit the tmpfs's inodes: %v", err)
	}
	_, err := c.Stage(testKey)
	if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "create staging directory: out of disk space") {
		t.Errorf("Stage = %v", err)
	}
	if _, err := NewTempStage(root); !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "out of disk space") {
		t.Errorf("NewTempStage = %v", err)
	}
	e, err := c.Lookup(testKey)
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, e, a)
}

// TestReadOnlyCache: a cache that cannot be written is still read, Writable
// says so, and a temporary stage next to the container takes the download.
// As root the cache is a tmpfs remounted read-only; otherwise its
// directories lose their write permission.
func TestReadOnlyCache(t *testing.T) {
	var root string
	if os.Geteuid() == 0 {
		root = mountTmpfs(t, "size=1m")
	} else {
		root = t.TempDir()
	}
	var warn bytes.Buffer
	c := Cache{Root: root, Warn: &warn}
	a := newTestImage(t, "a", 1000, nil)
	storeImage(t, c, testKey, a)
	// A third image was being swapped in when its run was killed: the
	// entry moved aside, the new one not yet in place.
	half := testKey
	half.Variant = "cloud"
	eh := storeImage(t, c, half, newTestImage(t, "h", 100, nil))
	if err := os.Rename(eh.Dir, filepath.Join(filepath.Dir(eh.Dir), ".cloud.new")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount read-only: %v", err)
		}
	} else {
		setWritable(t, root, false)
		t.Cleanup(func() { setWritable(t, root, true) })
	}
	err := c.Writable()
	if err == nil || !readOnly(err) || !strings.HasPrefix(err.Error(), "cache "+root+" is not writable: ") {
		t.Errorf("Writable = %v", err)
	}
	unlock, err := c.Lock(t.Context(), testKey)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	e, err := c.Lookup(testKey)
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, e, a)
	if _, err := c.Stage(testKey); err == nil || !readOnly(err) {
		t.Errorf("Stage = %v", err)
	}
	if err := c.Flush(testKey); err == nil || !readOnly(err) {
		t.Errorf("Flush = %v", err)
	}
	unlock()
	checkEntry(t, e, a)

	// The interrupted swap cannot be finished: said, and no entry.
	if e, err := c.Lookup(half); e != nil || err != nil {
		t.Errorf("Lookup of the half-swapped entry = %v, %v", e, err)
	}
	if w := warn.String(); !strings.HasPrefix(w, "WARNING: cannot repair the interrupted update of the cached copy in "+eh.Dir) || strings.Count(w, "\n") != 1 {
		t.Errorf("warning %q", w)
	}

	// Another image: no lock file can be made, so there is no lock to take,
	// and the download goes next to the container.
	other := testKey
	other.Release = "trixie"
	unlock, err = c.Lock(t.Context(), other)
	if err != nil {
		t.Fatalf("Lock of a new image: %v", err)
	}
	defer unlock()
	if e, err := c.Lookup(other); e != nil || err != nil {
		t.Fatalf("Lookup = %v, %v", e, err)
	}
	container := t.TempDir()
	st, err := NewTempStage(container)
	if err != nil {
		t.Fatal(err)
	}
	b := newTestImage(t, "b", 1000, nil)
	b.writeTo(t, st.Dir)
	eb, err := st.CommitWith("b", compat.System, fakeTrust("b"))
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, eb, b)
	st.Cleanup()
	if got := dirNames(t, container); len(got) != 0 {
		t.Errorf("left in the container: %v", got)
	}
}

func setWritable(t *testing.T, root string, w bool) {
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			mode := os.FileMode(0o555)
			if w {
				mode = 0o755
			}
			os.Chmod(p, mode)
		}
		return nil
	})
}

// TestReadOnlyCacheAsNobody runs TestReadOnlyCache as an unprivileged user,
// so that its permission path is tested when the suite runs as root.
func TestReadOnlyCacheAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: TestReadOnlyCache already runs unprivileged")
	}
	runAsNobody(t, "TestReadOnlyCache")
}

// runAsNobody runs the test named test again, in a copy of this test
// binary, as uid and gid 65534, and fails unless it passes there.
func runAsNobody(t *testing.T, test string) {
	t.Helper()
	out, err := nobodyCmd(t, "-test.run=^"+test+"$", "-test.v").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+test)) {
		t.Fatalf("%s as uid 65534: %v\n%s", test, err, out)
	}
}

// nobodyCmd runs a copy of this test binary with args as uid and gid
// 65534, with a temporary directory of its own.
func nobodyCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		os.Chmod(d, 0o755)
	}
	bin := filepath.Join(dir, "cache.test")
	if err := copyTestBinary(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o777)
	os.Chmod(tmp, 0o777|os.ModeSticky)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

func copyTestBinary(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

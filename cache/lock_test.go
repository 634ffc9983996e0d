package cache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
)

// helperEnv selects what TestCacheHelperProcess does when this test binary
// is run again as a helper process.
const helperEnv = "LXC_DOWNLOAD_CACHE_HELPER"

// helperCmd runs this test binary as a helper process doing mode with args.
func helperCmd(t *testing.T, mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCacheHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "HELPER_ARGS="+strings.Join(args, "\x1f"))
	cmd.Stderr = os.Stderr
	return cmd
}

// TestCacheHelperProcess is not a test: it is what a helper process runs.
func TestCacheHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("only run as a helper process")
	}
	args := strings.Split(os.Getenv("HELPER_ARGS"), "\x1f")
	c := Cache{Root: args[0]}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	switch mode {
	case "lock":
		// Hold the lock for a while, logging when it is held.
		unlock, err := c.Lock(context.Background(), testKey)
		if err != nil {
			fail(err)
		}
		lockLog(args[1], "start")
		time.Sleep(30 * time.Millisecond)
		lockLog(args[1], "end")
		unlock()
	case "hold":
		// Take the lock, say so, and wait to be killed.
		if _, err := c.Lock(context.Background(), testKey); err != nil {
			fail(err)
		}
		os.WriteFile(args[1], nil, 0o644)
		time.Sleep(time.Hour)
	case "commit", "commit-loop":
		// Store the images in args[1:], one after the other, forever in
		// commit-loop mode; die by SIGKILL at step CRASH_AT of a commit.
		c.hooks = &testHooks{noExchange: os.Getenv("NO_EXCHANGE") != ""}
		if at := os.Getenv("CRASH_AT"); at != "" {
			c.hooks.crash = func(step string) {
				if step == at {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
					time.Sleep(time.Hour)
				}
			}
		}
		for i := 0; ; i++ {
			src := args[1+i%(len(args)-1)]
			if err := commitFrom(c, src); err != nil {
				fail(err)
			}
			if mode == "commit" && i == len(args)-2 {
				break
			}
		}
	default:
		fail(fmt.Errorf("unknown helper mode %q", mode))
	}
	os.Exit(0)
}

// commitFrom stores the image in dir src (rootfs.tar.xz, meta.tar.xz and
// its build in a file "build").
func commitFrom(c Cache, src string) error {
	unlock, err := c.Lock(context.Background(), testKey)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := c.Stage(testKey)
	if err != nil {
		return err
	}
	defer st.Abort()
	for _, n := range []string{"rootfs.tar.xz", "meta.tar.xz"} {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(st.Dir, n), b, 0o644); err != nil {
			return err
		}
	}
	build, err := os.ReadFile(filepath.Join(src, "build"))
	if err != nil {
		return err
	}
	_, err = st.CommitWith(string(build), compat.System, fakeTrust(string(build)))
	return err
}

func lockLog(path, what string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(f, "%s %d\n", what, os.Getpid())
	f.Close()
}

// checkSerial fails unless the log shows each holder's start followed by
// its end, never two holders at once, n holders in all.
func checkSerial(t *testing.T, log string, n int) {
	t.Helper()
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var holder string
	count := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		what, who, _ := strings.Cut(sc.Text(), " ")
		switch {
		case what == "start" && holder == "":
			holder = who
			count++
		case what == "end" && holder == who:
			holder = ""
		default:
			t.Fatalf("%q while %q holds the lock", sc.Text(), holder)
		}
	}
	if count != n || holder != "" {
		t.Fatalf("%d holders (want %d), last %q", count, n, holder)
	}
}

func TestLockProcesses(t *testing.T) {
	root := t.TempDir()
	log := filepath.Join(root, "log")
	const n = 6
	var cmds []*exec.Cmd
	for range n {
		cmd := helperCmd(t, "lock", root, log)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	checkSerial(t, log, n)
	// The lock file is beside the entry, not in it.
	if _, err := os.Stat(filepath.Join(root, "download/debian/bookworm/amd64/.default.lock")); err != nil {
		t.Error(err)
	}
}

func TestLockGoroutines(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	log := filepath.Join(c.Root, "log")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range 8 {
		wg.Go(func() {
			unlock, err := c.Lock(t.Context(), testKey)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			f, _ := os.OpenFile(log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			fmt.Fprintf(f, "start %d\n", i)
			time.Sleep(5 * time.Millisecond)
			fmt.Fprintf(f, "end %d\n", i)
			f.Close()
			unlock()
			unlock() // twice is harmless
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	checkSerial(t, log, 8)
}

// TestLockConcurrentDownloads: several runs for one image at once; one
// stores it and the others, having waited, find it fresh and do not.
func TestLockConcurrentDownloads(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	img := newTestImage(t, "b1", 1000, nil)
	src := t.TempDir()
	img.writeTo(t, src)
	const n = 8
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		downloads int
		entries   []*Entry
		errs      []error
	)
	for range n {
		wg.Go(func() {
			e, downloaded, err := lookupOrStore(t.Context(), c, src, img.build)
			mu.Lock()
			defer mu.Unlock()
			if downloaded {
				downloads++
			}
			if err != nil {
				errs = append(errs, err)
			}
			entries = append(entries, e)
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if downloads != 1 {
		t.Errorf("%d downloads, want 1", downloads)
	}
	for _, e := range entries {
		checkEntry(t, e, img)
	}
}

// lookupOrStore is the run flow: under the lock, use the entry or store
// the image from src.
func lookupOrStore(ctx context.Context, c Cache, src, build string) (e *Entry, downloaded bool, err error) {
	unlock, err := c.Lock(ctx, testKey)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if e, err = c.Lookup(testKey); e != nil || err != nil {
		return e, false, err
	}
	st, err := c.Stage(testKey)
	if err != nil {
		return nil, true, err
	}
	defer st.Abort()
	for _, n := range []string{"rootfs.tar.xz", "meta.tar.xz"} {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			return nil, true, err
		}
		if err := os.WriteFile(filepath.Join(st.Dir, n), b, 0o644); err != nil {
			return nil, true, err
		}
	}
	e, err = st.CommitWith(build, compat.System, fakeTrust(build))
	return e, true, err
}

// TestLockHolderKilled: the kernel drops the lock of a holder killed by
// SIGKILL; until then, others wait, and give up when their context ends.
func TestLockHolderKilled(t *testing.T) {
	root := t.TempDir()
	ready := filepath.Join(root, "ready")
	cmd := helperCmd(t, "hold", root, ready)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for !exists(ready) {
		time.Sleep(5 * time.Millisecond)
	}
	c := Cache{Root: root}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Lock(ctx, testKey)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "wait for the lock on the cached image") {
		t.Fatalf("Lock while held = %v, want a deadline error", err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	unlock, err := c.Lock(ctx, testKey)
	if err != nil {
		t.Fatalf("Lock after the holder died: %v", err)
	}
	unlock()
}

func TestLockErrors(t *testing.T) {
	// The entry's parent is a file: not a read-only cache, an error.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "download/debian/bookworm"), 0o755)
	os.WriteFile(filepath.Join(root, "download/debian/bookworm/amd64"), nil, 0o644)
	if _, err := (Cache{Root: root}).Lock(t.Context(), testKey); err == nil || !strings.Contains(err.Error(), "lock cache entry") {
		t.Errorf("Lock = %v", err)
	}
	// A cancelled context while the lock is free still takes it: only
	// waiting is cancelled.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	unlock, err := (Cache{Root: t.TempDir()}).Lock(ctx, testKey)
	if err != nil {
		t.Fatalf("Lock with a free lock: %v", err)
	}
	unlock()
}

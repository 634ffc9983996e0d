package cache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	case "probe":
		// Exit 3 if any of the paths can be opened (and, for a
		// directory, listed), as the user this runs as.
		for _, p := range args[1:] {
			f, err := os.Open(p)
			if err == nil {
				_, err = f.Readdirnames(1)
				if errors.Is(err, syscall.ENOTDIR) || err == io.EOF {
					err = nil
				}
				f.Close()
			}
			if err == nil {
				fmt.Fprintln(os.Stderr, "reachable:", p)
				os.Exit(3)
			}
			fmt.Fprintln(os.Stderr, "unreachable:", err)
		}
	case "lookup":
		// Lock, look up and read the entry, as a run from a store this
		// user may not change.
		unlock, err := c.Lock(context.Background(), testKey)
		if err != nil {
			fail(err)
		}
		e, err := c.Lookup(testKey)
		if err != nil || e == nil {
			fail(fmt.Errorf("Lookup = %v, %v", e, err))
		}
		r, err := e.OpenRootfs()
		if err != nil {
			fail(err)
		}
		unlock()
		if _, err := io.Copy(io.Discard, r); err != nil {
			fail(err)
		}
		fmt.Println("read build", e.BuildID)
	case "flock":
		// Hold a flock on the file args[1], opened for reading, say so
		// in args[2], and wait to be killed.
		f, err := os.Open(args[1])
		if err != nil {
			fail(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			fail(err)
		}
		fmt.Println("locked")
		time.Sleep(time.Hour)
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

// TestLockFile: the lock file is 0600 (an older 0644 one is narrowed),
// holds the holder's pid while held, and is emptied on unlock.
func TestLockFile(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	lock := filepath.Join(c.Root, "download/debian/bookworm/amd64/.default.lock")
	unlock, err := c.Lock(t.Context(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, lock); st.Mode&0o7777 != 0o600 {
		t.Errorf("lock file mode %o, want 0600", st.Mode&0o7777)
	}
	if b, _ := os.ReadFile(lock); string(b) != fmt.Sprintln(os.Getpid()) {
		t.Errorf("lock file holds %q, want our pid", b)
	}
	unlock()
	if b, _ := os.ReadFile(lock); len(b) != 0 {
		t.Errorf("lock file holds %q after unlock", b)
	}
	os.Chmod(lock, 0o644)
	unlock, err = c.Lock(t.Context(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if st := lstat(t, lock); st.Mode&0o7777 != 0o600 {
		t.Errorf("an older lock file keeps mode %o", st.Mode&0o7777)
	}
	// A hard link to a file elsewhere is not a lock file to write to.
	other := filepath.Join(c.Root, "other")
	os.WriteFile(other, []byte("keep me"), 0o600)
	os.Remove(lock)
	os.Link(other, lock)
	unlock, err = c.Lock(t.Context(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if b, _ := os.ReadFile(other); string(b) != "keep me" {
		t.Errorf("a hard-linked file was written: %q", b)
	}
}

// TestLockWait: waiting for another run says so once, after the notice
// delay, naming the holder's pid, and gives up after LockTimeout.
func TestLockWait(t *testing.T) {
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
	var info bytes.Buffer
	c := Cache{Root: root, Info: &info, LockTimeout: 400 * time.Millisecond, hooks: &testHooks{lockNotice: 100 * time.Millisecond}}
	start := time.Now()
	_, err := c.Lock(t.Context(), testKey)
	if !errors.Is(err, ErrLockTimeout) || !strings.Contains(err.Error(), fmt.Sprintf("is locked by another lxc-download (pid %d) and was not released within 400ms", cmd.Process.Pid)) {
		t.Fatalf("Lock = %v, want a timeout naming pid %d", err, cmd.Process.Pid)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Errorf("gave up after %v", waited)
	}
	want := fmt.Sprintf("waiting for another lxc-download, pid %d, which holds the lock on %s\n", cmd.Process.Pid, filepath.Join(root, "download/debian/bookworm/amd64/default"))
	if info.String() != want {
		t.Errorf("said %q, want %q", info.String(), want)
	}
	// Nothing is said when the wait is short.
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	info.Reset()
	unlock, err := c.Lock(t.Context(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if info.Len() != 0 {
		t.Errorf("said %q", &info)
	}
}

// TestLockOtherUser: another user cannot open the lock file, so cannot
// hold the lock; one who opened an older world-readable lock file before
// it was narrowed can, but only until the timeout.
func TestLockOtherUser(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	os.Chmod(root, 0o755)
	os.Chmod(filepath.Dir(root), 0o755)
	c := Cache{Root: root, LockTimeout: 300 * time.Millisecond, hooks: &testHooks{lockNotice: 50 * time.Millisecond}}
	unlock, err := c.Lock(t.Context(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	lock := filepath.Join(root, "download/debian/bookworm/amd64/.default.lock")
	flock := func() (*exec.Cmd, *bufio.Reader) {
		cmd := nobodyCmd(t, "-test.run=^TestCacheHelperProcess$")
		cmd.Env = append(cmd.Env, helperEnv+"=flock", "HELPER_ARGS=-\x1f"+lock)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, bufio.NewReader(out)
	}
	// As it is now (0600), another user cannot even open it.
	cmd, out := flock()
	if err := cmd.Wait(); err == nil {
		line, _ := out.ReadString('\n')
		t.Fatalf("another user could open the lock file: %q", line)
	}
	// An older version's 0644 lock file, opened by another user before
	// this run narrows it: the wait ends, with a clear error.
	os.Chmod(lock, 0o644)
	cmd, out = flock()
	defer cmd.Process.Kill()
	if line, err := out.ReadString('\n'); line != "locked\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	var info bytes.Buffer
	c.Info = &info
	_, err = c.Lock(t.Context(), testKey)
	if !errors.Is(err, ErrLockTimeout) || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", cmd.Process.Pid)) {
		t.Fatalf("Lock held by another user = %v, want a timeout naming pid %d", err, cmd.Process.Pid)
	}
	if !strings.HasPrefix(info.String(), fmt.Sprintf("waiting for another lxc-download, pid %d,", cmd.Process.Pid)) {
		t.Errorf("said %q", &info)
	}
	if st := lstat(t, lock); st.Mode&0o7777 != 0o600 {
		t.Errorf("lock file mode %o, want 0600", st.Mode&0o7777)
	}
	cmd.Process.Kill()
	cmd.Wait()
	unlock, err = c.Lock(t.Context(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

func TestProcLocksHolder(t *testing.T) {
	table := filepath.Join(t.TempDir(), "locks")
	os.WriteFile(table, []byte(`1: POSIX  ADVISORY  WRITE 111 fd:01:1234 0 EOF
2: FLOCK  ADVISORY  WRITE 222 fd:01:99 0 EOF
2: -> FLOCK  ADVISORY  WRITE 333 fd:01:1234 0 EOF
3: FLOCK  ADVISORY  WRITE 444 fd:01:1234 0 EOF
`), 0o644)
	var st unix.Stat_t
	setDev(&st.Dev, unix.Mkdev(0xfd, 1))
	st.Ino = 1234

	if pid := procLocksHolder(table, st); pid != 444 {
		t.Errorf("holder %d, want 444", pid)
	}
	st.Ino = 5
	if pid := procLocksHolder(table, st); pid != 0 {
		t.Errorf("holder %d, want none", pid)
	}
}

// TestForeignStore: a user who may read root's store but not open its
// lock file (0600) still uses it, without a lock.
func TestForeignStore(t *testing.T) {
	needRoot(t)
	root := filepath.Join(t.TempDir(), "cache")
	os.Chmod(filepath.Dir(root), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(root)), 0o755)
	c := Cache{Root: root}
	storeImage(t, c, testKey, newTestImage(t, "b1", 1000, nil))
	cmd := nobodyCmd(t, "-test.run=^TestCacheHelperProcess$")
	cmd.Env = append(cmd.Env, helperEnv+"=lookup", "HELPER_ARGS="+root)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "read build b1") {
		t.Fatalf("as uid 65534: %v\n%s", err, out)
	}
}

// setDev sets a device number of a Stat_t, which is narrower on some
// 32-bit systems (mips).
func setDev[T ~uint32 | ~uint64](d *T, v uint64) { *d = T(v) }

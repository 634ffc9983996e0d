package cache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLockTimeout is how long Lock waits for another run by default. A
// run holds the lock while it downloads an image, which takes minutes on a
// slow link.
const DefaultLockTimeout = 10 * time.Minute

// lockNoticeAfter is how long Lock waits before it says that it waits.
const lockNoticeAfter = 2 * time.Second

// ErrLockTimeout is the error of a Lock that waited LockTimeout for
// another run in vain.
var ErrLockTimeout = errors.New("timed out waiting for the lock")

// Lock takes the entry's exclusive lock, waiting while another run holds it,
// until c.LockTimeout has passed or ctx is done. After 2 seconds of waiting
// it writes one line, "waiting for another lxc-download, pid N", to c.Info.
// It is a flock(2) on a lock file beside the entry (not inside it, as the
// entry is replaced by renames), so the kernel releases it when a holder
// dies, even by kill -9. Hold it from Lookup until the entry has been read
// or replaced: then concurrent runs for one image download it once, and the
// runs that waited find the fresh entry.
//
// The lock file has mode 0600 (an older one is narrowed to it), so that no
// other user can open it and hold the lock; the holder writes its pid in
// it. It is opened without following a symbolic link; a symbolic link, or
// anything else that is not a plain file of one link, in its place is
// removed and a lock file made anew.
//
// Where the store cannot be written (a read-only cache shared from a host, a
// directory owned by another user) and no lock file exists, nobody can update
// the entry through this store either, and Lock returns without locking; so
// it does where the lock file is another user's, whom this user cannot
// keep from updating the entry anyway (Lookup and OpenRootfs then fail
// cleanly if the entry changes under them).
func (c Cache) Lock(ctx context.Context, k Key) (unlock func(), err error) {
	parent, n, err := c.openParent(k, true)
	if err != nil && readOnly(err) {
		parent, n, err = c.openParent(k, false)
		if errors.Is(err, os.ErrNotExist) {
			return func() {}, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lock cache entry: %w", err)
	}
	defer parent.close()
	f, writable, err := openLockFile(parent, n.lock, c.trust())
	if err != nil {
		return nil, fmt.Errorf("lock cache entry: %w", err)
	}
	if f == nil {
		return func() {}, nil
	}
	if err := c.waitLock(ctx, f, parent.join(n.lock), parent.join(n.entry)); err != nil {
		f.Close()
		return nil, err
	}
	if writable {
		// Best effort: a full disk must not stop the run here.
		f.Truncate(0)
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	var once bool
	return func() {
		if once {
			return
		}
		once = true
		if writable {
			f.Truncate(0)
		}
		// Closing the only descriptor of the open file releases the lock.
		f.Close()
	}, nil
}

// waitLock takes the flock on f, polling, so that waiting stays
// cancellable and bounded.
func (c Cache) waitLock(ctx context.Context, f *os.File, path, entry string) error {
	timeout := c.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	notice := lockNoticeAfter
	if c.hooks != nil && c.hooks.lockNotice > 0 {
		notice = c.hooks.lockNotice
	}
	start := time.Now()
	said := false
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			return fmt.Errorf("lock cache entry: %s: %w", path, err)
		}
		waited := time.Since(start)
		if waited >= timeout {
			return fmt.Errorf("the cached image %s is locked by another lxc-download (%s) and was not released within %v: %w", entry, holderText(f), timeout, ErrLockTimeout)
		}
		if !said && waited >= notice {
			said = true
			if w := c.infoWriter(); w != nil {
				fmt.Fprintf(w, "waiting for another lxc-download, %s, which holds the lock on %s\n", holderText(f), entry)
			}
		}
		// Holders keep the lock for seconds or minutes, so a late start
		// of a few hundred milliseconds does not matter.
		t := time.NewTimer(min(wait, timeout-waited))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for the lock on the cached image %s: %w", entry, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(wait*2, 250*time.Millisecond)
	}
}

func (c Cache) infoWriter() io.Writer {
	if c.Info != nil {
		return c.Info
	}
	return c.Warn
}

// holderText names the process holding the lock on f: "pid N", or "pid
// unknown".
func holderText(f *os.File) string {
	if pid := lockHolder(f); pid > 0 {
		return "pid " + strconv.Itoa(pid)
	}
	return "pid unknown"
}

// lockHolder returns the pid of the process holding the flock on f: from
// /proc/locks, which the kernel keeps, else from what the holder wrote in
// the file; 0 if neither says.
func lockHolder(f *os.File) int {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err == nil {
		if pid := procLocksHolder("/proc/locks", st); pid > 0 {
			return pid
		}
	}
	b := make([]byte, 16)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// procLocksHolder finds the flock on the file st in a /proc/locks table:
// lines "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF", where the device
// is MAJOR:MINOR in hex and the inode in decimal; a waiter's lines have
// "->" after the number.
func procLocksHolder(table string, st unix.Stat_t) int {
	f, err := os.Open(table)
	if err != nil {
		return 0
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

// openLockFile opens (creating if need be) the lock file name in parent,
// or returns nil where the store is read-only to this process and has
// none. writable says whether it was opened for writing (the holder's pid
// is written then).
func openLockFile(parent storeDir, name string, t trust) (f *os.File, writable bool, err error) {
	path := parent.join(name)
	for attempt := 0; ; attempt++ {
		fd, err := unix.Openat(parent.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
		writable = err == nil
		if err != nil && readOnly(err) {
			// flock works on a descriptor opened for reading only.
			fd, err = unix.Openat(parent.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err == unix.ENOENT || err == unix.EACCES {
				// No lock file, or another user's (0600): this user
				// cannot change the store, and only reads it.
				return nil, false, nil
			}
		}
		var st unix.Stat_t
		if err == nil {
			if err = unix.Fstat(fd, &st); err != nil {
				unix.Close(fd)
			}
		}
		if err != nil && err != unix.ELOOP {
			return nil, false, &os.PathError{Op: "open", Path: path, Err: err}
		}
		// A symbolic link, a fifo, a hard link to some other file: not
		// ours to write to or lock. It goes, and a new one is made.
		planted := err == unix.ELOOP || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1
		if planted {
			if err == nil {
				unix.Close(fd)
			}
			if attempt > 0 || !writable && err != unix.ELOOP {
				return nil, false, fmt.Errorf("%s is not a lock file (it is %s)", path, kindAt(parent.fd, name))
			}
			if rerr := removeAllAt(parent.fd, name); rerr != nil {
				return nil, false, fmt.Errorf("%s is not a lock file (it is %s) and cannot be removed: %w", path, kindAt(parent.fd, name), rerr)
			}
			continue
		}
		if terr := t.check(&st, path); terr != nil {
			unix.Close(fd)
			return nil, false, terr
		}
		// An older version made lock files 0644; anyone could then open
		// one and hold the lock forever.
		if writable && st.Mode&0o7777 != 0o600 && st.Uid == uint32(os.Geteuid()) {
			if err := unix.Fchmod(fd, 0o600); err != nil {
				unix.Close(fd)
				return nil, false, &os.PathError{Op: "chmod", Path: path, Err: err}
			}
		}
		if err := unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
			return nil, false, err
		}
		return os.NewFile(uintptr(fd), path), writable, nil
	}
}

// readOnly reports whether err says this process may not write there.
func readOnly(err error) bool {
	return errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}

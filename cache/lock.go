package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Lock takes the entry's exclusive lock, waiting while another run holds it,
// until ctx is done. It is a flock(2) on a lock file beside the entry (not
// inside it, as the entry is replaced by renames), so the kernel releases it
// when a holder dies, even by kill -9. Hold it from Lookup until the entry
// has been read or replaced: then concurrent runs for one image download it
// once, and the runs that waited find the fresh entry.
//
// Where the store cannot be written (a read-only cache shared from a host, a
// directory owned by another user) and no lock file exists, nobody can update
// the entry through this store either, and Lock returns without locking.
func (c Cache) Lock(ctx context.Context, k Key) (unlock func(), err error) {
	p, err := c.paths(k)
	if err != nil {
		return nil, err
	}
	f, err := openLockFile(p)
	if err != nil {
		return nil, fmt.Errorf("lock cache entry: %w", err)
	}
	if f == nil {
		return func() {}, nil
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock cache entry: %s: %w", p.lock, err)
		}
		// Polling, rather than a blocking flock, keeps the wait
		// cancellable; holders keep the lock for seconds or minutes, so a
		// late start of a few hundred milliseconds does not matter.
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("wait for the lock on the cached image %s: %w", p.entry, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(wait*2, 250*time.Millisecond)
	}
	var once bool
	return func() {
		if once {
			return
		}
		once = true
		// Closing the only descriptor of the open file releases the lock.
		f.Close()
	}, nil
}

// openLockFile opens (creating if need be) the entry's lock file, or returns
// nil where the store is read-only to this process and has none.
func openLockFile(p paths) (*os.File, error) {
	err := os.MkdirAll(p.parent, 0o755)
	if err == nil {
		var f *os.File
		f, err = os.OpenFile(p.lock, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
		if err == nil {
			return f, nil
		}
	}
	if !readOnly(err) {
		return nil, err
	}
	// flock works on a descriptor opened for reading only.
	f, rerr := os.Open(p.lock)
	if rerr == nil {
		return f, nil
	}
	if os.IsNotExist(rerr) {
		return nil, nil
	}
	return nil, err
}

// readOnly reports whether err says this process may not write there.
func readOnly(err error) bool {
	return errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}

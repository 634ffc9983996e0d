package fetch

import (
	"os"

	"golang.org/x/sys/unix"
)

// guardEvery is the most bytes a download writes between two looks at
// the free space: a statfs per 8 MiB costs nothing next to the writes.
// With a small reserve it looks every half reserve, so that the reserve
// is never more than half used up.
const guardEvery = 8 << 20

// diskGuard keeps a download from filling the filesystem it is written
// to: what a server sends is bounded by the file's size limit, and the
// free space below it by a reserve, so that an endless body, or a large
// one on a small disk, stops in time for the rest of the host.
type diskGuard struct {
	f *os.File // the file written, whose filesystem is watched
	// setting is Options.DiskReserve: 0 for the default (which depends on
	// the filesystem's size), > 0 a number of bytes.
	setting int64
	reserve int64 // -1 until the first look
	every   int64 // bytes between two looks, set with reserve
	since   int64 // bytes written since the last look
}

// newDiskGuard watches f's filesystem with the reserve o asks for, or
// returns nil when o asks for none.
func newDiskGuard(f *os.File, o *Options) *diskGuard {
	if o.DiskReserve < 0 {
		return nil
	}
	return &diskGuard{f: f, setting: o.DiskReserve, reserve: -1}
}

// free is the space the filesystem has for unprivileged users (root may
// have a little more: that little is the system's, not a download's).
func (g *diskGuard) free() (free int64, err error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(g.f.Fd()), &st); err != nil {
		return 0, &localError{&os.PathError{Op: "statfs", Path: g.f.Name(), Err: err}}
	}
	bsize := int64(st.Bsize)
	if g.reserve < 0 {
		g.reserve = g.setting
		if g.reserve == 0 {
			g.reserve = min(DefaultDiskReserve, int64(st.Blocks)*bsize/20)
		}
		g.every = min(guardEvery, max(g.reserve/2, 64<<10))
	}
	return int64(st.Bavail) * bsize, nil
}

// fits checks, before a body is read, that need more bytes leave the
// reserve free.
func (g *diskGuard) fits(need int64) error {
	free, err := g.free()
	if err != nil {
		return err
	}
	g.since = 0
	if free-need < g.reserve {
		return &DiskReserveError{File: g.f.Name(), Free: free, Need: need, Reserve: g.reserve}
	}
	return nil
}

// wrote counts n bytes about to be written, and every guardEvery bytes
// checks that the reserve is still free.
func (g *diskGuard) wrote(n int64) error {
	g.since += n
	if g.since < g.every {
		return nil
	}
	g.since = 0
	free, err := g.free()
	if err != nil {
		return err
	}
	if free < g.reserve {
		return &DiskReserveError{File: g.f.Name(), Free: free, Need: -1, Reserve: g.reserve}
	}
	return nil
}

package cache

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Extract unpacks the tar stream r into the existing directory rootfs the
// way `tar --numeric-owner --xattrs-include='*' -xp` run as root does:
// numeric owners, every permission bit, modification times, extended
// attributes from PAX SCHILY.xattr records, hard and symbolic links, device
// nodes and fifos; directories get their permissions and times once
// everything is in them. Every path is resolved inside rootfs as if it were
// the root directory (symlinks included), so nothing is written outside it;
// names with ".." are refused. What cannot be restored without privilege is
// skipped with one warning per kind (see UnpackOptions.Userns). It is
// exported for tests, benchmarks and other compressions; Unpack and
// UnpackReader call it.
func Extract(ctx context.Context, r io.Reader, rootfs string, o UnpackOptions) error {
	e, err := newExtractor(ctx, rootfs, o)
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", err)
	}
	defer e.close()
	if err := e.run(tar.NewReader(r)); err != nil {
		return fmt.Errorf("unpack rootfs: %w", err)
	}
	return nil
}

// extractor is the state of one Extract.
type extractor struct {
	ctx      context.Context
	o        UnpackOptions
	lim      Limits
	excludes []string

	root   *os.File // rootfs, O_PATH
	rootFd int

	// dirs holds handles of directories already resolved inside
	// the rootfs, by entry path, so an entry costs no path walk when its
	// parent was seen before. Handles whose path may have changed meaning
	// (a directory or symlink was removed) are dropped from the map and
	// closed once the current entry is done.
	dirs    map[string]dirHandle
	order   []dirUse // uses of dirs, oldest first, for eviction
	uses    int
	retired []int

	later   []dirAttrs     // directories whose attributes are set at the end
	laterAt map[string]int // index in later, by path

	buf          []byte
	euid, egid   int
	noSetxattrat bool // the kernel lacks setxattrat(2)
	// fresh says the tree is a RootfsStage's, new and private: every
	// directory in it was made by this extractor, none with a setgid
	// bit until finishDirs, so what it creates is the running user's,
	// group included, and needs no chown to be.
	fresh   bool
	umask   uint32
	warned  map[string]bool
	entries int
	total   int64
}

// dirCacheSize bounds the open directory handles; archives sorted by name
// need only the handles of the directories above the current entry.
const dirCacheSize = 256

// dirHandle is a cached directory handle and its latest use.
type dirHandle struct{ fd, use int }

// dirUse is one use of a cached directory, in the eviction order; it is
// stale when the directory was used again since.
type dirUse struct {
	dir string
	use int
}

// dirAttrs are what a directory entry asks for, applied after its content.
type dirAttrs struct {
	rel      string
	mode     uint32
	uid, gid int
	times    [2]unix.Timespec
	xattrs   []xattr
}

type xattr struct {
	name  string
	value []byte
}

func newExtractor(ctx context.Context, rootfs string, o UnpackOptions) (*extractor, error) {
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs: %w", err)
	}
	e := &extractor{
		ctx:     ctx,
		o:       o,
		lim:     o.Limits.withDefaults(),
		root:    root,
		rootFd:  int(root.Fd()),
		dirs:    map[string]dirHandle{},
		laterAt: map[string]int{},
		buf:     make([]byte, 1<<20),
		euid:    os.Geteuid(),
		egid:    os.Getegid(),
		umask:   currentUmask(),
		warned:  map[string]bool{},
		fresh:   o.rootEntry != nil,
	}
	if o.rootEntry != nil && o.rootEntry.warned != nil {
		// A RootfsStage's Install applies the root entry later, and
		// must not say again what the unpack said.
		e.warned = o.rootEntry.warned
	}
	for _, p := range o.Excludes {
		if p = strings.TrimSpace(p); p != "" {
			e.excludes = append(e.excludes, normalizeName(p))
		}
	}
	return e, nil
}

func (e *extractor) close() {
	e.forgetDirs()
	e.closeRetired()
	e.root.Close()
}

func (e *extractor) run(tr *tar.Reader) error {
	last := ""
	for {
		if err := e.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
			err = nil // names are checked here, whatever GODEBUG says
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF { // the tar stream's own end, not the decoder's
				err = fmt.Errorf("truncated archive: %w", err)
			}
			if last == "" {
				return fmt.Errorf("read tar header: %w", err)
			}
			return fmt.Errorf("read tar header after entry %q: %w", last, err)
		}
		err = e.entry(tr, hdr)
		e.closeRetired()
		if err != nil {
			var le *LimitError
			if errors.As(err, &le) {
				return err
			}
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		last = hdr.Name
	}
	return e.finishDirs()
}

// entry extracts one archive entry.
func (e *extractor) entry(tr *tar.Reader, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // it only carries defaults that archive/tar already applied
	}
	e.entries++
	if e.entries > e.lim.MaxEntries {
		return &LimitError{Limit: "MaxEntries", Max: int64(e.lim.MaxEntries), Value: int64(e.entries), Entry: hdr.Name}
	}
	if len(hdr.Name) > e.lim.MaxPathLength {
		return &LimitError{Limit: "MaxPathLength", Max: int64(e.lim.MaxPathLength), Value: int64(len(hdr.Name)), Entry: hdr.Name}
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if e.excluded(rel) {
		return nil
	}
	if hdr.Typeflag != tar.TypeDir && rel == "." {
		return errors.New("not a directory, so it cannot be the rootfs itself")
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > 1<<32-2 || int64(hdr.Gid) > 1<<32-2 {
		return fmt.Errorf("invalid owner %d:%d", hdr.Uid, hdr.Gid)
	}
	xattrs, err := e.entryXattrs(hdr)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		return e.file(tr, hdr, rel, xattrs)
	case tar.TypeDir:
		return e.dir(hdr, rel, xattrs)
	case tar.TypeSymlink:
		return e.symlink(hdr, rel, xattrs)
	case tar.TypeLink:
		return e.hardlink(hdr, rel)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return e.node(hdr, rel, xattrs)
	default:
		return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
	}
}

// file extracts a regular file: created anew (an existing non-directory is
// replaced), without following a symlink in its place.
func (e *extractor) file(r io.Reader, hdr *tar.Header, rel string, xattrs []xattr) error {
	if hdr.Size > e.lim.MaxFileSize {
		return &LimitError{Limit: "MaxFileSize", Max: e.lim.MaxFileSize, Value: hdr.Size, Entry: hdr.Name}
	}
	e.total += hdr.Size
	if e.total > e.lim.MaxTotalSize {
		return &LimitError{Limit: "MaxTotalSize", Max: e.lim.MaxTotalSize, Value: e.total, Entry: hdr.Name}
	}
	dir, base := splitName(rel)
	pfd, err := e.parent(dir)
	if err != nil {
		return err
	}
	mode := tarMode(hdr)
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, mode&0o777)
	if err == unix.EEXIST {
		if err = e.removeExisting(pfd, base); err == nil {
			fd, err = unix.Openat(pfd, base, flags, mode&0o777)
		}
	}
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	err = e.fileContent(fd, r, hdr)
	if err == nil {
		err = e.fileAttrs(fd, rel, hdr, mode, xattrs)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}

func (e *extractor) fileContent(fd int, r io.Reader, hdr *tar.Header) error {
	sparse := isSparse(hdr)
	var done int64
	hole := false // the file ends in a hole, made by seeking
	for done < hdr.Size {
		if err := e.ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(e.buf[:min(int64(len(e.buf)), hdr.Size-done)])
		if n > 0 {
			var werr error
			if sparse {
				hole, werr = writeSparse(fd, e.buf[:n])
			} else {
				werr = writeAll(fd, e.buf[:n])
			}
			if werr != nil {
				return fmt.Errorf("write: %w", werr)
			}
			done += int64(n)
		}
		if err != nil && done < hdr.Size {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				err = fmt.Errorf("truncated archive: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("read content: %w", err)
		}
	}
	if hole {
		if err := unix.Ftruncate(fd, hdr.Size); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// fileAttrs restores owner, extended attributes, mode and times of the
// open file fd, in that order: chown clears setuid/setgid bits and file
// capabilities, so they come after it.
func (e *extractor) fileAttrs(fd int, rel string, hdr *tar.Header, mode uint32, xattrs []xattr) error {
	owned, err := e.chown(rel, hdr.Uid, hdr.Gid, func() error { return unix.Fchown(fd, hdr.Uid, hdr.Gid) })
	if err != nil {
		return err
	}
	if !owned {
		mode &^= unix.S_ISUID | unix.S_ISGID
	}
	if err := e.setXattrs(rel, xattrs, func(name string, value []byte) error {
		return unix.Fsetxattr(fd, name, value, 0)
	}); err != nil {
		return err
	}
	if e.needChmod(mode) {
		if err := unix.Fchmod(fd, mode); err != nil {
			return fmt.Errorf("restore mode: %w", err)
		}
	}
	ts := tarTimes(hdr)
	if err := futimens(fd, &ts); err != nil {
		return fmt.Errorf("restore times: %w", err)
	}
	return nil
}

// needChmod says whether a file created with mode&0777 needs a chmod to get
// mode: special bits are not set by creation, and the umask may clear some.
func (e *extractor) needChmod(mode uint32) bool {
	return mode&^0o777 != 0 || mode&e.umask != 0
}

// dir makes a directory (replacing a non-directory, a symlink included) or
// keeps an existing one; its owner, mode and times are set at the end, so a
// read-only directory still gets its content and its mtime stays.
func (e *extractor) dir(hdr *tar.Header, rel string, xattrs []xattr) error {
	d := dirAttrs{rel: rel, mode: tarMode(hdr), uid: hdr.Uid, gid: hdr.Gid, times: tarTimes(hdr), xattrs: xattrs}
	if rel == "." && e.o.rootEntry != nil {
		// A RootfsStage applies it when it installs: its mode would
		// make the stage reachable now.
		e.o.rootEntry.set, e.o.rootEntry.attrs = true, d
		return nil
	}
	e.deferDir(d)
	if rel == "." {
		return nil
	}
	dir, base := splitName(rel)
	pfd, err := e.parent(dir)
	if err != nil {
		return err
	}
	err = unix.Mkdirat(pfd, base, 0o700)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err = e.removeExisting(pfd, base); err == nil {
				err = unix.Mkdirat(pfd, base, 0o700)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	e.putDir(rel, fd)
	return nil
}

func (e *extractor) deferDir(d dirAttrs) {
	if i, ok := e.laterAt[d.rel]; ok {
		e.later[i] = d // the last entry for a path wins, as with tar
		return
	}
	e.laterAt[d.rel] = len(e.later)
	e.later = append(e.later, d)
}

// finishDirs sets the attributes of the directories, deepest first, so a
// directory made read-only or unsearchable does not hide those below it.
func (e *extractor) finishDirs() error {
	slices.SortStableFunc(e.later, func(a, b dirAttrs) int {
		return depth(b.rel) - depth(a.rel)
	})
	for _, d := range e.later {
		if err := e.ctx.Err(); err != nil {
			return err
		}
		err := e.finishDir(d)
		e.closeRetired()
		if err != nil {
			return fmt.Errorf("entry %q: %w", d.rel, err)
		}
	}
	return nil
}

func (e *extractor) finishDir(d dirAttrs) error {
	pfd, base := e.rootFd, "."
	if d.rel != "." {
		var dir string
		dir, base = splitName(d.rel)
		var err error
		if pfd, err = e.lookupDir(dir); err != nil {
			return nil // replaced by a later entry: nothing of it to finish
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP {
		return nil // replaced by a later entry
	}
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	return e.applyDirAttrs(fd, d)
}

// applyDirAttrs gives the open directory fd the owner, extended
// attributes, mode and times d asks for.
func (e *extractor) applyDirAttrs(fd int, d dirAttrs) error {
	if _, err := e.chown(d.rel, d.uid, d.gid, func() error { return unix.Fchown(fd, d.uid, d.gid) }); err != nil {
		return err
	}
	if err := e.setXattrs(d.rel, d.xattrs, func(name string, value []byte) error {
		return unix.Fsetxattr(fd, name, value, 0)
	}); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, d.mode); err != nil {
		return fmt.Errorf("restore mode: %w", err)
	}
	if err := futimens(fd, &d.times); err != nil {
		return fmt.Errorf("restore times: %w", err)
	}
	return nil
}

// symlink makes a symbolic link. Its target is stored as it is: it is only
// ever followed by this extractor inside the rootfs, and by the container
// from inside it.
func (e *extractor) symlink(hdr *tar.Header, rel string, xattrs []xattr) error {
	if len(hdr.Linkname) > e.lim.MaxPathLength {
		return &LimitError{Limit: "MaxPathLength", Max: int64(e.lim.MaxPathLength), Value: int64(len(hdr.Linkname)), Entry: hdr.Name}
	}
	dir, base := splitName(rel)
	pfd, err := e.parent(dir)
	if err != nil {
		return err
	}
	err = unix.Symlinkat(hdr.Linkname, pfd, base)
	if err == unix.EEXIST {
		if err = e.removeExisting(pfd, base); err == nil {
			err = unix.Symlinkat(hdr.Linkname, pfd, base)
		}
	}
	if err != nil {
		return fmt.Errorf("create symlink: %w", err)
	}
	return e.nodeAttrs(pfd, base, rel, hdr, false, 0, xattrs)
}

// nodeAttrs restores owner, extended attributes, mode (when hasMode:
// symlinks have none) and times of what was just made at pfd/base, never
// following a symlink there.
func (e *extractor) nodeAttrs(pfd int, base, rel string, hdr *tar.Header, hasMode bool, mode uint32, xattrs []xattr) error {
	owned, err := e.chown(rel, hdr.Uid, hdr.Gid, func() error {
		return unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		return err
	}
	if len(xattrs) > 0 {
		if err := e.setXattrs(rel, xattrs, func(name string, value []byte) error {
			return e.lsetxattrat(pfd, base, name, value)
		}); err != nil {
			return err
		}
	}
	if hasMode {
		if !owned {
			mode &^= unix.S_ISUID | unix.S_ISGID
		}
		// What was just made at base is not a symlink, so following it
		// (fchmodat has no working no-follow flag) is safe.
		if e.needChmod(mode) {
			if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
				return fmt.Errorf("restore mode: %w", err)
			}
		}
	}
	ts := tarTimes(hdr)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("restore times: %w", err)
	}
	return nil
}

// hardlink links to an entry extracted before. The target is resolved
// inside the rootfs and its last component is not followed, so a link can
// only name a file of the rootfs (or a symlink, as with tar).
func (e *extractor) hardlink(hdr *tar.Header, rel string) error {
	if len(hdr.Linkname) > e.lim.MaxPathLength {
		return &LimitError{Limit: "MaxPathLength", Max: int64(e.lim.MaxPathLength), Value: int64(len(hdr.Linkname)), Entry: hdr.Name}
	}
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	if target == "." {
		return fmt.Errorf("hard link to the rootfs itself")
	}
	if e.excluded(target) {
		return nil // its target was left out, so is it
	}
	dir, base := splitName(rel)
	pfd, err := e.parent(dir)
	if err != nil {
		return err
	}
	tdir, tbase := splitName(target)
	tpfd, err := e.lookupDir(tdir)
	if err == nil {
		err = unix.Linkat(tpfd, tbase, pfd, base, 0)
	}
	if err == unix.EEXIST {
		var a, b unix.Stat_t
		if unix.Fstatat(tpfd, tbase, &a, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			unix.Fstatat(pfd, base, &b, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			a.Dev == b.Dev && a.Ino == b.Ino {
			return nil // already that file: a duplicate entry
		}
		if err = e.removeExisting(pfd, base); err == nil {
			err = unix.Linkat(tpfd, tbase, pfd, base, 0)
		}
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("hard link to %q: no such file earlier in the archive", hdr.Linkname)
	}
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

// node makes a device node or a fifo. Device nodes need privilege that
// non-root and user namespaces lack: they are skipped with a warning, as
// LXC makes the container's /dev itself.
func (e *extractor) node(hdr *tar.Header, rel string, xattrs []xattr) error {
	mode := tarMode(hdr)
	typ := uint32(unix.S_IFIFO)
	dev := 0
	if hdr.Typeflag != tar.TypeFifo {
		switch {
		case e.o.Userns:
			e.warnOnce("devices", "device nodes cannot be made in a user namespace and are skipped (first: %q)", rel)
			return nil
		case e.euid != 0:
			e.warnOnce("devices", "not running as root: device nodes are skipped (first: %q)", rel)
			return nil
		}
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 1<<32-1 || hdr.Devminor > 1<<32-1 {
			return fmt.Errorf("invalid device number %d:%d", hdr.Devmajor, hdr.Devminor)
		}
		typ = unix.S_IFCHR
		if hdr.Typeflag == tar.TypeBlock {
			typ = unix.S_IFBLK
		}
		dev = int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	}
	dir, base := splitName(rel)
	pfd, err := e.parent(dir)
	if err != nil {
		return err
	}
	err = unix.Mknodat(pfd, base, typ|mode&0o777, dev)
	if err == unix.EEXIST {
		if err = e.removeExisting(pfd, base); err == nil {
			err = unix.Mknodat(pfd, base, typ|mode&0o777, dev)
		}
	}
	if err == unix.EPERM && typ != unix.S_IFIFO {
		e.warnOnce("devices", "device nodes cannot be made here (%v) and are skipped (first: %q)", err, rel)
		return nil
	}
	if err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	return e.nodeAttrs(pfd, base, rel, hdr, true, mode, xattrs)
}

// removeExisting removes what is at pfd/base so an entry can take its
// place: a non-directory, or an empty directory (tar does not remove a
// directory's content for a later entry of the same name either).
func (e *extractor) removeExisting(pfd int, base string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("replace existing file: %w", err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR); err != nil {
			return fmt.Errorf("replace existing directory: %w", err)
		}
	default:
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return fmt.Errorf("replace existing file: %w", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return nil
		}
	}
	// A directory or symlink is gone: paths resolved through it may now
	// mean something else.
	e.forgetDirs()
	return nil
}

// parent returns a handle of directory dir of the rootfs, making it and
// the directories above it (0755, as tar does) when they are missing.
func (e *extractor) parent(dir string) (int, error) {
	return e.resolveDir(dir, true)
}

// lookupDir returns a handle of the existing directory dir of the rootfs.
func (e *extractor) lookupDir(dir string) (int, error) {
	return e.resolveDir(dir, false)
}

func (e *extractor) resolveDir(dir string, create bool) (int, error) {
	if dir == "" {
		return e.rootFd, nil
	}
	if h, ok := e.dirs[dir]; ok {
		e.touchDir(dir, h)
		return h.fd, nil
	}
	var f *os.File
	var err error
	if create {
		f, err = pathrs.MkdirAllHandle(e.root, dir, 0o755)
	} else {
		f, err = pathrs.OpenatInRoot(e.root, dir)
	}
	if err != nil {
		return -1, fmt.Errorf("directory %q: %w", dir, err)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return -1, fmt.Errorf("directory %q: %w", dir, err)
	}
	e.putDir(dir, fd)
	return fd, nil
}

// putDir caches the handle fd of dir. When the cache is full, the
// handles used longest ago go: an archive sorted by name has left their
// directories (resolving one again costs a few system calls), and
// forgetting them all at once made the next few hundred entries resolve
// their parents again.
func (e *extractor) putDir(dir string, fd int) {
	if old, ok := e.dirs[dir]; ok {
		e.retired = append(e.retired, old.fd)
		e.touchDir(dir, dirHandle{fd: fd})
		return
	}
	for len(e.dirs) >= dirCacheSize && len(e.order) > 0 {
		u := e.order[0]
		e.order = e.order[1:]
		if h, ok := e.dirs[u.dir]; ok && h.use == u.use {
			e.retired = append(e.retired, h.fd)
			delete(e.dirs, u.dir)
		}
	}
	e.touchDir(dir, dirHandle{fd: fd})
}

// touchDir records a use of the cached directory dir, whose handle is h.
func (e *extractor) touchDir(dir string, h dirHandle) {
	e.uses++
	h.use = e.uses
	e.dirs[dir] = h
	e.order = append(e.order, dirUse{dir, h.use})
	if len(e.order) >= 4*dirCacheSize {
		// Drop the stale uses; the order of the rest stays.
		e.order = slices.DeleteFunc(e.order, func(u dirUse) bool { return e.dirs[u.dir].use != u.use })
	}
}

// forgetDirs drops every cached handle; they are closed after the current
// entry, which may still be using one.
func (e *extractor) forgetDirs() {
	for k, h := range e.dirs {
		e.retired = append(e.retired, h.fd)
		delete(e.dirs, k)
	}
	e.order = e.order[:0]
}

func (e *extractor) closeRetired() {
	for _, fd := range e.retired {
		unix.Close(fd)
	}
	e.retired = e.retired[:0]
}

// chown restores an owner through do and reports whether the entry ended
// up with the owner the archive gives. In a fresh tree, an entry the
// archive gives to the running user already is.
func (e *extractor) chown(rel string, uid, gid int, do func() error) (bool, error) {
	if e.fresh && uid == e.euid && gid == e.egid {
		return true, nil
	}
	if e.euid != 0 {
		if uid == e.euid && gid == e.egid {
			return true, nil
		}
		e.warnOnce("owners", "not running as root: file owners are not restored and setuid/setgid bits are dropped (first: %q, owner %d:%d)", rel, uid, gid)
		return false, nil
	}
	err := do()
	if err == nil {
		return true, nil
	}
	if e.o.Userns && (err == unix.EINVAL || err == unix.EPERM) {
		e.warnOnce("owners", "owners outside this user namespace's id map are not restored and their setuid/setgid bits are dropped (first: %q, owner %d:%d)", rel, uid, gid)
		return false, nil
	}
	return false, fmt.Errorf("restore owner %d:%d: %w", uid, gid, err)
}

// entryXattrs returns the extended attributes of an entry (GNU tar and
// bsdtar both write SCHILY.xattr.NAME records), in name order.
func (e *extractor) entryXattrs(hdr *tar.Header) ([]xattr, error) {
	var xs []xattr
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if len(v) > e.lim.MaxXattrSize {
			return nil, &LimitError{Limit: "MaxXattrSize", Max: int64(e.lim.MaxXattrSize), Value: int64(len(v)), Entry: hdr.Name}
		}
		xs = append(xs, xattr{name: name, value: []byte(v)})
		if len(xs) > e.lim.MaxXattrs {
			return nil, &LimitError{Limit: "MaxXattrs", Max: int64(e.lim.MaxXattrs), Value: int64(len(xs)), Entry: hdr.Name}
		}
	}
	slices.SortFunc(xs, func(a, b xattr) int { return strings.Compare(a.name, b.name) })
	return xs, nil
}

// setXattrs restores extended attributes through set. Like GNU tar, it
// does not fail when one cannot be set (a file system without them, a
// namespace that needs privilege, a label the host refuses): each kind of
// failure is one warning. Only a full or failing disk is an error.
func (e *extractor) setXattrs(rel string, xs []xattr, set func(name string, value []byte) error) error {
	for _, x := range xs {
		err := set(x.name, x.value)
		if err == nil {
			continue
		}
		if err == unix.ENOSPC || err == unix.EDQUOT || err == unix.EIO {
			return fmt.Errorf("restore extended attribute %q: %w", x.name, err)
		}
		ns, _, _ := strings.Cut(x.name, ".")
		switch err {
		case unix.EOPNOTSUPP:
			e.warnOnce("xattr-unsupported", "the rootfs file system does not support some extended attributes, which are not restored (first: %q on %q: %v)", x.name, rel, err)
		case unix.EPERM, unix.EACCES:
			e.warnOnce("xattr-perm-"+ns, "extended attributes of the %q namespace cannot be set here and are not restored (first: %q on %q: %v)", ns, x.name, rel, err)
		default:
			e.warnOnce("xattr-"+ns+"-"+err.Error(), "extended attributes of the %q namespace are refused by the system and not restored (first: %q on %q: %v)", ns, x.name, rel, err)
		}
	}
	return nil
}

// lsetxattrat sets an extended attribute of pfd/base without following a
// symlink there: with setxattrat(2) (Linux 6.13), else through the parent's
// handle in /proc (lsetxattr has no fd-relative form). Without either, the
// attribute is not set (a warning), rather than set through a path that
// could lead out of the rootfs.
func (e *extractor) lsetxattrat(pfd int, base, name string, value []byte) error {
	if !e.noSetxattrat {
		err := setxattrat(pfd, base, name, value)
		if err != unix.ENOSYS {
			return err
		}
		e.noSetxattrat = true
	}
	return unix.Lsetxattr("/proc/self/fd/"+strconv.Itoa(pfd)+"/"+base, name, value, 0)
}

// xattrArgs is struct xattr_args of setxattrat(2).
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

func setxattrat(dirfd int, path, name string, value []byte) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	n, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	args := xattrArgs{size: uint32(len(value))}
	if len(value) > 0 {
		args.value = uint64(uintptr(unsafe.Pointer(&value[0])))
	}
	_, _, errno := unix.Syscall6(unix.SYS_SETXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(n)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	runtime.KeepAlive(value)
	runtime.KeepAlive(p)
	runtime.KeepAlive(n)
	if errno != 0 {
		return errno
	}
	return nil
}

func (e *extractor) warnOnce(key, format string, args ...any) {
	if e.warned[key] {
		return
	}
	e.warned[key] = true
	if e.o.Warn != nil {
		fmt.Fprintf(e.o.Warn, "WARNING: "+format+"\n", args...)
	}
}

// excluded says whether an entry path matches one of the excludes.
func (e *extractor) excluded(rel string) bool {
	for _, p := range e.excludes {
		if matchExclude(p, rel) {
			return true
		}
	}
	return false
}

// cleanName turns an entry name into a path relative to the rootfs: leading
// "/" and "./" go (as with tar), as do empty and "." components; ".." is
// refused rather than resolved, as no image needs it. The rootfs itself is
// ".".
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name contains a NUL byte")
	}
	s := normalizeName(name)
	if isCleanName(s) {
		return s, nil
	}
	parts := strings.Split(s, "/")
	out := parts[:0]
	for _, p := range parts {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", errors.New(`name contains ".."`)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return ".", nil
	}
	return strings.Join(out, "/"), nil
}

// normalizeName takes away the leading "/" and "./" and trailing "/" of a
// name or pattern, leaving "." for the root.
func normalizeName(s string) string {
	for {
		if t, ok := strings.CutPrefix(s, "./"); ok {
			s = t
		} else if t, ok := strings.CutPrefix(s, "/"); ok {
			s = t
		} else {
			break
		}
	}
	s = strings.TrimRight(s, "/")
	if s == "" {
		return "."
	}
	return s
}

// isCleanName says whether s has no empty, "." or ".." component.
func isCleanName(s string) bool {
	for len(s) > 0 {
		i := strings.IndexByte(s, '/')
		c := s
		if i >= 0 {
			c, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if c == "" || c == "." || c == ".." {
			return false
		}
		if i >= 0 && s == "" {
			return false
		}
	}
	return true
}

func splitName(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

func depth(rel string) int {
	if rel == "." {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

func tarMode(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & 0o7777
}

func tarTimes(hdr *tar.Header) [2]unix.Timespec {
	omit := unix.Timespec{Nsec: unix.UTIME_OMIT}
	ts := [2]unix.Timespec{omit, omit}
	if !hdr.AccessTime.IsZero() {
		ts[0] = timespec(hdr.AccessTime)
	}
	ts[1] = timespec(hdr.ModTime)
	return ts
}

// timespec converts t, leaving the time alone where the platform cannot
// hold it (dates past 2038 with a 32-bit time_t).
func timespec(t time.Time) unix.Timespec {
	ts, err := unix.TimeToTimespec(t)
	if err != nil {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return ts
}

// futimens sets the times of an open file: utimensat with a NULL path, which
// x/sys/unix does not offer (its Futimes goes through /proc).
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// sparseBlock is the unit in which a sparse file's zeros become holes.
const sparseBlock = 4096

var zeroBlock [sparseBlock]byte

// writeSparse writes b at the file's offset, seeking over whole blocks of
// zeros so they stay holes, as tar does for sparse entries. It reports
// whether b ended with a hole (the caller then sets the file's size).
func writeSparse(fd int, b []byte) (endsInHole bool, err error) {
	for len(b) > 0 {
		// A run of blocks of the same kind, written or skipped at once.
		n := min(sparseBlock, len(b))
		zero := bytes.Equal(b[:n], zeroBlock[:n])
		for n < len(b) {
			k := min(sparseBlock, len(b)-n)
			if bytes.Equal(b[n:n+k], zeroBlock[:k]) != zero {
				break
			}
			n += k
		}
		if zero {
			if _, err := unix.Seek(fd, int64(n), io.SeekCurrent); err != nil {
				return false, err
			}
		} else if err := writeAll(fd, b[:n]); err != nil {
			return false, err
		}
		endsInHole = zero
		b = b[n:]
	}
	return endsInHole, nil
}

// currentUmask reads the process's umask without changing it (umask(2)
// cannot read without setting, which would race with other goroutines).
// Unknown, it is taken as 0777 so that every mode is set explicitly.
func currentUmask() uint32 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0o777
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 0o777
}

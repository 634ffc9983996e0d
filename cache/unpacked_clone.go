package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// CloneOptions tune RootfsStage.Clone. The zero value clones with
// reflinks where the filesystem has them, one worker per CPU (at least 2).
type CloneOptions struct {
	// Workers is how many directories are filled at the same time.
	Workers int
	// NoReflink copies every file, even where reflinks would share
	// blocks (benchmarks and tests of the copy path).
	NoReflink bool
	// Stats, when not nil, is filled in by a successful clone.
	Stats *CloneStats
}

// CloneStats counts what a clone did with the files of the copy.
type CloneStats struct {
	// Reflinked and Copied count the files cloned each way.
	Reflinked, Copied int64
	// Hashed counts the files whose content was read and checked
	// against the manifest: those whose object differed from what was
	// recorded when the copy was made (all of them without a record).
	Hashed int64
}

// reflinkMin is the smallest file Clone reflinks. A clone is a filesystem
// transaction, and the content is read for its hash anyway: a file of
// less than a block takes a block either way, and is copied. (On the
// bench image, 3,337 of 5,239 files, 14 MB of disk; the clone took the
// same time at 4 KiB, 16 KiB and 64 KiB.)
const reflinkMin = 4 << 10

// Clone fills the new stage with the unpacked copy u, as an unpack of the
// rootfs tarball u was made from would fill it: every entry of the
// manifest, with its owner, permissions, times and extended attributes,
// files by reflink (FICLONE) where the filesystem has them and by copy
// otherwise, never by hard link to the cache. A file's content is hashed
// as it is cloned and must match the manifest unless its object is, to
// the inode and change time, what the copy recorded when it was made
// (identityName); a copy's file must be the running user's, open to
// nobody else, and of the manifest's size.
// Any failure, a mismatch included (errors.Is finds ErrMismatch), leaves
// the stage for the caller to Discard, and the caller then unpacks the
// tarball; ErrOtherFilesystem says the cache is on another filesystem
// than the stage. Only root clones (owners and devices).
func (s *RootfsStage) Clone(ctx context.Context, u *UnpackedCopy, o CloneOptions) error {
	if s.filled || s.done {
		return errors.New("clone unpacked copy: the stage is already filled")
	}
	if os.Geteuid() != 0 {
		return errors.New("clone unpacked copy: only root restores owners and devices")
	}
	root := int(s.lock.Fd())
	// The manifest stands in for the copy's files: a copy on another
	// filesystem (EXDEV, or no reflinks and another device) is not used.
	reflink, err := probeReflink(root, int(u.manifest.Fd()))
	if err != nil {
		return err
	}
	c := &cloner{ctx: ctx, u: u, root: root, obj: int(u.dir.Fd()), umask: currentUmask(),
		euid: uint32(os.Geteuid()), egid: uint32(os.Getegid())}
	c.noReflink.Store(o.NoReflink || !reflink)
	c.forceCopy = o.NoReflink
	err = c.run(max(o.Workers, 0))
	if err != nil {
		return fmt.Errorf("clone unpacked copy %s: %w", u.path, err)
	}
	if o.Stats != nil {
		*o.Stats = CloneStats{Reflinked: c.reflinked.Load(), Copied: c.copied.Load(), Hashed: c.hashed.Load()}
	}
	if m := u.m; len(m.entries) > 0 && m.entries[0].path == "." {
		en := &m.entries[0]
		s.root = rootEntry{set: true, warned: map[string]bool{},
			attrs: dirAttrs{rel: ".", mode: en.mode, uid: int(en.uid), gid: int(en.gid), times: [2]unix.Timespec{en.atime, en.mtime}, xattrs: en.xattrs}}
	} else {
		s.root = rootEntry{warned: map[string]bool{}}
	}
	s.opts = UnpackOptions{rootEntry: &s.root}
	s.filled = true
	return nil
}

// cloner is the state of one Clone.
type cloner struct {
	ctx        context.Context
	u          *UnpackedCopy
	root       int // the stage
	obj        int // the copy's directory
	umask      uint32
	euid, egid uint32
	noReflink  atomic.Bool
	// forceCopy (CloneOptions.NoReflink) copies through user space even
	// where copy_file_range could share the blocks.
	forceCopy bool
	// Counts, for CloneStats.
	reflinked, copied, hashed atomic.Int64
}

func (c *cloner) run(workers int) error {
	m := c.u.m
	if err := c.dirs(); err != nil {
		return err
	}
	// The other entries, by directory, for the workers.
	type task struct {
		dir     string
		entries []int
	}
	var tasks []*task
	byDir := map[string]*task{}
	var links []int
	for i := range m.entries {
		en := &m.entries[i]
		switch en.kind {
		case 'd':
			continue
		case 'h':
			links = append(links, i)
			continue
		}
		dir, _ := splitName(en.path)
		t := byDir[dir]
		if t == nil {
			t = &task{dir: dir}
			byDir[dir] = t
			tasks = append(tasks, t)
		}
		t.entries = append(t.entries, i)
	}
	if workers == 0 {
		workers = max(2, runtime.GOMAXPROCS(0))
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	next := make(chan *task)
	var wg sync.WaitGroup
	var first error
	var once sync.Once
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &cloneWorker{c: c, buf: make([]byte, 256<<10), h: sha256.New()}
			for t := range next {
				if err := w.fill(ctx, t.dir, t.entries); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, t := range tasks {
		select {
		case next <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if err := c.hardlinks(links); err != nil {
		return err
	}
	return c.finishDirs()
}

// dirs makes every directory of the manifest (mode 0700 until
// finishDirs), parents first, holding handles of the directories above
// the one being made only.
func (c *cloner) dirs() error {
	type open struct {
		path string
		fd   int
	}
	stack := []open{{"", c.root}}
	defer func() {
		for _, o := range stack[1:] {
			unix.Close(o.fd)
		}
	}()
	for i := range c.u.m.entries {
		en := &c.u.m.entries[i]
		if en.kind != 'd' || en.path == "." {
			continue
		}
		dir, base := splitName(en.path)
		for len(stack) > 1 && stack[len(stack)-1].path != dir {
			unix.Close(stack[len(stack)-1].fd)
			stack = stack[:len(stack)-1]
		}
		if stack[len(stack)-1].path != dir {
			return fmt.Errorf("manifest: directory %q is not after its parent", en.path)
		}
		pfd := stack[len(stack)-1].fd
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("%q: create directory: %w", en.path, spaceHint(err))
		}
		fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%q: open directory: %w", en.path, err)
		}
		stack = append(stack, open{en.path, fd})
	}
	return nil
}

// openDir opens the stage's directory rel ("" for the stage), which the
// clone made, without following a symbolic link on the way.
func (c *cloner) openDir(rel string) (int, error) {
	if rel == "" {
		return unix.Dup(c.root)
	}
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV}
	fd, err := unix.Openat2(c.root, rel, &how)
	if err != unix.ENOSYS {
		return fd, err
	}
	// Before Linux 5.6: one component at a time.
	fd, err = unix.Dup(c.root)
	for rest := rel; err == nil && rest != ""; {
		var comp string
		comp, rest = rest, ""
		for i := 0; i < len(comp); i++ {
			if comp[i] == '/' {
				comp, rest = comp[:i], comp[i+1:]
				break
			}
		}
		var next int
		next, err = unix.Openat(fd, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		fd = next
	}
	return fd, err
}

// hardlinks makes the hard links, once every file they link to is there.
func (c *cloner) hardlinks(links []int) error {
	for _, i := range links {
		en := &c.u.m.entries[i]
		dir, base := splitName(en.path)
		tdir, tbase := splitName(en.link)
		pfd, err := c.openDir(dir)
		if err != nil {
			return fmt.Errorf("%q: %w", en.path, err)
		}
		tfd, err := c.openDir(tdir)
		if err == nil {
			err = unix.Linkat(tfd, tbase, pfd, base, 0)
			unix.Close(tfd)
		}
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("%q: hard link to %q: %w", en.path, en.link, err)
		}
	}
	return nil
}

// finishDirs gives the directories their owners, attributes, modes and
// times, the deepest first (the manifest lists parents first), so a
// read-only directory hides nothing and its mtime stays.
func (c *cloner) finishDirs() error {
	m := c.u.m
	for i := len(m.entries) - 1; i >= 0; i-- {
		en := &m.entries[i]
		if en.kind != 'd' || en.path == "." {
			continue
		}
		dir, base := splitName(en.path)
		pfd, err := c.openDir(dir)
		if err != nil {
			return fmt.Errorf("%q: %w", en.path, err)
		}
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("%q: open directory: %w", en.path, err)
		}
		err = c.fdAttrs(fd, en, true)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%q: %w", en.path, err)
		}
	}
	return nil
}

// fdAttrs gives the open file or directory fd the owner, extended
// attributes, mode and times of en, in that order (chown clears setuid
// bits and capabilities). chmod says the mode must be set even when
// creation gave it.
func (c *cloner) fdAttrs(fd int, en *manifestEntry, chmod bool) error {
	if en.uid != c.euid || en.gid != c.egid {
		if err := unix.Fchown(fd, int(en.uid), int(en.gid)); err != nil {
			return fmt.Errorf("restore owner %d:%d: %w", en.uid, en.gid, err)
		}
	}
	for _, x := range en.xattrs {
		if err := unix.Fsetxattr(fd, x.name, x.value, 0); err != nil {
			return fmt.Errorf("restore extended attribute %q: %w", x.name, err)
		}
	}
	if chmod || en.mode&^0o777 != 0 || en.mode&c.umask != 0 {
		if err := unix.Fchmod(fd, en.mode); err != nil {
			return fmt.Errorf("restore mode: %w", err)
		}
	}
	ts := [2]unix.Timespec{en.atime, en.mtime}
	if err := futimens(fd, &ts); err != nil {
		return fmt.Errorf("restore times: %w", err)
	}
	return nil
}

// cloneWorker fills directories, one at a time.
type cloneWorker struct {
	c   *cloner
	buf []byte
	h   hash.Hash
}

// fill makes the entries (indexes in the manifest) of directory dir.
func (w *cloneWorker) fill(ctx context.Context, dir string, entries []int) error {
	pfd, err := w.c.openDir(dir)
	if err != nil {
		return fmt.Errorf("%q: %w", dir, err)
	}
	defer unix.Close(pfd)
	for _, i := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		en := &w.c.u.m.entries[i]
		_, base := splitName(en.path)
		var err error
		switch en.kind {
		case 'f':
			err = w.file(pfd, base, en)
		case 'l':
			err = w.symlink(pfd, base, en)
		default:
			err = w.node(pfd, base, en)
		}
		if err != nil {
			return fmt.Errorf("%q: %w", en.path, err)
		}
	}
	return nil
}

// file clones a regular file from its object and checks its content.
func (w *cloneWorker) file(pfd int, base string, en *manifestEntry) error {
	c := w.c
	dst, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, en.mode&0o777)
	if err != nil {
		return fmt.Errorf("create: %w", spaceHint(err))
	}
	defer unix.Close(dst)
	if en.size > 0 {
		if err := w.content(dst, en); err != nil {
			return err
		}
	} else if en.sum != sha256.Sum256(nil) {
		return fmt.Errorf("empty, but its manifest SHA256 is not that of nothing: %w", ErrMismatch)
	}
	return c.fdAttrs(dst, en, false)
}

// openObject opens the copy's file of en's content, which must be a
// regular file of the running user's, open to nobody else, of en's size.
func (u *UnpackedCopy) openObject(en *manifestEntry) (int, string, *unix.Stat_t, error) {
	name := objectName(&en.sum)
	var st unix.Stat_t
	src, err := unix.Openat(int(u.dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if err != nil {
		return -1, name, &st, fmt.Errorf("open its content %s/%s: %w", u.path, name, err)
	}
	err = unix.Fstat(src, &st)
	switch {
	case err != nil:
		err = fmt.Errorf("stat %s/%s: %w", u.path, name, err)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = fmt.Errorf("its content %s/%s is %s: %w", u.path, name, kindOf(st.Mode), ErrMismatch)
	case private(&st) != nil:
		err = fmt.Errorf("its content %s/%s %s: %w", u.path, name, private(&st), ErrMismatch)
	case st.Size != en.size:
		err = fmt.Errorf("its content %s/%s is %d bytes, the manifest says %d: %w", u.path, name, st.Size, en.size, ErrMismatch)
	}
	if err != nil {
		unix.Close(src)
		return -1, name, &st, err
	}
	return src, name, &st, nil
}

// Verify checks every file of the copy against the manifest, as a clone
// does: for cache verify, which reads them all.
func (u *UnpackedCopy) Verify(ctx context.Context) error {
	buf, h := make([]byte, 1<<20), sha256.New()
	done := map[[sha256.Size]byte]bool{}
	for i := range u.m.entries {
		en := &u.m.entries[i]
		if en.kind != 'f' || en.size == 0 || done[en.sum] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		src, name, _, err := u.openObject(en)
		if err != nil {
			return fmt.Errorf("%q: %w", en.path, err)
		}
		h.Reset()
		err = copyHashed(src, -1, false, en.size, buf, h)
		unix.Close(src)
		var sum [sha256.Size]byte
		if h.Sum(sum[:0]); err == nil && sum != en.sum {
			err = fmt.Errorf("does not match its SHA256 (damaged or tampered with): %w", ErrMismatch)
		}
		if err != nil {
			return fmt.Errorf("%q: its content %s/%s: %w", en.path, u.path, name, err)
		}
		done[en.sum] = true
	}
	return nil
}

func (w *cloneWorker) content(dst int, en *manifestEntry) error {
	c := w.c
	src, name, st, err := c.u.openObject(en)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	// An object as it was when the copy was made is not read again
	// (see identityName).
	unchanged := c.u.ident.unchanged(name, st)
	cloned := false
	if en.size >= reflinkMin && !c.noReflink.Load() {
		switch err := unix.IoctlFileClone(dst, src); {
		case err == nil:
			// The whole object was cloned: it must still be the
			// size the manifest says.
			var st unix.Stat_t
			if err := unix.Fstat(dst, &st); err != nil {
				return fmt.Errorf("stat: %w", err)
			}
			if st.Size != en.size {
				return fmt.Errorf("its content %s/%s is %d bytes, the manifest says %d: %w", c.u.path, name, st.Size, en.size, ErrMismatch)
			}
			cloned = true
		case cannotClone(err):
			c.noReflink.Store(true)
		default:
			return fmt.Errorf("clone: %w", spaceHint(err))
		}
	}
	if cloned {
		c.reflinked.Add(1)
	} else {
		c.copied.Add(1)
	}
	if unchanged {
		if cloned {
			return nil
		}
		if c.forceCopy {
			return copyHashed(src, dst, true, en.size, w.buf, nil)
		}
		return copyPlain(src, dst, en.size, w.buf)
	}
	c.hashed.Add(1)
	// The bytes hashed are those cloned: with a reflink, the object's,
	// read after the clone took them (a change after that could only
	// make the check fail); with a copy, those written.
	w.h.Reset()
	if err := copyHashed(src, dst, !cloned, en.size, w.buf, w.h); err != nil {
		return fmt.Errorf("its content %s/%s: %w", c.u.path, name, err)
	}
	var sum [sha256.Size]byte
	if w.h.Sum(sum[:0]); sum != en.sum {
		return fmt.Errorf("its content %s/%s does not match its SHA256 (damaged or tampered with): %w", c.u.path, name, ErrMismatch)
	}
	return nil
}

// copyPlain copies size bytes of src to dst, in the kernel where it can
// (copy_file_range), without looking at them.
func copyPlain(src, dst int, size int64, buf []byte) error {
	var off int64
	for off < size {
		n, err := unix.CopyFileRange(src, &off, dst, nil, int(min(size-off, 1<<30)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil && off == 0 && (err == unix.ENOSYS || err == unix.EXDEV || err == unix.EINVAL || err == unix.EOPNOTSUPP) {
			// No copy_file_range between these two: through buf.
			return copyHashed(src, dst, true, size, buf, nil)
		}
		if err != nil {
			return fmt.Errorf("copy: %w", spaceHint(err))
		}
		if n == 0 {
			return fmt.Errorf("ends after %d of its %d bytes: %w", off, size, ErrMismatch)
		}
	}
	return nil
}

// symlink makes a symbolic link, with its owner, attributes and times.
func (w *cloneWorker) symlink(pfd int, base string, en *manifestEntry) error {
	if err := unix.Symlinkat(en.link, pfd, base); err != nil {
		return fmt.Errorf("create symlink: %w", spaceHint(err))
	}
	return w.pathAttrs(pfd, base, en, false)
}

// node makes a device node or a fifo.
func (w *cloneWorker) node(pfd int, base string, en *manifestEntry) error {
	typ := map[byte]uint32{'c': unix.S_IFCHR, 'b': unix.S_IFBLK, 'p': unix.S_IFIFO}[en.kind]
	if typ == 0 {
		return fmt.Errorf("unknown kind %q", en.kind)
	}
	dev := 0
	if typ != unix.S_IFIFO {
		dev = int(unix.Mkdev(en.major, en.minor))
	}
	if err := unix.Mknodat(pfd, base, typ|en.mode&0o777, dev); err != nil {
		return fmt.Errorf("create node: %w", spaceHint(err))
	}
	return w.pathAttrs(pfd, base, en, true)
}

// pathAttrs restores owner, attributes, mode (hasMode: not for symbolic
// links) and times of pfd/base, which the clone just made, without
// following a symbolic link there.
func (w *cloneWorker) pathAttrs(pfd int, base string, en *manifestEntry, hasMode bool) error {
	c := w.c
	if en.uid != c.euid || en.gid != c.egid {
		if err := unix.Fchownat(pfd, base, int(en.uid), int(en.gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("restore owner %d:%d: %w", en.uid, en.gid, err)
		}
	}
	for _, x := range en.xattrs {
		if err := lsetxattrAt(pfd, base, x.name, x.value); err != nil {
			return fmt.Errorf("restore extended attribute %q: %w", x.name, err)
		}
	}
	if hasMode && (en.mode&^0o777 != 0 || en.mode&c.umask != 0) {
		// Not a symbolic link: the clone made a node there.
		if err := unix.Fchmodat(pfd, base, en.mode, 0); err != nil {
			return fmt.Errorf("restore mode: %w", err)
		}
	}
	ts := []unix.Timespec{en.atime, en.mtime}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("restore times: %w", err)
	}
	return nil
}

// noSetxattrat says the kernel lacks setxattrat(2).
var noSetxattrat atomic.Bool

// lsetxattrAt sets an extended attribute of pfd/base without following a
// symbolic link there, as extractor.lsetxattrat does.
func lsetxattrAt(pfd int, base, name string, value []byte) error {
	if !noSetxattrat.Load() {
		err := setxattrat(pfd, base, name, value)
		if err != unix.ENOSYS {
			return err
		}
		noSetxattrat.Store(true)
	}
	return unix.Lsetxattr("/proc/self/fd/"+strconv.Itoa(pfd)+"/"+base, name, value, 0)
}

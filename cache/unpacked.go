package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// An entry may keep an unpacked copy of its rootfs, so that a container
// is made by cloning files rather than by decoding the tarball: in the
// entry's directory, a directory .unpacked (mode 0700, the running user's,
// who must be root) holds the manifest (see manifest.go's format) and one
// file per distinct content, named by its SHA256, mode 0600. The copy
// holds content only: no setuid bit, device node or owner of the image is
// ever in the cache; the clone takes all of that from the manifest. The
// entry's record holds the manifest's size and SHA256, and the manifest
// the SHA256 of the rootfs tarball it was unpacked from, which the record
// ties to the signed SHA256SUMS: so a copy is used only with the entry it
// was made from, after a verified unpack of it.
const (
	unpackedName    = ".unpacked"
	unpackedTmpName = ".unpacked.tmp"
	manifestName    = "manifest"
)

// UnpackedPolicy says whether an entry keeps an unpacked copy.
type UnpackedPolicy int

const (
	// UnpackedAuto keeps a copy only where the filesystem lets the copy
	// share its blocks with the rootfs it came from (reflinks: xfs,
	// btrfs), so that it takes next to no space.
	UnpackedAuto UnpackedPolicy = iota
	// UnpackedAlways keeps a copy, copying the files where they cannot
	// be shared: a second copy of the rootfs in the cache.
	UnpackedAlways
	// UnpackedNever keeps none, and uses none.
	UnpackedNever
)

// Errors of KeepUnpacked and RootfsStage.Clone that say why an unpacked
// copy was not kept or cannot be used; errors.Is finds them.
var (
	// ErrOtherFilesystem: the cache and the rootfs are on different
	// filesystems, where files cannot be cloned.
	ErrOtherFilesystem = errors.New("the cache and the rootfs are on different filesystems")
	// ErrNoReflink: the filesystem cannot share blocks between files
	// (UnpackedAuto keeps no copy there).
	ErrNoReflink = errors.New("the filesystem does not share blocks between files (no reflinks)")
	// ErrNotPristine: the stage holds something else than an unpack
	// that gave no warning.
	ErrNotPristine = errors.New("the rootfs is not exactly as unpacked")
	// ErrNoUnpacked: the entry has no unpacked copy.
	ErrNoUnpacked = errors.New("the cached image has no unpacked copy")
)

// unpackedRecord is what an entry's record says of its unpacked copy.
type unpackedRecord struct {
	Manifest fileSum `json:"manifest"`
	// Reflinked says the copy's files were cloned, sharing blocks with
	// the rootfs they came from, rather than copied.
	Reflinked bool `json:"reflinked"`
}

// HasUnpacked reports whether the entry's record names an unpacked copy.
func (e *Entry) HasUnpacked() bool { return e.unpacked != nil }

// KeepUnpacked makes the tree unpacked into s the unpacked copy of the
// entry of k, when that entry still holds the rootfs tarball of SHA256
// rootfsSHA256 (hex) and has no copy yet (replace: or has one, which is
// replaced, or removed where UnpackedAuto keeps none). Call it once the unpack has verified and before anything else
// changes the stage (templates, dev/pts); it takes the entry's lock
// (waiting as long as ctx allows). The files are cloned (FICLONE) where
// the filesystem shares blocks, else, with UnpackedAlways, copied; the
// content is hashed as it is read, and the copy is synced and put in place
// before the record names it. It returns nil when the copy was kept, and
// otherwise why not: ErrOtherFilesystem, ErrNoReflink (UnpackedAuto),
// ErrNotPristine, or a failure, after which the entry is as it was.
func (c Cache) KeepUnpacked(ctx context.Context, k Key, rootfsSHA256 string, s *RootfsStage, p UnpackedPolicy, replace bool) error {
	if p == UnpackedNever {
		return nil
	}
	if !s.pristine() {
		return ErrNotPristine
	}
	if os.Geteuid() != 0 {
		return errors.New("keep unpacked copy: only for root, which alone can restore owners and devices")
	}
	// Whether the copy can share blocks with the stage is known before
	// the lock is taken: with UnpackedAuto on a filesystem without
	// reflinks, a run pays a few system calls for it and no more.
	reflink, err := c.probeKeep(k, s)
	if err != nil {
		return err
	}
	if !reflink && p == UnpackedAuto {
		if replace {
			// The copy there failed a check, and none is made
			// here: it goes, or every run would warn of it.
			if unlock, lerr := c.Lock(ctx, k); lerr == nil {
				c.DropUnpacked(k)
				unlock()
			}
		}
		return ErrNoReflink
	}
	unlock, err := c.Lock(ctx, k)
	if err != nil {
		return err
	}
	defer unlock()
	e, err := c.Lookup(k)
	if err != nil {
		return err
	}
	if e == nil || e.RootfsSHA256 != rootfsSHA256 {
		return errors.New("keep unpacked copy: the cached image changed meanwhile")
	}
	parent, n, err := c.openParent(k, false)
	if err != nil {
		return err
	}
	defer parent.close()
	ed, err := parent.sub(n.entry, false, 0)
	if err != nil {
		return err
	}
	defer ed.close()
	if e.unpacked != nil && existsAt(ed.fd, unpackedName) && !replace {
		return nil
	}
	if err := removeAllAt(ed.fd, unpackedTmpName); err != nil {
		return fmt.Errorf("keep unpacked copy: remove %s: %w", ed.join(unpackedTmpName), err)
	}
	if err := unix.Mkdirat(ed.fd, unpackedTmpName, 0o700); err != nil {
		return fmt.Errorf("keep unpacked copy: %w", &os.PathError{Op: "mkdir", Path: ed.join(unpackedTmpName), Err: spaceHint(err)})
	}
	rec, err := c.buildUnpacked(ctx, ed, s, rootfsSHA256, reflink)
	if err != nil {
		removeAllAt(ed.fd, unpackedTmpName)
		return err
	}
	// The old copy goes first (the record no longer names it once the
	// new one is in place), then the new one takes its name, then the
	// record names it.
	if err := removeAllAt(ed.fd, unpackedName); err != nil {
		removeAllAt(ed.fd, unpackedTmpName)
		return fmt.Errorf("keep unpacked copy: remove the old copy: %w", err)
	}
	if err := unix.Renameat(ed.fd, unpackedTmpName, ed.fd, unpackedName); err != nil {
		removeAllAt(ed.fd, unpackedTmpName)
		return fmt.Errorf("keep unpacked copy: %w", &os.LinkError{Op: "rename", Old: ed.join(unpackedTmpName), New: ed.join(unpackedName), Err: err})
	}
	c.step("unpacked-renamed")
	if err := syncDirFd(ed.fd); err != nil {
		return fmt.Errorf("keep unpacked copy: sync %s: %w", ed.path, err)
	}
	return writeRecord(ed, e.record(&rec))
}

// record is the record e was stored with, naming u as its unpacked copy.
func (e *Entry) record(u *unpackedRecord) record {
	return record{Format: recordFormat, Build: e.BuildID,
		Rootfs: fileSum{Size: e.RootfsSize, SHA256: e.RootfsSHA256},
		Meta:   fileSum{Size: e.MetaSize, SHA256: e.MetaSHA256},
		Trust:  e.Trust, Unpacked: u}
}

// writeRecord replaces the record of the entry in d: written beside it,
// synced, renamed over it.
func writeRecord(d storeDir, rec record) error {
	tmp := recordName + ".tmp"
	if err := removeAllAt(d.fd, tmp); err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	if err := writeFileAt(d.fd, tmp, rec.marshal(), 0o644); err != nil {
		return fmt.Errorf("write record in %s: %w", d.path, spaceHint(err))
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, recordName); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("write record: %w", &os.LinkError{Op: "rename", Old: d.join(tmp), New: d.join(recordName), Err: err})
	}
	if err := syncDirFd(d.fd); err != nil {
		return fmt.Errorf("write record: sync %s: %w", d.path, err)
	}
	return nil
}

// DropUnpacked removes the unpacked copy of k's entry, and any copy left
// half made or no longer named by the record; the entry stays. The caller
// holds the entry's lock. It reports whether there was something to
// remove.
func (c Cache) DropUnpacked(k Key) (bool, error) {
	parent, n, err := c.openParent(k, false)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer parent.close()
	ed, err := parent.sub(n.entry, false, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer ed.close()
	found := existsAt(ed.fd, unpackedTmpName) || existsAt(ed.fd, unpackedName)
	e, why, err := readEntry(ed, c.trust())
	if err != nil {
		return false, err
	}
	if why == "" && e.unpacked != nil {
		// The record first: a copy it does not name is never used.
		if err := writeRecord(ed, e.record(nil)); err != nil {
			return false, err
		}
		found = true
	}
	for _, name := range []string{unpackedTmpName, unpackedName} {
		if err := removeAllAt(ed.fd, name); err != nil {
			return found, fmt.Errorf("remove unpacked copy: %s: %w", ed.join(name), err)
		}
	}
	return found, nil
}

// UnpackedUsage is the disk use of an entry's unpacked copy.
type UnpackedUsage struct {
	// Files counts the copy's files of content (one per distinct
	// content) and Bytes the size of all its files, manifest included; Allocated is the space they take, in which blocks
	// shared with containers (Reflinked) are counted too.
	Files            int
	Bytes, Allocated int64
	Reflinked        bool
	// Orphan says the copy is not named by the record (a run stopped
	// while making it): prune removes it.
	Orphan bool
}

// UnpackedUsage reports the disk use of the unpacked copy of the entry,
// and whether there is one (or a leftover of one) at all.
func (e *Entry) UnpackedUsage() (UnpackedUsage, bool, error) {
	var u UnpackedUsage
	if e.open == nil {
		return u, false, errors.New("unpacked copy: the entry was not looked up")
	}
	d, err := e.open()
	if err != nil {
		return u, false, err
	}
	defer d.close()
	found := false
	for _, name := range []string{unpackedName, unpackedTmpName} {
		fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return u, found, &os.PathError{Op: "open", Path: d.join(name), Err: err}
		}
		found = true
		if name == unpackedTmpName || e.unpacked == nil {
			u.Orphan = true
		}
		f := os.NewFile(uintptr(fd), d.join(name))
		names, err := f.Readdirnames(-1)
		for _, n := range names {
			var st unix.Stat_t
			if unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				if n != manifestName && n != identityName {
					u.Files++
				}
				u.Bytes += st.Size
				u.Allocated += int64(st.Blocks) * 512
			}
		}
		f.Close()
		if err != nil {
			return u, found, err
		}
	}
	if e.unpacked != nil {
		u.Reflinked = e.unpacked.Reflinked
	}
	return u, found, nil
}

// UnpackedCopy is an entry's unpacked copy, opened and checked for cloning
// (Entry.OpenUnpacked, RootfsStage.Clone).
type UnpackedCopy struct {
	dir      *os.File // the copy's directory
	manifest *os.File // its manifest, read
	path     string
	m        *manifest
	ident    *identities // nil: hash every object
	// Reflinked says the copy was made with reflinks, so that cloning
	// from it shares blocks too.
	Reflinked bool
}

// Close lets go of the copy.
func (u *UnpackedCopy) Close() error {
	if u == nil || u.dir == nil {
		return nil
	}
	if u.manifest != nil {
		u.manifest.Close()
	}
	return u.dir.Close()
}

// Path is the copy's directory, for messages.
func (u *UnpackedCopy) Path() string { return u.path }

// OpenUnpacked opens the entry's unpacked copy for RootfsStage.Clone: the
// copy's directory must be the running user's and nobody else's (mode
// 0700), its manifest likewise, of the size and SHA256 the record gives,
// and made from the rootfs tarball the record names. Call it with the
// entry's lock held; the copy stays usable after, through its handle,
// until Close. Errors say why the copy cannot be used (ErrNoUnpacked when
// there is none); the caller unpacks the tarball then.
func (e *Entry) OpenUnpacked() (*UnpackedCopy, error) {
	if e.unpacked == nil {
		return nil, ErrNoUnpacked
	}
	if e.open == nil {
		return nil, errors.New("unpacked copy: the entry was not looked up")
	}
	d, err := e.open()
	if err != nil {
		return nil, fmt.Errorf("unpacked copy: %w", err)
	}
	defer d.close()
	path := d.join(unpackedName)
	fd, err := unix.Openat(d.fd, unpackedName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("unpacked copy: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	u := &UnpackedCopy{dir: os.NewFile(uintptr(fd), path), path: path, Reflinked: e.unpacked.Reflinked}
	fail := func(err error) (*UnpackedCopy, error) {
		u.Close()
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(fmt.Errorf("unpacked copy: %w", &os.PathError{Op: "stat", Path: path, Err: err}))
	}
	if err := private(&st); err != nil {
		return fail(fmt.Errorf("unpacked copy %s %s: %w", path, err, ErrMismatch))
	}
	f, st, err := openFileAt(fd, manifestName)
	if err != nil {
		return fail(fmt.Errorf("unpacked copy: manifest: %w", &os.PathError{Op: "open", Path: path + "/" + manifestName, Err: err}))
	}
	u.manifest = f
	if err := private(&st); err != nil {
		return fail(fmt.Errorf("unpacked copy: manifest %s/%s %s: %w", path, manifestName, err, ErrMismatch))
	}
	want := e.unpacked.Manifest
	if st.Size != want.Size || st.Size > maxManifestSize {
		return fail(fmt.Errorf("unpacked copy: manifest is %d bytes, but was stored with %d: %w", st.Size, want.Size, ErrMismatch))
	}
	b := make([]byte, st.Size)
	if _, err := io.ReadFull(f, b); err != nil {
		return fail(fmt.Errorf("unpacked copy: read manifest: %w", err))
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want.SHA256 {
		return fail(fmt.Errorf("unpacked copy: manifest does not match the SHA256 recorded when it was stored: %w", ErrMismatch))
	}
	if u.m, err = parseManifest(b, Limits{}); err != nil {
		return fail(fmt.Errorf("unpacked copy: %w", err))
	}
	if u.m.rootfs != e.RootfsSHA256 {
		return fail(fmt.Errorf("unpacked copy: made from another rootfs tarball: %w", ErrMismatch))
	}
	u.ident = readIdentities(fd)
	return u, nil
}

// euid is the running user, asked once: os.Geteuid is a system call.
var euid = sync.OnceValue(os.Geteuid)

// private checks what the unpacked copy holds: the running user's, and
// neither readable nor writable by anyone else. Only root keeps copies,
// so only root could have changed them.
func private(st *unix.Stat_t) error {
	if st.Uid != uint32(euid()) {
		return fmt.Errorf("is owned by uid %d, not by this user (uid %d)", st.Uid, euid())
	}
	if st.Mode&0o077 != 0 {
		return fmt.Errorf("is open to others (mode %04o)", st.Mode&0o7777)
	}
	return nil
}

// pristine says whether the stage holds an unpack that gave no warning,
// as it made it.
func (s *RootfsStage) pristine() bool {
	return s.filled && !s.done && len(s.root.warned) == 0
}

// unpackedBuilder makes the objects and manifest of a copy from a stage.
type unpackedBuilder struct {
	ctx     context.Context
	obj     int // the copy's directory, being made
	reflink bool
	buf     []byte
	h       hash.Hash
	links   map[[2]uint64]string // files with several links: the first path
	objects map[[sha256.Size]byte]bool
	m       manifest
	tmp     int
	lim     Limits
	size    int64 // of the manifest so far, roughly
}

// buildUnpacked fills ed/.unpacked.tmp from the stage and returns what the
// record will say of it.
func (c Cache) buildUnpacked(ctx context.Context, ed storeDir, s *RootfsStage, rootfs string, reflink bool) (unpackedRecord, error) {
	var rec unpackedRecord
	obj, err := unix.Openat(ed.fd, unpackedTmpName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return rec, fmt.Errorf("keep unpacked copy: %w", &os.PathError{Op: "open", Path: ed.join(unpackedTmpName), Err: err})
	}
	defer unix.Close(obj)
	b := &unpackedBuilder{ctx: ctx, obj: obj, reflink: reflink, buf: make([]byte, 1<<20), h: sha256.New(),
		links: map[[2]uint64]string{}, objects: map[[sha256.Size]byte]bool{}, lim: DefaultLimits, m: manifest{rootfs: rootfs}}
	if s.root.set {
		d := s.root.attrs
		b.m.entries = append(b.m.entries, manifestEntry{kind: 'd', path: ".", mode: d.mode, uid: uint32(d.uid), gid: uint32(d.gid),
			atime: d.times[0], mtime: d.times[1], xattrs: d.xattrs})
	}
	// Read without changing access times: the stage is installed after.
	root, err := unix.Openat(int(s.lock.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if err != nil {
		return rec, fmt.Errorf("keep unpacked copy: %w", &os.PathError{Op: "open", Path: s.Dir, Err: err})
	}
	if reflink {
		// A file is written back before it is cloned: one writeback of
		// the whole filesystem first, rather than one per file.
		unix.Syncfs(root)
	}
	err = b.walk(root, "")
	unix.Close(root)
	if err != nil {
		return rec, fmt.Errorf("keep unpacked copy: %w", err)
	}
	data := b.m.marshal()
	if len(data) > maxManifestSize {
		return rec, fmt.Errorf("keep unpacked copy: the manifest would be %d bytes, more than %d", len(data), maxManifestSize)
	}
	if err := writeFileAt(obj, manifestName, data, 0o600); err != nil {
		return rec, fmt.Errorf("keep unpacked copy: %w", spaceHint(err))
	}
	// One sync for every file of the copy.
	if err := unix.Syncfs(obj); err != nil {
		return rec, fmt.Errorf("keep unpacked copy: sync: %w", err)
	}
	names := make([]string, 0, len(b.objects))
	for sum := range b.objects {
		names = append(names, objectName(&sum))
	}
	slices.Sort(names)
	if err := recordIdentities(obj, names); err != nil {
		return rec, fmt.Errorf("keep unpacked copy: %w", spaceHint(err))
	}
	sum := sha256.Sum256(data)
	rec.Manifest = fileSum{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	rec.Reflinked = b.reflink
	return rec, nil
}

// walk adds the entries of the stage directory dfd (at rel) to the
// manifest, in name order, each directory before its content.
func (b *unpackedBuilder) walk(dfd int, rel string) error {
	dup, err := unix.Dup(dfd)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dup), rel)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("%q: read directory: %w", rel, err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		if err := b.entry(dfd, name, p); err != nil {
			return err
		}
	}
	return nil
}

// entry adds dfd/name, at p in the rootfs, to the manifest.
func (b *unpackedBuilder) entry(dfd int, name, p string) error {
	err := b.add(dfd, name, p)
	var pe *pathError
	if err == nil || errors.As(err, &pe) {
		return err
	}
	return &pathError{p, err}
}

// pathError is an error about one path of the stage.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return fmt.Sprintf("%q: %v", e.path, e.err) }
func (e *pathError) Unwrap() error { return e.err }

func (b *unpackedBuilder) add(dfd int, name, p string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	en := manifestEntry{path: p, mode: st.Mode & 0o7777, uid: st.Uid, gid: st.Gid,
		atime: unix.Timespec(st.Atim), mtime: unix.Timespec(st.Mtim)}
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		id := [2]uint64{uint64(st.Dev), uint64(st.Ino)}
		if first, ok := b.links[id]; ok {
			b.m.entries = append(b.m.entries, manifestEntry{kind: 'h', path: p, link: first})
			return nil
		}
		b.links[id] = p
	}
	var err error
	switch typ {
	case unix.S_IFDIR:
		fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		en.kind = 'd'
		if en.xattrs, err = fdXattrs(fd); err != nil {
			return err
		}
		b.m.entries = append(b.m.entries, en)
		return b.walk(fd, p)
	case unix.S_IFREG:
		en.kind, en.size = 'f', st.Size
		err = b.file(dfd, name, &en)
	case unix.S_IFLNK:
		en.kind = 'l'
		if en.link, err = readlinkAt(dfd, name); err == nil {
			en.xattrs, err = pathXattrs(dfd, name)
		}
		if err == nil {
			// Reading a link sets its access time, which O_NOATIME
			// cannot prevent: it is put back.
			err = unix.UtimesNanoAt(dfd, name, []unix.Timespec{en.atime, en.mtime}, unix.AT_SYMLINK_NOFOLLOW)
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		en.kind = map[uint32]byte{unix.S_IFCHR: 'c', unix.S_IFBLK: 'b', unix.S_IFIFO: 'p'}[typ]
		if typ != unix.S_IFIFO {
			en.major, en.minor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
		}
		en.xattrs, err = pathXattrs(dfd, name)
	default:
		return fmt.Errorf("%s cannot be kept", kindOf(st.Mode))
	}
	if err != nil {
		return err
	}
	b.m.entries = append(b.m.entries, en)
	return nil
}

// file stores the content of the stage's regular file dfd/name as an
// object (unless an object has it already) and sets en's SHA256.
func (b *unpackedBuilder) file(dfd int, name string, en *manifestEntry) error {
	src, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	if en.xattrs, err = fdXattrs(src); err != nil {
		return err
	}
	if en.size == 0 {
		en.sum = sha256.Sum256(nil)
		return nil
	}
	b.tmp++
	tmp := ".tmp-" + strconv.Itoa(b.tmp)
	dst, err := unix.Openat(b.obj, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create object: %w", spaceHint(err))
	}
	defer unix.Close(dst)
	if b.reflink {
		if err := unix.IoctlFileClone(dst, src); err != nil {
			return fmt.Errorf("clone into the cache: %w", spaceHint(err))
		}
	}
	b.h.Reset()
	if err := copyHashed(src, dst, !b.reflink, en.size, b.buf, b.h); err != nil {
		return err
	}
	b.h.Sum(en.sum[:0])
	obj := objectName(&en.sum)
	if b.objects[en.sum] {
		return unix.Unlinkat(b.obj, tmp, 0)
	}
	if err := unix.Renameat(b.obj, tmp, b.obj, obj); err != nil {
		return err
	}
	b.objects[en.sum] = true
	return nil
}

// probeKeep says whether files of the stage s can be cloned into k's
// entry (reflinks), by cloning an empty file of the stage into the
// entry's parent directory. ErrOtherFilesystem says they are on different
// filesystems.
func (c Cache) probeKeep(k Key, s *RootfsStage) (bool, error) {
	parent, _, err := c.openParent(k, false)
	if err != nil {
		return false, err
	}
	defer parent.close()
	pfd, err := unix.Openat(parent.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(pfd)
	name := ".lxc-download-probe-" + randomSuffix()
	src, err := unix.Openat(int(s.lock.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("probe for reflinks: %w", err)
	}
	unix.Unlinkat(int(s.lock.Fd()), name, 0)
	defer unix.Close(src)
	return probeReflink(pfd, src)
}

// probeReflink clones the file src into a new file in the directory dfd,
// removed at once, and reports whether that worked; when it did not
// because the two are on different filesystems, the error is
// ErrOtherFilesystem.
func probeReflink(dfd, src int) (bool, error) {
	name := ".lxc-download-probe-" + randomSuffix()
	dst, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("probe for reflinks: %w", err)
	}
	unix.Unlinkat(dfd, name, 0)
	defer unix.Close(dst)
	err = unix.IoctlFileClone(dst, src)
	var a, b unix.Stat_t
	switch {
	case err == nil:
		return true, nil
	case err == unix.EXDEV:
		return false, ErrOtherFilesystem
	case !cannotClone(err):
		return false, fmt.Errorf("probe for reflinks: %w", err)
	case unix.Fstat(dst, &a) != nil || unix.Fstat(src, &b) != nil || a.Dev != b.Dev:
		return false, ErrOtherFilesystem
	}
	return false, nil
}

// cannotClone says whether FICLONE failed because the filesystem (or the
// pair of files) cannot share blocks, rather than for a failure.
func cannotClone(err error) bool {
	return err == unix.EOPNOTSUPP || err == unix.ENOTTY || err == unix.EINVAL || err == unix.EXDEV || err == unix.ENOSYS || err == unix.EBADF
}

// copyHashed reads size bytes of src from its start into h (unless nil)
// and, with write, to dst; a file shorter than that is an error. (The callers
// checked its size; a clone checks the size of what it cloned.)
func copyHashed(src, dst int, write bool, size int64, buf []byte, h hash.Hash) error {
	var off int64
	for off < size {
		n, err := unix.Pread(src, buf[:min(int64(len(buf)), size-off)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("ends after %d of its %d bytes: %w", off, size, ErrMismatch)
		}
		if h != nil {
			h.Write(buf[:n])
		}
		if write {
			if err := writeAll(dst, buf[:n]); err != nil {
				return fmt.Errorf("write: %w", spaceHint(err))
			}
		}
		off += int64(n)
	}
	return nil
}

// readlinkAt reads the target of the symbolic link dfd/name.
func readlinkAt(dfd int, name string) (string, error) {
	for size := 256; size <= 1<<16; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
	return "", errors.New("symbolic link target too long")
}

// fdXattrs returns the extended attributes of the open file fd, in name
// order.
func fdXattrs(fd int) ([]xattr, error) {
	return readXattrs(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		func(name string, b []byte) (int, error) { return unix.Fgetxattr(fd, name, b) })
}

// pathXattrs returns those of dfd/name, never following a symbolic link
// there (through the directory's handle in /proc: l*xattr have no
// fd-relative form).
func pathXattrs(dfd int, name string) ([]xattr, error) {
	p := "/proc/self/fd/" + strconv.Itoa(dfd) + "/" + name
	return readXattrs(func(b []byte) (int, error) { return unix.Llistxattr(p, b) },
		func(name string, b []byte) (int, error) { return unix.Lgetxattr(p, name, b) })
}

func readXattrs(list func([]byte) (int, error), get func(string, []byte) (int, error)) ([]xattr, error) {
	n, err := list(nil)
	if err == unix.ENOTSUP || n == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list extended attributes: %w", err)
	}
	buf := make([]byte, n)
	if n, err = list(buf); err != nil {
		return nil, fmt.Errorf("list extended attributes: %w", err)
	}
	var xs []xattr
	for _, name := range splitNul(buf[:n]) {
		var v []byte
		for {
			size, err := get(name, nil)
			if err != nil {
				return nil, fmt.Errorf("read extended attribute %q: %w", name, err)
			}
			v = make([]byte, size)
			m, err := get(name, v)
			if err == unix.ERANGE {
				continue // it grew meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("read extended attribute %q: %w", name, err)
			}
			v = v[:m]
			break
		}
		xs = append(xs, xattr{name: name, value: v})
	}
	slices.SortFunc(xs, func(a, b xattr) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	return xs, nil
}

func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}

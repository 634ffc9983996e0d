// Package cache is the on-disk image store of lxc-download, the rootfs
// extractor that reads from it, and the staging of a rootfs until it is
// verified.
//
// The store keeps one entry per image at ROOT/download/DIST/RELEASE/ARCH/VARIANT/,
// laid out as LXC's shell download template lays it out, so that the shell
// template can use a cache made here: rootfs.tar.xz, the files of the
// image's meta tarball (config, fstab, expiry, templates, excludes, ...) and
// build_id. It adds what the shell template lacked:
//   - entries are built beside the old one and swapped in atomically, so a
//     run killed at any instant leaves the old entry or the new one;
//   - each entry has a record (a hidden file) of what it was stored with:
//     the rootfs tarball's size and SHA256, the meta tarball (kept whole as
//     meta.tar.xz) and the trust material it was verified with (SHA256SUMS
//     and its signature, or the files' own signatures). An entry without a
//     record, such as one the shell template made, is not used; the caller
//     verifies the record's trust material again on every use, and the
//     rootfs is hashed while it is read for unpacking (Entry.OpenRootfs);
//   - the store is trusted only when every directory from its root down is
//     owned by the running user or root and not writable by group or
//     others (sshd's StrictModes), and no symbolic link inside it is ever
//     followed; otherwise its methods fail with ErrUntrusted;
//   - a lock file beside each entry makes concurrent runs for one image
//     download it once; a run waits for it for a bounded time.
//
// The siblings of an entry VARIANT are hidden names beside it, which no key
// component can take because components may not start with a dot:
//
//	.VARIANT.lock   the flock(2) lock file (mode 0600)
//	.VARIANT.stage  the staging directory downloads go to (mode 0700; kept
//	                across runs, so an interrupted download can resume)
//	.VARIANT.tmp    a new entry being built
//	.VARIANT.new    a complete new entry about to be swapped in
//	.VARIANT.old    an old entry being removed
//	.VARIANT.seen   the newest build and index signature seen, per server
package cache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Cache is an image store rooted at Root: $LXC_CACHE_PATH, or the default
// (LOCALSTATEDIR/cache/lxc for the system, $HOME/.cache/lxc for a user).
// Missing directories of the store are made with mode 0755, as LXC makes
// its cache: owned by root (or the user), they pass the trust check and let
// other users read the public images; the staging directory is 0700.
//
// Lookup, Flush, Stage, Commit and RecordSeen change the store; a caller
// holds the entry's Lock around them, as concurrent runs otherwise race.
type Cache struct {
	Root string
	// Warn, if not nil, receives a "WARNING: ..." line when Lookup ignores a
	// damaged entry or cannot repair an interrupted update.
	Warn io.Writer
	// Info, if not nil, receives progress lines, such as the one Lock
	// writes when it has waited a while for another run (Warn takes them
	// when Info is nil).
	Info io.Writer
	// LockTimeout is how long Lock waits for another run holding the
	// entry's lock before it gives up with ErrLockTimeout; zero means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// Owners are users, besides the running user and root, that may own
	// the store: the mapped uid that Chown handed a store over to, for a
	// run as root of the user namespace of that uid.
	Owners []int

	hooks *testHooks // set by this package's tests only
}

// testHooks are the points where this package's tests step into a
// commit or a lock.
type testHooks struct {
	// crash is called at each step of a commit to the cache; a test
	// kills its process there.
	crash func(step string)
	// noExchange makes the commit swap entries with two renames, as on a
	// filesystem without renameat2(RENAME_EXCHANGE).
	noExchange bool
	// lockNotice replaces how long Lock waits before it says so.
	lockNotice time.Duration
}

func (c Cache) step(name string) {
	if c.hooks != nil && c.hooks.crash != nil {
		c.hooks.crash(name)
	}
}

// Key names one image. Every field must be set: the shell template's default
// variant is "default", and the caller fills it in.
type Key struct {
	Dist, Release, Arch, Variant string
}

// Check reports whether every component of k can be a directory name in the
// store: not empty, no "/" or NUL, and not starting with "." (which excludes
// "." and "..", and keeps the store's own hidden names apart from entries).
func (k Key) Check() error {
	for _, f := range []struct{ name, v string }{
		{"distribution", k.Dist}, {"release", k.Release}, {"architecture", k.Arch}, {"variant", k.Variant},
	} {
		var why string
		switch {
		case f.v == "":
			why = "is empty"
		case f.v == "." || f.v == "..":
			why = "is not a name"
		case strings.ContainsRune(f.v, '/'):
			why = `contains "/"`
		case strings.ContainsRune(f.v, 0):
			why = "contains a NUL byte"
		case strings.HasPrefix(f.v, "."):
			why = `starts with "."`
		default:
			continue
		}
		return fmt.Errorf("invalid image %s %q: it %s", f.name, f.v, why)
	}
	return nil
}

// Dir is the entry directory of k: ROOT/download/DIST/RELEASE/ARCH/VARIANT.
// It fails, before building any path, when k does not pass Check.
func (c Cache) Dir(k Key) (string, error) {
	comps, n, err := c.layout(k)
	if err != nil {
		return "", err
	}
	return filepath.Join(append(append([]string{c.Root}, comps...), n.entry)...), nil
}

// names are the base names of an entry and its siblings in the entry's
// parent directory.
type names struct {
	entry, lock, stage, tmp, next, old, seen string
}

// layout returns the components of the entry's parent below the root and
// the names in it.
func (c Cache) layout(k Key) ([]string, names, error) {
	if err := k.Check(); err != nil {
		return nil, names{}, err
	}
	if c.Root == "" {
		return nil, names{}, errors.New("no cache root given")
	}
	sib := func(suffix string) string { return "." + k.Variant + suffix }
	return []string{"download", k.Dist, k.Release, k.Arch}, names{
		entry: k.Variant,
		lock:  sib(".lock"),
		stage: sib(".stage"),
		tmp:   sib(".tmp"),
		next:  sib(".new"),
		old:   sib(".old"),
		seen:  sib(".seen"),
	}, nil
}

// storeDir is an open directory of the store (an O_PATH handle), found
// without following a symbolic link and checked to be trusted, as was
// every directory above it up to the root.
type storeDir struct {
	fd   int
	path string
}

func (d storeDir) close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
	}
}

func (d storeDir) join(name string) string { return filepath.Join(d.path, name) }

// check applies the trust check to d itself.
func (d storeDir) check(t trust) error {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: d.path, Err: err}
	}
	return t.check(&st, d.path)
}

// openDir opens ROOT/comps... one component at a time, checking each;
// with create, missing directories are made (mode 0755). A missing one
// without create is an error that errors.Is finds fs.ErrNotExist in.
func (c Cache) openDir(create bool, comps ...string) (storeDir, error) {
	if c.Root == "" {
		return storeDir{fd: -1}, errors.New("no cache root given")
	}
	t := c.trust()
	if create {
		if err := os.MkdirAll(c.Root, 0o755); err != nil {
			return storeDir{fd: -1}, err
		}
	}
	// The root is the user's to choose, symbolic links in its path
	// included; but a symbolic link at the root itself must be a trusted
	// user's (in a sticky /tmp anyone could plant one to a root-owned
	// directory such as /etc).
	var lst unix.Stat_t
	if err := unix.Lstat(c.Root, &lst); err != nil {
		return storeDir{fd: -1}, &os.PathError{Op: "lstat", Path: c.Root, Err: err}
	}
	if lst.Mode&unix.S_IFMT == unix.S_IFLNK && !t.owner(lst.Uid) {
		return storeDir{fd: -1}, &UntrustedError{Path: c.Root, Reason: fmt.Sprintf("is a symbolic link owned by uid %d", lst.Uid)}
	}
	fd, err := openDirPath(c.Root)
	if err != nil {
		return storeDir{fd: -1}, err
	}
	d := storeDir{fd: fd, path: c.Root}
	if err := d.check(t); err != nil {
		d.close()
		return storeDir{fd: -1}, err
	}
	for _, comp := range comps {
		nd, err := d.sub(comp, create, 0o755)
		d.close()
		if err != nil {
			return storeDir{fd: -1}, err
		}
		d = nd
		if err := d.check(t); err != nil {
			d.close()
			return storeDir{fd: -1}, err
		}
	}
	return d, nil
}

// sub opens the directory name in d without following a symbolic link,
// making it with mode perm when it is missing and create is set. It does
// not check the directory.
func (d storeDir) sub(name string, create bool, perm uint32) (storeDir, error) {
	p := d.join(name)
	fd, err := openDirAt(d.fd, name)
	if err == unix.ENOENT && create {
		if err = unix.Mkdirat(d.fd, name, perm); err != nil && err != unix.EEXIST {
			return storeDir{fd: -1}, &os.PathError{Op: "mkdir", Path: p, Err: err}
		}
		fd, err = openDirAt(d.fd, name)
	}
	if err == unix.ENOTDIR {
		if k := kindAt(d.fd, name); k == "a symbolic link" {
			return storeDir{fd: -1}, &UntrustedError{Path: p, Reason: "is a symbolic link"}
		}
	}
	if err != nil {
		return storeDir{fd: -1}, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return storeDir{fd: fd, path: p}, nil
}

// openParent opens the parent directory of k's entry.
func (c Cache) openParent(k Key, create bool) (storeDir, names, error) {
	comps, n, err := c.layout(k)
	if err != nil {
		return storeDir{fd: -1}, n, err
	}
	d, err := c.openDir(create, comps...)
	return d, n, err
}

// Lookup returns the entry of k, or nil and no error when there is none
// usable. An entry is unusable, and a warning says why, when it has no
// record of what it was stored with (the shell template and earlier
// versions made none) or a damaged one, when it lacks build_id (the shell
// template writes it last, so the entry is half-made), when rootfs.tar.xz
// or meta.tar.xz is missing or not the size recorded, when the meta
// tarball does not match its recorded SHA256, or when a file of it is owned
// by another user or writable by others. The next download replaces it.
// The rootfs tarball is not hashed here: Entry.OpenRootfs does it while it
// is read for unpacking, at no extra I/O.
//
// Lookup first finishes or undoes an update a killed run left half done, so
// it is called with the entry's lock held. A store that fails the trust
// check is an error that errors.Is finds ErrUntrusted in.
func (c Cache) Lookup(k Key) (*Entry, error) {
	parent, n, err := c.openParent(k, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up cached image: %w", err)
	}
	defer parent.close()
	if err := c.settle(parent, n); err != nil {
		c.warn("cannot repair the interrupted update of the cached copy in %s: %v", parent.join(n.entry), err)
	}
	ed, err := parent.sub(n.entry, false, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		var ue *UntrustedError
		if errors.As(err, &ue) || errors.Is(err, unix.ENOTDIR) {
			c.warn("ignoring the cached copy %s: not a directory (%s)", parent.join(n.entry), kindAt(parent.fd, n.entry))
			return nil, nil
		}
		return nil, fmt.Errorf("look up cached image: %w", err)
	}
	defer ed.close()
	if err := ed.check(c.trust()); err != nil {
		var ue *UntrustedError
		if !errors.As(err, &ue) {
			return nil, fmt.Errorf("look up cached image: %w", err)
		}
		c.warn("ignoring the cached copy in %s: it %s; the next download replaces it", ed.path, ue.Reason)
		return nil, nil
	}
	e, why, err := readEntry(ed, c.trust())
	if err != nil {
		return nil, fmt.Errorf("look up cached image: %w", err)
	}
	if why != "" {
		c.warn("ignoring the cached copy in %s: %s; the next download replaces it", ed.path, why)
		return nil, nil
	}
	e.open = func() (storeDir, error) {
		parent, n, err := c.openParent(k, false)
		if err != nil {
			return storeDir{fd: -1}, err
		}
		defer parent.close()
		return parent.sub(n.entry, false, 0)
	}
	return e, nil
}

// Flush removes the entry of k, and the downloads staged for it, as
// --flush-cache asks. The entry is first renamed aside, so a run killed while
// removing it leaves no half-deleted entry behind. What was seen of the
// image (Seen) stays: flushing the cache does not open the way to an older
// build.
func (c Cache) Flush(k Key) error {
	parent, n, err := c.openParent(k, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("flush the cache: %w", err)
	}
	defer parent.close()
	for _, name := range []string{n.tmp, n.next, n.entry} {
		if err := discard(parent, name, n.old); err != nil {
			return fmt.Errorf("flush the cache: %s: %w", parent.join(name), err)
		}
	}
	if err := removeAllAt(parent.fd, n.stage); err != nil {
		return fmt.Errorf("flush the cache: %s: %w", parent.join(n.stage), err)
	}
	return nil
}

// Writable reports, by creating and removing a file, whether the store can
// take new entries; when it cannot, the caller stages downloads elsewhere
// (NewTempStage). A store that fails the trust check is an error that
// errors.Is finds ErrUntrusted in.
func (c Cache) Writable() error {
	if c.Root == "" {
		return errors.New("no cache root given")
	}
	d, err := c.openDir(true, "download")
	if errors.Is(err, ErrUntrusted) {
		return err
	}
	if err != nil {
		return fmt.Errorf("cache %s is not writable: %w", c.Root, err)
	}
	defer d.close()
	name := ".writable-" + randomSuffix()
	fd, err := unix.Openat(d.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("cache %s is not writable: %w", c.Root, &os.PathError{Op: "create", Path: d.join(name), Err: err})
	}
	unix.Close(fd)
	unix.Unlinkat(d.fd, name, 0)
	return nil
}

// randomSuffix is 8 random hex digits, for names that must not collide.
func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Chown hands the whole store over to uid and gid (-1 leaves that id as it
// is), as the shell template's chown -R of the cache base does for the
// mapped ids of an unprivileged container, so the container's owner can use
// and update the cache later (name uid in Owners then). Symbolic links are
// not followed, the walk never leaves the store, and a store that fails the
// trust check is not touched. It goes on past failures and returns the
// first.
func (c Cache) Chown(uid, gid int) error {
	if uid < 0 && gid < 0 {
		return nil
	}
	root, err := c.openDir(false)
	if err != nil {
		return fmt.Errorf("hand over cache: %w", err)
	}
	defer root.close()
	if d, err := c.openDir(false, "download"); err == nil {
		d.close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hand over cache: %w", err)
	}
	var first error
	note := func(err error) {
		if first == nil {
			first = fmt.Errorf("hand over cache: %w", err)
		}
	}
	if err := unix.Fchownat(root.fd, "", uid, gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		note(&os.PathError{Op: "chown", Path: root.path, Err: err})
	}
	chownBelow(root, uid, gid, note)
	return first
}

// chownBelow changes the owner of everything in d, depth first.
func chownBelow(d storeDir, uid, gid int, note func(error)) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		note(&os.PathError{Op: "open", Path: d.path, Err: err})
		return
	}
	f := os.NewFile(uintptr(fd), d.path)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		note(err)
	}
	for _, name := range names {
		if err := unix.Fchownat(d.fd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			note(&os.PathError{Op: "chown", Path: d.join(name), Err: err})
		}
		sub, err := openDirAt(d.fd, name)
		if err != nil {
			continue // not a directory (or gone): nothing below it
		}
		chownBelow(storeDir{fd: sub, path: d.join(name)}, uid, gid, note)
		unix.Close(sub)
	}
}

func (c Cache) warn(format string, args ...any) {
	if c.Warn != nil {
		fmt.Fprintf(c.Warn, "WARNING: "+format+"\n", args...)
	}
}

// settle brings the entry back to one of its two steady states, old entry or
// new entry, after a run was killed while updating it:
//   - .tmp is a new entry still being written: dropped;
//   - .new is a complete new entry (it only gets that name once synced):
//     promoted if the entry is missing (a two-step swap killed between its
//     steps), else dropped (after RENAME_EXCHANGE it holds the old entry);
//   - .old is an old entry being deleted: dropped.
func (c Cache) settle(parent storeDir, n names) error {
	if err := discard(parent, n.tmp, n.old); err != nil {
		return err
	}
	if existsAt(parent.fd, n.next) {
		if existsAt(parent.fd, n.entry) {
			if err := discard(parent, n.next, n.old); err != nil {
				return err
			}
		} else {
			if err := unix.Renameat(parent.fd, n.next, parent.fd, n.entry); err != nil {
				return &os.LinkError{Op: "rename", Old: parent.join(n.next), New: parent.join(n.entry), Err: err}
			}
			if err := syncDirFd(parent.fd); err != nil {
				return fmt.Errorf("sync %s: %w", parent.path, err)
			}
		}
	}
	return removeAllAt(parent.fd, n.old)
}

// discard removes name by first renaming it to trash (emptied first), so
// that a removal cut short never leaves a partial tree under its name.
func discard(parent storeDir, name, trash string) error {
	if !existsAt(parent.fd, name) {
		return nil
	}
	if err := removeAllAt(parent.fd, trash); err != nil {
		return err
	}
	if err := unix.Renameat(parent.fd, name, parent.fd, trash); err != nil {
		return &os.LinkError{Op: "rename", Old: parent.join(name), New: parent.join(trash), Err: err}
	}
	return removeAllAt(parent.fd, trash)
}

// Package cache is the on-disk image store of lxc-download and the rootfs
// extractor that reads from it.
//
// The store keeps one entry per image at ROOT/download/DIST/RELEASE/ARCH/VARIANT/,
// laid out exactly as LXC's shell download template lays it out, so a cache
// made by one is usable by the other: rootfs.tar.xz, the files of the image's
// meta tarball (config, fstab, expiry, templates, excludes, ...) and build_id.
// It adds what the shell template lacked: entries are built beside the old
// one and swapped in atomically, so a run killed at any instant leaves the old
// entry or the new one; the rootfs tarball's size and SHA256 are recorded in
// a hidden file inside the entry and checked on every lookup; and a lock file
// beside each entry makes concurrent runs for one image download it once.
//
// The siblings of an entry VARIANT are hidden names beside it, which no key
// component can take because components may not start with a dot:
//
//	.VARIANT.lock   the flock(2) lock file
//	.VARIANT.stage  the staging directory downloads go to (kept across runs,
//	                so an interrupted download can resume)
//	.VARIANT.tmp    a new entry being built
//	.VARIANT.new    a complete new entry about to be swapped in
//	.VARIANT.old    an old entry being removed
package cache

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Cache is an image store rooted at Root: $LXC_CACHE_PATH, or the default
// (LOCALSTATEDIR/cache/lxc for the system, $HOME/.cache/lxc for a user).
//
// Lookup, Flush, Stage and Commit change the store; a caller holds the
// entry's Lock around them, as concurrent runs otherwise race.
type Cache struct {
	Root string
	// Warn, if not nil, receives a "WARNING: ..." line when Lookup ignores a
	// damaged entry or cannot repair an interrupted update.
	Warn io.Writer
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
	p, err := c.paths(k)
	if err != nil {
		return "", err
	}
	return p.entry, nil
}

// paths are the entry of one key and its hidden siblings.
type paths struct {
	parent string // ROOT/download/DIST/RELEASE/ARCH
	entry  string
	lock   string
	stage  string
	tmp    string
	next   string
	old    string
}

func (c Cache) paths(k Key) (paths, error) {
	if err := k.Check(); err != nil {
		return paths{}, err
	}
	if c.Root == "" {
		return paths{}, errors.New("no cache root given")
	}
	parent := filepath.Join(c.Root, "download", k.Dist, k.Release, k.Arch)
	sib := func(suffix string) string { return filepath.Join(parent, "."+k.Variant+suffix) }
	return paths{
		parent: parent,
		entry:  filepath.Join(parent, k.Variant),
		lock:   sib(".lock"),
		stage:  sib(".stage"),
		tmp:    sib(".tmp"),
		next:   sib(".new"),
		old:    sib(".old"),
	}, nil
}

// Lookup returns the entry of k, or nil and no error when there is none
// usable. An entry is unusable, and a warning says why, when it lacks
// build_id (the shell template writes it last, so the entry is half-made),
// when rootfs.tar.xz is missing, or when rootfs.tar.xz does not match the
// size and SHA256 recorded when it was stored (lxc/lxc#1889). Entries made by
// the shell template have no record and are accepted as they are.
//
// Lookup first finishes or undoes an update a killed run left half done, so
// it is called with the entry's lock held.
func (c Cache) Lookup(k Key) (*Entry, error) {
	p, err := c.paths(k)
	if err != nil {
		return nil, err
	}
	if err := settle(p); err != nil {
		c.warn("cannot repair the interrupted update of the cached copy in %s: %v", p.entry, err)
	}
	fi, err := os.Stat(p.entry)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up cached image: %w", err)
	}
	if !fi.IsDir() {
		c.warn("ignoring the cached copy %s: not a directory", p.entry)
		return nil, nil
	}
	e, why, err := openEntry(p.entry)
	if err != nil {
		return nil, fmt.Errorf("look up cached image: %w", err)
	}
	if why != "" {
		c.warn("ignoring the cached copy in %s: %s", p.entry, why)
		return nil, nil
	}
	return e, nil
}

// Flush removes the entry of k, and the downloads staged for it, as
// --flush-cache asks. The entry is first renamed aside, so a run killed while
// removing it leaves no half-deleted entry behind.
func (c Cache) Flush(k Key) error {
	p, err := c.paths(k)
	if err != nil {
		return err
	}
	for _, dir := range []string{p.tmp, p.next, p.entry} {
		if err := discard(dir, p.old); err != nil {
			return fmt.Errorf("flush the cache: %w", err)
		}
	}
	if err := removeAll(p.stage); err != nil {
		return fmt.Errorf("flush the cache: %w", err)
	}
	return nil
}

// Writable reports, by creating and removing a file, whether the store can
// take new entries; when it cannot, the caller stages downloads elsewhere
// (NewTempStage).
func (c Cache) Writable() error {
	if c.Root == "" {
		return errors.New("no cache root given")
	}
	dir := filepath.Join(c.Root, "download")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cache %s is not writable: %w", c.Root, err)
	}
	f, err := os.CreateTemp(dir, ".writable-*")
	if err != nil {
		return fmt.Errorf("cache %s is not writable: %w", c.Root, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// Chown hands the whole store over to uid and gid (-1 leaves that id as it
// is), as the shell template's chown -R of the cache base does for the
// mapped ids of an unprivileged container, so the container's owner can use
// and update the cache later. Symbolic links are not followed. It goes on
// past failures and returns the first.
func (c Cache) Chown(uid, gid int) error {
	if uid < 0 && gid < 0 {
		return nil
	}
	var first error
	note := func(err error) {
		if first == nil {
			first = err
		}
	}
	err := filepath.WalkDir(c.Root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			note(fmt.Errorf("hand over cache: %w", err))
			if d == nil || path == c.Root {
				return err
			}
			return nil
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			note(fmt.Errorf("hand over cache: %w", err))
		}
		return nil
	})
	if first == nil && err != nil {
		first = fmt.Errorf("hand over cache: %w", err)
	}
	return first
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
func settle(p paths) error {
	if err := discard(p.tmp, p.old); err != nil {
		return err
	}
	if exists(p.next) {
		if exists(p.entry) {
			if err := discard(p.next, p.old); err != nil {
				return err
			}
		} else {
			if err := os.Rename(p.next, p.entry); err != nil {
				return err
			}
			if err := syncDir(p.parent); err != nil {
				return err
			}
		}
	}
	return removeAll(p.old)
}

// discard removes dir by first renaming it to trash (emptied first), so that
// a removal cut short never leaves a partial tree under dir's name.
func discard(dir, trash string) error {
	if !exists(dir) {
		return nil
	}
	if err := removeAll(trash); err != nil {
		return err
	}
	if err := os.Rename(dir, trash); err != nil {
		return err
	}
	return removeAll(trash)
}

// removeAll is os.RemoveAll that does nothing where there is nothing: on a
// read-only filesystem, removing a missing path fails with EROFS.
func removeAll(path string) error {
	if !exists(path) {
		return nil
	}
	return os.RemoveAll(path)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// syncDir makes the renames and creations in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	// Some filesystems cannot sync a directory; their renames are as
	// durable as they get.
	if err := f.Sync(); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTSUP) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

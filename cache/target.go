package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Names of the private directories runs make beside or inside a target;
// CleanStaleStages knows them by these prefixes.
const (
	// rootfsStagePrefix names a RootfsStage.
	rootfsStagePrefix = ".lxc-download-stage-"
	// tempStagePrefix names a temporary download stage (NewTempStage).
	tempStagePrefix = ".lxc-download-tmp-"
)

// ErrTargetNotEmpty is the error of a target rootfs that holds something
// other than lost+found: a run never merges into what is there.
var ErrTargetNotEmpty = errors.New("the rootfs is not empty")

// CheckEmptyTarget makes sure the rootfs directory target is empty, except
// for a lost+found directory (a filesystem's root, as with lxc-create's
// lvm, zfs or btrfs backing stores). Otherwise it returns an error naming
// target and the first entry found, which errors.Is finds
// ErrTargetNotEmpty in, and touches nothing. Call CleanStaleStages first:
// stages that killed runs left inside the target count as entries.
func CheckEmptyTarget(target string) error {
	f, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("rootfs %s is not a directory", target)
	}
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if n == "lost+found" && kindAt(int(f.Fd()), n) == "a directory" {
				continue
			}
			return fmt.Errorf("rootfs %s is not empty: it holds %q; empty it first (a run never merges into what is there): %w", target, n, ErrTargetNotEmpty)
		}
		if err == io.EOF || len(names) == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
}

// EmptyTarget removes everything inside the rootfs directory target except
// a lost+found directory, without following symbolic links and making
// read-only directories writable on the way: it undoes an Install whose run
// failed afterwards. target itself stays (lxc-create made it).
func EmptyTarget(target string) error {
	f, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("empty rootfs: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("empty rootfs: %s: %w", target, err)
	}
	dfd := int(f.Fd())
	var first error
	for _, n := range names {
		if n == "lost+found" && kindAt(dfd, n) == "a directory" {
			continue
		}
		if err := removeAllAt(dfd, n); err != nil && first == nil {
			first = fmt.Errorf("empty rootfs: %s: %w", filepath.Join(target, n), err)
		}
	}
	return first
}

// CleanStaleStages removes the staging directories that killed runs left
// beside the rootfs directory target and inside it (and the temporary
// download stages beside it). They are known by a fixed name prefix, and
// removed only when they are directories (never through a symbolic link)
// owned by the running user that no live run holds (each run holds a
// flock(2) on its stage); read-only directories inside them are made
// writable first.
func CleanStaleStages(target string) error {
	target = filepath.Clean(target)
	if err := cleanStaleIn(filepath.Dir(target), rootfsStagePrefix, tempStagePrefix); err != nil {
		return err
	}
	return cleanStaleIn(target, rootfsStagePrefix)
}

// cleanStaleIn removes the stale stages named with one of prefixes in dir
// (a missing dir has none).
func cleanStaleIn(dir string, prefixes ...string) error {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look for stale stages: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("look for stale stages: %s: %w", dir, err)
	}
	dfd := int(f.Fd())
	for _, name := range names {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		if err := removeStale(dfd, name); err != nil {
			return fmt.Errorf("remove stale stage %s: %w", filepath.Join(dir, name), err)
		}
	}
	return nil
}

// removeStale removes the stage dfd/name unless it is not the running
// user's directory or a live run holds it.
func removeStale(dfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil // gone
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != uint32(os.Geteuid()) {
		return nil // not one of ours
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		if err = makeUsable(dfd, name); err == nil {
			fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err == unix.EWOULDBLOCK {
		return nil // a live run's
	}
	return removeAllAt(dfd, name)
}

// makePrivateDir makes a new directory named prefix+random in parent, mode
// 0700, and returns it with a flock(2) held on it for as long as the
// returned file is open: CleanStaleStages leaves it alone until then.
func makePrivateDir(parent, prefix string) (string, *os.File, error) {
	dir, err := os.MkdirTemp(parent, prefix+"*")
	if err != nil {
		return "", nil, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return "", nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	// A umask could have taken the owner's bits.
	if err := unix.Fchmod(fd, 0o700); err != nil {
		unix.Close(fd)
		os.Remove(dir)
		return "", nil, &os.PathError{Op: "chmod", Path: dir, Err: err}
	}
	// Where flock is not supported, the stage is not protected from a
	// concurrent run's cleaning; that is all.
	unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	return dir, os.NewFile(uintptr(fd), dir), nil
}

// openPrivateDir opens dir, which must be a directory of the running user
// that nobody else can enter, without following a symbolic link at it.
func openPrivateDir(dir string) (storeDir, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return storeDir{fd: -1}, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	d := storeDir{fd: fd, path: dir}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.close()
		return storeDir{fd: -1}, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if st.Uid != uint32(os.Geteuid()) || st.Mode&0o077 != 0 {
		d.close()
		return storeDir{fd: -1}, &UntrustedError{Path: dir, Reason: fmt.Sprintf("is not private to this user (owner %d, mode %04o)", st.Uid, st.Mode&0o7777)}
	}
	return d, nil
}

// RootfsStage is a private directory a rootfs is unpacked into, so that no
// unverified byte is ever reachable at the target: made fresh by
// NewRootfsStage (mode 0700, owned by the running user, on the target's
// filesystem), filled by Unpack or UnpackReader, completed by the caller
// (templates, dev/pts) in Dir, and put in place by Install once everything
// is verified; Discard removes it on failure.
//
// Where the target is a plain empty directory, the stage is beside it
// (same parent directory) and Install replaces the target with it in one
// rename. Where the target is a mount point or another filesystem's root
// (lxc-create's lvm, zfs and btrfs backing stores) or holds lost+found, the
// stage is a hidden directory inside it, and Install moves its entries in.
type RootfsStage struct {
	// Dir is the stage directory. Unpack into it only through the
	// stage's Unpack and UnpackReader: they keep the archive's root
	// entry, whose mode would make the stage reachable, for Install.
	Dir string

	target string
	inside bool
	lock   *os.File // Dir, held open with a flock
	root   rootEntry
	opts   UnpackOptions // of the unpack, for the root entry's owner rules
	done   bool
	// filled says an unpack or a clone filled the stage completely.
	filled bool
}

// rootEntry is the archive's root entry "./", kept rather than applied
// while a RootfsStage is filled.
type rootEntry struct {
	set   bool
	attrs dirAttrs
	// warned are the warnings the unpack gave, which Install, applying
	// the entry, does not give again.
	warned map[string]bool
}

// NewRootfsStage removes stale stages (CleanStaleStages), checks that the
// rootfs directory target is empty (CheckEmptyTarget), and makes a new
// stage for it.
func NewRootfsStage(target string) (*RootfsStage, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	// The target's own path, so that the stage is beside the directory,
	// not beside a symbolic link to it.
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	if err := CleanStaleStages(real); err != nil {
		return nil, err
	}
	if err := CheckEmptyTarget(real); err != nil {
		return nil, err
	}
	inside, err := needsInsideStage(real)
	if err != nil {
		return nil, err
	}
	where := filepath.Dir(real)
	if inside {
		where = real
	}
	dir, lock, err := makePrivateDir(where, rootfsStagePrefix)
	if err != nil && !inside && readOnly(err) {
		// A standalone rootfs in a directory this user may not write
		// to: the target itself is theirs.
		inside = true
		dir, lock, err = makePrivateDir(real, rootfsStagePrefix)
	}
	if err != nil {
		return nil, fmt.Errorf("create rootfs stage: %w", spaceHint(err))
	}
	s := &RootfsStage{Dir: dir, target: real, inside: inside, lock: lock}
	if !inside {
		// What the checks above cannot see (a bind mount on an old
		// kernel, an overlayfs): move the empty stage into the target
		// and back.
		base := filepath.Base(dir)
		err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, filepath.Join(real, base), unix.RENAME_NOREPLACE)
		if err == nil {
			err = unix.Renameat2(unix.AT_FDCWD, filepath.Join(real, base), unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE)
			if err != nil {
				s.Dir = filepath.Join(real, base)
				s.Discard()
				return nil, fmt.Errorf("create rootfs stage: %w", err)
			}
		} else if err == unix.EXDEV || err == unix.EBUSY {
			s.Discard()
			if dir, lock, err = makePrivateDir(real, rootfsStagePrefix); err != nil {
				return nil, fmt.Errorf("create rootfs stage: %w", spaceHint(err))
			}
			s = &RootfsStage{Dir: dir, target: real, inside: true, lock: lock}
		}
	}
	return s, nil
}

// needsInsideStage reports whether target cannot be replaced by a rename:
// it is a mount point, on another filesystem than its parent (a btrfs
// subvolume), or holds lost+found.
func needsInsideStage(target string) (bool, error) {
	var t, p unix.Statx_t
	mask := unix.STATX_BASIC_STATS | unix.STATX_MNT_ID
	if err := unix.Statx(unix.AT_FDCWD, target, unix.AT_SYMLINK_NOFOLLOW, mask, &t); err != nil {
		return false, fmt.Errorf("rootfs: %w", &os.PathError{Op: "statx", Path: target, Err: err})
	}
	if err := unix.Statx(unix.AT_FDCWD, filepath.Dir(target), 0, mask, &p); err != nil {
		return false, fmt.Errorf("rootfs: %w", &os.PathError{Op: "statx", Path: filepath.Dir(target), Err: err})
	}
	switch {
	case t.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && t.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0:
		return true, nil
	case t.Dev_major != p.Dev_major || t.Dev_minor != p.Dev_minor:
		return true, nil
	case t.Mask&p.Mask&unix.STATX_MNT_ID != 0 && t.Mnt_id != p.Mnt_id:
		return true, nil
	}
	var st unix.Stat_t
	return unix.Lstat(filepath.Join(target, "lost+found"), &st) == nil, nil
}

// Inside reports whether the stage is inside the target (which is then
// filled by moving entries in) rather than beside it.
func (s *RootfsStage) Inside() bool { return s.inside }

// Unpack unpacks archive into the stage, as the package's Unpack does
// (decoding blocks in parallel at random), keeping the archive's root
// entry for Install. It does not verify archive: use it for a file the
// caller has verified whole; a cached rootfs goes through
// Entry.OpenRootfs and UnpackReader, which verify as they read.
func (s *RootfsStage) Unpack(ctx context.Context, archive *os.File, o UnpackOptions) error {
	o = s.prepare(o)
	if err := Unpack(ctx, archive, s.Dir, o); err != nil {
		return err
	}
	s.filled = true
	return nil
}

// UnpackReader unpacks the xz tarball read from r into the stage, as the
// package's UnpackReader does, keeping the archive's root entry for
// Install. It then reads r to its end, so that a reader that verifies at
// the end, such as Entry.OpenRootfs's, has said its verdict when it
// returns.
func (s *RootfsStage) UnpackReader(ctx context.Context, r io.Reader, o UnpackOptions) error {
	o = s.prepare(o)
	if err := UnpackReader(ctx, r, s.Dir, o); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("unpack rootfs: %w", err)
	}
	s.filled = true
	return nil
}

func (s *RootfsStage) prepare(o UnpackOptions) UnpackOptions {
	s.root = rootEntry{warned: map[string]bool{}}
	o.rootEntry = &s.root
	s.opts = o
	return o
}

// Install puts the stage's tree at the target, once the caller has
// verified everything in it; the stage is gone then. The target gets the
// owner, mode, times and extended attributes of the archive's root entry
// ("./"), or, without one, keeps its own. Beside the target, the stage
// replaces it with one rename; inside it, the stage's entries are moved in
// one by one (a lost+found of the image gives way to the target's own) and
// on failure moved back. A target that is no longer empty is an error
// (ErrTargetNotEmpty); the caller Discards the stage then.
func (s *RootfsStage) Install() error {
	if s.done {
		return errors.New("install rootfs: the stage is already installed or discarded")
	}
	if s.inside {
		return s.installInside()
	}
	if err := s.applyRoot(int(s.lock.Fd()), true); err != nil {
		return fmt.Errorf("install rootfs: %s: %w", s.target, err)
	}
	if err := unix.Rename(s.Dir, s.target); err != nil {
		if err == unix.ENOTEMPTY || err == unix.EEXIST {
			return fmt.Errorf("install rootfs: %s is no longer empty: %w", s.target, ErrTargetNotEmpty)
		}
		return fmt.Errorf("install rootfs: %w", &os.LinkError{Op: "rename", Old: s.Dir, New: s.target, Err: err})
	}
	s.finish()
	if pfd, err := openDirPath(filepath.Dir(s.target)); err == nil {
		syncDirFd(pfd)
		unix.Close(pfd)
	}
	return nil
}

func (s *RootfsStage) installInside() error {
	tfd, err := unix.Open(s.target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("install rootfs: %w", &os.PathError{Op: "open", Path: s.target, Err: err})
	}
	defer unix.Close(tfd)
	sfd := int(s.lock.Fd())
	rfd, err := unix.Openat(sfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("install rootfs: %w", &os.PathError{Op: "open", Path: s.Dir, Err: err})
	}
	rd := os.NewFile(uintptr(rfd), s.Dir)
	names, err := rd.Readdirnames(-1)
	rd.Close()
	if err != nil {
		return fmt.Errorf("install rootfs: %s: %w", s.Dir, err)
	}
	var moved []string
	undo := func() {
		for _, n := range moved {
			unix.Renameat2(tfd, n, sfd, n, unix.RENAME_NOREPLACE)
		}
	}
	for _, n := range names {
		err := unix.Renameat2(sfd, n, tfd, n, unix.RENAME_NOREPLACE)
		if err == unix.EEXIST && n == "lost+found" {
			// The filesystem's own is kept; the image's is never more
			// than an empty directory.
			if err = removeAllAt(sfd, n); err == nil {
				continue
			}
		}
		if err != nil {
			undo()
			if err == unix.EEXIST {
				return fmt.Errorf("install rootfs: %s is no longer empty (it holds %q): %w", s.target, n, ErrTargetNotEmpty)
			}
			return fmt.Errorf("install rootfs: %w", &os.LinkError{Op: "rename", Old: filepath.Join(s.Dir, n), New: filepath.Join(s.target, n), Err: err})
		}
		moved = append(moved, n)
	}
	if err := s.applyRoot(tfd, false); err != nil {
		undo()
		return fmt.Errorf("install rootfs: %s: %w", s.target, err)
	}
	s.finish()
	unix.Unlinkat(tfd, filepath.Base(s.Dir), unix.AT_REMOVEDIR)
	syncDirFd(tfd)
	return nil
}

// applyRoot gives the directory fd the root entry's attributes; without
// one, a stage that replaces the target (replacing) takes the target's
// owner, mode and times.
func (s *RootfsStage) applyRoot(fd int, replacing bool) error {
	e := &extractor{o: s.opts, euid: os.Geteuid(), egid: os.Getegid(), warned: s.root.warned}
	if e.warned == nil {
		e.warned = map[string]bool{}
	}
	d := s.root.attrs
	if !s.root.set {
		if !replacing {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Stat(s.target, &st); err != nil {
			return err
		}
		d = dirAttrs{rel: ".", mode: st.Mode & 0o7777, uid: int(st.Uid), gid: int(st.Gid),
			times: [2]unix.Timespec{st.Atim, st.Mtim}}
	}
	return e.applyDirAttrs(fd, d)
}

// finish marks the stage done and releases its lock.
func (s *RootfsStage) finish() {
	s.done = true
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// Discard removes the stage and everything in it (read-only directories
// included). It is harmless after Install.
func (s *RootfsStage) Discard() error {
	if s.done && s.lock == nil {
		return nil
	}
	s.done = true
	defer func() {
		if s.lock != nil {
			s.lock.Close()
			s.lock = nil
		}
	}()
	pfd, err := openDirPath(filepath.Dir(s.Dir))
	if err != nil {
		return fmt.Errorf("remove rootfs stage: %w", err)
	}
	defer unix.Close(pfd)
	if err := removeAllAt(pfd, filepath.Base(s.Dir)); err != nil {
		return fmt.Errorf("remove rootfs stage %s: %w", s.Dir, err)
	}
	return nil
}

// MaxContainerConfigSize is the largest LXC_PATH/config ReadContainerConfig
// reads; lxc-create writes a few hundred bytes.
const MaxContainerConfigSize = 1 << 20

// ReadContainerConfig reads LXC_PATH/config in the container directory dir:
// nil when there is none. A config that is a symbolic link (which could
// lead to a host secret that would then be copied and handed to the
// container's owner), or anything but a regular file, is refused, as is
// one over MaxContainerConfigSize.
func ReadContainerConfig(dir string) ([]byte, error) {
	path := filepath.Join(dir, "config")
	dfd, err := openDirPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read container config: %w", err)
	}
	defer unix.Close(dfd)
	b, _, err := readAllAt(dfd, "config", MaxContainerConfigSize)
	switch {
	case err == unix.ENOENT:
		return nil, nil
	case err == unix.ELOOP || err == errNotRegular:
		return nil, fmt.Errorf("read container config: %s is %s, not a regular file; refusing to use it", path, kindAt(dfd, "config"))
	case err != nil:
		return nil, fmt.Errorf("read container config: %w", &os.PathError{Op: "read", Path: path, Err: err})
	case len(b) > MaxContainerConfigSize:
		return nil, fmt.Errorf("read container config: %s is larger than %d bytes", path, MaxContainerConfigSize)
	}
	return b, nil
}

// WriteContainerFile replaces the file name in the container directory dir
// with data, through a temporary file and a rename, so an interrupted run
// leaves the old file or the new one, never half of it. An existing file
// must be a regular file (a symbolic link is refused, never followed), and
// its mode and owner are kept; a new one gets mode. uid and gid, when not
// -1, then give it to another owner (the container's mapped ids), as the
// shell template's chown did: failing to is not an error.
func WriteContainerFile(dir, name string, data []byte, mode os.FileMode, uid, gid int) error {
	path := filepath.Join(dir, name)
	if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return fmt.Errorf("write %s: not a file name", path)
	}
	dfd, err := openDirPath(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer unix.Close(dfd)
	perm := uint32(mode.Perm())
	owner, group := -1, -1
	var st unix.Stat_t
	err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("write %s: it is %s, not a regular file; refusing to replace it", path, kindOf(st.Mode))
	case err == nil:
		perm = st.Mode & 0o777
		owner, group = int(st.Uid), int(st.Gid)
	case err != unix.ENOENT:
		return fmt.Errorf("write %s: %w", path, err)
	}
	if uid >= 0 {
		owner = uid
	}
	if gid >= 0 {
		group = gid
	}
	tmp := "." + name + ".tmp-" + randomSuffix()
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, &os.PathError{Op: "create", Path: filepath.Join(dir, tmp), Err: err})
	}
	f := os.NewFile(uintptr(fd), tmp)
	err = func() error {
		if _, err := f.Write(data); err != nil {
			return err
		}
		if err := unix.Fchmod(fd, perm); err != nil {
			return err
		}
		if owner >= 0 || group >= 0 {
			_ = unix.Fchown(fd, owner, group)
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if err = unix.Renameat(dfd, tmp, dfd, name); err == nil {
			syncDirFd(dfd)
			return nil
		}
	}
	unix.Unlinkat(dfd, tmp, 0)
	return fmt.Errorf("write %s: %w", path, spaceHint(err))
}

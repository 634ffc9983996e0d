package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The store and the staging directories are walked one component at a
// time with openat(2) and O_NOFOLLOW, so no symbolic link is ever followed
// inside them, on every kernel (openat2's RESOLVE_NO_SYMLINKS would do the
// same in one call, from Linux 5.6 on only); every change is made relative
// to a directory handle opened that way (mkdirat, renameat, unlinkat,
// fchownat with AT_SYMLINK_NOFOLLOW).

// ErrUntrusted is the error of a store that a run must neither use nor
// write: a component of it, from its root down, is owned by another user
// or writable by group or others, or is a symbolic link. Errors.Is finds it
// in the *UntrustedError every method returns then; the caller warns once
// and downloads to a private temporary place instead (NewTempStage).
var ErrUntrusted = errors.New("the cache is not trusted")

// UntrustedError says which path of the store failed the trust check, and
// why.
type UntrustedError struct {
	Path   string
	Reason string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("the cache is not trusted: %s %s", e.Path, e.Reason)
}

// Is makes errors.Is(err, ErrUntrusted) true.
func (e *UntrustedError) Is(target error) bool { return target == ErrUntrusted }

// trust is who may own the store: the running user, root, and the owners
// the caller names (Cache.Owners).
type trust struct {
	owners []int
}

func (c Cache) trust() trust {
	return trust{owners: append([]int{os.Geteuid(), 0}, c.Owners...)}
}

func (t trust) owner(uid uint32) bool {
	for _, o := range t.owners {
		if o >= 0 && uint32(o) == uid {
			return true
		}
	}
	return false
}

// check is sshd's StrictModes test of one component: owned by a trusted
// user and not writable by group or others.
func (t trust) check(st *unix.Stat_t, path string) error {
	if !t.owner(st.Uid) {
		return &UntrustedError{Path: path, Reason: fmt.Sprintf("is owned by uid %d, not by root or this user (uid %d)", st.Uid, os.Geteuid())}
	}
	if st.Mode&0o022 != 0 {
		who := "group and others"
		switch st.Mode & 0o022 {
		case 0o020:
			who = "its group"
		case 0o002:
			who = "others"
		}
		return &UntrustedError{Path: path, Reason: fmt.Sprintf("is writable by %s (mode %04o)", who, st.Mode&0o7777)}
	}
	return nil
}

// openDirPath opens path, a directory given by the user (symbolic links
// in it are theirs to make), as an O_PATH handle.
func openDirPath(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// openDirAt opens the directory name in dirfd as an O_PATH handle,
// without following a symbolic link there. A symbolic link or other
// non-directory gives ENOTDIR.
func openDirAt(dirfd int, name string) (int, error) {
	return unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// openFileAt opens the regular file name in dirfd for reading, without
// following a symbolic link and without blocking on a fifo, and checks it
// is a regular file.
func openFileAt(dirfd int, name string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, st, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, st, errNotRegular
	}
	// Reads of a regular file never block; clearing O_NONBLOCK keeps
	// the os.File on plain blocking reads.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, st, err
	}
	return os.NewFile(uintptr(fd), name), st, nil
}

// errNotRegular is openFileAt's error for what is not a regular file.
var errNotRegular = errors.New("not a regular file")

// kindAt names what dirfd/name is, for messages: "a symbolic link", "a
// directory"...
func kindAt(dirfd int, name string) string {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return "unreadable"
	}
	return kindOf(st.Mode)
}

func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a fifo"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return "of an unknown type"
}

// readAllAt reads the regular file name in dirfd, at most limit bytes
// (limit+1 when it is larger, so the caller sees it is too large).
func readAllAt(dirfd int, name string, limit int64) ([]byte, unix.Stat_t, error) {
	f, st, err := openFileAt(dirfd, name)
	if err != nil {
		return nil, st, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	return b, st, err
}

// existsAt reports whether dirfd/name exists (as anything, a dangling
// symbolic link included).
func existsAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// removeAllAt removes dirfd/name and everything below it without
// following a symbolic link. Directories that the running user owns but
// may not write or search (an image's read-only directories, unpacked as
// non-root) are made writable first. A missing name is no error, even on a
// read-only filesystem.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	switch err {
	case nil, unix.ENOENT:
		return nil
	case unix.EISDIR, unix.EPERM:
		// A directory (unlink(2) says EISDIR on Linux, EPERM by POSIX).
	case unix.EROFS:
		if !existsAt(dirfd, name) {
			return nil
		}
		return err
	default:
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		if err = makeUsable(dirfd, name); err == nil {
			fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	switch err {
	case nil:
	case unix.ENOENT:
		return nil
	case unix.ENOTDIR, unix.ELOOP:
		// Not a directory after all (it was replaced): one more unlink.
		return unix.Unlinkat(dirfd, name, 0)
	default:
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&0o700 != 0o700 && st.Uid == uint32(os.Geteuid()) {
		if err := unix.Fchmod(fd, (st.Mode&0o7777)|0o700); err != nil {
			return err
		}
	}
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if rerr := removeAllAt(fd, n); rerr != nil {
				return fmt.Errorf("%s/%s: %w", name, n, rerr)
			}
		}
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			return err
		}
		// Removing entries while reading the directory may skip some:
		// read it again from the start until it is empty.
		if _, err := d.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// makeUsable gives the running user read, write and search permission on
// the directory dirfd/name that it owns, without following a symbolic
// link there.
func makeUsable(dirfd int, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Uid != uint32(os.Geteuid()) {
		return unix.EACCES
	}
	return chmodHandle(fd, (st.Mode&0o7777)|0o700)
}

// chmodHandle changes the mode of what the O_PATH handle fd refers to:
// fchmodat2(2) with AT_EMPTY_PATH (Linux 6.6), else the handle's magic
// link in /proc, which names that very inode.
func chmodHandle(fd int, mode uint32) error {
	err := unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if err == nil || (err != unix.ENOSYS && err != unix.EOPNOTSUPP && err != unix.EINVAL && err != unix.ENOENT) {
		return err
	}
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}

// syncFd makes the renames and creations in the directory fd durable. An
// O_PATH handle cannot be synced, so the directory is opened again through
// it.
func syncDirFd(fd int) error {
	d, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(d)
	// Some filesystems cannot sync a directory; their renames are as
	// durable as they get.
	if err := unix.Fsync(d); err != nil && err != unix.EINVAL && err != unix.ENOTSUP {
		return err
	}
	return nil
}

// writeFileAt creates dirfd/name (which must not exist) with data, mode
// perm, and syncs it.
func writeFileAt(dirfd int, name string, data []byte, perm uint32) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return f.Close()
}

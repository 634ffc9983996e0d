package cache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/compat"
)

// MaxTemplateSize is the largest file that ApplyTemplates and
// RewriteInRootfs rewrite, before and after: a file of an image's
// templates list is a small configuration file (/etc/hostname,
// /etc/hosts...). A larger one, or one that would grow larger, is left as
// it is, with a warning: a hostile image cannot make the run read gigabytes
// (a sparse file) or write them, and a legitimate image loses no more than
// the substitution in a file that cannot be a configuration file.
const MaxTemplateSize = 16 << 20

// A Rewrite copies a file's content from r to w, changed. It reads r to
// its end.
type Rewrite func(w io.Writer, r io.Reader) error

// RewriteBytes makes a Rewrite of fn, which changes a whole content held
// in memory (such as compat.FixMingetty); RewriteInRootfs bounds that
// content by MaxTemplateSize.
func RewriteBytes(fn func([]byte) []byte) Rewrite {
	return func(w io.Writer, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		_, err = w.Write(fn(b))
		return err
	}
}

// ApplyTemplates substitutes vars (LXC_NAME, LXC_PATH, ...) into each
// file of the image's templates list, as RewriteInRootfs does, streaming:
// the memory used does not grow with the file.
func ApplyTemplates(rootfs string, templates []string, vars compat.Vars, warn io.Writer) error {
	for _, t := range templates {
		if err := RewriteInRootfs(rootfs, t, vars.SubstituteStream, warn); err != nil {
			return fmt.Errorf("apply template %s: %w", t, err)
		}
	}
	return nil
}

// RewriteInRootfs applies fn to the file rel inside rootfs, if it exists.
// The path is resolved inside the rootfs as if it were the root directory
// (a symbolic link on the way to /etc/shadow stays inside it), and the file
// itself must be a regular file: a symbolic link, device node, fifo or
// socket there is never opened (opening a device of the image would act on
// the host's device), but skipped with a warning to warn, as is a file over
// MaxTemplateSize. The result goes to a temporary file first and is
// written back in place only when it differs, so the file's owner, mode,
// extended attributes and hard links stay as unpacked.
func RewriteInRootfs(rootfs, rel string, fn Rewrite, warn io.Writer) error {
	return rewriteInRootfs(rootfs, rel, MaxTemplateSize, fn, warn)
}

// errTooLarge stops a rewrite whose result goes over the limit.
var errTooLarge = errors.New("the result is too large")

func rewriteInRootfs(rootfs, rel string, limit int64, fn Rewrite, warn io.Writer) error {
	say := func(format string, args ...any) {
		if warn != nil {
			fmt.Fprintf(warn, "WARNING: "+format+"\n", args...)
		}
	}
	clean := filepath.Clean("/" + rel)
	if clean == "/" {
		say("%q names the rootfs itself, not a file; it is left alone", rel)
		return nil
	}
	dir, base := filepath.Split(clean[1:])
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer root.Close()
	parent := root
	if dir != "" {
		parent, err = pathrs.OpenatInRoot(root, dir)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		if err != nil {
			return err
		}
		defer parent.Close()
	}
	hfd, err := unix.Openat(int(parent.Fd()), base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil // as with the shell template's sed on a missing file
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: clean, Err: err}
	}
	handle := os.NewFile(uintptr(hfd), clean)
	defer handle.Close()
	var st unix.Stat_t
	if err := unix.Fstat(hfd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: clean, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		say("the image's template %s is %s, not a regular file; it is left alone", clean, kindOf(st.Mode))
		return nil
	}
	if st.Size > limit {
		say("the image's template %s is %d bytes, more than the %d substituted in; it is left alone", clean, st.Size, limit)
		return nil
	}
	// Opened again through the very inode checked, not by name.
	f, err := pathrs.Reopen(handle, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open %s: %w", clean, err)
	}
	defer f.Close()

	tmp, err := tempFileBeside(int(parent.Fd()))
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", clean, err)
	}
	defer tmp.Close()
	inHash, outHash := sha256.New(), sha256.New()
	in := io.TeeReader(io.LimitReader(f, st.Size), inHash)
	out := &limitWriter{w: io.MultiWriter(tmp, outHash), left: limit}
	err = fn(out, in)
	if err == nil {
		_, err = io.Copy(inHash, in) // what fn left unread
	}
	if errors.Is(err, errTooLarge) {
		say("the image's template %s would grow beyond %d bytes; it is left alone", clean, limit)
		return nil
	}
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", clean, err)
	}
	size := limit - out.left
	if size == st.Size && bytes.Equal(inHash.Sum(nil), outHash.Sum(nil)) {
		return nil // unchanged: not written, so its times stay
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewrite %s: %w", clean, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewrite %s: %w", clean, err)
	}
	if _, err := io.Copy(f, tmp); err != nil {
		return fmt.Errorf("rewrite %s: %w", clean, spaceHint(err))
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("rewrite %s: %w", clean, err)
	}
	return f.Close()
}

// tempFileBeside makes an unnamed temporary file on the filesystem of the
// directory dirfd (O_TMPFILE), so a rewrite takes disk, not memory; where
// that is not possible, a memfd, which MaxTemplateSize bounds.
func tempFileBeside(dirfd int) (*os.File, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), "template-rewrite"), nil
	}
	fd, err = unix.MemfdCreate("lxc-download-template", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "template-rewrite"), nil
}

// limitWriter fails with errTooLarge once more than left bytes are
// written.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errTooLarge
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

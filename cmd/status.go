package cmd

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/cache/xzpar"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// Exit statuses of a run that failed, by what went wrong, so that scripts
// can tell a typo from a dead server from an attack. lxc-create only asks
// for zero or not; 1 stays the status of bad arguments and of everything
// not named here, as in the shell template.
const (
	// ExitFailure: bad arguments, or a failure of no class below.
	ExitFailure = 1
	// ExitNotInIndex: no image in the index has the distribution,
	// release, architecture and variant asked for.
	ExitNotInIndex = 2
	// ExitRemoved: the index names the image (or the build asked for),
	// but the server no longer has its files.
	ExitRemoved = 3
	// ExitUnreachable: the server could not be reached (DNS, connect,
	// TLS: the message says which), or answered with what cannot be used.
	ExitUnreachable = 4
	// ExitVerification: a signature or checksum did not verify, or what
	// was offered was older than allowed: nothing of it was used.
	ExitVerification = 5
	// ExitLocal: a problem of this host: disk space, permissions, a
	// rootfs that is not empty, memory for decoding.
	ExitLocal = 6
)

// exitStatus is the exit status for err, which a run returned.
func exitStatus(err error) int {
	var removed *imageRemovedError
	var gone *buildGoneError
	var budget *xzpar.LimitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return ExitFailure
	case errors.As(err, &removed), errors.As(err, &gone):
		return ExitRemoved
	case errors.Is(err, compat.ErrNoImage):
		return ExitNotInIndex
	case errors.Is(err, cache.ErrMismatch), errors.Is(err, errUnverified), errors.Is(err, cache.ErrDowngrade):
		return ExitVerification
	case errors.Is(err, cache.ErrTargetNotEmpty), errors.As(err, &budget), errors.Is(err, cache.ErrLockTimeout):
		return ExitLocal
	}
	switch fetch.Classify(err) {
	case fetch.ClassNotFound:
		return ExitRemoved
	case fetch.ClassUnreachable, fetch.ClassServer:
		return ExitUnreachable
	case fetch.ClassVerification:
		return ExitVerification
	case fetch.ClassLocal:
		return ExitLocal
	}
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.EROFS) ||
		errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.ENOTDIR) {
		return ExitLocal
	}
	return ExitFailure
}

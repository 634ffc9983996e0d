package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"syscall"
)

// Class is what kind of failure an error of this package is, for a
// caller that chooses an exit status, a message or a fallback by it (see
// Classify). The texts of the errors do not change with their class.
type Class int

const (
	// ClassOther is none of the classes below: no error, a run stopped
	// by its caller (context cancelled), an invalid option.
	ClassOther Class = iota
	// ClassUnreachable is a server that could not be reached or did not
	// serve: Kind says how (DNS, connect, TLS, transfer, HTTP 5xx, a
	// file:// tree that is not there). Unlike IsUnreachable, it includes
	// certificates that do not verify (KindTLS): the server is unusable,
	// but no cached copy should quietly stand in for it.
	ClassUnreachable
	// ClassNotFound is a file the server does not have: a 404 or 410
	// answer (a *StatusError), or a missing file of a file:// tree. Where
	// the index named the image, the error is a *RemovedError: the image
	// was removed from the server.
	ClassNotFound
	// ClassVerification is a file that did not prove genuine: a signature
	// that does not verify or is missing (ErrInvalidSignature), a
	// checksum that does not match (ErrChecksum), an index or streams
	// signed too long ago (*StaleIndexError).
	ClassVerification
	// ClassLocal is a problem of this host: a full disk or the reserve
	// kept free (*DiskReserveError, ENOSPC, EDQUOT), permissions (EACCES,
	// EPERM), a read-only filesystem, a file:// tree that cannot be read,
	// a network setting that cannot work (-4 with an IPv6 server address).
	ClassLocal
	// ClassServer is a server that was reached but answered with what
	// cannot be used: an HTTP error other than 404, 410 and 5xx, a file
	// larger than its limit (*SizeLimitError), a redirect that is not
	// followed, an index or streams file that does not parse, an entry
	// of a file:// tree that leads out of it or is not a regular file.
	ClassServer
)

// String names the class in a few words, for messages and logs.
func (c Class) String() string {
	switch c {
	case ClassUnreachable:
		return "server unreachable"
	case ClassNotFound:
		return "not found on the server"
	case ClassVerification:
		return "verification failed"
	case ClassLocal:
		return "local problem"
	case ClassServer:
		return "unusable answer from the server"
	}
	return "other"
}

// Kind is how a server was unreachable (ClassUnreachable).
type Kind int

const (
	// KindNone is the kind of an error that is not ClassUnreachable.
	KindNone Kind = iota
	// KindDNS is a host name that could not be resolved.
	KindDNS
	// KindConnect is a host none of whose addresses took a connection.
	KindConnect
	// KindTLS is a TLS handshake that failed: a certificate that does
	// not verify, a protocol error, a handshake that timed out.
	KindTLS
	// KindTransfer is a connection that was made, then dropped or
	// stalled (no data for Options.IdleTimeout) on every attempt.
	KindTransfer
	// KindHTTP is a server that answered with an error (5xx) on every
	// attempt.
	KindHTTP
	// KindTree is a file:// server whose directory cannot be opened (a
	// USB stick that is not mounted).
	KindTree
)

// String names the kind as messages do: "DNS", "connect", "TLS"...
func (k Kind) String() string {
	switch k {
	case KindDNS:
		return "DNS"
	case KindConnect:
		return "connect"
	case KindTLS:
		return "TLS"
	case KindTransfer:
		return "transfer"
	case KindHTTP:
		return "HTTP"
	case KindTree:
		return "file tree"
	}
	return "none"
}

// Classify says what class of failure err is. An error of this package
// that wraps another is classed by the outermost error that has a class
// of its own (a missing signature that the server answered with a 404 is
// ClassVerification, not ClassNotFound); other errors by what they wrap
// (net, TLS and system errors). Errors wrapped by callers with %w keep
// their class.
func Classify(err error) Class {
	c, _ := classify(err)
	return c
}

// KindOf says how a server was unreachable: KindNone unless Classify(err)
// is ClassUnreachable.
func KindOf(err error) Kind {
	_, k := classify(err)
	return k
}

// IsNotFound reports a file the server does not have (ClassNotFound): a
// 404 or 410 answer, a missing file of a file:// tree, a *RemovedError.
func IsNotFound(err error) bool { return Classify(err) == ClassNotFound }

// classed is an error that knows its class.
type classed interface {
	error
	class() (Class, Kind)
}

func classify(err error) (Class, Kind) {
	if err == nil {
		return ClassOther, KindNone
	}
	var c classed
	if errors.As(err, &c) {
		return c.class()
	}
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		unkAuth x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		opErr   *net.OpError
		pathErr *fs.PathError
		linkErr *os.LinkError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return ClassOther, KindNone
	case errors.Is(err, ErrInvalidSignature), errors.Is(err, ErrChecksum):
		return ClassVerification, KindNone
	case errors.As(err, &dnsErr):
		return ClassUnreachable, KindDNS
	case errors.As(err, &certErr), errors.As(err, &unkAuth), errors.As(err, &hostErr),
		errors.As(err, &invErr), errors.As(err, &recErr), errors.As(err, &alert):
		return ClassUnreachable, KindTLS
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return ClassUnreachable, KindConnect
	case isLocalErrno(err), errors.As(err, &pathErr), errors.As(err, &linkErr):
		return ClassLocal, KindNone
	case isNetFailure(err):
		return ClassUnreachable, KindTransfer
	}
	return ClassOther, KindNone
}

// isLocalErrno reports the system errors that say this host is the
// problem: its disks and its permissions.
func isLocalErrno(err error) bool {
	for _, e := range []error{syscall.ENOSPC, syscall.EDQUOT, syscall.EACCES, syscall.EPERM,
		syscall.EROFS, syscall.EIO, syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// A classedError gives err a class of its own, keeping its text.
type classedError struct {
	err  error
	cl   Class
	kind Kind
}

func (e *classedError) Error() string        { return e.err.Error() }
func (e *classedError) Unwrap() error        { return e.err }
func (e *classedError) class() (Class, Kind) { return e.cl, e.kind }

// withClass gives err the class cl (and kind k), keeping its text.
func withClass(err error, cl Class, k Kind) error {
	if err == nil {
		return nil
	}
	return &classedError{err: err, cl: cl, kind: k}
}

func (e *StatusError) class() (Class, Kind) {
	switch {
	case e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusGone:
		return ClassNotFound, KindNone
	case e.StatusCode >= 500:
		return ClassUnreachable, KindHTTP
	}
	return ClassServer, KindNone
}

func (e *SignatureError) class() (Class, Kind)   { return ClassVerification, KindNone }
func (e *ChecksumError) class() (Class, Kind)    { return ClassVerification, KindNone }
func (e *StaleIndexError) class() (Class, Kind)  { return ClassVerification, KindNone }
func (e *SizeLimitError) class() (Class, Kind)   { return ClassServer, KindNone }
func (e *DiskReserveError) class() (Class, Kind) { return ClassLocal, KindNone }
func (e *localError) class() (Class, Kind)       { return ClassLocal, KindNone }
func (e *stoppedError) class() (Class, Kind)     { return ClassOther, KindNone }
func (e *dnsError) class() (Class, Kind)         { return ClassUnreachable, KindDNS }
func (e *connectError) class() (Class, Kind)     { return ClassUnreachable, KindConnect }
func (e *IdleError) class() (Class, Kind)        { return ClassUnreachable, KindTransfer }

// NetError has no class of its own: what it wraps has.

// A tlsError is a failure during a TLS handshake, whatever its type (a
// timeout, a connection closed by the server): its text is err's.
type tlsError struct{ err error }

func (e *tlsError) Error() string        { return e.err.Error() }
func (e *tlsError) Unwrap() error        { return e.err }
func (e *tlsError) class() (Class, Kind) { return ClassUnreachable, KindTLS }

// A RemovedError is an image that the index names but whose files the
// server no longer has: a file of its directory was answered with a 404
// or 410 (Err), or the directory has none of the files that vouch for
// an image (sums and signatures). It is ClassNotFound.
type RemovedError struct {
	// Dist, Release, Arch, Variant and Build name the image as the
	// index did.
	Dist, Release, Arch, Variant, Build string
	// Err is the server's answer for the first file missing.
	Err error
}

func (e *RemovedError) Error() string {
	return cleanText("image removed from the server: " + e.Dist + " " + e.Release + " " + e.Arch + " " + e.Variant +
		" build " + e.Build + " is in the index, but " + e.Err.Error())
}

func (e *RemovedError) Unwrap() error        { return e.Err }
func (e *RemovedError) class() (Class, Kind) { return ClassNotFound, KindNone }

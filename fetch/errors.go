package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// A StatusError is an HTTP error status the server (or a mirror it
// redirected to) answered with.
type StatusError struct {
	// URL is the address that answered, after any redirect.
	URL string
	// StatusCode is the HTTP status, e.g. 404.
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("download %s: %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

// A NetError is a transfer that failed below HTTP (DNS, connection, TLS,
// a dropped or stalled connection) on every attempt.
type NetError struct {
	// URL is the address that failed, after any redirect.
	URL string
	// Attempts is how many times it was tried.
	Attempts int
	// Err is the last attempt's failure.
	Err error

	// noResponse is set when no attempt got an HTTP response from the
	// primary server: only then may plain HTTP be tried instead.
	noResponse bool
}

func (e *NetError) Error() string {
	if e.Attempts > 1 {
		return fmt.Sprintf("download %s: %v (%d attempts)", e.URL, e.Err, e.Attempts)
	}
	return fmt.Sprintf("download %s: %v", e.URL, e.Err)
}

func (e *NetError) Unwrap() error { return e.Err }

// IdleError is an attempt aborted because no data arrived for Duration.
type IdleError struct {
	Duration time.Duration
}

func (e *IdleError) Error() string {
	return fmt.Sprintf("no data received for %v", e.Duration)
}

// Timeout marks the error as a timeout for net.Error users.
func (e *IdleError) Timeout() bool { return true }

// localError is a failure on this machine (writing the download to disk,
// a size limit): never retried, never a reason to try a mirror or plain
// HTTP, and never "unreachable".
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// stoppedError is a transfer stopped because the caller's context ended:
// the caller's doing, never the server's.
type stoppedError struct {
	url string
	err error
}

func (e *stoppedError) Error() string { return fmt.Sprintf("download %s: %v", e.url, e.err) }
func (e *stoppedError) Unwrap() error { return e.err }

// IsUnreachable reports whether err means the image server could not be
// reached at all: name resolution, refused or dropped connections,
// timeouts, TLS handshake failures, and server errors (5xx) that lasted
// through every retry. It is false for answers that mean the server was
// reached and said no (404), for verification failures and for local
// errors, so a caller can fall back to a stale cached copy only when the
// server is down.
func IsUnreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var le *localError
	var stopped *stoppedError
	if errors.As(err, &le) || errors.As(err, &stopped) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.StatusCode >= 500
	}
	var ne *NetError
	if errors.As(err, &ne) {
		return true
	}
	return isNetFailure(err)
}

// isNetFailure classifies an error from the HTTP client or a body read as a
// network failure.
func isNetFailure(err error) bool {
	var (
		idleErr *IdleError
		netErr  net.Error
		opErr   *net.OpError
		dnsErr  *net.DNSError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		certErr *tls.CertificateVerificationError
		unkAuth x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &idleErr), errors.As(err, &opErr), errors.As(err, &dnsErr), errors.As(err, &netErr),
		errors.As(err, &recErr), errors.As(err, &alert), errors.As(err, &certErr),
		errors.As(err, &unkAuth), errors.As(err, &hostErr), errors.As(err, &invErr):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	}
	return false
}

// isTLSTrustFailure reports a certificate the client does not accept:
// trying again cannot help, so it is not retried (plain HTTP may be).
func isTLSTrustFailure(err error) bool {
	var (
		certErr *tls.CertificateVerificationError
		unkAuth x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
	)
	return errors.As(err, &certErr) || errors.As(err, &unkAuth) ||
		errors.As(err, &hostErr) || errors.As(err, &invErr)
}

// isDNSFailure reports a name that does not resolve: plain HTTP to the same
// name cannot do better.
func isDNSFailure(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}

// retryable reports whether another attempt may succeed.
func retryable(err error) bool {
	var le *localError
	if errors.As(err, &le) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.StatusCode >= 500 || se.StatusCode == http.StatusRequestTimeout ||
			se.StatusCode == http.StatusTooManyRequests
	}
	if isTLSTrustFailure(err) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return false
	}
	return isNetFailure(err) || errors.Is(err, errRestart)
}

// errRestart is an attempt that found the partial download unusable (the
// file changed, or the server answered a range it was not asked for) and
// threw it away: the next attempt starts from zero.
var errRestart = errors.New("the server's copy changed; starting over")

// unwrapURLError drops net/http's "Get URL:" wrapping: the URL is in the
// message already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

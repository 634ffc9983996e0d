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
	"strconv"
	"strings"
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
	// The status text is Go's, never the server's reason phrase.
	return cleanText(fmt.Sprintf("download %s: %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode)))
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
	// now is the local clock when the transfer failed, to tell a
	// certificate that is not yet valid from a clock that is behind.
	now time.Time
}

// Error names the URL and the failure; a certificate failure gets a hint
// at what to do, since it is never retried, over HTTPS or plain HTTP.
// Certificates hold text of the server's choosing (host names), so
// control characters are escaped.
func (e *NetError) Error() string {
	msg := fmt.Sprintf("download %s: %v", e.URL, e.Err)
	if e.Attempts > 1 {
		msg += fmt.Sprintf(" (%d attempts)", e.Attempts)
	}
	if hint := certHint(e.Err, e.now); hint != "" {
		msg += "; " + hint
	}
	return cleanText(msg)
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
// a small file's size limit): never retried, never a reason to leave a
// mirror for the primary server, and never "unreachable".
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
// timeouts, TLS handshake failures other than certificates, server errors
// (5xx) that lasted through every retry, and a file:// tree that is not
// there. It is false for answers that mean the server was reached and
// said no (404), for a certificate that does not verify (someone may be in
// the way: that is for the user to look at, not to be papered over with a
// cached copy), for verification failures and for local errors, so a
// caller can fall back to a stale cached copy only when the server is
// down. Classify tells the classes apart for messages and exit statuses.
func IsUnreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || isTLSTrustFailure(err) || isLimit(err) {
		return false
	}
	if KindOf(err) == KindTree {
		// A file:// tree that is not there (a stick not mounted).
		return true
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
		connErr *connectError
		hsErr   *tlsError
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
	case errors.As(err, &idleErr), errors.As(err, &connErr), errors.As(err, &hsErr), errors.As(err, &opErr), errors.As(err, &dnsErr), errors.As(err, &netErr),
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
// trying again cannot help, so it is not retried, and plain HTTP is
// never tried instead: that is what an attacker on the path would want.
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

// retryable reports whether another attempt may succeed.
func retryable(err error) bool {
	var le *localError
	var ce *classedError
	if errors.As(err, &le) || errors.As(err, &ce) || isLimit(err) {
		// A classedError is an answer that will not change (a refused
		// redirect, an index that does not parse, a file:// tree).
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

// certHint says what to do about a certificate that does not verify, or
// "" for any other error.
func certHint(err error, now time.Time) string {
	if !isTLSTrustFailure(err) {
		return ""
	}
	var invErr x509.CertificateInvalidError
	if errors.As(err, &invErr) && invErr.Reason == x509.Expired && invErr.Cert != nil &&
		!now.IsZero() && now.Before(invErr.Cert.NotBefore) {
		return fmt.Sprintf("this host's clock (%s) is before the certificate's start (%s): set the clock, or ask for plain HTTP with an http:// server (signatures still hold)",
			now.UTC().Format(time.DateOnly), invErr.Cert.NotBefore.UTC().Format(time.DateOnly))
	}
	return "a certificate failure is never retried over plain HTTP; if the server's certificate authority is not among the system's, give it with --ca-cert"
}

// A SizeLimitError is a download refused or cut off because the file is
// larger than the most this host accepts for it.
type SizeLimitError struct {
	// File is the file's name, e.g. "rootfs.tar.xz".
	File string
	// Limit is the most bytes it may have, and Option the command-line
	// option that sets it.
	Limit  int64
	Option string
	// Size is the size the server announced, or, when Announced is false,
	// how many bytes had arrived when the download was cut off.
	Size      int64
	Announced bool
	// URL is the address that sent it, after any redirect.
	URL string
}

func (e *SizeLimitError) Error() string {
	what := fmt.Sprintf("more than %d bytes arrived", e.Limit)
	if e.Announced {
		what = fmt.Sprintf("the server announced %d bytes", e.Size)
	}
	return cleanText(fmt.Sprintf("download %s: %s is larger than its limit of %s (%d bytes; %s): %s",
		e.URL, e.File, roundBytes(e.Limit), e.Limit, e.Option, what))
}

// A DiskReserveError is a download stopped because the free space of the
// filesystem it is written to fell below the reserve kept there. It
// matches syscall.ENOSPC (errors.Is): the disk is, for this purpose, full.
type DiskReserveError struct {
	// File is the file being written (its partial file's path).
	File string
	// Free is the free space found, Need the bytes still to come (-1 if
	// unknown), Reserve the space to keep.
	Free, Need, Reserve int64
}

func (e *DiskReserveError) Error() string {
	if e.Need >= 0 {
		return fmt.Sprintf("write %s: %d more bytes would leave less free space (%d bytes free) than the reserve of %s (%d bytes; --keep-free)",
			e.File, e.Need, e.Free, roundBytes(e.Reserve), e.Reserve)
	}
	return fmt.Sprintf("write %s: free space fell to %d bytes, below the reserve of %s (%d bytes; --keep-free)",
		e.File, e.Free, roundBytes(e.Reserve), e.Reserve)
}

// Unwrap makes the error match syscall.ENOSPC.
func (e *DiskReserveError) Unwrap() error { return syscall.ENOSPC }

// A StaleIndexError is an index whose signature is older than the most
// this host accepts: the server, or someone between, may be holding back
// updates.
type StaleIndexError struct {
	// File is the index's name, e.g. "index-system.7".
	File string
	// SignedAt is the signature's creation time, MaxAge the limit and Now
	// the local time it was judged at.
	SignedAt time.Time
	MaxAge   time.Duration
	Now      time.Time
}

func (e *StaleIndexError) Error() string {
	return fmt.Sprintf("%s was signed on %s, more than %s before this host's clock (%s; --max-index-age): refusing an index this old, which may hold back updates",
		e.File, e.SignedAt.UTC().Format("2006-01-02 15:04:05 UTC"), humanDuration(e.MaxAge), e.Now.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// roundBytes writes n in the largest binary unit it reaches, whole when
// it divides n (limits are usually round), else with one decimal.
func roundBytes(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n < 1<<u.shift {
			continue
		}
		if n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
		return fmt.Sprintf("%.1f %s", float64(n)/float64(int64(1)<<u.shift), u.name)
	}
	return fmt.Sprintf("%d bytes", n)
}

// humanDuration writes d in whole days when it is some, else as Go does.
func humanDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d > day && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}

// cleanText escapes the control characters of s (newlines and tabs too:
// an error is one line), as Go quotes them, so that text a server chose
// (a host name in a certificate, a header) cannot move a terminal's
// cursor, change its colours or forge lines of output.
func cleanText(s string) string {
	clean := true
	for _, r := range s {
		if isControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isControl reports C0 and C1 control characters and DEL.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

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
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lxc/lxc-download/compat"
)

// Defaults for the zero values of Options.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultIdleTimeout    = 30 * time.Second
	DefaultRetryWait      = time.Second
	DefaultAttempts       = 3
	// DefaultMaxMetaSize bounds meta.tar.xz: real ones are a few KiB.
	DefaultMaxMetaSize = 64 << 20
	// DefaultMaxRootfsSize bounds rootfs.tar.xz: the largest images of
	// images.linuxcontainers.org are a few hundred MiB.
	DefaultMaxRootfsSize = 8 << 30
	// DefaultDiskReserve is the free space a download leaves on its
	// filesystem, or 5% of the filesystem's size where that is less (see
	// Options.DiskReserve).
	DefaultDiskReserve = 256 << 20
	// DefaultMaxIndexAge is how old an index's signature may be: the
	// image server signs a new index several times a day.
	DefaultMaxIndexAge = 14 * 24 * time.Hour
)

// Options configures a Client. The zero value of each optional field
// gives the behaviour of the shell template.
type Options struct {
	// Server is the image server as --server takes it (see ParseServer):
	// HOST[:PORT][/PREFIX] or https://... for HTTPS, http://... for plain
	// HTTP. Every request goes below the prefix.
	Server string
	// Version is this program's version, sent in the User-Agent as
	// "lxc/Version compat:7".
	Version string
	// Validate makes every file prove it was signed by a key in Keyring.
	// Without it nothing is verified, no signature is fetched, and a
	// redirect to plain HTTP is never followed (unless Server itself is
	// http://).
	Validate bool
	// Keyring holds the keys accepted as signers when Validate is set.
	Keyring openpgp.EntityList
	// Warn receives "WARNING: ..." lines, each said once. Nil discards them.
	Warn io.Writer
	// Verbose, when not nil, receives a line naming each URL as it is
	// requested (--verbose).
	Verbose io.Writer
	// Progress, when not nil, receives download progress: a progress bar
	// when ProgressTerminal is set, otherwise a few plain lines without
	// control characters (lxc-create logs). Nil shows nothing (--quiet).
	Progress io.Writer
	// ProgressTerminal says Progress is a terminal.
	ProgressTerminal bool

	// CACert is a PEM file of the certificate authorities trusted for
	// HTTPS instead of any other (--ca-cert).
	CACert string
	// RootCAs are the certificate authorities trusted for HTTPS when
	// CACert is not given. Nil means the system's (SSL_CERT_FILE and
	// SSL_CERT_DIR are honoured), else Android's, else a built-in set, so
	// that HTTPS is verified even on a host without any.
	RootCAs *x509.CertPool
	// DialContext, when not nil, makes the TCP connections (to the
	// server, a mirror or a proxy) instead of net.Dialer; it is bounded
	// by ConnectTimeout all the same. With the system's DNS settings it
	// gets host names as they are (network "tcp", or "tcp4" or "tcp6"
	// with IPVersion), to resolve and race as it likes. Where names are
	// resolved here (Nameservers, Android's servers), it gets IP
	// addresses, with network "tcp4" or "tcp6" to match, and may be
	// called for several at once (see IPVersion).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Nameservers are the DNS servers that resolve host names, tried in
	// order, each an IP address with an optional port (53 by default;
	// "[IPv6]:PORT"). Empty means the system's: /etc/resolv.conf (and
	// /etc/hosts) through Go's resolver, else (Android) the net.dns1 and
	// net.dns2 properties of getprop, else localhost. Names are always
	// resolved before connecting (but see DialContext), so that the
	// addresses can be raced and each failure named.
	Nameservers []string
	// IPVersion keeps connections to one IP version: 4 (-4) or 6 (-6);
	// only that version's addresses are asked of DNS and dialed, and a
	// server or proxy given as an address of the other is refused. Zero
	// uses both: the addresses of a name are tried as RFC 8305 ("happy
	// eyeballs") says, the first family the resolver prefers first and
	// the other 250 ms later (or as soon as the first fails), side by
	// side, the first connection made winning; when none connects, the
	// error names every address and what failed there.
	IPVersion int
	// ConnectTimeout bounds connecting and the TLS handshake
	// (DefaultConnectTimeout when zero).
	ConnectTimeout time.Duration
	// IdleTimeout aborts an attempt that receives nothing (no response
	// header, no body bytes) for this long (DefaultIdleTimeout when zero).
	IdleTimeout time.Duration
	// RetryWait is the pause before the second attempt; it doubles for
	// each further one (DefaultRetryWait when zero).
	RetryWait time.Duration
	// Attempts is how many times a request is tried on connection errors
	// and server errors (DefaultAttempts when zero).
	Attempts int

	// MaxMetaSize and MaxRootfsSize are the most bytes meta.tar.xz and
	// rootfs.tar.xz may have (DefaultMaxMetaSize, DefaultMaxRootfsSize
	// when zero or less). A larger announced Content-Length is refused
	// before the body is read; a body that grows past it is cut off.
	MaxMetaSize, MaxRootfsSize int64
	// DiskReserve is the free space (for unprivileged users) that a
	// download leaves on the filesystem of its directory: it stops
	// before going below. Zero means the lesser of DefaultDiskReserve
	// and 5% of the filesystem's size; negative means no reserve.
	DiskReserve int64
	// MaxIndexAge is how old the index's signature may be, judged by Now
	// (DefaultMaxIndexAge when zero; negative: no limit). A signature
	// dated after Now (a host whose clock is behind) is accepted. Without
	// Validate there is no signature and no age.
	MaxIndexAge time.Duration
	// Now is the clock by which signatures, keys, the index's age and
	// TLS certificates are judged (time.Now when nil). A caller that
	// knows a later time than a clock without a battery may give it
	// here, e.g. the newest signature time it has seen.
	Now func() time.Time

	// dns is where the host's DNS settings are looked for (hostDNS when
	// nil); tests point it at files and commands of their own.
	dns *dnsHost
}

// now is the time of o's clock.
func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Client talks to one image server. It is safe for concurrent use.
type Client struct {
	o         Options
	server    Server
	userAgent string
	// hc follows redirects to mirrors (artifacts are verified);
	// hcPrimary only within the primary server (the index, signatures).
	hc, hcPrimary *http.Client

	mu     sync.Mutex
	warned map[string]bool
}

// New checks the options and builds a client. It does no network I/O.
func New(o Options) (*Client, error) {
	server, err := ParseServer(o.Server)
	if err != nil {
		return nil, err
	}
	if o.Validate && len(o.Keyring) == 0 {
		return nil, errors.New("validation needs at least one key in the keyring")
	}
	if err := checkIPVersion(o.IPVersion); err != nil {
		return nil, err
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.RetryWait <= 0 {
		o.RetryWait = DefaultRetryWait
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.MaxMetaSize <= 0 {
		o.MaxMetaSize = DefaultMaxMetaSize
	}
	if o.MaxRootfsSize <= 0 {
		o.MaxRootfsSize = DefaultMaxRootfsSize
	}
	if o.MaxIndexAge == 0 {
		o.MaxIndexAge = DefaultMaxIndexAge
	}
	if o.Warn == nil {
		o.Warn = io.Discard
	}
	c := &Client{
		o:         o,
		server:    server,
		userAgent: fmt.Sprintf("lxc/%s compat:%d", o.Version, compat.Level),
		warned:    map[string]bool{},
	}
	var tr http.RoundTripper
	if server.Local() {
		tr = &fileTransport{dir: server.Dir()}
	} else {
		ht, err := newTransport(&c.o)
		if err != nil {
			return nil, err
		}
		tr = ht
	}
	c.hc = &http.Client{Transport: tr, CheckRedirect: c.checkMirrorRedirect}
	c.hcPrimary = &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !c.server.is(req.URL) {
			return withClass(fmt.Errorf("redirected to %s://%s: this file is only taken from the primary server", req.URL.Scheme, req.URL.Host), ClassServer, KindNone)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}}
	if server.PlainHTTP() {
		if o.Validate {
			c.warnOnce("plain", "Using plain HTTP for %s, as asked: signatures still prove every file genuine, but anyone on the path can hold back updates or replay older signed files", server)
		} else {
			c.warnOnce("plain", "Using plain HTTP for %s without validation: anyone on the path can change anything downloaded", server)
		}
	}
	return c, nil
}

// checkMirrorRedirect is the redirect policy for artifacts: mirrors are
// followed, over HTTPS or, when the files are verified, plain HTTP.
// Without validation nothing would catch what an attacker on a plain HTTP
// path changes, so such a redirect is refused, unless the user asked for
// plain HTTP in the first place.
func (c *Client) checkMirrorRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if !c.o.Validate && req.URL.Scheme == "http" && !c.server.PlainHTTP() {
		return withClass(fmt.Errorf("redirected to plain HTTP (%s://%s), which is not followed without validation", req.URL.Scheme, req.URL.Host), ClassServer, KindNone)
	}
	return nil
}

// NewHTTPClient returns an HTTP client that connects as a Client made
// from o would (proxies, DialContext, trusted roots, connect and header
// timeouts), for other requests of the same run such as a keyserver's.
// Only the connection fields of o are used.
func NewHTTPClient(o Options) (*http.Client, error) {
	if err := checkIPVersion(o.IPVersion); err != nil {
		return nil, err
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	tr, err := newTransport(&o)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr}, nil
}

// checkIPVersion refuses an Options.IPVersion other than 0, 4 and 6.
func checkIPVersion(v int) error {
	if v != 0 && v != 4 && v != 6 {
		return fmt.Errorf("IP version %d: want 4, 6 or 0 for both", v)
	}
	return nil
}

// newTransport is the one place where connections are set up: proxies,
// dialing, TLS trust and timeouts.
func newTransport(o *Options) (*http.Transport, error) {
	roots, err := trustedRoots(o)
	if err != nil {
		return nil, err
	}
	dial := o.DialContext
	if dial == nil {
		dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	dns := hostDNS()
	if o.dns != nil {
		dns = *o.dns
	}
	dial = resolvingDial(dns, o.Nameservers, o.IPVersion, dial, o.DialContext != nil)
	timeout := o.ConnectTimeout
	return &http.Transport{
		// Reads HTTP_PROXY/http_proxy, HTTPS_PROXY/https_proxy and
		// NO_PROXY/no_proxy (upper case first), like wget and curl.
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return dial(ctx, network, addr)
		},
		// Certificates are judged by the same clock as signatures.
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, Time: o.Now},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: o.IdleTimeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		// The bytes on disk must be the file's bytes: Range offsets and
		// signatures are over the file, not a decoded stream.
		DisableCompression: true,
	}, nil
}

// warnOnce writes a warning the first time key is raised. Its text may
// hold what a server sent (in errors), so control characters are escaped.
func (c *Client) warnOnce(key, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.warned[key] {
		return
	}
	c.warned[key] = true
	fmt.Fprintf(c.o.Warn, "WARNING: %s\n", cleanText(fmt.Sprintf(format, args...)))
}

// verbose writes a line to Options.Verbose, if set. Downloads run side by
// side, and the writer need not be safe for that.
func (c *Client) verbose(format string, args ...any) {
	if c.o.Verbose == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.o.Verbose, "%s\n", cleanText(fmt.Sprintf(format, args...)))
}

// urlFor is the address of path on the primary server.
func (c *Client) urlFor(path string) string { return c.server.URL(path) }

// cleanPath makes path absolute and collapses runs of slashes; "." and
// ".." are left to the server (compat rejects index paths with "..").
func cleanPath(p string) string {
	b := make([]byte, 1, len(p)+1)
	b[0] = '/'
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && b[len(b)-1] == '/' {
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

// isNotFound reports a 404 or 410 answer.
func isNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && (se.StatusCode == http.StatusNotFound || se.StatusCode == http.StatusGone)
}

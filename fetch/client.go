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
	"strings"
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
)

// Options configures a Client. The zero value of each optional field
// gives the behaviour of the shell template.
type Options struct {
	// Server is the image server as host[:port]; requests go to
	// https://Server/. A leading "https://" and a trailing "/" are
	// tolerated.
	Server string
	// Version is this program's version, sent in the User-Agent as
	// "lxc/Version compat:7".
	Version string
	// Validate makes every file prove it was signed by a key in Keyring.
	// Without it nothing is verified, no signature is fetched, and plain
	// HTTP is never used.
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
	// by ConnectTimeout all the same.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Nameservers are the DNS servers that resolve host names, tried in
	// order, each an IP address with an optional port (53 by default;
	// "[IPv6]:PORT"). Empty means the system's: /etc/resolv.conf, else
	// (Android) the net.dns1 and net.dns2 properties of getprop, else
	// localhost. Where these servers (or Android's) are asked, names are
	// resolved before DialContext is called, which then gets IP addresses.
	Nameservers []string
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
}

// Client talks to one image server. It is safe for concurrent use.
type Client struct {
	o         Options
	host      string // host[:port] of the primary server
	userAgent string
	// hc follows redirects anywhere (artifacts may come from mirrors);
	// hcPrimary only within the primary server (the index, signatures).
	hc, hcPrimary *http.Client

	mu     sync.Mutex
	plain  bool // HTTPS could not connect and plain HTTP worked
	warned map[string]bool
}

// New checks the options and builds a client. It does no network I/O.
func New(o Options) (*Client, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(o.Server, "https://"), "/")
	if host == "" || strings.ContainsAny(host, "/?#@ \t\n") {
		return nil, fmt.Errorf("invalid server %q: want host[:port]", o.Server)
	}
	if o.Validate && len(o.Keyring) == 0 {
		return nil, errors.New("validation needs at least one key in the keyring")
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
	if o.Warn == nil {
		o.Warn = io.Discard
	}
	c := &Client{
		o:         o,
		host:      host,
		userAgent: fmt.Sprintf("lxc/%s compat:%d", o.Version, compat.Level),
		warned:    map[string]bool{},
	}
	tr, err := newTransport(&c.o)
	if err != nil {
		return nil, err
	}
	c.hc = &http.Client{Transport: tr}
	c.hcPrimary = &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !c.isPrimary(req.URL.Host) {
			return fmt.Errorf("redirected to %s: this file is only taken from the primary server", req.URL.Host)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}}
	return c, nil
}

// NewHTTPClient returns an HTTP client that connects as a Client made
// from o would (proxies, DialContext, trusted roots, connect and header
// timeouts), for other requests of the same run such as a keyserver's.
// Only the connection fields of o are used.
func NewHTTPClient(o Options) (*http.Client, error) {
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
	dial = resolvingDial(o.Nameservers, dial)
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
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: o.IdleTimeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		// The bytes on disk must be the file's bytes: Range offsets and
		// signatures are over the file, not a decoded stream.
		DisableCompression: true,
	}, nil
}

// warnOnce writes a warning the first time key is raised.
func (c *Client) warnOnce(key, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.warned[key] {
		return
	}
	c.warned[key] = true
	fmt.Fprintf(c.o.Warn, "WARNING: "+format+"\n", args...)
}

// verbose writes a line to Options.Verbose, if set. Downloads run side by
// side, and the writer need not be safe for that.
func (c *Client) verbose(format string, args ...any) {
	if c.o.Verbose == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.o.Verbose, format+"\n", args...)
}

// isPrimary reports whether host (from a URL) is the primary server,
// whether or not it names the scheme's default port.
func (c *Client) isPrimary(host string) bool {
	return stripDefaultPort(host) == stripDefaultPort(c.host)
}

func stripDefaultPort(host string) string {
	if h, port, err := net.SplitHostPort(host); err == nil && (port == "443" || port == "80") {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return host
}

// scheme is the scheme to try first: https, unless it already failed to
// connect during this run and plain HTTP worked.
func (c *Client) scheme() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.plain {
		return "http"
	}
	return "https"
}

// urlFor is the address of path on the primary server. Runs of slashes
// (index paths often end in "/" and get "/file" appended) become one.
func (c *Client) urlFor(scheme, path string) string {
	return scheme + "://" + c.host + cleanPath(path)
}

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

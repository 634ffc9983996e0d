package fetch

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Server is an image server as --server names it, checked by ParseServer.
type Server struct {
	// Scheme is "https", or "http" only when the user wrote "http://".
	Scheme string
	// Host is the host and optional port, as in a URL: "example.org",
	// "example.org:8443", "[2001:db8::1]:8443".
	Host string
	// Prefix is the path under which the server publishes meta/ and
	// images/: "" or a path such as "/lxc-images", without a trailing
	// slash, escaped as in a URL.
	Prefix string
}

// ParseServer checks a --server value and splits it. It takes what mirror
// operators publish: HOST[:PORT][/PREFIX], https://HOST[:PORT][/PREFIX] or
// http://HOST[:PORT][/PREFIX]. Without a scheme, HTTPS is used; plain HTTP
// only when written out. A user name or password, a query, a fragment, a
// control character or space, an empty host, a port that is not a number
// from 1 to 65535, and "." or ".." in the prefix are refused, so that a bad
// value fails before any connection is made. It does no network I/O.
func ParseServer(s string) (Server, error) {
	bad := func(why string) (Server, error) {
		return Server{}, fmt.Errorf("invalid server %s: %s; want HOST[:PORT][/PREFIX], https://... or http://...", strconv.Quote(s), why)
	}
	if s == "" {
		return bad("empty")
	}
	for _, c := range s {
		switch {
		case c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0):
			return bad("it holds a control character")
		case c == ' ':
			return bad("it holds a space")
		case c == '\\':
			return bad("it holds a backslash")
		}
	}
	raw := s
	scheme, rest, found := strings.Cut(s, "://")
	switch {
	case !found:
		scheme = "https"
		raw = "https://" + s
	case strings.EqualFold(scheme, "https"), strings.EqualFold(scheme, "http"):
		scheme = strings.ToLower(scheme)
		raw = scheme + "://" + rest
	default:
		return bad(fmt.Sprintf("scheme %s is neither https nor http", strconv.Quote(scheme)))
	}
	switch {
	case strings.Contains(raw, "#"):
		return bad("it holds a fragment (#)")
	case strings.Contains(raw, "?"):
		return bad("it holds a query (?)")
	}
	// The authority ends at the first slash; an "@" in it is a user name.
	authority, _, _ := strings.Cut(strings.TrimPrefix(raw, scheme+"://"), "/")
	if strings.Contains(authority, "@") {
		return bad("it holds a user name or password (@)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad(err.Error())
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return bad("want only a host, a port and a path")
	}
	if u.Hostname() == "" {
		return bad("no host")
	}
	if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("port %s is not a number from 1 to 65535", strconv.Quote(p)))
		}
	}
	if strings.Contains(u.Hostname(), "%") {
		return bad("a zone in the host (%) cannot be used")
	}
	prefix := cleanPath(u.EscapedPath())
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "." || seg == ".." {
			return bad(fmt.Sprintf("the path has a %s segment", strconv.Quote(seg)))
		}
		if un, err := url.PathUnescape(seg); err == nil && (un == "." || un == ".." || strings.ContainsAny(un, "/\\")) {
			return bad("the path has an escaped \".\", \"..\" or slash")
		}
	}
	prefix = strings.TrimSuffix(prefix, "/")
	return Server{Scheme: scheme, Host: u.Host, Prefix: prefix}, nil
}

// String is the server's base URL: "https://example.org/lxc-images".
func (s Server) String() string { return s.Scheme + "://" + s.Host + s.Prefix }

// URL is the address of path on the server: its prefix, then path, with
// runs of slashes made one (index paths start with a slash and image
// paths end with one).
func (s Server) URL(path string) string {
	return s.Scheme + "://" + s.Host + s.Prefix + cleanPath(path)
}

// PlainHTTP reports whether the server is reached over plain HTTP.
func (s Server) PlainHTTP() bool { return s.Scheme == "http" }

// is reports whether u is on this server: the same scheme and host, a
// port written or left to the scheme's default alike. The prefix is not
// compared: a server may redirect within itself.
func (s Server) is(u *url.URL) bool {
	return u != nil && strings.EqualFold(u.Scheme, s.Scheme) &&
		strings.EqualFold(hostPort(u.Scheme, u.Host), hostPort(s.Scheme, s.Host))
}

// hostPort is host with the scheme's default port made explicit.
func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "443"
	if strings.EqualFold(scheme, "http") {
		port = "80"
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port)
}

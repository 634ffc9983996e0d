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
	// Scheme is "https", or "http" only when the user wrote "http://",
	// or "file" for a mirror tree read from this host's filesystem.
	Scheme string
	// Host is the host and optional port, as in a URL: "example.org",
	// "example.org:8443", "[2001:db8::1]:8443"; "" for a file server.
	Host string
	// Prefix is the path under which the server publishes meta/ and
	// images/: "" or a path such as "/lxc-images", without a trailing
	// slash, escaped as in a URL. For a file server it is the tree's
	// directory ("" for "/").
	Prefix string
}

// ParseServer checks a --server value and splits it. It takes what mirror
// operators publish: HOST[:PORT][/PREFIX], https://HOST[:PORT][/PREFIX] or
// http://HOST[:PORT][/PREFIX]. Without a scheme, HTTPS is used; plain HTTP
// only when written out. A user name or password, a query, a fragment, a
// control character or space, an empty host, a port that is not a number
// from 1 to 65535, and "." or ".." in the prefix are refused, so that a bad
// value fails before any connection is made. It also takes
// file:///PATH (or file://localhost/PATH): a mirror tree in the server's
// layout on this host's filesystem, PATH absolute and percent-escaped as
// in a URL (a space may also be written as it is). It does no I/O.
func ParseServer(s string) (Server, error) {
	bad := func(why string) (Server, error) {
		return Server{}, fmt.Errorf("invalid server %s: %s; want HOST[:PORT][/PREFIX], https://..., http://... or file:///PATH", strconv.Quote(s), why)
	}
	if s == "" {
		return bad("empty")
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return bad("it holds a control character")
		}
	}
	if len(s) >= 5 && strings.EqualFold(s[:5], "file:") && !strings.HasPrefix(s[5:], "//") {
		return bad("a file server is written file:///ABSOLUTE/PATH")
	}
	if scheme, rest, found := strings.Cut(s, "://"); found && strings.EqualFold(scheme, "file") {
		prefix, why := parseFilePath(rest)
		if why != "" {
			return bad(why)
		}
		return Server{Scheme: "file", Prefix: prefix}, nil
	}
	for _, c := range s {
		switch {
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
		return bad(fmt.Sprintf("scheme %s is not https, http or file", strconv.Quote(scheme)))
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

// parseFilePath checks what follows "file://" and returns the tree's
// directory as a URL path, or why it is refused.
func parseFilePath(rest string) (prefix, why string) {
	switch {
	case strings.Contains(rest, "#"):
		return "", "it holds a fragment (#)"
	case strings.Contains(rest, "?"):
		return "", "it holds a query (?)"
	case strings.Contains(rest, "\\"):
		return "", "it holds a backslash"
	}
	host, path, _ := strings.Cut(rest, "/")
	if host != "" && !strings.EqualFold(host, "localhost") {
		return "", fmt.Sprintf("a file:// server is a directory of this host, not of %s (a relative path is not taken: write file:///ABSOLUTE/PATH)", strconv.Quote(host))
	}
	if path == "" && !strings.HasSuffix(rest, "/") {
		return "", "no path; want an absolute path, file:///PATH"
	}
	dir, err := url.PathUnescape("/" + path)
	if err != nil {
		return "", "invalid escape in the path"
	}
	for _, c := range dir {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return "", "the path holds a control character"
		}
	}
	for _, seg := range strings.Split(dir, "/") {
		if seg == "." || seg == ".." {
			return "", fmt.Sprintf("the path has a %s segment", strconv.Quote(seg))
		}
	}
	dir = strings.TrimSuffix(cleanPath(dir), "/")
	return (&url.URL{Path: dir}).EscapedPath(), ""
}

// Dir is a file server's directory on this host ("" for other servers).
func (s Server) Dir() string {
	if s.Scheme != "file" {
		return ""
	}
	dir, err := url.PathUnescape(s.Prefix)
	if err != nil || dir == "" {
		// ParseServer made Prefix; only "/" is empty.
		return "/"
	}
	return dir
}

// Local reports a file server: a mirror tree on this host (file://).
func (s Server) Local() bool { return s.Scheme == "file" }

// String is the server's base URL: "https://example.org/lxc-images",
// "file:///srv/lxc".
func (s Server) String() string {
	if s.Scheme == "file" && s.Prefix == "" {
		return "file:///"
	}
	return s.Scheme + "://" + s.Host + s.Prefix
}

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

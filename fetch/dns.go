package fetch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// hostDNS is where this host's DNS settings are looked for (tests give
// Options another).
func hostDNS() dnsHost {
	return dnsHost{
		resolvConf: "/etc/resolv.conf",
		// Android's getprop is in /system/bin, which a shell of a chroot or of
		// a terminal app may leave out of PATH.
		getprop:        []string{"getprop", "/system/bin/getprop"},
		getpropTimeout: 2 * time.Second,
		// What Go's resolver asks when resolv.conf is missing.
		localhost: []string{"127.0.0.1:53", "[::1]:53"},
	}
}

// dnsHost names the sources of DNS servers on this host.
type dnsHost struct {
	// resolvConf is the file Go's resolver reads its servers from.
	resolvConf string
	// getprop are the commands tried, in order, to read Android's
	// net.dns1 and net.dns2 properties: a bare name is looked up in PATH.
	getprop []string
	// getpropTimeout bounds all the getprop runs together.
	getpropTimeout time.Duration
	// localhost are the servers Go's resolver falls back to.
	localhost []string
	// resolver is Go's resolver as it reads resolvConf (nil: the
	// default one); tests send its queries to a server of their own.
	resolver *net.Resolver
}

// minLookupBudget is the least time given to one DNS server before the
// next one is tried, as Go's dialer gave each address.
const minLookupBudget = 2 * time.Second

// ParseNameserver checks a DNS server given as an IP address with an
// optional port (53 by default; an IPv6 address with a port is written in
// brackets, "[2001:db8::1]:5353") and returns it as IP:PORT.
func ParseNameserver(s string) (string, error) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", fmt.Errorf("invalid nameserver %q: port 0", s)
		}
		return ap.String(), nil
	}
	host := s
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("invalid nameserver %q: want an IP address, IP:PORT or [IPv6]:PORT", s)
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

// nameserver is a DNS server and where it was found.
type nameserver struct {
	addr   string // IP:PORT
	origin string // "" for one the caller gave, else e.g. "net.dns1"
}

func (n nameserver) String() string {
	if n.origin == "" {
		return n.addr
	}
	return n.addr + " (" + n.origin + ")"
}

// dnsSource is the DNS servers of a run and how errors name them.
type dnsSource struct {
	// servers are asked in order, each through a resolver of its own, so
	// that a failure is blamed on the right one. Empty: Go's resolver as
	// configured by resolvConf.
	servers []nameserver
	// label, when set, names servers as a whole in errors.
	label string
	// hint ends errors, saying how to fix them.
	hint string
	// resolvConf is the file Go's resolver uses when servers is empty.
	resolvConf string
}

// source picks the DNS servers: the caller's, else (on a host without
// resolv.conf, such as Android) those of the net.dns1 and net.dns2
// properties, else Go's default.
func (h dnsHost) source(given []nameserver) *dnsSource {
	if len(given) > 0 {
		return &dnsSource{servers: given}
	}
	if _, err := os.Stat(h.resolvConf); !errors.Is(err, fs.ErrNotExist) {
		return &dnsSource{resolvConf: h.resolvConf}
	}
	android, getprop := h.androidServers()
	if len(android) > 0 {
		return &dnsSource{servers: android}
	}
	s := &dnsSource{
		label: "Go's default localhost:53 because " + h.resolvConf + " is missing",
		hint:  "; give DNS servers with --nameserver or DOWNLOAD_NAMESERVER",
	}
	if getprop != "" {
		s.label += " and " + getprop + " gives no net.dns1 or net.dns2"
	}
	for _, a := range h.localhost {
		s.servers = append(s.servers, nameserver{addr: a})
	}
	return s
}

// androidServers reads the DNS servers Android keeps in properties, and
// returns the getprop command it ran ("" when there is none).
func (h dnsHost) androidServers() ([]nameserver, string) {
	cmd := ""
	for _, c := range h.getprop {
		if p, err := exec.LookPath(c); err == nil {
			cmd = p
			break
		}
	}
	if cmd == "" {
		return nil, ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.getpropTimeout)
	defer cancel()
	var servers []nameserver
	for _, prop := range []string{"net.dns1", "net.dns2"} {
		c := exec.CommandContext(ctx, cmd, prop)
		// A killed getprop may leave a child holding its stdout.
		c.WaitDelay = 100 * time.Millisecond
		out, err := c.Output()
		if err != nil {
			continue
		}
		// Recent Android versions leave the properties empty.
		if addr, err := ParseNameserver(string(out)); err == nil {
			servers = append(servers, nameserver{addr: addr, origin: prop})
		}
	}
	return servers, cmd
}

// dialFunc is the type of Options.DialContext.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// resolvingDial wraps dial so that host names are resolved here, by the
// DNS servers of nameservers, else (on a host without resolv.conf) by
// Android's, else by Go's resolver (h says where the host's settings
// are), and the addresses a name has are raced as RFC 8305 says
// (dialRace): dial gets IP addresses. Only a dial of the caller's
// (custom), with the system's DNS settings, gets host names as they are,
// to resolve them as it likes (its own redirections, a test's). ipVersion
// (Options.IPVersion) keeps to one IP version: only its addresses are
// asked for and dialed. Errors of name resolution say which servers
// failed; errors of connecting, which addresses did and how.
func resolvingDial(h dnsHost, nameservers []string, ipVersion int, dial dialFunc, custom bool) dialFunc {
	var given []nameserver
	for _, s := range nameservers {
		addr, err := ParseNameserver(s)
		if err != nil {
			// Options has no other place to refuse it than the dial.
			err = &localError{err}
			return func(context.Context, string, string) (net.Conn, error) { return nil, err }
		}
		given = append(given, nameserver{addr: addr})
	}
	// Settings are read once, on the first dial of a host name: getprop
	// is a process start, and runs that reach no server need none.
	source := sync.OnceValue(func() *dnsSource { return h.source(given) })
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return dial(ctx, network, addr)
		}
		network = familyNetwork(network, ipVersion)
		if ip, err := netip.ParseAddr(host); err == nil {
			if !fitsNetwork(ip, network) {
				return nil, &localError{fmt.Errorf("connect %s port %s: not an address of %s", host, port, familyName(network))}
			}
			return dialRace(ctx, dial, []netip.Addr{ip.Unmap()}, port)
		}
		s := source()
		var ips []net.IP
		switch {
		case len(s.servers) == 0 && custom:
			c, err := dial(ctx, network, addr)
			return c, s.explain(err)
		case len(s.servers) == 0:
			ips, err = s.lookupSystem(ctx, h.resolver, network, host)
		default:
			ips, err = s.lookup(ctx, network, host)
		}
		if err != nil {
			return nil, err
		}
		return dialRace(ctx, dial, toAddrs(ips), port)
	}
}

// lookupSystem resolves host with Go's resolver (r, else the default one),
// which reads resolv.conf and /etc/hosts as the C library would.
func (s *dnsSource) lookupSystem(ctx context.Context, r *net.Resolver, network, host string) ([]net.IP, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupIP(ctx, lookupNetwork(network), host)
	ips = onlyFamily(ips, network)
	if err == nil && len(ips) == 0 {
		err = &net.DNSError{Err: "no address of " + familyName(network), Name: host, IsNotFound: true}
	}
	if err != nil {
		return nil, s.explain(err)
	}
	return ips, nil
}

// explain names resolv.conf in a resolution error of Go's resolver.
func (s *dnsSource) explain(err error) error {
	var de *net.DNSError
	if err == nil || !errors.As(err, &de) {
		return err
	}
	via := s.resolvConf
	if de.Server != "" {
		via = de.Server + " from " + s.resolvConf
	}
	return &dnsError{name: de.Name, via: []string{via + ": " + de.Err}, err: de}
}

// lookup resolves host, asking each server in turn until one answers. A
// server saying the name does not exist is believed.
func (s *dnsSource) lookup(ctx context.Context, network, host string) ([]net.IP, error) {
	var via []string
	var last *net.DNSError
	for i, ns := range s.servers {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			// Go's resolver names the server of its own configuration;
			// this resolver has only ns.
			var d net.Dialer
			return d.DialContext(ctx, network, ns.addr)
		}}
		lctx, cancel := budget(ctx, len(s.servers)-i)
		ips, err := r.LookupIP(lctx, lookupNetwork(network), host)
		cancel()
		ips = onlyFamily(ips, network)
		if err == nil && len(ips) == 0 {
			err = &net.DNSError{Err: "no address of " + familyName(network), Name: host, IsNotFound: true}
		}
		if err == nil {
			return ips, nil
		}
		var de *net.DNSError
		if !errors.As(err, &de) {
			de = &net.DNSError{Err: err.Error(), Name: host}
		}
		reason := de.Err
		if i := strings.LastIndex(reason, ": "); i >= 0 && de.IsTemporary {
			// A socket's error, "read udp IP:PORT->SERVER: read:
			// connection refused": the server is named already.
			reason = reason[i+2:]
		}
		last = &net.DNSError{Err: reason, Name: host, Server: ns.addr, UnwrapErr: de.UnwrapErr,
			IsTimeout: de.IsTimeout, IsTemporary: de.IsTemporary, IsNotFound: de.IsNotFound}
		via = append(via, ns.String()+": "+reason)
		if de.IsNotFound || ctx.Err() != nil {
			break
		}
	}
	if s.label != "" {
		via = []string{s.label + ": " + last.Err}
	}
	return nil, &dnsError{name: host, via: via, hint: s.hint, err: last}
}

// onlyFamily keeps the addresses network ("tcp4", "tcp6", or any) can use.
func onlyFamily(ips []net.IP, network string) []net.IP {
	want4, want6 := strings.HasSuffix(network, "4"), strings.HasSuffix(network, "6")
	if !want4 && !want6 {
		return ips
	}
	var out []net.IP
	for _, ip := range ips {
		if (ip.To4() != nil) == want4 {
			out = append(out, ip)
		}
	}
	return out
}

// budget is ctx with a deadline that leaves time for left-1 more tries
// after this one, as long as each gets minLookupBudget.
func budget(ctx context.Context, left int) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok || left <= 1 {
		return context.WithCancel(ctx)
	}
	remaining := time.Until(d)
	part := remaining / time.Duration(left)
	if part < minLookupBudget {
		part = min(minLookupBudget, remaining)
	}
	return context.WithTimeout(ctx, part)
}

// A dnsError is a host name that could not be resolved. It unwraps to the
// *net.DNSError of the last server asked, so that it is classified as
// other resolution errors are.
type dnsError struct {
	name string
	via  []string // "SERVER: what failed", one for each server asked
	hint string
	err  *net.DNSError
}

func (e *dnsError) Error() string {
	return "lookup " + e.name + " via " + strings.Join(e.via, "; via ") + e.hint
}

func (e *dnsError) Unwrap() error { return e.err }

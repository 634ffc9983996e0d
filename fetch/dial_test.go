package fetch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
)

// closedPort checks that nothing listens on host:port now (a connection
// there is refused at once), or skips the test.
func closedPort(t *testing.T, host string, port uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		t.Skipf("port %d of %s is in use: %v", port, host, err)
	}
	ln.Close()
}

// ipv6Rig is the test server answering over IPv6 only, on [::1]:port6,
// where 127.0.0.1:port6 refuses connections; and over IPv4 only on the
// server's own port, where [::1] refuses. testHost has both ::1 and
// 127.0.0.1.
type ipv6Rig struct {
	*dnsRig
	port4, port6 uint16
	dns          *dnsServer
}

func newIPv6Rig(t *testing.T) *ipv6Rig {
	t.Helper()
	r := &ipv6Rig{dnsRig: newDNSRig(t)}
	host6, err := r.srv.Listen("[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	r.port6 = netip.MustParseAddrPort(host6).Port()
	r.port4 = netip.MustParseAddrPort(r.srv.Host).Port()
	closedPort(t, "127.0.0.1", r.port6)
	closedPort(t, "::1", r.port4)
	r.dns = newDNSServer(t, map[string][]netip.Addr{
		testHost: {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
	})
	return r
}

// server is http://testHost:port/.
func (r *ipv6Rig) server(port uint16) string { return fmt.Sprintf("http://%s:%d", testHost, port) }

// TestHappyEyeballs: a name with an IPv4 and an IPv6 address reaches a
// server that listens on only one of them, whichever it is, whether the
// name is resolved by the servers of Nameservers or by Go's resolver
// (resolv.conf).
func TestHappyEyeballs(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, resolver := range []string{"nameservers", "system"} {
		for _, family := range []string{"IPv6 only", "IPv4 only"} {
			t.Run(resolver+"/"+family, func(t *testing.T) {
				r := newIPv6Rig(t)
				port := r.port6
				if family == "IPv4 only" {
					port = r.port4
				}
				r.fetched(r.client(func(o *Options) {
					o.Server = r.server(port)
					if resolver == "nameservers" {
						o.Nameservers = []string{r.dns.addr}
					} else {
						// resolv.conf is there; its queries go to r.dns.
						o.dns = &dnsHost{resolvConf: conf, resolver: goResolverVia(r.dns.addr)}
					}
				}).Index(context.Background(), compat.System))
				if !r.dns.sawQuery("udp A "+testHost+".") || !r.dns.sawQuery("udp AAAA "+testHost+".") {
					t.Errorf("queries %q", r.dns.asked())
				}
			})
		}
	}
}

// TestHappyEyeballsBlackHole: an address whose packets are dropped (no
// answer, no refusal) does not hold up the next one: the other family is
// tried beside it, long before the connect timeout, and wins.
func TestHappyEyeballsBlackHole(t *testing.T) {
	r := newIPv6Rig(t)
	var mu sync.Mutex
	var events []string
	log := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	r.fetched(r.client(func(o *Options) {
		// Long enough that trying the addresses one after the other
		// would show: the hole would take half of it.
		o.ConnectTimeout = 20 * time.Second
		o.Server = r.server(r.port4)
		o.Nameservers = []string{r.dns.addr}
		o.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if netip.MustParseAddrPort(addr).Addr().Is6() {
				// ::1 comes first (RFC 6724 ranks it above
				// 127.0.0.1): the preferred family is the broken one.
				log("start ::1")
				<-ctx.Done()
				log("end ::1")
				return nil, ctx.Err()
			}
			log("start 127.0.0.1")
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			log("end 127.0.0.1")
			return c, err
		}
	}).Index(context.Background(), compat.System))
	mu.Lock()
	defer mu.Unlock()
	i, j := slices.Index(events, "start 127.0.0.1"), slices.Index(events, "end ::1")
	if len(events) == 0 || events[0] != "start ::1" || i < 0 || (j >= 0 && j < i) {
		t.Errorf("events %q: IPv4 did not start while IPv6 hung", events)
	}
}

// TestIPVersion: -4 and -6 ask DNS for that version's addresses only and
// connect only to those; a server given as an address of the other
// version is refused before anything is sent.
func TestIPVersion(t *testing.T) {
	r := newIPv6Rig(t)
	client := func(version int, port uint16, dns *dnsServer) *Client {
		return r.client(func(o *Options) {
			o.Server = r.server(port)
			o.Nameservers = []string{dns.addr}
			o.IPVersion = version
		})
	}
	r.fetched(client(6, r.port6, r.dns).Index(context.Background(), compat.System))
	if r.dns.sawQuery("udp A " + testHost + ".") {
		t.Errorf("-6 asked for IPv4 addresses: %q", r.dns.asked())
	}

	// A DNS server of its own: http.Transport may still be dialing for
	// the first client (a dial it started and no longer needs), and that
	// dial's AAAA query must not count against -4.
	dns4 := newDNSServer(t, map[string][]netip.Addr{
		testHost: {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
	})
	_, err := client(4, r.port6, dns4).Index(context.Background(), compat.System)
	wantErrText(t, err, fmt.Sprintf("connect 127.0.0.1 port %d: connection refused", r.port6))
	if strings.Contains(err.Error(), "::1") || dns4.sawQuery("udp AAAA "+testHost+".") {
		t.Errorf("-4 tried IPv6: %v; queries %q", err, dns4.asked())
	}

	before := len(r.srv.Requests())
	_, err = r.client(func(o *Options) {
		o.Server = fmt.Sprintf("http://[::1]:%d", r.port6)
		o.IPVersion = 4
		o.Attempts = 3
	}).Index(context.Background(), compat.System)
	wantErrText(t, err, "connect ::1 port", "not an address of IPv4 (-4)")
	if Classify(err) != ClassLocal || strings.Contains(err.Error(), "attempts") || len(r.srv.Requests()) != before {
		t.Errorf("%v: class %v, retried or sent", err, Classify(err))
	}

	r.fetched(r.client(func(o *Options) {
		o.Server = fmt.Sprintf("http://[::1]:%d", r.port6)
		o.IPVersion = 6
	}).Index(context.Background(), compat.System))

	if _, err := New(Options{Server: "example.org", IPVersion: 5}); err == nil {
		t.Error("IP version 5 accepted")
	}
}

// TestConnectFailureNamesEachAddress: when no address takes the
// connection, the error says, for each, which it was and what happened.
func TestConnectFailureNamesEachAddress(t *testing.T) {
	r := newIPv6Rig(t)
	// A port that neither address listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	ln.Close()
	closedPort(t, "::1", port)
	_, err = r.client(func(o *Options) {
		o.Server = r.server(port)
		o.Nameservers = []string{r.dns.addr}
	}).Index(context.Background(), compat.System)
	wantErrText(t, err, fmt.Sprintf("connect ::1 port %d: connection refused; 127.0.0.1 port %d: connection refused", port, port))
	if Classify(err) != ClassUnreachable || KindOf(err) != KindConnect || !IsUnreachable(err) {
		t.Errorf("%v: class %v, kind %v", err, Classify(err), KindOf(err))
	}
}

// TestDialRaceTimeout: addresses that never answer are each named as
// timed out, and one that the time ran out before is said to be untried.
func TestDialRaceTimeout(t *testing.T) {
	ips := []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::2")}
	hang := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	_, err := dialRace(ctx, hang, ips, "443")
	want := "connect 2001:db8::1 port 443: timed out; 192.0.2.1 port 443: timed out; 2001:db8::2 port 443: not tried: the connect timeout ended first"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v does not unwrap to the attempts' errors", err)
	}
}

// TestDialRaceClosesLosers: a connection that is made after another won
// is closed, not leaked.
func TestDialRaceClosesLosers(t *testing.T) {
	late := &closeRecorder{}
	release := make(chan struct{})
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		a, b := net.Pipe()
		a.Close()
		if network == "tcp6" {
			// The first address answers late, after the other won.
			select {
			case <-release:
			case <-time.After(5 * time.Second):
				return nil, errors.New("not released: the addresses were tried one after the other")
			}
			late.Conn = b
			return late, nil
		}
		return b, nil
	}
	ips := []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")}
	c, err := dialRace(context.Background(), dial, ips, "443")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	close(release)
	for deadline := time.Now().Add(5 * time.Second); !late.closed.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the late connection was not closed")
		}
	}
}

// closeRecorder is a connection that records being closed.
type closeRecorder struct {
	net.Conn
	closed atomic.Bool
}

func (c *closeRecorder) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func TestInterleave(t *testing.T) {
	p := netip.MustParseAddr
	got := interleave([]netip.Addr{p("2001:db8::1"), p("2001:db8::2"), p("2001:db8::3"), p("192.0.2.1"), p("192.0.2.2")})
	want := []netip.Addr{p("2001:db8::1"), p("192.0.2.1"), p("2001:db8::2"), p("192.0.2.2"), p("2001:db8::3")}
	if !slices.Equal(got, want) {
		t.Errorf("interleave: %v, want %v", got, want)
	}
	got = interleave([]netip.Addr{p("192.0.2.1"), p("2001:db8::1")})
	if got[0] != p("192.0.2.1") {
		t.Errorf("the resolver's first family does not come first: %v", got)
	}
}

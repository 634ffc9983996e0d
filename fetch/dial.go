package fetch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"
)

// connectionAttemptDelay is how long a connection attempt has on its own
// before the next address is tried beside it: RFC 8305's recommended
// Connection Attempt Delay. A host whose IPv6 route is broken (packets
// dropped, not refused) then still connects over IPv4 a quarter of a
// second later, instead of after the connect timeout.
const connectionAttemptDelay = 250 * time.Millisecond

// familyNetwork is network ("tcp") narrowed to the IP version asked for
// (Options.IPVersion: 4, 6 or 0 for both).
func familyNetwork(network string, ipVersion int) string {
	if network != "tcp" {
		return network
	}
	switch ipVersion {
	case 4:
		return "tcp4"
	case 6:
		return "tcp6"
	}
	return network
}

// lookupNetwork is the network name a resolver takes for network:
// "ip4" for "tcp4", and so on.
func lookupNetwork(network string) string {
	switch {
	case strings.HasSuffix(network, "4"):
		return "ip4"
	case strings.HasSuffix(network, "6"):
		return "ip6"
	}
	return "ip"
}

// familyName is how messages name the IP version of network, with the
// option that forces it: "IPv4 (-4)".
func familyName(network string) string {
	if strings.HasSuffix(network, "6") {
		return "IPv6 (-6)"
	}
	return "IPv4 (-4)"
}

// fitsNetwork reports whether ip can be dialed over network ("tcp",
// "tcp4" or "tcp6").
func fitsNetwork(ip netip.Addr, network string) bool {
	switch {
	case strings.HasSuffix(network, "4"):
		return ip.Unmap().Is4()
	case strings.HasSuffix(network, "6"):
		return !ip.Unmap().Is4()
	}
	return true
}

// interleave orders addresses as RFC 8305 (section 4) does: the family of
// the first address (the resolver sorts them by RFC 6724, which puts a
// family this host cannot route to last) first, then the families in
// turn, each keeping its own order.
func interleave(ips []netip.Addr) []netip.Addr {
	if len(ips) < 2 {
		return ips
	}
	first := ips[0].Is4()
	var same, other []netip.Addr
	for _, ip := range ips {
		if ip.Is4() == first {
			same = append(same, ip)
		} else {
			other = append(other, ip)
		}
	}
	out := make([]netip.Addr, 0, len(ips))
	for i := 0; i < len(same) || i < len(other); i++ {
		if i < len(same) {
			out = append(out, same[i])
		}
		if i < len(other) {
			out = append(out, other[i])
		}
	}
	return out
}

// toAddrs converts what a resolver returned, IPv4-mapped IPv6 addresses
// made plain IPv4.
func toAddrs(ips []net.IP) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// dialRace connects to one of ips on port the way RFC 8305 (happy
// eyeballs) does: the addresses in interleave's order, each started
// connectionAttemptDelay after the one before or as soon as it failed,
// the attempts running side by side; the first connection made wins and
// the others are stopped. When none connects, the error names every
// address and what went wrong with it.
func dialRace(ctx context.Context, dial dialFunc, ips []netip.Addr, port string) (net.Conn, error) {
	ips = interleave(ips)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i    int
		conn net.Conn
		err  error
	}
	results := make(chan result, len(ips))
	errs := make([]error, len(ips))
	started, pending := 0, 0
	start := func() {
		i := started
		started++
		pending++
		network := "tcp6"
		if ips[i].Is4() {
			network = "tcp4"
		}
		go func() {
			c, err := dial(ctx, network, net.JoinHostPort(ips[i].String(), port))
			results <- result{i, c, err}
		}()
	}
	start()
	next := time.NewTimer(connectionAttemptDelay)
	defer next.Stop()
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				cancel()
				// Attempts still under way may connect too: close those.
				go func(n int) {
					for ; n > 0; n-- {
						if late := <-results; late.conn != nil {
							late.conn.Close()
						}
					}
				}(pending)
				return r.conn, nil
			}
			errs[r.i] = r.err
			if started < len(ips) && ctx.Err() == nil {
				start()
				next.Reset(connectionAttemptDelay)
			}
		case <-next.C:
			if started < len(ips) && ctx.Err() == nil {
				start()
				next.Reset(connectionAttemptDelay)
			}
		}
	}
	return nil, &connectError{addrs: ips, port: port, errs: errs}
}

// A connectError is a host that no address of which accepted a
// connection. Its text names each address tried and what happened:
// "connect 2001:db8::1 port 443: network is unreachable; 192.0.2.1 port
// 443: connection refused". It unwraps to each attempt's error, so that
// errors.Is finds syscall.ECONNREFUSED and the like.
type connectError struct {
	addrs []netip.Addr
	port  string
	errs  []error // by address; nil for one never tried
}

func (e *connectError) Error() string {
	var b strings.Builder
	b.WriteString("connect ")
	for i, a := range e.addrs {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s port %s: %s", a, e.port, dialReason(e.errs[i]))
	}
	return b.String()
}

func (e *connectError) Unwrap() []error {
	var out []error
	for _, err := range e.errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// dialReason is what went wrong with one connection attempt, in a few
// words: "connection refused", "timed out".
func dialReason(err error) string {
	if err == nil {
		return "not tried: the connect timeout ended first"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timed out"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var se *os.SyscallError
		if errors.As(op.Err, &se) {
			return se.Err.Error()
		}
		return op.Err.Error()
	}
	return err.Error()
}

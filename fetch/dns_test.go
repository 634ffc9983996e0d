package fetch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch/fetchtest"
)

// testHost is a made-up name that only the test DNS servers know: a
// connection to it proves the query went to them.
const testHost = "images.lxc-download.test"

// dnsServer is a DNS server on one port of 127.0.0.1, over UDP and TCP,
// answering A and AAAA questions for the names in hosts and NXDOMAIN for
// any other. The few bytes of DNS it needs are encoded here by hand.
type dnsServer struct {
	addr string

	mu       sync.Mutex
	hosts    map[string][]netip.Addr // by lower-case name with the final dot
	truncate bool                    // UDP answers only say "truncated": ask over TCP
	silent   bool                    // read queries, answer none
	queries  []string                // "udp A images.lxc-download.test."
}

func newDNSServer(t *testing.T, hosts map[string][]netip.Addr) *dnsServer {
	t.Helper()
	d := &dnsServer{hosts: map[string][]netip.Addr{}}
	for name, addrs := range hosts {
		d.hosts[strings.ToLower(name)+"."] = addrs
	}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		// The same port over TCP, as a real server has it.
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 10 {
			t.Fatal(err)
		}
	}
	d.addr = pc.LocalAddr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.serveUDP(pc) }()
	go func() { defer wg.Done(); d.serveTCP(ln) }()
	t.Cleanup(func() { pc.Close(); ln.Close(); wg.Wait() })
	return d
}

func (d *dnsServer) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n], "udp"); resp != nil {
			pc.WriteTo(resp, from)
		}
	}
}

func (d *dnsServer) serveTCP(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			for {
				var n uint16
				if binary.Read(c, binary.BigEndian, &n) != nil {
					return
				}
				q := make([]byte, n)
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp := d.answer(q, "tcp")
				if resp == nil {
					return
				}
				c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(resp))))
				c.Write(resp)
			}
		}()
	}
}

// answer is the reply to the query q received over proto, nil for none.
func (d *dnsServer) answer(q []byte, proto string) []byte {
	if len(q) < 12 {
		return nil
	}
	// The question follows the 12-byte header: the name as length-prefixed
	// labels ending with an empty one, then the type and the class.
	var labels []string
	i := 12
	for {
		if i >= len(q) || q[i] > 63 || i+1+int(q[i]) > len(q) {
			return nil
		}
		n := int(q[i])
		if n == 0 {
			i++
			break
		}
		labels = append(labels, string(q[i+1:i+1+n]))
		i += 1 + n
	}
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	question := q[12 : i+4]
	name := strings.ToLower(strings.Join(labels, ".")) + "."
	typeName := map[uint16]string{1: "A", 28: "AAAA"}[qtype]
	if typeName == "" {
		typeName = fmt.Sprint(qtype)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries = append(d.queries, proto+" "+typeName+" "+name)
	if d.silent {
		return nil
	}
	addrs, known := d.hosts[name]
	resp := make([]byte, 12, 512)
	copy(resp, q[:2])                 // ID
	resp[2] = 0x80 | 0x04 | q[2]&0x01 // a response, authoritative, RD as asked
	resp[3] = 0x80                    // recursion available
	if !known {
		resp[3] |= 3 // NXDOMAIN
	}
	binary.BigEndian.PutUint16(resp[4:], 1)
	resp = append(resp, question...)
	if d.truncate && proto == "udp" {
		resp[2] |= 0x02
		return resp
	}
	var count uint16
	for _, a := range addrs {
		if (qtype == 1 && a.Is4()) || (qtype == 28 && a.Is6()) {
			ip := a.AsSlice()
			// A pointer to the question's name, type, class IN, TTL 60.
			resp = append(resp, 0xc0, 12, byte(qtype>>8), byte(qtype), 0, 1, 0, 0, 0, 60, 0, byte(len(ip)))
			resp = append(resp, ip...)
			count++
		}
	}
	binary.BigEndian.PutUint16(resp[6:], count)
	return resp
}

// asked returns the queries received so far.
func (d *dnsServer) asked() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.queries)
}

// set changes the server's behaviour while it runs.
func (d *dnsServer) set(f func(d *dnsServer)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *dnsServer) sawQuery(q string) bool { return slices.Contains(d.asked(), q) }

// deadAddr is a UDP address of 127.0.0.1 where nothing listens: queries
// there are refused at once.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// setHostDNS gives the rig's clients other DNS settings of the host.
func (r *dnsRig) setHostDNS(h dnsHost) { r.dns = &h }

// missingResolvConf is a host without resolv.conf and without getprop,
// whose localhost DNS servers refuse queries: what a run on it finds is
// said in the errors.
func missingResolvConf(t *testing.T) dnsHost {
	return dnsHost{
		resolvConf:     filepath.Join(t.TempDir(), "resolv.conf"),
		getprop:        []string{filepath.Join(t.TempDir(), "getprop")},
		getpropTimeout: 2 * time.Second,
		localhost:      []string{deadAddr(t)},
	}
}

// fakeGetprop writes a getprop script printing props, and logging the
// properties asked for to the file it returns the path of with the
// script's.
func fakeGetprop(t *testing.T, props map[string]string) (script, log string) {
	t.Helper()
	dir := t.TempDir()
	script, log = filepath.Join(dir, "getprop"), filepath.Join(dir, "asked")
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\necho \"$1\" >> '%s'\ncase \"$1\" in\n", log)
	for k, v := range props {
		fmt.Fprintf(&b, "%s) %s ;;\n", k, v)
	}
	b.WriteString("esac\n")
	if err := os.WriteFile(script, []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, log
}

func getpropAsked(t *testing.T, log string) string {
	data, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(data)), " ")
}

// dnsRig is an image server reached by a made-up name.
type dnsRig struct {
	t    *testing.T
	srv  *fetchtest.Server
	warn bytes.Buffer
	dns  *dnsHost // the host's DNS settings; nil: this host's
}

func newDNSRig(t *testing.T) *dnsRig {
	t.Helper()
	srv, err := fetchtest.NewServer(fetchtest.DefaultImage())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &dnsRig{t: t, srv: srv}
}

// hosts maps testHost to the server's address.
func (r *dnsRig) hosts() map[string][]netip.Addr {
	ap := netip.MustParseAddrPort(r.srv.Host)
	return map[string][]netip.Addr{testHost: {ap.Addr()}}
}

// client is a validating client of http://testHost:PORT/: the server's
// certificate is not valid for that name, so the tests of name resolution
// ask for plain HTTP (the index is checked against its signature).
func (r *dnsRig) client(mutate func(*Options)) *Client {
	r.t.Helper()
	kr, err := ReadKeyring(r.srv.KeyFile)
	if err != nil {
		r.t.Fatal(err)
	}
	pool, err := fetchtest.CertPool()
	if err != nil {
		r.t.Fatal(err)
	}
	o := Options{
		Server:         "http://" + r.named(),
		Version:        "6.0.0",
		Validate:       true,
		Keyring:        kr,
		Warn:           &r.warn,
		RootCAs:        pool,
		ConnectTimeout: 5 * time.Second,
		RetryWait:      time.Millisecond,
		Attempts:       1,
		dns:            r.dns,
	}
	if mutate != nil {
		mutate(&o)
	}
	c, err := New(o)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// named is the server's address by the name testHost.
func (r *dnsRig) named() string {
	return fmt.Sprintf("%s:%d", testHost, netip.MustParseAddrPort(r.srv.Host).Port())
}

// fetched checks that the index came from the test server over the
// connection that the name testHost led to.
func (r *dnsRig) fetched(_ *compat.Index, err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, req := range r.srv.Requests() {
		if !req.TLS && req.Status == 200 && strings.HasPrefix(req.Path, "/meta/1.0/index-system") {
			return
		}
	}
	r.t.Errorf("the server sent no index over plain HTTP: %+v", r.srv.Requests())
}

func wantErrText(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one with %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

// TestNameservers: with Options.Nameservers, names are resolved by those
// servers, over UDP and, for a truncated answer, TCP.
func TestNameservers(t *testing.T) {
	for _, truncate := range []bool{false, true} {
		t.Run(fmt.Sprintf("truncate=%v", truncate), func(t *testing.T) {
			r := newDNSRig(t)
			dns := newDNSServer(t, r.hosts())
			dns.set(func(d *dnsServer) { d.truncate = truncate })
			// Nameservers win over resolv.conf and getprop alike.
			h := missingResolvConf(t)
			script, log := fakeGetprop(t, map[string]string{"net.dns1": "echo 192.0.2.1"})
			h.getprop = []string{script}
			r.setHostDNS(h)

			r.fetched(r.client(func(o *Options) { o.Nameservers = []string{dns.addr} }).Index(context.Background(), compat.System))
			want := "udp A " + testHost + "."
			if truncate {
				want = "tcp A " + testHost + "."
			}
			if !dns.sawQuery(want) {
				t.Errorf("no %q among the queries %q", want, dns.asked())
			}
			if got := getpropAsked(t, log); got != "" {
				t.Errorf("getprop ran (%s) though nameservers were given", got)
			}
		})
	}
}

// TestNameserversWithoutValidation: over HTTPS, the connection the name
// led to is the test server's, whose certificate names another host; the
// error is the certificate's, not a resolution error.
func TestNameserversWithoutValidation(t *testing.T) {
	r := newDNSRig(t)
	dns := newDNSServer(t, r.hosts())
	_, err := r.client(func(o *Options) {
		o.Server = r.named()
		o.Validate, o.Keyring = false, nil
		o.Nameservers = []string{dns.addr}
	}).Index(context.Background(), compat.System)
	wantErrText(t, err, "certificate", "not "+testHost)
	var de *net.DNSError
	if errors.As(err, &de) {
		t.Errorf("%v: a resolution error", err)
	}
}

// TestNameserverFailover: a server that refuses is skipped for the next.
func TestNameserverFailover(t *testing.T) {
	r := newDNSRig(t)
	dns := newDNSServer(t, r.hosts())
	r.fetched(r.client(func(o *Options) {
		o.Nameservers = []string{deadAddr(t), dns.addr}
	}).Index(context.Background(), compat.System))
}

// TestNameserverDead: the error names the server that failed.
func TestNameserverDead(t *testing.T) {
	r := newDNSRig(t)
	r.setHostDNS(missingResolvConf(t))
	dead, dead2 := deadAddr(t), deadAddr(t)
	_, err := r.client(func(o *Options) { o.Nameservers = []string{dead, dead2} }).Index(context.Background(), compat.System)
	wantErrText(t, err, "lookup "+testHost+" via "+dead+": connection refused", "; via "+dead2+": connection refused")
	if strings.Contains(err.Error(), "resolv.conf") || strings.Contains(err.Error(), "--nameserver") {
		t.Errorf("%v: blames the missing resolv.conf, not the servers given", err)
	}
	if !IsUnreachable(err) {
		t.Errorf("%v: not unreachable", err)
	}
}

// TestNameserverTimeout: a server that never answers is given up when the
// connect timeout ends, and named.
func TestNameserverTimeout(t *testing.T) {
	r := newDNSRig(t)
	dns := newDNSServer(t, r.hosts())
	dns.set(func(d *dnsServer) { d.silent = true })
	_, err := r.client(func(o *Options) {
		o.Nameservers = []string{dns.addr}
		o.ConnectTimeout = 200 * time.Millisecond
	}).Index(context.Background(), compat.System)
	wantErrText(t, err, "lookup "+testHost+" via "+dns.addr+": ", "timeout")
	if len(dns.asked()) == 0 {
		t.Error("the server got no query")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%v: not a timeout", err)
	}
}

// TestNameserverNotFound: a server saying the name does not exist is
// believed: the next one is not asked, and the error is not retried.
func TestNameserverNotFound(t *testing.T) {
	r := newDNSRig(t)
	empty := newDNSServer(t, nil)
	dns := newDNSServer(t, r.hosts())
	_, err := r.client(func(o *Options) {
		o.Nameservers = []string{empty.addr, dns.addr}
		o.Attempts = 3
	}).Index(context.Background(), compat.System)
	wantErrText(t, err, "lookup "+testHost+" via "+empty.addr+": no such host")
	if strings.Contains(err.Error(), "attempts") {
		t.Errorf("%v: retried", err)
	}
	if len(dns.asked()) != 0 {
		t.Errorf("the second server was asked %q", dns.asked())
	}
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound || de.Server != empty.addr {
		t.Errorf("%v: want a *net.DNSError of %s, not found", err, empty.addr)
	}
}

// TestInvalidNameserver: a server that is not an IP address is refused
// before anything is sent.
func TestInvalidNameserver(t *testing.T) {
	r := newDNSRig(t)
	_, err := r.client(func(o *Options) {
		o.Nameservers = []string{"dns.example"}
		o.Attempts = 3
	}).Index(context.Background(), compat.System)
	wantErrText(t, err, `invalid nameserver "dns.example"`)
	if IsUnreachable(err) || strings.Contains(err.Error(), "attempts") || strings.Contains(err.Error(), "plain HTTP") {
		t.Errorf("%v: treated as a network failure", err)
	}
	if n := len(r.srv.Requests()); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

// TestGetprop: without resolv.conf, Android's net.dns1 and net.dns2 are
// used, from getprop in PATH or at a fixed path.
func TestGetprop(t *testing.T) {
	t.Run("path", func(t *testing.T) {
		r := newDNSRig(t)
		dns := newDNSServer(t, r.hosts())
		script, log := fakeGetprop(t, map[string]string{"net.dns1": "echo " + dns.addr})
		h := missingResolvConf(t)
		h.getprop = []string{"getprop", "/nonexistent/getprop"}
		r.setHostDNS(h)
		t.Setenv("PATH", filepath.Dir(script)+string(os.PathListSeparator)+os.Getenv("PATH"))
		r.fetched(r.client(nil).Index(context.Background(), compat.System))
		if !dns.sawQuery("udp A " + testHost + ".") {
			t.Errorf("queries: %q", dns.asked())
		}
		// Both are read once, whatever the number of connections.
		if got := getpropAsked(t, log); got != "net.dns1 net.dns2" {
			t.Errorf("getprop asked for %q", got)
		}
	})
	t.Run("dns2 at /system/bin", func(t *testing.T) {
		r := newDNSRig(t)
		dns := newDNSServer(t, r.hosts())
		script, _ := fakeGetprop(t, map[string]string{
			"net.dns1": "echo " + deadAddr(t),
			"net.dns2": "echo " + dns.addr,
		})
		h := missingResolvConf(t)
		h.getprop = []string{"getprop", script}
		r.setHostDNS(h)
		t.Setenv("PATH", t.TempDir())
		r.fetched(r.client(nil).Index(context.Background(), compat.System))
	})
	t.Run("error", func(t *testing.T) {
		r := newDNSRig(t)
		dead := deadAddr(t)
		script, _ := fakeGetprop(t, map[string]string{"net.dns1": "echo " + dead, "net.dns2": "echo"})
		h := missingResolvConf(t)
		h.getprop = []string{script}
		r.setHostDNS(h)
		_, err := r.client(nil).Index(context.Background(), compat.System)
		wantErrText(t, err, "lookup "+testHost+" via "+dead+" (net.dns1): ")
	})
}

// TestNoResolvConf: with neither resolv.conf nor usable properties, Go's
// default servers on localhost are asked, and the error says why and how
// to do better.
func TestNoResolvConf(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props map[string]string // nil: no getprop
		want  string
	}{
		{"no getprop", nil, " is missing: "},
		{"empty properties", map[string]string{"net.dns1": "echo", "net.dns2": "echo"}, " gives no net.dns1 or net.dns2: "},
		{"getprop fails", map[string]string{"net.dns1": "exit 1", "net.dns2": "echo not-an-address"}, " gives no net.dns1 or net.dns2: "},
		{"getprop hangs", map[string]string{"net.dns1": "exec sleep 10"}, " gives no net.dns1 or net.dns2: "},
		// A child keeps getprop's output open after getprop is killed.
		{"getprop's child hangs", map[string]string{"net.dns1": `(sleep 2; echo late > "$0.late"); echo 192.0.2.1`}, " gives no net.dns1 or net.dns2: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := missingResolvConf(t)
			if tc.props != nil {
				script, _ := fakeGetprop(t, tc.props)
				h.getprop = []string{script}
				h.getpropTimeout = 200 * time.Millisecond
			}
			r := newDNSRig(t)
			r.setHostDNS(h)
			_, err := r.client(nil).Index(context.Background(), compat.System)
			wantErrText(t, err,
				"lookup "+testHost+" via Go's default localhost:53 because "+h.resolvConf+" is missing",
				tc.want, "connection refused", "--nameserver", "DOWNLOAD_NAMESERVER")
			if _, err := os.Stat(h.getprop[0] + ".late"); err == nil {
				t.Error("the run waited for what getprop left running")
			}
		})
	}
}

// TestResolvConfPresent: with resolv.conf and a DialContext of the
// caller's, names reach DialContext, getprop is not run, and resolution
// errors name the file.
func TestResolvConfPresent(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script, log := fakeGetprop(t, map[string]string{"net.dns1": "echo 192.0.2.1"})
	r := newDNSRig(t)
	r.setHostDNS(dnsHost{resolvConf: conf, getprop: []string{script}, getpropTimeout: time.Second})
	var mu sync.Mutex
	var dialed []string
	_, err := r.client(func(o *Options) {
		o.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			// What Go's resolver says for a name that does not exist.
			return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{
				Err: "no such host", Name: testHost, Server: "192.0.2.53:53", IsNotFound: true}}
		}
	}).Index(context.Background(), compat.System)
	wantErrText(t, err, "lookup "+testHost+" via 192.0.2.53:53 from "+conf+": no such host")
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) == 0 || !strings.HasPrefix(dialed[0], testHost+":") {
		t.Errorf("DialContext got %q, want the name", dialed)
	}
	if got := getpropAsked(t, log); got != "" {
		t.Errorf("getprop ran (%s) though resolv.conf exists", got)
	}
}

// TestSystemResolver: with resolv.conf and no DialContext, names are
// resolved by Go's resolver before connecting, and its errors name the
// file.
func TestSystemResolver(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newDNSRig(t)
	dns := newDNSServer(t, r.hosts())
	r.setHostDNS(dnsHost{resolvConf: conf, resolver: goResolverVia(dns.addr)})
	r.fetched(r.client(nil).Index(context.Background(), compat.System))
	if !dns.sawQuery("udp A " + testHost + ".") {
		t.Errorf("queries: %q", dns.asked())
	}
	_, err := r.client(func(o *Options) { o.Server = "http://unknown.lxc-download.test" }).Index(context.Background(), compat.System)
	wantErrText(t, err, "lookup unknown.lxc-download.test via ", " from "+conf+": no such host")
	if KindOf(err) != KindDNS || Classify(err) != ClassUnreachable {
		t.Errorf("%v: class %v, kind %v", err, Classify(err), KindOf(err))
	}
}

// goResolverVia is Go's resolver, configured as this host's resolv.conf
// says, but sending its queries to the DNS server at addr.
func goResolverVia(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// TestNameserversDialContext: DialContext gets the addresses the servers
// gave, in turn until one connects.
func TestNameserversDialContext(t *testing.T) {
	r := newDNSRig(t)
	hosts := r.hosts()
	// 192.0.2.0/24 is for documentation: nothing answers there.
	hosts[testHost] = append([]netip.Addr{netip.MustParseAddr("192.0.2.7")}, hosts[testHost]...)
	dns := newDNSServer(t, hosts)
	var mu sync.Mutex
	var dialed []string
	r.fetched(r.client(func(o *Options) {
		o.Nameservers = []string{dns.addr}
		o.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			if strings.HasPrefix(addr, "192.0.2.7:") {
				return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("no route to host")}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}).Index(context.Background(), compat.System))
	port := netip.MustParseAddrPort(r.srv.Host).Port()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(dialed, fmt.Sprintf("127.0.0.1:%d", port)) || slices.ContainsFunc(dialed, func(a string) bool { return strings.HasPrefix(a, testHost) }) {
		t.Errorf("DialContext got %q", dialed)
	}
}

// TestOnlyFamily: tcp4 and tcp6 dial only their addresses.
func TestOnlyFamily(t *testing.T) {
	ips := []net.IP{net.ParseIP("2001:db8::1"), net.ParseIP("192.0.2.1")}
	for network, want := range map[string]int{"tcp": 2, "tcp4": 1, "tcp6": 1} {
		got := onlyFamily(ips, network)
		if len(got) != want {
			t.Errorf("%s: %v", network, got)
		}
		if network == "tcp4" && got[0].To4() == nil || network == "tcp6" && got[0].To4() != nil {
			t.Errorf("%s: %v", network, got)
		}
	}
}

func TestParseNameserver(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":             "192.0.2.1:53",
		" 192.0.2.1\n":          "192.0.2.1:53",
		"192.0.2.1:5353":        "192.0.2.1:5353",
		"2001:db8::1":           "[2001:db8::1]:53",
		"[2001:db8::1]":         "[2001:db8::1]:53",
		"[2001:db8::1]:5353":    "[2001:db8::1]:5353",
		"fe80::1%wlan0":         "[fe80::1%wlan0]:53",
		"::ffff:192.0.2.1":      "[::ffff:192.0.2.1]:53",
		"dns.example":           "",
		"dns.example:53":        "",
		"192.0.2.1:0":           "",
		"192.0.2.1:65536":       "",
		"192.0.2.1:":            "",
		"":                      "",
		"[192.0.2.1]:53 ":       "",
		"2001:db8::1:5353:1:1:": "",
	} {
		got, err := ParseNameserver(in)
		if want == "" {
			if err == nil || !strings.Contains(err.Error(), "invalid nameserver") {
				t.Errorf("ParseNameserver(%q) = %q, %v; want an error", in, got, err)
			}
			continue
		}
		if got != want || err != nil {
			t.Errorf("ParseNameserver(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzParseNameserver: what is accepted is an IP:PORT that a dialer takes,
// and parses to itself.
func FuzzParseNameserver(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "192.0.2.1:5353", "[2001:db8::1]:53", "fe80::1%eth0", "[::1]", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseNameserver(s)
		if err != nil {
			return
		}
		ap, err := netip.ParseAddrPort(got)
		if err != nil || ap.Port() == 0 {
			t.Fatalf("ParseNameserver(%q) = %q: not an IP:PORT (%v)", s, got, err)
		}
		if again, err := ParseNameserver(got); again != got || err != nil {
			t.Fatalf("ParseNameserver(%q) = %q, but that gives %q, %v", s, got, again, err)
		}
	})
}

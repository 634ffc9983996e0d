package fetchtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request is one request a server received, as its log records it.
type Request struct {
	Time   time.Time
	Method string
	// Path is the URL path with repeated slashes collapsed ("//images/x"
	// is "/images/x") and the server's prefix (SetPrefix) removed.
	Path      string
	RawPath   string // URL path as the client sent it
	Query     string
	TLS       bool   // came in over HTTPS (else plain HTTP)
	Range     string // the Range header, "" if none
	IfRange   string
	UserAgent string
	NoGeoIP   string      // the X-LXC-No-GeoIP header
	Header    http.Header // every request header
	// Status is the status sent; 0 if the connection was dropped before
	// the header went out.
	Status   int
	Location string // the Location header of a redirect
	// Bytes is how many body bytes were handed to the connection: with a
	// dropped connection, those before the drop.
	Bytes int64
}

// site is what every server of this package shares: one port on the
// loopback answering HTTPS and plain HTTP, a request log, injected faults, a rate
// limit, and the content handler of the concrete server.
type site struct {
	handler http.HandlerFunc

	mu        sync.Mutex
	log       []*Request
	faults    []*fault
	httpsDown bool
	plainDown bool
	prefix    string            // every path is served below it
	untrusted bool              // HTTPS presents a certificate no client trusts
	conns     map[net.Conn]bool // open connections: true for TLS
	rate      limiter

	ln               net.Listener   // the one port, for HTTPS and plain HTTP
	extra            []net.Listener // more addresses (Server.Listen), under mu
	tlsConfig        *tls.Config
	tlsLn, plainLn   *chanListener
	tlsSrv, plainSrv *http.Server
	host             string
	closed           chan struct{}
	closeOnce        sync.Once
}

func newSite(handler http.HandlerFunc) (*site, error) {
	p, err := testPKI()
	if err != nil {
		return nil, fmt.Errorf("fetchtest: certificates: %w", err)
	}
	s := &site{handler: handler, closed: make(chan struct{}), conns: map[net.Conn]bool{}}
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fetchtest: listen: %w", err)
	}
	s.host = s.ln.Addr().String()
	s.tlsConfig = &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			s.mu.Lock()
			untrusted := s.untrusted
			s.mu.Unlock()
			if untrusted {
				bad, err := untrustedPKI()
				if err != nil {
					return nil, err
				}
				return &bad.cert, nil
			}
			return &p.cert, nil
		},
		// HTTP/1.1 only: dropping a connection mid-body is then exactly
		// what a client sees from a failing link.
		NextProtos: []string{"http/1.1"},
	}
	s.tlsLn = &chanListener{conns: make(chan net.Conn), closed: s.closed, addr: s.ln.Addr()}
	s.plainLn = &chanListener{conns: make(chan net.Conn), closed: s.closed, addr: s.ln.Addr()}
	s.tlsSrv = &http.Server{
		Handler:   http.HandlerFunc(s.serve),
		ConnState: func(c net.Conn, st http.ConnState) { s.track(c, st, true) },
		ErrorLog:  quietLog,
	}
	s.plainSrv = &http.Server{
		Handler:   http.HandlerFunc(s.serve),
		ConnState: func(c net.Conn, st http.ConnState) { s.track(c, st, false) },
		ErrorLog:  quietLog,
	}
	go s.tlsSrv.Serve(s.tlsLn)
	go s.plainSrv.Serve(s.plainLn)
	go s.accept(s.ln)
	return s, nil
}

// listen makes the site answer on addr too.
func (s *site) listen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fetchtest: listen: %w", err)
	}
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		ln.Close()
		return "", errors.New("fetchtest: listen: the server is closed")
	default:
	}
	s.extra = append(s.extra, ln)
	s.mu.Unlock()
	go s.accept(ln)
	return ln.Addr().String(), nil
}

func (s *site) close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.ln.Close()
		s.mu.Lock()
		for _, ln := range s.extra {
			ln.Close()
		}
		s.mu.Unlock()
		s.tlsSrv.Close()
		s.plainSrv.Close()
	})
}

// accept takes the connections of a port and hands each to the HTTPS or
// the plain HTTP server by its first byte, so that a client falling back
// from https://HOST/ to http://HOST/ (as the shell template did) reaches
// the same server.
func (s *site) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go s.dispatch(c)
	}
}

func (s *site) dispatch(c net.Conn) {
	var first [1]byte
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, first[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	const tlsHandshake = 0x16
	isTLS := first[0] == tlsHandshake
	s.mu.Lock()
	down := s.plainDown
	if isTLS {
		down = s.httpsDown
	}
	s.mu.Unlock()
	if down {
		c.Close()
		return
	}
	var conn net.Conn = &peekedConn{Conn: c, first: first[0]}
	ln := s.plainLn
	if isTLS {
		conn, ln = tls.Server(conn, s.tlsConfig), s.tlsLn
	}
	select {
	case ln.conns <- conn:
	case <-s.closed:
		c.Close()
	}
}

// peekedConn gives back the byte dispatch read before the rest.
type peekedConn struct {
	net.Conn
	first  byte
	peeked bool
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if !c.peeked && len(p) > 0 {
		c.peeked = true
		p[0] = c.first
		return 1, nil
	}
	return c.Conn.Read(p)
}

// chanListener is a listener whose connections dispatch hands over.
type chanListener struct {
	conns  chan net.Conn
	closed <-chan struct{}
	addr   net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

func (s *site) track(c net.Conn, state http.ConnState, tls bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.conns[c] = tls
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

func (s *site) setPrefix(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prefix = strings.TrimSuffix(cleanPath("/"+prefix), "/")
}

func (s *site) getPrefix() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prefix
}

func (s *site) setUntrusted(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.untrusted = on
}

func (s *site) setHTTPSDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.httpsDown = down
	if down {
		s.closeConns(true)
	}
}

func (s *site) setPlainDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.plainDown = down
	if down {
		s.closeConns(false)
	}
}

// closeConns closes the open TLS or plain connections. Called with s.mu
// held.
func (s *site) closeConns(tls bool) {
	for c, isTLS := range s.conns {
		if isTLS == tls {
			c.Close()
		}
	}
}

func (s *site) requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.log))
	for i, r := range s.log {
		out[i] = *r
	}
	return out
}

// cleanPath collapses repeated slashes, as the image server does: the
// shell template asks for https://SERVER//images/... since index paths
// start with a slash.
func cleanPath(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	if p == "" {
		p = "/"
	}
	return p
}

func (s *site) serve(w http.ResponseWriter, r *http.Request) {
	path := cleanPath(r.URL.Path)
	s.mu.Lock()
	prefix := s.prefix
	s.mu.Unlock()
	outside := false
	if prefix != "" {
		rest, found := strings.CutPrefix(path, prefix)
		outside = !found || !strings.HasPrefix(rest, "/")
		if !outside {
			path = rest
		}
	}
	rec := &Request{
		Time:      time.Now(),
		Method:    r.Method,
		Path:      path,
		RawPath:   r.URL.EscapedPath(),
		Query:     r.URL.RawQuery,
		TLS:       r.TLS != nil,
		Range:     r.Header.Get("Range"),
		IfRange:   r.Header.Get("If-Range"),
		UserAgent: r.Header.Get("User-Agent"),
		NoGeoIP:   r.Header.Get("X-LXC-No-GeoIP"),
		Header:    r.Header.Clone(),
	}
	s.mu.Lock()
	s.log = append(s.log, rec)
	plan := plan{dropAfter: -1, stallAfter: -1}
	if !outside {
		plan = s.takeFaults(path)
	}
	s.mu.Unlock()

	bw := &bodyWriter{ResponseWriter: w, s: s, rec: rec, plan: plan, ctx: r.Context()}
	if outside {
		http.Error(bw, "fetchtest: not below the prefix "+prefix, http.StatusNotFound)
		return
	}
	if plan.status != 0 {
		http.Error(bw, fmt.Sprintf("fetchtest: injected %d %s", plan.status, http.StatusText(plan.status)), plan.status)
		return
	}
	if plan.ignoreRange {
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	}
	r.URL.Path = path
	s.handler(bw, r)
}

// A fault changes how the requests for a path (or, for a path ending in
// "/", every path below it) are answered, for its next `times` requests,
// or for all of them if times <= 0.
type fault struct {
	path  string
	times int

	status      int
	ignoreRange bool
	dropAfter   int64 // -1: never
	stallAfter  int64 // -1: never
	stallFor    time.Duration
	trickle     int // bytes per write; 0: no trickle
	trickleGap  time.Duration
	extraLength int64
	endless     bool
}

func (f *fault) matches(path string) bool {
	if strings.HasSuffix(f.path, "/") {
		return strings.HasPrefix(path, f.path)
	}
	return path == f.path
}

// plan is what the faults matching one request add up to.
type plan struct {
	status      int
	ignoreRange bool
	dropAfter   int64
	stallAfter  int64
	stallFor    time.Duration
	trickle     int
	trickleGap  time.Duration
	extraLength int64
	endless     bool
}

// takeFaults combines the faults matching path, using up one of each's
// times. Called with s.mu held.
func (s *site) takeFaults(path string) plan {
	p := plan{dropAfter: -1, stallAfter: -1}
	kept := s.faults[:0]
	for _, f := range s.faults {
		if !f.matches(path) {
			kept = append(kept, f)
			continue
		}
		if f.status != 0 && p.status == 0 {
			p.status = f.status
		}
		p.ignoreRange = p.ignoreRange || f.ignoreRange
		if f.dropAfter >= 0 && (p.dropAfter < 0 || f.dropAfter < p.dropAfter) {
			p.dropAfter = f.dropAfter
		}
		if f.stallAfter >= 0 {
			p.stallAfter, p.stallFor = f.stallAfter, f.stallFor
		}
		if f.trickle > 0 {
			p.trickle, p.trickleGap = f.trickle, f.trickleGap
		}
		p.extraLength += f.extraLength
		p.endless = p.endless || f.endless
		if f.times > 0 {
			f.times--
			if f.times == 0 {
				continue
			}
		}
		kept = append(kept, f)
	}
	clear(s.faults[len(kept):])
	s.faults = kept
	return p
}

func (s *site) addFault(f fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

func (s *site) clearFaults(paths []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(paths) == 0 {
		s.faults = nil
		return
	}
	kept := s.faults[:0]
	for _, f := range s.faults {
		drop := false
		for _, p := range paths {
			if f.path == p {
				drop = true
			}
		}
		if !drop {
			kept = append(kept, f)
		}
	}
	clear(s.faults[len(kept):])
	s.faults = kept
}

// bodyWriter applies a request's faults and the rate limit to the
// response, and records its status and body bytes in the log.
type bodyWriter struct {
	http.ResponseWriter
	s       *site
	rec     *Request
	plan    plan
	ctx     context.Context
	sent    int64
	stalled bool
	header  bool
}

func (w *bodyWriter) WriteHeader(status int) {
	if w.header {
		return
	}
	w.header = true
	h := w.Header()
	if w.plan.extraLength > 0 {
		if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil {
			h.Set("Content-Length", strconv.FormatInt(n+w.plan.extraLength, 10))
		}
	}
	w.s.mu.Lock()
	w.rec.Status = status
	w.rec.Location = h.Get("Location")
	w.s.mu.Unlock()
	w.ResponseWriter.WriteHeader(status)
}

// chunk is the most a bodyWriter hands the connection at once, so that the
// rate limit and the faults act at a fine grain.
const chunk = 16 << 10

func (w *bodyWriter) Write(p []byte) (int, error) {
	if !w.header {
		w.WriteHeader(http.StatusOK)
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), chunk)
		if w.plan.trickle > 0 {
			n = min(n, w.plan.trickle)
		}
		if w.plan.dropAfter >= 0 && w.sent+int64(n) > w.plan.dropAfter {
			n = int(w.plan.dropAfter - w.sent)
		}
		if !w.stalled && w.plan.stallAfter >= 0 && w.sent+int64(n) > w.plan.stallAfter {
			n = int(w.plan.stallAfter - w.sent)
		}
		if n > 0 {
			if err := w.s.rate.wait(w.ctx, w.s.closed, n); err != nil {
				return written, err
			}
			w.count(n)
			m, err := w.ResponseWriter.Write(p[:n])
			written += m
			if m < n {
				w.count(m - n)
			}
			if err != nil {
				return written, err
			}
			p = p[n:]
		}
		if w.plan.dropAfter >= 0 && w.sent >= w.plan.dropAfter {
			w.flush()
			// Ends the response without a proper end: net/http closes the
			// connection, and the client sees a short body.
			panic(http.ErrAbortHandler)
		}
		if !w.stalled && w.plan.stallAfter >= 0 && w.sent >= w.plan.stallAfter {
			w.stalled = true
			w.flush()
			if err := w.sleep(w.plan.stallFor); err != nil {
				return written, err
			}
		}
		if w.plan.trickle > 0 && n > 0 {
			w.flush()
			if err := w.sleep(w.plan.trickleGap); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (w *bodyWriter) count(n int) {
	w.sent += int64(n)
	w.s.mu.Lock()
	w.rec.Bytes += int64(n)
	w.s.mu.Unlock()
}

func (w *bodyWriter) flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Flush lets handlers push what they wrote.
func (w *bodyWriter) Flush() { w.flush() }

var errServerClosed = errors.New("fetchtest: server closed")

// sleep waits d, or less if the client goes away or the server closes.
func (w *bodyWriter) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	case <-w.s.closed:
		return errServerClosed
	}
}

// limiter spreads the bodies of all of a site's responses over time so
// that together they go no faster than rate bytes per second, like a
// shared link.
type limiter struct {
	mu   sync.Mutex
	rate int64
	next time.Time
}

func (l *limiter) set(rate int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = rate
	l.next = time.Time{}
}

// limiterSlack is how far behind its schedule a limited link may be and
// still catch up.
const limiterSlack = 50 * time.Millisecond

// wait returns once n more bytes fit in the rate.
func (l *limiter) wait(ctx context.Context, closed <-chan struct{}, n int) error {
	l.mu.Lock()
	if l.rate <= 0 {
		l.mu.Unlock()
		return nil
	}
	// A writer that is late by a little (the write itself, the timer's
	// granularity) catches up, as a link's buffer would let it: resetting
	// the schedule at every late chunk lost that time for good, and a
	// "20 MB/s" link gave 14. Only a link idle for longer starts afresh.
	now := time.Now()
	if l.next.Before(now.Add(-limiterSlack)) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(int64(n) * int64(time.Second) / l.rate))
	until := l.next
	l.mu.Unlock()
	d := time.Until(until)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return errServerClosed
	}
}

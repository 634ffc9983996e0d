package fetchtest

import "time"

// Faults. Each applies to the requests for one path or, when the path ends
// in "/", to every path below it ("/" is the whole server). Those taking a
// times argument apply to that many requests and then go away; times <= 0
// means every request until ClearFaults. Several faults on the same
// request combine. They apply before redirects, to HTTPS and plain HTTP.

// Fail answers every request for p with status until ClearFaults.
func (s *Server) Fail(p string, status int) { s.FailN(p, status, 0) }

// FailN answers the next n requests for p with status; later ones succeed.
func (s *Server) FailN(p string, status int, n int) {
	s.site.addFault(fault{path: p, times: n, status: status, dropAfter: -1, stallAfter: -1})
}

// DropAfter makes the next `times` responses for p send their header
// (with the full Content-Length) and only n bytes of body, then close the
// connection.
func (s *Server) DropAfter(p string, n int64, times int) {
	s.site.addFault(fault{path: p, times: times, dropAfter: n, stallAfter: -1})
}

// Stall makes the next `times` responses for p send n bytes of body, then
// nothing for d, then the rest (unless the client has gone away by then):
// a link that hangs, for idle timeouts.
func (s *Server) Stall(p string, n int64, d time.Duration, times int) {
	s.site.addFault(fault{path: p, times: times, dropAfter: -1, stallAfter: n, stallFor: d})
}

// Trickle makes the next `times` responses for p send their body
// `bytes` at a time with a pause of gap after each: a slow link that still
// moves.
func (s *Server) Trickle(p string, bytes int, gap time.Duration, times int) {
	if bytes <= 0 {
		bytes = 1
	}
	s.site.addFault(fault{path: p, times: times, dropAfter: -1, stallAfter: -1, trickle: bytes, trickleGap: gap})
}

// LongContentLength makes the next `times` responses for p announce a
// Content-Length extra bytes longer than the body they send; the
// connection is closed after the body.
func (s *Server) LongContentLength(p string, extra int64, times int) {
	s.site.addFault(fault{path: p, times: times, dropAfter: -1, stallAfter: -1, extraLength: extra})
}

// IgnoreRange makes the server answer the next `times` requests for p with
// the whole file and status 200, whatever their Range header says.
func (s *Server) IgnoreRange(p string, times int) {
	s.site.addFault(fault{path: p, times: times, dropAfter: -1, stallAfter: -1, ignoreRange: true})
}

// EndlessBody makes the next `times` responses for p a 200 with no
// Content-Length whose body is the file's bytes (none if p does not
// exist) followed by zero bytes for ever, until the client goes away: a
// hostile mirror filling the client's disk. Range requests are ignored.
func (s *Server) EndlessBody(p string, times int) {
	s.site.addFault(fault{path: p, times: times, dropAfter: -1, stallAfter: -1, endless: true})
}

// ClearFaults removes the faults set on the given paths (exactly those
// paths, as they were given), or every fault if none is given.
func (s *Server) ClearFaults(paths ...string) { s.site.clearFaults(paths) }

// SetRateLimit limits the bodies of all responses together to
// bytesPerSecond, like a shared link; 0 removes the limit.
func (s *Server) SetRateLimit(bytesPerSecond int64) { s.site.rate.set(bytesPerSecond) }

// SetHTTPSDown makes the server close every HTTPS connection (those open,
// and each new one before its TLS handshake) while down is true; plain
// HTTP on the same port keeps working.
func (s *Server) SetHTTPSDown(down bool) { s.site.setHTTPSDown(down) }

// RedirectImages makes the server answer every request under /images/
// with a 302 redirect to base + path (e.g. a mirror's URL or HTTPURL),
// except requests carrying "X-LXC-No-GeoIP: on", as the real server sends
// clients to a regional mirror. An empty base stops redirecting.
func (s *Server) RedirectImages(base string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redirect = base
}

// RedirectImagesToHTTP makes the server answer HTTPS requests under
// /images/ with a 302 redirect to the same path on its own plain HTTP
// (HTTPURL), except requests carrying "X-LXC-No-GeoIP: on": a mirror, or
// an attacker, downgrading the download of image files. Plain HTTP
// requests are served. false stops it.
func (s *Server) RedirectImagesToHTTP(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redirectHTTP = on
}

// SetPrefix makes the server publish everything under prefix (e.g.
// "/lxc-images"), as a mirror does for --server HOST/lxc-images: a request
// for prefix+P is answered as one for P, any other with 404 (and logged
// with its path as it came, faults left alone). The request log, faults,
// Get and Set keep using the paths without the prefix (Request.RawPath
// has the path as sent). "" serves at the root again.
func (s *Server) SetPrefix(prefix string) { s.site.setPrefix(prefix) }

// SetUntrustedCertificate makes HTTPS present, on connections made from
// then on, a certificate for the same names signed by an authority that
// no client trusts (not the one in CAFile), as an attacker on the path
// would; plain HTTP on the same port keeps answering. false restores the
// real certificate.
func (s *Server) SetUntrustedCertificate(on bool) { s.site.setUntrusted(on) }

// NewMirror starts a mirror of primary: a server of its own holding copies
// of everything primary serves (signed by primary's key), whose content can
// then be changed independently, and makes primary redirect its /images/
// requests to the mirror's HTTPS URL.
func NewMirror(primary *Server) (*Server, error) {
	m, err := newServer(primary.Key)
	if err != nil {
		return nil, err
	}
	primary.mu.Lock()
	for p, o := range primary.objects {
		m.objects[p] = o // objects are never changed in place
	}
	m.images = append(m.images, primary.images...)
	primary.mu.Unlock()
	primary.RedirectImages(m.URL)
	return m, nil
}

// SetHTTPDown does the same to plain HTTP connections.
func (s *Server) SetHTTPDown(down bool) { s.site.setPlainDown(down) }

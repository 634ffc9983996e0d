package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A sink receives the bytes of one transfer.
type sink interface {
	io.Writer
	// Len is how many bytes it holds: where a resumed request starts.
	Len() int64
	// Reset throws everything away, for a transfer that starts over.
	Reset() error
}

// memSink keeps a small file in memory, refusing more than limit bytes.
type memSink struct {
	name  string
	limit int64
	buf   bytes.Buffer
}

func (m *memSink) Write(p []byte) (int, error) {
	if int64(m.buf.Len())+int64(len(p)) > m.limit {
		return 0, &localError{fmt.Errorf("%s is larger than %d bytes", m.name, m.limit)}
	}
	return m.buf.Write(p)
}

func (m *memSink) Len() int64   { return int64(m.buf.Len()) }
func (m *memSink) Reset() error { m.buf.Reset(); return nil }

// transfer is one file coming from the server, over as many attempts as it
// takes: retries with backoff, Range requests to continue where an attempt
// stopped, and a mirror's failure answered by asking the primary server.
// It always speaks the scheme the server was given with: a failure over
// HTTPS is never tried again over plain HTTP.
type transfer struct {
	c    *Client
	path string // on the server below its prefix, e.g. "/images/.../rootfs.tar.xz"
	name string // for messages
	// primary keeps the transfer on the primary server: the No-GeoIP
	// header from the first attempt and no redirect to another host.
	primary bool
	sink    sink

	// limit is the most bytes the file may have (0: only the sink's own
	// limit), and limitOption the option that sets it, for the error.
	limit       int64
	limitOption string
	// disk, when set, keeps the free space of the file's filesystem
	// above a reserve.
	disk *diskGuard

	// validator is the strong ETag or the Last-Modified of the copy the
	// sink holds, sent as If-Range so a changed file is sent whole.
	validator string
	// total is the file's size as the server announced it; -1 unknown.
	total int64
	// mirror is the mirror that served bytes now in the sink.
	mirror string

	// cond, when set, makes a request for the whole file conditional on
	// the copy the caller holds (If-None-Match, If-Modified-Since): a 304
	// answer ends the transfer with notModified set and the sink empty.
	cond        *Validator
	notModified bool
	// got are the validators of the answer that filled the sink (or of
	// the 304 answer).
	got Validator

	// onResponse runs when an attempt's response is accepted, before its
	// body is read (the file download records its validators there).
	onResponse func() error
	progress   *fileProgress
	buf        []byte
}

// getSmall fetches a small file from the primary server into memory.
func (c *Client) getSmall(ctx context.Context, path string, limit int64) ([]byte, error) {
	r := c.getSmallIf(ctx, smallFile{path, limit}, nil)
	return r.data, r.err
}

// getSmallIf fetches f from the primary server into memory, on condition
// that it changed since the copy of cond, when cond is not nil.
func (c *Client) getSmallIf(ctx context.Context, f smallFile, cond *Validator) smallResult {
	m := &memSink{name: f.path, limit: f.limit}
	t := &transfer{c: c, path: cleanPath(f.path), name: f.path, primary: true, sink: m, total: -1, cond: cond}
	if err := t.run(ctx); err != nil {
		return smallResult{err: err}
	}
	if t.notModified {
		return smallResult{got: t.got, notModified: true}
	}
	data := m.buf.Bytes()
	if data == nil {
		// An empty file is there all the same.
		data = []byte{}
	}
	return smallResult{data: data, got: t.got}
}

// smallFile is a small file to fetch from the primary server, and the
// most bytes it may have.
type smallFile struct {
	path  string
	limit int64
}

// smallResult is what getSmallAll got for one smallFile.
type smallResult struct {
	data []byte
	err  error
	// got are the validators the server sent with the file.
	got Validator
	// notModified says the server answered a conditional request with
	// 304: the caller's copy is current, and data is nil.
	notModified bool
	// absent marks an optional file of a listing that the server does
	// not have (see askListing).
	absent bool
}

// getSmallAll fetches files at once, each as getSmall would, and returns
// their results in the same order. Callers look at the results in order,
// so that which error is reported does not depend on which answer came
// first.
func (c *Client) getSmallAll(ctx context.Context, files []smallFile) []smallResult {
	return c.getSmallAllIf(ctx, files, nil)
}

// getSmallAllIf is getSmallAll with conditions: conds[i], when conds is
// not nil and conds[i] is not, makes the request for files[i]
// conditional (see getSmallIf).
func (c *Client) getSmallAllIf(ctx context.Context, files []smallFile, conds []*Validator) []smallResult {
	got := make([]smallResult, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cond *Validator
			if conds != nil {
				cond = conds[i]
			}
			got[i] = c.getSmallIf(ctx, f, cond)
		}()
	}
	wg.Wait()
	return got
}

// run makes the attempts. An attempt that moved the download forward
// resets the count of failures, so a link that drops every few megabytes
// still finishes.
func (t *transfer) run(ctx context.Context) error {
	noGeoIP := t.primary
	failed, total := 0, 0
	for {
		if failed > 0 {
			if err := sleep(ctx, backoff(t.c.o.RetryWait, failed)); err != nil {
				return &stoppedError{url: t.c.urlFor(t.path), err: err}
			}
		}
		before := t.sink.Len()
		total++
		res, err := t.attempt(ctx, noGeoIP)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return &stoppedError{url: t.c.urlFor(t.path), err: context.Cause(ctx)}
		}
		var le *localError
		if !t.c.server.is(res.from) && !noGeoIP && !errors.As(err, &le) {
			if isLimit(err) {
				// What the mirror sent is no part of the file.
				if rerr := t.sink.Reset(); rerr != nil {
					return rerr
				}
				t.mirror, t.validator, t.total = "", "", -1
			}
			t.c.warnOnce("mirror-failed "+mirrorName(res.from)+" "+t.path,
				"Mirror %s failed to serve %s (%v); downloading it from %s", mirrorName(res.from), t.name, err, t.c.server)
			noGeoIP = true
			failed = 0
			continue
		}
		if t.sink.Len() > before {
			failed = 0
		}
		failed++
		if !retryable(err) || failed >= t.c.o.Attempts {
			return t.final(err, res.from, total)
		}
	}
}

// isLimit reports an error of a limit this host sets on downloads.
func isLimit(err error) bool {
	var sl *SizeLimitError
	var dr *DiskReserveError
	return errors.As(err, &sl) || errors.As(err, &dr)
}

// mirrorName is how a warning names a mirror: its host, with the scheme
// when it is plain HTTP.
func mirrorName(u *url.URL) string {
	if u == nil {
		return "?"
	}
	if u.Scheme == "https" {
		return u.Host
	}
	return u.Scheme + "://" + u.Host
}

// final is the error of a transfer that ran out of attempts.
func (t *transfer) final(err error, from *url.URL, attempts int) error {
	var se *StatusError
	var le *localError
	if errors.As(err, &se) || errors.As(err, &le) || isLimit(err) || !(isNetFailure(err) || errors.Is(err, errRestart)) {
		return err
	}
	u := t.c.urlFor(t.path)
	if from != nil && !t.c.server.is(from) {
		u = mirrorName(from) + " for " + u
	}
	return &NetError{URL: u, Attempts: attempts, Err: err, now: t.c.o.now()}
}

// backoff is the pause before the next attempt after failed ones.
func backoff(first time.Duration, failed int) time.Duration {
	d := first << (failed - 1)
	if d > 30*time.Second || d <= 0 {
		d = 30 * time.Second
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// attemptResult is what an attempt tells besides its error.
type attemptResult struct {
	// from is where the answer or the failure came from: the primary
	// server or, after a redirect, a mirror.
	from *url.URL
}

// idleWatch aborts an attempt that receives nothing for a while.
type idleWatch struct {
	parent context.Context // the caller's
	ctx    context.Context // the attempt's, cancelled with idle as cause
	idle   *IdleError
	timer  *time.Timer
}

// poke says data arrived: the wait starts again.
func (w *idleWatch) poke() { w.timer.Reset(w.idle.Duration) }

// explain replaces the error of an attempt the watch aborted (the client
// only says "context canceled").
func (w *idleWatch) explain(err error) error {
	if w.parent.Err() == nil && context.Cause(w.ctx) == w.idle {
		return w.idle
	}
	return err
}

// attempt makes one request and copies its body into the sink.
func (t *transfer) attempt(ctx context.Context, noGeoIP bool) (attemptResult, error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := &idleWatch{parent: ctx, ctx: actx, idle: &IdleError{Duration: t.c.o.IdleTimeout}}
	w.timer = time.AfterFunc(w.idle.Duration, func() { cancel(w.idle) })
	defer w.timer.Stop()

	resp, res, err := t.send(w, noGeoIP)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	done, err := t.accept(resp)
	if err != nil || done {
		return res, err
	}
	return res, t.copyBody(resp, w)
}

// send makes the request, asking for the rest of what the sink holds.
func (t *transfer) send(w *idleWatch, noGeoIP bool) (*http.Response, attemptResult, error) {
	u := t.c.urlFor(t.path)
	res := attemptResult{}
	res.from, _ = url.Parse(u)
	req, err := http.NewRequestWithContext(w.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, res, &localError{err}
	}
	req.Header.Set("User-Agent", t.c.userAgent)
	if noGeoIP {
		req.Header.Set("X-LXC-No-GeoIP", "on")
	}
	off := t.sink.Len()
	if off == 0 && t.cond != nil {
		if t.cond.ETag != "" {
			req.Header.Set("If-None-Match", t.cond.ETag)
		}
		if t.cond.LastModified != "" {
			req.Header.Set("If-Modified-Since", t.cond.LastModified)
		}
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		if t.validator != "" {
			req.Header.Set("If-Range", t.validator)
		}
		t.c.verbose("Download file: %s (from byte %d)", u, off)
	} else {
		t.c.verbose("Download file: %s", u)
	}
	hc := t.c.hc
	if t.primary {
		hc = t.c.hcPrimary
	}
	// A failure during the TLS handshake is said to be one, whatever its
	// type: a timeout or a dropped connection there is not the network's.
	var handshake handshakeWatch
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), handshake.trace()))
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			if pu, perr := url.Parse(ue.URL); perr == nil && pu.Host != "" {
				res.from = pu
			}
		}
		err = handshake.explain(w.explain(unwrapURLError(err)))
		if !isNetFailure(err) {
			// A refused redirect, say: name the file it was for.
			err = fmt.Errorf("download %s: %w", u, err)
		}
		return nil, res, err
	}
	res.from = resp.Request.URL
	return resp, res, nil
}

// accept checks a response before its body is read: its status, its
// range, and its announced size against the limits. done is set when the
// sink already holds the whole file.
func (t *transfer) accept(resp *http.Response) (done bool, err error) {
	off := t.sink.Len()
	total := t.total
	switch {
	case resp.StatusCode == http.StatusOK:
		if off > 0 {
			// The server ignored the range, or If-Range said the file
			// changed: what arrives is the whole file.
			if err := t.restart(); err != nil {
				return false, err
			}
			off = 0
		}
		total = resp.ContentLength
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off || (size >= 0 && total >= 0 && size != total) {
			if err := t.restart(); err != nil {
				return false, err
			}
			return false, errRestart
		}
		if size >= 0 {
			total = size
		}
	case resp.StatusCode == http.StatusNotModified && t.cond != nil && off == 0:
		t.notModified = true
		t.got = validatorsOf(resp.Header)
		return true, nil
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && off > 0:
		if size, ok := unsatisfiedSize(resp.Header.Get("Content-Range")); ok && size == off {
			// Everything had arrived: the previous attempt only missed
			// the end of the response (a Content-Length that promised
			// more than the file).
			t.total = size
			return true, nil
		}
		// The file is shorter than what is held: it changed.
		if err := t.restart(); err != nil {
			return false, err
		}
		return false, errRestart
	default:
		return false, &StatusError{URL: resp.Request.URL.String(), StatusCode: resp.StatusCode}
	}
	if t.limit > 0 && total > t.limit {
		return false, &SizeLimitError{File: t.name, Limit: t.limit, Option: t.limitOption,
			Size: total, Announced: true, URL: resp.Request.URL.String()}
	}
	if t.disk != nil {
		need := int64(0)
		if total >= 0 {
			need = total - off
		}
		if err := t.disk.fits(need); err != nil {
			return false, err
		}
	}
	t.total = total
	t.validator = validatorOf(resp.Header)
	t.got = validatorsOf(resp.Header)
	if !t.c.server.is(resp.Request.URL) {
		t.mirror = mirrorName(resp.Request.URL)
	}
	if t.onResponse != nil {
		if err := t.onResponse(); err != nil {
			return false, err
		}
	}
	t.progress.start(t.total, off)
	return false, nil
}

// restart throws away what the sink holds: the next bytes are the file's
// first.
func (t *transfer) restart() error {
	if err := t.sink.Reset(); err != nil {
		return err
	}
	t.mirror = ""
	return nil
}

// copyBody copies a response body into the sink, within the size limit
// and the disk's reserve.
func (t *transfer) copyBody(resp *http.Response, w *idleWatch) error {
	if t.buf == nil {
		t.buf = make([]byte, 128<<10)
	}
	for {
		n, rerr := resp.Body.Read(t.buf)
		if n > 0 {
			w.poke()
			if t.limit > 0 && t.sink.Len()+int64(n) > t.limit {
				return &SizeLimitError{File: t.name, Limit: t.limit, Option: t.limitOption,
					Size: t.sink.Len() + int64(n), URL: resp.Request.URL.String()}
			}
			if t.disk != nil {
				if err := t.disk.wrote(int64(n)); err != nil {
					return err
				}
			}
			if _, werr := t.sink.Write(t.buf[:n]); werr != nil {
				return werr
			}
			t.progress.add(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return w.explain(rerr)
		}
	}
	if t.total >= 0 && t.sink.Len() != t.total {
		return fmt.Errorf("got %d of %d bytes: %w", t.sink.Len(), t.total, io.ErrUnexpectedEOF)
	}
	return nil
}

// handshakeWatch follows the TLS handshakes of one request. A handshake
// that is not this request's (a connection dialled for it that another
// request's idle one replaced) may end at any time: only an error the
// request failed with is looked for.
type handshakeWatch struct {
	mu     sync.Mutex
	failed []error // the errors handshakes ended with
}

func (w *handshakeWatch) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			if err != nil {
				w.mu.Lock()
				w.failed = append(w.failed, err)
				w.mu.Unlock()
			}
		},
	}
}

// explain marks err as a failure of the TLS handshake when it is one a
// handshake ended with.
func (w *handshakeWatch) explain(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, hs := range w.failed {
		if errors.Is(err, hs) {
			return &tlsError{err}
		}
	}
	return err
}

// validatorOf picks what If-Range can use: a strong ETag, else the
// modification time.
func validatorOf(h http.Header) string {
	if etag := h.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		return etag
	}
	return h.Get("Last-Modified")
}

// parseContentRange reads "bytes START-END/SIZE"; size is -1 for "*".
func parseContentRange(v string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	first, last, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	size = -1
	if sz != "*" {
		n, err := strconv.ParseInt(sz, 10, 64)
		if err != nil || n <= end {
			return 0, 0, false
		}
		size = n
	}
	return start, size, true
}

// unsatisfiedSize reads the "bytes */SIZE" of a 416 answer.
func unsatisfiedSize(v string) (int64, bool) {
	sz, found := strings.CutPrefix(v, "bytes */")
	if !found {
		return 0, false
	}
	n, err := strconv.ParseInt(sz, 10, 64)
	return n, err == nil && n >= 0
}

package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
// stopped, a mirror's failure answered by asking the primary server, and
// plain HTTP when HTTPS cannot connect (validating only).
type transfer struct {
	c    *Client
	path string // on the server, e.g. "/images/.../rootfs.tar.xz"
	name string // for messages
	// primary keeps the transfer on the primary server: the No-GeoIP
	// header from the first attempt and no redirect to another host.
	primary bool
	sink    sink

	// validator is the strong ETag or the Last-Modified of the copy the
	// sink holds, sent as If-Range so a changed file is sent whole.
	validator string
	// total is the file's size as the server announced it; -1 unknown.
	total int64
	// mirror is the mirror host that served bytes now in the sink.
	mirror string

	// onResponse runs when an attempt's response is accepted, before its
	// body is read (the file download records its validators there).
	onResponse func() error
	progress   *fileProgress
	buf        []byte
}

// getSmall fetches a small file from the primary server into memory.
func (c *Client) getSmall(ctx context.Context, path string, limit int64) ([]byte, error) {
	m := &memSink{name: path, limit: limit}
	t := &transfer{c: c, path: cleanPath(path), name: path, primary: true, sink: m, total: -1}
	if err := t.run(ctx); err != nil {
		return nil, err
	}
	return m.buf.Bytes(), nil
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
}

// getSmallAll fetches files at once, each as getSmall would, and returns
// their results in the same order. Callers look at the results in order,
// so that which error is reported does not depend on which answer came
// first.
func (c *Client) getSmallAll(ctx context.Context, files []smallFile) []smallResult {
	got := make([]smallResult, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i].data, got[i].err = c.getSmall(ctx, f.path, f.limit)
		}()
	}
	wg.Wait()
	return got
}

// run transfers the file, falling back to plain HTTP when validating and
// HTTPS cannot connect to the server at all.
func (t *transfer) run(ctx context.Context) error {
	scheme := t.c.scheme()
	err := t.runScheme(ctx, scheme)
	if err == nil || scheme != "https" || !t.c.o.Validate {
		return err
	}
	var ne *NetError
	if !errors.As(err, &ne) || !ne.noResponse || isDNSFailure(ne.Err) {
		return err
	}
	if perr := t.runScheme(ctx, "http"); perr != nil {
		return fmt.Errorf("%w; over plain HTTP: %v", err, perr)
	}
	t.c.mu.Lock()
	t.c.plain = true
	t.c.mu.Unlock()
	t.c.warnOnce("http", "Failed to download the file over HTTPs (%v); using plain HTTP, where signatures are still checked but an older signed file could be replayed", ne.Err)
	return nil
}

// runScheme makes the attempts over one scheme. An attempt that moved the
// download forward restarts the count: a link that drops every few
// megabytes still finishes.
func (t *transfer) runScheme(ctx context.Context, scheme string) error {
	noGeoIP := t.primary
	failed, total := 0, 0
	primaryAnswered := false
	for {
		if failed > 0 {
			if err := sleep(ctx, backoff(t.c.o.RetryWait, failed)); err != nil {
				return &stoppedError{url: t.c.urlFor(scheme, t.path), err: err}
			}
		}
		before := t.sink.Len()
		total++
		served, answered, err := t.attempt(ctx, scheme, noGeoIP)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return &stoppedError{url: t.c.urlFor(scheme, t.path), err: context.Cause(ctx)}
		}
		var le *localError
		if !t.c.isPrimary(served) && !noGeoIP && !errors.As(err, &le) {
			t.c.warnOnce("mirror-failed "+served+" "+t.path,
				"Mirror %s failed to serve %s (%v); downloading it from %s", served, t.name, err, t.c.host)
			noGeoIP = true
			failed = 0
			continue
		}
		if answered && t.c.isPrimary(served) {
			primaryAnswered = true
		}
		if t.sink.Len() > before {
			failed = 0
		}
		failed++
		if !retryable(err) || failed >= t.c.o.Attempts {
			return t.final(err, served, scheme, total, primaryAnswered)
		}
	}
}

// final is the error of a transfer that ran out of attempts.
func (t *transfer) final(err error, served, scheme string, attempts int, primaryAnswered bool) error {
	var se *StatusError
	var le *localError
	if errors.As(err, &se) || errors.As(err, &le) || !(isNetFailure(err) || errors.Is(err, errRestart)) {
		return err
	}
	u := t.c.urlFor(scheme, t.path)
	if served != "" && !t.c.isPrimary(served) {
		u = served + " for " + u
	}
	return &NetError{URL: u, Attempts: attempts, Err: err, noResponse: !primaryAnswered}
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

// attempt makes one request and copies its body into the sink. It returns
// the host that answered or failed (a mirror after a redirect) and whether
// an HTTP response came at all.
func (t *transfer) attempt(ctx context.Context, scheme string, noGeoIP bool) (string, bool, error) {
	u := t.c.urlFor(scheme, t.path)
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := &IdleError{Duration: t.c.o.IdleTimeout}
	timer := time.AfterFunc(idle.Duration, func() { cancel(idle) })
	defer timer.Stop()
	// stalled replaces the error of an attempt the idle timer aborted
	// (the client only says "context canceled").
	stalled := func(err error) error {
		if ctx.Err() == nil && context.Cause(actx) == idle {
			return idle
		}
		return err
	}

	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return t.c.host, false, &localError{err}
	}
	req.Header.Set("User-Agent", t.c.userAgent)
	if noGeoIP {
		req.Header.Set("X-LXC-No-GeoIP", "on")
	}
	off := t.sink.Len()
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		if t.validator != "" {
			req.Header.Set("If-Range", t.validator)
		}
	}
	if off > 0 {
		t.c.verbose("Download file: %s (from byte %d)", u, off)
	} else {
		t.c.verbose("Download file: %s", u)
	}
	hc := t.c.hc
	if t.primary {
		hc = t.c.hcPrimary
	}
	resp, err := hc.Do(req)
	if err != nil {
		host := t.c.host
		var ue *url.Error
		if errors.As(err, &ue) {
			if pu, perr := url.Parse(ue.URL); perr == nil && pu.Host != "" {
				host = pu.Host
			}
		}
		err = stalled(unwrapURLError(err))
		if !isNetFailure(err) {
			// A refused redirect, say: name the file it was for.
			err = fmt.Errorf("download %s: %w", u, err)
		}
		return host, false, err
	}
	defer resp.Body.Close()
	served := resp.Request.URL.Host

	switch {
	case resp.StatusCode == http.StatusOK:
		if off > 0 {
			// The server ignored the range, or If-Range said the file
			// changed: what arrives is the whole file.
			if err := t.sink.Reset(); err != nil {
				return served, true, err
			}
			off = 0
			t.mirror = ""
		}
		t.total = resp.ContentLength
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off || (size >= 0 && t.total >= 0 && size != t.total) {
			if err := t.sink.Reset(); err != nil {
				return served, true, err
			}
			t.mirror = ""
			return served, true, errRestart
		}
		if size >= 0 {
			t.total = size
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && off > 0:
		if size, ok := unsatisfiedSize(resp.Header.Get("Content-Range")); ok && size == off {
			// Everything had arrived: the previous attempt only missed
			// the end of the response (a Content-Length that promised
			// more than the file).
			t.total = size
			return served, true, nil
		}
		// The file is shorter than what is held: it changed.
		if err := t.sink.Reset(); err != nil {
			return served, true, err
		}
		t.mirror = ""
		return served, true, errRestart
	default:
		return served, true, &StatusError{URL: resp.Request.URL.String(), StatusCode: resp.StatusCode}
	}
	t.validator = validatorOf(resp.Header)
	if !t.c.isPrimary(served) {
		t.mirror = served
	}
	if t.onResponse != nil {
		if err := t.onResponse(); err != nil {
			return served, true, err
		}
	}
	t.progress.start(t.total, off)

	if t.buf == nil {
		t.buf = make([]byte, 128<<10)
	}
	for {
		n, rerr := resp.Body.Read(t.buf)
		if n > 0 {
			timer.Reset(idle.Duration)
			if _, werr := t.sink.Write(t.buf[:n]); werr != nil {
				return served, true, werr
			}
			t.progress.add(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return served, true, stalled(rerr)
		}
	}
	if t.total >= 0 && t.sink.Len() != t.total {
		return served, true, fmt.Errorf("got %d of %d bytes: %w", t.sink.Len(), t.total, io.ErrUnexpectedEOF)
	}
	return served, true, nil
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

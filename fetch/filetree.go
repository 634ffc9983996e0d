package fetch

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fileTransport serves the requests of a file:// server from a mirror
// tree on this host (a USB stick, an NFS share), as a web server on it
// would: the same statuses (404 for a missing file), validators,
// conditional and range requests, so that everything above it (retries,
// limits, verification, resuming, "image removed") works as over HTTP.
//
// The tree is not trusted more than a server: it is read through os.Root,
// so that no path, ".." or symbolic link in it reaches outside the tree
// (a link that would is refused, as is an absolute one), and only regular
// files are opened: a fifo, a device or a socket planted there is never
// opened.
type fileTransport struct {
	dir string // the tree's directory, as the user gave it
}

func (t *fileTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return nil, &localError{fmt.Errorf("%s %s: only GET and HEAD read a file tree", req.Method, req.URL)}
	}
	rel, ok := strings.CutPrefix(req.URL.Path, strings.TrimSuffix(t.dir, "/")+"/")
	if !ok || rel == "" {
		return t.respond(req, http.StatusNotFound, nil, 0, nil), nil
	}
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.ENOENT || errno == syscall.ENOTDIR) {
			return nil, withClass(fmt.Errorf("the mirror tree %s is not there: %w", t.dir, errno), ClassUnreachable, KindTree)
		}
		return nil, &localError{fmt.Errorf("open the mirror tree: %w", err)}
	}
	defer root.Close()
	f, fi, err := openTreeFile(root, rel)
	if errors.Is(err, errNoTreeFile) {
		return t.respond(req, http.StatusNotFound, nil, 0, nil), nil
	}
	if err != nil {
		return nil, t.explain(rel, err)
	}
	return t.serve(req, f, fi), nil
}

// errNoTreeFile is openTreeFile's error for a file the tree does not have.
var errNoTreeFile = errors.New("no such file")

// openTreeFile opens the regular file rel of root for reading. A symbolic
// link is followed only while it stays in the tree. What is not a regular
// file is checked before it is opened, and the file opened is checked to
// be the one looked at, so that nothing else is opened even if the tree
// changes meanwhile (another user may write to it).
func openTreeFile(root *os.Root, rel string) (*os.File, os.FileInfo, error) {
	fi, err := root.Stat(rel)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil, errNoTreeFile
	}
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return nil, nil, errNoTreeFile
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, errNotRegularFile
	}
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil, errNoTreeFile
	}
	if err != nil {
		return nil, nil, err
	}
	opened, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !os.SameFile(fi, opened) || !opened.Mode().IsRegular() {
		f.Close()
		return nil, nil, errChangedTreeFile
	}
	return f, opened, nil
}

var (
	errNotRegularFile  = errors.New("not a regular file")
	errChangedTreeFile = errors.New("replaced while it was opened")
)

// explain turns an error of reading rel into what a caller can class:
// the tree's fault (a link out of it, not a regular file) or this host's
// (permissions, I/O errors).
func (t *fileTransport) explain(rel string, err error) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, errNotRegularFile), errors.Is(err, errChangedTreeFile):
		return withClass(fmt.Errorf("%s in the mirror tree %s is %w", rel, t.dir, err), ClassServer, KindNone)
	case errors.Is(err, syscall.ELOOP):
		return withClass(fmt.Errorf("%s in the mirror tree %s: too many symbolic links: %w", rel, t.dir, err), ClassServer, KindNone)
	case !errors.As(err, &errno):
		// os.Root's refusal of a link (or "..") that leads out of the
		// tree, or of an absolute link.
		return withClass(fmt.Errorf("%s in the mirror tree %s: a symbolic link (or \"..\") on the way leads out of the tree: %w", rel, t.dir, err), ClassServer, KindNone)
	}
	return &localError{err}
}

// serve answers req with the file f: whole, from an offset (Range), or
// "not modified" (If-None-Match, If-Modified-Since), as http.ServeContent
// would for the ranges and conditions this package sends.
func (t *fileTransport) serve(req *http.Request, f *os.File, fi os.FileInfo) *http.Response {
	size := fi.Size()
	mod := fi.ModTime()
	h := http.Header{}
	h.Set("ETag", treeETag(fi))
	h.Set("Last-Modified", mod.UTC().Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	if notModified(req.Header, h.Get("ETag"), mod) {
		f.Close()
		h.Del("Accept-Ranges")
		return t.respond(req, http.StatusNotModified, h, 0, nil)
	}
	start, ranged := rangeStart(req.Header, h)
	switch {
	case ranged && start >= size:
		f.Close()
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		return t.respond(req, http.StatusRequestedRangeNotSatisfiable, h, 0, nil)
	case ranged:
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, size-1, size))
		body := readCloser{io.NewSectionReader(f, start, size-start), f}
		return t.respond(req, http.StatusPartialContent, h, size-start, body)
	}
	// No more than the size announced, even if the file grows meanwhile.
	return t.respond(req, http.StatusOK, h, size, readCloser{io.LimitReader(f, size), f})
}

// respond builds a response; a HEAD request gets no body.
func (t *fileTransport) respond(req *http.Request, code int, h http.Header, length int64, body io.ReadCloser) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	if body == nil || req.Method == http.MethodHead {
		if body != nil {
			body.Close()
		}
		body = http.NoBody
	}
	if code == http.StatusNotFound {
		length = 0
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", code, http.StatusText(code)),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          body,
		ContentLength: length,
		Request:       req,
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// treeETag is a strong validator of a file of the tree: it changes when
// the file is replaced (inode), rewritten in place (modification time in
// nanoseconds) or resized.
func treeETag(fi os.FileInfo) string {
	ino := uint64(0)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf(`"%x-%x-%x"`, ino, fi.Size(), fi.ModTime().UnixNano())
}

// notModified evaluates If-None-Match, else If-Modified-Since, as RFC
// 9110 says.
func notModified(req http.Header, etag string, mod time.Time) bool {
	if inm := req.Get("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
			if tag == "*" || tag == etag {
				return true
			}
		}
		return false
	}
	if ims := req.Get("If-Modified-Since"); ims != "" {
		t, err := http.ParseTime(ims)
		return err == nil && !mod.Truncate(time.Second).After(t)
	}
	return false
}

// rangeStart reads a "bytes=START-" Range, honoured only when If-Range,
// if sent, names the file's current validator (resp holds its headers).
func rangeStart(req, resp http.Header) (int64, bool) {
	rng := req.Get("Range")
	if rng == "" {
		return 0, false
	}
	if ir := req.Get("If-Range"); ir != "" && ir != resp.Get("ETag") && ir != resp.Get("Last-Modified") {
		return 0, false
	}
	first, ok := strings.CutPrefix(rng, "bytes=")
	if !ok {
		return 0, false
	}
	first, ok = strings.CutSuffix(first, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

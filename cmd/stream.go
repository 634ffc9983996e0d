package cmd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"

	"github.com/lxc/lxc-download/cache"
	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// errRestarted voids a streamed unpack whose download started over.
var errRestarted = errors.New("the download started over")

// streamUnpack unpacks the rootfs tarball while it downloads (issue 5: on
// a slow link the unpack is then nearly free). It is a fetch.Tap: the
// download hands it each byte as it reaches the disk, and it feeds them
// through a pipe to the unpacker.
//
// The bytes are not verified yet when they are unpacked. Whoever starts a
// streamUnpack empties the rootfs unless both the download (verification
// included) and the unpack succeed; a stream that broke for any other
// reason (the download started over, the unpacker failed) is just given
// up, and the rootfs is unpacked again from the verified cache entry.
type streamUnpack struct {
	pw   *io.PipeWriter
	done chan error
	void bool // Data no longer feeds the unpacker
}

// startStreamUnpack starts unpacking into rootfs what the Tap will be
// given, with the excludes of the meta tarball at metaPath.
func (r *run) startStreamUnpack(ctx context.Context, metaPath string) (*streamUnpack, error) {
	f, err := os.Open(metaPath)
	if err != nil {
		return nil, err
	}
	meta, err := compat.ReadMetaTarball(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	var excludes []string
	if data, ok := meta.Relevant("excludes", r.mode); ok {
		excludes = compat.SplitLines(data)
	}
	pr, pw := io.Pipe()
	s := &streamUnpack{pw: pw, done: make(chan error, 1)}
	uo := r.unpackOptions(excludes)
	go func() {
		err := cache.UnpackReader(ctx, pr, r.o.Rootfs, uo)
		// Unblock a download still writing to a failed unpacker.
		pr.CloseWithError(err)
		s.done <- err
	}()
	return s, nil
}

// Data implements fetch.Tap.
func (s *streamUnpack) Data(p []byte) {
	if s.void {
		return
	}
	if _, err := s.pw.Write(p); err != nil {
		s.void = true
	}
}

// Restart implements fetch.Tap.
func (s *streamUnpack) Restart() {
	s.void = true
	s.pw.CloseWithError(errRestarted)
}

// finish ends the stream after the download: fetchErr is the download's
// result. It reports whether the rootfs holds the whole verified image.
func (s *streamUnpack) finish(fetchErr error) bool {
	if fetchErr != nil {
		s.pw.CloseWithError(fetchErr)
	} else {
		s.pw.Close()
	}
	err := <-s.done
	return fetchErr == nil && !s.void && err == nil
}

var _ fetch.Tap = (*streamUnpack)(nil)

// onceLines passes each distinct line on once. The unpacker says each kind
// of warning once per unpack; this makes it once per run.
type onceLines struct {
	w    io.Writer
	mu   sync.Mutex
	seen map[string]bool
	part []byte // a line not yet ended
}

func (o *onceLines) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.part = append(o.part, p...)
	for {
		i := bytes.IndexByte(o.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(o.part[:i+1])
		o.part = o.part[i+1:]
		if o.seen[line] {
			continue
		}
		if o.seen == nil {
			o.seen = map[string]bool{}
		}
		o.seen[line] = true
		if _, err := io.WriteString(o.w, line); err != nil {
			return len(p), err
		}
	}
}

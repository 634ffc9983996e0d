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

// streamUnpack unpacks the rootfs tarball while it downloads (on a slow
// link the unpack is then nearly free). It is a fetch.Tap: the download
// hands it each byte as it reaches the disk, and it feeds them through a
// pipe to the unpacker.
//
// The bytes are not verified yet when they are unpacked, so they go into a
// private stage (cache.RootfsStage: mode 0700, never the target) that is
// handed on only if both the download (verification included) and the
// unpack succeed. A stream that broke for any other reason (the download
// started over, the unpacker failed) is just given up, and the rootfs is
// unpacked again from the verified cache entry, into a new stage.
type streamUnpack struct {
	stage *cache.RootfsStage
	pw    *io.PipeWriter
	done  chan error
	void  bool // Data no longer feeds the unpacker
}

// startStreamUnpack starts unpacking what the Tap will be given into a new
// stage for the rootfs, with the excludes of the meta tarball at metaPath.
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
	rs, err := cache.NewRootfsStage(r.o.Rootfs)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	s := &streamUnpack{stage: rs, pw: pw, done: make(chan error, 1)}
	uo := r.unpackOptions(excludes)
	go func() {
		err := rs.UnpackReader(ctx, pr, uo)
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
// result. It returns the stage holding the whole verified image, or nil
// after discarding it.
func (s *streamUnpack) finish(fetchErr error) *cache.RootfsStage {
	if fetchErr != nil {
		s.pw.CloseWithError(fetchErr)
	} else {
		s.pw.Close()
	}
	err := <-s.done
	if fetchErr == nil && !s.void && err == nil {
		return s.stage
	}
	s.stage.Discard()
	return nil
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

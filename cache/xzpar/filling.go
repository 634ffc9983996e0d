package xzpar

import (
	"errors"
	"io"
	"sync/atomic"

	"github.com/lxc/lxc-download/cache/xzpar/internal/lzma2"
)

// filling is a block's compressed data (with its padding and check) that
// the stream parser is still reading, while a worker already decodes it:
// on a download, a block's data arrives over a good part of a second, and
// decoding it only once all of it is there left that time to the end of
// the download (with the last big block, most of the wait after the last
// byte). The parser writes data[n:] and then publishes n; the worker reads
// data[:n] only, after it saw n, so the two never touch the same bytes
// unsynchronised.
type filling struct {
	data []byte
	base int64 // the file offset of data[0]
	quit <-chan struct{}

	n      atomic.Int64
	failed atomic.Pointer[error]
	// kick is signalled after each change of n or failed; it holds one
	// signal, so none is lost between the worker's look at n and its
	// wait.
	kick chan struct{}
	// waited is set once the worker had to wait for data: the block was
	// decoded while it arrived. arriving counts such blocks.
	waited   atomic.Bool
	arriving *atomic.Int64
}

func newFilling(data []byte, base int64, quit <-chan struct{}, arriving *atomic.Int64) *filling {
	return &filling{data: data, base: base, quit: quit, kick: make(chan struct{}, 1), arriving: arriving}
}

// inputError is the parser's error reading a filling block, which the
// worker reports as it is, as the parser would have without the worker.
type inputError struct{ err error }

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// wait returns once data[:n] has been read, with an *inputError if the
// parser failed first, or with lzma2.ErrStopped once the reader is closed.
func (f *filling) wait(n int) error {
	for {
		if f.n.Load() >= int64(n) {
			return nil
		}
		if e := f.failed.Load(); e != nil {
			return &inputError{*e}
		}
		if !f.waited.Swap(true) {
			f.arriving.Add(1)
		}
		select {
		case <-f.kick:
		case <-f.quit:
			return lzma2.ErrStopped
		}
	}
}

func (f *filling) signal() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// fill reads all of f.data from s, publishing what it has read as it
// goes, and calls offer after each read until it returns true (the job
// is with a worker). Its error is the one readFull would have given for
// the whole block, and the worker gets it too.
func (s *streamParser) fill(f *filling, what string, offer func() bool) error {
	start := s.off
	offered := offer()
	for n := 0; n < len(f.data); {
		m, err := s.in.Read(f.data[n:])
		n += m
		s.off += int64(m)
		if m > 0 {
			f.n.Store(int64(n))
			f.signal()
		}
		if !offered {
			offered = offer()
		}
		if err != nil && n < len(f.data) {
			if errors.Is(err, io.EOF) {
				err = errTruncated
			}
			err = readError(what, start, err)
			f.failed.Store(&err)
			f.signal()
			return err
		}
	}
	return nil
}

// ReadAt implements io.ReaderAt at the file's offsets, waiting for the
// bytes asked for (verifyTail reads the check through it).
func (f *filling) ReadAt(p []byte, off int64) (int, error) {
	off -= f.base
	if off < 0 {
		return 0, errors.New("xz: read before the block")
	}
	end := min(off+int64(len(p)), int64(len(f.data)))
	if err := f.wait(int(end)); err != nil {
		return 0, err
	}
	if off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.data[off:end])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

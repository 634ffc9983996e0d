package xzpar

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

const (
	// serialChunk is how much the serial decoder decodes ahead per hand-off.
	serialChunk = 256 << 10
	// serialChunks is how many chunks may be decoded ahead of Read.
	serialChunks = 4
)

// chunk is a piece of serially decoded output.
type chunk struct {
	buf  []byte
	err  error
	used int64 // compressed bytes consumed to produce everything so far
}

// serialReader decodes the whole file with ulikunitz/xz in a goroutine of
// its own, so decoding overlaps with whatever the caller does with the
// output.
type serialReader struct {
	progress func(int64)
	full     chan chunk
	free     chan []byte
	quit     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once

	cur    chunk
	off    int
	err    error
	primed bool
}

func newSerialReader(ra io.ReaderAt, size int64, o Options) (*serialReader, error) {
	r := &serialReader{
		progress: o.Progress,
		full:     make(chan chunk, serialChunks),
		free:     make(chan []byte, serialChunks),
		quit:     make(chan struct{}),
	}
	for range serialChunks {
		r.free <- nil
	}
	counted := &countingReader{r: io.NewSectionReader(ra, 0, size)}
	// ulikunitz/xz reads its input a byte at a time.
	in := bufio.NewReaderSize(counted, inputBufferSize)
	// The smallest DictCap makes it allocate what the file asks for
	// rather than at least 8 MiB per block.
	xr, err := xz.ReaderConfig{DictCap: lzma.MinDictCap}.NewReader(in)
	if err != nil {
		return nil, xzError(err)
	}
	r.wg.Add(1)
	go r.decode(xr, func() int64 { return counted.n - int64(in.Buffered()) })
	return r, nil
}

// decode fills free buffers from xr and passes them to Read until the end,
// an error or Close.
func (r *serialReader) decode(xr io.Reader, used func() int64) {
	defer r.wg.Done()
	for {
		var buf []byte
		select {
		case buf = <-r.free:
		case <-r.quit:
			return
		}
		if buf == nil {
			buf = make([]byte, serialChunk)
		}
		n, err := fill(xr, buf)
		if err != nil && !errors.Is(err, io.EOF) {
			err = xzError(err)
		}
		select {
		case r.full <- chunk{buf: buf[:n], err: err, used: used()}:
		case <-r.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// fill reads into buf until it is full or r fails; io.EOF says the end
// was reached.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Read implements io.Reader.
func (r *serialReader) Read(p []byte) (int, error) {
	select {
	case <-r.quit:
		r.err = errClosed
	default:
	}
	for {
		if r.primed && r.off < len(r.cur.buf) {
			n := copy(p, r.cur.buf[r.off:])
			r.off += n
			return n, nil
		}
		if r.err != nil {
			return 0, r.err
		}
		if r.primed {
			if r.cur.err != nil {
				r.err = r.cur.err
				continue
			}
			r.free <- r.cur.buf[:cap(r.cur.buf)]
		}
		select {
		case r.cur = <-r.full:
		case <-r.quit:
			r.err = errClosed
			return 0, r.err
		}
		r.primed, r.off = true, 0
		if r.progress != nil {
			r.progress(r.cur.used)
		}
	}
}

// Close stops the decoding goroutine and waits for it to return.
func (r *serialReader) Close() error {
	r.once.Do(func() {
		close(r.quit)
		r.wg.Wait()
	})
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

// Read implements io.Reader.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// xzError makes sure an error of ulikunitz/xz says it comes from xz.
func xzError(err error) error {
	if strings.HasPrefix(err.Error(), "xz:") {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("xz: %w", errTruncated)
	}
	return fmt.Errorf("xz: %w", err)
}

package cache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/ulikunitz/xz"

	"github.com/lxc/lxc-download/cache/xzpar"
)

// UnpackOptions say how a rootfs tarball is unpacked. The zero value unpacks
// everything with DefaultLimits and says nothing.
type UnpackOptions struct {
	// Excludes are the image's excludes: GNU tar --exclude patterns (with
	// --anchored), matched against entry names from the tarball's root,
	// with or without a leading "./". A matching directory excludes
	// everything below it.
	Excludes []string
	// Userns says the process runs as root of an unprivileged user
	// namespace (LXC's user mode): device nodes cannot be made, and owners
	// outside the namespace's id map cannot be restored; both are skipped
	// with a warning instead of failing.
	Userns bool
	// Warn receives "WARNING: ..." lines, each kind said once. Nil
	// discards them.
	Warn io.Writer
	// Workers is how many xz blocks Unpack decodes in parallel; 0 means one
	// per CPU. Serial decoding ignores it.
	Workers int
	// Limits bound what an archive may ask for; a zero field takes the
	// value of DefaultLimits.
	Limits Limits
	// Progress, if set, is called now and then with the number of
	// compressed bytes consumed so far and the archive's size (-1 when
	// unknown, as for UnpackReader). Calls never overlap.
	Progress func(done, total int64)
}

// Limits bound what an untrusted archive can make the extractor do. Going
// over one stops the unpack with a *LimitError naming it.
type Limits struct {
	// MaxEntries is the most entries (of any type) an archive may hold.
	MaxEntries int
	// MaxTotalSize is the most bytes of file content, summed over all
	// regular files (the logical size, for sparse files).
	MaxTotalSize int64
	// MaxFileSize is the largest one regular file may be.
	MaxFileSize int64
	// MaxPathLength is the longest an entry name or link target may be,
	// in bytes.
	MaxPathLength int
	// MaxXattrs is the most extended attributes one entry may carry.
	MaxXattrs int
	// MaxXattrSize is the largest one extended attribute value may be
	// (Linux itself refuses more than 64 KiB).
	MaxXattrSize int
}

// DefaultLimits are generous for real container images (a few GB and a few
// hundred thousand entries) yet keep a hostile archive from filling the disk
// or memory without bound.
var DefaultLimits = Limits{
	MaxEntries:    1 << 20,
	MaxTotalSize:  32 << 30,
	MaxFileSize:   8 << 30,
	MaxPathLength: 4096,
	MaxXattrs:     256,
	MaxXattrSize:  64 << 10,
}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = d.MaxTotalSize
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = d.MaxFileSize
	}
	if l.MaxPathLength <= 0 {
		l.MaxPathLength = d.MaxPathLength
	}
	if l.MaxXattrs <= 0 {
		l.MaxXattrs = d.MaxXattrs
	}
	if l.MaxXattrSize <= 0 {
		l.MaxXattrSize = d.MaxXattrSize
	}
	return l
}

// LimitError is the error of an archive that goes over one of its Limits.
type LimitError struct {
	// Limit is the name of the Limits field, such as "MaxTotalSize".
	Limit string
	// Max is the limit's value and Value what the archive asked for.
	Max, Value int64
	// Entry is the name of the entry where the limit was crossed.
	Entry string
}

func (e *LimitError) Error() string {
	what := map[string]string{
		"MaxEntries":    "number of entries",
		"MaxTotalSize":  "total size of files",
		"MaxFileSize":   "file size",
		"MaxPathLength": "path length",
		"MaxXattrs":     "number of extended attributes",
		"MaxXattrSize":  "extended attribute size",
	}[e.Limit]
	return fmt.Sprintf("entry %q: %s %d exceeds the limit of %d (Limits.%s)", e.Entry, what, e.Value, e.Max, e.Limit)
}

// Unpack unpacks archive, a rootfs.tar.xz, into the existing directory
// rootfs. Files of several xz blocks (as written by xz --threads) are
// decoded by o.Workers goroutines in parallel, others serially; either way
// decoding overlaps with writing the files. Whatever the archive says,
// nothing is written outside rootfs. On error, what was unpacked so far
// stays in rootfs for the caller to remove.
func Unpack(ctx context.Context, archive *os.File, rootfs string, o UnpackOptions) error {
	fi, err := archive.Stat()
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", err)
	}
	size := fi.Size()
	xo := xzpar.Options{Workers: o.Workers}
	if o.Progress != nil {
		xo.Progress = func(n int64) { o.Progress(n, size) }
	}
	dec, err := xzpar.NewReader(archive, size, xo)
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", xzError(err))
	}
	err = extractAndDrain(ctx, dec, rootfs, o)
	dec.Close()
	if err == nil && o.Progress != nil {
		o.Progress(size, size) // the index and footer are never "handed out"
	}
	return err
}

// UnpackReader unpacks the xz-compressed tarball read from r into the
// existing directory rootfs, decoding serially in a goroutine of its own so
// decoding and writing overlap. It is Unpack for a stream, such as a
// download, that cannot be read at random.
func UnpackReader(ctx context.Context, r io.Reader, rootfs string, o UnpackOptions) error {
	var progress func(int64)
	if o.Progress != nil {
		progress = func(n int64) { o.Progress(n, -1) }
	}
	return unpackSerial(ctx, r, rootfs, o, progress)
}

func unpackSerial(ctx context.Context, r io.Reader, rootfs string, o UnpackOptions, progress func(int64)) error {
	if progress != nil {
		r = &countingReader{r: r, report: progress}
	}
	// The xz decoder reads its input a byte at a time: without a buffer
	// that is a system call per byte.
	if _, ok := r.(io.ByteReader); !ok {
		r = bufio.NewReaderSize(r, 256<<10)
	}
	xr, err := xz.NewReader(r)
	if err != nil {
		return fmt.Errorf("unpack rootfs: %w", xzError(err))
	}
	p := newChunkPipe(xr, 4, 1<<20)
	err = extractAndDrain(ctx, p, rootfs, o)
	p.Close()
	return err
}

// extractAndDrain extracts the tar stream dec and then reads what follows
// the end of the archive, so the xz checks of the last block and the
// stream's index are verified: a truncated file fails even when the tar
// part happens to end before the cut.
func extractAndDrain(ctx context.Context, dec io.Reader, rootfs string, o UnpackOptions) error {
	if err := Extract(ctx, dec, rootfs, o); err != nil {
		return err
	}
	// Tar pads to records of 10 KiB; more than this is not ours to check.
	if _, err := io.Copy(io.Discard, io.LimitReader(dec, 16<<20)); err != nil {
		return fmt.Errorf("unpack rootfs: after the end of the archive: %w", xzError(err))
	}
	return nil
}

// xzError makes sure a decoding error says it comes from xz: the library's
// own errors do, but plain I/O errors such as io.ErrUnexpectedEOF do not.
func xzError(err error) error {
	if err == nil || strings.HasPrefix(err.Error(), "xz") {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("xz: truncated file: %w", err)
	}
	return fmt.Errorf("xz: %w", err)
}

// countingReader reports the bytes read through it, about every MiB.
type countingReader struct {
	r        io.Reader
	n, last  int64
	report   func(int64)
	reported bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= 1<<20 || (err != nil && c.n != c.last) || !c.reported {
		c.last, c.reported = c.n, true
		c.report(c.n)
	}
	return n, err
}

// chunkPipe runs a decoder in its own goroutine and hands what it decodes to
// the reader in large chunks, with a fixed number of buffers in flight, so
// that decoding (CPU-bound) and writing files (system calls) overlap.
type chunkPipe struct {
	full chan []byte
	free chan []byte
	stop chan struct{}
	done chan struct{}
	err  error // the decoder's final error; read only after full is closed

	cur      []byte // what is left to read of buf
	buf      []byte // the chunk being read, whole
	cap      int
	stopOnce sync.Once
}

func newChunkPipe(src io.Reader, buffers, size int) *chunkPipe {
	p := &chunkPipe{
		full: make(chan []byte, buffers),
		free: make(chan []byte, buffers),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		cap:  size,
	}
	for range buffers {
		p.free <- make([]byte, size)
	}
	go p.decode(src)
	return p
}

func (p *chunkPipe) decode(src io.Reader) {
	defer close(p.done)
	defer close(p.full)
	for {
		var buf []byte
		select {
		case buf = <-p.free:
		case <-p.stop:
			p.err = errors.New("unpack stopped")
			return
		}
		n, err := fill(src, buf[:p.cap])
		if n > 0 {
			select {
			case p.full <- buf[:n]:
			case <-p.stop:
				p.err = errors.New("unpack stopped")
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				err = xzError(err)
			}
			p.err = err
			return
		}
	}
}

// fill reads into buf until it is full or src fails; unlike io.ReadFull it
// keeps the reader's own error, so a truncated stream's io.ErrUnexpectedEOF
// is not mistaken for a short final chunk.
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := src.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (p *chunkPipe) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.buf != nil {
			p.free <- p.buf[:p.cap]
			p.buf = nil
		}
		buf, ok := <-p.full
		if !ok {
			return 0, p.err
		}
		p.buf, p.cur = buf, buf
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// Close stops the decoder and waits for its goroutine to end, so the input
// is not read after Close returns.
func (p *chunkPipe) Close() error {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
	return nil
}

// Package xzpar decodes xz files in parallel, one block per goroutine.
//
// xz --threads (and every image builder that uses it) splits its input into
// independent blocks, 24 MiB each at the default level, and records their
// sizes in an index at the end of the file and in each block's header.
// NewReader reads the index of a file at hand (an io.ReaderAt);
// NewStreamReader reads block headers as the data arrives (a download).
// Either way the blocks are decoded at the same time and handed out in
// order, each verified against its check before any of it is handed out.
// Files that cannot be decoded that way (one block, no sizes) are decoded
// serially with the same API, so callers need no second code path.
//
// Memory is bounded whatever the file's size: one buffer of an
// uncompressed block per worker, kept outside the Go heap so that the
// garbage collector's headroom does not double it, plus per worker either
// the block's compressed data (blocks decoded whole, whose output buffer
// is the LZMA2 dictionary) or an LZMA2 dictionary (blocks that are not).
//
// Blocks decoded whole into a buffer are decoded by internal/lzma2, which
// uses that buffer as its dictionary and allocates nothing per operation;
// the serial paths use github.com/ulikunitz/xz/lzma. This package parses
// the container, schedules the blocks and verifies sizes and checks.
package xzpar

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/lxc/lxc-download/cache/xzpar/internal/lzma2"
	"github.com/ulikunitz/xz/lzma"
)

// DefaultMaxBlockSize is the MaxBlockSize used when Options leaves it zero:
// above the 192 MiB blocks of xz -9 --threads.
const DefaultMaxBlockSize = 256 << 20

// Options tune NewReader and NewStreamReader. The zero value is ready to
// use.
type Options struct {
	// Workers is how many blocks are decoded at the same time; 0 means
	// runtime.GOMAXPROCS(0). Memory use grows with it: there is one
	// buffer of an uncompressed block per worker (at least two), outside
	// the Go heap, plus each worker's compressed block (about a quarter
	// of it for a root filesystem), or, for blocks packed tighter than
	// 16:1, its LZMA2 dictionary (8 MiB at xz's default level).
	Workers int
	// MaxBlockSize is the largest uncompressed block decoded in parallel,
	// which bounds each buffer; 0 means DefaultMaxBlockSize. Larger blocks
	// are decoded serially, which needs no block buffer: by NewReader, the
	// whole file; by NewStreamReader, those blocks.
	// Serial decoding refuses an LZMA2 dictionary larger than this or
	// DefaultMaxBlockSize, whichever is larger, as it would have to
	// allocate it whole (parallel decoding needs no more dictionary than
	// the block's size).
	MaxBlockSize int64
	// Progress, if set, is called from Read with the number of compressed
	// bytes whose output has been handed out so far (an offset in the
	// file, at block boundaries or more often). Calls never overlap.
	Progress func(compressed int64)
}

// NewReader returns a reader of the decompressed content of the xz file of
// size bytes in ra: one or more streams with optional stream padding. It
// reads the file's index and block headers first and fails, with an error
// starting "xz: ", if they are malformed or do not agree.
//
// The reader checks every block's sizes and check as it goes; a mismatch
// is an error naming the block. Close stops the decoding goroutines; it
// must be called, even after an error or EOF, and may be called while a
// Read is blocked. ra must allow concurrent ReadAt calls (an *os.File
// does) and stay open until Close returns.
func NewReader(ra io.ReaderAt, size int64, o Options) (io.ReadCloser, error) {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MaxBlockSize <= 0 {
		o.MaxBlockSize = DefaultMaxBlockSize
	}
	l, err := parse(ra, size)
	if err != nil {
		return nil, err
	}
	if len(l.blocks) < 2 || !l.supported || l.maxBlockSize > o.MaxBlockSize {
		// ulikunitz/xz allocates the whole dictionary a header asks
		// for, up to 4 GiB.
		if limit := max(o.MaxBlockSize, DefaultMaxBlockSize); l.maxDictSize > limit {
			return nil, fmt.Errorf("xz: LZMA2 dictionary of %d bytes exceeds the limit of %d", l.maxDictSize, limit)
		}
		return newSerialReader(ra, size, o)
	}
	return newFileReader(ra, l, o), nil
}

// Info describes an xz file's structure, as its indexes and block headers
// give it.
type Info struct {
	// Blocks is the number of blocks, over all streams.
	Blocks int
	// Size is the size of the decompressed content.
	Size int64
	// MaxBlockSize is the size of the largest block, decompressed.
	MaxBlockSize int64
}

// Stat reads the structure of the xz file of size bytes in ra (every
// stream's header, index and footer, and every block header) without
// decoding any data, and checks it the way NewReader does. It is a cheap
// way to tell a complete xz file from a truncated or damaged one; the
// blocks' data and checks are only verified by decoding them.
func Stat(ra io.ReaderAt, size int64) (Info, error) {
	l, err := parse(ra, size)
	if err != nil {
		return Info{}, err
	}
	info := Info{Blocks: len(l.blocks), MaxBlockSize: l.maxBlockSize}
	for _, b := range l.blocks {
		info.Size += b.size
	}
	return info, nil
}

// arenaAllocated and arenaInUse count the bytes all arenas ever allocated
// and hold now, for tests and benchmarks.
var arenaAllocated, arenaInUse atomic.Int64

// errClosed is returned by Read after Close.
var errClosed = errors.New("xz: read after close")

// decodeChunk is how much a worker decodes between looks at whether the
// reader was closed, so Close does not wait for whole blocks.
const decodeChunk = 1 << 20

// initialBufferSize is the first size of a block buffer that is not
// allocated whole, which then doubles up to the block's size.
const initialBufferSize = 4 << 20

// trustedRatio is the compression ratio up to which a block's size is
// trusted enough to allocate its buffer at once; root filesystems pack
// about 4:1.
const trustedRatio = 16

// inputBufferSize is the read-ahead of a worker's compressed input:
// ulikunitz/xz reads it a byte at a time.
const inputBufferSize = 64 << 10

// job is one piece of output on its way to Read: a block a worker decodes,
// or data or an error the dispatcher has ready.
type job struct {
	b   *block      // the block to decode; nil for a ready job
	src io.ReaderAt // where the block is, at the file's offsets
	buf []byte      // output buffer, then the output
	err error       // why there is no output
	end int64       // compressed bytes consumed once buf is read
	// token is set when buf is one of the reader's buffers, which Read
	// puts back when it is done with the job.
	token bool
	// input is the block's compressed data when it was read from a
	// stream; the worker puts it back into the input pool.
	input []byte
	done  chan struct{} // closed when buf or err is ready
}

// parallelReader hands out blocks decoded by worker goroutines, in order.
// Blocks in flight are bounded by the buffers, one per worker: while Read
// hands out a block, its worker waits, which costs little as handing out
// is many times faster than decoding. With one worker there are two
// buffers, so that decoding and reading overlap.
type parallelReader struct {
	progress func(int64)

	free    chan []byte // output buffers not in use, nil until first needed
	inputs  chan []byte // compressed-data buffers (streams only)
	jobs    chan *job   // to the workers
	pending chan *job   // to Read, in output order
	quit    chan struct{}
	wg      sync.WaitGroup // the workers
	once    sync.Once

	dispatched     chan struct{} // closed when the dispatcher returns
	waitDispatcher bool

	// arena holds the buffers; they are released once Close was called,
	// the dispatcher has returned and no Read is running, which holders
	// counts down.
	arena   arena
	holders atomic.Int32

	// workerBlocks counts the blocks decoded by workers, for tests.
	workerBlocks atomic.Int64

	cur *job // the job being read, nil between jobs
	off int  // read position in cur.buf
	err error
}

// newParallelReader starts the workers and a goroutine running dispatch.
// Close waits for dispatch to return if waitDispatcher is set; a
// dispatcher that may block outside the reader's channels (reading a
// stream) is left to return on its own.
func newParallelReader(workers int, o Options, waitDispatcher bool, dispatch func(r *parallelReader)) *parallelReader {
	buffers := max(workers, 2)
	r := &parallelReader{
		progress: o.Progress,
		free:     make(chan []byte, buffers),
		inputs:   make(chan []byte, buffers),
		jobs:     make(chan *job),
		pending:  make(chan *job, buffers),
		quit:     make(chan struct{}),

		dispatched:     make(chan struct{}),
		waitDispatcher: waitDispatcher,
	}
	for range buffers {
		r.free <- nil
		r.inputs <- nil
	}
	r.holders.Store(2) // Close and the dispatcher
	r.wg.Add(workers)
	go func() {
		defer r.drop()
		defer close(r.dispatched)
		defer close(r.pending)
		defer close(r.jobs)
		dispatch(r)
	}()
	for range workers {
		go r.work()
	}
	return r
}

// newFileReader decodes the blocks of a parsed file.
func newFileReader(ra io.ReaderAt, l *layout, o Options) *parallelReader {
	return newParallelReader(min(o.Workers, len(l.blocks)), o, true, func(r *parallelReader) {
		for i := range l.blocks {
			b := &l.blocks[i]
			buf, ok := r.takeBuffer()
			if !ok {
				return
			}
			j := &job{b: b, src: ra, buf: buf, token: true, end: b.paddedEnd(), done: make(chan struct{})}
			if !r.queue(j) {
				return
			}
		}
	})
}

// takeBuffer waits for a free output buffer; it fails once the reader is
// closed.
func (r *parallelReader) takeBuffer() ([]byte, bool) {
	select {
	case buf := <-r.free:
		return buf, true
	case <-r.quit:
		return nil, false
	}
}

// queue queues j for Read and, unless it is ready, for a worker. It fails
// once the reader is closed.
func (r *parallelReader) queue(j *job) bool {
	select {
	case r.pending <- j:
	case <-r.quit:
		return false
	}
	if j.b == nil {
		return true
	}
	select {
	case r.jobs <- j:
		return true
	case <-r.quit:
		return false
	}
}

// ready returns a job that is ready with data (or an error).
func ready(buf []byte, token bool, end int64, err error) *job {
	j := &job{buf: buf, token: token, end: end, err: err, done: make(chan struct{})}
	close(j.done)
	return j
}

// work decodes blocks until there are no more or the reader is closed.
func (r *parallelReader) work() {
	defer r.wg.Done()
	d := &blockDecoder{arena: &r.arena, quit: r.quit, in: bufio.NewReaderSize(nil, inputBufferSize)}
	for {
		select {
		case j, ok := <-r.jobs:
			if !ok {
				return
			}
			j.buf, j.err = d.decode(j.b, j.src, j.buf)
			r.workerBlocks.Add(1)
			if j.input != nil {
				// inputs has room for every buffer.
				r.inputs <- j.input[:0]
				j.input, j.src = nil, nil
			}
			close(j.done)
		case <-r.quit:
			return
		}
	}
}

// drop gives up one hold on the buffers, releasing them after the last.
func (r *parallelReader) drop() {
	if r.holders.Add(-1) == 0 {
		r.arena.releaseAll()
	}
}

// Read implements io.Reader.
func (r *parallelReader) Read(p []byte) (int, error) {
	// Holding the buffers first, then looking for Close, makes sure they
	// are not released under this Read.
	r.holders.Add(1)
	defer r.drop()
	if r.err != nil {
		return 0, r.err
	}
	if r.closed() {
		r.err = errClosed
		return 0, r.err
	}
	for r.cur == nil || r.off == len(r.cur.buf) {
		if r.cur != nil {
			if r.progress != nil {
				r.progress(r.cur.end)
			}
			if r.cur.token {
				// free has room for every buffer.
				r.free <- r.cur.buf[:cap(r.cur.buf)]
			}
			r.cur = nil
		}
		var j *job
		var ok bool
		select {
		case j, ok = <-r.pending:
		case <-r.quit:
			r.err = errClosed
			return 0, r.err
		}
		if !ok {
			// The dispatcher also stops early when closed.
			r.err = io.EOF
			if r.closed() {
				r.err = errClosed
			}
			return 0, r.err
		}
		select {
		case <-j.done:
		case <-r.quit:
			r.err = errClosed
			return 0, r.err
		}
		if j.err != nil {
			r.err = j.err
			return 0, r.err
		}
		r.cur, r.off = j, 0
	}
	n := copy(p, r.cur.buf[r.off:])
	r.off += n
	return n, nil
}

// closed reports whether Close was called.
func (r *parallelReader) closed() bool {
	select {
	case <-r.quit:
		return true
	default:
		return false
	}
}

// Close stops the workers and waits for them to return.
func (r *parallelReader) Close() error {
	r.once.Do(func() {
		close(r.quit)
		r.wg.Wait()
		if r.waitDispatcher {
			<-r.dispatched
		}
		r.drop()
	})
	return nil
}

// blockDecoder decodes single blocks; each worker has one, so its input
// buffer is reused.
type blockDecoder struct {
	arena *arena
	quit  <-chan struct{}
	in    *bufio.Reader
	tail  [3 + 64]byte // block padding and check
	// lz and packed serve decodeWhole: the LZMA2 decoder's tables and
	// the block's compressed data (from arena).
	lz     lzma2.Decoder
	packed []byte
}

// errStopped is how a decode interrupted by Close ends; Read never returns
// it, as it sees the close first.
var errStopped = errors.New("xz: stopped")

// decode decodes block b, read from src, into buf, growing it as needed, and verifies the
// block's compressed size and check. It returns the buffer, holding the
// block's data on success.
func (d *blockDecoder) decode(b *block, src io.ReaderAt, buf []byte) ([]byte, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("xz: block %d at offset %d: %s", b.num, b.offset, fmt.Sprintf(format, a...))
	}
	if b.size <= trustedRatio*b.compressedSize && b.size <= maxInt && b.compressedSize <= maxInt {
		out, err := d.decodeWhole(b, src, buf, fail)
		if err != nil {
			return out, err
		}
		return out, d.verifyTail(b, src, out, fail)
	}
	section := io.NewSectionReader(src, b.dataOffset(), b.compressedSize)
	d.in.Reset(section)
	// A block's data never refers further back than its own start, so a
	// dictionary larger than the block would only waste memory.
	dict := max(min(b.dictSize, b.size), lzma.MinDictCap)
	lr, err := lzma.Reader2Config{DictCap: int(dict)}.NewReader2(d.in)
	if err != nil {
		return buf, fail("%v", err)
	}
	out := buf[:0]
	for int64(len(out)) < b.size {
		select {
		case <-d.quit:
			return out, errStopped
		default:
		}
		want := int(min(b.size, int64(len(out))+decodeChunk))
		if want > cap(out) {
			// Trust the block's size as far as data of typical
			// compression ratios backs it, and beyond that grow with
			// the data actually decoded: a lying index then costs
			// little, and a real block one allocation.
			size := max(2*cap(out), initialBufferSize)
			if len(out) == 0 && b.size <= trustedRatio*b.compressedSize {
				size = int(b.size)
			}
			grown, err := d.arena.alloc(int(min(b.size, int64(size))))
			if err != nil {
				return out, fail("%v", err)
			}
			grown = grown[:copy(grown, out)]
			d.arena.free(out)
			out = grown
		}
		k, err := io.ReadFull(lr, out[len(out):want])
		out = out[:len(out)+k]
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				if !lr.EOS() {
					return out, fail("compressed data runs past the %d bytes the index says", b.compressedSize)
				}
				return out, fail("%d bytes of data, but the index says %d", len(out), b.size)
			}
			return out, fail("%v", err)
		}
	}
	var one [1]byte
	if k, err := lr.Read(one[:]); k != 0 || err == nil {
		return out, fail("more data than the %d bytes the index says", b.size)
	} else if errors.Is(err, io.ErrUnexpectedEOF) {
		return out, fail("compressed data runs past the %d bytes the index says", b.compressedSize)
	} else if !errors.Is(err, io.EOF) {
		return out, fail("%v", err)
	}
	pos, _ := section.Seek(0, io.SeekCurrent)
	if used := pos - int64(d.in.Buffered()); used != b.compressedSize {
		return out, fail("%d bytes of compressed data, but the index says %d", used, b.compressedSize)
	}
	return out, d.verifyTail(b, src, out, fail)
}

// maxInt bounds sizes that decodeWhole holds in memory.
const maxInt = int64(^uint(0) >> 1)

// decodeWhole decodes block b into a buffer of its size (buf if large
// enough) with internal/lzma2, reading its compressed data whole. decode
// takes this path when the index's sizes are plausible (a block of typical
// compression ratio), so both buffers can be allocated at once.
func (d *blockDecoder) decodeWhole(b *block, src io.ReaderAt, buf []byte, fail func(string, ...any) error) ([]byte, error) {
	if int64(cap(d.packed)) < b.compressedSize {
		d.arena.free(d.packed)
		d.packed = nil
		p, err := d.arena.alloc(int(b.compressedSize))
		if err != nil {
			return buf[:0], fail("%v", err)
		}
		d.packed = p
	}
	packed := d.packed[:b.compressedSize]
	if err := readAt(src, packed, b.dataOffset(), "block data"); err != nil {
		return buf[:0], fmt.Errorf("xz: block %d: %w", b.num, errors.Unwrap(err))
	}
	out := buf[:0]
	if int64(cap(out)) < b.size {
		d.arena.free(out)
		out = nil
		if b.size > 0 {
			grown, err := d.arena.alloc(int(b.size))
			if err != nil {
				return out, fail("%v", err)
			}
			out = grown
		}
	}
	out = out[:b.size]
	d.lz.Stop = d.quit
	n, err := d.lz.Decode(out, packed, int(min(b.dictSize, maxInt)))
	switch {
	case errors.Is(err, lzma2.ErrStopped):
		return out[:0], errStopped
	case errors.Is(err, lzma2.ErrTruncated):
		return out[:0], fail("compressed data runs past the %d bytes the index says: %v", b.compressedSize, err)
	case errors.Is(err, lzma2.ErrTooMuchData):
		return out[:0], fail("more data than the %d bytes the index says: %v", b.size, err)
	case errors.Is(err, lzma2.ErrTooLittleData):
		return out[:0], fail("less data than the %d bytes the index says: %v", b.size, err)
	case err != nil:
		return out[:0], fail("%v", err)
	}
	if int64(n) != b.compressedSize {
		return out, fail("%d bytes of compressed data, but the index says %d", n, b.compressedSize)
	}
	return out, nil
}

// verifyTail checks the padding after block b's data and its check of out.
func (d *blockDecoder) verifyTail(b *block, src io.ReaderAt, out []byte, fail func(string, ...any) error) error {
	padding := int(pad4(b.headerSize+b.compressedSize) - b.headerSize - b.compressedSize)
	tail := d.tail[:padding+checkSize(b.check)]
	if err := readAt(src, tail, b.dataOffset()+b.compressedSize, "block check"); err != nil {
		return fmt.Errorf("xz: block %d: %w", b.num, errors.Unwrap(err))
	}
	for _, c := range tail[:padding] {
		if c != 0 {
			return fail("non-zero block padding")
		}
	}
	return verifyCheck(b, out, tail[padding:], fail)
}

// crc64Table returns the ECMA-182 table xz's CRC64 uses. It is asked for
// at each use rather than kept in a package variable, which the package's
// init would fill at every start of the program, including those that
// decode nothing (--help, --list): hash/crc64 builds its tables on the
// first MakeTable and hands out the same one after that.
func crc64Table() *crc64.Table { return crc64.MakeTable(crc64.ECMA) }

// checkName names a check ID in errors.
func checkName(id byte) string {
	switch id {
	case checkCRC32:
		return "CRC32"
	case checkCRC64:
		return "CRC64"
	case checkSHA256:
		return "SHA-256"
	}
	return fmt.Sprintf("check %#x", id)
}

// verifyCheck compares the block's stored check with one computed on data.
func verifyCheck(b *block, data, stored []byte, fail func(string, ...any) error) error {
	var ok bool
	var name string
	switch b.check {
	case checkNone:
		return nil
	case checkCRC32:
		name = "CRC32"
		ok = crc32.ChecksumIEEE(data) == binary.LittleEndian.Uint32(stored)
	case checkCRC64:
		name = "CRC64"
		ok = crc64.Checksum(data, crc64Table()) == binary.LittleEndian.Uint64(stored)
	case checkSHA256:
		name = "SHA-256"
		sum := sha256.Sum256(data)
		ok = bytes.Equal(sum[:], stored)
	default:
		// parse sends files with other checks to the serial decoder.
		return fail("unsupported check %#x", b.check)
	}
	if !ok {
		return fail("%s check mismatch: corrupt data", name)
	}
	return nil
}

// Package xzpar decodes xz files in parallel, one block per goroutine,
// within a memory budget, and as strictly as xz itself.
//
// xz --threads (and every image builder that uses it) splits its input into
// independent blocks, 24 MiB each at the default level, and records their
// sizes in an index at the end of the file and in each block's header.
// NewReader reads the index of a file at hand (an io.ReaderAt);
// NewStreamReader reads block headers as the data arrives (a download, or a
// cached file read once from start to end). Either way blocks are decoded
// at the same time by several workers and handed out in order.
//
// Memory is bounded by Options.MemoryBudget, all workers together: every
// large buffer (a block's output and compressed data, a window, pieces of
// output on their way to Read) is counted against it from when it is
// mapped until it is unmapped, and a block waits for its memory before it
// is decoded. A block whose output and compressed data fit in the budget
// is decoded whole into a buffer of its size, which is its LZMA2
// dictionary, and its check is verified before any of it is handed out. A
// block that does not fit (or whose sizes are not known in advance) is
// decoded as a stream, in a window of its dictionary size (or its size,
// when smaller) plus one LZMA2 chunk, and handed out in pieces as it is
// decoded; its check is verified at its end. A block that cannot be
// decoded even that way within the budget is refused with a *LimitError
// before any of it is decoded, as xz refuses a file over its --memlimit.
//
// All decoding is done by internal/lzma2, which refuses whatever liblzma
// refuses. github.com/ulikunitz/xz, which decoded the files that could not
// be decoded in parallel before, accepts an end-of-payload marker at the
// end of an LZMA2 chunk, and whether a chunk ended with one is internal
// to its decoder: no check around it can tell. It serves as the tests'
// oracle. Filters other than LZMA2 (BCJ, Delta) and checks other than
// none, CRC32, CRC64 and SHA-256 are refused as unsupported
// (ErrUnsupported). Errors start "xz: " and name the block (its number,
// from 0, over all streams, and the offset of its header) and the offset
// in the file where the data went wrong.
package xzpar

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/lxc/lxc-download/cache/xzpar/internal/lzma2"
)

// Options tune NewReader and NewStreamReader. The zero value is ready to
// use.
type Options struct {
	// Workers is how many blocks are decoded at the same time; 0 means
	// runtime.GOMAXPROCS(0). The memory budget may allow fewer.
	Workers int
	// MemoryBudget is how many bytes of memory the decoder's buffers may
	// take, all workers together: decoded data in flight, compressed
	// data held for decoding, and the dictionaries of blocks decoded as
	// streams. 0 means DefaultMemoryBudget(). A block that does not fit
	// even as a stream, which takes its LZMA2 dictionary (or its size,
	// when smaller) plus up to 4 MiB (2 MiB and 128 KiB where the budget
	// is tight), is refused with a *LimitError.
	MemoryBudget int64
	// Progress, if set, is called from Read with the number of compressed
	// bytes whose output has been handed out so far (an offset in the
	// file, at block boundaries or more often). Calls never overlap.
	Progress func(compressed int64)

	// streamsOnly makes every block decode as a stream, for tests.
	streamsOnly bool
}

// withDefaults fills in the zero fields of o.
func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = DefaultMemoryBudget()
	}
	// Buffers are indexed by int.
	o.MemoryBudget = min(o.MemoryBudget, maxInt/2)
	return o
}

// ErrUnsupported is wrapped by the errors for valid xz files that use what
// this package does not decode: filters other than LZMA2 alone, checks
// other than none, CRC32, CRC64 and SHA-256, flags of later versions of
// the format.
var ErrUnsupported = errors.New("unsupported")

// LimitError is the error for a block that cannot be decoded within the
// memory budget: even decoded as a stream, it needs its LZMA2 dictionary
// (or its size, when smaller) plus room for one chunk and the output on
// its way to Read.
type LimitError struct {
	// Block is the block's number, from 0, over all streams; Offset is
	// where its header is.
	Block  int
	Offset int64
	// DictSize is the block's LZMA2 dictionary size.
	DictSize int64
	// Need is the memory decoding it needs at least, Budget the budget.
	Need, Budget int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("xz: block %d at offset %d: LZMA2 dictionary of %d bytes needs %d bytes of memory, more than the memory budget of %d",
		e.Block, e.Offset, e.DictSize, e.Need, e.Budget)
}

// NewReader returns a reader of the decompressed content of the xz file of
// size bytes in ra: one or more streams with optional stream padding. It
// reads the file's index and block headers first and fails, with an error
// starting "xz: ", if they are malformed, do not agree, use what is not
// supported (ErrUnsupported) or need more memory than the budget
// (*LimitError).
//
// The reader checks every block's sizes and check as it goes; a mismatch
// is an error naming the block. Close stops the decoding goroutines; it
// must be called, even after an error or EOF, and may be called while a
// Read is blocked. ra must allow concurrent ReadAt calls (an *os.File
// does) and stay open until Close returns.
func NewReader(ra io.ReaderAt, size int64, o Options) (io.ReadCloser, error) {
	l, err := parse(ra, size)
	if err != nil {
		return nil, err
	}
	o = o.withDefaults()
	for i := range l.blocks {
		b := &l.blocks[i]
		if _, need := plan(b.size, b.compressedSize, b.dictSize, o.MemoryBudget, o); need > o.MemoryBudget {
			return nil, &LimitError{Block: b.num, Offset: b.offset, DictSize: b.dictSize, Need: need, Budget: o.MemoryBudget}
		}
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
// decoding any data, and checks it the way NewReader does (but for the
// memory budget). It is a cheap way to tell a complete xz file from a
// truncated or damaged one; the blocks' data and checks are only verified
// by decoding them.
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

// arenaAllocated, arenaInUse and arenaPeak count the bytes all arenas
// ever allocated, hold now and held at most, for tests and benchmarks.
var arenaAllocated, arenaInUse, arenaPeak atomic.Int64

// notePeak raises arenaPeak to inUse if lower.
func notePeak(inUse int64) {
	for {
		p := arenaPeak.Load()
		if inUse <= p || arenaPeak.CompareAndSwap(p, inUse) {
			return
		}
	}
}

// errClosed is returned by Read after Close.
var errClosed = errors.New("xz: read after close")

// errStopped is how work interrupted by Close ends; Read never returns it,
// as it sees the close first.
var errStopped = errors.New("xz: stopped")

// maxInt bounds sizes held in memory.
const maxInt = int64(^uint(0) >> 1)

const (
	// pieceSize is the most output of a block decoded as a stream that
	// is handed to Read at once, and pieces how many such buffers each
	// such block has, so that decoding and reading overlap.
	pieceSize = 1 << 20
	pieces    = 2
	// firstPiece is the size of the first piece of such a block, which
	// then doubles: the reader starts early, and a small block costs
	// little.
	firstPiece = 64 << 10
)

// inputBufferSize is the read-ahead of compressed input decoded as a
// stream.
const inputBufferSize = 64 << 10

// plan says how a block of size bytes (-1: unknown) with packed bytes of
// compressed data, padding and check (-1: unknown) and an LZMA2 dictionary
// of dict bytes is decoded within budget, and how much memory that takes:
// whole, holding its output and compressed data, if they fit; otherwise as
// a stream, in a window and pieces (plus its compressed data, when
// packed is known, held in memory by the stream reader).
func plan(size, packed, dict, budget int64, o Options) (whole bool, need int64) {
	if size >= 0 && packed >= 0 && size <= budget-packed && !o.streamsOnly {
		return true, size + packed
	}
	win := lzma2.WindowSize(dict, size)
	return false, win + pieces*pieceLen(size, win, budget)
}

// pieceLen is the size of the piece buffers of a block of size bytes
// (-1: unknown) decoded as a stream in a window of win bytes: pieceSize,
// or firstPiece where the budget is too tight for that, and never more
// than the block.
func pieceLen(size, win, budget int64) int64 {
	n := int64(pieceSize)
	if win+pieces*n > budget {
		n = firstPiece
	}
	if size >= 0 {
		n = min(n, size)
	}
	return n
}

// job is one block on its way to Read: decoded whole by a worker, decoded
// as a stream by a worker or the stream parser, or an error the
// dispatcher has ready.
type job struct {
	b *block
	// src holds the block's data, padding and check at the file's
	// offsets: the file, or input.
	src io.ReaderAt
	// input holds the compressed data of a block decoded whole, which
	// the worker reads into it, or, with filled set, the block's data,
	// padding and check as the stream parser read them. The worker gives
	// it back.
	input  []byte
	filled bool
	// fill, when set, is input still being read by the stream parser
	// while the worker decodes it (filled is set too).
	fill *filling

	// Decoded whole: out is the output buffer, then the output, once
	// done is closed (or err is set).
	out  []byte
	err  error
	done chan struct{}

	// Decoded as a stream: the window, and the output in pieces, sent
	// in order on pieces, which is closed after the last one (and after
	// err is set, if the block failed). The piece buffers go round
	// through spare.
	win    []byte
	pieces chan piece
	spare  chan []byte

	end int64 // compressed bytes consumed once the job is read
	// sizes says where b's sizes come from, for errors: "index" or
	// "header".
	sizes string
}

// piece is part of the output of a block decoded as a stream.
type piece struct {
	buf []byte
	end int64 // compressed bytes consumed to produce it
}

// parallelReader hands out blocks decoded by worker goroutines, in order.
// Blocks in flight are bounded by the memory budget and by slots, one per
// worker and one more: while Read's caller works through a block (an
// unpack writes its files), the next ones are being decoded and one more
// is queued, so no worker waits for Read to finish a block before it can
// start on another. With as many slots as workers, a worker that finished
// early waited for the block before its own to be read: on 2 CPUs, about
// a tenth of the decoders' time.
type parallelReader struct {
	o        Options
	progress func(int64)

	mem     *memory
	slots   chan struct{} // a job takes one until Read is done with it
	jobs    chan *job     // to the workers
	pending chan *job     // to Read, in output order
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

	// workerBlocks and streamedBlocks count the blocks decoded by
	// workers and as streams, for tests.
	workerBlocks, streamedBlocks atomic.Int64
	// arrivingBlocks counts the blocks a worker decoded while the stream
	// parser was still reading them, for tests.
	arrivingBlocks atomic.Int64

	cur      *job   // the job being read, nil between jobs
	buf      []byte // what is being handed out: cur.out or a piece
	off      int    // read position in buf
	pieceEnd int64  // end of the piece in buf
	err      error
}

// newParallelReader starts the workers and a goroutine running dispatch.
// Close waits for dispatch to return if waitDispatcher is set; a
// dispatcher that may block outside the reader's channels (reading a
// stream) is left to return on its own.
func newParallelReader(workers int, o Options, waitDispatcher bool, dispatch func(r *parallelReader)) *parallelReader {
	workers = max(workers, 1)
	slots := max(workers+1, 2)
	r := &parallelReader{
		o:        o,
		progress: o.Progress,
		slots:    make(chan struct{}, slots),
		jobs:     make(chan *job),
		pending:  make(chan *job, slots),
		quit:     make(chan struct{}),

		dispatched:     make(chan struct{}),
		waitDispatcher: waitDispatcher,
	}
	r.mem = newMemory(&r.arena, o.MemoryBudget, 3*slots)
	for range slots {
		r.slots <- struct{}{}
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
			j, err := r.newJob(b, ra, nil)
			if err != nil {
				r.queueError(b.paddedEnd(), err)
				return
			}
			if !r.queue(j, true) {
				return
			}
		}
	})
}

// newJob takes a slot and the memory to decode block b, whose data,
// padding and check are in src (at the file's offsets) or, if not nil,
// input. It fails once the reader is closed.
func (r *parallelReader) newJob(b *block, src io.ReaderAt, input []byte) (*job, error) {
	select {
	case <-r.slots:
	case <-r.quit:
		return nil, errStopped
	}
	j := &job{b: b, src: src, input: input, filled: input != nil, end: b.paddedEnd(), sizes: "index", done: make(chan struct{})}
	if input != nil {
		j.sizes = "header" // the stream parser's
	}
	packed := b.compressedSize
	if input != nil {
		packed = int64(len(input)) // already held
	}
	whole, _ := plan(b.size, packed, b.dictSize, r.mem.limit, r.o)
	var err error
	if whole {
		j.out, err = r.mem.get(b.size, r.quit)
		if err == nil && input == nil {
			j.input, err = r.mem.get(b.compressedSize, r.quit)
		}
	} else {
		err = r.streamBuffers(j, b.size)
	}
	if err != nil && err != errStopped {
		err = blockError(b, "%w", err)
	}
	return j, err
}

// tryJob is newJob for a block decoded whole whose input f the stream
// parser is about to read, without waiting: it returns nil unless a slot
// and the memory for the output are free. The job is queued for Read; if
// a worker was idle it has it (toWorker), else the parser hands it to one
// with queueWorker once the input is read, as it would a job of newJob.
// Either way the memory for the input (f.data) belongs to the job.
func (r *parallelReader) tryJob(b *block, f *filling, input []byte) (j *job, toWorker bool) {
	select {
	case <-r.slots:
	default:
		return nil, false
	}
	out, ok := r.mem.tryGet(b.size)
	if !ok {
		r.slots <- struct{}{}
		return nil, false
	}
	j = &job{b: b, src: f, input: input, filled: true, fill: f, out: out, end: b.paddedEnd(), sizes: "header", done: make(chan struct{})}
	// pending has room for every slot.
	r.pending <- j
	select {
	case r.jobs <- j:
		return j, true
	default:
		return j, false
	}
}

// offerWorker hands j, queued for Read already, to a worker if one is
// idle now.
func (r *parallelReader) offerWorker(j *job) bool {
	select {
	case r.jobs <- j:
		return true
	default:
		return false
	}
}

// queueWorker hands j, queued for Read already, to a worker. It fails once
// the reader is closed.
func (r *parallelReader) queueWorker(j *job) bool {
	select {
	case r.jobs <- j:
		return true
	case <-r.quit:
		return false
	}
}

// streamBuffers gives job j, for a block of size bytes (-1: unknown) decoded
// as a stream, its window and piece buffers.
func (r *parallelReader) streamBuffers(j *job, size int64) error {
	r.streamedBlocks.Add(1)
	var err error
	winLen := lzma2.WindowSize(j.b.dictSize, size)
	if j.win, err = r.mem.get(winLen, r.quit); err != nil {
		return err
	}
	j.pieces = make(chan piece, pieces)
	j.spare = make(chan []byte, pieces)
	for range pieces {
		buf, err := r.mem.get(pieceLen(size, winLen, r.mem.limit), r.quit)
		if err != nil {
			return err
		}
		j.spare <- buf
	}
	return nil
}

// queue queues j for Read and, if toWorker is set, for a worker. It fails
// once the reader is closed.
func (r *parallelReader) queue(j *job, toWorker bool) bool {
	// pending has room for every slot.
	r.pending <- j
	if !toWorker {
		return true
	}
	select {
	case r.jobs <- j:
		return true
	case <-r.quit:
		return false
	}
}

// queueError queues err for Read, after what is queued; end is where in
// the file it was found. Nothing is queued once the reader is closed.
func (r *parallelReader) queueError(end int64, err error) {
	if err == errStopped {
		return
	}
	select {
	case <-r.slots:
	case <-r.quit:
		return
	}
	j := &job{err: err, end: end, done: make(chan struct{})}
	close(j.done)
	r.pending <- j
}

// work decodes blocks until there are no more or the reader is closed.
func (r *parallelReader) work() {
	defer r.wg.Done()
	d := &blockDecoder{r: r, in: bufio.NewReaderSize(nil, inputBufferSize)}
	d.st.Stop = r.quit
	for {
		select {
		case j, ok := <-r.jobs:
			if !ok {
				return
			}
			r.workerBlocks.Add(1)
			if j.pieces != nil {
				d.in.Reset(io.NewSectionReader(j.src, j.b.dataOffset(), j.b.compressedSize))
				err := d.stream(j, d.in, j.b.size, j.b.compressedSize, j.sizes)
				if err == nil {
					err = d.verifyTail(j.b, j.src, nil)
				}
				r.mem.put(j.input)
				j.input, j.src = nil, nil
				d.endStream(j, err)
			} else {
				j.out, j.err = d.decodeWhole(j)
				r.mem.put(j.input)
				j.input, j.src = nil, nil
				close(j.done)
			}
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
	for r.off == len(r.buf) {
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// next moves on to the next piece of output, finishing the job being read
// if it has none left.
func (r *parallelReader) next() error {
	if j := r.cur; j != nil && j.pieces != nil {
		if r.buf != nil {
			if r.progress != nil {
				r.progress(r.pieceEnd)
			}
			// spare has room for every piece buffer.
			j.spare <- r.buf[:cap(r.buf)]
			r.buf, r.off = nil, 0
		}
		select {
		case pc, ok := <-j.pieces:
			if ok {
				r.buf, r.off, r.pieceEnd = pc.buf, 0, pc.end
				return nil
			}
		case <-r.quit:
			return errClosed
		}
		if j.err != nil {
			return j.err
		}
	}
	if j := r.cur; j != nil {
		if r.progress != nil {
			r.progress(j.end)
		}
		r.mem.put(j.out)
		for range cap(j.spare) {
			r.mem.put(<-j.spare)
		}
		r.cur, r.buf, r.off = nil, nil, 0
		r.slots <- struct{}{}
	}
	var j *job
	var ok bool
	select {
	case j, ok = <-r.pending:
	case <-r.quit:
		return errClosed
	}
	if !ok {
		// The dispatcher also stops early when closed.
		if r.closed() {
			return errClosed
		}
		return io.EOF
	}
	if j.pieces == nil {
		select {
		case <-j.done:
		case <-r.quit:
			return errClosed
		}
		if j.err != nil {
			return j.err
		}
		r.buf = j.out
	}
	r.cur, r.off = j, 0
	return nil
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
// buffer and LZMA2 decoder are reused.
type blockDecoder struct {
	r    *parallelReader
	in   *bufio.Reader
	tail [3 + 64]byte // block padding and check
	// st decodes blocks as streams; its Decoder decodes them whole.
	st lzma2.Stream
	// check hashes the output of a block decoded as a stream.
	check hash.Hash
	sum   [sha256.Size]byte
}

// blockError returns an error about block b: "xz: block N at offset M: "
// and the message.
func blockError(b *block, format string, a ...any) error {
	return fmt.Errorf("xz: block %d at offset %d: %w", b.num, b.offset, fmt.Errorf(format, a...))
}

// lzmaError turns an error of internal/lzma2 decoding block b's data into
// the block's error, which names where in the file the data went wrong;
// sizes (the index's or the header's) are what the data contradicts.
func lzmaError(b *block, err error, compressed, size int64, sizes string) error {
	var e *lzma2.Error
	if !errors.As(err, &e) {
		return blockError(b, "%w", err)
	}
	at := b.dataOffset() + e.Offset
	switch e.Kind {
	case lzma2.ErrTruncated:
		if compressed < 0 {
			return blockError(b, "compressed data ends early at offset %d (%s): %w", at, e.Msg, errTruncated)
		}
		return blockError(b, "compressed data runs past the %d bytes the %s says at offset %d (%s)", compressed, sizes, at, e.Msg)
	case lzma2.ErrTooMuchData:
		return blockError(b, "more data than the %d bytes the %s says, in the chunk at offset %d", size, sizes, at)
	case lzma2.ErrTooLittleData:
		return blockError(b, "less data than the %d bytes the %s says (%s)", size, sizes, e.Msg)
	}
	return blockError(b, "corrupt LZMA2 data at offset %d: %s", at, e.Msg)
}

// decodeWhole decodes the block of job j into j.out, its exact size, with
// the compressed data in j.input (read from j.src first unless filled), and
// verifies its compressed size, padding and check. It returns j.out, holding
// the block's data on success.
func (d *blockDecoder) decodeWhole(j *job) ([]byte, error) {
	b := j.b
	packed := j.input[:b.compressedSize]
	if !j.filled {
		if err := readAt(j.src, packed, b.dataOffset(), "block data"); err != nil {
			return j.out, fmt.Errorf("xz: block %d: %w", b.num, errors.Unwrap(err))
		}
	}
	if j.fill != nil {
		d.st.Avail = j.fill.wait
		defer func() { d.st.Avail = nil }()
	}
	n, err := d.st.Decode(j.out, packed, int(min(b.dictSize, maxInt)))
	if errors.Is(err, lzma2.ErrStopped) {
		return j.out, errStopped
	}
	if ie := (*inputError)(nil); errors.As(err, &ie) {
		return j.out, ie.err
	}
	if err != nil {
		return j.out, lzmaError(b, err, b.compressedSize, b.size, j.sizes)
	}
	if int64(n) != b.compressedSize {
		return j.out, blockError(b, "%d bytes of compressed data, but the %s says %d", n, j.sizes, b.compressedSize)
	}
	if err := d.verifyTail(b, j.src, j.out); err != nil {
		if ie := (*inputError)(nil); errors.As(err, &ie) {
			return j.out, ie.err
		}
		return j.out, err
	}
	return j.out, nil
}

// stream decodes block b of job j as a stream read from in, with window
// j.win, sending its output to Read in pieces. compressed and size are
// the sizes the index or the header (sizes says which) gives, -1 where
// unknown; no output beyond size is handed out. On success, b's
// compressedSize and size are what the data holds, and d.check has
// hashed it.
func (d *blockDecoder) stream(j *job, in io.Reader, size, compressed int64, sizes string) error {
	b := j.b
	d.st.Reset(j.win, int(min(b.dictSize, maxInt)))
	defer func() {
		d.r.mem.put(j.win)
		j.win = nil
	}()
	d.check = newCheck(b.check)
	left := size
	if left < 0 {
		left = math.MaxInt64
	}
	var buf []byte
	target := firstPiece
	send := func() error {
		select {
		case j.pieces <- piece{buf, b.dataOffset() + d.st.Consumed()}:
			buf = nil
			return nil
		case <-d.r.quit:
			return errStopped
		}
	}
	var total int64
	for {
		out, err := d.st.Next(in, left)
		if d.check != nil {
			d.check.Write(out)
		}
		total += int64(len(out))
		left -= int64(len(out))
		for len(out) > 0 {
			if buf == nil {
				select {
				case buf = <-j.spare:
					buf = buf[:0]
				case <-d.r.quit:
					return errStopped
				}
			}
			k := copy(buf[len(buf):min(cap(buf), target)], out)
			buf = buf[:len(buf)+k]
			out = out[k:]
			if len(buf) == min(cap(buf), target) {
				target = min(2*target, pieceSize)
				if err := send(); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if buf != nil {
				j.spare <- buf
			}
			if errors.Is(err, lzma2.ErrStopped) {
				return errStopped
			}
			return lzmaError(b, err, compressed, size, sizes)
		}
	}
	if len(buf) > 0 {
		if err := send(); err != nil {
			return err
		}
	} else if buf != nil {
		j.spare <- buf
	}
	used := d.st.Consumed()
	if compressed >= 0 && used != compressed {
		return blockError(b, "%d bytes of compressed data, but the %s says %d", used, sizes, compressed)
	}
	if size >= 0 && total != size {
		return blockError(b, "less data than the %d bytes the %s says (%d)", size, sizes, total)
	}
	b.compressedSize, b.size = used, total
	return nil
}

// endStream ends job j, decoded as a stream, with err.
func (d *blockDecoder) endStream(j *job, err error) {
	if err == errStopped {
		return
	}
	j.err = err
	close(j.pieces)
}

// verifyTail checks the padding after block b's data and its check, of out
// or, if out is nil, the one d.check has computed.
func (d *blockDecoder) verifyTail(b *block, src io.ReaderAt, out []byte) error {
	padding := int(pad4(b.headerSize+b.compressedSize) - b.headerSize - b.compressedSize)
	tail := d.tail[:padding+checkSize(b.check)]
	if err := readAt(src, tail, b.dataOffset()+b.compressedSize, "block check"); err != nil {
		return fmt.Errorf("xz: block %d: %w", b.num, errors.Unwrap(err))
	}
	return d.checkTail(b, tail, out)
}

// checkTail checks tail, the padding and check after block b's data, with
// the check of out or, if out is nil, the one d.check has computed.
func (d *blockDecoder) checkTail(b *block, tail []byte, out []byte) error {
	padding := len(tail) - checkSize(b.check)
	for _, c := range tail[:padding] {
		if c != 0 {
			return blockError(b, "non-zero block padding at offset %d", b.dataOffset()+b.compressedSize)
		}
	}
	h := d.check
	if out != nil || h == nil {
		h = newCheck(b.check)
		if h != nil {
			h.Write(out)
		}
	}
	if h != nil && !bytes.Equal(h.Sum(d.sum[:0]), tail[padding:]) {
		return blockError(b, "%s check mismatch: corrupt data", checkName(b.check))
	}
	return nil
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

// newCheck returns a hash computing check id as stored in xz files (CRC
// values little-endian), or nil for none.
func newCheck(id byte) hash.Hash {
	switch id {
	case checkCRC32:
		return &leHash32{crc32.NewIEEE()}
	case checkCRC64:
		return &leHash64{crc64.New(crc64Table())}
	case checkSHA256:
		return sha256.New()
	}
	return nil
}

// leHash32 gives a 32-bit hash's sum little-endian, as xz stores CRC32.
type leHash32 struct{ hash.Hash32 }

// Sum implements hash.Hash.
func (h *leHash32) Sum(b []byte) []byte { return binary.LittleEndian.AppendUint32(b, h.Sum32()) }

// leHash64 gives a 64-bit hash's sum little-endian, as xz stores CRC64.
type leHash64 struct{ hash.Hash64 }

// Sum implements hash.Hash.
func (h *leHash64) Sum(b []byte) []byte { return binary.LittleEndian.AppendUint64(b, h.Sum64()) }

// memReaderAt reads a piece of a file held in memory, at the file's
// offsets.
type memReaderAt struct {
	data []byte
	base int64
}

// ReadAt implements io.ReaderAt.
func (m *memReaderAt) ReadAt(p []byte, off int64) (int, error) {
	off -= m.base
	if off < 0 {
		return 0, errors.New("xz: read before the block")
	}
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

package xzpar

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// NewStreamReader returns a reader of the decompressed content of the xz
// data read from r, such as a download in progress or a file read once
// from start to end. Blocks whose headers give their sizes (xz --threads
// writes them) are read into memory and decoded by workers in parallel,
// as NewReader decodes them, within the same budget; other blocks (and
// those whose compressed data does not fit in the budget) are decoded as
// they are read, in the goroutine that reads r. Either way, reading r and
// decoding overlap with the caller's use of the output.
//
// Unlike NewReader, it cannot check the index before decoding, so errors
// in the container, and blocks over the memory budget (*LimitError), show
// up in Read, in order, after the data before them. Data of a block
// decoded as a stream is handed out as it is decoded, each LZMA2 chunk
// once it has decoded cleanly, before the block's check is verified; the
// error comes at the end of the block. Blocks decoded whole are verified
// before any of their data is handed out.
//
// Close must be called. It stops the decoding goroutines; the one reading
// r returns once its current Read on r does (Close does not close r, and
// does not wait for that Read). Options.Progress reports the bytes read
// from r whose output has been handed out.
func NewStreamReader(r io.Reader, o Options) (io.ReadCloser, error) {
	o = o.withDefaults()
	s := &streamParser{in: bufio.NewReaderSize(r, inputBufferSize)}
	// Fail early on what is not xz at all.
	if magic, err := s.in.Peek(len(headerMagic)); !bytes.Equal(magic, headerMagic) {
		if len(magic) < len(headerMagic) && bytes.Equal(magic, headerMagic[:len(magic)]) {
			if err == nil || errors.Is(err, io.EOF) {
				err = errTruncated
			}
			return nil, fmt.Errorf("xz: read stream header: %w", err)
		}
		return nil, errors.New("xz: not an xz file (bad magic)")
	}
	return newParallelReader(o.Workers, o, false, s.dispatch), nil
}

// streamParser reads an xz file front to back, queueing its blocks.
type streamParser struct {
	in  *bufio.Reader
	off int64 // bytes consumed from in
	r   *parallelReader

	blocks int // blocks so far, for numbering
	// dec decodes the blocks decoded here, once there is one.
	dec *blockDecoder
}

// errStop says the reader was closed while the parser waited.
var errStop = errors.New("xz: stopped")

// errQueued says the error that ended parsing is queued for Read already.
var errQueued = errors.New("xz: error queued")

// dispatch parses the whole input, then queues the error that ended it,
// if any.
func (s *streamParser) dispatch(r *parallelReader) {
	s.r = r
	err := s.parse()
	if err != nil && err != errStop && err != errQueued {
		r.queueError(s.off, err)
	}
}

// readFull reads len(p) bytes, calling an early end a truncated file.
func (s *streamParser) readFull(p []byte, what string) error {
	n, err := io.ReadFull(s.in, p)
	s.off += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errTruncated
		}
		return readError(what, s.off-int64(n), err)
	}
	return nil
}

// readError is the error of a read of what at offset off that failed.
func readError(what string, off int64, err error) error {
	return fmt.Errorf("xz: read %s at offset %d: %w", what, off, err)
}

// ReadByte reads one byte, counting it (for readVLI).
func (s *streamParser) ReadByte() (byte, error) {
	c, err := s.in.ReadByte()
	if err == nil {
		s.off++
	}
	return c, err
}

// Read reads, counting what it reads (for the LZMA2 decoder).
func (s *streamParser) Read(p []byte) (int, error) {
	n, err := s.in.Read(p)
	s.off += int64(n)
	return n, err
}

// parse reads streams and stream padding to the end of the input.
func (s *streamParser) parse() error {
	for {
		if err := s.parseStream(); err != nil {
			return err
		}
		// Stream padding: groups of four zero bytes, then the end or
		// another stream.
		for {
			p, err := s.in.Peek(4)
			if len(p) == 0 && errors.Is(err, io.EOF) {
				return nil
			}
			if len(p) < 4 {
				if err == nil || errors.Is(err, io.EOF) {
					return fmt.Errorf("xz: %d bytes of trailing data at offset %d", len(p), s.off)
				}
				return fmt.Errorf("xz: read at offset %d: %w", s.off, err)
			}
			if binary.LittleEndian.Uint32(p) != 0 {
				break
			}
			s.in.Discard(4)
			s.off += 4
		}
	}
}

// parseStream parses one stream, queueing its blocks.
func (s *streamParser) parseStream() error {
	start := s.off
	if p, _ := s.in.Peek(len(headerMagic)); !bytes.Equal(p, headerMagic[:len(p)]) {
		return fmt.Errorf("xz: no stream header at offset %d: trailing data", start)
	}
	var header [streamHeaderSize]byte
	if err := s.readFull(header[:], "stream header"); err != nil {
		return err
	}
	if !bytes.Equal(header[:6], headerMagic) {
		return fmt.Errorf("xz: no stream header at offset %d: trailing data", start)
	}
	if crc32.ChecksumIEEE(header[6:8]) != binary.LittleEndian.Uint32(header[8:]) {
		return fmt.Errorf("xz: stream header at offset %d: CRC32 mismatch", start)
	}
	check, err := streamCheck(header[6:8])
	if err != nil {
		return fmt.Errorf("xz: stream header at offset %d: %w", start, err)
	}
	if check != checkNone && check != checkCRC32 && check != checkCRC64 && check != checkSHA256 {
		return fmt.Errorf("xz: stream header at offset %d: unsupported check %#x", start, check)
	}

	var records []record
	for {
		first, err := s.in.Peek(1)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errTruncated
			}
			return fmt.Errorf("xz: read block header at offset %d: %w", s.off, err)
		}
		if first[0] == 0 {
			break
		}
		r, err := s.block(check)
		if err != nil {
			return err
		}
		records = append(records, r)
	}
	indexSize, err := s.index(records)
	if err != nil {
		return err
	}

	footerAt := s.off
	var footer [streamFooterSize]byte
	if err := s.readFull(footer[:], "stream footer"); err != nil {
		return err
	}
	switch {
	case !bytes.Equal(footer[10:], footerMagic):
		return fmt.Errorf("xz: no stream footer at offset %d", footerAt)
	case crc32.ChecksumIEEE(footer[4:10]) != binary.LittleEndian.Uint32(footer[:4]):
		return fmt.Errorf("xz: stream footer at offset %d: CRC32 mismatch", footerAt)
	case !bytes.Equal(footer[8:10], header[6:8]):
		return fmt.Errorf("xz: stream at offset %d: header and footer flags differ", start)
	case (int64(binary.LittleEndian.Uint32(footer[4:8]))+1)*4 != indexSize:
		return fmt.Errorf("xz: stream footer at offset %d: index size %d, but the index has %d bytes",
			footerAt, (int64(binary.LittleEndian.Uint32(footer[4:8]))+1)*4, indexSize)
	}
	return nil
}

// index reads a stream's index and compares it with the blocks read; it
// returns the index's size.
func (s *streamParser) index(records []record) (int64, error) {
	start := s.off
	fail := func(format string, a ...any) error {
		return fmt.Errorf("xz: index at offset %d: %s", start, fmt.Sprintf(format, a...))
	}
	crc := crc32.NewIEEE()
	cr := &countingByteReader{r: s, crc: crc}
	if _, err := cr.ReadByte(); err != nil { // the indicator, peeked at
		return 0, fail("%v", readErr(err))
	}
	count, err := readVLI(cr)
	if err != nil {
		return 0, fail("record count: %v", readErr(err))
	}
	if count != uint64(len(records)) {
		return 0, fail("%d records for %d blocks", count, len(records))
	}
	for i, want := range records {
		u, err := readVLI(cr)
		if err != nil {
			return 0, fail("record %d: %v", i, readErr(err))
		}
		c, err := readVLI(cr)
		if err != nil {
			return 0, fail("record %d: %v", i, readErr(err))
		}
		if u != uint64(want.unpadded) || c != uint64(want.uncompressed) {
			return 0, fail("record %d says %d/%d bytes, the block has %d/%d",
				i, u, c, want.unpadded, want.uncompressed)
		}
	}
	for cr.n%4 != 0 {
		b, err := cr.ReadByte()
		if err != nil {
			return 0, fail("padding: %v", readErr(err))
		}
		if b != 0 {
			return 0, fail("non-zero padding")
		}
	}
	var sum [4]byte
	if err := s.readFull(sum[:], "index"); err != nil {
		return 0, err
	}
	if crc.Sum32() != binary.LittleEndian.Uint32(sum[:]) {
		return 0, fail("CRC32 mismatch")
	}
	return cr.n + 4, nil
}

// block reads one block, queueing it for a worker when its header gives
// its sizes and the budget allows to hold its compressed data, and
// decoding it here as a stream otherwise. It returns the block's index
// record.
func (s *streamParser) block(check byte) (record, error) {
	if s.blocks >= maxBlocks {
		return record{}, fmt.Errorf("xz: file has more than %d blocks, the most this decoder takes", maxBlocks)
	}
	b := &block{num: s.blocks, offset: s.off, check: check}
	s.blocks++
	var buf [1024]byte
	first, _ := s.in.Peek(1)
	h := buf[:blockHeaderSize(first[0])]
	if err := s.readFull(h, "block header"); err != nil {
		return record{}, err
	}
	cs := int64(checkSize(check))
	bh, err := parseBlockHeader(h, int(cs))
	if err != nil {
		return record{}, blockError(b, "%w", err)
	}
	b.headerSize, b.dictSize = int64(len(h)), bh.dictSize
	b.compressedSize, b.size = bh.compressed, bh.uncompressed
	budget := s.r.mem.limit
	packed := int64(-1) // data, padding and check
	if bh.compressed >= 0 {
		packed = pad4(b.headerSize+bh.compressed) - b.headerSize + cs
	}
	whole, need := plan(bh.uncompressed, packed, b.dictSize, budget, s.r.o)
	switch {
	case whole:
	case packed >= 0 && bh.uncompressed >= 0 && need <= budget-packed:
		// Held in memory, it can be decoded by a worker as a
		// stream, at the same time as others.
	default:
		if need > budget {
			return record{}, &LimitError{Block: b.num, Offset: b.offset, DictSize: b.dictSize, Need: need, Budget: budget}
		}
		return s.decodeHere(b)
	}
	input, err := s.r.mem.get(packed, s.r.quit)
	if err != nil {
		return record{}, err
	}
	what := fmt.Sprintf("block %d", b.num)
	// The record is taken before a worker has b: one decoding it as a
	// stream writes the sizes it found into b (the same, or an error).
	rec := record{b.headerSize + b.compressedSize + cs, b.size}
	if whole {
		// With a slot and the memory for the output free right now,
		// a worker decodes the block while it arrives: the one idle
		// now, or the first to become idle while the data arrives
		// (offer), or else the next one once all of it is read.
		f := newFilling(input, b.dataOffset(), s.r.quit, &s.r.arrivingBlocks)
		if j, toWorker := s.r.tryJob(b, f, input); j != nil {
			offer := func() bool {
				if !toWorker {
					toWorker = s.r.offerWorker(j)
				}
				return toWorker
			}
			if err := s.fill(f, what, offer); err != nil {
				if !toWorker {
					// Read gets the error from the job; no worker
					// will give the input back.
					s.r.mem.put(j.input)
					j.input, j.src, j.fill = nil, nil, nil
					j.err = err
					close(j.done)
				}
				return record{}, errQueued
			}
			if !toWorker && !s.r.queueWorker(j) {
				return record{}, errStop
			}
			return rec, nil
		}
	}
	if err := s.readFull(input, what); err != nil {
		s.r.mem.put(input)
		return record{}, err
	}
	j, err := s.r.newJob(b, &memReaderAt{data: input, base: b.dataOffset()}, input)
	if err != nil {
		s.r.mem.put(input)
		return record{}, err
	}
	if !s.r.queue(j, true) {
		return record{}, errStop
	}
	return rec, nil
}

// decodeHere decodes block b as it is read, as a stream, queueing its
// output as it comes, and verifies it at its end.
func (s *streamParser) decodeHere(b *block) (record, error) {
	select {
	case <-s.r.slots:
	case <-s.r.quit:
		return record{}, errStop
	}
	j := &job{b: b}
	if err := s.r.streamBuffers(j, b.size); err != nil {
		if err == errStopped {
			return record{}, errStop
		}
		return record{}, blockError(b, "%w", err)
	}
	s.r.queue(j, false)
	if s.dec == nil {
		s.dec = &blockDecoder{r: s.r}
		s.dec.st.Stop = s.r.quit
	}
	err := s.decodeStream(j)
	if err == errStopped {
		return record{}, errStop
	}
	j.end = s.off
	s.dec.endStream(j, err)
	if err != nil {
		// Read says it after the data before it.
		return record{}, errQueued
	}
	return record{b.headerSize + b.compressedSize + int64(checkSize(b.check)), b.size}, nil
}

// decodeStream decodes block b of job j as it is read, verifying its
// sizes, padding and check.
func (s *streamParser) decodeStream(j *job) error {
	b := j.b
	var input io.Reader = s
	if b.compressedSize >= 0 {
		input = io.LimitReader(s, b.compressedSize)
	}
	if err := s.dec.stream(j, input, b.size, b.compressedSize, "header"); err != nil {
		return err
	}
	tail := s.dec.tail[:pad4(b.headerSize+b.compressedSize)-b.headerSize-b.compressedSize+int64(checkSize(b.check))]
	if err := s.readFull(tail, fmt.Sprintf("block %d check", b.num)); err != nil {
		return err
	}
	return s.dec.checkTail(b, tail, nil)
}

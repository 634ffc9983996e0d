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
	"runtime"

	"github.com/ulikunitz/xz/lzma"
)

// NewStreamReader returns a reader of the decompressed content of the xz
// data read from r, such as a download in progress. Blocks whose headers
// give their sizes (xz --threads writes them) are read whole and decoded
// in parallel like NewReader's; other blocks are decoded as they are read,
// in the reading goroutine. Either way, reading r and decoding overlap
// with the caller's use of the output.
//
// Unlike NewReader, it cannot check the index before decoding, so errors
// in the container show up in Read, in order, after the data before them.
// Data of a block decoded as it is read (one without sizes in its header)
// is handed out before its check is verified; the error comes at the end
// of the block. Blocks decoded in parallel are verified before any of
// their data is handed out. Filters other than LZMA2 are not supported.
//
// Close must be called. It stops the decoding goroutines; the one reading
// r returns once its current Read on r does (Close does not close r, and
// does not wait for that Read). Options.Progress reports the bytes read from r whose output has been
// handed out.
func NewStreamReader(r io.Reader, o Options) (io.ReadCloser, error) {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MaxBlockSize <= 0 {
		o.MaxBlockSize = DefaultMaxBlockSize
	}
	s := &streamParser{in: bufio.NewReaderSize(r, inputBufferSize), o: o}
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
	o   Options
	r   *parallelReader

	blocks int // blocks so far, for numbering
}

// errStop says the reader was closed while the parser waited.
var errStop = errors.New("xz: stopped")

// dispatch parses the whole input, then queues the error that ended it,
// if any.
func (s *streamParser) dispatch(r *parallelReader) {
	s.r = r
	err := s.parse()
	if err != nil && err != errStop {
		r.queue(ready(nil, false, s.off, err))
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
		return fmt.Errorf("xz: read %s at offset %d: %w", what, s.off-int64(n), err)
	}
	return nil
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
// its sizes, and decoding it here otherwise. It returns the block's index
// record.
func (s *streamParser) block(check byte) (record, error) {
	b := &block{num: s.blocks, offset: s.off, check: check}
	s.blocks++
	fail := func(format string, a ...any) error {
		return fmt.Errorf("xz: block %d at offset %d: %s", b.num, b.offset, fmt.Sprintf(format, a...))
	}
	var buf [1024]byte
	first, _ := s.in.Peek(1)
	h := buf[:blockHeaderSize(first[0])]
	if err := s.readFull(h, "block header"); err != nil {
		return record{}, err
	}
	bh, err := parseBlockHeader(h)
	if err != nil {
		return record{}, fail("%v", err)
	}
	if !bh.lzma2 {
		return record{}, fail("filter chain not supported (only LZMA2 is)")
	}
	b.headerSize, b.lzma2, b.dictSize = int64(len(h)), true, bh.dictSize
	cs := int64(checkSize(check))

	// Valid LZMA2 data is at most a little larger than its content; a
	// block claiming more is decoded here, as it is read, rather than
	// buffered whole.
	if bh.compressed >= 0 && bh.uncompressed >= 0 && bh.uncompressed <= s.o.MaxBlockSize &&
		bh.compressed <= bh.uncompressed+bh.uncompressed/64+(64<<10) {
		b.compressedSize, b.size = bh.compressed, bh.uncompressed
		if err := s.queueBlock(b); err != nil {
			return record{}, err
		}
		return record{b.headerSize + b.compressedSize + cs, b.size}, nil
	}
	return s.decodeHere(b, bh, fail)
}

// queueBlock reads block b's data, padding and check and queues it for a
// worker.
func (s *streamParser) queueBlock(b *block) error {
	out, ok := s.r.takeBuffer()
	if !ok {
		return errStop
	}
	var input []byte
	select {
	case input = <-s.r.inputs:
	case <-s.r.quit:
		return errStop
	}
	n := int(b.paddedEnd() - b.dataOffset())
	if cap(input) < n {
		s.r.arena.free(input)
		var err error
		if input, err = s.r.arena.alloc(n); err != nil {
			return fmt.Errorf("xz: block %d at offset %d: %w", b.num, b.offset, err)
		}
	}
	input = input[:n]
	if err := s.readFull(input, fmt.Sprintf("block %d", b.num)); err != nil {
		return err
	}
	src := &memReaderAt{data: input, base: b.dataOffset()}
	j := &job{b: b, src: src, input: input, buf: out, token: true, end: s.off, done: make(chan struct{})}
	if !s.r.queue(j) {
		return errStop
	}
	return nil
}

// decodeHere decodes block b as it is read, queueing its output as it
// comes, and verifies it at its end.
func (s *streamParser) decodeHere(b *block, bh blockHeader, fail func(string, ...any) error) (record, error) {
	dict := bh.dictSize
	if bh.uncompressed >= 0 {
		// A block needs no more dictionary than its size.
		dict = min(dict, bh.uncompressed)
	}
	if limit := max(s.o.MaxBlockSize, DefaultMaxBlockSize); dict > limit {
		return record{}, fail("LZMA2 dictionary of %d bytes exceeds the limit of %d", dict, limit)
	}
	var input io.Reader = s
	if bh.compressed >= 0 {
		input = io.LimitReader(s, bh.compressed)
	}
	dataStart := s.off
	lr, err := lzma.Reader2Config{DictCap: int(max(dict, lzma.MinDictCap))}.NewReader2(input)
	if err != nil {
		return record{}, fail("%v", err)
	}
	h := newCheck(b.check)
	var size int64
	// Hand out small pieces first, so the consumer starts early and a
	// tiny block costs little.
	chunk := 64 << 10
	for {
		buf, ok := s.r.takeBuffer()
		if !ok {
			return record{}, errStop
		}
		if cap(buf) < chunk {
			s.r.arena.free(buf)
			if buf, err = s.r.arena.alloc(chunk); err != nil {
				return record{}, fail("%v", err)
			}
		}
		buf = buf[:min(cap(buf), chunk)]
		chunk = min(2*chunk, decodeChunk)
		n, err := fill(lr, buf)
		size += int64(n)
		if h != nil {
			h.Write(buf[:n])
		}
		if bh.uncompressed >= 0 && size > bh.uncompressed {
			err = fail("more data than the %d bytes the header says", bh.uncompressed)
		} else if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fail("compressed data ends early: %v", errTruncated)
		} else if err != nil && !errors.Is(err, io.EOF) {
			err = fail("%v", err)
		}
		if !s.r.queue(ready(buf[:n], true, s.off, nil)) {
			return record{}, errStop
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return record{}, err
		}
	}
	compressed := s.off - dataStart
	if bh.compressed >= 0 && compressed != bh.compressed {
		return record{}, fail("%d bytes of compressed data, but the header says %d", compressed, bh.compressed)
	}
	if bh.uncompressed >= 0 && size != bh.uncompressed {
		return record{}, fail("%d bytes of data, but the header says %d", size, bh.uncompressed)
	}
	b.compressedSize, b.size = compressed, size
	tail := make([]byte, b.paddedEnd()-dataStart-compressed)
	if err := s.readFull(tail, fmt.Sprintf("block %d check", b.num)); err != nil {
		return record{}, err
	}
	padding := len(tail) - checkSize(b.check)
	for _, c := range tail[:padding] {
		if c != 0 {
			return record{}, fail("non-zero block padding")
		}
	}
	if h != nil && !bytes.Equal(h.Sum(nil), tail[padding:]) {
		return record{}, fail("%s check mismatch: corrupt data", checkName(b.check))
	}
	return record{b.headerSize + compressed + int64(checkSize(b.check)), size}, nil
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

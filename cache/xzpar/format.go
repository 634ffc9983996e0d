package xzpar

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strings"
)

// The xz container, as described in "The .xz File Format" version 1.2.1
// (tukaani.org/xz/xz-file-format.txt). A file is one or more streams, each
// optionally followed by stream padding (a multiple of four zero bytes):
//
//	stream = header(12) block* index footer(12)
//	block  = header(4..1024) compressed-data padding(0..3) check(0..64)
//	index  = 0x00 count {unpadded-size uncompressed-size}* padding crc32
//
// Only the index says where blocks start and how large they are, and it is
// at the end; that is why the parser works backwards from the end of the
// file, the way xz --list does.

const (
	streamHeaderSize = 12
	streamFooterSize = 12

	// filterLZMA2 is the filter ID of LZMA2 in a block header.
	filterLZMA2 = 0x21

	// maxBlocks bounds the blocks of a file, and so the memory its index
	// takes here (about 100 bytes a block). xz --threads makes one block
	// per 24 MiB; a file at the limit would hold 1.5 TiB.
	maxBlocks = 1 << 16

	// maxVLI is the largest value of the format's variable-length integers.
	maxVLI = math.MaxInt64

	// Check IDs this decoder verifies; the others are valid but refused.
	checkNone   = 0x00
	checkCRC32  = 0x01
	checkCRC64  = 0x04
	checkSHA256 = 0x0a
)

var (
	headerMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	footerMagic = []byte{'Y', 'Z'}
)

// errTruncated is the cause of every error about data missing at the end.
var errTruncated = errors.New("file is truncated")

// checkSize returns the size of a block's check for a check ID (the format
// fixes it for IDs it has not assigned yet, so unknown checks can be
// skipped).
func checkSize(id byte) int {
	if id == 0 {
		return 0
	}
	return 4 << ((id - 1) / 3)
}

// block is one block of the file, located by the index.
type block struct {
	num    int   // position in the file, from 0, across streams
	offset int64 // of the block header in the file
	// headerSize, compressedSize and checkSize add up to the index's
	// unpadded size.
	headerSize     int64
	compressedSize int64
	size           int64 // uncompressed, from the index
	check          byte  // check ID of the block's stream
	dictSize       int64 // of its LZMA2 filter, the only one
}

// dataOffset is where the block's compressed data starts.
func (b *block) dataOffset() int64 { return b.offset + b.headerSize }

// paddedEnd is the offset just after the block's check.
func (b *block) paddedEnd() int64 {
	return b.offset + pad4(b.headerSize+b.compressedSize) + int64(checkSize(b.check))
}

// pad4 rounds n up to a multiple of four.
func pad4(n int64) int64 { return (n + 3) &^ 3 }

// layout is what the parser learns of a file.
type layout struct {
	blocks []block
	// maxBlockSize is the largest over all blocks.
	maxBlockSize int64
}

// parse reads the structure of the xz file of size bytes in ra: every
// stream's footer, index and header, and every block header. It checks
// that they agree with each other; it does not read compressed data.
func parse(ra io.ReaderAt, size int64) (*layout, error) {
	if size < streamHeaderSize+streamFooterSize {
		// Most likely not xz at all; say so rather than "truncated"
		// when even the magic is wrong.
		if err := checkMagic(ra, size); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("xz: %w (%d bytes)", errTruncated, size)
	}
	if err := checkMagic(ra, size); err != nil {
		return nil, err
	}
	if size%4 != 0 {
		// Streams and padding are multiples of four bytes, so this is
		// either truncation or junk after the last stream.
		return nil, fmt.Errorf("xz: file size %d is not a multiple of four: truncated or trailing data", size)
	}
	var streams [][]block // in reverse order
	nblocks := 0
	l := &layout{}
	pos := size
	for pos > 0 {
		var err error
		if pos, err = skipPadding(ra, pos); err != nil {
			return nil, err
		}
		if pos == 0 {
			return nil, errors.New("xz: file starts with stream padding")
		}
		var blocks []block
		blocks, pos, err = parseStream(ra, pos, maxBlocks-nblocks)
		if err != nil {
			return nil, err
		}
		streams = append(streams, blocks)
		nblocks += len(blocks)
	}
	var uncompressed int64
	for i := len(streams) - 1; i >= 0; i-- {
		for _, b := range streams[i] {
			b.num = len(l.blocks)
			if err := readBlockHeader(ra, &b); err != nil {
				return nil, err
			}
			if b.size > maxVLI-uncompressed {
				return nil, errors.New("xz: total uncompressed size overflows")
			}
			uncompressed += b.size
			l.maxBlockSize = max(l.maxBlockSize, b.size)
			l.blocks = append(l.blocks, b)
		}
	}
	return l, nil
}

// checkMagic makes sure the file starts like an xz file, so that other
// files get a clear error rather than one about their last bytes.
func checkMagic(ra io.ReaderAt, size int64) error {
	var p [6]byte
	n, err := ra.ReadAt(p[:min(size, 6)], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("xz: read stream header: %w", err)
	}
	if !bytes.Equal(p[:n], headerMagic[:n]) {
		return errors.New("xz: not an xz file (bad magic)")
	}
	return nil
}

// skipPadding returns the offset of the end of the stream that ends at or
// before end, skipping stream padding (four-byte groups of zeros).
func skipPadding(ra io.ReaderAt, end int64) (int64, error) {
	var buf [4096]byte
	for end > 0 {
		n := min(end, int64(len(buf)))
		p := buf[:n]
		if err := readAt(ra, p, end-n, "stream padding"); err != nil {
			return 0, err
		}
		i := len(p)
		for i >= 4 && binary.LittleEndian.Uint32(p[i-4:]) == 0 {
			i -= 4
		}
		end -= int64(len(p) - i)
		if i > 0 {
			break
		}
	}
	return end, nil
}

// parseStream parses the stream that ends at end (after its footer) and
// returns its blocks and where the stream starts. It refuses a stream of
// more than maxBlocks blocks.
func parseStream(ra io.ReaderAt, end int64, maxBlocks int) ([]block, int64, error) {
	if end < streamHeaderSize+streamFooterSize {
		return nil, 0, fmt.Errorf("xz: %w: stream ending at %d is too short", errTruncated, end)
	}
	var footer [streamFooterSize]byte
	if err := readAt(ra, footer[:], end-streamFooterSize, "stream footer"); err != nil {
		return nil, 0, err
	}
	if !bytes.Equal(footer[10:], footerMagic) {
		return nil, 0, fmt.Errorf("xz: no stream footer at offset %d: truncated file or trailing data", end-streamFooterSize)
	}
	if crc32.ChecksumIEEE(footer[4:10]) != binary.LittleEndian.Uint32(footer[:4]) {
		return nil, 0, fmt.Errorf("xz: stream footer at offset %d: CRC32 mismatch", end-streamFooterSize)
	}
	flags := footer[8:10]
	check, err := streamCheck(flags)
	if err != nil {
		return nil, 0, fmt.Errorf("xz: stream footer at offset %d: %w", end-streamFooterSize, err)
	}
	indexSize := (int64(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	indexEnd := end - streamFooterSize
	if indexSize > indexEnd-streamHeaderSize {
		return nil, 0, fmt.Errorf("xz: stream footer at offset %d: index size %d exceeds the stream", end-streamFooterSize, indexSize)
	}
	indexStart := indexEnd - indexSize
	records, err := readIndex(ra, indexStart, indexSize, maxBlocks)
	if err != nil {
		return nil, 0, err
	}

	// The blocks fill the space between the stream header and the index.
	var blocksSize int64
	for i, r := range records {
		if r.unpadded > maxVLI-blocksSize-3 || pad4(r.unpadded) > indexStart-streamHeaderSize-blocksSize {
			return nil, 0, fmt.Errorf("xz: index at offset %d: block %d does not fit in the file", indexStart, i)
		}
		blocksSize += pad4(r.unpadded)
	}
	start := indexStart - blocksSize - streamHeaderSize
	var header [streamHeaderSize]byte
	if err := readAt(ra, header[:], start, "stream header"); err != nil {
		return nil, 0, err
	}
	if !bytes.Equal(header[:6], headerMagic) {
		return nil, 0, fmt.Errorf("xz: no stream header at offset %d where the index puts it", start)
	}
	if crc32.ChecksumIEEE(header[6:8]) != binary.LittleEndian.Uint32(header[8:]) {
		return nil, 0, fmt.Errorf("xz: stream header at offset %d: CRC32 mismatch", start)
	}
	if !bytes.Equal(header[6:8], flags) {
		return nil, 0, fmt.Errorf("xz: stream at offset %d: header and footer flags differ", start)
	}

	blocks := make([]block, len(records))
	off := start + streamHeaderSize
	cs := int64(checkSize(check))
	for i, r := range records {
		if r.unpadded < 5+cs {
			return nil, 0, fmt.Errorf("xz: index at offset %d: block %d: unpadded size %d is too small", indexStart, i, r.unpadded)
		}
		blocks[i] = block{offset: off, size: r.uncompressed, check: check,
			// headerSize is known once the header is read.
			compressedSize: r.unpadded - cs}
		off += pad4(r.unpadded)
	}
	return blocks, start, nil
}

// streamCheck validates stream flags and returns the check ID. A check
// this package does not compute is refused: xz decodes such a file with a
// warning that it cannot verify it, but unverified data is not to be
// unpacked silently.
func streamCheck(flags []byte) (byte, error) {
	if flags[0] != 0 || flags[1]&0xf0 != 0 {
		return 0, fmt.Errorf("%w stream flags %#02x%02x", ErrUnsupported, flags[0], flags[1])
	}
	switch c := flags[1]; c {
	case checkNone, checkCRC32, checkCRC64, checkSHA256:
		return c, nil
	default:
		return 0, fmt.Errorf("%w check ID %#x (only none, CRC32, CRC64 and SHA-256 are)", ErrUnsupported, c)
	}
}

// record is one index record.
type record struct {
	unpadded, uncompressed int64
}

// readIndex reads and checks the index of size bytes at offset, which may
// list at most maxRecords blocks.
func readIndex(ra io.ReaderAt, offset, size int64, maxRecords int) ([]record, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("xz: index at offset %d: %s", offset, fmt.Sprintf(format, a...))
	}
	crc := crc32.NewIEEE()
	cr := &countingByteReader{r: bufio.NewReaderSize(io.NewSectionReader(ra, offset, size-4), 4096), crc: crc}
	indicator, err := cr.ReadByte()
	if err != nil {
		return nil, fail("%v", readErr(err))
	}
	if indicator != 0 {
		return nil, fail("bad index indicator %#02x", indicator)
	}
	count, err := readVLI(cr)
	if err != nil {
		return nil, fail("record count: %v", readErr(err))
	}
	// Each record takes at least two bytes, which bounds what a lying
	// count can make us allocate.
	if count > uint64(size/2) {
		return nil, fail("%d records cannot fit in %d bytes", count, size)
	}
	if count > uint64(maxRecords) {
		return nil, fmt.Errorf("xz: file has more than %d blocks, the most this decoder takes", maxBlocks)
	}
	records := make([]record, 0, count)
	for i := range count {
		u, err := readVLI(cr)
		if err != nil {
			return nil, fail("record %d: %v", i, readErr(err))
		}
		c, err := readVLI(cr)
		if err != nil {
			return nil, fail("record %d: %v", i, readErr(err))
		}
		if u == 0 || u > maxVLI&^3 {
			return nil, fail("record %d: bad unpadded size %d", i, u)
		}
		records = append(records, record{int64(u), int64(c)})
	}
	for cr.n%4 != 0 {
		b, err := cr.ReadByte()
		if err != nil {
			return nil, fail("padding: %v", readErr(err))
		}
		if b != 0 {
			return nil, fail("non-zero padding")
		}
	}
	if cr.n != size-4 {
		return nil, fail("%d bytes of records, but the footer says %d", cr.n, size-4)
	}
	var sum [4]byte
	if err := readAt(ra, sum[:], offset+size-4, "index"); err != nil {
		return nil, err
	}
	if crc.Sum32() != binary.LittleEndian.Uint32(sum[:]) {
		return nil, fail("CRC32 mismatch")
	}
	return records, nil
}

// readErr turns the end of a bounded section into a clear cause.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("ends early")
	}
	return err
}

// countingByteReader counts and checksums what is read through it.
type countingByteReader struct {
	r   io.ByteReader
	n   int64
	crc interface{ Write([]byte) (int, error) }
	b   [1]byte
}

// ReadByte implements io.ByteReader.
func (c *countingByteReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err != nil {
		return 0, err
	}
	c.n++
	c.b[0] = b
	c.crc.Write(c.b[:])
	return b, nil
}

// errVLI is the error for a malformed variable-length integer.
var errVLI = errors.New("malformed variable-length integer")

// readVLI reads one of the format's variable-length integers: seven bits a
// byte, least significant first, at most nine bytes, shortest form only.
func readVLI(r io.ByteReader) (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			if b == 0 && i > 0 {
				return 0, errVLI
			}
			return v, nil
		}
	}
	return 0, errVLI
}

// readBlockHeader reads the header of b, checks it against the index and
// fills in headerSize and dictSize.
func readBlockHeader(ra io.ReaderAt, b *block) error {
	fail := func(format string, a ...any) error { return blockError(b, format, a...) }
	var buf [1024]byte
	if err := readAt(ra, buf[:1], b.offset, "block header"); err != nil {
		return err
	}
	if buf[0] == 0 {
		return fail("index indicator where the index puts a block")
	}
	h := buf[:blockHeaderSize(buf[0])]
	if err := readAt(ra, h, b.offset, "block header"); err != nil {
		return err
	}
	bh, err := parseBlockHeader(h, checkSize(b.check))
	if err != nil {
		return fail("%w", err)
	}
	b.headerSize = int64(len(h))
	b.compressedSize -= b.headerSize
	if b.compressedSize <= 0 {
		return fail("index leaves no room for compressed data")
	}
	if bh.compressed >= 0 && bh.compressed != b.compressedSize {
		return fail("compressed size %d in the header, %d in the index", bh.compressed, b.compressedSize)
	}
	if bh.uncompressed >= 0 && bh.uncompressed != b.size {
		return fail("uncompressed size %d in the header, %d in the index", bh.uncompressed, b.size)
	}
	b.dictSize = bh.dictSize
	return nil
}

// blockHeaderSize returns the size of a block header from its first byte
// (which must not be 0, the index indicator).
func blockHeaderSize(first byte) int { return (int(first) + 1) * 4 }

// blockHeader is what a block header says.
type blockHeader struct {
	// compressed and uncompressed are the sizes the header gives, or -1.
	compressed, uncompressed int64
	// dictSize is the LZMA2 dictionary size.
	dictSize int64
}

// filterName names a filter ID of the xz format.
func filterName(id uint64) string {
	var name string
	switch id {
	case 0x03:
		name = "Delta"
	case 0x04:
		name = "x86 BCJ"
	case 0x05:
		name = "PowerPC BCJ"
	case 0x06:
		name = "IA-64 BCJ"
	case 0x07:
		name = "ARM BCJ"
	case 0x08:
		name = "ARM-Thumb BCJ"
	case 0x09:
		name = "SPARC BCJ"
	case 0x0a:
		name = "ARM64 BCJ"
	case 0x0b:
		name = "RISC-V BCJ"
	case filterLZMA2:
		name = "LZMA2"
	default:
		name = "unknown"
	}
	return fmt.Sprintf("%s (ID %#x)", name, id)
}

// parseBlockHeader parses and checks the block header h, whose length is
// the one its first byte gives, of a block with a check of cs bytes.
// Filter chains other than LZMA2 alone are refused as unsupported.
func parseBlockHeader(h []byte, cs int) (blockHeader, error) {
	bh := blockHeader{compressed: -1, uncompressed: -1}
	n := len(h)
	if crc32.ChecksumIEEE(h[:n-4]) != binary.LittleEndian.Uint32(h[n-4:]) {
		return bh, errors.New("header CRC32 mismatch")
	}
	flags := h[1]
	if flags&0x3c != 0 {
		return bh, fmt.Errorf("%w block flags %#02x", ErrUnsupported, flags)
	}
	r := bytes.NewReader(h[2 : n-4])
	if flags&0x40 != 0 {
		c, err := readVLI(r)
		if err != nil {
			return bh, fmt.Errorf("compressed size: %v", readErr(err))
		}
		// The block's unpadded size must stay a valid one.
		if c == 0 || c > uint64(maxVLI&^3-int64(n)-int64(cs)) {
			return bh, fmt.Errorf("bad compressed size %d", c)
		}
		bh.compressed = int64(c)
	}
	if flags&0x80 != 0 {
		u, err := readVLI(r)
		if err != nil {
			return bh, fmt.Errorf("uncompressed size: %v", readErr(err))
		}
		if u > maxVLI {
			return bh, fmt.Errorf("bad uncompressed size %d", u)
		}
		bh.uncompressed = int64(u)
	}
	nfilters := int(flags&3) + 1
	var chain []string
	lzma2At := -1
	for i := 0; i < nfilters; i++ {
		id, err := readVLI(r)
		if err != nil {
			return bh, fmt.Errorf("filter %d: %v", i, readErr(err))
		}
		psize, err := readVLI(r)
		if err != nil {
			return bh, fmt.Errorf("filter %d: %v", i, readErr(err))
		}
		if psize > uint64(r.Len()) {
			return bh, fmt.Errorf("filter %d: properties overrun the header", i)
		}
		props := make([]byte, psize)
		r.Read(props)
		chain = append(chain, filterName(id))
		if id == filterLZMA2 {
			lzma2At = i
			if psize != 1 || props[0] > 40 {
				return bh, fmt.Errorf("invalid LZMA2 properties %x", props)
			}
			bh.dictSize = lzma2DictSize(props[0])
		}
	}
	for r.Len() > 0 {
		if c, _ := r.ReadByte(); c != 0 {
			// xz, too, takes it for a field it does not know.
			return bh, fmt.Errorf("%w block header: non-zero padding", ErrUnsupported)
		}
	}
	if nfilters != 1 || lzma2At != 0 {
		return bh, fmt.Errorf("%w filter chain %s: only LZMA2 alone is supported", ErrUnsupported, strings.Join(chain, " + "))
	}
	return bh, nil
}

// lzma2DictSize decodes an LZMA2 dictionary size property (at most 40).
func lzma2DictSize(p byte) int64 {
	if p == 40 {
		return math.MaxUint32
	}
	return int64(2|p&1) << (p/2 + 11)
}

// readAt reads exactly len(p) bytes at off, calling a short read a
// truncated file.
func readAt(ra io.ReaderAt, p []byte, off int64, what string) error {
	n, err := ra.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("xz: read %s at offset %d: %w", what, off, errTruncated)
	}
	return fmt.Errorf("xz: read %s at offset %d: %w", what, off, err)
}

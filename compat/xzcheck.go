package compat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The xz container format (tukaani.org xz-file-format-1.2.0, sections 2
// and 3), as far as checkXZ needs it.
var (
	xzHeaderMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	xzFooterMagic = []byte{'Y', 'Z'}
)

const (
	xzHeaderLen = 12
	xzFooterLen = 12
	xzLZMA2     = 0x21
)

// errNotXZ is checkXZ's error for data that does not start like xz.
var errNotXZ = errors.New("not xz data")

// checkXZ walks the streams of the xz file data from its end (footer,
// index, then each block header the index places) and refuses an LZMA2
// dictionary larger than maxDict before any decoder allocates one. It
// checks the structure only as far as that needs; the decoder checks the
// rest (checksums, sizes).
func checkXZ(data []byte, maxDict int64) error {
	if !bytes.HasPrefix(data, xzHeaderMagic) {
		return errNotXZ
	}
	pos := len(data)
	for pos > 0 {
		// Stream padding: zero bytes in fours after a stream.
		for pos >= 4 && bytes.Equal(data[pos-4:pos], []byte{0, 0, 0, 0}) {
			pos -= 4
		}
		if pos == 0 {
			return xzCorrupt("no stream before padding")
		}
		start, err := checkXZStream(data, pos, maxDict)
		if err != nil {
			return err
		}
		pos = start
	}
	return nil
}

// checkXZStream checks the stream that ends at data[end] and returns where
// it starts.
func checkXZStream(data []byte, end int, maxDict int64) (start int, err error) {
	if end < xzHeaderLen+xzFooterLen {
		return 0, xzCorrupt("shorter than a stream")
	}
	footer := data[end-xzFooterLen : end]
	if !bytes.Equal(footer[10:], xzFooterMagic) {
		return 0, xzCorrupt("no stream footer at the end")
	}
	indexLen := (uint64(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	if indexLen > uint64(end-xzFooterLen-xzHeaderLen) {
		return 0, xzCorrupt("index size out of range")
	}
	indexStart := end - xzFooterLen - int(indexLen)
	index := data[indexStart : end-xzFooterLen]
	if index[0] != 0 {
		return 0, xzCorrupt("no index where the footer says")
	}
	p := 1
	count, err := readVLI(index, &p)
	if err != nil {
		return 0, err
	}
	// Each record takes at least two bytes, so count cannot exceed that.
	if count > uint64(len(index)/2) {
		return 0, xzCorrupt("index record count out of range")
	}
	unpadded := make([]uint64, count)
	blocksLen := uint64(0)
	for i := range unpadded {
		if unpadded[i], err = readVLI(index, &p); err != nil {
			return 0, err
		}
		if _, err = readVLI(index, &p); err != nil { // uncompressed size
			return 0, err
		}
		blocksLen += (unpadded[i] + 3) &^ 3
		if unpadded[i] == 0 || blocksLen > uint64(indexStart) {
			return 0, xzCorrupt("block sizes out of range")
		}
	}
	start = indexStart - int(blocksLen) - xzHeaderLen
	if start < 0 || !bytes.Equal(data[start:start+len(xzHeaderMagic)], xzHeaderMagic) {
		return 0, xzCorrupt("no stream header where the index says")
	}
	blockPos := start + xzHeaderLen
	for _, u := range unpadded {
		if err := checkXZBlockHeader(data[blockPos:indexStart], maxDict); err != nil {
			return 0, err
		}
		blockPos += int((u + 3) &^ 3)
	}
	return start, nil
}

// checkXZBlockHeader checks the filters of the block header at the start
// of b.
func checkXZBlockHeader(b []byte, maxDict int64) error {
	if len(b) < 2 || b[0] == 0 {
		return xzCorrupt("no block header where the index says")
	}
	hdrLen := (int(b[0]) + 1) * 4
	if hdrLen > len(b) {
		return xzCorrupt("block header out of range")
	}
	h := b[:hdrLen-4] // the CRC32 ends it
	flags := h[1]
	p := 2
	if flags&0x40 != 0 { // compressed size
		if _, err := readVLI(h, &p); err != nil {
			return err
		}
	}
	if flags&0x80 != 0 { // uncompressed size
		if _, err := readVLI(h, &p); err != nil {
			return err
		}
	}
	for n := int(flags&3) + 1; n > 0; n-- {
		id, err := readVLI(h, &p)
		if err != nil {
			return err
		}
		size, err := readVLI(h, &p)
		if err != nil {
			return err
		}
		if size > uint64(len(h)-p) {
			return xzCorrupt("filter properties out of range")
		}
		props := h[p : p+int(size)]
		p += int(size)
		if id == xzLZMA2 && size == 1 {
			if dict := lzma2Dict(props[0]); dict > maxDict {
				return fmt.Errorf("xz: dictionary of %d bytes, more than the limit of %d", dict, maxDict)
			}
		}
	}
	return nil
}

// lzma2Dict is the dictionary size an LZMA2 properties byte asks for
// (codes above 40 are invalid; the decoder refuses them).
func lzma2Dict(props byte) int64 {
	code := int64(props & 0x3f)
	if code > 40 {
		return 0
	}
	if code == 40 {
		return 1<<32 - 1
	}
	return (2 | code&1) << (code/2 + 11)
}

// readVLI reads an xz variable-length integer from b at *p.
func readVLI(b []byte, p *int) (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		if *p >= len(b) {
			return 0, xzCorrupt("truncated number")
		}
		c := b[*p]
		*p++
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, xzCorrupt("number too long")
}

func xzCorrupt(what string) error {
	return fmt.Errorf("xz: truncated or corrupt data: %s", what)
}

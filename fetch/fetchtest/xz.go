package fetchtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"runtime"
	"sync"

	"github.com/ulikunitz/xz/lzma"
)

// xzDictCap is the LZMA2 dictionary of `xz -6`, the default level, which
// the image builders use; with --threads=0 xz cuts blocks of three times
// that (24 MiB).
const xzDictCap = 8 << 20

var crc64Table = crc64.MakeTable(crc64.ECMA)

// XZ compresses data into an .xz file with CRC64 checks, the format
// `xz` writes by default. With blockSize <= 0 the file has one block whose
// header, like single-threaded xz's, does not record its sizes. With
// blockSize > 0 the data is cut into independent blocks of blockSize
// uncompressed bytes (the last one shorter) whose headers record their
// compressed and uncompressed sizes, as `xz --threads=0` writes them; such
// a file can be decoded block by block in parallel, using the index at its
// end. Blocks are compressed concurrently.
func XZ(data []byte, blockSize int) ([]byte, error) {
	var chunks [][]byte
	switch {
	case len(data) == 0:
	case blockSize <= 0:
		chunks = [][]byte{data}
	default:
		for off := 0; off < len(data); off += blockSize {
			chunks = append(chunks, data[off:min(off+blockSize, len(data))])
		}
	}
	compressed := make([][]byte, len(chunks))
	errs := make([]error, len(chunks))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, c := range chunks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			compressed[i], errs[i] = lzma2(c)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("xz block %d: %w", i, err)
		}
	}

	const checkCRC64 = 0x04
	flags := []byte{0x00, checkCRC64}
	var out bytes.Buffer
	out.Write([]byte{0xfd, '7', 'z', 'X', 'Z', 0x00})
	out.Write(flags)
	out.Write(le32(crc32.ChecksumIEEE(flags)))

	type record struct{ unpadded, uncompressed uint64 }
	records := make([]record, len(chunks))
	for i, c := range chunks {
		header := blockHeader(uint64(len(compressed[i])), uint64(len(c)), blockSize > 0)
		out.Write(header)
		out.Write(compressed[i])
		out.Write(make([]byte, pad4(len(compressed[i]))))
		var check [8]byte
		binary.LittleEndian.PutUint64(check[:], crc64.Checksum(c, crc64Table))
		out.Write(check[:])
		records[i] = record{uint64(len(header) + len(compressed[i]) + len(check)), uint64(len(c))}
	}

	var index bytes.Buffer
	index.WriteByte(0x00)
	index.Write(varint(uint64(len(records))))
	for _, r := range records {
		index.Write(varint(r.unpadded))
		index.Write(varint(r.uncompressed))
	}
	index.Write(make([]byte, pad4(index.Len())))
	index.Write(le32(crc32.ChecksumIEEE(index.Bytes())))
	out.Write(index.Bytes())

	footer := append(le32(uint32(index.Len()/4-1)), flags...)
	out.Write(le32(crc32.ChecksumIEEE(footer)))
	out.Write(footer)
	out.Write([]byte{'Y', 'Z'})
	return out.Bytes(), nil
}

// lzma2 is the raw LZMA2 stream of data, end marker included.
func lzma2(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := lzma.Writer2Config{DictCap: xzDictCap}.NewWriter2(&buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// blockHeader is an xz block header with the one LZMA2 filter, recording
// the block's sizes when withSizes is set.
func blockHeader(compressed, uncompressed uint64, withSizes bool) []byte {
	var h bytes.Buffer
	h.WriteByte(0) // header size, set below
	var flags byte // one filter
	if withSizes {
		flags |= 0x40 | 0x80
	}
	h.WriteByte(flags)
	if withSizes {
		h.Write(varint(compressed))
		h.Write(varint(uncompressed))
	}
	h.Write([]byte{0x21, 1, lzma.EncodeDictCap(xzDictCap)})
	h.Write(make([]byte, pad4(h.Len()+4)))
	b := h.Bytes()
	b[0] = byte((len(b)+4)/4 - 1)
	return append(b, le32(crc32.ChecksumIEEE(b))...)
}

func varint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func le32(v uint32) []byte {
	return binary.LittleEndian.AppendUint32(nil, v)
}

// pad4 is how many zero bytes bring n to a multiple of four.
func pad4(n int) int { return (4 - n%4) % 4 }

package lzma2

import (
	"errors"
	"fmt"
	"io"
)

// WindowSize returns the size of the buffer a Stream needs to decode a
// stream with dictionary size dictSize and at most limit bytes of output
// (limit < 0: unknown): the dictionary plus one chunk (and up to 15 bytes
// that keep positions aligned when the window slides), or all of the
// output when that is less.
func WindowSize(dictSize, limit int64) int64 {
	n := dictSize + 15 + MaxChunkSize
	if limit >= 0 && limit < n {
		return limit
	}
	return n
}

// Stream decodes an LZMA2 stream read from an io.Reader, one chunk at a
// time, into a window that holds the dictionary and one chunk; when it is
// full, the last dictionary's worth of data moves to its front. Memory is
// bounded by the window, whatever the stream's size, at the cost of that
// copy (about dictSize bytes every len(window) - dictSize bytes of
// output).
//
// Each chunk is decoded whole, and checked, before Next returns any of its
// output: a chunk that does not decode cleanly (its range coder does not
// end exactly at its packed size, or it holds an end-of-payload marker),
// or that would exceed the output allowed, returns no data at all.
//
// Its zero value is not ready: call Reset first.
type Stream struct {
	// Decoder holds the probability models; Decoder.Stop is checked
	// before each chunk.
	Decoder

	win      []byte
	dictSize int
	// lo is where the dictionary starts in win (a dictionary reset, or
	// the front after a move); pos is where the next chunk goes. The
	// distance from a dictionary reset to lo is a multiple of 16, so
	// pos-lo gives the position bits (pb, lp) right.
	lo, pos int
	f       framing
	in      []byte // the current chunk's packed data
	off     int64  // bytes of the stream consumed
	ended   bool
}

// Reset starts decoding a new stream with dictionary size dictSize into
// win, which must be at least WindowSize(dictSize, limit) bytes for
// streams of at most limit bytes of output.
func (s *Stream) Reset(win []byte, dictSize int) {
	s.win, s.dictSize = win, dictSize
	s.lo, s.pos = 0, 0
	s.f = framing{}
	s.off = 0
	s.ended = false
	if s.in == nil {
		s.in = make([]byte, 1<<16)
	}
}

// Consumed returns how many bytes of the stream Next has read: exactly
// the chunks decoded (and the end marker, once seen), never more.
func (s *Stream) Consumed() int64 { return s.off }

// Next reads the next chunk from r, decodes it and returns its output, a
// slice of the window valid until the next call. left is how many more
// bytes of output the stream may hold: a chunk with more is ErrTooMuchData
// and none of it is decoded. After the end marker Next returns io.EOF. An
// error of r other than an early end is returned wrapped; an early end
// is ErrTruncated. Errors are final.
func (s *Stream) Next(r io.Reader, left int64) ([]byte, error) {
	if s.ended {
		return nil, io.EOF
	}
	if s.Stop != nil {
		select {
		case <-s.Stop:
			return nil, ErrStopped
		default:
		}
	}
	start := s.off
	var hdr [6]byte
	if err := s.read(r, hdr[:1], "no end marker"); err != nil {
		return nil, err
	}
	ctl := hdr[0]
	if ctl == 0 {
		s.ended = true
		return nil, io.EOF
	}
	reset, err := s.f.control(ctl, start)
	if err != nil {
		return nil, err
	}
	n := headerLen(ctl)
	if err := s.read(r, hdr[1:n], "in a chunk header"); err != nil {
		return nil, err
	}
	c, err := s.f.header(&s.Decoder, hdr[:n], start)
	if err != nil {
		return nil, err
	}
	if reset {
		s.lo = s.pos
	}
	if int64(c.size) > left {
		return nil, failed(ErrTooMuchData, s.off, "a chunk of %d bytes where %d are left", c.size, left)
	}
	if err := s.room(c.size); err != nil {
		return nil, err
	}
	out := s.win[s.pos : s.pos+c.size]
	dataOff := s.off
	if !c.lzma {
		if err := s.read(r, out, fmt.Sprintf("in a stored chunk of %d bytes", c.size)); err != nil {
			return nil, err
		}
	} else {
		in := s.in[:c.packed]
		if err := s.read(r, in, fmt.Sprintf("in an LZMA chunk of %d bytes", c.packed)); err != nil {
			return nil, err
		}
		if err := s.decodeChunk(s.win[s.lo:s.pos+c.size], s.pos-s.lo, in, s.dictSize); err != nil {
			return nil, corrupt(dataOff, "%v", err)
		}
	}
	s.pos += c.size
	return out, nil
}

// read fills p from r, counting what it reads; an early end is
// ErrTruncated with what.
func (s *Stream) read(r io.Reader, p []byte, what string) error {
	n, err := io.ReadFull(r, p)
	at := s.off + int64(n)
	s.off = at
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return failed(ErrTruncated, at, "%s", what)
	}
	return fmt.Errorf("lzma2: read at offset %d: %w", at, err)
}

// room makes room for n more bytes at pos, moving the dictionary (the last
// dictSize bytes, and as many more, fewer than 16, as keep the position
// bits aligned) to the front of the window when it is full.
func (s *Stream) room(n int) error {
	if n <= len(s.win)-s.pos {
		return nil
	}
	keep := s.pos - s.lo
	if keep > s.dictSize {
		keep = s.dictSize + (keep-s.dictSize)&15
	}
	if n > len(s.win)-keep {
		return fmt.Errorf("lzma2: window of %d bytes too small for a dictionary of %d and a chunk of %d", len(s.win), keep, n)
	}
	copy(s.win, s.win[s.pos-keep:s.pos])
	s.lo, s.pos = 0, keep
	return nil
}

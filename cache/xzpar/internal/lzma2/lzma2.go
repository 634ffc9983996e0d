// Package lzma2 decodes LZMA2 streams (the data of xz blocks), as strictly
// as liblzma: whatever liblzma refuses, they refuse.
//
// Decoder.Decode decodes a whole stream straight into a buffer of its known
// uncompressed size. The output buffer is the dictionary: matches copy
// within it, so there is no circular window and no copy out, and decoding
// allocates nothing. This is what makes it cheaper than a general streaming
// decoder, and why it only suits callers that hold a block's whole output
// anyway. Stream decodes a stream of any size read from an io.Reader in a
// window of its dictionary size plus one chunk, with the same code.
//
// The format is LZMA2 as xz writes it (see the .xz file format
// specification and the LZMA SDK's lzma-specification.txt): a sequence of
// chunks, each either stored or LZMA-compressed with its own range coder,
// ended by a zero byte.
package lzma2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Errors of Decode, wrapped with where in the stream they were found.
var (
	// ErrStopped is returned when Decoder.Stop was closed.
	ErrStopped = errors.New("lzma2: stopped")
	// ErrTruncated means the input ends before the stream does.
	ErrTruncated = errors.New("stream is truncated")
	// ErrTooMuchData means the stream holds more than len(out) bytes.
	ErrTooMuchData = errors.New("more data than expected")
	// ErrTooLittleData means the stream ends before len(out) bytes.
	ErrTooLittleData = errors.New("less data than expected")
	// ErrCorrupt is any other malformed input.
	ErrCorrupt = errors.New("corrupt data")
)

// Decoder decodes LZMA2 streams. Its zero value is ready to use; reusing one
// avoids allocating its probability tables (about 28 KiB) for each stream.
// A Decoder is not safe for concurrent use.
type Decoder struct {
	// Stop, when not nil, is checked between chunks (each at most 2 MiB
	// of output); once it is closed Decode returns ErrStopped.
	Stop <-chan struct{}
	// Avail, when not nil, lets Decode start on input that is still
	// arriving: Decode calls it before it reads src[:n], and it returns
	// once those bytes are in place, or with an error, which Decode
	// returns as it is. It is called once or twice per chunk (each at most
	// 64 KiB of input), never inside one.
	Avail func(n int) error

	lc, lp, pb uint
	state      uint32
	rep        [4]uint32
	p          probs
}

// Probability model sizes, as LZMA defines them.
const (
	numStates        = 12
	maxPosStates     = 16
	endPosModelIndex = 14  // first distance slot coded with direct bits
	numFullDistances = 128 // distances below this use posSpecial models
	literalSize      = 0x300
	maxLcLp          = 4
	probInit         = 1 << 10
	minMatchLen      = 2
)

// lenModel is the probability model of a match or rep length.
type lenModel struct {
	choice  uint16
	choice2 uint16
	low     [maxPosStates][8]uint16
	mid     [maxPosStates][8]uint16
	high    [256]uint16
}

// probs holds every adaptive probability of the LZMA decoder.
type probs struct {
	isMatch    [numStates * maxPosStates]uint16
	isRep      [numStates]uint16
	isRepG0    [numStates]uint16
	isRepG1    [numStates]uint16
	isRepG2    [numStates]uint16
	isRep0Long [numStates * maxPosStates]uint16
	posSlot    [4][64]uint16
	posSpecial [1 + numFullDistances - endPosModelIndex]uint16
	align      [16]uint16
	matchLen   lenModel
	repLen     lenModel
	literal    [literalSize << maxLcLp]uint16
}

// initModels is probs with every model but literal at its initial value,
// copied in on a state reset. It is built on first use: a run that decodes
// nothing (--help, --list) should not fault in and fill ~28 KiB at start-up.
var initModels = sync.OnceValue(func() *probs {
	p := new(probs)
	fill := func(s []uint16) {
		for i := range s {
			s[i] = probInit
		}
	}
	fill(p.isMatch[:])
	fill(p.isRep[:])
	fill(p.isRepG0[:])
	fill(p.isRepG1[:])
	fill(p.isRepG2[:])
	fill(p.isRep0Long[:])
	for i := range p.posSlot {
		fill(p.posSlot[i][:])
	}
	fill(p.posSpecial[:])
	fill(p.align[:])
	for _, l := range []*lenModel{&p.matchLen, &p.repLen} {
		l.choice, l.choice2 = probInit, probInit
		for i := range l.low {
			fill(l.low[i][:])
			fill(l.mid[i][:])
		}
		fill(l.high[:])
	}
	return p
})

// resetState resets the LZMA state and probabilities for the current
// lc/lp/pb.
func (d *Decoder) resetState() {
	lit := d.p.literal[:literalSize<<(d.lc+d.lp)]
	initModels := initModels()
	d.p.isMatch = initModels.isMatch
	d.p.isRep = initModels.isRep
	d.p.isRepG0 = initModels.isRepG0
	d.p.isRepG1 = initModels.isRepG1
	d.p.isRepG2 = initModels.isRepG2
	d.p.isRep0Long = initModels.isRep0Long
	d.p.posSlot = initModels.posSlot
	d.p.posSpecial = initModels.posSpecial
	d.p.align = initModels.align
	d.p.matchLen = initModels.matchLen
	d.p.repLen = initModels.repLen
	for i := range lit {
		lit[i] = probInit
	}
	d.state = 0
	d.rep = [4]uint32{}
}

// Error is an error of Decode or Stream.Next: which kind, where, and
// details.
type Error struct {
	// Kind is one of the Err* variables.
	Kind error
	// Offset is where in the LZMA2 stream the error was found: the
	// start of the chunk (its control byte) or of its data.
	Offset int64
	// Msg says what is wrong.
	Msg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("lzma2: %v at offset %d: %s", e.Kind, e.Offset, e.Msg)
}

func (e *Error) Unwrap() error { return e.Kind }

// corrupt makes the error for malformed input found at offset off of the
// stream.
func corrupt(off int64, format string, a ...any) error {
	return &Error{ErrCorrupt, off, fmt.Sprintf(format, a...)}
}

// failed makes an error of another kind than ErrCorrupt.
func failed(kind error, off int64, format string, a ...any) error {
	return &Error{kind, off, fmt.Sprintf(format, a...)}
}

// MaxChunkSize is the most output one LZMA2 chunk can hold.
const MaxChunkSize = 1 << 21

// chunk is what an LZMA2 chunk header says.
type chunk struct {
	lzma   bool // LZMA-compressed, not stored
	size   int  // uncompressed
	packed int  // compressed (stored chunks: size)
}

// headerLen returns the length of the header a control byte starts.
func headerLen(ctl byte) int {
	switch {
	case ctl >= 0xc0:
		return 6
	case ctl >= 0x80:
		return 5
	}
	return 3
}

// framing enforces the order of chunks as liblzma does: the first chunk
// resets the dictionary, an LZMA chunk after a dictionary reset sets new
// properties, and no control byte is undefined. Its zero value expects
// the first chunk of a stream.
type framing struct {
	started, propsSet bool
}

// control checks control byte ctl (not the end marker) of the chunk at
// offset off and notes its dictionary reset, which it reports.
func (f *framing) control(ctl byte, off int64) (dictReset bool, err error) {
	if ctl >= 0xe0 || ctl == 1 {
		// A dictionary reset also requires new properties for the
		// next LZMA chunk.
		f.started, f.propsSet = true, false
		return true, nil
	}
	if !f.started {
		return false, corrupt(off, "first chunk does not reset the dictionary")
	}
	if ctl < 0x80 && ctl > 2 {
		return false, corrupt(off, "invalid chunk control byte %#x", ctl)
	}
	return false, nil
}

// header parses the chunk header hdr (headerLen(hdr[0]) bytes, its
// control byte checked by control) at offset off and applies its resets
// of properties and state to d.
func (f *framing) header(d *Decoder, hdr []byte, off int64) (chunk, error) {
	var c chunk
	ctl := hdr[0]
	if ctl < 0x80 {
		c.size = (int(hdr[1])<<8 | int(hdr[2])) + 1
		c.packed = c.size
		return c, nil
	}
	c.lzma = true
	c.size = (int(ctl&0x1f)<<16 | int(hdr[1])<<8 | int(hdr[2])) + 1
	c.packed = (int(hdr[3])<<8 | int(hdr[4])) + 1
	if ctl >= 0xc0 {
		if err := d.setProps(hdr[5]); err != nil {
			return c, corrupt(off+5, "%v", err)
		}
		f.propsSet = true
	} else if !f.propsSet {
		return c, corrupt(off, "LZMA chunk without properties after a dictionary reset")
	}
	if ctl >= 0xa0 {
		d.resetState()
	}
	return c, nil
}

// Decode decodes the LZMA2 stream at the start of src into out, whose
// length must be the stream's exact uncompressed size, and returns how many
// bytes of src the stream took up to and including its end marker. Matches
// reaching further back than dictSize bytes are errors, as they are for
// a decoder with a window of that size. Malformed input, a stream that does
// not end within src, and one whose output is not exactly len(out) bytes
// are errors; out's contents are then undefined.
func (d *Decoder) Decode(out, src []byte, dictSize int) (int, error) {
	ip := 0
	pos := 0
	dictStart := 0
	var f framing
	for {
		if d.Stop != nil {
			select {
			case <-d.Stop:
				return ip, ErrStopped
			default:
			}
		}
		if ip >= len(src) {
			return ip, failed(ErrTruncated, int64(ip), "no end marker")
		}
		if err := d.avail(src, ip+1); err != nil {
			return ip, err
		}
		if src[ip] == 0 {
			ip++
			break
		}
		reset, err := f.control(src[ip], int64(ip))
		if err != nil {
			return ip, err
		}
		n := headerLen(src[ip])
		if len(src)-ip < n {
			return ip, failed(ErrTruncated, int64(ip), "in a chunk header")
		}
		if err := d.avail(src, ip+n); err != nil {
			return ip, err
		}
		c, err := f.header(d, src[ip:ip+n], int64(ip))
		if err != nil {
			return ip, err
		}
		if reset {
			dictStart = pos
		}
		ip += n
		if c.packed > len(src)-ip {
			if c.lzma {
				return ip, failed(ErrTruncated, int64(ip), "in an LZMA chunk of %d bytes", c.packed)
			}
			return ip, failed(ErrTruncated, int64(ip), "in a stored chunk of %d bytes", c.size)
		}
		if err := d.avail(src, ip+c.packed); err != nil {
			return ip, err
		}
		if c.size > len(out)-pos {
			return ip, failed(ErrTooMuchData, int64(ip), "a chunk of %d bytes after %d of %d", c.size, pos, len(out))
		}
		if !c.lzma {
			copy(out[pos:pos+c.size], src[ip:ip+c.size])
		} else if err := d.decodeChunk(out[dictStart:pos+c.size], pos-dictStart, src[ip:ip+c.packed], dictSize); err != nil {
			return ip, corrupt(int64(ip), "%v", err)
		}
		pos += c.size
		ip += c.packed
	}
	if pos != len(out) {
		return ip, failed(ErrTooLittleData, int64(ip), "%d bytes, expected %d", pos, len(out))
	}
	return ip, nil
}

// avail waits, through Avail, for src[:n] (n at most len(src)).
func (d *Decoder) avail(src []byte, n int) error {
	if d.Avail == nil {
		return nil
	}
	return d.Avail(min(n, len(src)))
}

// setProps sets lc, lp and pb from an LZMA properties byte.
func (d *Decoder) setProps(b byte) error {
	if b >= 9*5*5 {
		return fmt.Errorf("invalid properties byte %#x", b)
	}
	lc, lp, pb := uint(b%9), uint(b/9%5), uint(b/45)
	if lc+lp > maxLcLp {
		return fmt.Errorf("lc %d + lp %d exceed %d", lc, lp, maxLcLp)
	}
	d.lc, d.lp, d.pb = lc, lp, pb
	return nil
}

// rangeDecoder is LZMA's binary arithmetic decoder over one chunk.
type rangeDecoder struct {
	rng, code uint32
	in        []byte
	// ip counts every byte taken, including those past the end of in
	// (read as zero), so an overrun shows as ip > len(in) at the end.
	ip int
}

// fill takes in another byte; the range has got too narrow.
func (rc *rangeDecoder) fill() {
	var c byte
	if uint(rc.ip) < uint(len(rc.in)) {
		c = rc.in[rc.ip]
	}
	rc.ip++
	rc.rng <<= 8
	rc.code = rc.code<<8 | uint32(c)
}

// bit decodes one bit with probability model *p, adapting it. Like
// liblzma, it normalizes before decoding, so a chunk's last byte is taken
// by the final normalize in decodeChunk.
func (rc *rangeDecoder) bit(p *uint16) uint32 {
	if rc.rng < 1<<24 {
		rc.fill()
	}
	v := uint32(*p)
	bound := (rc.rng >> 11) * v
	if rc.code < bound {
		rc.rng = bound
		*p = uint16(v + (2048-v)>>5)
		return 0
	}
	rc.code -= bound
	rc.rng -= bound
	*p = uint16(v - v>>5)
	return 1
}

// tree3 decodes a 3-bit symbol, most significant bit first.
func (rc *rangeDecoder) tree3(p *[8]uint16) uint32 {
	return rc.tree(p[:], 3)
}

// tree6 decodes a 6-bit symbol, most significant bit first.
func (rc *rangeDecoder) tree6(p *[64]uint16) uint32 {
	return rc.tree(p[:], 6)
}

// tree8 decodes an 8-bit symbol, most significant bit first.
func (rc *rangeDecoder) tree8(p *[256]uint16) uint32 {
	return rc.tree(p[:], 8)
}

// tree decodes an n-bit symbol, most significant bit first, with models
// p[1:1<<n]. It, like the other multi-bit decoders and the literal loops,
// works on the coder's state in locals: the compiler keeps those in
// registers, where it reloads the fields of *rc for every bit.
func (rc *rangeDecoder) tree(p []uint16, n uint32) uint32 {
	rng, code, ip, in := rc.rng, rc.code, rc.ip, rc.in
	m := uint32(1)
	limit := uint32(1) << n
	for m < limit {
		if rng < 1<<24 {
			var c byte
			if uint(ip) < uint(len(in)) {
				c = in[ip]
			}
			ip++
			rng <<= 8
			code = code<<8 | uint32(c)
		}
		pr := &p[m]
		v := uint32(*pr)
		bound := (rng >> 11) * v
		one := uint32((uint64(bound) - uint64(code) - 1) >> 32) // as in literalFrom
		rng = bound + (rng-2*bound)&one
		code -= bound & one
		*pr = uint16(int32(v) - (int32(v)+int32(2017&one)-2017)>>5)
		m = m<<1 - one
	}
	rc.rng, rc.code, rc.ip = rng, code, ip
	return m - limit
}

// reverse decodes an n-bit symbol, least significant bit first, with
// models p[1:1<<n].
func (rc *rangeDecoder) reverse(p []uint16, n uint32) uint32 {
	rng, code, ip, in := rc.rng, rc.code, rc.ip, rc.in
	m, sym := uint32(1), uint32(0)
	for i := range n {
		if rng < 1<<24 {
			var c byte
			if uint(ip) < uint(len(in)) {
				c = in[ip]
			}
			ip++
			rng <<= 8
			code = code<<8 | uint32(c)
		}
		pr := &p[m]
		v := uint32(*pr)
		bound := (rng >> 11) * v
		one := uint32((uint64(bound) - uint64(code) - 1) >> 32) // as in literalFrom
		rng = bound + (rng-2*bound)&one
		code -= bound & one
		*pr = uint16(int32(v) - (int32(v)+int32(2017&one)-2017)>>5)
		m = m<<1 - one
		sym |= (one & 1) << i
	}
	rc.rng, rc.code, rc.ip = rng, code, ip
	return sym
}

// direct decodes n bits of equal probability. They are as good as random,
// so it avoids branching on them.
func (rc *rangeDecoder) direct(n uint32) uint32 {
	rng, code, ip, in := rc.rng, rc.code, rc.ip, rc.in
	var x uint32
	for ; n > 0; n-- {
		if rng < 1<<24 {
			var c byte
			if uint(ip) < uint(len(in)) {
				c = in[ip]
			}
			ip++
			rng <<= 8
			code = code<<8 | uint32(c)
		}
		rng >>= 1
		code -= rng
		t := 0 - code>>31 // all ones when code was below rng
		code += rng & t
		x = x<<1 + t + 1
	}
	rc.rng, rc.code, rc.ip = rng, code, ip
	return x
}

// literal decodes a literal byte with the models lit.
func (rc *rangeDecoder) literal(lit *[literalSize]uint16) uint32 {
	return rc.literalFrom(lit, 1)
}

// matchedLiteral decodes a literal byte after a match, whose bits select
// the models as long as they agree with those of match, the byte at rep0.
func (rc *rangeDecoder) matchedLiteral(lit *[literalSize]uint16, match uint32) uint32 {
	rng, code, ip, in := rc.rng, rc.code, rc.ip, rc.in
	sym := uint32(1)
	for sym < 0x100 {
		if rng < 1<<24 {
			var c byte
			if uint(ip) < uint(len(in)) {
				c = in[ip]
			}
			ip++
			rng <<= 8
			code = code<<8 | uint32(c)
		}
		mb := (match >> 7) & 1
		match <<= 1
		pr := &lit[(0x100+mb<<8+sym)&0x3ff]
		v := uint32(*pr)
		bound := (rng >> 11) * v
		one := uint32((uint64(bound) - uint64(code) - 1) >> 32) // as in literalFrom
		rng = bound + (rng-2*bound)&one
		code -= bound & one
		*pr = uint16(int32(v) - (int32(v)+int32(2017&one)-2017)>>5)
		b := one & 1
		sym = sym<<1 | b
		if mb != b {
			rc.rng, rc.code, rc.ip = rng, code, ip
			return rc.literalFrom(lit, sym)
		}
	}
	rc.rng, rc.code, rc.ip = rng, code, ip
	return sym & 0xff
}

// literalFrom decodes the rest of a literal byte, whose bits so far are
// those of sym below its leading 1, with the models lit. Like tree, it
// works on locals; being a function of its own, with few variables live,
// keeps them all in registers, which an inlined loop in decodeChunk could
// not.
func (rc *rangeDecoder) literalFrom(lit *[literalSize]uint16, sym uint32) uint32 {
	rng, code, ip, in := rc.rng, rc.code, rc.ip, rc.in
	for sym < 0x100 {
		if rng < 1<<24 {
			var c byte
			if uint(ip) < uint(len(in)) {
				c = in[ip]
			}
			ip++
			rng <<= 8
			code = code<<8 | uint32(c)
		}
		pr := &lit[sym]
		v := uint32(*pr)
		bound := (rng >> 11) * v
		// Both outcomes computed, one selected by a mask, without a
		// branch: literal bits are hard to predict, and a mispredicted
		// branch costs more than the work of both. The forms are the
		// ones with the fewest operations: one is all ones for a 1 bit
		// (the borrow of bound-code-1); the range becomes bound for a 0
		// bit and rng-bound for a 1, bound+(rng-2*bound) masked; the
		// model's update, v+(2048-v)>>5 for a 0 bit and v-v>>5 for a 1,
		// is v-(v-2017)>>5 with an arithmetic shift for the first
		// (both floor((2048-v)/32)), so the two differ in one masked
		// constant. Every v and both bits were checked against the
		// textbook forms.
		one := uint32((uint64(bound) - uint64(code) - 1) >> 32) // all ones for a 1 bit
		rng = bound + (rng-2*bound)&one
		code -= bound & one
		*pr = uint16(int32(v) - (int32(v)+int32(2017&one)-2017)>>5)
		sym = sym<<1 - one
	}
	rc.rng, rc.code, rc.ip = rng, code, ip
	return sym & 0xff
}

// length decodes a match length less minMatchLen.
func (rc *rangeDecoder) length(l *lenModel, posState uint32) uint32 {
	if rc.bit(&l.choice) == 0 {
		return rc.tree3(&l.low[posState&15])
	}
	if rc.bit(&l.choice2) == 0 {
		return 8 + rc.tree3(&l.mid[posState&15])
	}
	return 16 + rc.tree8(&l.high)
}

// decodeChunk decodes one LZMA chunk from in into win[pos:], filling win;
// win[:pos] is the dictionary so far.
func (d *Decoder) decodeChunk(win []byte, pos int, in []byte, dictSize int) error {
	if len(in) < 5 || in[0] != 0 {
		return errors.New("bad range coder start")
	}
	rc := rangeDecoder{
		rng:  0xffffffff,
		code: uint32(in[1])<<24 | uint32(in[2])<<16 | uint32(in[3])<<8 | uint32(in[4]),
		in:   in,
		ip:   5,
	}
	p := &d.p
	state := d.state
	rep0, rep1, rep2, rep3 := d.rep[0], d.rep[1], d.rep[2], d.rep[3]
	lc, lpMask, pbMask := d.lc, uint32(1)<<d.lp-1, uint32(1)<<d.pb-1
	end := len(win)
	var err error
	for pos < end {
		posState := uint32(pos) & pbMask
		if rc.bit(&p.isMatch[state<<4|posState]) == 0 {
			var prev uint32
			if pos > 0 {
				prev = uint32(win[pos-1])
			}
			base := ((uint32(pos)&lpMask)<<lc + prev>>(8-lc)) * literalSize
			lit := (*[literalSize]uint16)(p.literal[base : base+literalSize])
			var sym uint32
			if state >= 7 {
				if int64(rep0) >= int64(pos) {
					err = errors.New("matched literal before the start of the dictionary")
					break
				}
				sym = rc.matchedLiteral(lit, uint32(win[pos-int(rep0)-1]))
			} else {
				sym = rc.literal(lit)
			}
			win[pos] = byte(sym)
			pos++
			switch {
			case state < 4:
				state = 0
			case state < 10:
				state -= 3
			default:
				state -= 6
			}
			continue
		}

		var n uint32
		if rc.bit(&p.isRep[state]) == 0 {
			n = rc.length(&p.matchLen, posState)
			if state < 7 {
				state = 7
			} else {
				state = 10
			}
			lenState := min(n, 3)
			slot := rc.tree6(&p.posSlot[lenState])
			dist := slot
			if slot >= 4 {
				bits := slot>>1 - 1
				dist = (2 | slot&1) << bits
				if slot < endPosModelIndex {
					dist += rc.reverse(p.posSpecial[dist-slot:], bits)
				} else {
					dist += rc.direct(bits-4) << 4
					dist += rc.reverse(p.align[:], 4)
				}
			}
			if dist == 0xffffffff {
				err = errors.New("end marker inside a chunk")
				break
			}
			rep3, rep2, rep1, rep0 = rep2, rep1, rep0, dist
		} else {
			if pos == 0 {
				err = errors.New("repeated match in an empty dictionary")
				break
			}
			if rc.bit(&p.isRepG0[state]) == 0 {
				if rc.bit(&p.isRep0Long[state<<4|posState]) == 0 {
					if state < 7 {
						state = 9
					} else {
						state = 11
					}
					if int64(rep0) >= int64(pos) {
						err = errors.New("match before the start of the dictionary")
						break
					}
					win[pos] = win[pos-int(rep0)-1]
					pos++
					continue
				}
			} else {
				var dist uint32
				if rc.bit(&p.isRepG1[state]) == 0 {
					dist = rep1
				} else {
					if rc.bit(&p.isRepG2[state]) == 0 {
						dist = rep2
					} else {
						dist = rep3
						rep3 = rep2
					}
					rep2 = rep1
				}
				rep1 = rep0
				rep0 = dist
			}
			n = rc.length(&p.repLen, posState)
			if state < 7 {
				state = 8
			} else {
				state = 11
			}
		}
		if int64(rep0) >= int64(pos) || int64(rep0) >= int64(dictSize) {
			err = fmt.Errorf("match distance %d beyond the dictionary", int64(rep0)+1)
			break
		}
		length := int(n) + minMatchLen
		if length > end-pos {
			err = errors.New("match crosses the end of the chunk")
			break
		}
		src := pos - int(rep0) - 1
		switch back := pos - src; {
		case back >= 16 && length <= 64 && len(win)-pos >= length+7:
			// Most matches are short: copying words is cheaper than
			// calling memmove. Reading 8 bytes at least 8 back only
			// reads bytes already written, and what it writes past
			// the match is overwritten later.
			for i := 0; i < length; i += 8 {
				binary.LittleEndian.PutUint64(win[pos+i:], binary.LittleEndian.Uint64(win[src+i:]))
			}
		case back >= length:
			copy(win[pos:pos+length], win[src:src+length])
		default:
			// Overlapping: repeat what is there, doubling each time.
			for at, stop := pos, pos+length; at < stop; {
				at += copy(win[at:stop], win[src:at])
			}
		}
		pos += length
	}
	d.state = state
	d.rep = [4]uint32{rep0, rep1, rep2, rep3}
	if err != nil {
		return err
	}
	if rc.rng < 1<<24 {
		rc.fill()
	}
	if rc.ip != len(in) {
		if rc.ip > len(in) {
			return fmt.Errorf("LZMA chunk needs more than its %d bytes", len(in))
		}
		return fmt.Errorf("LZMA chunk ends after %d of its %d bytes", rc.ip, len(in))
	}
	if rc.code != 0 {
		return errors.New("range coder does not end cleanly")
	}
	return nil
}

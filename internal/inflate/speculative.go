package inflate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// Speculative decoding of deflate data from a point whose 32 KiB window is
// not known yet (rapidgzip's method). The decoder writes 16-bit symbols: a
// value below 256 is a byte, markerBase+j stands for byte j of the unknown
// window (0 oldest). Once the last 32 KiB of output hold no marker, later
// output cannot refer to the unknown window any more, and decoding goes on
// with the ordinary byte decoder from the next block boundary.

const markerBase = 256

// specBound is a deflate block end found by a speculative decode.
type specBound struct {
	bit   int64 // absolute bit offset of the boundary
	out   int   // output offset within the segment
	final bool  // the block was the last of its member
}

// segment is the result of decoding from a candidate block start.
type segment struct {
	start, end int64 // absolute bit offsets of the first block and of the last boundary
	sym        []uint16
	// buf holds windowSize bytes for the window before the segment
	// (filled when it is resolved), len(sym) bytes for the resolved
	// symbols, then the output decoded with a known window.
	buf    []byte
	bounds []specBound
}

// resolve replaces the markers with bytes of window (the windowSize bytes
// before the segment, zero-padded), of which only the last avail bytes are
// real output of the current member. It reports false if a marker points
// before them: the stream is invalid there and must be decoded in order.
func (s *segment) resolve(window []byte, avail int) bool {
	copy(s.buf[:windowSize], window)
	low := uint16(markerBase + windowSize - min(avail, windowSize))
	out := s.buf[windowSize : windowSize+len(s.sym)]
	for i, v := range s.sym {
		if v < markerBase {
			out[i] = byte(v)
			continue
		}
		if v < low {
			return false
		}
		out[i] = window[v-markerBase]
	}
	return true
}

var (
	errSpecInvalid   = errors.New("not a valid deflate stream from here")
	errSpecTruncated = errors.New("input ends")
	errSpecStop      = errors.New("segment complete")
)

// maxMarkerOut caps the output decoded with markers: data whose last 32 KiB
// keep referring to the unknown window is left to the decoder in order.
const maxMarkerOut = 1 << 20

// segmentBufs recycles segment output buffers, which are several MiB: a
// fresh one would be zeroed each time.
var segmentBufs sync.Pool

func getSegmentBuf(size int) []byte {
	if b, ok := segmentBufs.Get().(*[]byte); ok && cap(*b) >= size {
		return (*b)[:0]
	}
	return make([]byte, 0, size)
}

func putSegmentBuf(b []byte) {
	segmentBufs.Put(&b)
}

// resumeDecoders recycles the byte decoders of the segments (416 KiB of
// buffers each).
var resumeDecoders = sync.Pool{New: func() any { return new(decoder) }}

// reset makes d a resume decoder (NewResumeReader) over span, keeping its
// buffers.
func (d *decoder) reset(span io.Reader, bits uint8, window []byte) {
	in, out := d.in, d.out
	*d = decoder{}
	if in == nil {
		d.init(span)
	} else {
		d.in, d.out = in, out
		d.src = span
		d.wpos, d.rpos, d.minpos, d.crcPos = windowSize, windowSize, windowSize, windowSize
		d.outOff = -windowSize
	}
	d.resume = true
	d.state = stateBlockHeader
	copy(d.out[windowSize-len(window):windowSize], window)
	d.minpos = windowSize - len(window)
	if bits&7 != 0 {
		d.primeBits = bits & 7
		d.primePending = true
	}
}

// specDecoder decodes raw deflate held in memory, bit by bit from any
// offset, into 16-bit symbols.
type specDecoder struct {
	data  []byte // the input, followed by 8 zero bytes
	base  int64  // absolute byte offset of data[0]
	limit int64  // bit offset (relative to data) where the input ends
	pos   int64  // bit offset (relative to data)

	out        []uint16
	lastMarker int // output index after the last marker written
	maxOut     int

	dynLit  litTable
	dynDist distTable
}

func (s *specDecoder) peek() uint64 {
	return binary.LittleEndian.Uint64(s.data[s.pos>>3:]) >> (s.pos & 7)
}

func (s *specDecoder) bits(n uint) (uint32, error) {
	if s.pos+int64(n) > s.limit {
		return 0, errSpecTruncated
	}
	v := uint32(s.peek() & (1<<n - 1))
	s.pos += int64(n)
	return v, nil
}

func (s *specDecoder) symbol(table []uint32, tableBits uint) (uint32, error) {
	v := s.peek()
	e := table[v&(1<<tableBits-1)]
	n := entryCodeLen(e)
	if e&entrySub != 0 {
		e = table[(e>>16)+uint32(v>>tableBits)&(1<<entryCodeLen(e)-1)]
		n = tableBits + entryCodeLen(e)
	}
	if e&entryInvalid != 0 {
		return 0, errSpecInvalid
	}
	if s.pos+int64(n) > s.limit {
		return 0, errSpecTruncated
	}
	s.pos += int64(n)
	return e, nil
}

func (s *specDecoder) extra(e uint32) (int, error) {
	n := uint(e&entryTotalMask) - entryCodeLen(e)
	v, err := s.bits(n)
	return int(e>>16) + int(v), err
}

// block decodes one block from s.pos. It returns the block's BFINAL bit.
func (s *specDecoder) block() (final bool, err error) {
	h, err := s.bits(3)
	if err != nil {
		return false, err
	}
	final = h&1 != 0
	switch h >> 1 {
	case 0:
		s.pos = (s.pos + 7) &^ 7
		v, err := s.bits(32)
		if err != nil {
			return false, err
		}
		n := int(v & 0xffff)
		if uint16(n) != ^uint16(v>>16) {
			return false, errSpecInvalid
		}
		if s.pos+int64(8*n) > s.limit {
			return false, errSpecTruncated
		}
		for _, b := range s.data[s.pos>>3 : s.pos>>3+int64(n)] {
			s.out = append(s.out, uint16(b))
		}
		s.pos += int64(8 * n)
		return final, nil
	case 1:
		t := fixedTables()
		return final, s.huffman(t.lit[:], t.dist[:])
	case 2:
		if err := s.dynamicTables(); err != nil {
			return false, err
		}
		return final, s.huffman(s.dynLit[:], s.dynDist[:])
	}
	return false, errSpecInvalid
}

func (s *specDecoder) dynamicTables() error {
	v, err := s.bits(14)
	if err != nil {
		return err
	}
	nlit, ndist, nclen := int(v&31)+257, int(v>>5&31)+1, int(v>>10)+4
	if nlit > 286 || ndist > 30 {
		return errSpecInvalid
	}
	var clens [numCLSyms]uint8
	for i := range nclen {
		l, err := s.bits(3)
		if err != nil {
			return err
		}
		clens[codeLengthOrder[i]] = uint8(l)
	}
	var clTable [clTableSize]uint32
	if buildTable(clTable[:], clTableBits, clens[:], codeLenSymbols[:], true) != nil {
		return errSpecInvalid
	}
	var lens [286 + 30]uint8
	n := nlit + ndist
	for i := 0; i < n; {
		e, err := s.symbol(clTable[:], clTableBits)
		if err != nil {
			return err
		}
		sym := e >> 16
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return errSpecInvalid
			}
			r, err := s.bits(2)
			if err != nil {
				return err
			}
			rep, val = 3+int(r), lens[i-1]
		case 17:
			r, err := s.bits(3)
			if err != nil {
				return err
			}
			rep = 3 + int(r)
		default:
			r, err := s.bits(7)
			if err != nil {
				return err
			}
			rep = 11 + int(r)
		}
		if i+rep > n {
			return errSpecInvalid
		}
		for ; rep > 0; rep-- {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 ||
		buildTable(s.dynLit[:], litTableBits, lens[:nlit], litLenSymbols[:], false) != nil ||
		buildTable(s.dynDist[:], distTableBits, lens[nlit:n], distSymbols[:], false) != nil {
		return errSpecInvalid
	}
	return nil
}

func (s *specDecoder) huffman(lit, dist []uint32) error {
	for {
		e, err := s.symbol(lit, litTableBits)
		if err != nil {
			return err
		}
		if e&entryLit != 0 {
			s.out = append(s.out, uint16(e>>16&0xff))
			continue
		}
		if e&entryEOB != 0 {
			return nil
		}
		length, err := s.extra(e)
		if err != nil {
			return err
		}
		e, err = s.symbol(dist, distTableBits)
		if err != nil {
			return err
		}
		d, err := s.extra(e)
		if err != nil {
			return err
		}
		from := len(s.out) - d
		if from < -windowSize {
			return errSpecInvalid
		}
		for i := 0; i < length; i++ {
			var v uint16
			if p := from + i; p >= 0 {
				v = s.out[p]
			} else {
				v = uint16(markerBase + windowSize + p)
			}
			if v >= markerBase {
				s.lastMarker = len(s.out) + 1
			}
			s.out = append(s.out, v)
		}
	}
}

// maybeDynamicHeader is a cheap test of whether a non-final dynamic block
// header can start at bit 0 of v (with the 64 bits after it in w): block
// type, symbol counts and a complete code-length code.
func maybeDynamicHeader(v, w uint64) bool {
	if v&7 != 4 || v>>3&31 > 29 || v>>8&31 > 29 {
		return false
	}
	nclen := int(v>>13&15) + 4
	// Code length code lengths: 3 bits each from bit 17.
	sum, maxLen := 0, uint64(0)
	for i := range nclen {
		b := 17 + 3*i
		var l uint64
		if b+3 <= 64 {
			l = v >> b & 7
		} else if b >= 64 {
			l = w >> (b - 64) & 7
		} else {
			l = (v>>b | w<<(64-b)) & 7
		}
		if l != 0 {
			sum += 1 << (7 - l)
			maxLen = max(maxLen, l)
		}
	}
	return sum == 128
}

// speculate finds the first block start at or after bit from (relative to
// data) that decodes, and decodes from it until a block boundary at or
// after stop, the end of a member's final block, the end of the input or
// maxOut bytes of output, whichever comes first. data must be followed by
// at least 8 zero bytes of capacity. cancelled is polled between blocks.
// It returns nil if no start before limitStart decodes.
func speculate(data []byte, base, from, limitStart, stop int64, maxOut int, cancelled func() bool) *segment {
	var padded []byte
	if cap(data) >= len(data)+16 {
		padded = data[:len(data)+16]
		clear(padded[len(data):])
	} else {
		padded = append(data[:len(data):len(data)], make([]byte, 16)...)
	}
	s := &specDecoder{data: padded, base: base, limit: 8 * int64(len(data)), maxOut: maxOut}
	for cand := from; cand < limitStart && cand+64 < s.limit; cand++ {
		if cand&1023 == 0 && cancelled() {
			return nil
		}
		start := int64(-1)
		v := binary.LittleEndian.Uint64(padded[cand>>3:]) >> (cand & 7)
		w := binary.LittleEndian.Uint64(padded[cand>>3+8:]) >> (cand & 7)
		if maybeDynamicHeader(v, w) {
			start = cand
		} else if cand&7 == 0 && cand>>3+4 <= int64(len(data)) {
			// The end of a stored block (a sync flush point): LEN and
			// ~LEN, then LEN bytes; the next block starts byte-aligned.
			p := cand >> 3
			n := binary.LittleEndian.Uint16(padded[p:])
			if n == ^binary.LittleEndian.Uint16(padded[p+2:]) {
				if e := 8 * (p + 4 + int64(n)); e < s.limit {
					start = e
				}
			}
		}
		if start < 0 {
			continue
		}
		if seg := s.decodeFrom(start, stop, maxOut, cancelled); seg != nil {
			return seg
		}
	}
	return nil
}

// decodeFrom decodes from a candidate start; nil if it is not one.
func (s *specDecoder) decodeFrom(start, stop int64, maxOut int, cancelled func() bool) *segment {
	s.pos, s.out, s.lastMarker = start, s.out[:0], 0
	seg := &segment{start: s.base*8 + start}
	for {
		final, err := s.block()
		if err == errSpecTruncated {
			break // the segment ends at the last boundary
		}
		if err != nil {
			return nil // not a block start after all, or damage
		}
		seg.bounds = append(seg.bounds, specBound{bit: s.base*8 + s.pos, out: len(s.out), final: final})
		if final || s.pos >= stop || len(s.out) >= min(maxOut, maxMarkerOut) || cancelled() {
			break
		}
		if len(s.out) >= windowSize && len(s.out)-s.lastMarker >= windowSize {
			return s.continueBytes(seg, stop, maxOut, cancelled)
		}
	}
	if len(seg.bounds) == 0 {
		return nil
	}
	last := seg.bounds[len(seg.bounds)-1]
	seg.end = last.bit
	seg.sym = append([]uint16(nil), s.out[:last.out]...)
	seg.buf = make([]byte, windowSize+last.out)
	return seg
}

// continueBytes goes on from the last boundary of seg with the byte
// decoder, the last windowSize symbols (all bytes) as its window.
func (s *specDecoder) continueBytes(seg *segment, stop int64, maxOut int, cancelled func() bool) *segment {
	n := len(s.out)
	seg.sym = append([]uint16(nil), s.out...)
	seg.buf = getSegmentBuf(windowSize + n + s.maxOut)[:windowSize+n]
	window := seg.buf[windowSize+n-windowSize : windowSize+n]
	for i, v := range s.out[n-windowSize:] {
		window[i] = byte(v)
	}
	startByte := s.pos >> 3
	var bits uint8
	if s.pos&7 != 0 {
		bits = uint8(8 - s.pos&7)
	}
	r := resumeDecoders.Get().(*decoder)
	defer resumeDecoders.Put(r)
	r.reset(bytes.NewReader(s.data[startByte:s.limit>>3]), bits, window)
	// The boundaries' output offsets count what the decoder has produced
	// since it started, copied out or not.
	var pending []specBound
	r.onBoundary = func(b Boundary) error {
		bit := 8*(s.base+startByte+b.In) - int64(b.Bits)
		pending = append(pending, specBound{bit: bit, out: n + int(r.totalOut()), final: b.Final})
		if b.Final || bit-8*s.base >= stop || n+int(r.totalOut()) >= maxOut || cancelled() {
			return errSpecStop
		}
		return nil
	}
	var tmp [64 << 10]byte
	for {
		k, err := r.Read(tmp[:])
		seg.buf = append(seg.buf, tmp[:k]...)
		if err == errSpecStop || errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			break
		}
		if err != nil {
			return nil // damage: the decoder in order reports it
		}
	}
	seg.bounds = append(seg.bounds, pending...)
	last := seg.bounds[len(seg.bounds)-1]
	seg.buf = seg.buf[:windowSize+last.out]
	seg.end = last.bit
	return seg
}

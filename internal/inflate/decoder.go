package inflate

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

const (
	windowSize = 1 << 15 // deflate's maximum distance
	maxMatch   = 258

	inBufSize = 128 << 10
	// outBufSize is the history window plus the area decoded per step;
	// with the slack, 1 MiB exactly (ChunkBufferSize). Against 256 KiB it
	// moves the 32 KiB history a quarter as often and hands a quarter as
	// many chunks between goroutines: a zTOC build took 3 % less CPU
	// (docs/bench/ztoc.md).
	outBufSize = 1024<<10 - outSlack
	// outSlack lets match copies write whole 8-byte words past the match.
	outSlack = 16

	// fastInMin is the input the fast loop needs in the buffer: three
	// 8-byte refills per iteration.
	fastInMin = 24
)

type decodeState uint8

const (
	stateHeader      decodeState = iota // before a gzip member header
	stateBlockHeader                    // between deflate blocks
	stateStored                         // inside a stored block
	stateHuffman                        // inside a fixed or dynamic Huffman block
	stateTrailer                        // after the final block of a member
	stateDone
)

// decoder is the engine behind GzipReader and the resume reader. It decodes
// gzip members (or, when resuming, raw deflate that may run into further
// members) from a sequential source.
//
// Input is read in large chunks into in; a 64-bit bit buffer holds bits not
// yet consumed (bytes loaded ahead are "given back" before any byte-level
// operation, so positions stay exact). Output is written to out, whose
// first windowSize bytes are history: when the output area is full and has
// been read, the last windowSize bytes are moved to the front.
type decoder struct {
	src    io.Reader
	srcErr error // sticky result of src.Read once it failed (io.EOF at end)

	// Chunk input (NewGzipChunkReader): in is the source's own chunk, or
	// seam where one chunk's last bytes meet the next one's first.
	next    func() ([]byte, error)
	cur     []byte // the chunk being read
	curOff  int64  // stream offset of cur[0]
	pending []byte // the part of cur not yet in in (in is seam)
	seam    []byte
	nextErr error // next's error, once it returned one (with or without a last chunk)

	in     []byte
	ipos   int   // next unread byte of in
	iend   int   // end of valid data in in
	inBase int64 // stream offset of in[0]

	bitBuf uint64 // unread bits, least significant first; bits above nbits may hold the next input bytes
	nbits  uint

	out    []byte
	rpos   int   // next byte of out to hand to the reader
	wpos   int   // next byte of out to write
	minpos int   // lowest index of out a distance may reach
	outOff int64 // stream output offset of out[0] (negative at first)

	state      decodeState
	final      bool // the current block has BFINAL set
	storedLeft int
	tables     *codeTables // the current block's: fixedTables() or &dyn
	dyn        codeTables

	resume       bool  // raw deflate start, trailers skipped, EOF allowed at block boundaries
	primeBits    uint8 // used bits of the span's first byte (resume only)
	primePending bool
	members      int // gzip member headers parsed
	crc          uint32
	crcPos       int // out index up to which crc is computed
	memberStart  int64

	onBoundary func(Boundary) error
	err        error

	// onTrailer, if set, takes over the CRC-32 check (DeferCRC).
	onTrailer func(Trailer) error

	// pauseAt, if set, is asked at every block end (after onBoundary)
	// whether decoding should pause there; step then returns with paused
	// set, and the next step continues from the boundary.
	pauseAt func(bit int64) bool
	paused  bool
}

// errPause is how endBlock stops run for pauseAt; it is not an error.
var errPause = errors.New("paused at a block boundary")

func (d *decoder) init(src io.Reader) {
	d.src = src
	if src != nil {
		d.in = make([]byte, inBufSize)
	}
	d.out = make([]byte, outBufSize+outSlack)[:outBufSize]
	d.wpos = windowSize
	d.rpos = windowSize
	d.minpos = windowSize
	d.crcPos = windowSize
	d.outOff = -windowSize
}

func (d *decoder) totalOut() int64 { return d.outOff + int64(d.wpos) }

func (d *decoder) offset() int64 { return d.inBase + int64(d.ipos) - int64(d.nbits>>3) }

func (d *decoder) errorf(kind error, reason string) error {
	return &Error{Offset: d.offset(), Err: kind, Reason: reason}
}

func (d *decoder) corrupt(reason string) error { return d.errorf(ErrCorrupt, reason) }

// truncated reports that input ended early, or passes on a read error.
func (d *decoder) truncated() error {
	if d.srcErr != nil && d.srcErr != io.EOF {
		return d.srcErr
	}
	return d.errorf(io.ErrUnexpectedEOF, "")
}

// Read implements io.Reader.
func (d *decoder) Read(p []byte) (int, error) {
	for {
		if d.rpos < d.wpos {
			n := copy(p, d.out[d.rpos:d.wpos])
			d.rpos += n
			return n, nil
		}
		if d.err != nil {
			return 0, d.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		d.step()
	}
}

// WriteTo implements io.WriterTo, saving a copy per byte.
func (d *decoder) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if d.rpos < d.wpos {
			n, err := w.Write(d.out[d.rpos:d.wpos])
			d.rpos += n
			total += int64(n)
			if err != nil {
				return total, err
			}
			continue
		}
		if d.err != nil {
			if d.err == io.EOF {
				return total, nil
			}
			return total, d.err
		}
		d.step()
	}
}

// readChunk is GzipReader.ReadChunk.
func (d *decoder) readChunk(buf []byte) ([]byte, error) {
	for {
		// Move the history and any unread output to the start of buf
		// (copy, as buf may be the current area).
		from := min(d.rpos, d.wpos-windowSize)
		n := copy(buf, d.out[from:d.wpos])
		if n != d.wpos-from {
			panic("inflate: ReadChunk buffer too small for unread output")
		}
		d.outOff += int64(from)
		d.minpos = max(d.minpos-from, 0)
		d.wpos -= from
		d.rpos -= from
		d.crcPos -= from
		d.out = buf[:outBufSize:ChunkBufferSize]
		if d.rpos == d.wpos {
			if d.err != nil {
				return nil, d.err
			}
			d.step()
		}
		if d.rpos < d.wpos {
			p := d.out[d.rpos:d.wpos]
			d.rpos = d.wpos
			return p, nil
		}
	}
}

// step decodes until the output area is full, the stream ends or an error
// occurs. It is called only when every decoded byte has been read.
func (d *decoder) step() {
	if d.wpos > len(d.out)-windowSize {
		d.slide()
	}
	err := d.run()
	if !d.resume && d.onTrailer == nil {
		d.updateCRC()
	}
	if err == errPause {
		d.paused = true
	} else if err != nil {
		d.err = err
	}
}

func (d *decoder) slide() {
	shift := d.wpos - windowSize
	copy(d.out[:windowSize], d.out[shift:d.wpos])
	d.outOff += int64(shift)
	d.minpos = max(d.minpos-shift, 0)
	d.wpos, d.rpos, d.crcPos = windowSize, windowSize, windowSize
}

func (d *decoder) updateCRC() {
	d.crc = crc32.Update(d.crc, crc32.IEEETable, d.out[d.crcPos:d.wpos])
	d.crcPos = d.wpos
}

// outLimit is the highest write position at which a symbol may start: a
// whole match plus the copy slack still fits.
func (d *decoder) outLimit() int { return len(d.out) - maxMatch - outSlack }

// run advances the state machine. It returns nil when it paused because
// the output area is full.
func (d *decoder) run() error {
	if d.primePending {
		if err := d.primeFirstByte(); err != nil {
			return err
		}
	}
	for {
		var err error
		switch d.state {
		case stateHeader:
			err = d.readHeader()
		case stateBlockHeader:
			err = d.readBlockHeader()
		case stateStored:
			var paused bool
			paused, err = d.copyStored()
			if paused {
				return nil
			}
		case stateHuffman:
			var paused bool
			paused, err = d.decodeHuffman()
			if paused {
				return nil
			}
		case stateTrailer:
			err = d.readTrailer()
		case stateDone:
			return io.EOF
		}
		if err != nil {
			return err
		}
	}
}

// fill reads more input, first compacting the buffer. It reports whether
// new bytes arrived.
func (d *decoder) fill() bool {
	if d.srcErr != nil {
		return false
	}
	// Give back whole bytes held in the bit buffer so that compaction keeps
	// them (the bits stay in bitBuf above nbits, matching the input).
	k := d.nbits >> 3
	d.ipos -= int(k)
	d.nbits -= k << 3
	if d.next != nil {
		return d.fillChunk()
	}
	if d.ipos > 0 {
		n := copy(d.in, d.in[d.ipos:d.iend])
		d.inBase += int64(d.ipos)
		d.ipos, d.iend = 0, n
	}
	for tries := 0; d.iend < len(d.in); tries++ {
		n, err := d.src.Read(d.in[d.iend:])
		d.iend += n
		if err != nil {
			d.srcErr = err
			return n > 0
		}
		if n > 0 {
			return true
		}
		if tries >= 100 {
			d.srcErr = io.ErrNoProgress
			return false
		}
	}
	return false
}

// seamSize is how many bytes of a new chunk join the last one's unread
// bytes in seam: more than fastInMin, so the fast loop gets past the seam
// and the next fill can switch to the chunk itself.
const seamSize = 256

// fillChunk is fill for chunk input. It copies only the few bytes around
// the point where one chunk ends and the next begins.
func (d *decoder) fillChunk() bool {
	pos := d.inBase + int64(d.ipos) // stream offset of the first unread byte
	rest := d.in[d.ipos:d.iend]
	switch {
	case len(d.pending) > 0 && pos >= d.curOff:
		// Past the seam: read the chunk itself from here.
		d.in, d.pending = d.cur[pos-d.curOff:], nil
	default:
		if len(d.pending) == 0 {
			var c []byte
			for tries := 0; len(c) == 0 && d.nextErr == nil; tries++ {
				if tries == 100 {
					d.nextErr = io.ErrNoProgress
					break
				}
				c, d.nextErr = d.next()
			}
			if len(c) == 0 {
				d.srcErr = d.nextErr
				return false
			}
			d.cur, d.curOff, d.pending = c, pos+int64(len(rest)), c
		}
		if len(rest) == 0 {
			d.in, d.pending = d.pending, nil
			break
		}
		n := min(len(d.pending), seamSize)
		d.seam = append(append(d.seam[:0], rest...), d.pending[:n]...)
		d.in, d.pending = d.seam, d.pending[n:]
	}
	d.inBase, d.ipos, d.iend = pos, 0, len(d.in)
	return true
}

// pullByte moves at least one more input byte into the bit buffer. When
// eight bytes are buffered it fills the bit buffer at once; that reads
// nothing more from the source, and positions stay exact because offset()
// counts unused whole bytes as unread.
func (d *decoder) pullByte() error {
	if d.iend-d.ipos >= 8 {
		d.bitBuf |= binary.LittleEndian.Uint64(d.in[d.ipos:]) << (d.nbits & 63)
		d.ipos += int(63-d.nbits) >> 3
		d.nbits |= 56
		return nil
	}
	if d.ipos == d.iend && !d.fill() {
		return d.truncated()
	}
	d.bitBuf |= uint64(d.in[d.ipos]) << d.nbits
	d.ipos++
	d.nbits += 8
	return nil
}

// needBits makes n bits (n <= 32) available, reading no more input than that.
func (d *decoder) needBits(n uint) error {
	for d.nbits < n {
		if err := d.pullByte(); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) takeBits(n uint) uint32 {
	v := uint32(d.bitBuf & (1<<n - 1))
	d.bitBuf >>= n
	d.nbits -= n
	return v
}

// alignToByte drops the bits left in a partly used byte and gives whole
// bytes back to the input, so byte-level reads can follow.
func (d *decoder) alignToByte() {
	d.ipos -= int(d.nbits >> 3)
	d.bitBuf, d.nbits = 0, 0
}

// readByte reads one byte at byte level; the bit buffer must be empty.
func (d *decoder) readByte() (byte, error) {
	if d.ipos == d.iend && !d.fill() {
		return 0, d.truncated()
	}
	b := d.in[d.ipos]
	d.ipos++
	return b, nil
}

// atInputEnd reports whether no input byte is left beyond the bit buffer's
// partial byte.
func (d *decoder) atInputEnd() bool {
	if d.nbits >= 8 {
		return false
	}
	return d.ipos == d.iend && !d.fill()
}

// slowSymbol decodes one symbol, reading input one byte at a time and only
// as much as the code needs. It consumes the code but not its extra bits.
func (d *decoder) slowSymbol(table []uint32, tableBits uint, reason string) (uint32, error) {
	mask := uint64(1)<<tableBits - 1
	for {
		e := table[d.bitBuf&mask]
		n := entryCodeLen(e)
		if e&entrySub != 0 {
			sub := (e >> 16) + uint32(d.bitBuf>>tableBits)&(1<<entryCodeLen(e)-1)
			e = table[sub]
			n = tableBits + entryCodeLen(e)
		}
		// Bits above nbits are zero or the next input bytes; either way a
		// code no longer than nbits was looked up correctly.
		if n <= d.nbits {
			if e&entryInvalid != 0 {
				return 0, d.corrupt(reason)
			}
			d.bitBuf >>= n
			d.nbits -= n
			return e, nil
		}
		if err := d.pullByte(); err != nil {
			return 0, err
		}
	}
}

// slowExtra reads the extra bits of a match entry returned by slowSymbol
// and returns the length or distance.
func (d *decoder) slowExtra(e uint32) (int, error) {
	extra := uint(e&entryTotalMask) - entryCodeLen(e)
	if err := d.needBits(extra); err != nil {
		return 0, err
	}
	return int(e>>16) + int(d.takeBits(extra)), nil
}

func (d *decoder) readBlockHeader() error {
	if d.resume && d.atInputEnd() {
		if d.srcErr != io.EOF {
			return d.truncated()
		}
		// The span ends at a block boundary: a clean end.
		d.state = stateDone
		return nil
	}
	if err := d.needBits(3); err != nil {
		return err
	}
	h := d.takeBits(3)
	d.final = h&1 != 0
	switch h >> 1 {
	case 0:
		d.alignToByte()
		var b [4]byte
		for i := range b {
			c, err := d.readByte()
			if err != nil {
				return err
			}
			b[i] = c
		}
		n := binary.LittleEndian.Uint16(b[0:])
		if n != ^binary.LittleEndian.Uint16(b[2:]) {
			return d.corrupt("invalid stored block lengths")
		}
		d.storedLeft = int(n)
		d.state = stateStored
	case 1:
		d.tables = fixedTables()
		d.state = stateHuffman
	case 2:
		if err := d.readDynamicTables(); err != nil {
			return err
		}
		d.tables = &d.dyn
		d.state = stateHuffman
	default:
		return d.corrupt("invalid block type")
	}
	return nil
}

// codeLengthOrder is the order in which code length code lengths are sent.
var codeLengthOrder = [numCLSyms]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (d *decoder) readDynamicTables() error {
	if err := d.needBits(14); err != nil {
		return err
	}
	nlit := int(d.takeBits(5)) + 257
	ndist := int(d.takeBits(5)) + 1
	nclen := int(d.takeBits(4)) + 4
	if nlit > 286 || ndist > 30 {
		return d.corrupt("too many length or distance symbols")
	}
	var clens [numCLSyms]uint8
	for i := 0; i < nclen; i++ {
		if err := d.needBits(3); err != nil {
			return err
		}
		clens[codeLengthOrder[i]] = uint8(d.takeBits(3))
	}
	var clTable [clTableSize]uint32
	if err := buildTable(clTable[:], clTableBits, clens[:], codeLenSymbols[:], true); err != nil {
		return d.corrupt("invalid code lengths set")
	}

	var lens [286 + 30]uint8
	n := nlit + ndist
	for i := 0; i < n; {
		// While 8 input bytes are buffered, one load tops the bit buffer
		// up to 56 bits, enough for a code (at most 7 bits, all in the
		// table's primary part) and its extra bits; slowSymbol reads byte
		// by byte near the end of the input.
		if d.nbits < 14 && d.iend-d.ipos >= 8 {
			d.bitBuf |= binary.LittleEndian.Uint64(d.in[d.ipos:]) << (d.nbits & 63)
			d.ipos += int(63-d.nbits) >> 3
			d.nbits |= 56
		}
		var e uint32
		if d.nbits >= 14 {
			e = clTable[d.bitBuf&(clTableSize-1)]
			if e&entryInvalid != 0 {
				return d.corrupt("invalid code lengths set")
			}
			l := entryCodeLen(e)
			d.bitBuf >>= l
			d.nbits -= l
		} else {
			var err error
			if e, err = d.slowSymbol(clTable[:], clTableBits, "invalid code lengths set"); err != nil {
				return err
			}
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
				return d.corrupt("invalid bit length repeat")
			}
			if err := d.needBits(2); err != nil {
				return err
			}
			rep, val = 3+int(d.takeBits(2)), lens[i-1]
		case 17:
			if err := d.needBits(3); err != nil {
				return err
			}
			rep = 3 + int(d.takeBits(3))
		default:
			if err := d.needBits(7); err != nil {
				return err
			}
			rep = 11 + int(d.takeBits(7))
		}
		if i+rep > n {
			return d.corrupt("invalid bit length repeat")
		}
		for ; rep > 0; rep-- {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 {
		return d.corrupt("invalid code -- missing end-of-block")
	}
	if err := buildTable(d.dyn.lit[:], litTableBits, lens[:nlit], litLenSymbols[:], false); err != nil {
		return d.corrupt("invalid literal/lengths set")
	}
	if err := buildTable(d.dyn.dist[:], distTableBits, lens[nlit:n], distSymbols[:], false); err != nil {
		return d.corrupt("invalid distances set")
	}
	return nil
}

// copyStored copies stored block data. It reports paused when the output
// area is full.
func (d *decoder) copyStored() (paused bool, err error) {
	for d.storedLeft > 0 {
		if d.wpos == len(d.out) {
			return true, nil
		}
		if d.ipos == d.iend && !d.fill() {
			return false, d.truncated()
		}
		n := copy(d.out[d.wpos:], d.in[d.ipos:min(d.iend, d.ipos+d.storedLeft)])
		d.wpos += n
		d.ipos += n
		d.storedLeft -= n
	}
	return false, d.endBlock()
}

// decodeHuffman decodes the current Huffman block, using the fast loop
// while enough input and output room are at hand.
func (d *decoder) decodeHuffman() (paused bool, err error) {
	limit := d.outLimit()
	for {
		if d.wpos > limit {
			return true, nil
		}
		if d.iend-d.ipos >= fastInMin {
			end, err := d.fastLoop()
			if err != nil {
				return false, err
			}
			if end {
				return false, d.endBlock()
			}
			continue
		}
		if d.srcErr == nil && d.fill() {
			continue
		}
		end, err := d.slowStep()
		if err != nil {
			return false, err
		}
		if end {
			return false, d.endBlock()
		}
	}
}

// slowStep decodes one literal, match or end of block near the end of the
// input, reading only the bytes the symbol needs.
func (d *decoder) slowStep() (end bool, err error) {
	e, err := d.slowSymbol(d.tables.lit[:], litTableBits, "invalid literal/length code")
	if err != nil {
		return false, err
	}
	switch {
	case e&entryLit != 0:
		d.out[d.wpos] = byte(e >> 16)
		d.wpos++
		return false, nil
	case e&entryEOB != 0:
		return true, nil
	}
	length, err := d.slowExtra(e)
	if err != nil {
		return false, err
	}
	e, err = d.slowSymbol(d.tables.dist[:], distTableBits, "invalid distance code")
	if err != nil {
		return false, err
	}
	dist, err := d.slowExtra(e)
	if err != nil {
		return false, err
	}
	if dist > d.wpos-d.minpos {
		return false, d.corrupt("invalid distance too far back")
	}
	src := d.wpos - dist
	for i := 0; i < length; i++ {
		d.out[d.wpos+i] = d.out[src+i]
	}
	d.wpos += length
	return false, nil
}

var (
	errInvalidLitLen = errors.New("invalid literal/length code")
	errInvalidDist   = errors.New("invalid distance code")
	errDistTooFar    = errors.New("invalid distance too far back")
)

// endBlock reports the boundary after a block and moves to the next state.
func (d *decoder) endBlock() error {
	if d.final {
		d.state = stateTrailer
	} else {
		d.state = stateBlockHeader
	}
	b := Boundary{In: d.offset(), Bits: uint8(d.nbits & 7), Out: d.totalOut(), Final: d.final}
	if d.onBoundary != nil {
		if err := d.onBoundary(b); err != nil {
			return err
		}
	}
	if d.pauseAt != nil && !b.Final && d.pauseAt(8*b.In-int64(b.Bits)) {
		return errPause
	}
	return nil
}

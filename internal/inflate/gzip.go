// Package inflate is a DEFLATE and gzip decoder that reports deflate block
// boundaries, the points where zlib's inflate(Z_BLOCK) returns with
// data_type&128 set. soci builds its gzip checkpoints (zTOC "zinfo") at those
// points, so a zTOC builder needs their exact compressed position, the
// output total and the 32 KiB window. The package also resumes decoding at
// such a point (soci's extract_data_from_buffer).
//
// Input validation follows zlib, which soci links: trailing bytes after the
// last gzip member (zero padding included) are an error, reserved gzip flag
// bits are rejected, and FHCRC is verified.
package inflate

import (
	"encoding/binary"
	"hash/crc32"
	"io"
)

// Boundary is a point of a gzip stream where decoding can resume (a zlib
// Z_BLOCK return with data_type&128).
type Boundary struct {
	In     int64 // compressed bytes fully consumed, counted from the start of the whole stream (headers included)
	Bits   uint8 // unused bits (0-7) left in byte In-1; the boundary lies at bit 8*In - Bits
	Out    int64 // total uncompressed bytes produced so far (running over all members)
	Final  bool  // the block that just ended was the last block of its member (zlib data_type&64)
	Header bool  // this boundary is the end of a gzip member header (Out unchanged), not a block end
}

// GzipReader decompresses a gzip stream and reports its boundaries.
type GzipReader struct {
	d decoder
	p *parallel // set by NewParallelGzipReader
}

// NewGzipReader decompresses a single- or multi-member gzip stream read
// sequentially (no Seek) from r, checks each member's CRC-32 and ISIZE, and
// calls onBoundary synchronously, in stream order, at every member-header
// end and every deflate block end. While onBoundary runs, Window reports the
// last 32 KiB of output before b.Out. An error returned by onBoundary aborts
// decoding and is returned by Read. onBoundary may be nil.
func NewGzipReader(r io.Reader, onBoundary func(b Boundary) error) *GzipReader {
	z := new(GzipReader)
	z.d.init(r)
	z.d.onBoundary = onBoundary
	return z
}

// NewGzipChunkReader is NewGzipReader for input handed over in chunks by
// next, which returns io.EOF after the last (a chunk may come with it). The
// decoder reads the chunks where they are instead of copying them: a chunk
// must not change until the decoder has read past it (every Boundary
// reported since is beyond it).
func NewGzipChunkReader(next func() ([]byte, error), onBoundary func(b Boundary) error) *GzipReader {
	z := new(GzipReader)
	z.d.init(nil)
	z.d.next = next
	z.d.onBoundary = onBoundary
	return z
}

// Read implements io.Reader. It returns io.EOF after the last member's
// trailer has been verified and no input is left.
func (z *GzipReader) Read(p []byte) (int, error) {
	if z.p != nil {
		return z.p.Read(p)
	}
	return z.d.Read(p)
}

// WriteTo implements io.WriterTo; it avoids one copy of the output.
func (z *GzipReader) WriteTo(w io.Writer) (int64, error) {
	if z.p != nil {
		return io.CopyBuffer(w, struct{ io.Reader }{z}, make([]byte, 256<<10))
	}
	return z.d.WriteTo(w)
}

// Trailer is a gzip member's end as DeferCRC reports it.
type Trailer struct {
	Start, End int64  // the member's uncompressed bytes: [Start, End) of the whole output
	CRC        uint32 // the CRC-32 its trailer records
	Offset     int64  // compressed offset just after the trailer, for errors
}

// DeferCRC moves the CRC-32 check of each member's data to the caller, to
// take it off the decoding goroutine: the reader no longer computes it, and
// calls onTrailer, synchronously, after each member's trailer (ISIZE is
// still checked). The caller must compute the CRC-32 of the output in
// [t.Start, t.End) and fail unless it is t.CRC, with ChecksumError(t) for an
// error like the reader's own. onTrailer is called before any output of a
// later member is produced. An error it returns aborts decoding. Call it
// before the first Read; not for a reader made by NewParallelGzipReader.
func (z *GzipReader) DeferCRC(onTrailer func(t Trailer) error) {
	if z.p != nil {
		panic("inflate: DeferCRC on a parallel reader")
	}
	z.d.onTrailer = onTrailer
}

// ChecksumError is the error a GzipReader returns when a member's data does
// not match the CRC-32 of its trailer t.
func ChecksumError(t Trailer) error {
	return &Error{Offset: t.Offset, Err: ErrChecksum, Reason: "incorrect data check"}
}

// ChunkBufferSize is the size of ReadChunk's buffers, 1 MiB: 32 KiB of
// history, a few bytes of slack and the rest for output.
const ChunkBufferSize = outBufSize + outSlack

// ReadChunk decodes the next part of the stream into buf and returns it,
// saving the copy Read makes: buf becomes the decoder's output area, its
// first 32 KiB hold the history (moved there from the previous area), and
// the returned slice is the part of buf after them that was decoded (at
// least one byte, or an error; io.EOF at the end, as Read).
//
// The decoder writes to buf only during this call, and reads it again only
// during the next call of ReadChunk (to move the history), so the caller
// may read the returned bytes until then, and hand buf to a reader on
// another goroutine that does not write it; buf may be passed again to
// ReadChunk, even the one the last call returned. len(buf) must be at least
// ChunkBufferSize (only that much of it is used). Not for a reader made by NewParallelGzipReader.
func (z *GzipReader) ReadChunk(buf []byte) ([]byte, error) {
	if z.p != nil {
		panic("inflate: ReadChunk on a parallel reader")
	}
	if len(buf) < ChunkBufferSize {
		panic("inflate: ReadChunk buffer too small")
	}
	return z.d.readChunk(buf)
}

// Window copies the last 32768 bytes of output (oldest first) into dst,
// left-padded with zeros when fewer than 32768 bytes were produced. The
// window runs across member boundaries.
func (z *GzipReader) Window(dst *[windowSize]byte) {
	if z.p != nil && z.p.window != nil {
		copy(dst[:], z.p.window)
		return
	}
	copy(dst[:], z.d.out[z.d.wpos-windowSize:z.d.wpos])
}

// InputOffset is the number of compressed bytes read from r so far.
func (z *GzipReader) InputOffset() int64 {
	return z.d.inBase + int64(z.d.iend) + int64(len(z.d.pending))
}

// NewResumeReader decodes from a checkpoint (soci's extract_data_from_buffer):
// span yields the compressed bytes starting at the span's first byte; if
// bits != 0 the first byte of span is the partially used byte at In-1 and
// only its top bits bits are used. Decoding is raw deflate primed with
// window (normally 32768 bytes, oldest first) as history. At the end of a
// final block it skips the 8-byte gzip trailer, parses the next member
// header and continues. It returns io.EOF when span is exhausted at a block
// boundary or member end, and an error wrapping io.ErrUnexpectedEOF when it
// ends inside a block or header. Error offsets count from the span's first
// byte.
func NewResumeReader(span io.Reader, bits uint8, window []byte) io.Reader {
	d := new(decoder)
	d.init(span)
	d.resume = true
	d.state = stateBlockHeader
	if len(window) > windowSize {
		window = window[len(window)-windowSize:]
	}
	copy(d.out[windowSize-len(window):windowSize], window)
	d.minpos = windowSize - len(window)
	if bits&7 != 0 {
		d.primeBits = bits & 7
		d.primePending = true
	}
	return d
}

// primeFirstByte loads the used top bits of the span's first byte.
func (d *decoder) primeFirstByte() error {
	d.primePending = false
	b, err := d.readByte()
	if err != nil {
		return err
	}
	d.bitBuf = uint64(b >> (8 - d.primeBits))
	d.nbits = uint(d.primeBits)
	return nil
}

// gzip header flags (RFC 1952 2.3.1).
const (
	flagText    = 1 << 0
	flagHCRC    = 1 << 1
	flagExtra   = 1 << 2
	flagName    = 1 << 3
	flagComment = 1 << 4
	flagsKnown  = flagText | flagHCRC | flagExtra | flagName | flagComment
)

// readHeader parses a gzip member header and reports its end as a boundary.
func (d *decoder) readHeader() error {
	d.alignToByte()
	start := d.offset()
	first := d.members == 0 && !d.resume
	if d.ipos == d.iend && !d.fill() {
		if d.srcErr != io.EOF {
			return d.truncated()
		}
		if first {
			return &Error{Offset: 0, Err: io.ErrUnexpectedEOF, Reason: "empty input"}
		}
		d.state = stateDone
		return nil
	}
	h := headerReader{d: d}
	id1, id2 := h.byte(), h.byte()
	if h.err == nil && (id1 != 0x1f || id2 != 0x8b) || h.err != nil && id1 != 0x1f {
		if !first {
			return &Error{Offset: start, Err: ErrTrailingData, Reason: "incorrect header check"}
		}
		return &Error{Offset: start, Err: ErrHeader, Reason: "incorrect header check"}
	}
	method := h.byte()
	flags := h.byte()
	for range 6 { // MTIME, XFL, OS
		h.byte()
	}
	if h.err != nil {
		return h.err
	}
	if method != 8 {
		return &Error{Offset: start + 2, Err: ErrMethod, Reason: "unknown compression method"}
	}
	if flags&^flagsKnown != 0 {
		return &Error{Offset: start + 3, Err: ErrHeader, Reason: "unknown header flags set"}
	}
	if flags&flagExtra != 0 {
		n := int(h.byte()) | int(h.byte())<<8
		for ; n > 0 && h.err == nil; n-- {
			h.byte()
		}
	}
	if flags&flagName != 0 {
		for h.byte() != 0 && h.err == nil {
		}
	}
	if flags&flagComment != 0 {
		for h.byte() != 0 && h.err == nil {
		}
	}
	if flags&flagHCRC != 0 {
		want := uint16(h.crc)
		got := uint16(h.byte()) | uint16(h.byte())<<8
		if h.err == nil && got != want {
			return d.errorf(ErrHeader, "header crc mismatch")
		}
	}
	if h.err != nil {
		return h.err
	}

	d.members++
	d.state = stateBlockHeader
	d.crc = 0
	d.crcPos = d.wpos
	d.memberStart = d.totalOut()
	d.minpos = d.wpos // distances may not reach into an earlier member
	if d.onBoundary == nil {
		return nil
	}
	return d.onBoundary(Boundary{In: d.offset(), Out: d.totalOut(), Header: true})
}

// headerReader reads header bytes, keeping their CRC for FHCRC and the
// first error.
type headerReader struct {
	d   *decoder
	crc uint32
	err error
}

func (h *headerReader) byte() byte {
	if h.err != nil {
		return 0
	}
	b, err := h.d.readByte()
	if err != nil {
		h.err = err
		return 0
	}
	h.crc = crc32.Update(h.crc, crc32.IEEETable, []byte{b})
	return b
}

// readTrailer checks (or, when resuming, skips) a member's trailer and
// decides whether another member follows.
func (d *decoder) readTrailer() error {
	d.alignToByte()
	var t [8]byte
	for i := range t {
		b, err := d.readByte()
		if err != nil {
			if d.resume && d.srcErr == io.EOF {
				d.state = stateDone
				return nil
			}
			return err
		}
		t[i] = b
	}
	if !d.resume {
		// The length first: with DeferCRC (onTrailer set) the CRC is
		// checked later, elsewhere, so a member wrong in both says the same
		// either way.
		if binary.LittleEndian.Uint32(t[4:]) != uint32(d.totalOut()-d.memberStart) {
			return d.errorf(ErrChecksum, "incorrect length check")
		}
		if d.onTrailer == nil {
			d.updateCRC()
			if binary.LittleEndian.Uint32(t[0:]) != d.crc {
				return d.errorf(ErrChecksum, "incorrect data check")
			}
		}
		if d.onTrailer != nil {
			err := d.onTrailer(Trailer{Start: d.memberStart, End: d.totalOut(),
				CRC: binary.LittleEndian.Uint32(t[0:]), Offset: d.offset()})
			if err != nil {
				return err
			}
		}
	}
	d.state = stateHeader
	return nil
}

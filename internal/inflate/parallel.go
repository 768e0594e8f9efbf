package inflate

import (
	"hash/crc32"
	"sync/atomic"
)

// ParallelConfig sets up NewParallelGzipReader.
type ParallelConfig struct {
	// Workers is how many speculative decodes run at once (at least 1).
	Workers int
	// ChunkSize is the compressed size of the pieces the stream is split
	// into; each piece after the first gets a speculative decode starting
	// at its first block. Default DefaultParallelChunk.
	ChunkSize int
	// MaxOut caps the output of one speculative decode; past it the
	// decoder in stream order takes over until the next piece. Default
	// eight chunks.
	MaxOut int
}

// DefaultParallelChunk is the default ParallelConfig.ChunkSize.
const DefaultParallelChunk = 1 << 20

// job is the speculative decode of one chunk.
type job struct {
	start  int64 // absolute compressed offset of the chunk
	end    int64 // and of its end: the decode stops at the first boundary from here
	done   chan struct{}
	seg    *segment // nil if no block start in the chunk decoded
	cancel atomic.Bool
}

// parallel is the state of a GzipReader made by NewParallelGzipReader.
//
// The decoder in stream order (d) stays the reference: it parses headers
// and trailers and decodes wherever no speculative result applies. At every
// block end it asks whether a speculative decode started exactly there; if
// so, that decode's markers are resolved with d's window, its boundaries
// are reported, its output is handed out, and d resumes where it ended.
// A speculative result is used only when d itself arrives at its start, so
// its output is what d would have produced.
type parallel struct {
	d          *decoder
	next       func() ([]byte, error)
	nextErr    error
	onBoundary func(Boundary) error
	cfg        ParallelConfig
	sem        chan struct{}

	pieces    []piece // compressed input from the decoder's position on
	avail     int64   // absolute end of the input pulled so far
	readPos   int64   // absolute offset of the decoder's next read
	nextChunk int64   // start of the next chunk to get a job
	jobs      []*job  // pending, in stream order

	jump   *job   // matched at the boundary the decoder paused at
	used   int    // segments applied (for tests)
	serve  []byte // output of the applied segment not yet read
	served []byte // its buffer, recycled once read
	window []byte // while a segment's boundaries are reported
}

type piece struct {
	off  int64
	data []byte
}

// NewParallelGzipReader is NewGzipReader for input handed over in chunks
// by next (which returns io.EOF after the last; a chunk may come with it),
// decoding parts of the stream ahead on up to cfg.Workers goroutines. It
// reports the same boundaries, windows and output as NewGzipReader, in
// order, and reads the input once, in order; it holds about
// (Workers+2)·ChunkSize of input and Workers+1 results of up to MaxOut
// bytes each. Chunks returned by next must not change while the reader
// may still read them: until the decoder has passed them.
func NewParallelGzipReader(next func() ([]byte, error), onBoundary func(Boundary) error, cfg ParallelConfig) *GzipReader {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultParallelChunk
	}
	if cfg.MaxOut <= 0 {
		cfg.MaxOut = 8 * cfg.ChunkSize
	}
	z := new(GzipReader)
	p := &parallel{
		d: &z.d, next: next, onBoundary: onBoundary, cfg: cfg,
		sem:       make(chan struct{}, cfg.Workers),
		nextChunk: int64(cfg.ChunkSize),
	}
	z.p = p
	z.d.init(parallelSource{p})
	z.d.onBoundary = onBoundary
	z.d.pauseAt = p.pauseAt
	return z
}

type parallelSource struct{ p *parallel }

// Read serves the decoder the input from readPos.
func (s parallelSource) Read(b []byte) (int, error) {
	p := s.p
	for p.readPos >= p.avail {
		if p.nextErr != nil {
			return 0, p.nextErr
		}
		p.pull()
	}
	// Drop what the decoder has consumed.
	for len(p.pieces) > 0 && p.pieces[0].off+int64(len(p.pieces[0].data)) <= min(p.d.inBase, p.readPos) {
		p.pieces[0] = piece{}
		p.pieces = p.pieces[1:]
	}
	for _, pc := range p.pieces {
		if end := pc.off + int64(len(pc.data)); p.readPos < end {
			// Small reads keep the decoder's read-ahead, which
			// decides which chunks it has reached, short.
			n := copy(b[:min(len(b), max(p.cfg.ChunkSize/4, 512))], pc.data[p.readPos-pc.off:])
			p.readPos += int64(n)
			return n, nil
		}
	}
	panic("inflate: parallel input lost")
}

// pull takes one more chunk of input and starts the jobs it completes.
func (p *parallel) pull() {
	b, err := p.next()
	if len(b) > 0 {
		p.pieces = append(p.pieces, piece{off: p.avail, data: b})
		p.avail += int64(len(b))
	}
	if err != nil {
		p.nextErr = err
	}
	p.startJobs()
}

// fill pulls input until Workers+1 chunks past the decoder's read position
// are at hand, so that the workers have chunks to decode.
func (p *parallel) fill() {
	want := p.readPos + int64(p.cfg.Workers+2)*int64(p.cfg.ChunkSize)
	for p.nextErr == nil && p.avail < want {
		p.pull()
	}
}

// startJobs starts a job for every chunk whose input (and a chunk after it,
// for the block that crosses its end) has arrived.
func (p *parallel) startJobs() {
	c := int64(p.cfg.ChunkSize)
	for {
		start, end := p.nextChunk, p.nextChunk+c
		if start >= p.avail || p.avail < end+c && p.nextErr == nil {
			return
		}
		p.nextChunk = end
		if start <= p.readPos {
			continue // the decoder is there already
		}
		data := p.copyRange(start, min(end+c, p.avail))
		j := &job{start: start, end: end, done: make(chan struct{})}
		p.jobs = append(p.jobs, j)
		go func() {
			defer close(j.done)
			p.sem <- struct{}{}
			defer func() { <-p.sem }()
			if j.cancel.Load() {
				return
			}
			j.seg = speculate(data, start, 0, 8*c, 8*c, p.cfg.MaxOut, j.cancel.Load)
		}()
	}
}

// copyRange copies input [from, to), with 16 zero bytes of capacity after.
func (p *parallel) copyRange(from, to int64) []byte {
	out := make([]byte, 0, to-from+16)
	for _, pc := range p.pieces {
		end := pc.off + int64(len(pc.data))
		if end <= from || pc.off >= to {
			continue
		}
		out = append(out, pc.data[max(from, pc.off)-pc.off:min(to, end)-pc.off]...)
	}
	return out
}

// pauseAt is the decoder's hook at every non-final block end.
func (p *parallel) pauseAt(bit int64) bool {
	p.fill()
	for len(p.jobs) > 0 {
		j := p.jobs[0]
		if bit < 8*j.start {
			return false // not there yet
		}
		if bit >= 8*j.end {
			p.dropJob() // passed its chunk
			continue
		}
		<-j.done
		switch {
		case j.seg == nil || j.seg.start < bit:
			p.dropJob()
		case j.seg.start == bit:
			p.jump = j
			p.jobs = p.jobs[1:]
			return true
		default:
			return false // it starts at a later block
		}
	}
	return false
}

func (p *parallel) dropJob() {
	p.jobs[0].cancel.Store(true)
	p.jobs[0] = nil
	p.jobs = p.jobs[1:]
}

// stop cancels the pending jobs.
func (p *parallel) stop() {
	for _, j := range p.jobs {
		j.cancel.Store(true)
	}
	p.jobs = nil
}

// Read implements GzipReader.Read.
func (p *parallel) Read(b []byte) (int, error) {
	d := p.d
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if len(p.serve) > 0 {
			n := copy(b, p.serve)
			p.serve = p.serve[n:]
			if len(p.serve) == 0 {
				putSegmentBuf(p.served)
				p.served = nil
			}
			return n, nil
		}
		if d.rpos < d.wpos {
			n := copy(b, d.out[d.rpos:d.wpos])
			d.rpos += n
			return n, nil
		}
		if d.err != nil {
			p.stop()
			return 0, d.err
		}
		if p.jump != nil {
			p.apply()
			continue
		}
		d.paused = false
		d.step()
	}
}

// apply uses the matched segment, once every byte before it has been read.
func (p *parallel) apply() {
	d, seg := p.d, p.jump.seg
	p.jump = nil
	window := d.out[d.wpos-windowSize : d.wpos]
	base := d.totalOut()
	if !seg.resolve(window, int(base-d.memberStart)) {
		return // the decoder goes on in order and finds the error
	}
	for _, b := range seg.bounds {
		p.window = seg.buf[b.out : b.out+windowSize]
		err := p.onBoundary(Boundary{In: (b.bit + 7) >> 3, Bits: uint8(-b.bit & 7), Out: base + int64(b.out), Final: b.final})
		if err != nil {
			p.window = nil
			d.err = err
			return
		}
	}
	p.window = nil
	out := seg.buf[windowSize:]
	d.crc = crc32.Update(d.crc, crc32.IEEETable, out)

	// The decoder continues after the segment: its window, its position.
	total := base + int64(len(out))
	copy(d.out[:windowSize], seg.buf[len(seg.buf)-windowSize:])
	d.wpos, d.rpos, d.crcPos = windowSize, windowSize, windowSize
	d.outOff = total - windowSize
	d.minpos = max(windowSize-int(total-d.memberStart), 0)
	d.final = seg.bounds[len(seg.bounds)-1].final
	d.state = stateBlockHeader
	if d.final {
		d.state = stateTrailer
	}
	d.inBase = seg.end >> 3
	d.ipos, d.iend = 0, 0
	d.bitBuf, d.nbits = 0, 0
	d.srcErr = nil
	d.primePending = false
	if seg.end&7 != 0 {
		d.primeBits = uint8(8 - seg.end&7)
		d.primePending = true
	}
	p.readPos = seg.end >> 3
	p.serve, p.served = out, seg.buf
	p.used++
	// The next segment often starts where this one ends.
	if !d.final && p.pauseAt(seg.end) {
		d.paused = true
	}
}

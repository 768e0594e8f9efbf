package ztoc

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/soci-indexer/soci-indexer/internal/inflate"
)

// chunkQueue hands byte chunks from one goroutine of a build to the next,
// and recycles them through a free list so a build allocates a few buffers,
// not one per chunk. The writer closes it after the last chunk; on failure
// it is left open and the reader stops when the build's context is
// cancelled.
type chunkQueue struct {
	full chan []byte
	free chan []byte
	size int
}

func newChunkQueue(depth, size int) *chunkQueue {
	return &chunkQueue{
		full: make(chan []byte, depth),
		free: make(chan []byte, depth+2),
		size: size,
	}
}

// buffer returns an empty chunk of the queue's size.
func (q *chunkQueue) buffer() []byte {
	select {
	case b := <-q.free:
		return b[:q.size]
	default:
		return make([]byte, q.size)
	}
}

// recycle returns a chunk the reader is done with.
func (q *chunkQueue) recycle(b []byte) {
	select {
	case q.free <- b:
	default:
	}
}

func (q *chunkQueue) send(ctx context.Context, b []byte) error {
	select {
	case q.full <- b:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (q *chunkQueue) close() { close(q.full) }

// receive returns the next chunk, or io.EOF after the last.
func (q *chunkQueue) receive(ctx context.Context) ([]byte, error) {
	select {
	case b, ok := <-q.full:
		if !ok {
			return nil, io.EOF
		}
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// queueReader reads a chunkQueue as a stream. It tracks its position, as
// soci's position-tracking reader does for archive/tar, and implements a
// forward-only Seek so that archive/tar skips file data by dropping chunks
// instead of copying them.
type queueReader struct {
	ctx   context.Context
	queue *chunkQueue
	chunk []byte // the current chunk, recycled when done
	rest  []byte // its unread part
	skip  int64  // bytes a Seek skipped that are not yet dropped
	pos   int64  // bytes read or skipped
	eof   bool

	// onChunk, when set, sees every chunk as it arrives, skipped or not.
	onChunk func([]byte)
	// check, when set, sees every chunk too, and at the end of the
	// stream is called with nil; an error it returns ends the stream.
	check func([]byte) error
}

func newQueueReader(ctx context.Context, q *chunkQueue) *queueReader {
	return &queueReader{ctx: ctx, queue: q}
}

// fill makes rest non-empty, or returns io.EOF at the end of the stream.
func (r *queueReader) fill() error {
	for len(r.rest) == 0 || r.skip > 0 {
		if r.skip > 0 && len(r.rest) > 0 {
			n := min(r.skip, int64(len(r.rest)))
			r.rest = r.rest[n:]
			r.skip -= n
			continue
		}
		if r.eof {
			return io.EOF
		}
		if r.chunk != nil {
			r.queue.recycle(r.chunk)
			r.chunk = nil
		}
		b, err := r.queue.receive(r.ctx)
		if err == io.EOF {
			r.eof = true
			if r.check != nil {
				if err := r.check(nil); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			return err
		}
		if r.onChunk != nil {
			r.onChunk(b)
		}
		if r.check != nil {
			if err := r.check(b); err != nil {
				return err
			}
		}
		r.chunk, r.rest = b, b
	}
	return nil
}

func (r *queueReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := r.fill(); err != nil {
		return 0, err
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	r.pos += int64(n)
	return n, nil
}

var errSeek = errors.New("queue reader: only forward seeks from the current position")

// Seek moves forward lazily: archive/tar seeks past file data and then reads
// its last byte, which is where a truncated stream is noticed.
func (r *queueReader) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || offset < 0 {
		return r.pos, errSeek
	}
	r.skip += offset
	r.pos += offset
	return r.pos, nil
}

// drain reads and drops the rest of the stream.
func (r *queueReader) drain() error {
	for {
		r.rest, r.skip = nil, 0
		if err := r.fill(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// crcChecker checks the CRC-32 of each gzip member's data on the tar stage,
// off the inflater's goroutine (inflate.GzipReader.DeferCRC). The inflater
// reports a member's trailer before it decodes any byte of the next member,
// so before the chunk holding such a byte is sent: when the tar stage gets
// a chunk, every member ending inside it is known.
type crcChecker struct {
	mu       sync.Mutex
	trailers []inflate.Trailer // reported, not yet checked; guarded by mu

	// Used by the tar stage only.
	pos int64  // output bytes hashed
	crc uint32 // CRC-32 of the current member's bytes so far
}

// trailer is the inflater's DeferCRC callback.
func (c *crcChecker) trailer(t inflate.Trailer) error {
	c.mu.Lock()
	c.trailers = append(c.trailers, t)
	c.mu.Unlock()
	return nil
}

// first returns the first trailer not yet checked.
func (c *crcChecker) first() (inflate.Trailer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.trailers) == 0 {
		return inflate.Trailer{}, false
	}
	return c.trailers[0], true
}

// checkEnded checks the members that end at pos.
func (c *crcChecker) checkEnded() error {
	for {
		t, ok := c.first()
		if !ok || t.End != c.pos {
			return nil
		}
		if c.crc != t.CRC {
			return fmt.Errorf("%w: gzip: %w", ErrCorruptLayer, inflate.ChecksumError(t))
		}
		c.crc = 0
		c.mu.Lock()
		c.trailers = c.trailers[1:]
		c.mu.Unlock()
	}
}

// write hashes the next chunk of the output; nil marks its end.
func (c *crcChecker) write(b []byte) error {
	if b == nil {
		if err := c.checkEnded(); err != nil {
			return err
		}
		if _, ok := c.first(); ok {
			return fmt.Errorf("%w: gzip: member trailer past the end of the output", ErrCorruptLayer)
		}
		return nil
	}
	for len(b) > 0 {
		if err := c.checkEnded(); err != nil {
			return err
		}
		n := int64(len(b))
		if t, ok := c.first(); ok && t.End-c.pos < n {
			n = t.End - c.pos
		}
		c.crc = crc32.Update(c.crc, crc32.IEEETable, b[:n])
		c.pos += n
		b = b[n:]
	}
	return c.checkEnded()
}

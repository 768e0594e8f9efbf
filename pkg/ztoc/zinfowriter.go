package ztoc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/flate"

	"github.com/soci-indexer/soci-indexer/internal/inflate"
)

// zinfoWriter collects checkpoints in the current (v2) form.
//
// The records are kept deflated, as one stream, and inflated again only as
// the zTOC is written: a checkpoint's 32 KiB window is most of a zTOC, and
// the windows of a tar of binaries and text compress to less than half
// (0.44 on a 1.9 GB layer of /usr), so this is what keeps a large layer's
// build within its zTOC size plus a few MiB. The compressed chunks grow to
// deflatedChunkSize and are never copied.
//
// The deflating runs on a goroutine of its own, started by the first
// record, so that it is off the inflater's path; the windows travel to it
// in zinfoWindows buffers. finish stops it.
type zinfoWriter struct {
	spanSize int64
	n        int

	window  *[WindowSize]byte // the last checkpoint's window, until the next add
	header  [zinfoRecordHeader]byte
	pending bool
	tail    [8]byte // the last bytes of the last record

	records chan zinfoRecord       // to the deflater
	free    chan *[WindowSize]byte // windows it is done with
	windows int                    // windows allocated
	done    chan struct{}          // closed when the deflater has ended

	// Written by the deflater, read after done.
	deflated chunkedBuffer
	closed   bool
	err      error
}

// zinfoRecordHeader is the in, out and bits before a record's window.
const zinfoRecordHeader = 8 + 8 + 1

// zinfoWindows is how many windows a zinfoWriter keeps: the one being
// filled, and records the deflater has not finished.
const zinfoWindows = 3

type zinfoRecord struct {
	header [zinfoRecordHeader]byte
	window *[WindowSize]byte
}

// deflateLevel is the level the checkpoint records are kept at. On the
// zTOC of a 1.8 GB layer of /usr, level 6 kept them at 0.30 of their size
// and level 1 at 0.33, at about the same speed (164 and 184 MB/s; the
// deflater has a goroutine of its own): 1.6 MB less to hold at the end of
// the build, where memory peaks. Level -2 (Huffman only) keeps 0.68.
const deflateLevel = 6

func newZinfoWriter(spanSize int64) *zinfoWriter {
	return &zinfoWriter{spanSize: spanSize}
}

// add appends a checkpoint and returns its window, for the caller to fill
// before the next call of any of w's methods.
func (w *zinfoWriter) add(in, out int64, bits uint8) *[WindowSize]byte {
	w.store()
	if w.windows < zinfoWindows {
		w.window = new([WindowSize]byte)
		w.windows++
	} else {
		w.window = <-w.free
	}
	binary.LittleEndian.PutUint64(w.header[0:], uint64(in))
	binary.LittleEndian.PutUint64(w.header[8:], uint64(out))
	w.header[16] = bits
	w.pending = true
	w.n++
	return w.window
}

// store hands the pending record to the deflater.
func (w *zinfoWriter) store() {
	if !w.pending || w.closed {
		return
	}
	w.pending = false
	if w.records == nil {
		w.records = make(chan zinfoRecord, zinfoWindows-1)
		w.free = make(chan *[WindowSize]byte, zinfoWindows)
		w.done = make(chan struct{})
		go w.deflate()
	}
	copy(w.tail[:], w.window[WindowSize-len(w.tail):])
	w.records <- zinfoRecord{header: w.header, window: w.window}
	w.window = nil
}

// deflate is the deflater goroutine.
func (w *zinfoWriter) deflate() {
	defer close(w.done)
	fw, err := flate.NewWriter(&w.deflated, deflateLevel)
	for r := range w.records {
		if err == nil {
			if _, err = fw.Write(r.header[:]); err == nil {
				_, err = fw.Write(r.window[:])
			}
		}
		w.free <- r.window
	}
	if err == nil {
		err = fw.Close()
	}
	w.err = err
}

// finish deflates the last record, ends the stream and stops the deflater.
// Later calls do nothing. A failed build calls it to stop the deflater.
func (w *zinfoWriter) finish() error {
	if !w.closed {
		w.store()
		w.closed = true
		if w.records != nil {
			close(w.records)
			<-w.done
		}
	}
	if w.err != nil {
		return fmt.Errorf("store checkpoints: %w", w.err)
	}
	return nil
}

func (w *zinfoWriter) count() int { return w.n }

// len is the size of the blob.
func (w *zinfoWriter) len() int { return zinfoHeaderSize + w.n*checkpointSize }

// bytes assembles the blob.
func (w *zinfoWriter) bytes() ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, w.len()))
	if _, err := w.writePrefix(buf, w.len()); err != nil {
		return nil, err
	}
	w.deflated = chunkedBuffer{}
	return buf.Bytes(), nil
}

// tailBytes returns a copy of the last n bytes of the blob, n at most 8.
func (w *zinfoWriter) tailBytes(n int) []byte {
	if w.n == 0 {
		return w.appendHeader(nil)[zinfoHeaderSize-n:]
	}
	return append([]byte(nil), w.tail[len(w.tail)-n:]...)
}

// writePrefix writes the first n bytes of the blob to w, inflating the
// records on the way.
func (w *zinfoWriter) writePrefix(dst io.Writer, n int) (int64, error) {
	if err := w.finish(); err != nil {
		return 0, err
	}
	header := w.appendHeader(nil)
	m, err := dst.Write(header[:min(n, len(header))])
	written := int64(m)
	if err != nil || n <= len(header) {
		return written, err
	}
	// internal/inflate decodes these about three times as fast as
	// klauspost's reader, and this runs after the layer is read, on the
	// build's critical path. The records end with the stream's final block;
	// CopyN stops there, before the decoder would look for a gzip trailer.
	fr := inflate.NewResumeReader(w.deflated.reader(), 0, nil)
	ew := &errWriter{w: dst}
	c, err := io.CopyN(ew, fr, int64(n-len(header)))
	written += c
	if ew.err != nil {
		return written, ew.err // dst's error, as it is
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return written, fmt.Errorf("inflate stored checkpoints: %w", err)
	}
	return written, nil
}

// deflatedChunkSize is the size a chunkedBuffer's chunks grow to.
const deflatedChunkSize = 1 << 20

// chunkedBuffer is an append-only buffer held in chunks, so that growing it
// never copies what it holds.
type chunkedBuffer struct {
	chunks [][]byte
	size   int
}

func (b *chunkedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		last := len(b.chunks) - 1
		if last < 0 || len(b.chunks[last]) == cap(b.chunks[last]) {
			// Chunks double up to their full size, so that a small
			// layer does not allocate a whole one.
			b.chunks = append(b.chunks, make([]byte, 0, min(deflatedChunkSize, max(4<<10, b.size))))
			last++
		}
		c := b.chunks[last]
		k := min(len(p), cap(c)-len(c))
		b.chunks[last] = append(c, p[:k]...)
		b.size += k
		p = p[k:]
	}
	return n, nil
}

// reader reads the buffer from its start.
func (b *chunkedBuffer) reader() io.Reader {
	readers := make([]io.Reader, len(b.chunks))
	for i, c := range b.chunks {
		readers[i] = bytes.NewReader(c)
	}
	return io.MultiReader(readers...)
}

// errWriter remembers the first error of w, to tell it from a read error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

package ztoc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/soci-indexer/soci-indexer/internal/inflate"
)

// Span is one independently decodable piece of a layer: the compressed bytes
// [StartCompressed, EndCompressed) of the blob decode, from the span's
// checkpoint, to the tar bytes [StartUncompressed, EndUncompressed).
// Consecutive gzip spans overlap by one compressed byte when a checkpoint
// falls inside a byte.
type Span struct {
	ID                SpanID
	StartCompressed   int64
	EndCompressed     int64
	StartUncompressed int64
	EndUncompressed   int64
	Digest            digest.Digest // sha256 of the compressed bytes
}

// Spans lists the spans of the layer, as soci's span manager computes them.
func (z *Ztoc) Spans() ([]Span, error) {
	zi, err := z.zinfo()
	if err != nil {
		return nil, err
	}
	return z.spans(zi, 0, zi.maxSpanID()), nil
}

func (z *Ztoc) spans(zi zinfo, first, last SpanID) []Span {
	var spans []Span
	for id := first; id <= last; id++ {
		spans = append(spans, Span{
			ID:                id,
			StartCompressed:   zi.startCompressed(id),
			EndCompressed:     zi.endCompressed(id, z.CompressedArchiveSize),
			StartUncompressed: zi.startUncompressed(id),
			EndUncompressed:   zi.endUncompressed(id, z.UncompressedArchiveSize),
			Digest:            z.SpanDigests[id],
		})
	}
	return spans
}

// SpanOf returns the span holding the tar byte at uncompressedOffset: the
// last span starting at or before it.
func (z *Ztoc) SpanOf(uncompressedOffset int64) (SpanID, error) {
	zi, err := z.zinfo()
	if err != nil {
		return 0, err
	}
	if uncompressedOffset < 0 || uncompressedOffset >= z.UncompressedArchiveSize {
		return 0, fmt.Errorf("offset %d outside the tar stream of %d bytes", uncompressedOffset, z.UncompressedArchiveSize)
	}
	return zi.spanOf(uncompressedOffset), nil
}

// ReadSpan returns the tar bytes of one span, read from layer (the layer
// blob) and verified against the span digest.
func (z *Ztoc) ReadSpan(ctx context.Context, layer io.ReaderAt, id SpanID) ([]byte, error) {
	zi, err := z.zinfo()
	if err != nil {
		return nil, err
	}
	if id < 0 || id > zi.maxSpanID() {
		return nil, fmt.Errorf("span %d out of range [0, %d]", id, zi.maxSpanID())
	}
	start := zi.startUncompressed(id)
	size := zi.endUncompressed(id, z.UncompressedArchiveSize) - start
	var buf bytes.Buffer
	if err := z.extract(ctx, zi, layer, start, size, &buf); err != nil {
		return nil, fmt.Errorf("read span %d: %w", id, err)
	}
	return buf.Bytes(), nil
}

// ExtractFile returns the content of the entry called name, reading and
// inflating only the spans that hold it and verifying their digests. name
// matches the TOC name exactly, or else after cleaning ("./a/b" and "a/b"
// are the same file).
func (z *Ztoc) ExtractFile(ctx context.Context, layer io.ReaderAt, name string) ([]byte, error) {
	var buf bytes.Buffer
	if f, err := z.regularFile(name); err == nil {
		buf.Grow(int(min(f.UncompressedSize, 64<<20)))
	}
	if err := z.ExtractFileTo(ctx, layer, name, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ExtractFileTo is ExtractFile streaming to w, for files too large to hold
// in memory. w receives data before the digest of the last span it came
// from is checked: on error, discard what was written.
func (z *Ztoc) ExtractFileTo(ctx context.Context, layer io.ReaderAt, name string, w io.Writer) error {
	f, err := z.regularFile(name)
	if err != nil {
		return err
	}
	zi, err := z.zinfo()
	if err != nil {
		return err
	}
	if err := z.extract(ctx, zi, layer, f.UncompressedOffset, f.UncompressedSize, w); err != nil {
		return fmt.Errorf("extract %s: %w", name, err)
	}
	return nil
}

// Lookup returns the TOC entry called name (see ExtractFile).
func (z *Ztoc) Lookup(name string) (*FileMetadata, error) {
	for i := range z.FileMetadata {
		if z.FileMetadata[i].Name == name {
			return &z.FileMetadata[i], nil
		}
	}
	clean := cleanName(name)
	for i := range z.FileMetadata {
		if cleanName(z.FileMetadata[i].Name) == clean {
			return &z.FileMetadata[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrFileNotFound, name)
}

// regularFile looks name up and returns the entry that holds its data: the
// entry itself for a regular file, the link's target for a hard link.
// Anything else has no data to extract, which is an error rather than an
// empty file.
func (z *Ztoc) regularFile(name string) (*FileMetadata, error) {
	f, err := z.Lookup(name)
	if err != nil {
		return nil, err
	}
	switch f.Type {
	case "reg":
		return f, nil
	case "hardlink":
		target, err := z.Lookup(f.Linkname)
		if err != nil {
			return nil, fmt.Errorf("%s: hard link to %s: %w", name, f.Linkname, err)
		}
		if target.Type != "reg" {
			return nil, fmt.Errorf("%w: %s is a hard link to %s, a %s", ErrNotRegularFile, name, f.Linkname, target.Type)
		}
		return target, nil
	case "symlink":
		return nil, fmt.Errorf("%w: %s is a symbolic link to %s", ErrNotRegularFile, name, f.Linkname)
	case "dir":
		return nil, fmt.Errorf("%w: %s is a directory", ErrNotRegularFile, name)
	default:
		return nil, fmt.Errorf("%w: %s is a %s device or fifo", ErrNotRegularFile, name, f.Type)
	}
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// extract writes the tar bytes [off, off+size) to w. The spans are checked
// as they are read; nothing is reported as extracted unless every span it
// came from matches its digest, so callers should discard w on error.
func (z *Ztoc) extract(ctx context.Context, zi zinfo, layer io.ReaderAt, off, size int64, w io.Writer) error {
	if size == 0 {
		return nil
	}
	if off < 0 || size < 0 || off+size > z.UncompressedArchiveSize {
		return fmt.Errorf("%w: range [%d, %d) outside the tar stream of %d bytes",
			ErrInvalidZtoc, off, off+size, z.UncompressedArchiveSize)
	}
	first, last := zi.spanOf(off), zi.spanOf(off+size-1)
	spans := z.spans(zi, first, last)
	start, end := spans[0].StartCompressed, spans[len(spans)-1].EndCompressed
	if start < 0 || end < start {
		return fmt.Errorf("%w: spans %d-%d cover [%d, %d)", ErrInvalidZtoc, first, last, start, end)
	}
	v := &spanVerifier{
		ctx:   ctx,
		r:     bufio.NewReaderSize(io.NewSectionReader(layer, start, end-start), 128<<10),
		pos:   start,
		spans: spans,
	}

	var data io.Reader = v
	skip := off - start
	if gz, ok := zi.(*gzipZinfo); ok {
		cp := gz.checkpoint(first)
		data = inflate.NewResumeReader(v, cp.Bits, cp.Window)
		skip = off - cp.Out
	}
	if _, err := io.CopyN(io.Discard, data, skip); err != nil {
		return fmt.Errorf("reading layer: %w", v.explain(err))
	}
	if _, err := io.CopyN(w, data, size); err != nil {
		return fmt.Errorf("reading layer: %w", v.explain(err))
	}
	// Read the rest of the last span so that its digest is checked too.
	if _, err := io.Copy(io.Discard, v); err != nil {
		return fmt.Errorf("reading layer: %w", err)
	}
	return v.finish()
}

// spanVerifier reads consecutive spans of a layer blob and checks each
// span's digest as soon as its last byte has been read.
type spanVerifier struct {
	ctx    context.Context
	r      io.Reader
	pos    int64 // blob offset of the next byte
	spans  []Span
	next   int // first span not yet checked
	hashes []hash.Hash
	err    error
}

func (v *spanVerifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if err := v.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := v.r.Read(p)
	if n > 0 {
		if herr := v.hash(p[:n]); herr != nil {
			v.err = herr
			return 0, herr
		}
	}
	if err == io.EOF && v.next < len(v.spans) {
		// The section ended: check any span ending exactly here.
		if herr := v.hash(nil); herr != nil {
			v.err = herr
			return 0, herr
		}
	}
	return n, err
}

func (v *spanVerifier) hash(b []byte) error {
	lo, hi := v.pos, v.pos+int64(len(b))
	if v.hashes == nil {
		v.hashes = make([]hash.Hash, len(v.spans))
	}
	for i := v.next; i < len(v.spans) && v.spans[i].StartCompressed <= hi; i++ {
		s := v.spans[i]
		if from, to := max(lo, s.StartCompressed), min(hi, s.EndCompressed); from < to {
			if v.hashes[i] == nil {
				v.hashes[i] = sha256.New()
			}
			v.hashes[i].Write(b[from-lo : to-lo])
		}
		if s.EndCompressed > hi {
			continue
		}
		if v.hashes[i] == nil {
			v.hashes[i] = sha256.New()
		}
		if got := sha256Digest(v.hashes[i]); got != s.Digest {
			return fmt.Errorf("%w: span %d [%d, %d): expected %s, read %s",
				ErrSpanDigestMismatch, s.ID, s.StartCompressed, s.EndCompressed, s.Digest, got)
		}
		v.hashes[i] = nil
		v.next = i + 1
	}
	v.pos = hi
	return nil
}

// explain prefers a span mismatch over the decoding error it caused: after
// a decoding error it reads the rest of the spans to check their digests.
func (v *spanVerifier) explain(err error) error {
	if v.err == nil {
		_, _ = io.Copy(io.Discard, v)
	}
	if v.err != nil {
		return v.err
	}
	return err
}

func (v *spanVerifier) finish() error {
	if v.err != nil {
		return v.err
	}
	if v.next < len(v.spans) {
		return fmt.Errorf("%w: layer ends at %d, inside span %d", ErrSpanDigestMismatch, v.pos, v.spans[v.next].ID)
	}
	return nil
}

package ztoc

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"log/slog"
	"strings"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/soci-indexer/soci-indexer/internal/inflate"
)

// Chunk sizes and queue depths of the build pipeline. They bound the memory
// a build uses besides the zTOC itself to a few MiB, plus the compressed
// size of the longest deflate block (see gzipSpanHasher), which real
// compressors keep well under 1 MiB. The tar stage skips file data, so it
// keeps up with the inflater with a short queue: 4 (up to 6 buffers of
// inflate.ChunkBufferSize, 1 MiB; they are garbage once the layer is read,
// before the zTOC is encoded, when it is held twice).
const (
	compressedChunkSize    = 256 << 10
	compressedQueueDepth   = 8
	uncompressedChunkSize  = inflate.ChunkBufferSize
	uncompressedQueueDepth = 4
)

// BuildOption configures Build.
type BuildOption func(*buildConfig)

type buildConfig struct {
	spanSize       int64
	toolIdentifier string
	compression    Compression
	expectedDigest digest.Digest
	progress       func(compressedRead int64)
	logger         *slog.Logger
	parallel       *inflate.ParallelConfig
}

// WithSpanSize sets the minimum distance, in uncompressed bytes, between two
// checkpoints of a gzip layer, or the fixed span size of an uncompressed
// layer. The default is DefaultSpanSize. A gzip layer accepts 0 (a
// checkpoint at every deflate block); an uncompressed layer needs a positive
// size.
func WithSpanSize(n int64) BuildOption {
	return func(c *buildConfig) { c.spanSize = n }
}

// WithBuildToolIdentifier sets the build tool string recorded in the zTOC.
// The default is DefaultBuildToolIdentifier, soci's own.
func WithBuildToolIdentifier(s string) BuildOption {
	return func(c *buildConfig) { c.toolIdentifier = s }
}

// WithCompression says how the layer is compressed: Gzip (the default) or
// Uncompressed.
func WithCompression(algorithm Compression) BuildOption {
	return func(c *buildConfig) { c.compression = algorithm }
}

// WithExpectedDigest makes Build fail with a *DigestMismatchError (wrapping
// ErrDigestMismatch) unless the layer blob hashes to d. Only sha256 digests
// are supported.
func WithExpectedDigest(d digest.Digest) BuildOption {
	return func(c *buildConfig) { c.expectedDigest = d }
}

// WithProgress registers f to be called, from a goroutine of Build, with the
// number of compressed bytes read so far, after every chunk.
func WithProgress(f func(compressedRead int64)) BuildOption {
	return func(c *buildConfig) { c.progress = f }
}

// WithParallelInflate decodes a gzip layer with up to workers speculative
// decoders of chunkSize compressed bytes each running ahead of the decoder
// in stream order (0: inflate.DefaultParallelChunk), as
// inflate.NewParallelGzipReader describes. The zTOC is the same bytes. It
// is off by default: on the layers measured so far (docs/bench/inflate.md)
// the speculative decoders cost more than they save. Tests use it with
// small chunks to force the parallel path.
func WithParallelInflate(workers, chunkSize int) BuildOption {
	return func(c *buildConfig) {
		c.parallel = &inflate.ParallelConfig{Workers: workers, ChunkSize: chunkSize}
	}
}

// WithLogger sets the logger for warnings about layers that soci would index
// but its snapshotter would not serve lazily. By default nothing is logged.
func WithLogger(l *slog.Logger) BuildOption {
	return func(c *buildConfig) { c.logger = l }
}

// Result is a built zTOC and the identity of the layer it was built from.
type Result struct {
	Ztoc        *Ztoc
	LayerDigest digest.Digest // sha256 of the layer blob as read
	LayerSize   int64         // bytes of the layer blob
}

// Build reads a layer blob once, sequentially, and builds its zTOC the way
// soci-snapshotter v0.16.1's BuildZtoc does. It never seeks r, writes no
// temporary files and keeps a few MiB besides the zTOC.
//
// The work runs as a pipeline over two cores: one goroutine reads and hashes
// the blob, one inflates it and records checkpoints, one hashes the spans
// once their boundaries are known, and one parses the tar stream.
//
// Layer problems give errors wrapping ErrCorruptLayer, *UnsupportedEntryError
// or *DigestMismatchError; read errors of r are returned wrapped.
func Build(ctx context.Context, r io.Reader, opts ...BuildOption) (*Result, error) {
	b, err := buildLayer(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	z := b.ztoc()
	if z.FileMetadata, err = b.files.unpackAll(); err != nil {
		return nil, fmt.Errorf("build ztoc: %w", err)
	}
	if z.Checkpoints, err = b.checkpointBytes(); err != nil {
		return nil, fmt.Errorf("build ztoc: %w", err)
	}
	return &Result{Ztoc: z, LayerDigest: b.layerDigest, LayerSize: b.blobSize}, nil
}

// WriteResult is what BuildTo reports about the zTOC it wrote and the layer
// it was built from.
type WriteResult struct {
	ZtocSize    int64         // bytes written
	LayerDigest digest.Digest // sha256 of the layer blob as read
	LayerSize   int64         // bytes of the layer blob
}

// BuildTo builds a layer's zTOC as Build does and writes the bytes Marshal
// would return for it to w. It is for large layers: the checkpoints, most of
// a gzip zTOC, go to w from the chunks they were collected in, so they are
// never copied into the one blob Ztoc.Checkpoints needs, and the zTOC's
// peak memory is about a third lower.
//
// Nothing is written unless the build succeeds. Errors are Build's, and
// write errors of w.
func BuildTo(ctx context.Context, r io.Reader, w io.Writer, opts ...BuildOption) (*WriteResult, error) {
	b, err := buildLayer(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	e, err := encodePieces(b.ztoc(), releasedFiles{&b.files}, b.checkpointPieces())
	if err != nil {
		return nil, err
	}
	b.files = packedFiles{}
	n, err := e.writeTo(w)
	if err != nil {
		return nil, err
	}
	return &WriteResult{ZtocSize: n, LayerDigest: b.layerDigest, LayerSize: b.blobSize}, nil
}

// buildLayer runs a build and checks the layer digest. The checkpoints are left
// in the builder, for the caller to assemble or write as they are.
func buildLayer(ctx context.Context, r io.Reader, opts []BuildOption) (*builder, error) {
	cfg := buildConfig{
		spanSize:       DefaultSpanSize,
		toolIdentifier: DefaultBuildToolIdentifier,
		compression:    Gzip,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.progress == nil {
		cfg.progress = func(int64) {}
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.spanSize < 0 || cfg.spanSize == 0 && cfg.compression == Uncompressed {
		return nil, fmt.Errorf("build ztoc: %w: %d", ErrInvalidSpanSize, cfg.spanSize)
	}
	if cfg.expectedDigest != "" {
		if err := cfg.expectedDigest.Validate(); err != nil {
			return nil, fmt.Errorf("build ztoc: expected digest: %w", err)
		}
		if cfg.expectedDigest.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("build ztoc: expected digest %s: only sha256 is supported", cfg.expectedDigest)
		}
	}

	b := &builder{cfg: cfg, blobHash: sha256.New()}
	var err error
	switch cfg.compression {
	case Gzip:
		err = b.buildGzip(ctx, r)
	case Uncompressed:
		err = b.buildUncompressed(ctx, r)
	default:
		err = fmt.Errorf("unsupported compression %q", cfg.compression)
	}
	if err != nil {
		return nil, fmt.Errorf("build ztoc: %w", err)
	}

	b.layerDigest = sha256Digest(b.blobHash)
	if cfg.expectedDigest != "" && b.layerDigest != cfg.expectedDigest {
		return nil, fmt.Errorf("build ztoc: %w", &DigestMismatchError{Expected: cfg.expectedDigest, Actual: b.layerDigest})
	}
	return b, nil
}

// builder holds the results of the pipeline's stages. Each field is written
// by one goroutine and read after they all finish.
type builder struct {
	cfg buildConfig

	blobHash    hash.Hash
	blobSize    int64
	layerDigest digest.Digest

	files            packedFiles
	tarSize          int64
	spanDigests      []digest.Digest
	zinfo            *zinfoWriter // gzip checkpoints, in chunks
	tarZinfo         *tarZinfo    // an uncompressed layer's spans
	emptyFirstBlocks bool
}

// checkpointPieces returns the checkpoints field as the build produced it.
func (b *builder) checkpointPieces() checkpointData {
	if b.zinfo != nil {
		return b.zinfo
	}
	return checkpointPieces{encodeTarZinfo(b.tarZinfo.spanSize, b.tarZinfo.size)}
}

// checkpointBytes returns the checkpoints field as one blob.
func (b *builder) checkpointBytes() ([]byte, error) {
	if b.zinfo != nil {
		return b.zinfo.bytes()
	}
	return encodeTarZinfo(b.tarZinfo.spanSize, b.tarZinfo.size), nil
}

// ztoc returns the zTOC without its TOC entries and checkpoints.
func (b *builder) ztoc() *Ztoc {
	z := &Ztoc{
		Version:                 Version09,
		BuildToolIdentifier:     b.cfg.toolIdentifier,
		CompressedArchiveSize:   b.blobSize,
		UncompressedArchiveSize: b.tarSize,
		CompressionInfo: CompressionInfo{
			SpanDigests:          b.spanDigests,
			CompressionAlgorithm: b.cfg.compression,
		},
	}
	if b.tarZinfo != nil {
		z.MaxSpanID = b.tarZinfo.maxSpanID()
	} else {
		z.MaxSpanID = SpanID(b.zinfo.count() - 1)
	}
	return z
}

// readBlob is the first stage: it reads r in chunks, hashes the blob and
// passes the chunks on.
func (b *builder) readBlob(ctx context.Context, r io.Reader, q *chunkQueue) error {
	for {
		chunk := q.buffer()
		n, err := io.ReadFull(r, chunk)
		if n > 0 {
			b.blobHash.Write(chunk[:n])
			b.blobSize += int64(n)
			b.cfg.progress(b.blobSize)
			if err := q.send(ctx, chunk[:n]); err != nil {
				return err
			}
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			q.close()
			return nil
		default:
			return fmt.Errorf("reading layer: %w", err)
		}
	}
}

// readTOC is the last stage: archive/tar over the uncompressed stream, as
// soci's metadataFromTarReader, then the rest of the stream is drained so
// that the stages before it see all of the layer.
func (b *builder) readTOC(ctx context.Context, r *queueReader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("%w: reading tar at offset %d: %w", ErrCorruptLayer, r.pos, err)
		}
		typ, ok := fileType(hdr.Typeflag)
		if !ok {
			return &UnsupportedEntryError{Name: hdr.Name, Typeflag: hdr.Typeflag}
		}
		if err := checkServable(hdr); err != nil {
			return err
		}
		b.files.add(&FileMetadata{
			Name:               hdr.Name,
			Type:               typ,
			UncompressedOffset: r.pos,
			UncompressedSize:   hdr.Size,
			Linkname:           hdr.Linkname,
			Mode:               hdr.Mode,
			UID:                hdr.Uid,
			GID:                hdr.Gid,
			Uname:              hdr.Uname,
			Gname:              hdr.Gname,
			ModTime:            hdr.ModTime,
			Devmajor:           hdr.Devmajor,
			Devminor:           hdr.Devminor,
			PAXHeaders:         hdr.PAXRecords,
		})
	}
	b.tarSize = r.pos
	// soci writes such a zTOC and only its reader refuses it; Build does
	// not write it.
	if err := b.files.overlap; err != nil {
		return fmt.Errorf("%w: %w", ErrUnservableLayer, err)
	}
	return r.drain()
}

// gnuSparsePrefix starts every PAX record of GNU tar's sparse formats.
const gnuSparsePrefix = "GNU.sparse."

// checkServable refuses an entry whose TOC record would not read back: a
// GNU sparse file. archive/tar reports its expanded size and the offset
// after the sparse map, but the tar stream holds only its data regions, so
// a reader going by offset and size would read past them.
func checkServable(hdr *tar.Header) error {
	for key := range hdr.PAXRecords {
		if strings.HasPrefix(key, gnuSparsePrefix) {
			return fmt.Errorf("%w: %q is a GNU sparse file (GNU.sparse.* PAX records): "+
				"its bytes in the tar stream are not its contents", ErrUnservableLayer, hdr.Name)
		}
	}
	return nil
}

func (b *builder) buildUncompressed(ctx context.Context, r io.Reader) error {
	g, ctx := errgroup.WithContext(ctx)
	q := newChunkQueue(uncompressedQueueDepth, uncompressedChunkSize)
	spans := &tarSpanHasher{spanSize: b.cfg.spanSize}
	g.Go(func() error { return b.readBlob(ctx, r, q) })
	g.Go(func() error {
		qr := newQueueReader(ctx, q)
		qr.onChunk = spans.write
		return b.readTOC(ctx, qr)
	})
	if err := g.Wait(); err != nil {
		return err
	}
	b.spanDigests = spans.finish()
	b.tarZinfo = &tarZinfo{spanSize: b.cfg.spanSize, size: b.blobSize}
	return nil
}

// hashBatch is what the inflater tells the span hasher each time it takes a
// new compressed chunk: the span cuts found since the last batch, the offset
// before which no later span can start, then the chunk itself.
type hashBatch struct {
	cuts  []spanCut
	safe  int64
	chunk []byte // nil in the last batch
}

// compressedSource is the inflater's input. It takes chunks from the reader
// stage and forwards each, with the cuts found so far, to the span hasher.
type compressedSource struct {
	ctx    context.Context
	in     *chunkQueue
	hasher chan<- hashBatch
	cuts   []spanCut
	safe   int64
}

func (s *compressedSource) flush(chunk []byte) error {
	batch := hashBatch{cuts: s.cuts, safe: s.safe, chunk: chunk}
	s.cuts = nil
	select {
	case s.hasher <- batch:
		return nil
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
}

// next is the inflater's chunk source: the next chunk, which
// is forwarded to the span hasher first.
func (s *compressedSource) next() ([]byte, error) {
	chunk, err := s.in.receive(s.ctx)
	if err != nil {
		return nil, err
	}
	if err := s.flush(chunk); err != nil {
		return nil, err
	}
	return chunk, nil
}

func (b *builder) buildGzip(ctx context.Context, r io.Reader) error {
	g, ctx := errgroup.WithContext(ctx)
	compressed := newChunkQueue(compressedQueueDepth, compressedChunkSize)
	uncompressed := newChunkQueue(uncompressedQueueDepth, uncompressedChunkSize)
	batches := make(chan hashBatch, compressedQueueDepth)

	g.Go(func() error { return b.readBlob(ctx, r, compressed) })
	// The sequential inflater leaves the CRC-32 check to the tar stage.
	var crc *crcChecker
	if b.cfg.parallel == nil {
		crc = new(crcChecker)
	}
	g.Go(func() error {
		return b.inflate(ctx, &compressedSource{ctx: ctx, in: compressed, hasher: batches}, uncompressed, crc)
	})
	g.Go(func() error {
		spans := &gzipSpanHasher{recycle: compressed.recycle}
		for {
			select {
			case batch, ok := <-batches:
				if !ok {
					b.spanDigests = spans.finish()
					return nil
				}
				for _, c := range batch.cuts {
					spans.cut(c)
				}
				spans.hashTo(batch.safe)
				spans.release()
				if batch.chunk != nil {
					spans.add(batch.chunk)
				}
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	})
	g.Go(func() error {
		qr := newQueueReader(ctx, uncompressed)
		if crc != nil {
			qr.check = crc.write
		}
		return b.readTOC(ctx, qr)
	})
	if err := g.Wait(); err != nil {
		return err
	}
	if b.emptyFirstBlocks {
		b.cfg.logger.Warn("gzip stream starts with a deflate block that produces no output; "+
			"like soci, the zTOC has two checkpoints at uncompressed offset 0, and soci's snapshotter "+
			"rejects it as non-monotonic, so the layer will not be lazily loaded",
			"checkpoints", b.zinfo.count())
	}
	return nil
}

// inflate decodes the gzip stream, records checkpoints by soci's rule and
// passes the tar stream on.
func (b *builder) inflate(ctx context.Context, src *compressedSource, out *chunkQueue, crc *crcChecker) error {
	zinfo := newZinfoWriter(b.cfg.spanSize)
	defer zinfo.finish() // stops its deflater if the build fails
	var (
		gz   *inflate.GzipReader
		last int64 // uncompressed offset of the last checkpoint
	)
	onBoundary := func(bd inflate.Boundary) error {
		// No later span can start before the byte holding this boundary.
		src.safe = max(bd.In-1, 0)
		// zlib's zran loop: a checkpoint at a block end that is not the
		// member's last, at the start of the output or once more than a
		// span of output has passed since the last checkpoint.
		if bd.Final || bd.Out != 0 && bd.Out-last <= b.cfg.spanSize {
			return nil
		}
		start := bd.In
		if bd.Bits != 0 {
			start--
		}
		if zinfo.count() > 0 && bd.Out == 0 {
			b.emptyFirstBlocks = true
		}
		src.cuts = append(src.cuts, spanCut{end: bd.In, start: start})
		gz.Window(zinfo.add(bd.In, bd.Out, bd.Bits))
		last = bd.Out
		return nil
	}
	if b.cfg.parallel != nil {
		gz = inflate.NewParallelGzipReader(src.next, onBoundary, *b.cfg.parallel)
	} else {
		// The decoder reads the chunks in place. The span hasher recycles
		// a chunk only once a boundary past it was reported (src.safe), and
		// the decoder never reads behind its last boundary.
		gz = inflate.NewGzipChunkReader(src.next, onBoundary)
		if crc != nil {
			gz.DeferCRC(crc.trailer)
		}
	}

	next := b.readChunks(ctx, gz, out)
	for {
		chunk, err := next()
		if len(chunk) > 0 {
			if err := out.send(ctx, chunk); err != nil {
				return err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			// ReadFull reports a short final read as ErrUnexpectedEOF; the
			// inflater's own truncation errors are *inflate.Error.
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			var ie *inflate.Error
			if errors.As(err, &ie) {
				return fmt.Errorf("%w: gzip: %w", ErrCorruptLayer, err)
			}
			return err
		}
	}
	// The inflater stops after the last member; anything left is data zlib
	// would have failed on.
	if chunk, err := src.in.receive(ctx); err == nil && len(chunk) > 0 {
		return fmt.Errorf("%w: gzip: %w", ErrCorruptLayer, inflate.ErrTrailingData)
	} else if err != nil && err != io.EOF {
		return err
	}
	if err := src.flush(nil); err != nil {
		return err
	}
	close(src.hasher)
	out.close()
	if err := zinfo.finish(); err != nil {
		return err
	}
	b.zinfo = zinfo
	if zinfo.count() == 0 {
		return fmt.Errorf("%w: gzip: no deflate data", ErrCorruptLayer)
	}
	return nil
}

// readChunks returns the function the inflate stage takes its output
// chunks from. The sequential inflater decodes straight into the buffers
// the chunks are sent in (inflate.GzipReader.ReadChunk), so the tar stream
// is not copied: up to uncompressedQueueDepth+2 buffers of
// uncompressedChunkSize bytes, reused in the order the tar stage, which
// reads them in order, recycles them. The parallel one is read as a stream.
func (b *builder) readChunks(ctx context.Context, gz *inflate.GzipReader, out *chunkQueue) func() ([]byte, error) {
	if b.cfg.parallel != nil {
		return func() ([]byte, error) {
			chunk := out.buffer()
			n, err := io.ReadFull(gz, chunk)
			return chunk[:n], err
		}
	}
	// The buffers out, oldest sent first, in a ring.
	ring := make([][]byte, cap(out.free))
	first, inFlight, allocated := 0, 0, 0
	// The first buffer is needed at once; the others are prepared.
	fresh := prefaultedBuffers(ctx, len(ring)-1, uncompressedChunkSize)
	return func() ([]byte, error) {
		// The tar stage recycles every chunk before it takes the next, so
		// each value on out.free means that the oldest chunk still out is
		// done, and its buffer can be reused. A buffer is allocated only
		// when none is free, as chunkQueue.buffer does.
		var buf []byte
		select {
		case <-out.free:
		default:
			if allocated < len(ring) {
				// One prepared off the critical path if there is one:
				// never wait for it.
				select {
				case buf = <-fresh:
				default:
					buf = make([]byte, uncompressedChunkSize)
				}
				allocated++
				break
			}
			select {
			case <-out.free:
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		}
		if buf == nil {
			buf = ring[first]
			first = (first + 1) % len(ring)
			inFlight--
		}
		ring[(first+inFlight)%len(ring)] = buf
		inFlight++
		return gz.ReadChunk(buf)
	}
}

// prefaultedBuffers returns a channel that up to n buffers of the given
// size arrive on. A goroutine allocates each and writes to each of its
// pages, one buffer ahead of the receiver, until n are taken or ctx is
// done. The first write to a page is a page fault, and on the VM this was
// measured on one cost 10 µs: 2.7 ms per MiB, 16 ms for the output buffers
// of a build when the inflating goroutine, the critical path, took them.
// One ahead, so a small layer's build prepares one buffer it does not use.
// The receiver should not wait for a buffer: the goroutine may wait for a
// core longer than faulting the pages in takes (10-25 ms, measured on a
// loaded machine).
func prefaultedBuffers(ctx context.Context, n, size int) <-chan []byte {
	const pageSize = 4 << 10 // the smallest page size of the platforms Go runs on
	c := make(chan []byte, 1)
	go func() {
		for range n {
			b := make([]byte, size)
			for i := 0; i < len(b); i += pageSize {
				b[i] = 0
			}
			select {
			case c <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return c
}

// fileChunkEntries is how many entries a packedFiles chunk holds.
const fileChunkEntries = 1024

// fileChunks is a TOC held in chunks of FileMetadata, as Marshal encodes
// z.FileMetadata (one chunk).
type fileChunks [][]FileMetadata

func (c fileChunks) chunks() int                { return len(c) }
func (c fileChunks) chunk(i int) []FileMetadata { return c[i] }

func (c fileChunks) len() int {
	n := 0
	for _, chunk := range c {
		n += len(chunk)
	}
	return n
}

// all yields the entries in order.
func (c fileChunks) all() iter.Seq[*FileMetadata] {
	return func(yield func(*FileMetadata) bool) {
		for _, chunk := range c {
			for i := range chunk {
				if !yield(&chunk[i]) {
					return
				}
			}
		}
	}
}

// deriveHeaderOffsets is the package's deriveHeaderOffsets over the chunks.
func (c fileChunks) deriveHeaderOffsets() error {
	var nextHeader int64
	for f := range c.all() {
		if f.UncompressedOffset < nextHeader {
			return fmt.Errorf("%w: %q at offset %d overlaps the entry before (ends at %d)",
				ErrInvalidTOCEntry, f.Name, f.UncompressedOffset, nextHeader)
		}
		f.TarHeaderOffset = nextHeader
		nextHeader = alignToTarBlock(f.UncompressedOffset + f.UncompressedSize)
	}
	return nil
}

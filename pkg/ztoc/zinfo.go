package ztoc

import (
	"encoding/binary"
	"fmt"

	flatbuffers "github.com/google/flatbuffers/go"
)

// WindowSize is the deflate window a gzip checkpoint carries: the last 32 KiB
// of uncompressed output before the checkpoint.
const WindowSize = 1 << 15

const (
	zinfoHeaderSize    = 4 + 8                  // checkpoint count, span size
	checkpointSize     = 8 + 8 + 1 + WindowSize // in, out, bits, window
	tarZinfoVersion    = 2
	legacyHeaderLength = 10 // gzip header length assumed for v1 blobs
)

// Checkpoint is a place where inflation can resume: a deflate block
// boundary, or the end of a gzip member header.
type Checkpoint struct {
	In     int64 // compressed offset of the first whole byte after the boundary
	Out    int64 // uncompressed offset of the boundary
	Bits   uint8 // unused bits of the byte at In-1 that belong to the next block
	Window []byte
}

// GzipCheckpoints decodes the checkpoints of a gzip zTOC, with the span size
// recorded in the blob. The windows alias c.Checkpoints.
func (c *CompressionInfo) GzipCheckpoints() (checkpoints []Checkpoint, spanSize int64, err error) {
	if c.CompressionAlgorithm != Gzip && c.CompressionAlgorithm != "" {
		return nil, 0, fmt.Errorf("%w: %s layers have no gzip checkpoints", ErrInvalidZtoc, c.CompressionAlgorithm)
	}
	g, err := decodeGzipZinfo(c.Checkpoints)
	if err != nil {
		return nil, 0, err
	}
	for id := range SpanID(g.count()) {
		checkpoints = append(checkpoints, g.checkpoint(id))
	}
	return checkpoints, g.spanSize, nil
}

// zinfo is the span geometry of one layer, decoded from the checkpoints
// field (docs/format.md sections 3.5 and 4).
type zinfo interface {
	maxSpanID() SpanID
	startCompressed(SpanID) int64
	endCompressed(id SpanID, compressedSize int64) int64
	startUncompressed(SpanID) int64
	endUncompressed(id SpanID, uncompressedSize int64) int64
	spanOf(uncompressedOffset int64) SpanID
}

// gzipZinfo is a decoded gzip checkpoints blob. It keeps the blob and reads
// records in place, so that decoding a zTOC does not copy its windows.
type gzipZinfo struct {
	spanSize    int64
	checkpoints []byte // N records of checkpointSize bytes
	legacy      bool   // checkpoint 0 was not serialised (v1 blob)
}

func (g *gzipZinfo) count() int {
	n := len(g.checkpoints) / checkpointSize
	if g.legacy {
		n++
	}
	return n
}

func (g *gzipZinfo) record(id SpanID) []byte {
	i := int(id)
	if g.legacy {
		i--
	}
	return g.checkpoints[i*checkpointSize : (i+1)*checkpointSize]
}

func (g *gzipZinfo) checkpoint(id SpanID) Checkpoint {
	if g.legacy && id == 0 {
		return Checkpoint{In: legacyHeaderLength, Window: make([]byte, WindowSize)}
	}
	r := g.record(id)
	return Checkpoint{
		In:     int64(binary.LittleEndian.Uint64(r[0:8])),
		Out:    int64(binary.LittleEndian.Uint64(r[8:16])),
		Bits:   r[16],
		Window: r[17:],
	}
}

func (g *gzipZinfo) in(id SpanID) int64 {
	if g.legacy && id == 0 {
		return legacyHeaderLength
	}
	return int64(binary.LittleEndian.Uint64(g.record(id)[0:8]))
}

func (g *gzipZinfo) out(id SpanID) int64 {
	if g.legacy && id == 0 {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(g.record(id)[8:16]))
}

func (g *gzipZinfo) bits(id SpanID) uint8 {
	if g.legacy && id == 0 {
		return 0
	}
	return g.record(id)[16]
}

func (g *gzipZinfo) maxSpanID() SpanID { return SpanID(g.count() - 1) }

func (g *gzipZinfo) startCompressed(id SpanID) int64 {
	if g.bits(id) != 0 {
		return g.in(id) - 1
	}
	return g.in(id)
}

func (g *gzipZinfo) endCompressed(id SpanID, compressedSize int64) int64 {
	if id >= g.maxSpanID() {
		return compressedSize
	}
	return g.in(id + 1)
}

func (g *gzipZinfo) startUncompressed(id SpanID) int64 { return g.out(id) }

func (g *gzipZinfo) endUncompressed(id SpanID, uncompressedSize int64) int64 {
	if id >= g.maxSpanID() {
		return uncompressedSize
	}
	return g.out(id + 1)
}

// spanOf returns the last span starting at or before off, as soci's linear
// scan does.
func (g *gzipZinfo) spanOf(off int64) SpanID {
	var id SpanID
	for i := SpanID(1); i <= g.maxSpanID(); i++ {
		if g.out(i) > off {
			break
		}
		id = i
	}
	return id
}

// decodeGzipZinfo parses a checkpoints blob. Like soci, it accepts the current
// form (12 + 32785·N bytes) and the legacy one without checkpoint 0.
func decodeGzipZinfo(b []byte) (*gzipZinfo, error) {
	if len(b) < zinfoHeaderSize {
		return nil, fmt.Errorf("%w: gzip checkpoints: %d bytes", ErrInvalidZtoc, len(b))
	}
	n := int64(int32(binary.LittleEndian.Uint32(b[0:4])))
	g := &gzipZinfo{
		spanSize:    int64(binary.LittleEndian.Uint64(b[4:12])),
		checkpoints: b[zinfoHeaderSize:],
	}
	records := int64(len(g.checkpoints))
	switch {
	case n < 1:
		return nil, fmt.Errorf("%w: gzip checkpoints: count %d", ErrInvalidZtoc, n)
	case records == n*checkpointSize:
	case records == (n-1)*checkpointSize:
		g.legacy = true
	default:
		return nil, fmt.Errorf("%w: gzip checkpoints: %d bytes for %d checkpoints", ErrInvalidZtoc, len(b), n)
	}
	return g, nil
}

// appendHeader appends the blob's header: the checkpoint count and the span
// size.
func (w *zinfoWriter) appendHeader(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(w.n))
	return binary.LittleEndian.AppendUint64(b, uint64(w.spanSize))
}

// tarZinfo is the geometry of an uncompressed layer: fixed spans of the file.
type tarZinfo struct {
	spanSize int64
	size     int64
}

func (t *tarZinfo) maxSpanID() SpanID {
	id := SpanID(t.size / t.spanSize)
	if t.size%t.spanSize == 0 {
		id--
	}
	return id
}

func (t *tarZinfo) startCompressed(id SpanID) int64 { return int64(id) * t.spanSize }

func (t *tarZinfo) endCompressed(id SpanID, compressedSize int64) int64 {
	if id >= t.maxSpanID() {
		return compressedSize
	}
	return int64(id+1) * t.spanSize
}

func (t *tarZinfo) startUncompressed(id SpanID) int64 { return t.startCompressed(id) }

func (t *tarZinfo) endUncompressed(id SpanID, uncompressedSize int64) int64 {
	if id >= t.maxSpanID() {
		return uncompressedSize
	}
	return int64(id+1) * t.spanSize
}

func (t *tarZinfo) spanOf(off int64) SpanID { return SpanID(off / t.spanSize) }

// TarZinfo table slots (zinfo.fbs).
const (
	tarZinfoSlotVersion = iota
	tarZinfoSlotSpanSize
	tarZinfoSlotSize
	tarZinfoSlots
)

// encodeTarZinfo writes the TarZinfo flatbuffer in soci's builder order.
func encodeTarZinfo(spanSize, size int64) []byte {
	b := flatbuffers.NewBuilder(0)
	b.StartObject(tarZinfoSlots)
	b.PrependInt32Slot(tarZinfoSlotVersion, tarZinfoVersion, 0)
	b.PrependInt64Slot(tarZinfoSlotSpanSize, spanSize, 0)
	b.PrependInt64Slot(tarZinfoSlotSize, size, 0)
	b.Finish(b.EndObject())
	return b.FinishedBytes()
}

func decodeTarZinfo(b []byte) (*tarZinfo, error) {
	t, err := rootTable(b)
	if err != nil {
		return nil, fmt.Errorf("tar checkpoints: %w", err)
	}
	var z tarZinfo
	if z.spanSize, err = t.int64(tarZinfoSlotSpanSize); err != nil {
		return nil, fmt.Errorf("tar checkpoints: %w", err)
	}
	if z.size, err = t.int64(tarZinfoSlotSize); err != nil {
		return nil, fmt.Errorf("tar checkpoints: %w", err)
	}
	if z.spanSize <= 0 || z.size < 0 {
		return nil, fmt.Errorf("%w: tar checkpoints: span size %d, size %d", ErrInvalidZtoc, z.spanSize, z.size)
	}
	return &z, nil
}

package ztoc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"time"

	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/opencontainers/go-digest"
)

// Table slots of ztoc.fbs (docs/format.md section 2.1).
const (
	ztocSlotVersion = iota
	ztocSlotBuildToolIdentifier
	ztocSlotCompressedArchiveSize
	ztocSlotUncompressedArchiveSize
	ztocSlotTOC
	ztocSlotCompressionInfo
	ztocSlots
)

const (
	tocSlotMetadata = iota
	tocSlots
)

const (
	fileSlotName = iota
	fileSlotType
	fileSlotUncompressedOffset
	fileSlotUncompressedSize
	fileSlotLinkname
	fileSlotMode
	fileSlotUID
	fileSlotGID
	fileSlotUname
	fileSlotGname
	fileSlotModTime
	fileSlotDevmajor
	fileSlotDevminor
	fileSlotXattrs
	fileSlots
)

const (
	xattrSlotKey = iota
	xattrSlotValue
	xattrSlots
)

const (
	compressionSlotAlgorithm = iota
	compressionSlotMaxSpanID
	compressionSlotSpanDigests
	compressionSlotCheckpoints
	compressionSlots
)

// The CompressionAlgorithm enum; Gzip is the schema default.
const (
	fbGzip         byte = 1
	fbUncompressed byte = 2
)

// Marshal encodes z as soci's flatbuffer. The builder calls follow soci's
// order exactly (docs/format.md section 2.2): the Go builder writes back to
// front and shares vtables, so the order decides the bytes.
//
// Modification times are written in UTC, the form soci writes when run with
// TZ=UTC, so the output does not depend on the local time zone.
//
// Marshal allocates the output once, at its exact size. To write a large
// zTOC without holding a second copy of its checkpoints, use WriteTo.
func Marshal(z *Ztoc) ([]byte, error) {
	e, err := encode(z)
	if err != nil {
		return nil, err
	}
	out := bytes.NewBuffer(make([]byte, 0, e.size()))
	if _, err := e.writeTo(out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// WriteTo writes the bytes Marshal returns to w. Besides z it holds only
// the encoded TOC and span digests: the checkpoints, most of a gzip zTOC,
// go to w straight from z.Checkpoints.
func (z *Ztoc) WriteTo(w io.Writer) (int64, error) {
	e, err := encode(z)
	if err != nil {
		return 0, err
	}
	return e.writeTo(w)
}

// checkpointData is a checkpoints field as encodePieces takes it: a blob's
// pieces, or the checkpoints a build keeps deflated.
type checkpointData interface {
	len() int
	// tailBytes returns a copy of the last n bytes, n at most 7.
	tailBytes(n int) []byte
	// writePrefix writes the first n bytes to w.
	writePrefix(w io.Writer, n int) (int64, error)
}

// checkpointPieces is a checkpoints field held as consecutive pieces, so
// that a freshly built zTOC can be written without first copying its
// checkpoint chunks into one blob.
type checkpointPieces [][]byte

func (p checkpointPieces) len() int {
	n := 0
	for _, piece := range p {
		n += len(piece)
	}
	return n
}

// from returns a copy of the bytes from offset off to the end.
func (p checkpointPieces) from(off int) []byte {
	out := make([]byte, 0, max(p.len()-off, 0))
	for _, piece := range p {
		if off >= len(piece) {
			off -= len(piece)
			continue
		}
		out = append(out, piece[off:]...)
		off = 0
	}
	return out
}

func (p checkpointPieces) tailBytes(n int) []byte { return p.from(p.len() - n) }

func (p checkpointPieces) writePrefix(w io.Writer, n int) (int64, error) {
	var written int64
	for _, piece := range p {
		if n == 0 {
			break
		}
		piece = piece[:min(n, len(piece))]
		m, err := w.Write(piece)
		written += int64(m)
		if err != nil {
			return written, err
		}
		n -= len(piece)
	}
	return written, nil
}

// encodedZtoc is a zTOC flatbuffer without most of its checkpoint bytes.
//
// The builder is given only the last len(checkpoints)%8 bytes of the
// checkpoints vector. Leaving out a multiple of 8 bytes changes no
// alignment the builder computes, so the buffer differs from the real one
// only by the missing bytes and by the offsets that span them: those from
// the root table, built after the vector, to the TOC and strings built
// before it, and a table's offset to a shared vtable built before it.
// encode adds the missing length to those offsets; writeTo puts the
// missing bytes back.
type encodedZtoc struct {
	buf         []byte         // the flatbuffer, with the vector cut short
	vector      int            // position in buf of the checkpoints vector's length
	checkpoints checkpointData // the whole vector's data
	length      int            // bytes in checkpoints
	missing     int            // bytes of checkpoints missing from buf
}

func (e *encodedZtoc) size() int { return len(e.buf) + e.missing }

func (e *encodedZtoc) writeTo(w io.Writer) (int64, error) {
	var length [flatbuffers.SizeUOffsetT]byte
	binary.LittleEndian.PutUint32(length[:], uint32(e.length))
	var written int64
	for _, part := range [][]byte{e.buf[:e.vector], length[:], nil, e.buf[e.vector+len(length):]} {
		var n int64
		var err error
		if part == nil {
			n, err = e.checkpoints.writePrefix(w, e.missing)
		} else {
			var m int
			m, err = w.Write(part)
			n = int64(m)
		}
		written += n
		if err != nil {
			return written, fmt.Errorf("write ztoc: %w", err)
		}
	}
	return written, nil
}

func encode(z *Ztoc) (*encodedZtoc, error) {
	return encodePieces(z, fileChunks{z.FileMetadata}, checkpointPieces{z.Checkpoints})
}

// encodePieces encodes z with files in place of z.FileMetadata and
// checkpoints in place of z.Checkpoints.
func encodePieces(z *Ztoc, files tocEntries, checkpoints checkpointData) (*encodedZtoc, error) {
	var algorithm byte
	switch z.CompressionAlgorithm {
	case "":
	case Gzip:
		algorithm = fbGzip
	case Uncompressed:
		algorithm = fbUncompressed
	default:
		return nil, fmt.Errorf("marshal ztoc: unknown compression algorithm %q", z.CompressionAlgorithm)
	}
	length := checkpoints.len()
	e := &encodedZtoc{checkpoints: checkpoints, length: length, missing: length &^ 7}

	// Sized for the whole buffer up front: a growing builder copies
	// itself at every doubling.
	b := flatbuffers.NewBuilder(encodedSizeBound(z, files, length-e.missing))
	version := b.CreateString(z.Version)
	tool := b.CreateString(z.BuildToolIdentifier)
	toc := marshalTOC(b, files)

	vector := b.CreateByteVector(checkpoints.tailBytes(length - e.missing))
	digests := make([]flatbuffers.UOffsetT, len(z.SpanDigests))
	for i, d := range z.SpanDigests {
		digests[i] = b.CreateString(d.String())
	}
	spanDigests := prependOffsets(b, digests)

	b.StartObject(compressionSlots)
	b.PrependInt32Slot(compressionSlotMaxSpanID, int32(z.MaxSpanID), 0)
	b.PrependUOffsetTSlot(compressionSlotSpanDigests, spanDigests, 0)
	b.PrependUOffsetTSlot(compressionSlotCheckpoints, vector, 0)
	if algorithm != 0 {
		b.PrependByteSlot(compressionSlotAlgorithm, algorithm, fbGzip)
	}
	compressionInfo := b.EndObject()

	b.StartObject(ztocSlots)
	b.PrependUOffsetTSlot(ztocSlotVersion, version, 0)
	b.PrependUOffsetTSlot(ztocSlotBuildToolIdentifier, tool, 0)
	b.PrependUOffsetTSlot(ztocSlotTOC, toc, 0)
	b.PrependInt64Slot(ztocSlotCompressedArchiveSize, z.CompressedArchiveSize, 0)
	b.PrependInt64Slot(ztocSlotUncompressedArchiveSize, z.UncompressedArchiveSize, 0)
	b.PrependUOffsetTSlot(ztocSlotCompressionInfo, compressionInfo, 0)
	b.Finish(b.EndObject())

	e.buf = b.FinishedBytes()
	e.vector = len(e.buf) - int(vector)
	if err := e.fixOffsetsAcrossVector(ztocSlotCompressionInfo); err != nil {
		return nil, fmt.Errorf("marshal ztoc: %w", err)
	}
	return e, nil
}

// fixOffsetsAcrossVector adds the missing checkpoint bytes to every offset
// in the tables built after the checkpoints vector that points past it.
// Those are the root table and the compression info table it points to;
// everything else the builder wrote after the vector is span digests, which
// point only to each other.
func (e *encodedZtoc) fixOffsetsAcrossVector(compressionInfoSlot int) error {
	if e.missing == 0 {
		return nil
	}
	root, err := rootTable(e.buf)
	if err != nil {
		return err
	}
	infoField := root.field(compressionInfoSlot)
	info, err := tableAt(e.buf, infoField+e.uoffsetAt(infoField))
	if err != nil {
		return err
	}
	for _, t := range []struct {
		table       fbTable
		offsetSlots []int
	}{
		{root, []int{ztocSlotVersion, ztocSlotBuildToolIdentifier, ztocSlotTOC, ztocSlotCompressionInfo}},
		{info, []int{compressionSlotSpanDigests, compressionSlotCheckpoints}},
	} {
		// A table's vtable is at its position minus a signed offset; it
		// is past the vector when the builder shared an older vtable.
		if int(t.table.vtable) > e.vector {
			soff := int32(binary.LittleEndian.Uint32(e.buf[t.table.pos:]))
			binary.LittleEndian.PutUint32(e.buf[t.table.pos:], uint32(soff-int32(e.missing)))
		}
		for _, slot := range t.offsetSlots {
			if at := t.table.field(slot); at != 0 && int(at+e.uoffsetAt(at)) > e.vector {
				binary.LittleEndian.PutUint32(e.buf[at:], uint32(e.uoffsetAt(at)+uint64(e.missing)))
			}
		}
	}
	return nil
}

// uoffsetAt reads the unsigned offset at a position of buf, which the
// builder has just written and so is in range.
func (e *encodedZtoc) uoffsetAt(at uint64) uint64 {
	return uint64(binary.LittleEndian.Uint32(e.buf[at:]))
}

// encodedSizeBound is an upper bound on the builder's output for z with
// checkpointBytes of checkpoints, a little above the real size. The builder
// is allocated at this size, on top of the zTOC being encoded, so the bound
// counts what each entry really takes: its strings at their padded size,
// only the integer fields that are not zero, and the entries' vtables once
// per layout, as the builder shares equal vtables.
func encodedSizeBound(z *Ztoc, files tocEntries, checkpointBytes int) int {
	const (
		vectorOverhead = 4 + 4 // length, padding
		// soffset, the seven offset fields, padding before the three
		// groups of int64s
		fileTableBase = 4 + 7*4 + 3*4
		fileVtable    = 4 + 2*fileSlots + 2
		xattrTable    = 4 + 2*4 + 4 + 2*xattrSlots + 2
		fixed         = 512 // root, TOC and compression info tables, vtables, root offset
	)
	n := fixed + stringSize(len(z.Version)) + stringSize(len(z.BuildToolIdentifier))
	n += vectorOverhead + checkpointBytes
	n += vectorOverhead + 4*len(z.SpanDigests)
	for _, d := range z.SpanDigests {
		n += stringSize(len(d))
	}
	n += vectorOverhead + files.len()*(4+fileTableBase+vectorOverhead)
	// A file table's layout is set by which integer fields it has and by
	// the 8-byte alignment of its start, which is one of two.
	var layouts [1 << 7]bool
	var modTime []byte
	for f := range files.all() {
		modTime = appendModTimeText(modTime[:0], f.ModTime)
		n += stringSize(len(f.Name)) + stringSize(len(f.Type)) + stringSize(len(f.Linkname)) +
			stringSize(len(f.Uname)) + stringSize(len(f.Gname)) + stringSize(len(modTime))
		var layout int
		for bit, v := range [...]int64{f.UncompressedOffset, f.UncompressedSize, f.Mode, f.Devmajor, f.Devminor} {
			if v != 0 {
				n += 8
				layout |= 1 << bit
			}
		}
		for bit, v := range [...]int{f.UID, f.GID} {
			if v != 0 {
				n += 4
				layout |= 1 << (5 + bit)
			}
		}
		if !layouts[layout] {
			layouts[layout] = true
			n += 2 * fileVtable
		}
		for k, v := range f.PAXHeaders {
			n += 4 + xattrTable + stringSize(len(k)) + stringSize(len(v))
		}
	}
	return n
}

// stringSize is the bytes the builder writes for a string of n bytes: its
// length, its bytes and a NUL, padded to 4 bytes.
func stringSize(n int) int {
	return 4 + (n+1+3)&^3
}

// marshalTOC writes the entries from last to first, as soci does.
func marshalTOC(b *flatbuffers.Builder, files tocEntries) flatbuffers.UOffsetT {
	entries := make([]flatbuffers.UOffsetT, files.len())
	i := len(entries)
	release, _ := files.(interface{ release(c int) })
	for c := files.chunks() - 1; c >= 0; c-- {
		chunk := files.chunk(c)
		for j := len(chunk) - 1; j >= 0; j-- {
			i--
			entries[i] = marshalFile(b, &chunk[j])
		}
		if release != nil {
			release.release(c)
		}
	}
	metadata := prependOffsets(b, entries)
	b.StartObject(tocSlots)
	b.PrependUOffsetTSlot(tocSlotMetadata, metadata, 0)
	return b.EndObject()
}

func marshalFile(b *flatbuffers.Builder, f *FileMetadata) flatbuffers.UOffsetT {
	name := b.CreateString(f.Name)
	typ := b.CreateString(f.Type)
	linkname := b.CreateString(f.Linkname)
	uname := b.CreateString(f.Uname)
	gname := b.CreateString(f.Gname)
	modTime := b.CreateString(modTimeText(f.ModTime))

	keys := make([]string, 0, len(f.PAXHeaders))
	for k := range f.PAXHeaders {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	records := make([]flatbuffers.UOffsetT, len(keys))
	for i, k := range keys {
		key := b.CreateString(k)
		value := b.CreateString(f.PAXHeaders[k])
		b.StartObject(xattrSlots)
		b.PrependUOffsetTSlot(xattrSlotKey, key, 0)
		b.PrependUOffsetTSlot(xattrSlotValue, value, 0)
		records[i] = b.EndObject()
	}
	xattrs := prependOffsets(b, records)

	b.StartObject(fileSlots)
	b.PrependUOffsetTSlot(fileSlotName, name, 0)
	b.PrependUOffsetTSlot(fileSlotType, typ, 0)
	b.PrependInt64Slot(fileSlotUncompressedOffset, f.UncompressedOffset, 0)
	b.PrependInt64Slot(fileSlotUncompressedSize, f.UncompressedSize, 0)
	b.PrependUOffsetTSlot(fileSlotLinkname, linkname, 0)
	b.PrependInt64Slot(fileSlotMode, f.Mode, 0)
	b.PrependUint32Slot(fileSlotUID, uint32(f.UID), 0)
	b.PrependUint32Slot(fileSlotGID, uint32(f.GID), 0)
	b.PrependUOffsetTSlot(fileSlotUname, uname, 0)
	b.PrependUOffsetTSlot(fileSlotGname, gname, 0)
	b.PrependUOffsetTSlot(fileSlotModTime, modTime, 0)
	b.PrependInt64Slot(fileSlotDevmajor, f.Devmajor, 0)
	b.PrependInt64Slot(fileSlotDevminor, f.Devminor, 0)
	b.PrependUOffsetTSlot(fileSlotXattrs, xattrs, 0)
	return b.EndObject()
}

// prependOffsets writes a vector of uoffsets, elements prepended from last
// to first.
func prependOffsets(b *flatbuffers.Builder, offsets []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	b.StartVector(flatbuffers.SizeUOffsetT, len(offsets), flatbuffers.SizeUOffsetT)
	for i := len(offsets) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offsets[i])
	}
	return b.EndVector(len(offsets))
}

// Unmarshal decodes a zTOC with soci's reader rules (docs/format.md section
// 2.3): entries are sorted by uncompressed offset, TarHeaderOffset is derived
// from the entry before, and an entry overlapping the one before gives
// ErrInvalidTOCEntry. The checkpoints are validated against MaxSpanID and the
// span digests, which soci's snapshotter checks before using a zTOC. Any
// malformed input gives an error wrapping ErrInvalidZtoc, never a panic.
func Unmarshal(buf []byte) (*Ztoc, error) {
	z, err := unmarshal(buf)
	if err != nil {
		return nil, fmt.Errorf("unmarshal ztoc: %w", err)
	}
	return z, nil
}

func unmarshal(buf []byte) (*Ztoc, error) {
	root, err := rootTable(buf)
	if err != nil {
		return nil, err
	}
	z := &Ztoc{}
	if z.Version, err = root.string(ztocSlotVersion); err != nil {
		return nil, err
	}
	if z.BuildToolIdentifier, err = root.string(ztocSlotBuildToolIdentifier); err != nil {
		return nil, err
	}
	if z.CompressedArchiveSize, err = root.int64(ztocSlotCompressedArchiveSize); err != nil {
		return nil, err
	}
	if z.UncompressedArchiveSize, err = root.int64(ztocSlotUncompressedArchiveSize); err != nil {
		return nil, err
	}
	if toc, ok, err := root.table(ztocSlotTOC); err != nil {
		return nil, err
	} else if ok {
		if z.FileMetadata, err = unmarshalTOC(toc); err != nil {
			return nil, err
		}
	}
	info, ok, err := root.table(ztocSlotCompressionInfo)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: no compression info", ErrInvalidZtoc)
	}
	if err := unmarshalCompressionInfo(info, &z.CompressionInfo); err != nil {
		return nil, err
	}
	if _, err := z.zinfo(); err != nil {
		return nil, err
	}
	return z, nil
}

func unmarshalCompressionInfo(t fbTable, c *CompressionInfo) error {
	algorithm, err := t.byte(compressionSlotAlgorithm, fbGzip)
	if err != nil {
		return err
	}
	switch algorithm {
	case fbGzip:
		c.CompressionAlgorithm = Gzip
	case fbUncompressed:
		c.CompressionAlgorithm = Uncompressed
	default:
		return fmt.Errorf("%w: unknown compression algorithm %d", ErrInvalidZtoc, algorithm)
	}
	maxSpanID, err := t.int32(compressionSlotMaxSpanID)
	if err != nil {
		return err
	}
	c.MaxSpanID = SpanID(maxSpanID)
	digests, err := t.vector(compressionSlotSpanDigests)
	if err != nil {
		return err
	}
	c.SpanDigests = make([]digest.Digest, digests.n)
	for i := range c.SpanDigests {
		s, err := digests.string(i)
		if err != nil {
			return err
		}
		// soci keeps an unparsable digest as empty; verification of that
		// span then fails.
		if d, err := digest.Parse(s); err == nil {
			c.SpanDigests[i] = d
		}
	}
	checkpoints, err := t.bytes(compressionSlotCheckpoints)
	if err != nil {
		return err
	}
	c.Checkpoints = slices.Clone(checkpoints)
	return nil
}

func unmarshalTOC(t fbTable) ([]FileMetadata, error) {
	entries, err := t.vector(tocSlotMetadata)
	if err != nil {
		return nil, err
	}
	files := make([]FileMetadata, entries.n)
	for i := range files {
		e, err := entries.table(i)
		if err != nil {
			return nil, err
		}
		if err := unmarshalFile(e, &files[i]); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(files, func(a, b FileMetadata) int {
		return compareInt64(a.UncompressedOffset, b.UncompressedOffset)
	})
	if err := deriveHeaderOffsets(files); err != nil {
		return nil, err
	}
	return files, nil
}

// deriveHeaderOffsets sets TarHeaderOffset the way soci's reader does: the
// first header is at 0 and each later one follows the block-padded data of
// the entry before.
func deriveHeaderOffsets(files []FileMetadata) error {
	return fileChunks{files}.deriveHeaderOffsets()
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func unmarshalFile(t fbTable, f *FileMetadata) error {
	var (
		modTime string
		uid     uint32
		gid     uint32
		err     error
	)
	for _, field := range []struct {
		slot int
		dst  *string
	}{
		{fileSlotName, &f.Name},
		{fileSlotType, &f.Type},
		{fileSlotLinkname, &f.Linkname},
		{fileSlotUname, &f.Uname},
		{fileSlotGname, &f.Gname},
		{fileSlotModTime, &modTime},
	} {
		if *field.dst, err = t.string(field.slot); err != nil {
			return err
		}
	}
	for _, field := range []struct {
		slot int
		dst  *int64
	}{
		{fileSlotUncompressedOffset, &f.UncompressedOffset},
		{fileSlotUncompressedSize, &f.UncompressedSize},
		{fileSlotMode, &f.Mode},
		{fileSlotDevmajor, &f.Devmajor},
		{fileSlotDevminor, &f.Devminor},
	} {
		if *field.dst, err = t.int64(field.slot); err != nil {
			return err
		}
	}
	if uid, err = t.uint32(fileSlotUID); err != nil {
		return err
	}
	if gid, err = t.uint32(fileSlotGID); err != nil {
		return err
	}
	f.UID, f.GID = int(uid), int(gid)
	// soci ignores a time it cannot parse and keeps the zero time.
	_ = f.ModTime.UnmarshalText([]byte(modTime))

	records, err := t.vector(fileSlotXattrs)
	if err != nil {
		return err
	}
	f.PAXHeaders = make(map[string]string, records.n)
	for i := range records.n {
		x, err := records.table(i)
		if err != nil {
			return err
		}
		key, err := x.string(xattrSlotKey)
		if err != nil {
			return err
		}
		if f.PAXHeaders[key], err = x.string(xattrSlotValue); err != nil {
			return err
		}
	}
	return nil
}

// zinfo decodes the checkpoints and checks them against the span list, the
// checks soci's span manager makes before it serves a layer.
func (z *Ztoc) zinfo() (zinfo, error) {
	var (
		zi  zinfo
		err error
	)
	switch z.CompressionAlgorithm {
	case Gzip, "":
		zi, err = decodeGzipZinfo(z.Checkpoints)
	case Uncompressed:
		zi, err = decodeTarZinfo(z.Checkpoints)
	default:
		return nil, fmt.Errorf("%w: unknown compression algorithm %q", ErrInvalidZtoc, z.CompressionAlgorithm)
	}
	if err != nil {
		return nil, err
	}
	if zi.maxSpanID() != z.MaxSpanID {
		return nil, fmt.Errorf("%w: max span ID %d, checkpoints give %d", ErrInvalidZtoc, z.MaxSpanID, zi.maxSpanID())
	}
	if len(z.SpanDigests) != int(z.MaxSpanID)+1 {
		return nil, fmt.Errorf("%w: %d span digests for %d spans", ErrInvalidZtoc, len(z.SpanDigests), int(z.MaxSpanID)+1)
	}
	return zi, nil
}

// modTimeText is how Marshal writes a modification time. Like soci, a time
// MarshalText refuses (a year outside 0-9999) is written as "".
func modTimeText(t time.Time) string {
	return string(appendModTimeText(nil, t))
}

// appendModTimeText appends the text modTimeText returns; encodedSizeBound
// measures it without allocating a string per entry.
func appendModTimeText(b []byte, t time.Time) []byte {
	if text, err := t.UTC().AppendText(b); err == nil {
		return text
	}
	return b // AppendText returns nil on error; append nothing instead
}

package ztoc

import (
	"encoding/binary"
	"fmt"
	"iter"
	"time"
)

// tocEntries is a TOC as encodePieces takes it, in chunks that marshalTOC
// walks from last to first.
type tocEntries interface {
	len() int
	all() iter.Seq[*FileMetadata]
	chunks() int
	// chunk returns the entries of chunk c, valid until the next call.
	chunk(c int) []FileMetadata
}

// releasedFiles is a packedFiles whose chunks marshalTOC drops once it has
// encoded them, so that the TOC is not held twice, packed and encoded, at
// the end of BuildTo.
type releasedFiles struct{ *packedFiles }

func (r releasedFiles) release(c int) { r.segments[c] = nil }

// packedFiles is the TOC a build collects, each entry packed into a few
// dozen bytes (varints and its strings) in chunks of fileChunkEntries
// entries. A FileMetadata takes 200 bytes besides its strings, and a layer
// of 82,000 files would otherwise hold 21 MiB of TOC besides the 18 MiB of
// its encoding while the zTOC is written; packed, it is 6 MiB.
type packedFiles struct {
	segments [][]byte
	n        int

	nextHeader int64 // the end of the last entry, aligned to a tar block
	overlap    error // the first entry that overlaps the one before

	scratch []FileMetadata    // chunk's result
	names   map[string]string // interned on unpacking
}

// add packs f, checking as deriveHeaderOffsets does that it starts after
// the entry before.
func (p *packedFiles) add(f *FileMetadata) {
	if f.UncompressedOffset < p.nextHeader && p.overlap == nil {
		p.overlap = fmt.Errorf("%w: %q at offset %d overlaps the entry before (ends at %d)",
			ErrInvalidTOCEntry, f.Name, f.UncompressedOffset, p.nextHeader)
	}
	p.nextHeader = alignToTarBlock(f.UncompressedOffset + f.UncompressedSize)
	if p.n%fileChunkEntries == 0 {
		p.segments = append(p.segments, nil)
	}
	s := p.segments[len(p.segments)-1]
	for _, str := range [...]string{f.Name, f.Type, f.Linkname, f.Uname, f.Gname} {
		s = appendString(s, str)
	}
	for _, v := range [...]int64{f.UncompressedOffset, f.UncompressedSize, f.Mode, int64(f.UID), int64(f.GID),
		f.Devmajor, f.Devminor, f.ModTime.Unix(), int64(f.ModTime.Nanosecond())} {
		s = binary.AppendVarint(s, v)
	}
	if f.PAXHeaders == nil {
		s = binary.AppendUvarint(s, 0)
	} else {
		s = binary.AppendUvarint(s, uint64(len(f.PAXHeaders))+1)
		for k, v := range f.PAXHeaders {
			s = appendString(appendString(s, k), v)
		}
	}
	p.segments[len(p.segments)-1] = s
	p.n++
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func (p *packedFiles) len() int    { return p.n }
func (p *packedFiles) chunks() int { return len(p.segments) }

func (p *packedFiles) chunk(c int) []FileMetadata {
	p.scratch = p.scratch[:0]
	s := p.segments[c]
	for len(s) > 0 {
		var f FileMetadata
		s = p.unpack(s, &f)
		p.scratch = append(p.scratch, f)
	}
	return p.scratch
}

func (p *packedFiles) all() iter.Seq[*FileMetadata] {
	return func(yield func(*FileMetadata) bool) {
		for c := range p.segments {
			files := p.chunk(c)
			for i := range files {
				if !yield(&files[i]) {
					return
				}
			}
		}
	}
}

// unpack decodes one entry of s, which add wrote, and returns the rest.
func (p *packedFiles) unpack(s []byte, f *FileMetadata) []byte {
	var strs [5]string
	for i := range strs {
		strs[i], s = readString(s)
	}
	f.Name, f.Type, f.Linkname = strs[0], p.intern(strs[1]), strs[2]
	f.Uname, f.Gname = p.intern(strs[3]), p.intern(strs[4])
	var ints [9]int64
	for i := range ints {
		v, n := binary.Varint(s)
		ints[i], s = v, s[n:]
	}
	f.UncompressedOffset, f.UncompressedSize, f.Mode = ints[0], ints[1], ints[2]
	f.UID, f.GID, f.Devmajor, f.Devminor = int(ints[3]), int(ints[4]), ints[5], ints[6]
	f.ModTime = time.Unix(ints[7], ints[8])
	records, n := binary.Uvarint(s)
	s = s[n:]
	if records > 0 {
		f.PAXHeaders = make(map[string]string, records-1)
		for range records - 1 {
			var k, v string
			k, s = readString(s)
			v, s = readString(s)
			f.PAXHeaders[k] = v
		}
	}
	return s
}

func readString(s []byte) (string, []byte) {
	n, k := binary.Uvarint(s)
	return string(s[k : k+int(n)]), s[k+int(n):]
}

func (p *packedFiles) intern(s string) string {
	if v, ok := p.names[s]; ok {
		return v
	}
	if p.names == nil {
		p.names = make(map[string]string)
	}
	p.names[s] = s
	return s
}

// unpackAll returns the entries in one slice, with their TarHeaderOffset
// derived, and drops the packed chunks.
func (p *packedFiles) unpackAll() ([]FileMetadata, error) {
	if p.n == 0 {
		return nil, nil
	}
	files := make([]FileMetadata, 0, p.n)
	for c := range p.segments {
		files = append(files, p.chunk(c)...)
		p.segments[c] = nil
	}
	p.scratch = nil
	if err := deriveHeaderOffsets(files); err != nil {
		return nil, err
	}
	return files, nil
}

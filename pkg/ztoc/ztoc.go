// Package ztoc builds, encodes and reads zTOCs: the per-layer table of
// contents and compression checkpoints of a SOCI index, byte-identical to
// soci-snapshotter v0.16.1.
//
// Build reads a layer once, as a stream, and produces the zTOC together with
// the digest and size of the layer blob. Marshal and Unmarshal convert a zTOC
// to and from its flatbuffers form. ExtractFile and ReadSpan read file data
// back through the checkpoints, fetching only the spans they need and
// verifying each span's digest.
package ztoc

import (
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// Version09 is the only zTOC format version soci-snapshotter writes.
const Version09 = "0.9"

// DefaultBuildToolIdentifier is what soci's CLI and library write.
const DefaultBuildToolIdentifier = "AWS SOCI CLI v0.2"

// DefaultSpanSize is soci's default span size: 4 MiB of uncompressed data.
const DefaultSpanSize int64 = 1 << 22

// Compression is the compression of a layer, as soci names it.
type Compression string

const (
	Gzip         Compression = "gzip"
	Uncompressed Compression = "uncompressed"
)

// SpanID numbers the spans of a layer from 0.
type SpanID int32

// Ztoc is a decoded zTOC.
type Ztoc struct {
	TOC
	CompressionInfo

	Version                 string
	BuildToolIdentifier     string
	CompressedArchiveSize   int64
	UncompressedArchiveSize int64
}

// TOC lists every tar entry of the layer in tar order.
type TOC struct {
	FileMetadata []FileMetadata
}

// CompressionInfo holds the checkpoints ("zinfo") of a layer.
type CompressionInfo struct {
	MaxSpanID            SpanID
	SpanDigests          []digest.Digest
	Checkpoints          []byte // gzip: the zinfo blob; uncompressed: a TarZinfo flatbuffer
	CompressionAlgorithm Compression
}

// FileMetadata is one tar entry, as Go's archive/tar reports it.
type FileMetadata struct {
	Name               string
	Type               string // reg, dir, symlink, hardlink, char, block, fifo
	UncompressedOffset int64  // first byte of the entry's data in the tar stream
	UncompressedSize   int64
	TarHeaderOffset    int64 // derived on read, never serialised
	Linkname           string
	Mode               int64
	UID                int
	GID                int
	Uname              string
	Gname              string
	ModTime            time.Time // written as UTC text, as soci run with TZ=UTC
	Devmajor           int64
	Devminor           int64
	PAXHeaders         map[string]string // every PAX record of the entry
}

// Errors callers may test for with errors.Is.
var (
	// ErrCorruptLayer wraps every failure to decode the layer: bad gzip
	// framing or data, a CRC mismatch, truncation, trailing bytes after the
	// last gzip member, or a malformed tar stream.
	ErrCorruptLayer = errors.New("corrupt layer")
	// ErrDigestMismatch is wrapped by *DigestMismatchError.
	ErrDigestMismatch = errors.New("layer digest mismatch")
	// ErrInvalidZtoc is returned for bytes that do not decode as a zTOC, and
	// for a zTOC whose checkpoints do not agree with its span list.
	ErrInvalidZtoc = errors.New("invalid ztoc")
	// ErrInvalidTOCEntry is soci's error for a TOC entry that overlaps the
	// header or data of the entry before it.
	ErrInvalidTOCEntry = errors.New("invalid toc entry")
	// ErrInvalidSpanSize is returned by Build for a span size it cannot use.
	ErrInvalidSpanSize = errors.New("invalid span size")
	// ErrSpanDigestMismatch means bytes read from the layer do not hash to
	// the span digest recorded in the zTOC.
	ErrSpanDigestMismatch = errors.New("span digest mismatch")
	// ErrFileNotFound is returned by ExtractFile for a name not in the TOC.
	ErrFileNotFound = errors.New("file not found in ztoc")
	// ErrNotRegularFile is returned by ExtractFile for an entry that has no
	// data of its own: a directory, a symbolic link, a device or a fifo.
	ErrNotRegularFile = errors.New("not a regular file")
	// ErrUnservableLayer is returned by Build for a layer that decodes but
	// whose zTOC readers (ours and soci's) would refuse, or would serve
	// wrong bytes from: a GNU sparse file in PAX form (GNU.sparse.* records,
	// versions 0.0, 0.1 and 1.0), whose data in the tar stream is not its
	// contents, or an entry overlapping the one before it. soci's builder
	// writes such a zTOC; Build writes nothing, and an index can be built
	// without the layer.
	ErrUnservableLayer = errors.New("layer cannot be served through a ztoc")
)

// UnsupportedEntryError reports a tar entry type soci refuses to index
// (anything but regular files, links, devices, directories and fifos), such
// as a PAX global header ('g'), a contiguous file ('7') or an old GNU sparse
// file ('S'). Like soci, Build fails on it rather than skipping the entry.
type UnsupportedEntryError struct {
	Name     string
	Typeflag byte
}

func (e *UnsupportedEntryError) Error() string {
	return fmt.Sprintf("unsupported input tar entry %q (type %q)", e.Name, e.Typeflag)
}

// DigestMismatchError is returned by Build when the layer does not hash to
// the digest given with WithExpectedDigest.
type DigestMismatchError struct {
	Expected, Actual digest.Digest
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("layer digest mismatch: expected %s, read %s", e.Expected, e.Actual)
}

func (e *DigestMismatchError) Unwrap() error { return ErrDigestMismatch }

// fileType maps a tar typeflag, as normalised by archive/tar, to soci's type
// name. ok is false for every type soci refuses.
func fileType(typeflag byte) (name string, ok bool) {
	switch typeflag {
	case '0':
		return "reg", true
	case '1':
		return "hardlink", true
	case '2':
		return "symlink", true
	case '3':
		return "char", true
	case '4':
		return "block", true
	case '5':
		return "dir", true
	case '6':
		return "fifo", true
	}
	return "", false
}

// alignToTarBlock rounds off up to the next multiple of the 512-byte tar
// block.
func alignToTarBlock(off int64) int64 {
	return (off + 511) &^ 511
}

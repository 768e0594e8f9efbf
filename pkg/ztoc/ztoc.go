// Package ztoc builds, encodes and reads zTOCs: the per-layer table of
// contents and compression checkpoints of a SOCI index, byte-identical to
// soci-snapshotter v0.16.1 (see soci-format.md sections 2-5).
package ztoc

import (
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
	Checkpoints          []byte
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

package inflate

import (
	"errors"
	"fmt"
)

// Sentinel errors classify malformed input. Every decoding error is an
// *Error that wraps one of them (or io.ErrUnexpectedEOF for truncated input),
// so callers can test with errors.Is.
var (
	// ErrHeader reports a gzip member header that is not valid: bad magic,
	// reserved flags set, or a header CRC mismatch.
	ErrHeader = errors.New("invalid gzip header")
	// ErrMethod reports a gzip member whose compression method is not deflate.
	ErrMethod = errors.New("unsupported compression method")
	// ErrCorrupt reports invalid deflate data: bad block type, bad stored
	// block length, invalid Huffman code or a distance too far back.
	ErrCorrupt = errors.New("corrupt deflate data")
	// ErrChecksum reports a gzip trailer whose CRC-32 or ISIZE does not match
	// the decompressed data.
	ErrChecksum = errors.New("gzip checksum mismatch")
	// ErrTrailingData reports bytes after the last gzip member that do not
	// start another member. zlib (and therefore soci) treats such bytes,
	// zero padding included, as a broken member and fails the layer.
	ErrTrailingData = errors.New("trailing data after last gzip member")
)

// Error describes where and why decoding failed.
type Error struct {
	// Offset is the compressed offset near which the problem was detected,
	// counted from the start of the stream (for a resume reader: from the
	// first byte of the span).
	Offset int64
	// Err is ErrHeader, ErrMethod, ErrCorrupt, ErrChecksum, ErrTrailingData
	// or io.ErrUnexpectedEOF.
	Err error
	// Reason is a short detail, worded like zlib's messages where one exists.
	Reason string
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("inflate: %v at compressed offset %d", e.Err, e.Offset)
	}
	return fmt.Sprintf("inflate: %v at compressed offset %d: %s", e.Err, e.Offset, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

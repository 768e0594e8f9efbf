package ztoc

import (
	"crypto/sha256"
	"hash"

	"github.com/opencontainers/go-digest"
)

func sha256Digest(h hash.Hash) digest.Digest {
	var sum [sha256.Size]byte
	return digest.NewDigestFromBytes(digest.SHA256, h.Sum(sum[:0]))
}

// spanCut ends the open span at end (exclusive) and opens the next at start.
// For a gzip checkpoint with bits != 0, start is end-1: the byte holding the
// boundary belongs to both spans (docs/format.md section 3.5).
type spanCut struct {
	end, start int64
}

// gzipSpanHasher computes the gzip span digests. Span boundaries are only
// known once the inflater has decoded past them, so it keeps the compressed
// chunks from the first byte that may still belong to a later span, and
// hashes up to the "safe" offset the inflater reports (nothing before the
// last block boundary can start a new span). Memory is therefore bounded by
// the inflater's read-ahead plus one deflate block.
type gzipSpanHasher struct {
	pending  [][]byte // chunks not yet fully hashed, in stream order
	base     int64    // stream offset of pending[0]
	hashedTo int64    // bytes before this are hashed or not part of a span
	open     hash.Hash
	digests  []digest.Digest
	recycle  func([]byte)
}

// add appends the next chunk of the compressed stream.
func (s *gzipSpanHasher) add(b []byte) {
	s.pending = append(s.pending, b)
}

// hashTo feeds [hashedTo, to) to the open span and moves hashedTo.
func (s *gzipSpanHasher) hashTo(to int64) {
	if to <= s.hashedTo {
		return
	}
	if s.open != nil {
		off := s.base
		for _, b := range s.pending {
			lo, hi := max(s.hashedTo, off), min(to, off+int64(len(b)))
			if lo < hi {
				s.open.Write(b[lo-off : hi-off])
			}
			off += int64(len(b))
			if off >= to {
				break
			}
		}
	}
	s.hashedTo = to
}

func (s *gzipSpanHasher) cut(c spanCut) {
	s.hashTo(c.end)
	if s.open != nil {
		s.digests = append(s.digests, sha256Digest(s.open))
		s.open.Reset()
	} else {
		s.open = sha256.New()
	}
	s.hashedTo = c.start
}

// release drops the chunks wholly before hashedTo.
func (s *gzipSpanHasher) release() {
	n := 0
	for _, b := range s.pending {
		if s.base+int64(len(b)) > s.hashedTo {
			break
		}
		s.base += int64(len(b))
		s.recycle(b)
		n++
	}
	clear(s.pending[:n])
	s.pending = s.pending[n:]
}

// finish closes the last span at the end of the stream.
func (s *gzipSpanHasher) finish() []digest.Digest {
	end := s.base
	for _, b := range s.pending {
		end += int64(len(b))
	}
	s.hashTo(end)
	if s.open != nil {
		s.digests = append(s.digests, sha256Digest(s.open))
		s.open = nil
	}
	return s.digests
}

// tarSpanHasher computes the digests of the fixed spans of an uncompressed
// layer.
type tarSpanHasher struct {
	spanSize int64
	filled   int64 // bytes in the open span
	open     hash.Hash
	digests  []digest.Digest
}

func (s *tarSpanHasher) write(b []byte) {
	for len(b) > 0 {
		if s.open == nil {
			s.open = sha256.New()
		}
		n := min(int64(len(b)), s.spanSize-s.filled)
		s.open.Write(b[:n])
		b = b[n:]
		if s.filled += n; s.filled == s.spanSize {
			s.digests = append(s.digests, sha256Digest(s.open))
			s.open, s.filled = nil, 0
		}
	}
}

func (s *tarSpanHasher) finish() []digest.Digest {
	if s.open != nil {
		s.digests = append(s.digests, sha256Digest(s.open))
		s.open = nil
	}
	return s.digests
}

package inflate

import (
	"bytes"
	"compress/gzip"
	"hash/crc32"
	"io"
	"testing"

	kflate "github.com/klauspost/compress/flate"
)

// benchSpan is the checkpoint distance of the checkpoint passes: soci's
// default span.
const benchSpan = 4 << 20

// crcReader computes the CRC-32 of what it reads, as a gzip reader must.
type crcReader struct {
	r   io.Reader
	crc uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, crc32.IEEETable, p[:n])
	return n, err
}

// BenchmarkCheckpointPass compares the two ways to find the zTOC
// checkpoints of a gzip stream in one pass: internal/inflate's boundary
// callback, and klauspost/compress's flate.WithEobCallback (v1.19+), which
// reports every non-final block end with its bit offset and window. Both
// copy the 32 KiB window at soci's checkpoints (a block end more than a
// span after the last) and compute the CRC-32 of the output. The gzip
// header of Go's writer is 10 bytes; klauspost's flate reader gets the
// deflate data after it.
func BenchmarkCheckpointPass(b *testing.B) {
	for _, level := range []int{1, 6} {
		b.Run("level"+string(rune('0'+level)), func(b *testing.B) {
			b.Run("inflate", func(b *testing.B) {
				var window [1 << 15]byte
				benchmarkDecode(b, level, func(r io.Reader) io.Reader {
					var (
						gz   *GzipReader
						last int64
					)
					gz = NewGzipReader(r, func(bd Boundary) error {
						if !bd.Final && bd.Out-last > benchSpan {
							gz.Window(&window)
							last = bd.Out
						}
						return nil
					})
					return gz
				})
			})
			b.Run("klauspost-eob", func(b *testing.B) {
				window := make([]byte, 1<<15)
				benchmarkDecode(b, level, func(r io.Reader) io.Reader {
					br := r.(*bytes.Reader)
					if _, err := br.Seek(10, io.SeekStart); err != nil {
						b.Fatal(err)
					}
					var last int64
					fr := kflate.NewReaderOpts(br, kflate.WithEobCallback(func(cp kflate.InflateCheckpoint) {
						if !cp.Final && cp.UncompressedOffset-last > benchSpan {
							copy(window, cp.Window)
							last = cp.UncompressedOffset
						}
					}))
					return &crcReader{r: fr}
				})
			})
		})
	}
}

// TestKlauspostCheckpointsMatch checks that the two passes of
// BenchmarkCheckpointPass report the same block ends, so that they do the
// same work: every non-final block end, at the same bit and output offset,
// with the same window.
func TestKlauspostCheckpointsMatch(t *testing.T) {
	data := append(genData("text", 3<<20, 1), genData("binary", 2<<20, 2)...)
	for _, level := range []int{1, 6, 9} {
		gz := gzipWith(t, data, level, 0, gzip.Header{})
		type end struct {
			bit, out int64
			window   string
		}
		var ours, theirs []end
		var gr *GzipReader
		gr = NewGzipReader(bytes.NewReader(gz), func(bd Boundary) error {
			if !bd.Header && !bd.Final {
				var w [1 << 15]byte
				gr.Window(&w)
				n := min(bd.Out, 1<<15)
				ours = append(ours, end{8*bd.In - int64(bd.Bits), bd.Out, string(w[len(w)-int(n):])})
			}
			return nil
		})
		if _, err := io.Copy(io.Discard, gr); err != nil {
			t.Fatal(err)
		}
		fr := kflate.NewReaderOpts(bytes.NewReader(gz[10:]), kflate.WithEobCallback(func(cp kflate.InflateCheckpoint) {
			// CompressedOffset is the byte the block end is in, BitOffset
			// the bits of that byte the block used.
			bit := 8*(10+cp.CompressedOffset) + int64(cp.BitOffset)
			if cp.Final {
				return
			}
			theirs = append(theirs, end{bit, cp.UncompressedOffset, string(cp.Window)})
		}))
		if _, err := io.Copy(io.Discard, fr); err != nil {
			t.Fatal(err)
		}
		if len(ours) < 3 || len(ours) != len(theirs) {
			t.Fatalf("level %d: %d block ends, klauspost %d", level, len(ours), len(theirs))
		}
		for i := range ours {
			if ours[i].out != theirs[i].out || ours[i].window != theirs[i].window {
				t.Fatalf("level %d: block end %d: out %d, klauspost %d (windows equal: %v)", level, i,
					ours[i].out, theirs[i].out, ours[i].window == theirs[i].window)
			}
			if ours[i].bit != theirs[i].bit {
				t.Fatalf("level %d: block end %d: bit %d, klauspost %d", level, i, ours[i].bit, theirs[i].bit)
			}
		}
	}
}

// BenchmarkParallel decodes with NewParallelGzipReader (GOMAXPROCS
// workers, default chunks) against NewGzipReader, both with the boundary
// callback and window copies of the checkpoint pass.
func BenchmarkParallel(b *testing.B) {
	for _, level := range []int{1, 6} {
		gz := benchInput(b, level)
		b.Run("level"+string(rune('0'+level)), func(b *testing.B) {
			for _, workers := range []int{0, 1, 2} {
				name := "sequential"
				if workers > 0 {
					name = "parallel-" + string(rune('0'+workers))
				}
				b.Run(name, func(b *testing.B) {
					var window [1 << 15]byte
					benchmarkDecode(b, level, func(r io.Reader) io.Reader {
						var (
							gz2  *GzipReader
							last int64
						)
						cb := func(bd Boundary) error {
							if !bd.Final && bd.Out-last > benchSpan {
								gz2.Window(&window)
								last = bd.Out
							}
							return nil
						}
						if workers == 0 {
							gz2 = NewGzipReader(r, cb)
						} else {
							gz2 = NewParallelGzipReader(chunker(gz, 256<<10), cb, ParallelConfig{Workers: workers})
						}
						return gz2
					})
				})
			}
		})
	}
}

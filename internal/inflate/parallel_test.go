package inflate

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"testing"
)

// chunker hands data over in pieces of n bytes, as the zTOC builder's
// reader stage does.
func chunker(data []byte, n int) func() ([]byte, error) {
	return func() ([]byte, error) {
		if len(data) == 0 {
			return nil, io.EOF
		}
		k := min(n, len(data))
		b := data[:k]
		data = data[k:]
		return b, nil
	}
}

type traced struct {
	bounds []Boundary
	// windows holds a CRC-32 of each boundary's window, not the window: a
	// stream flushed every few bytes has a boundary every few bytes, and
	// 32 KiB for each made one fuzz input take 20 s and a gigabyte.
	windows []uint32
	out     []byte
	err     error
	used    int
}

// decodeTraced decodes gz sequentially (cfg nil) or in parallel and records
// every boundary with its window's checksum.
func decodeTraced(gz []byte, cfg *ParallelConfig, piece int) traced {
	var (
		t      traced
		zr     *GzipReader
		window [windowSize]byte
	)
	onBoundary := func(b Boundary) error {
		t.bounds = append(t.bounds, b)
		zr.Window(&window)
		t.windows = append(t.windows, crc32.ChecksumIEEE(window[:]))
		return nil
	}
	if cfg == nil {
		zr = NewGzipReader(bytes.NewReader(gz), onBoundary)
	} else {
		zr = NewParallelGzipReader(chunker(gz, piece), onBoundary, *cfg)
	}
	var buf bytes.Buffer
	_, t.err = io.Copy(&buf, struct{ io.Reader }{zr})
	t.out = buf.Bytes()
	if zr.p != nil {
		t.used = zr.p.used
	}
	return t
}

func compareTraced(t *testing.T, want, got traced) {
	t.Helper()
	if (want.err == nil) != (got.err == nil) {
		t.Fatalf("error: in order %v, parallel %v", want.err, got.err)
	}
	if want.err != nil {
		return
	}
	if !bytes.Equal(want.out, got.out) {
		t.Fatalf("output differs: %d bytes in order, %d parallel", len(want.out), len(got.out))
	}
	if len(want.bounds) != len(got.bounds) {
		t.Fatalf("%d boundaries in order, %d parallel", len(want.bounds), len(got.bounds))
	}
	for i := range want.bounds {
		if want.bounds[i] != got.bounds[i] {
			t.Fatalf("boundary %d: in order %+v, parallel %+v", i, want.bounds[i], got.bounds[i])
		}
		if want.windows[i] != got.windows[i] {
			t.Fatalf("boundary %d (%+v): windows differ", i, want.bounds[i])
		}
	}
}

// TestParallelMatchesSequential forces the parallel path on small chunks
// and checks output, every boundary and every window against the decoder in
// order, over data kinds, levels, sync flushes and multi-member streams.
func TestParallelMatchesSequential(t *testing.T) {
	mixed := append(append(genData("text", 300<<10, 1), genData("binary", 300<<10, 2)...), genData("random", 100<<10, 3)...)
	mixed = append(mixed, genData("zero", 200<<10, 4)...)
	streams := map[string][]byte{}
	for _, level := range []int{-2, 0, 1, 6, 9} {
		streams[fmt.Sprintf("level%d", level)] = gzipWith(t, mixed, level, 0, gzip.Header{})
	}
	streams["syncflush"] = gzipWith(t, mixed, 6, 50<<10, gzip.Header{})
	streams["members"] = append(gzipWith(t, mixed[:400<<10], 6, 0, gzip.Header{Name: "a"}), gzipWith(t, mixed[400<<10:], 1, 0, gzip.Header{})...)
	for name, gz := range streams {
		want := decodeTraced(gz, nil, 0)
		if want.err != nil {
			t.Fatalf("%s: %v", name, want.err)
		}
		for _, chunk := range []int{4 << 10, 16 << 10, 64 << 10} {
			for _, workers := range []int{1, 3} {
				got := decodeTraced(gz, &ParallelConfig{Workers: workers, ChunkSize: chunk}, 1000+chunk/3)
				t.Run(fmt.Sprintf("%s/chunk%d/workers%d", name, chunk, workers), func(t *testing.T) {
					compareTraced(t, want, got)
					t.Logf("%d boundaries, %d segments used", len(got.bounds), got.used)
				})
			}
		}
		// With chunks much shorter than the blocks, some segments must
		// still apply, or the test would not cover the parallel path.
		if got := decodeTraced(gz, &ParallelConfig{Workers: 2, ChunkSize: 16 << 10}, 4096); got.used == 0 && name != "level0" {
			t.Errorf("%s: no speculative segment was used", name)
		}
	}
}

// TestParallelErrors: damage is found in parallel mode too.
func TestParallelErrors(t *testing.T) {
	data := append(genData("text", 200<<10, 5), genData("binary", 200<<10, 6)...)
	gz := gzipWith(t, data, 6, 0, gzip.Header{})
	for name, bad := range map[string][]byte{
		"truncated": gz[:len(gz)*2/3],
		"corrupt":   func() []byte { b := bytes.Clone(gz); b[len(b)*2/3] ^= 0x55; return b }(),
		"crc":       func() []byte { b := bytes.Clone(gz); b[len(b)-6] ^= 1; return b }(),
		"trailing":  append(bytes.Clone(gz), 0, 0, 0),
	} {
		got := decodeTraced(bad, &ParallelConfig{Workers: 2, ChunkSize: 8 << 10}, 3000)
		var ie *Error
		if !errors.As(got.err, &ie) {
			t.Errorf("%s: err = %v, want an *Error", name, got.err)
		}
	}
}

// FuzzParallel compresses the input with compress/flate (the level and
// sync-flush interval chosen by the fuzzer), decodes it with the parallel
// reader on tiny chunks and checks the output against the input and every
// boundary and window against the decoder in order. The raw input is also
// decoded as gzip by both readers, which must agree.
func FuzzParallel(f *testing.F) {
	f.Add(genData("text", 60000, 1), uint8(6), uint16(0), uint16(300))
	f.Add(genData("binary", 30000, 2), uint8(1), uint16(5000), uint16(700))
	f.Add(genData("random", 9000, 3), uint8(9), uint16(1000), uint16(64))
	f.Add(append(genData("zero", 9000, 3), genData("text", 9000, 4)...), uint8(0), uint16(0), uint16(128))
	f.Fuzz(func(t *testing.T, data []byte, level uint8, flushEvery uint16, chunk uint16) {
		lvl := int(level%11) - 1
		if lvl == -1 {
			lvl = -2 // HuffmanOnly
		}
		gz := gzipWith(t, data, lvl, int(flushEvery), gzip.Header{})
		cfg := &ParallelConfig{Workers: 2, ChunkSize: 1024 + int(chunk)%8192}
		want := decodeTraced(gz, nil, 0)
		if want.err != nil || !bytes.Equal(want.out, data) {
			t.Fatalf("in order: %v", want.err)
		}
		got := decodeTraced(gz, cfg, 100)
		compareTraced(t, want, got)
		if !bytes.Equal(got.out, data) {
			t.Fatal("parallel output is not the input")
		}
		// Arbitrary bytes: both readers fail, or both give the same.
		compareTraced(t, decodeTraced(data, nil, 0), decodeTraced(data, cfg, 100))
	})
}

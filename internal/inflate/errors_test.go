package inflate

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestTruncatedEverywhere(t *testing.T) {
	data := genData("binary", 6_000, 11)
	for _, gz := range [][]byte{
		gzipWith(t, data, 6, 1000, gzip.Header{Name: "n", Comment: "c", Extra: []byte{1, 2, 3}}),
		gzipWith(t, data, 0, 0, gzip.Header{}),
		gzipWith(t, data, -2, 0, gzip.Header{}),
	} {
		for n := 0; n < len(gz); n++ {
			_, err := decodeGzip(gz[:n], false)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("truncated at %d of %d: err = %v, want io.ErrUnexpectedEOF", n, len(gz), err)
			}
		}
	}
}

func TestEmptyInput(t *testing.T) {
	_, err := decodeGzip(nil, false)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestTrailingData(t *testing.T) {
	gz := gzipWith(t, []byte("payload"), 6, 0, gzip.Header{})
	for name, tail := range map[string][]byte{
		"one zero":   {0},
		"zeros":      make([]byte, 1024),
		"garbage":    []byte("garbage"),
		"lone magic": {0x1f},          // could start a member: truncated instead
		"gz magic":   {0x1f, 0x8b, 8}, // a truncated member
	} {
		t.Run(name, func(t *testing.T) {
			stream := append(bytes.Clone(gz), tail...)
			if _, goErr := readAllGo(stream); goErr == nil {
				t.Errorf("compress/gzip accepts the stream; the fuzz test assumes it does not")
			}
			res, err := decodeGzip(stream, false)
			want := ErrTrailingData
			if tail[0] == 0x1f {
				want = io.ErrUnexpectedEOF
			}
			if !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
			if string(res.out) != "payload" {
				t.Fatalf("output before the error = %q", res.out)
			}
			var e *Error
			if errors.As(err, &e) && e.Offset != int64(len(gz)) && tail[0] != 0x1f {
				t.Errorf("error offset = %d, want %d", e.Offset, len(gz))
			}
		})
	}
}

func TestChecksumMismatch(t *testing.T) {
	gz := gzipWith(t, genData("text", 10_000, 1), 6, 0, gzip.Header{})
	for _, pos := range []int{len(gz) - 8, len(gz) - 1} { // CRC-32, ISIZE
		bad := bytes.Clone(gz)
		bad[pos] ^= 0x40
		if _, err := decodeGzip(bad, false); !errors.Is(err, ErrChecksum) {
			t.Errorf("corrupt trailer byte %d: err = %v, want ErrChecksum", pos, err)
		}
	}
}

func TestBadHeader(t *testing.T) {
	gz := gzipWith(t, []byte("x"), 6, 0, gzip.Header{})
	cases := []struct {
		pos  int
		val  byte
		want error
	}{
		{0, 0x1e, ErrHeader},
		{1, 0x8c, ErrHeader},
		{2, 7, ErrMethod},
		{3, 0x20, ErrHeader}, // reserved flag
	}
	for _, c := range cases {
		bad := bytes.Clone(gz)
		bad[c.pos] = c.val
		if _, err := decodeGzip(bad, false); !errors.Is(err, c.want) {
			t.Errorf("header byte %d = %#x: err = %v, want %v", c.pos, c.val, err, c.want)
		}
	}
}

func TestCorruptData(t *testing.T) {
	// Hand-made deflate streams after a plain gzip header.
	hdr := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	cases := []struct {
		reason string
		body   []byte
	}{
		{"invalid block type", []byte{0x07}},
		{"invalid stored block lengths", []byte{0x01, 0x05, 0x00, 0x00, 0x00}},
		// Fixed block: literal 'a', then length 3 at distance 2.
		{"invalid distance too far back", fixedBlock(lit('a'), code(1, 7), code(1, 5), code(0, 7))},
		// Fixed block: length 3 with distance code 30.
		{"invalid distance code", fixedBlock(code(1, 7), code(30, 5), code(0, 7))},
		// Fixed block: literal/length symbol 286 (8-bit code 0xc6).
		{"invalid literal/length code", fixedBlock(code(0xc6, 8), code(0, 7))},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			_, err := decodeGzip(append(bytes.Clone(hdr), c.body...), false)
			var e *Error
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &e) || e.Reason != c.reason {
				t.Fatalf("err = %v, want ErrCorrupt: %s", err, c.reason)
			}
		})
	}
}

// TestCorruptBytes flips bytes all over a stream: decoding must end with an
// error or with correct output, never hang or panic, and must agree with
// compress/gzip on success versus failure.
func TestCorruptBytes(t *testing.T) {
	data := genData("binary", 30_000, 5)
	gz := gzipWith(t, data, 6, 5000, gzip.Header{})
	for pos := 10; pos < len(gz); pos++ {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(gz)
			bad[pos] ^= x
			res, err := decodeGzip(bad, false)
			_, goErr := readAllGo(bad)
			if (err == nil) != (goErr == nil) {
				t.Fatalf("flip %#x at %d: our err %v, compress/gzip err %v", x, pos, err, goErr)
			}
			if err == nil && !bytes.Equal(res.out, data) {
				t.Fatalf("flip %#x at %d: accepted with wrong output", x, pos)
			}
		}
	}
}

func readAllGo(gz []byte) ([]byte, error) {
	z, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(z)
}

func TestCallbackErrorAborts(t *testing.T) {
	gz := gzipWith(t, genData("text", 100_000, 2), 6, 10_000, gzip.Header{})
	stop := errors.New("stop")
	calls := 0
	z := NewGzipReader(bytes.NewReader(gz), func(b Boundary) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if _, err := io.Copy(io.Discard, z); err != stop {
		t.Fatalf("err = %v, want the callback's error", err)
	}
	if calls != 3 {
		t.Fatalf("callback ran %d times after failing", calls)
	}
}

// TestOneByteReads feeds input a byte at a time (and with data+EOF reads).
func TestOneByteReads(t *testing.T) {
	data := genData("binary", 100_000, 9)
	gz := gzipWith(t, data, 6, 20_000, gzip.Header{Name: "one"})
	want, err := decodeGzip(gz, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(gz)),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(gz)),
		"half":     iotest.HalfReader(bytes.NewReader(gz)),
	} {
		t.Run(name, func(t *testing.T) {
			var bounds []Boundary
			z := NewGzipReader(r, func(b Boundary) error { bounds = append(bounds, b); return nil })
			out, err := io.ReadAll(iotest.OneByteReader(z))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				t.Fatal("output differs")
			}
			if len(bounds) != len(want.bounds) {
				t.Fatalf("got %d boundaries, want %d", len(bounds), len(want.bounds))
			}
			for i := range bounds {
				if bounds[i] != want.bounds[i] {
					t.Fatalf("boundary %d = %+v, want %+v", i, bounds[i], want.bounds[i])
				}
			}
			if z.InputOffset() != int64(len(gz)) {
				t.Errorf("InputOffset = %d, want %d", z.InputOffset(), len(gz))
			}
		})
	}
}

func TestReadErrorPropagates(t *testing.T) {
	gz := gzipWith(t, genData("text", 50_000, 2), 6, 0, gzip.Header{})
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(gz[:1000]), iotest.ErrReader(boom))
	if _, err := io.Copy(io.Discard, NewGzipReader(r, nil)); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the reader's error", err)
	}
	rr := NewResumeReader(io.MultiReader(bytes.NewReader(gz[10:1000]), iotest.ErrReader(boom)), 0, make([]byte, windowSize))
	if _, err := io.Copy(io.Discard, rr); !errors.Is(err, boom) {
		t.Fatalf("resume: err = %v, want the reader's error", err)
	}
}

func TestResumeTruncated(t *testing.T) {
	data := genData("text", 40_000, 3)
	gz := gzipWith(t, data, 6, 0, gzip.Header{})
	// Resume at the header boundary with the span cut inside the only block.
	r := NewResumeReader(bytes.NewReader(gz[10:len(gz)/2]), 0, make([]byte, windowSize))
	out, err := io.ReadAll(r)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if !bytes.Equal(out, data[:len(out)]) || len(out) == 0 {
		t.Fatalf("output before the error is wrong (%d bytes)", len(out))
	}
}

// huffCode is a Huffman code: value sent most significant bit first.
type huffCode struct {
	value uint32
	n     uint
}

func code(v uint32, n uint) huffCode { return huffCode{v, n} }
func lit(c byte) huffCode            { return huffCode{0x30 + uint32(c), 8} }

// fixedBlock encodes a final fixed-Huffman block from codes.
func fixedBlock(codes ...huffCode) []byte {
	var out []byte
	var acc uint64
	var n uint
	put := func(v uint64, bits uint) {
		acc |= v << n
		n += bits
		for n >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			n -= 8
		}
	}
	put(1, 1) // BFINAL
	put(1, 2) // fixed
	for _, c := range codes {
		for i := int(c.n) - 1; i >= 0; i-- {
			put(uint64(c.value>>uint(i))&1, 1)
		}
	}
	if n > 0 {
		out = append(out, byte(acc))
	}
	return out
}

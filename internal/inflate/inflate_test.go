package inflate

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/soci-indexer/soci-indexer/internal/testenv"
)

// decoded is everything GzipReader reports for a stream.
type decoded struct {
	out      []byte
	bounds   []Boundary
	windows  [][windowSize]byte
	trailers []Trailer
}

// record notes a boundary and, with keepWindows, the window z reports at it.
func (res *decoded) record(z *GzipReader, b Boundary, keepWindows bool) {
	res.bounds = append(res.bounds, b)
	if keepWindows {
		var w [windowSize]byte
		z.Window(&w)
		res.windows = append(res.windows, w)
	}
}

func decodeGzip(data []byte, keepWindows bool) (decoded, error) {
	var res decoded
	var z *GzipReader
	z = NewGzipReader(bytes.NewReader(data), func(b Boundary) error {
		res.record(z, b, keepWindows)
		return nil
	})
	var buf bytes.Buffer
	_, err := io.Copy(&buf, struct{ io.Reader }{z}) // plain Read path
	res.out = buf.Bytes()
	return res, err
}

// decodeGzipChunks is decodeGzip through ReadChunk, rotating nbufs buffers
// of size bytes (one buffer: the same one every time).
func decodeGzipChunks(data []byte, keepWindows bool, nbufs, size int) (decoded, error) {
	var res decoded
	var z *GzipReader
	z = NewGzipReader(bytes.NewReader(data), func(b Boundary) error {
		res.record(z, b, keepWindows)
		return nil
	})
	bufs := make([][]byte, nbufs)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	for i := 0; ; i++ {
		p, err := z.ReadChunk(bufs[i%nbufs])
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return res, err
		}
		if len(p) == 0 {
			return res, errors.New("ReadChunk returned no bytes and no error")
		}
		res.out = append(res.out, p...)
	}
}

// checkChunks checks that ReadChunk reports what Read does.
func checkChunks(t *testing.T, gz []byte, res decoded, resErr error) {
	t.Helper()
	for _, c := range []struct{ nbufs, size int }{{1, ChunkBufferSize}, {3, ChunkBufferSize + 1}} {
		got, err := decodeGzipChunks(gz, res.windows != nil, c.nbufs, c.size)
		checkSameAsRead(t, fmt.Sprintf("ReadChunk %v", c), got, err, res, resErr)
	}
	for _, size := range []int{1, 7, 64, 300, 4096, 1 << 20} {
		got, err := decodeChunkInput(gz, res.windows != nil, size)
		checkSameAsRead(t, fmt.Sprintf("chunk input of %d bytes", size), got, err, res, resErr)
	}
}

// checkSameAsRead fails the test unless another way of decoding reported
// the error, output, boundaries and windows that Read did.
func checkSameAsRead(t *testing.T, what string, got decoded, err error, res decoded, resErr error) {
	t.Helper()
	if fmt.Sprint(err) != fmt.Sprint(resErr) {
		t.Fatalf("%s: err %v, Read: %v", what, err, resErr)
	}
	if !bytes.Equal(got.out, res.out) || !slices.Equal(got.bounds, res.bounds) {
		t.Fatalf("%s: output or boundaries differ from Read's", what)
	}
	if !slices.Equal(got.windows, res.windows) {
		t.Fatalf("%s: windows differ from Read's", what)
	}
}

// decodeChunkInput is decodeGzip with the input handed over in chunks of
// size bytes (NewGzipChunkReader), each in a buffer of its own that is
// overwritten once the decoder has reported a boundary past it, as the zTOC
// builder's span hasher recycles them.
func decodeChunkInput(data []byte, keepWindows bool, size int) (decoded, error) {
	var res decoded
	var z *GzipReader
	type chunk struct {
		buf []byte
		end int64
	}
	var held []chunk
	var off int64
	z = NewGzipChunkReader(func() ([]byte, error) {
		if len(data) == 0 {
			return nil, io.EOF
		}
		n := min(size, len(data))
		c := chunk{buf: bytes.Clone(data[:n]), end: off + int64(n)}
		data, off = data[n:], c.end
		held = append(held, c)
		return c.buf, nil
	}, func(b Boundary) error {
		res.record(z, b, keepWindows)
		// Chunks wholly before the byte holding this boundary are free to
		// reuse: scribble over them.
		for len(held) > 0 && held[0].end <= max(b.In-1, 0) {
			for i := range held[0].buf {
				held[0].buf[i] = 0xa5
			}
			held = held[1:]
		}
		return nil
	})
	var buf bytes.Buffer
	_, err := io.Copy(&buf, struct{ io.Reader }{z})
	res.out = buf.Bytes()
	if err == nil && z.InputOffset() != off {
		return res, fmt.Errorf("InputOffset %d after the stream, want %d", z.InputOffset(), off)
	}
	return res, err
}

// decodeDeferredCRC decodes through ReadChunk with DeferCRC, checking each
// member's CRC-32 itself as a caller would.
func decodeDeferredCRC(data []byte) (decoded, error) {
	var res decoded
	z := NewGzipReader(bytes.NewReader(data), func(b Boundary) error {
		res.bounds = append(res.bounds, b)
		return nil
	})
	z.DeferCRC(func(t Trailer) error {
		if int64(len(res.out)) > t.End || t.Start > t.End {
			return fmt.Errorf("trailer %+v reported after %d bytes of output", t, len(res.out))
		}
		// The member's output may still be in the chunk being decoded:
		// check it when the chunk is returned.
		res.trailers = append(res.trailers, t)
		return nil
	})
	buf := make([]byte, ChunkBufferSize)
	checked := 0
	check := func() error {
		for ; checked < len(res.trailers); checked++ {
			t := res.trailers[checked]
			if t.End > int64(len(res.out)) {
				break
			}
			if crc32IEEE(res.out[t.Start:t.End]) != t.CRC {
				return ChecksumError(t)
			}
		}
		return nil
	}
	for {
		p, err := z.ReadChunk(buf)
		res.out = append(res.out, p...)
		if cerr := check(); cerr != nil {
			return res, cerr
		}
		if err != nil {
			if err == io.EOF {
				err = nil
				if checked < len(res.trailers) {
					err = errors.New("trailer after the end of output")
				}
			}
			return res, err
		}
	}
}

// checkDeferredCRC checks that decoding with DeferCRC reports what Read does.
func checkDeferredCRC(t *testing.T, gz []byte, res decoded, resErr error) {
	t.Helper()
	got, err := decodeDeferredCRC(gz)
	if fmt.Sprint(err) != fmt.Sprint(resErr) {
		t.Fatalf("DeferCRC: err %v, Read: %v", err, resErr)
	}
	if !bytes.Equal(got.out, res.out) || !slices.Equal(got.bounds, res.bounds) {
		t.Fatalf("DeferCRC: output or boundaries differ from Read's")
	}
}

// genData returns deterministic test data of a few kinds.
func genData(kind string, n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	switch kind {
	case "zero":
	case "random":
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	case "text":
		words := []string{"the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog ", "\n", "soci ", "index ", "layer ", "checkpoint ", "zlib "}
		var buf bytes.Buffer
		for buf.Len() < n {
			buf.WriteString(words[rng.IntN(len(words))])
		}
		copy(b, buf.Bytes())
	case "binary":
		// Short runs, small alphabets and repeats at many distances.
		for i := 0; i < n; {
			switch rng.IntN(4) {
			case 0:
				r := min(rng.IntN(300), n-i)
				v := byte(rng.IntN(4))
				for j := 0; j < r; j++ {
					b[i+j] = v
				}
				i += r
			case 1:
				if i > 0 {
					d := 1 + rng.IntN(min(i, 40000))
					l := min(3+rng.IntN(300), n-i)
					for j := 0; j < l; j++ {
						b[i+j] = b[i+j-d]
					}
					i += l
				}
			default:
				l := min(rng.IntN(50), n-i)
				for j := 0; j < l; j++ {
					b[i+j] = byte(rng.IntN(16) * 17)
				}
				i += l
			}
		}
	default:
		panic(kind)
	}
	return b
}

// gzipWith compresses data with compress/gzip at level, flushing every
// flushEvery bytes (0: never), with optional header fields.
func gzipWith(t testing.TB, data []byte, level, flushEvery int, hdr gzip.Header) []byte {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Header = hdr
	if flushEvery > 0 {
		// An empty block first, like a writer that flushes before writing.
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		for p := data; len(p) > 0; {
			n := min(flushEvery, len(p))
			w.Write(p[:n])
			w.Flush()
			p = p[n:]
		}
	} else {
		w.Write(data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkStream decodes a gzip stream and checks output, boundaries against
// the reference decoder, and resumption at every boundary.
func checkStream(t *testing.T, gz, want []byte) {
	t.Helper()
	res, err := decodeGzip(gz, true)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !bytes.Equal(res.out, want) {
		t.Fatalf("output differs: got %d bytes, want %d", len(res.out), len(want))
	}
	ref := refDecoder{data: gz}
	if err := ref.gzip(); err != nil {
		t.Fatalf("reference decoder: %v", err)
	}
	if !slices.Equal(res.bounds, ref.bounds) {
		t.Fatalf("boundaries differ:\n got  %v\n want %v", res.bounds, ref.bounds)
	}
	checkWindows(t, res, want)
	checkResume(t, gz, res, want)
	checkChunks(t, gz, res, nil)
	checkDeferredCRC(t, gz, res, nil)
}

func checkWindows(t *testing.T, res decoded, want []byte) {
	t.Helper()
	for i, b := range res.bounds {
		var w [windowSize]byte
		lo := max(0, b.Out-windowSize)
		copy(w[windowSize-(b.Out-lo):], want[lo:b.Out])
		if w != res.windows[i] {
			t.Fatalf("window at boundary %d (%+v) differs", i, b)
		}
	}
}

// checkResume resumes at every boundary like soci: from the boundary to
// the next one (the span data must decode cleanly to io.EOF), and from the
// boundary to the end of the stream.
func checkResume(t *testing.T, gz []byte, res decoded, want []byte) {
	t.Helper()
	for i, b := range res.bounds {
		if b.Final {
			continue // soci never checkpoints after a final block: the trailer follows
		}
		start := b.In
		if b.Bits != 0 {
			start--
		}
		end := int64(len(gz))
		wantEnd := int64(len(want))
		if i+1 < len(res.bounds) {
			end, wantEnd = res.bounds[i+1].In, res.bounds[i+1].Out
		}
		for _, stop := range []struct{ in, out int64 }{{end, wantEnd}, {int64(len(gz)), int64(len(want))}} {
			r := NewResumeReader(bytes.NewReader(gz[start:stop.in]), b.Bits, res.windows[i][:])
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("resume at boundary %d %+v to %d: %v", i, b, stop.in, err)
			}
			if !bytes.Equal(got, want[b.Out:stop.out]) {
				t.Fatalf("resume at boundary %d %+v to %d: got %d bytes, want %d", i, b, stop.in, len(got), stop.out-b.Out)
			}
		}
	}
}

func TestDifferentialCompressGzip(t *testing.T) {
	sizes := []int{0, 1, 2, 100, 4095, 65536 + 17, 300_000}
	kinds := []string{"zero", "random", "text", "binary"}
	levels := []int{flate.HuffmanOnly, flate.DefaultCompression, flate.NoCompression, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	seed := uint64(1)
	for _, kind := range kinds {
		for _, size := range sizes {
			data := genData(kind, size, seed)
			seed++
			for _, level := range levels {
				for _, flush := range []int{0, 7000} {
					name := fmt.Sprintf("%s/%d/level%d/flush%d", kind, size, level, flush)
					t.Run(name, func(t *testing.T) {
						gz := gzipWith(t, data, level, flush, gzip.Header{})
						checkStream(t, gz, data)
					})
				}
			}
		}
	}
}

func TestHeaderFields(t *testing.T) {
	data := genData("text", 50_000, 7)
	hdrs := []gzip.Header{
		{Name: "layer.tar"},
		{Comment: "a comment"},
		{Extra: []byte("some extra field bytes")},
		{Name: "n", Comment: "c", Extra: bytes.Repeat([]byte{0}, 1000), OS: 3},
	}
	for i, h := range hdrs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			gz := gzipWith(t, data, 6, 0, h)
			checkStream(t, gz, data)
			res, _ := decodeGzip(gz, false)
			if want := int64(len(gz) - len(gzipWith(t, data, 6, 0, gzip.Header{})) + 10); res.bounds[0].In != want {
				t.Errorf("header boundary In = %d, want %d", res.bounds[0].In, want)
			}
		})
	}
}

func TestHeaderCRC(t *testing.T) {
	data := []byte("hello, header crc")
	gz := gzipWith(t, data, 6, 0, gzip.Header{Name: "x"})
	// Insert FHCRC: set the flag and the CRC16 of the header after the name.
	hdrLen := 10 + 2
	hdr := append([]byte(nil), gz[:hdrLen]...)
	hdr[3] |= flagHCRC
	c := crc32IEEE(hdr)
	withCRC := append(append(hdr, byte(c), byte(c>>8)), gz[hdrLen:]...)
	checkStream(t, withCRC, data)

	bad := slices.Clone(withCRC)
	bad[hdrLen] ^= 1
	if _, err := decodeGzip(bad, false); !errors.Is(err, ErrHeader) {
		t.Fatalf("bad header CRC: err = %v, want ErrHeader", err)
	}
}

func TestMultiMember(t *testing.T) {
	var gz, want []byte
	for i, level := range []int{1, 9, flate.NoCompression, flate.HuffmanOnly, 6} {
		part := genData([]string{"text", "binary", "random", "zero", "text"}[i], 40_000+i*1000, uint64(i))
		gz = append(gz, gzipWith(t, part, level, 9000*i, gzip.Header{Name: fmt.Sprint(i)})...)
		want = append(want, part...)
	}
	// An empty member too.
	gz = append(gz, gzipWith(t, nil, 6, 0, gzip.Header{})...)
	checkStream(t, gz, want)
	res, _ := decodeGzip(gz, false)
	headers := 0
	for _, b := range res.bounds {
		if b.Header {
			headers++
		}
	}
	if headers != 6 {
		t.Fatalf("got %d header boundaries, want 6", headers)
	}
}

func crc32IEEE(b []byte) uint32 {
	var h headerReader
	for _, c := range b {
		h.crc = crc32Update(h.crc, c)
	}
	return h.crc
}

// TestExternalCompressors checks streams from the system gzip and pigz.
func TestExternalCompressors(t *testing.T) {
	data := append(genData("text", 400_000, 3), genData("binary", 400_000, 4)...)
	tools := [][]string{
		{"gzip", "-1", "-c"}, {"gzip", "-6", "-c"}, {"gzip", "-9", "-c"},
		{"pigz", "-1", "-c", "-b", "128"}, {"pigz", "-6", "-c", "-b", "128"}, {"pigz", "-9", "-c", "-p", "2"},
		{"pigz", "-6", "-c", "-i", "-b", "64"}, // independent blocks: many sync flushes
	}
	for _, tool := range tools {
		t.Run(fmt.Sprint(tool), func(t *testing.T) {
			path := testenv.RequireTool(t, tool[0])
			cmd := exec.Command(path, tool[1:]...)
			cmd.Stdin = bytes.NewReader(data)
			gz, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			checkStream(t, gz, data)
			// pigz-compressed files concatenated: multi-member.
			checkStream(t, append(slices.Clone(gz), gz...), append(slices.Clone(data), data...))
		})
	}
}

// TestEmptyFirstBlock: a writer that flushes before writing data starts the
// stream with an empty stored block, which still ends at a boundary with
// Out=0 (soci then records two checkpoints at offset 0).
func TestEmptyFirstBlock(t *testing.T) {
	data := []byte("data after an empty sync-flush block")
	gz := gzipWith(t, data, 6, 1000, gzip.Header{})
	res, err := decodeGzip(gz, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Boundary{
		{In: 10, Out: 0, Header: true},
		{In: 15, Out: 0}, // 3 header bits, padding, LEN and NLEN
	}
	if len(res.bounds) < 2 || !slices.Equal(res.bounds[:2], want) {
		t.Fatalf("first boundaries = %+v, want %+v", res.bounds, want)
	}
}

// TestSystemGzipHeaderLength checks the header boundary of gzip -n (no
// name, 10 bytes) and of gzip with a file name, as soci records them.
func TestSystemGzipHeaderLength(t *testing.T) {
	path := testenv.RequireTool(t, "gzip")
	file := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(file, genData("text", 10_000, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		in   int64
	}{{[]string{"-n", "-c", file}, 10}, {[]string{"-c", file}, 20}} {
		gz, err := exec.Command(path, c.args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		res, err := decodeGzip(gz, false)
		if err != nil {
			t.Fatal(err)
		}
		if b := res.bounds[0]; b != (Boundary{In: c.in, Header: true}) {
			t.Errorf("gzip %v: header boundary %+v, want In=%d", c.args[:len(c.args)-1], b, c.in)
		}
	}
}

package inflate

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"
)

func addFuzzSeeds(f *testing.F) {
	f.Add([]byte{})
	for i, level := range []int{-2, 0, 1, 6, 9} {
		data := genData([]string{"text", "binary", "random", "zero", "text"}[i], 200+300*i, uint64(i))
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, level)
		w.Write(data[:len(data)/2])
		w.Flush()
		w.Write(data[len(data)/2:])
		w.Close()
		f.Add(buf.Bytes())
		f.Add(gzipWith(f, data, level, 100, gzip.Header{Name: "seed"}))
	}
}

// FuzzInflate decodes arbitrary bytes as raw deflate and as gzip and checks
// that the result agrees with compress/flate and compress/gzip.
//
// Deliberate differences, following zlib (and therefore soci): gzip headers
// with reserved flag bits are rejected, while compress/gzip ignores them;
// a dynamic block without an end-of-block code is rejected when its header
// is read, while compress/flate fails only later. Bytes after the last
// member, zero padding included, are an error for both (compress/gzip in
// multistream mode reads them as a bad header), so they need no exception.
func FuzzInflate(f *testing.F) {
	addFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Raw deflate: compress/flate reads exactly the bytes it needs from
		// a bytes.Reader, so wrap that much in a gzip member and compare.
		br := bytes.NewReader(data)
		want, flateErr := io.ReadAll(flate.NewReader(br))
		used := data[:len(data)-br.Len()]
		member := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
		member = append(member, used...)
		if flateErr == nil {
			member = binary.LittleEndian.AppendUint32(member, crc32.ChecksumIEEE(want))
			member = binary.LittleEndian.AppendUint32(member, uint32(len(want)))
		}
		res, err := decodeGzip(member, false)
		if (err == nil) != (flateErr == nil) {
			t.Fatalf("raw deflate: our err %v, compress/flate err %v", err, flateErr)
		}
		if err == nil && !bytes.Equal(res.out, want) {
			t.Fatalf("raw deflate: output differs")
		}
		// compress/flate drops output it had not flushed when it fails, so
		// it may report less before truncation; never more. (zlib rejects
		// some bad code tables before any output, e.g. a missing end-of-block
		// code, where compress/flate decodes up to the point of failure.)
		if errors.Is(err, io.ErrUnexpectedEOF) && errors.Is(flateErr, io.ErrUnexpectedEOF) && !bytes.HasPrefix(res.out, want) {
			t.Fatalf("raw deflate: output before the error differs")
		}

		// gzip as is.
		res, err = decodeGzip(data, false)
		var goErr error
		want, goErr = readAllGo(data)
		if len(data) >= 4 && data[3]&^flagsKnown != 0 && goErr == nil {
			if !errors.Is(err, ErrHeader) {
				t.Fatalf("gzip with reserved flags: err = %v, want ErrHeader", err)
			}
			return
		}
		if (err == nil) != (goErr == nil) {
			t.Fatalf("gzip: our err %v, compress/gzip err %v", err, goErr)
		}
		if err == nil && !bytes.Equal(res.out, want) {
			t.Fatalf("gzip: output differs")
		}
		checkChunks(t, data, res, err)
		checkDeferredCRC(t, data, res, err)
	})
}

// FuzzResume resumes at a boundary of a stream made from fuzzed data, and
// feeds fuzzed bytes directly to the resume reader (no panic, no hang).
func FuzzResume(f *testing.F) {
	f.Add([]byte("hello hello hello hello"), uint8(6), uint16(1))
	f.Add(genData("binary", 5000, 1), uint8(1), uint16(7))
	f.Add(genData("text", 3000, 2), uint8(0), uint16(3))
	f.Fuzz(func(t *testing.T, payload []byte, level uint8, pick uint16) {
		rr := NewResumeReader(bytes.NewReader(payload), uint8(pick&7), payload)
		io.Copy(io.Discard, rr)

		lvl := int(level%11) - 1
		gz := gzipWith(t, payload, lvl, 1+int(pick)%700, gzip.Header{})
		res, err := decodeGzip(gz, false)
		if err != nil {
			t.Fatal(err)
		}
		var nonFinal []int
		for i, b := range res.bounds {
			if !b.Final {
				nonFinal = append(nonFinal, i)
			}
		}
		i := nonFinal[int(pick)%len(nonFinal)]
		b := res.bounds[i]
		start := b.In
		if b.Bits != 0 {
			start--
		}
		window := windowAt(t, gz, i)
		got, err := io.ReadAll(NewResumeReader(bytes.NewReader(gz[start:]), b.Bits, window[:]))
		if err != nil {
			t.Fatalf("resume at %+v: %v", b, err)
		}
		if !bytes.Equal(got, payload[b.Out:]) {
			t.Fatalf("resume at %+v: output differs", b)
		}
	})
}

// windowAt returns the window GzipReader reports at boundary n.
func windowAt(t *testing.T, gz []byte, n int) *[windowSize]byte {
	var w [windowSize]byte
	var z *GzipReader
	seen := 0
	z = NewGzipReader(bytes.NewReader(gz), func(b Boundary) error {
		if seen == n {
			z.Window(&w)
		}
		seen++
		return nil
	})
	if _, err := io.Copy(io.Discard, z); err != nil {
		t.Fatal(err)
	}
	return &w
}

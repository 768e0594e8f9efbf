package corpus

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
)

// A compressor turns the tar at src into a layer blob at dst.
type compressor func(ctx context.Context, dst, src string) error

// goGzip compresses with Go's compress/gzip, as Docker and containerd do,
// with the given header fields.
func goGzip(level int, hdr gzip.Header) compressor {
	return func(_ context.Context, dst, src string) error {
		return compressWithGo(dst, src, func(w io.Writer) (*gzip.Writer, error) {
			zw, err := gzip.NewWriterLevel(w, level)
			if err != nil {
				return nil, err
			}
			zw.Header = hdr
			return zw, nil
		}, 0)
	}
}

// goGzipFlushEvery calls Flush before any data and then every interval
// input bytes. A flush writes an empty stored block; the first one makes a
// deflate block that produces no output, which gives soci two checkpoints
// at uncompressed offset 0.
func goGzipFlushEvery(interval int) compressor {
	return func(_ context.Context, dst, src string) error {
		return compressWithGo(dst, src, func(w io.Writer) (*gzip.Writer, error) {
			zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
			if err != nil {
				return nil, err
			}
			return zw, zw.Flush()
		}, interval)
	}
}

func compressWithGo(dst, src string, newWriter func(io.Writer) (*gzip.Writer, error), flushEvery int) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open tar: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create layer: %w", err)
	}
	defer out.Close()
	zw, err := newWriter(out)
	if err != nil {
		return fmt.Errorf("gzip writer: %w", err)
	}
	if flushEvery > 0 {
		buf := make([]byte, flushEvery)
		for {
			n, readErr := io.ReadFull(in, buf)
			if _, err := zw.Write(buf[:n]); err != nil {
				return fmt.Errorf("compress: %w", err)
			}
			if err := zw.Flush(); err != nil {
				return fmt.Errorf("flush: %w", err)
			}
			if readErr == io.EOF || readErr == io.ErrUnexpectedEOF {
				break
			}
			if readErr != nil {
				return fmt.Errorf("read tar: %w", readErr)
			}
		}
	} else if _, err := io.Copy(zw, in); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("close gzip: %w", err)
	}
	return out.Close()
}

// handmadeFHCRC writes a gzip member by hand with FNAME and FHCRC set
// (Go's writer never sets FHCRC): header, CRC-16 of the header, raw
// deflate from compress/flate, then the CRC-32 and size trailer.
func handmadeFHCRC(_ context.Context, dst, src string) error {
	const flagHCRC, flagName = 0x02, 0x08
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read tar: %w", err)
	}
	var out bytes.Buffer
	out.Write([]byte{0x1f, 0x8b, 8, flagHCRC | flagName})
	_ = binary.Write(&out, binary.LittleEndian, uint32(baseTime.Unix()))
	out.Write([]byte{0, 3}) // XFL, OS = Unix
	out.WriteString("hcrc.tar\x00")
	_ = binary.Write(&out, binary.LittleEndian, uint16(crc32.ChecksumIEEE(out.Bytes())))
	fw, err := flate.NewWriter(&out, 5)
	if err != nil {
		return fmt.Errorf("flate writer: %w", err)
	}
	if _, err := fw.Write(data); err != nil {
		return fmt.Errorf("deflate: %w", err)
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("close deflate: %w", err)
	}
	_ = binary.Write(&out, binary.LittleEndian, crc32.ChecksumIEEE(data))
	_ = binary.Write(&out, binary.LittleEndian, uint32(len(data)))
	return os.WriteFile(dst, out.Bytes(), 0o644)
}

// members splits the tar at the given fractions of its length (not on tar
// block boundaries) and writes each part as its own gzip member, like
// parallel compressors do. Empty parts make empty members. The first member
// carries a file name so its header is longer than 10 bytes.
func members(level int, cuts ...float64) compressor {
	return func(_ context.Context, dst, src string) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		var out bytes.Buffer
		prev := 0
		for i, cut := range append(cuts, 1) {
			end := int(float64(len(data)) * cut)
			zw, err := gzip.NewWriterLevel(&out, level)
			if err != nil {
				return fmt.Errorf("gzip writer: %w", err)
			}
			if i == 0 {
				zw.Header.Name = "p1"
			}
			if _, err := zw.Write(data[prev:end]); err != nil {
				return fmt.Errorf("compress member %d: %w", i, err)
			}
			if err := zw.Close(); err != nil {
				return fmt.Errorf("close member %d: %w", i, err)
			}
			prev = end
		}
		return os.WriteFile(dst, out.Bytes(), 0o644)
	}
}

// external runs a system compressor that writes to stdout, with the tar as
// its last argument (so gzip without -n records the file name).
func external(name string, args ...string) compressor {
	return func(ctx context.Context, dst, src string) error {
		out, err := os.Create(dst)
		if err != nil {
			return fmt.Errorf("create layer: %w", err)
		}
		defer out.Close()
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, name, append(args, src)...)
		cmd.Stdout, cmd.Stderr = out, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w: %s", name, err, stderr.Bytes())
		}
		return out.Close()
	}
}

// copyFile is the identity "compressor" for uncompressed layers.
func copyFile(_ context.Context, dst, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read tar: %w", err)
	}
	return os.WriteFile(dst, data, 0o644)
}

// damage applies edit to a copy of a valid layer: the negative cases
// (trailing bytes, truncation, a wrong checksum).
func damage(dst, src string, edit func([]byte) []byte) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	return os.WriteFile(dst, edit(data), 0o644)
}

func appendBytes(extra []byte) func([]byte) []byte {
	return func(b []byte) []byte { return append(b, extra...) }
}

func truncateTo(fraction float64) func([]byte) []byte {
	return func(b []byte) []byte { return b[:int(float64(len(b))*fraction)] }
}

func dropLast(n int) func([]byte) []byte {
	return func(b []byte) []byte { return b[:len(b)-n] }
}

// flipTrailerByte corrupts byte i of the 8-byte gzip trailer (0-3 CRC-32,
// 4-7 ISIZE). Go's tar pass stops at the end-of-archive blocks and never
// sees it; zlib does.
func flipTrailerByte(i int) func([]byte) []byte {
	return func(b []byte) []byte {
		b[len(b)-8+i] ^= 0xff
		return b
	}
}

// headerWithExtras sets every optional gzip header field Go can write.
func headerWithExtras() gzip.Header {
	return gzip.Header{
		Name:    "layer.tar",
		Comment: "compat corpus: FEXTRA, FNAME and FCOMMENT",
		Extra:   []byte{'S', 'C', 4, 0, 1, 2, 3, 4},
		ModTime: baseTime,
		OS:      3,
	}
}

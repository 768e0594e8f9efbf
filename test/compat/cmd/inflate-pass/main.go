// Command inflate-pass decompresses a gzip layer to nothing with one of the
// Go decoders scripts/bench-ztoc compares:
//
//	inflate-pass -mode gzip LAYER       Go's compress/gzip (CRC checked)
//	inflate-pass -mode klauspost LAYER  klauspost/compress flate with
//	                                    WithEobCallback: every block end
//	                                    reported, the 32 KiB window copied at
//	                                    soci's checkpoints (-span), CRC-32 of
//	                                    the output; the checkpoint pass that
//	                                    library allows
//
// It prints the uncompressed size and, for klauspost, the checkpoint count.
package main

import (
	"bufio"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"

	kflate "github.com/klauspost/compress/flate"
)

func main() {
	mode := flag.String("mode", "gzip", "gzip or klauspost")
	span := flag.Int64("span", 4<<20, "checkpoint distance (klauspost)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: inflate-pass -mode gzip|klauspost LAYER")
		os.Exit(2)
	}
	if err := run(*mode, *span, flag.Arg(0)); err != nil {
		slog.Error("inflate-pass failed", "err", err)
		os.Exit(1)
	}
}

func run(mode string, span int64, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	switch mode {
	case "gzip":
		zr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, zr)
		fmt.Printf("out %d\n", n)
		return err
	case "klauspost":
		if err := skipGzipHeader(br); err != nil {
			return err
		}
		window := make([]byte, 1<<15)
		var last int64
		checkpoints := 1
		fr := kflate.NewReaderOpts(br, kflate.WithEobCallback(func(cp kflate.InflateCheckpoint) {
			if !cp.Final && cp.UncompressedOffset-last > span {
				copy(window, cp.Window)
				last = cp.UncompressedOffset
				checkpoints++
			}
		}))
		crc := crc32.NewIEEE()
		n, err := io.Copy(crc, fr)
		if err != nil {
			return err
		}
		var trailer [8]byte
		if _, err := io.ReadFull(br, trailer[:]); err != nil {
			return fmt.Errorf("trailer: %w", err)
		}
		if got := uint32(trailer[0]) | uint32(trailer[1])<<8 | uint32(trailer[2])<<16 | uint32(trailer[3])<<24; got != crc.Sum32() {
			return errors.New("crc mismatch")
		}
		fmt.Printf("out %d checkpoints %d\n", n, checkpoints)
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// skipGzipHeader reads a gzip member header (single-member streams only).
func skipGzipHeader(r *bufio.Reader) error {
	var h [10]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 {
		return errors.New("not gzip")
	}
	flags := h[3]
	if flags&4 != 0 {
		var x [2]byte
		if _, err := io.ReadFull(r, x[:]); err != nil {
			return err
		}
		if _, err := r.Discard(int(x[0]) | int(x[1])<<8); err != nil {
			return err
		}
	}
	for _, bit := range []byte{8, 16} {
		if flags&bit != 0 {
			if _, err := r.ReadBytes(0); err != nil {
				return err
			}
		}
	}
	if flags&2 != 0 {
		if _, err := r.Discard(2); err != nil {
			return err
		}
	}
	return nil
}

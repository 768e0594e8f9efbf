// Command gunzip-tar reads a gzip tar layer with Go's compress/gzip and
// archive/tar and nothing else: the floor any zTOC builder written in Go
// pays, used as the baseline of scripts/bench-ztoc.
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gunzip-tar LAYER")
		os.Exit(2)
	}
	entries, err := run(os.Args[1])
	if err != nil {
		slog.Error("gunzip-tar failed", "err", err)
		os.Exit(1)
	}
	fmt.Printf("entries %d\n", entries)
}

func run(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 256<<10))
	if err != nil {
		return 0, err
	}
	tr := tar.NewReader(zr)
	for n := 0; ; n++ {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// Read to the end of the gzip stream, as a builder must to check
			// the trailer.
			_, err = io.Copy(io.Discard, zr)
			return n, err
		}
		if err != nil {
			return n, err
		}
	}
}

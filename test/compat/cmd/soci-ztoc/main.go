// Command soci-ztoc builds a zTOC with awslabs/soci-snapshotter v0.16.1's
// library, exactly as its CLI does (BuildZtoc, then Marshal), and writes it
// to a file. It is the soci side of scripts/bench-ztoc.
//
//	soci-ztoc -span 4194304 -o layer.ztoc layer.tar.gz
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/awslabs/soci-snapshotter/ztoc"
	"github.com/awslabs/soci-snapshotter/ztoc/compression"
	"github.com/opencontainers/go-digest"
)

func main() {
	span := flag.Int64("span", 1<<22, "span size in uncompressed bytes")
	output := flag.String("o", "", "zTOC file to write (required)")
	algorithm := flag.String("compression", compression.Gzip, "gzip or uncompressed")
	flag.Parse()
	if *output == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: soci-ztoc [-span N] [-compression gzip|uncompressed] -o ZTOC LAYER")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *output, *span, *algorithm); err != nil {
		slog.Error("soci-ztoc failed", "err", err)
		os.Exit(1)
	}
}

func run(layer, output string, span int64, algorithm string) (err error) {
	z, err := ztoc.NewBuilder("AWS SOCI CLI v0.2").BuildZtoc(layer, span, ztoc.WithCompression(algorithm))
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	r, _, err := ztoc.Marshal(z)
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	f, err := os.Create(output)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	h := digest.SHA256.Digester()
	n, err := io.Copy(io.MultiWriter(f, h.Hash()), r)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	fmt.Printf("ztoc  %s %d %s\n", h.Digest(), n, output)
	return nil
}

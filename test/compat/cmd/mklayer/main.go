// Command mklayer writes a gzip layer blob made from real files of the
// machine, for benchmarks: a tar of the given directories, walked in lexical
// order, compressed with Go's compress/gzip as Docker and containerd do. The
// file-data limit is shared evenly between the directories.
//
//	mklayer -o layer.tar.gz -limit 536870912 -level 6 /usr/bin /usr/lib /usr/share
package main

import (
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"

	"github.com/soci-indexer/soci-indexer/test/compat/corpus"
)

func main() {
	output := flag.String("o", "", "layer file to write (required)")
	limit := flag.Int64("limit", 512<<20, "stop after this many bytes of file data (0: no limit)")
	level := flag.Int("level", gzip.DefaultCompression, "gzip level (0-9, -1 for the default)")
	flag.Parse()
	if *output == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: mklayer -o FILE [-limit BYTES] [-level N] DIR...")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *output, *limit, *level, flag.Args()); err != nil {
		slog.Error("mklayer failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, output string, limit int64, level int, roots []string) (err error) {
	f, err := os.Create(output)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	zw, err := gzip.NewWriterLevel(f, level)
	if err != nil {
		return err
	}
	data, err := corpus.WriteTreeTar(ctx, zw, roots, limit/int64(len(roots)))
	if err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("close gzip: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	slog.Info("layer written", "path", output, "file_data_bytes", data, "layer_bytes", st.Size())
	return nil
}

package corpus

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"testing"
)

// TestGenerate checks that every valid layer decodes with Go's gzip and tar
// readers to the archive it was made from, and that the layer list covers
// the cases the suite relies on.
func TestGenerate(t *testing.T) {
	layers, err := Generate(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var refused, many int
	for _, l := range layers {
		if l.SkipReason != "" {
			t.Logf("%s: skipped: %s", l.Name, l.SkipReason)
			continue
		}
		if l.Refused {
			refused++
			continue
		}
		if l.ManyEntries {
			many++
		}
		got, err := countEntries(l.Path, l.Compression)
		if err != nil {
			t.Errorf("%s: read layer: %v", l.Name, err)
			continue
		}
		want, err := countEntries(l.TarPath, Uncompressed)
		if err != nil {
			t.Errorf("%s: read archive: %v", l.Name, err)
			continue
		}
		if got != want || got == 0 {
			t.Errorf("%s: %d entries in the layer, %d in the archive", l.Name, got, want)
		}
		if l.ManyEntries && got <= 100_000 {
			t.Errorf("%s: %d entries, want more than 100000", l.Name, got)
		}
	}
	if refused < 8 || many != 1 {
		t.Errorf("corpus has %d refused and %d many-entry layers, want >= 8 and 1", refused, many)
	}
}

func countEntries(path, compression string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if compression == Gzip {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return 0, err
		}
		r = zr
	}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if _, err := tr.Next(); errors.Is(err, io.EOF) {
			return n, nil
		} else if err != nil {
			return n, err
		}
	}
}

package ztoc

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// gnuSparseTar makes, with GNU tar, a PAX tar holding a regular file, a
// sparse file (1 MiB with 4 KiB of data in the middle, made with truncate
// and dd) in GNU's PAX sparse format version, and another regular file.
func gnuSparseTar(t *testing.T, version string) []byte {
	t.Helper()
	tarPath, err := exec.LookPath("tar")
	if err != nil {
		t.Fatalf("GNU tar is needed: %v", err)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), textData(1, 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	run("truncate", "-s", "1M", "sparse")
	run("dd", "if=a", "of=sparse", "bs=1024", "seek=500", "count=2", "conv=notrunc")
	if err := os.WriteFile(filepath.Join(dir, "z"), textData(2, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	run(tarPath, "--sparse", "--sparse-version="+version, "--format=pax", "-cf", "layer.tar", "a", "sparse", "z")
	data, err := os.ReadFile(filepath.Join(dir, "layer.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("GNU.sparse.")) {
		t.Fatalf("tar --sparse-version=%s wrote no GNU.sparse records (is it GNU tar?)", version)
	}
	return data
}

// TestBuildRefusesGNUSparse: a GNU sparse file in each PAX version fails the
// build with ErrUnservableLayer (soci would write a zTOC its reader refuses,
// or reads the wrong bytes from), and BuildTo writes nothing.
func TestBuildRefusesGNUSparse(t *testing.T) {
	for _, version := range []string{"0.0", "0.1", "1.0"} {
		t.Run(version, func(t *testing.T) {
			raw := gnuSparseTar(t, version)
			for name, tc := range map[string]struct {
				layer []byte
				opts  []BuildOption
			}{
				"gzip":         {gzipBytes(t, raw, gzip.BestSpeed), nil},
				"uncompressed": {raw, []BuildOption{WithCompression(Uncompressed)}},
			} {
				_, err := Build(context.Background(), bytes.NewReader(tc.layer), tc.opts...)
				if !errors.Is(err, ErrUnservableLayer) {
					t.Fatalf("%s: Build err = %v, want ErrUnservableLayer", name, err)
				}
				var out bytes.Buffer
				if _, err := BuildTo(context.Background(), bytes.NewReader(tc.layer), &out, tc.opts...); !errors.Is(err, ErrUnservableLayer) {
					t.Fatalf("%s: BuildTo err = %v, want ErrUnservableLayer", name, err)
				}
				if out.Len() != 0 {
					t.Fatalf("%s: BuildTo wrote %d bytes of a refused zTOC", name, out.Len())
				}
			}
		})
	}
}

// TestSparseEntryDoesNotReadBack shows why the layer is refused: the entry
// archive/tar reports for a sparse file claims more bytes than the tar
// stream holds for it, so a reader going by offset and size reads into the
// next entry (soci's reader refuses the overlap).
func TestSparseEntryDoesNotReadBack(t *testing.T) {
	raw := gnuSparseTar(t, "1.0")
	hdrs, offsets, _ := referenceTOC(t, raw)
	for i, h := range hdrs {
		if h.Name != "sparse" {
			continue
		}
		// The 1 MiB the reader would serve run past the 4 KiB stored, into
		// the next entry's header: the TOC would overlap it.
		if i+1 >= len(offsets) || offsets[i]+h.Size <= offsets[i+1] {
			t.Fatalf("sparse entry at %d, size %d does not overlap the next entry", offsets[i], h.Size)
		}
		return
	}
	t.Fatal("no sparse entry")
}

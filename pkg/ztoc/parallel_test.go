package ztoc

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"testing"
)

// TestBuildParallelIdentical forces the parallel inflater with small chunks
// and checks that the zTOC bytes equal the in-order build's, at several
// span sizes, for Go gzip levels, a sync-flushed and a multi-member stream
// (and pigz's output when pigz is installed).
func TestBuildParallelIdentical(t *testing.T) {
	raw := makeTar(t, corpusEntries())
	layers := map[string][]byte{
		"level1": gzipBytes(t, raw, gzip.BestSpeed),
		"level6": gzipBytes(t, raw, gzip.DefaultCompression),
	}
	var flushed bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&flushed, 6)
	for p := raw; len(p) > 0; p = p[min(len(p), 100<<10):] {
		zw.Write(p[:min(len(p), 100<<10)])
		zw.Flush()
	}
	zw.Close()
	layers["syncflush"] = flushed.Bytes()
	half := len(raw) / 2
	layers["members"] = append(gzipBytes(t, raw[:half], 6), gzipBytes(t, raw[half:], 1)...)
	if pigz, err := exec.LookPath("pigz"); err == nil {
		cmd := exec.Command(pigz, "-c", "-p", "2")
		cmd.Stdin = bytes.NewReader(raw)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		layers["pigz"] = out
	}
	for name, layer := range layers {
		for _, span := range []int64{64 << 10, 0} {
			want := marshal(t, build(t, layer, WithSpanSize(span)))
			for _, chunk := range []int{16 << 10} {
				t.Run(fmt.Sprintf("%s/span%d/chunk%d", name, span, chunk), func(t *testing.T) {
					got := marshal(t, build(t, layer, WithSpanSize(span), WithParallelInflate(2, chunk)))
					if !bytes.Equal(got, want) {
						t.Fatalf("parallel build: %d bytes differ from the in-order build's %d", len(got), len(want))
					}
				})
			}
		}
	}
}

// TestBuildParallelCorrupt: damage still fails the build.
func TestBuildParallelCorrupt(t *testing.T) {
	layer := gzipBytes(t, makeTar(t, corpusEntries()), 6)
	bad := bytes.Clone(layer)
	bad[len(bad)*3/4] ^= 0x40
	_, err := Build(context.Background(), bytes.NewReader(bad), WithParallelInflate(2, 16<<10))
	if !errors.Is(err, ErrCorruptLayer) {
		t.Fatalf("err = %v, want ErrCorruptLayer", err)
	}
	_, err = Build(context.Background(), bytes.NewReader(layer[:len(layer)/2]), WithParallelInflate(2, 16<<10))
	if !errors.Is(err, ErrCorruptLayer) {
		t.Fatalf("truncated: err = %v, want ErrCorruptLayer", err)
	}
}

func marshal(t *testing.T, z *Ztoc) []byte {
	t.Helper()
	b, err := Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package ztoc

import (
	"bytes"
	"context"
	"testing"
)

// FuzzBuild feeds arbitrary bytes to Build as a gzip and as an uncompressed
// layer: it must return an error or a zTOC that encodes, decodes and reads
// back, and never panic.
func FuzzBuild(f *testing.F) {
	small := makeTar(f, corpusEntries()[:4])
	f.Add(gzipBytes(f, small, 6))
	f.Add(small)
	f.Fuzz(func(t *testing.T, layer []byte) {
		for _, algorithm := range []Compression{Gzip, Uncompressed} {
			res, err := Build(context.Background(), bytes.NewReader(layer),
				WithCompression(algorithm), WithSpanSize(512))
			if err != nil {
				continue
			}
			b, err := Marshal(res.Ztoc)
			if err != nil {
				t.Fatalf("%s: marshal: %v", algorithm, err)
			}
			z, err := Unmarshal(b)
			if err != nil {
				// soci writes zTOCs its reader refuses (empty first
				// block); anything else is a bug.
				spans, _ := res.Ztoc.Spans()
				t.Logf("%s: unmarshal: %v (%d spans)", algorithm, err, len(spans))
				continue
			}
			spans, err := z.Spans()
			if err != nil {
				t.Fatalf("%s: spans: %v", algorithm, err)
			}
			for _, s := range spans {
				if _, err := z.ReadSpan(context.Background(), bytes.NewReader(layer), s.ID); err != nil {
					t.Fatalf("%s: span %d: %v", algorithm, s.ID, err)
				}
			}
		}
	})
}

// FuzzUnmarshal decodes arbitrary bytes: an error or a zTOC that encodes
// and decodes again, never a panic.
func FuzzUnmarshal(f *testing.F) {
	raw := makeTar(f, corpusEntries()[:4])
	for _, layer := range [][]byte{raw, gzipBytes(f, raw, 1)} {
		algorithm := Gzip
		if bytes.Equal(layer, raw) {
			algorithm = Uncompressed
		}
		res, err := Build(context.Background(), bytes.NewReader(layer), WithCompression(algorithm))
		if err != nil {
			f.Fatal(err)
		}
		b, err := Marshal(res.Ztoc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		z, err := Unmarshal(b)
		if err != nil {
			return
		}
		again, err := Marshal(z)
		if err != nil {
			return // an algorithm name Marshal does not know
		}
		if _, err := Unmarshal(again); err != nil {
			t.Fatalf("re-encoded zTOC does not decode: %v", err)
		}
	})
}

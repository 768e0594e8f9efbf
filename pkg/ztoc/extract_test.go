package ztoc

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// checkExtract extracts every regular file through a marshalled and decoded
// copy of z and compares it with the tar stream.
func checkExtract(t *testing.T, z *Ztoc, layer, stream []byte) {
	t.Helper()
	encoded, err := Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := Unmarshal(encoded)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range decoded.FileMetadata {
		if f.Type != "reg" {
			continue
		}
		got, err := decoded.ExtractFile(context.Background(), bytes.NewReader(layer), f.Name)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if want := stream[f.UncompressedOffset : f.UncompressedOffset+f.UncompressedSize]; !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes differ from the tar's %d", f.Name, len(got), len(want))
		}
	}
}

func TestExtractEveryFile(t *testing.T) {
	entries := corpusEntries()
	raw := makeTar(t, entries)
	gz := gzipBytes(t, raw, gzip.DefaultCompression)
	for _, span := range []int64{4 << 20, 1 << 20, 64 << 10, 16 << 10, 0} {
		t.Run(fmt.Sprintf("gzip/span=%d", span), func(t *testing.T) {
			checkExtract(t, build(t, gz, WithSpanSize(span)), gz, raw)
		})
		if span == 0 {
			continue
		}
		t.Run(fmt.Sprintf("tar/span=%d", span), func(t *testing.T) {
			checkExtract(t, build(t, raw, WithSpanSize(span), WithCompression(Uncompressed)), raw, raw)
		})
	}
	// The file data equals what was written, not only the tar slice.
	z := build(t, gz, WithSpanSize(64<<10))
	for _, e := range entries {
		if e.hdr.Typeflag != '0' {
			continue
		}
		got, err := z.ExtractFile(context.Background(), bytes.NewReader(gz), e.hdr.Name)
		if err != nil || !bytes.Equal(got, e.data) {
			t.Errorf("%s: %v", e.hdr.Name, err)
		}
	}
	if _, err := z.ExtractFile(context.Background(), bytes.NewReader(gz), "dot/prefixed"); err != nil {
		t.Errorf("cleaned name lookup: %v", err)
	}
	if _, err := z.ExtractFile(context.Background(), bytes.NewReader(gz), "missing"); !errors.Is(err, ErrFileNotFound) {
		t.Errorf("missing file: %v", err)
	}
}

// Only regular files have data: a hard link extracts its target's, and a
// directory, symbolic link, device or fifo is an error, never an empty file.
func TestExtractNonRegularEntries(t *testing.T) {
	entries := corpusEntries()
	gz := gzipBytes(t, makeTar(t, entries), gzip.DefaultCompression)
	z := build(t, gz, WithSpanSize(64<<10))
	layer := bytes.NewReader(gz)
	one, err := z.ExtractFile(context.Background(), layer, "etc/one")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := z.ExtractFile(context.Background(), layer, "etc/hardlink"); err != nil || !bytes.Equal(got, one) {
		t.Errorf("hard link: %d bytes, %v; want the %d bytes of its target", len(got), err, len(one))
	}
	for name, what := range map[string]string{"etc/": "directory", "etc/symlink": "symbolic link", "dev/null": "char",
		"dev/sda": "block", "run/fifo": "fifo"} {
		var buf bytes.Buffer
		err := z.ExtractFileTo(context.Background(), layer, name, &buf)
		if !errors.Is(err, ErrNotRegularFile) || !strings.Contains(err.Error(), what) || buf.Len() != 0 {
			t.Errorf("%s: err = %v, %d bytes written; want ErrNotRegularFile naming a %s and nothing written", name, err, buf.Len(), what)
		}
	}
}

func TestExtractDetectsCorruptSpan(t *testing.T) {
	raw := makeTar(t, corpusEntries())
	for _, tc := range []struct {
		name  string
		layer []byte
		opts  []BuildOption
	}{
		{"gzip", gzipBytes(t, raw, gzip.BestSpeed), nil},
		{"tar", raw, []BuildOption{WithCompression(Uncompressed)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := build(t, tc.layer, append(tc.opts, WithSpanSize(1<<20))...)
			f, err := z.Lookup("usr/lib/big.bin")
			if err != nil {
				t.Fatal(err)
			}
			id, err := z.SpanOf(f.UncompressedOffset + f.UncompressedSize/2)
			if err != nil {
				t.Fatal(err)
			}
			spans, _ := z.Spans()
			bad := bytes.Clone(tc.layer)
			bad[spans[id].EndCompressed-2] ^= 0x40
			_, err = z.ExtractFile(context.Background(), bytes.NewReader(bad), f.Name)
			if !errors.Is(err, ErrSpanDigestMismatch) {
				t.Errorf("got %v, want span digest mismatch", err)
			}
		})
	}
}

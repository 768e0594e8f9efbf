package ztoc

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// manyEntries is a layer whose TOC spans several fileChunks chunks and
// whose checkpoints, at a small span, span several zinfoWriter chunks.
func manyEntries(n int) []testEntry {
	mtime := time.Date(2022, 3, 4, 5, 6, 7, 0, time.UTC)
	entries := corpusEntries()
	for i := range n {
		data := textData(uint64(i), 300+i%900)
		entries = append(entries, testEntry{hdr: tar.Header{
			Typeflag: tar.TypeReg, Name: fmt.Sprintf("usr/share/many/%04d.txt", i), Size: int64(len(data)),
			Mode: 0o644, Uid: i % 3, Gid: i % 5, Uname: []string{"root", "daemon", ""}[i%3], ModTime: mtime,
		}, data: data})
	}
	return entries
}

// BuildTo writes the bytes Marshal gives for Build's zTOC of the same
// layer, with the TOC and checkpoints written from the chunks they were
// collected in.
func TestBuildToMatchesMarshal(t *testing.T) {
	raw := makeTar(t, manyEntries(2*fileChunkEntries+17))
	cases := []struct {
		name   string
		layer  []byte
		opts   []BuildOption
		chunks int // at least this many checkpoints
	}{
		{"gzip 16 KiB spans", gzipBytes(t, raw, gzip.BestSpeed), []BuildOption{WithSpanSize(16 << 10)}, 3},
		{"gzip one entry", gzipBytes(t, makeTar(t, corpusEntries()[:2]), gzip.BestCompression), nil, 1},
		{"uncompressed", raw, []BuildOption{WithCompression(Uncompressed), WithSpanSize(64 << 10)}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := Marshal(build(t, c.layer, c.opts...))
			if err != nil {
				t.Fatal(err)
			}
			if c.chunks > 0 {
				b, err := buildLayer(context.Background(), bytes.NewReader(c.layer), c.opts)
				if err != nil {
					t.Fatal(err)
				}
				if got := b.zinfo.count(); got < c.chunks {
					t.Fatalf("%d checkpoints, want at least %d for this test to mean anything", got, c.chunks)
				}
			}
			var buf bytes.Buffer
			res, err := BuildTo(context.Background(), bytes.NewReader(c.layer), &buf, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("BuildTo wrote %d bytes that differ from Marshal's %d", buf.Len(), len(want))
			}
			if res.ZtocSize != int64(len(want)) || res.LayerDigest != digest.FromBytes(c.layer) || res.LayerSize != int64(len(c.layer)) {
				t.Errorf("result %+v, want size %d, layer %s/%d", res, len(want), digest.FromBytes(c.layer), len(c.layer))
			}
		})
	}
}

// The builder is allocated at encodedSizeBound, so the bound must not fall
// short of what is encoded, or the builder would grow and copy itself, and
// should not be far above it.
func TestEncodedSizeBound(t *testing.T) {
	raw := makeTar(t, manyEntries(3000))
	layer := gzipBytes(t, raw, gzip.BestSpeed)
	zs := []*Ztoc{
		build(t, layer, WithSpanSize(16<<10)),
		build(t, raw, WithCompression(Uncompressed)),
		syntheticZtoc(5000, zinfoHeaderSize+50*checkpointSize+3, 50),
		syntheticZtoc(0, 0, 0),
	}
	for i, z := range zs {
		e, err := encode(z)
		if err != nil {
			t.Fatal(err)
		}
		bound := encodedSizeBound(z, fileChunks{z.FileMetadata}, len(z.Checkpoints)-e.missing)
		if bound < len(e.buf) {
			t.Errorf("case %d: bound %d below the encoded %d bytes", i, bound, len(e.buf))
		}
		if slack := bound - len(e.buf); slack > len(e.buf)/4+1024 {
			t.Errorf("case %d: bound %d is %d over the encoded %d bytes", i, bound, slack, len(e.buf))
		}
	}
}

// A failed build writes nothing: a caller that creates its output at the
// first write is left with no half-written zTOC.
func TestBuildToWritesNothingOnError(t *testing.T) {
	layer := gzipBytes(t, makeTar(t, corpusEntries()[:8]), gzip.DefaultCompression)
	truncated := layer[:len(layer)-100]
	var buf bytes.Buffer
	_, err := BuildTo(context.Background(), bytes.NewReader(truncated), &buf)
	if !errors.Is(err, ErrCorruptLayer) {
		t.Fatalf("error %v, want ErrCorruptLayer", err)
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %d bytes for a failed build", buf.Len())
	}
	_, err = BuildTo(context.Background(), bytes.NewReader(layer), &buf, WithExpectedDigest(digest.FromString("other")))
	var mismatch *DigestMismatchError
	if !errors.As(err, &mismatch) || buf.Len() != 0 {
		t.Errorf("error %v and %d bytes written for a digest mismatch", err, buf.Len())
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		n := w.after
		w.after = 0
		return n, errors.New("disk full")
	}
	w.after -= len(p)
	return len(p), nil
}

func TestBuildToWriteError(t *testing.T) {
	layer := gzipBytes(t, makeTar(t, corpusEntries()[:8]), gzip.DefaultCompression)
	for _, after := range []int{0, 100, 5000} {
		_, err := BuildTo(context.Background(), bytes.NewReader(layer), &failingWriter{after: after})
		if err == nil || err.Error() != "write ztoc: disk full" {
			t.Errorf("after %d bytes: error %v, want the write error", after, err)
		}
	}
}

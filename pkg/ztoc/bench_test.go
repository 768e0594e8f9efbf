package ztoc

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// usrTar returns a tar of regular files from /usr of about limit bytes:
// real binaries, libraries and text, compressing like a real layer.
func usrTar(b *testing.B, limit int64) []byte {
	b.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, root := range []string{"/usr/lib", "/usr/share", "/usr/bin"} {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || int64(buf.Len()) >= limit {
				return filepath.SkipDir
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil || info.Size() > 32<<20 {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			hdr, _ := tar.FileInfoHeader(info, "")
			hdr.Name = path[1:]
			hdr.Size = int64(len(data))
			if tw.WriteHeader(hdr) == nil {
				tw.Write(data)
			}
			return nil
		})
	}
	tw.Close()
	if buf.Len() < 8<<20 {
		b.Skipf("only %d bytes of files under /usr", buf.Len())
	}
	return buf.Bytes()
}

// readLayerBaseline is what any indexer must at least do: gunzip the layer
// and walk its tar entries, with the standard library.
func readLayerBaseline(layer []byte) (int64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		return 0, err
	}
	tr := tar.NewReader(zr)
	var n int64
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		n++
	}
	_, err = io.Copy(io.Discard, zr)
	return n, err
}

// BenchmarkBuild compares Build with the standard-library baseline on the
// same layers in the same run. MB/s is compressed input; out-MB/s is tar.
func BenchmarkBuild(b *testing.B) {
	raw := usrTar(b, 80<<20)
	for _, level := range []int{gzip.BestSpeed, gzip.DefaultCompression} {
		layer := gzipBytes(b, raw, level)
		report := func(b *testing.B) {
			b.SetBytes(int64(len(layer)))
			b.ReportMetric(float64(len(raw))*float64(b.N)/b.Elapsed().Seconds()/1e6, "out-MB/s")
		}
		b.Run(fmt.Sprintf("level=%d/ztoc.Build", level), func(b *testing.B) {
			for b.Loop() {
				if _, err := Build(context.Background(), bytes.NewReader(layer)); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(fmt.Sprintf("level=%d/baseline-gzip+tar", level), func(b *testing.B) {
			for b.Loop() {
				if _, err := readLayerBaseline(layer); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
	b.Run("uncompressed/ztoc.Build", func(b *testing.B) {
		for b.Loop() {
			if _, err := Build(context.Background(), bytes.NewReader(raw), WithCompression(Uncompressed)); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(raw)))
	})
}

func BenchmarkMarshal(b *testing.B) {
	raw := usrTar(b, 32<<20)
	z := build(&testing.T{}, gzipBytes(b, raw, gzip.BestSpeed))
	blob, _ := Marshal(z)
	b.Run("marshal", func(b *testing.B) {
		b.SetBytes(int64(len(blob)))
		for b.Loop() {
			Marshal(z)
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(blob)))
		for b.Loop() {
			Unmarshal(blob)
		}
	})
}

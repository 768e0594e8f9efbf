package inflate

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

const benchTarSize = 96 << 20

// benchTar builds a tar of real files from /usr/lib and /usr/share: a
// realistic container layer (binaries, libraries, text, docs).
var benchTar = sync.OnceValue(func() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, root := range []string{"/usr/lib", "/usr/share"} {
		filepath.WalkDir(root, func(path string, de fs.DirEntry, err error) error {
			if err != nil || buf.Len() >= benchTarSize {
				return filepath.SkipDir
			}
			if !de.Type().IsRegular() {
				return nil
			}
			info, err := de.Info()
			if err != nil || info.Size() > 8<<20 {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			hdr, _ := tar.FileInfoHeader(info, "")
			hdr.Name = path
			hdr.Size = int64(len(data))
			if tw.WriteHeader(hdr) == nil {
				tw.Write(data)
			}
			return nil
		})
	}
	tw.Close()
	return buf.Bytes()
})

var benchGzip = struct {
	sync.Mutex
	m map[int][]byte
}{m: map[int][]byte{}}

func benchInput(b *testing.B, level int) []byte {
	benchGzip.Lock()
	defer benchGzip.Unlock()
	if gz, ok := benchGzip.m[level]; ok {
		return gz
	}
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, level)
	w.Write(benchTar())
	w.Close()
	benchGzip.m[level] = buf.Bytes()
	return buf.Bytes()
}

func benchmarkDecode(b *testing.B, level int, newReader func(io.Reader) io.Reader) {
	gz := benchInput(b, level)
	b.SetBytes(int64(len(benchTar())))
	b.ResetTimer()
	for range b.N {
		n, err := io.Copy(io.Discard, newReader(bytes.NewReader(gz)))
		if err != nil || n != int64(len(benchTar())) {
			b.Fatalf("decoded %d bytes: %v", n, err)
		}
	}
}

func BenchmarkGzipReader(b *testing.B) {
	for _, level := range []int{1, 6} {
		b.Run("level"+string(rune('0'+level)), func(b *testing.B) {
			b.Run("inflate", func(b *testing.B) {
				benchmarkDecode(b, level, func(r io.Reader) io.Reader {
					return NewGzipReader(r, func(Boundary) error { return nil })
				})
			})
			b.Run("compress-gzip", func(b *testing.B) {
				benchmarkDecode(b, level, func(r io.Reader) io.Reader {
					z, err := gzip.NewReader(r)
					if err != nil {
						b.Fatal(err)
					}
					return z
				})
			})
		})
	}
}

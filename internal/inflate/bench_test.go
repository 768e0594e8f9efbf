package inflate

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
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
	size := int64(len(benchTar()))
	b.SetBytes(size)
	b.ResetTimer()
	cpu0 := processCPUTime()
	for range b.N {
		n, err := io.Copy(io.Discard, newReader(bytes.NewReader(gz)))
		if err != nil || n != size {
			b.Fatalf("decoded %d bytes: %v", n, err)
		}
	}
	// The machine is shared: CPU time is steadier than wall time.
	cpu := processCPUTime() - cpu0
	b.ReportMetric(float64(size)*float64(b.N)/cpu.Seconds()/1e6, "cpu-MB/s")
}

// processCPUTime returns the user+system CPU time of this process.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkGzipReader(b *testing.B) {
	for _, level := range []int{1, 6} {
		b.Run("level"+string(rune('0'+level)), func(b *testing.B) {
			b.Run("inflate", func(b *testing.B) {
				benchmarkDecode(b, level, func(r io.Reader) io.Reader {
					return NewGzipReader(r, func(Boundary) error { return nil })
				})
			})
			b.Run("zlib-pigz", func(b *testing.B) { benchmarkPigz(b, level) })
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

// benchmarkPigz times "pigz -dc" (zlib's inflate, with CRC on a second
// thread) on the same input as a native reference. Its CPU time is the
// child's.
func benchmarkPigz(b *testing.B, level int) {
	pigz, err := exec.LookPath("pigz")
	if err != nil {
		b.Skip("pigz not installed")
	}
	f, err := os.CreateTemp(b.TempDir(), "bench-*.gz")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Write(benchInput(b, level)); err != nil {
		b.Fatal(err)
	}
	f.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	size := int64(len(benchTar()))
	b.SetBytes(size)
	b.ResetTimer()
	var cpu time.Duration
	for range b.N {
		cmd := exec.Command(pigz, "-dc", f.Name())
		cmd.Stdout = devNull
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	b.ReportMetric(float64(size)*float64(b.N)/cpu.Seconds()/1e6, "cpu-MB/s")
}

package ztoc

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"io"
	"runtime"
	runtimemetrics "runtime/metrics"
	"sync"
	"testing"
	"time"
)

// zeroReader yields n zero bytes.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), z.n)]
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// streamLayer writes a gzip tar holding one file of size zero bytes (and a
// few small files) to a pipe, as a registry download would deliver it.
func streamLayer(size int64) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		tw := tar.NewWriter(zw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "before", Size: 5, Mode: 0o644})
		if err == nil {
			_, err = tw.Write([]byte("hello"))
		}
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Size: size, Mode: 0o644})
		}
		if err == nil {
			_, err = io.Copy(tw, &zeroReader{n: size})
		}
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "after", Mode: 0o644})
		}
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// The builder's memory is the zTOC plus a few buffers, however large the
// layer: here 1 GiB of tar.
func TestBuildMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 1 GiB; skipped with -short")
	}
	const size = 1 << 30
	layer := streamLayer(size)
	defer layer.Close()

	// The live heap after each GC is what the build retains; the total
	// heap also holds garbage the collector has not reached yet, which
	// depends on the machine's load.
	live := []runtimemetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtime.GC()
	runtimemetrics.Read(live)
	base := live[0].Value.Uint64()
	var (
		peak uint64
		mu   sync.Mutex
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				runtimemetrics.Read(live)
				mu.Lock()
				peak = max(peak, live[0].Value.Uint64())
				mu.Unlock()
			}
		}
	}()
	res, err := Build(context.Background(), layer)
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	z := res.Ztoc
	if z.UncompressedArchiveSize < size || len(z.FileMetadata) != 3 {
		t.Fatalf("tar size %d, %d entries", z.UncompressedArchiveSize, len(z.FileMetadata))
	}
	limit := base + uint64(len(z.Checkpoints)) + 64<<20
	t.Logf("peak live heap %d MiB (start %d MiB), zTOC checkpoints %d MiB, %d spans",
		peak>>20, base>>20, len(z.Checkpoints)>>20, z.MaxSpanID+1)
	if peak == 0 || peak > limit {
		t.Errorf("peak live heap %d MiB, limit %d MiB", peak>>20, limit>>20)
	}
}

package inflate

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"fmt"
	"sync"
	"testing"
)

// Decoders share only the fixed Huffman tables, built once on first use.
// Several decoders starting at once, over fixed and dynamic blocks, must
// not race on them; scripts/test runs this test under the race detector
// (the package's other tests are single-goroutine and run without it).
func TestConcurrentDecoders(t *testing.T) {
	var streams, want [][]byte
	for i, level := range []int{flate.HuffmanOnly, 1, 6, 9} {
		for _, size := range []int{40, 3000, 200_000} { // short inputs get fixed-Huffman blocks
			data := genData("text", size, uint64(10*i+size))
			streams = append(streams, gzipWith(t, data, level, 0, gzip.Header{}))
			want = append(want, data)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(streams))
	for g := range 8 {
		wg.Go(func() {
			for i := range streams {
				j := (i + g) % len(streams) // each goroutine starts on a different stream
				res, err := decodeGzip(streams[j], false)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d, stream %d: %w", g, j, err)
					continue
				}
				if !bytes.Equal(res.out, want[j]) {
					errs <- fmt.Errorf("goroutine %d, stream %d: wrong output", g, j)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

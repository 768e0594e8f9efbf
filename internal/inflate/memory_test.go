package inflate

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"runtime"
	"testing"
)

// zeroBomb returns a gzip member that decodes to n zero bytes using one
// fixed-Huffman block of maximal matches (about 13 bits per 258 bytes).
func zeroBomb(n int64) []byte {
	var out []byte
	var acc uint64
	var nbits uint
	put := func(v uint64, bits uint) {
		acc |= v << nbits
		nbits += bits
		for nbits >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			nbits -= 8
		}
	}
	putCode := func(c huffCode) {
		for i := int(c.n) - 1; i >= 0; i-- {
			put(uint64(c.value>>uint(i))&1, 1)
		}
	}
	out = append(out, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff)
	put(1, 1)
	put(1, 2)
	putCode(lit(0))
	left := n - 1
	for ; left >= 258; left -= 258 {
		putCode(code(0xc5, 8)) // length 258
		putCode(code(0, 5))    // distance 1
	}
	for ; left > 0; left-- {
		putCode(lit(0))
	}
	putCode(code(0, 7)) // end of block
	if nbits > 0 {
		out = append(out, byte(acc))
	}
	zeros := make([]byte, 1<<20)
	var crc uint32
	for left := n; left > 0; left -= int64(len(zeros)) {
		crc = crc32.Update(crc, crc32.IEEETable, zeros[:min(left, int64(len(zeros)))])
	}
	out = binary.LittleEndian.AppendUint32(out, crc)
	return binary.LittleEndian.AppendUint32(out, uint32(n))
}

// TestMemoryIsConstant decodes 1 GiB of zeros (a "gzip bomb") and checks it
// is simply a long stream decoded with a fixed amount of memory.
func TestMemoryIsConstant(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	gz := zeroBomb(size)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var maxHeap uint64
	boundaries := 0
	z := NewGzipReader(bytes.NewReader(gz), func(b Boundary) error {
		boundaries++
		return nil
	})
	buf := make([]byte, 1<<20)
	var total int64
	for chunks := 0; ; chunks++ {
		n, err := z.Read(buf)
		if bytes.Count(buf[:n], []byte{0}) != n {
			t.Fatalf("non-zero byte in the output after %d bytes", total)
		}
		total += int64(n)
		if chunks%256 == 0 {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			maxHeap = max(maxHeap, m.HeapAlloc)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if total != size {
		t.Fatalf("decoded %d bytes, want %d", total, size)
	}
	if boundaries != 2 {
		t.Errorf("got %d boundaries, want 2 (header, final block)", boundaries)
	}
	const limit = 4 << 20
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > limit {
		t.Errorf("decoding allocated %d bytes, want at most %d", allocated, limit)
	}
	if grown := int64(maxHeap) - int64(before.HeapAlloc); grown > limit {
		t.Errorf("heap grew by %d bytes while decoding, want at most %d", grown, limit)
	}
}

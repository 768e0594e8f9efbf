package ztoc

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/opencontainers/go-digest"
)

// referenceMarshal encodes z the plain way, with the whole checkpoints
// vector in one growing builder. Marshal must give the same bytes.
func referenceMarshal(z *Ztoc) []byte {
	algorithm := map[Compression]byte{Gzip: fbGzip, Uncompressed: fbUncompressed}[z.CompressionAlgorithm]
	b := flatbuffers.NewBuilder(0)
	version := b.CreateString(z.Version)
	tool := b.CreateString(z.BuildToolIdentifier)
	toc := marshalTOC(b, fileChunks{z.FileMetadata})
	checkpoints := b.CreateByteVector(z.Checkpoints)
	digests := make([]flatbuffers.UOffsetT, len(z.SpanDigests))
	for i, d := range z.SpanDigests {
		digests[i] = b.CreateString(d.String())
	}
	spanDigests := prependOffsets(b, digests)
	b.StartObject(compressionSlots)
	b.PrependInt32Slot(compressionSlotMaxSpanID, int32(z.MaxSpanID), 0)
	b.PrependUOffsetTSlot(compressionSlotSpanDigests, spanDigests, 0)
	b.PrependUOffsetTSlot(compressionSlotCheckpoints, checkpoints, 0)
	if algorithm != 0 {
		b.PrependByteSlot(compressionSlotAlgorithm, algorithm, fbGzip)
	}
	compressionInfo := b.EndObject()
	b.StartObject(ztocSlots)
	b.PrependUOffsetTSlot(ztocSlotVersion, version, 0)
	b.PrependUOffsetTSlot(ztocSlotBuildToolIdentifier, tool, 0)
	b.PrependUOffsetTSlot(ztocSlotTOC, toc, 0)
	b.PrependInt64Slot(ztocSlotCompressedArchiveSize, z.CompressedArchiveSize, 0)
	b.PrependInt64Slot(ztocSlotUncompressedArchiveSize, z.UncompressedArchiveSize, 0)
	b.PrependUOffsetTSlot(ztocSlotCompressionInfo, compressionInfo, 0)
	b.Finish(b.EndObject())
	return b.FinishedBytes()
}

// syntheticZtoc has files entries (every tenth with PAX records) and a
// checkpoints blob of checkpointBytes random bytes; Marshal does not read
// the blob, so it need not decode.
func syntheticZtoc(files, checkpointBytes, spans int) *Ztoc {
	rng := rand.New(rand.NewPCG(uint64(files), uint64(checkpointBytes)))
	z := &Ztoc{
		Version: Version09, BuildToolIdentifier: DefaultBuildToolIdentifier,
		CompressedArchiveSize: 1 << 30, UncompressedArchiveSize: 3 << 30,
		CompressionInfo: CompressionInfo{
			MaxSpanID:            SpanID(spans - 1),
			CompressionAlgorithm: Gzip,
			Checkpoints:          make([]byte, checkpointBytes),
		},
	}
	for i := range z.Checkpoints {
		z.Checkpoints[i] = byte(rng.Uint32())
	}
	for i := range spans {
		z.SpanDigests = append(z.SpanDigests, digest.FromString(fmt.Sprint(i)))
	}
	for i := range files {
		f := FileMetadata{
			Name: fmt.Sprintf("usr/share/%x/file-%d", rng.Uint64(), i), Type: "reg",
			UncompressedOffset: int64(i) * 1024, UncompressedSize: int64(rng.IntN(1 << 20)),
			Mode: 0o644, Uname: "root", Gname: "root",
			ModTime: time.Unix(int64(rng.Uint32()), int64(rng.IntN(2))*5e8),
		}
		if i%10 == 0 {
			f.PAXHeaders = map[string]string{"path": f.Name, "SCHILY.xattr.user.k": "v"}
		}
		if i%7 == 0 {
			f.Type, f.Linkname = "symlink", "../target"
		}
		z.FileMetadata = append(z.FileMetadata, f)
	}
	return z
}

// Marshal leaves most of the checkpoints out of the builder and patches
// the offsets that span them; every residue of the blob's length modulo
// the largest alignment, and each compression, must still give the plain
// encoding's bytes.
func TestMarshalMatchesPlainEncoding(t *testing.T) {
	var cases []*Ztoc
	for extra := range 17 {
		z := syntheticZtoc(40, zinfoHeaderSize+checkpointSize+extra, 2)
		cases = append(cases, z)
	}
	z := syntheticZtoc(3, 5, 1)
	z.CompressionAlgorithm = ""
	cases = append(cases, z, tinyZtoc(nil), syntheticZtoc(0, 0, 0))

	layer := gzipBytes(t, makeTar(t, corpusEntries()), gzip.BestSpeed)
	res, err := Build(context.Background(), bytes.NewReader(layer), WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, res.Ztoc)

	for i, z := range cases {
		want := referenceMarshal(z)
		got, err := Marshal(z)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d (%d checkpoint bytes): Marshal differs from the plain encoding", i, len(z.Checkpoints))
		}
		var buf bytes.Buffer
		n, err := z.WriteTo(&buf)
		if err != nil || n != int64(len(want)) || !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("case %d: WriteTo wrote %d bytes (err %v), differs: %t", i, n, err, !bytes.Equal(buf.Bytes(), want))
		}
	}
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Marshal allocates its output once and the encoded TOC beside it, not a
// doubling builder holding a copy of the checkpoints; WriteTo does not copy
// the checkpoints at all. On a zTOC shaped like a big layer's (checkpoints
// two thirds of it), the plain encoding allocates about four times its
// output.
func TestMarshalAllocations(t *testing.T) {
	z := syntheticZtoc(20000, zinfoHeaderSize+200*checkpointSize, 200)
	var out []byte
	marshal := allocated(func() {
		var err error
		if out, err = Marshal(z); err != nil {
			t.Fatal(err)
		}
	})
	plain := allocated(func() { referenceMarshal(z) })
	var written int64
	writeTo := allocated(func() {
		var err error
		if written, err = z.WriteTo(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
	size := uint64(len(out))
	t.Logf("output %d KiB (checkpoints %d KiB); allocated: Marshal %d KiB, WriteTo %d KiB, plain encoding %d KiB",
		size>>10, len(z.Checkpoints)>>10, marshal>>10, writeTo>>10, plain>>10)
	if written != int64(size) {
		t.Errorf("WriteTo wrote %d bytes, Marshal returned %d", written, size)
	}
	if marshal > size*5/2 {
		t.Errorf("Marshal allocated %d bytes for %d of output, over 2.5 times", marshal, size)
	}
	if toc := size - uint64(len(z.Checkpoints)); writeTo > toc*2 {
		t.Errorf("WriteTo allocated %d bytes for %d of output besides the checkpoints, over twice that", writeTo, toc)
	}
}

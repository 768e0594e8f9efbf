package ztoc

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// The TarZinfo bytes soci v0.16.1 writes for a 6300160-byte tar and 1 MiB
// spans (docs/format.md section 4).
func TestTarZinfoBytes(t *testing.T) {
	want, _ := hex.DecodeString(strings.ReplaceAll(
		"14000000 00000000 00000a00 1c001800 0c000400 0a000000 00226000 00000000 00001000 00000000 00000000 02000000", " ", ""))
	got := encodeTarZinfo(1<<20, 6300160)
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	zi, err := decodeTarZinfo(got)
	if err != nil || zi.spanSize != 1<<20 || zi.size != 6300160 || zi.maxSpanID() != 6 {
		t.Fatalf("decoded %+v, %v", zi, err)
	}
}

// A gzip zTOC of soci v0.16.1 starts with root offset 0x18, 4 bytes of
// padding and the 16-byte Ztoc vtable (section 2.2).
func TestMarshalGzipSignature(t *testing.T) {
	layer := gzipBytes(t, makeTar(t, corpusEntries()[:4]), gzip.BestSpeed)
	b, err := Marshal(build(t, layer))
	if err != nil {
		t.Fatal(err)
	}
	if root := binary.LittleEndian.Uint32(b); root != 0x18 || binary.LittleEndian.Uint32(b[4:]) != 0 {
		t.Errorf("root offset %#x, padding %x", root, b[4:8])
	}
	if vt := binary.LittleEndian.Uint16(b[8:]); vt != 16 {
		t.Errorf("vtable length %d, want 16 (6 fields)", vt)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	raw := makeTar(t, corpusEntries())
	for name, z := range map[string]*Ztoc{
		"gzip":         build(t, gzipBytes(t, raw, gzip.DefaultCompression), WithSpanSize(1<<20)),
		"uncompressed": build(t, raw, WithCompression(Uncompressed), WithSpanSize(1<<20)),
		"tool":         build(t, raw, WithCompression(Uncompressed), WithBuildToolIdentifier("soci-indexer test")),
	} {
		t.Run(name, func(t *testing.T) {
			encoded, err := Marshal(z)
			if err != nil {
				t.Fatal(err)
			}
			decoded, err := Unmarshal(encoded)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Marshal(decoded)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(encoded, again) {
				t.Fatal("decode then encode changed the bytes")
			}
			// Times decode in UTC; compare the instants, then the rest.
			for i := range decoded.FileMetadata {
				if !decoded.FileMetadata[i].ModTime.Equal(z.FileMetadata[i].ModTime) {
					t.Errorf("entry %d: mtime %v, want %v", i, decoded.FileMetadata[i].ModTime, z.FileMetadata[i].ModTime)
				}
				decoded.FileMetadata[i].ModTime = z.FileMetadata[i].ModTime
				if len(z.FileMetadata[i].PAXHeaders) == 0 && len(decoded.FileMetadata[i].PAXHeaders) == 0 {
					decoded.FileMetadata[i].PAXHeaders = z.FileMetadata[i].PAXHeaders
				}
			}
			if !reflect.DeepEqual(decoded, z) {
				t.Errorf("decoded zTOC differs:\n got %+v\nwant %+v", decoded.CompressionInfo.SpanDigests, z.SpanDigests)
			}
		})
	}
}

func TestMarshalModTime(t *testing.T) {
	z := tinyZtoc([]FileMetadata{
		{Name: "a", Type: "reg", UncompressedOffset: 512, ModTime: time.Date(2023, 5, 6, 3, 8, 9, 0, time.FixedZone("EDT", -4*3600))},
		{Name: "b", Type: "reg", UncompressedOffset: 1024, ModTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	})
	b, err := Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("2023-05-06T07:08:09Z")) || bytes.Contains(b, []byte("-04:00")) {
		t.Error("mod time not written in UTC")
	}
	decoded, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	// soci writes "" for a year MarshalText refuses, and reads it back as
	// the zero time.
	if !decoded.FileMetadata[1].ModTime.IsZero() {
		t.Errorf("year 10000 decoded as %v", decoded.FileMetadata[1].ModTime)
	}
}

// tinyZtoc is an uncompressed-layer zTOC around the given entries.
func tinyZtoc(files []FileMetadata) *Ztoc {
	return &Ztoc{
		Version: Version09, BuildToolIdentifier: DefaultBuildToolIdentifier,
		CompressedArchiveSize: 4096, UncompressedArchiveSize: 4096,
		TOC: TOC{FileMetadata: files},
		CompressionInfo: CompressionInfo{
			CompressionAlgorithm: Uncompressed,
			Checkpoints:          encodeTarZinfo(4096, 4096),
			SpanDigests:          []digest.Digest{digest.FromString("span")},
		},
	}
}

func TestUnmarshalReaderRules(t *testing.T) {
	z := tinyZtoc([]FileMetadata{
		{Name: "second", Type: "reg", UncompressedOffset: 2048, UncompressedSize: 10},
		{Name: "first", Type: "reg", UncompressedOffset: 512, UncompressedSize: 600},
	})
	b, _ := Marshal(z)
	decoded, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if decoded.FileMetadata[0].Name != "first" || decoded.FileMetadata[1].TarHeaderOffset != 1536 {
		t.Errorf("entries %+v", decoded.FileMetadata)
	}

	z.FileMetadata[1].UncompressedSize = 1600 // runs into the header of "second"
	b, _ = Marshal(z)
	if _, err := Unmarshal(b); !errors.Is(err, ErrInvalidTOCEntry) {
		t.Errorf("overlap: got %v", err)
	}

	z.FileMetadata[1].UncompressedSize = 600
	z.MaxSpanID = 3
	b, _ = Marshal(z)
	if _, err := Unmarshal(b); !errors.Is(err, ErrInvalidZtoc) {
		t.Errorf("max span mismatch: got %v", err)
	}
}

// A legacy (v1) gzip blob has no checkpoint 0; it is taken as in=10, out=0.
func TestUnmarshalLegacyGzipBlob(t *testing.T) {
	w := newZinfoWriter(1 << 20)
	w.add(5000, 2<<20, 3)
	blob, err := w.bytes()
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(blob, 2)
	z := &Ztoc{CompressedArchiveSize: 9000, UncompressedArchiveSize: 3 << 20, CompressionInfo: CompressionInfo{
		MaxSpanID: 1, Checkpoints: blob, SpanDigests: []digest.Digest{digest.FromString("a"), digest.FromString("b")},
	}}
	b, _ := Marshal(z)
	decoded, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	spans, err := decoded.Spans()
	if err != nil {
		t.Fatal(err)
	}
	if spans[0].StartCompressed != 10 || spans[0].EndCompressed != 5000 || spans[1].StartCompressed != 4999 ||
		spans[1].EndCompressed != 9000 || spans[1].StartUncompressed != 2<<20 || decoded.CompressionAlgorithm != Gzip {
		t.Errorf("spans %+v", spans)
	}
}

// Unmarshal must turn any damage into an error, never a panic or a huge
// allocation.
func TestUnmarshalDamaged(t *testing.T) {
	raw := makeTar(t, corpusEntries()[:6])
	b, err := Marshal(build(t, raw, WithCompression(Uncompressed)))
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(b) {
		if _, err := Unmarshal(b[:n]); err == nil && n < 8 {
			t.Errorf("%d-byte prefix decoded", n)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		damaged := bytes.Clone(b)
		for range 1 + r.IntN(4) {
			damaged[r.IntN(len(damaged))] = byte(r.Uint32())
		}
		Unmarshal(damaged)
	}
	huge := bytes.Clone(b)
	binary.LittleEndian.PutUint32(huge[len(huge)-4:], 0xffffffff)
	Unmarshal(huge)
}

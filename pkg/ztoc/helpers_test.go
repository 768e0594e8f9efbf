package ztoc

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// testEntry is one entry of a generated tar, with its data.
type testEntry struct {
	hdr  tar.Header
	data []byte
}

// textData returns n bytes of deterministic, compressible text.
func textData(seed uint64, n int) []byte {
	words := strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega layer span checkpoint window deflate")
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b bytes.Buffer
	b.Grow(n + 16)
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteByte('\n')
			if r.IntN(4) == 0 { // some incompressible bytes too
				var raw [64]byte
				for i := range raw {
					raw[i] = byte(r.Uint32())
				}
				b.Write(raw[:])
			}
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// corpusEntries covers every entry type and header form soci accepts.
func corpusEntries() []testEntry {
	mtime := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	subsecond := time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC)
	long := strings.Repeat("very-long-directory-name/", 6) + "file.txt"
	reg := func(name string, data []byte, format tar.Format) testEntry {
		return testEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644,
			Uid: 1000, Gid: 1000, Uname: "user", Gname: "group", ModTime: mtime, Format: format}, data: data}
	}
	entries := []testEntry{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: mtime}},
		reg("etc/empty", nil, tar.FormatUSTAR),
		reg("etc/one", []byte("x"), tar.FormatUSTAR),
		reg("etc/block-511", textData(1, 511), tar.FormatUSTAR),
		reg("etc/block-512", textData(2, 512), tar.FormatUSTAR),
		reg("etc/block-513", textData(3, 513), tar.FormatUSTAR),
		reg("./dot/prefixed", textData(4, 4000), tar.FormatUSTAR),
		reg(long, textData(5, 70000), tar.FormatGNU),
		reg("usr/lib/big.bin", textData(6, 3<<20+77), tar.FormatUSTAR),
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "pax/subsecond", Size: 10, Mode: 0o600, ModTime: subsecond,
			Format: tar.FormatPAX}, data: []byte("0123456789")},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "pax/xattrs", Size: 5, Mode: 0o644, ModTime: mtime,
			PAXRecords: map[string]string{
				"SCHILY.xattr.user.text":           "hello",
				"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x00\x00\x00\xff",
				"LIBARCHIVE.xattr.user.other":      "aGk=",
			}}, data: []byte("hello")},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "etc/hardlink", Linkname: "etc/one", ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/symlink", Linkname: "../" + long, ModTime: mtime,
			Format: tar.FormatGNU}},
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, Devminor: 0, ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o644, ModTime: mtime}},
		reg("etc/.wh.removed", nil, tar.FormatUSTAR),
		reg("opt/.wh..wh..opq", nil, tar.FormatUSTAR),
		reg("usr/share/doc.txt", textData(7, 1<<20+3), tar.FormatUSTAR),
		reg("zeros", make([]byte, 2<<20), tar.FormatUSTAR),
		reg("last", textData(8, 100), tar.FormatUSTAR),
	}
	return entries
}

// makeTar writes entries as a tar stream.
func makeTar(t testing.TB, entries []testEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("tar header %s: %v", hdr.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("tar data %s: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, data []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

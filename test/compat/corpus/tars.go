package corpus

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// baseTime is the modification time of generated entries: fixed, so the
// corpus is the same on every run.
var baseTime = time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)

// dataSource makes deterministic file contents. Text compresses well and
// gives Huffman blocks; random bytes make deflate fall back to stored
// blocks. Mixing both gives layers with every kind of block boundary.
type dataSource struct {
	rng *rand.Rand
}

func newDataSource(seed uint64) *dataSource {
	return &dataSource{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

var words = strings.Fields(`layer span checkpoint window deflate inflate member header
	snapshot registry manifest index lazy fetch digest offset block stream archive entry
	container image runtime overlay whiteout opaque symlink hardlink device fifo directory`)

func (s *dataSource) text(n int) []byte {
	var b bytes.Buffer
	b.Grow(n + 16)
	for b.Len() < n {
		b.WriteString(words[s.rng.IntN(len(words))])
		if s.rng.IntN(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func (s *dataSource) random(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(s.rng.Uint32())
	}
	return b
}

// mixed alternates text and random chunks of up to 64 KiB.
func (s *dataSource) mixed(n int) []byte {
	b := make([]byte, 0, n)
	for len(b) < n {
		chunk := min(1+s.rng.IntN(64<<10), n-len(b))
		if s.rng.IntN(3) == 0 {
			b = append(b, s.random(chunk)...)
		} else {
			b = append(b, s.text(chunk)...)
		}
	}
	return b
}

// tarEntry is one entry of a generated archive.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func writeEntries(w io.Writer, entries []tarEntry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == 0 {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("write header %q: %w", hdr.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("write data %q: %w", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close tar: %w", err)
	}
	return nil
}

func dir(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: baseTime}}
}

func file(name string, data []byte) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: baseTime,
		Uname: "root", Gname: "root"}, data: data}
}

// featureEntries is the feature-rich archive: every entry type, every
// header extension Go's tar reader understands and soci records, and file
// sizes around the span sizes under test (16 KiB to 4 MiB).
func featureEntries(src *dataSource) []tarEntry {
	longDir := strings.Repeat("long-directory-name/", 6)
	binaryValue := string([]byte{0x01, 0x00, 0x00, 0x02, 0xff, 0xfe, 0x00, 0x20, 0x80, 0x0a})

	entries := []tarEntry{
		dir("etc/"),
		file("./etc/hostname", []byte("compat\n")),
		dir("usr/"),
		dir("usr/share/"),
		file("empty", nil),
		// Larger than the largest span, so it crosses every span boundary.
		file("usr/share/big.bin", src.mixed(4<<20+123_457)),
	}
	for i := range 12 {
		size := 1 + src.rng.IntN(200<<10)
		entries = append(entries, file(fmt.Sprintf("usr/share/data/file-%02d", i), src.mixed(size)))
	}
	link := tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "etc/hostname.link", Linkname: "./etc/hostname",
		ModTime: baseTime}}
	symlink := tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "lib", Linkname: "usr/lib", Mode: 0o777,
		ModTime: baseTime}}
	devices := []tarEntry{
		dir("dev/"),
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: baseTime}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, Devminor: 0, ModTime: baseTime}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/initctl", Mode: 0o600, ModTime: baseTime}},
	}
	whiteouts := []tarEntry{
		file("usr/.wh.removed", nil),
		dir("usr/share/opaque/"),
		file("usr/share/opaque/.wh..wh..opq", nil),
	}
	pax := []tarEntry{
		// A long name forces a PAX "path" record.
		file(longDir+"pax-long-name.txt", src.text(3000)),
		// A sub-second time forces a PAX "mtime" record.
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "pax/subsecond", Mode: 0o644, Format: tar.FormatPAX,
			ModTime: baseTime.Add(123_456_789 * time.Nanosecond)}, data: src.text(100)},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "pax/xattrs", Mode: 0o755, ModTime: baseTime,
			PAXRecords: map[string]string{
				"SCHILY.xattr.user.comment":        "kept by the snapshotter",
				"SCHILY.xattr.security.capability": binaryValue,
				"LIBARCHIVE.xattr.user.libarchive": "aGVsbG8=",
				"SCHILY.xattr.trusted.empty":       "",
			}}, data: src.text(5000)},
		// Beyond the USTAR range: uid/gid need PAX records.
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "pax/big-ids", Mode: 0o600, Uid: 3_000_000, Gid: 4_000_000,
			Uname: strings.Repeat("u", 40), Gname: "grp", ModTime: baseTime, Format: tar.FormatPAX}, data: []byte("x")},
		// Before 1970: negative Unix time.
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "pax/before-epoch", Mode: 0o644, Format: tar.FormatPAX,
			ModTime: time.Date(1960, 1, 2, 3, 4, 5, 0, time.UTC)}, data: []byte("old\n")},
		// Year 10000: time.MarshalText fails, soci stores an empty mod_time.
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "pax/year-10000", Mode: 0o644, Format: tar.FormatPAX,
			ModTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, data: []byte("future\n")},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "pax/long-link", Linkname: longDir + "target",
			Mode: 0o777, ModTime: baseTime, Format: tar.FormatPAX}},
	}
	gnu := []tarEntry{
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: longDir + "gnu-long-name.txt", Mode: 0o644,
			ModTime: baseTime, Format: tar.FormatGNU}, data: src.text(777)},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "gnu/long-link", Linkname: longDir + "gnu-target",
			Mode: 0o777, ModTime: baseTime, Format: tar.FormatGNU}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "gnu/long-hardlink", Linkname: longDir + "gnu-long-name.txt",
			ModTime: baseTime, Format: tar.FormatGNU}},
		// GNU base-256 numbers.
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "gnu/big-uid", Mode: 0o644, Uid: 5_000_000,
			ModTime: baseTime, Format: tar.FormatGNU}, data: []byte("gnu\n")},
	}
	ustar := []tarEntry{
		// Fits only with the USTAR prefix field.
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("p", 90) + "/" + strings.Repeat("n", 90),
			Mode: 0o644, ModTime: baseTime, Format: tar.FormatUSTAR}, data: src.text(10)},
		// Mode with file-type bits, as some old tools write.
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "mode-with-type-bits", Mode: 0o100755 | 0o4000,
			ModTime: baseTime}, data: []byte("#!/bin/sh\n")},
		dir("usr/share/./odd//name/"),
	}

	entries = append(entries, link, symlink)
	entries = append(entries, devices...)
	entries = append(entries, whiteouts...)
	entries = append(entries, pax...)
	entries = append(entries, gnu...)
	entries = append(entries, ustar...)
	// A tail of files sized around the small spans.
	for _, size := range []int{16 << 10, 16<<10 - 1, 16<<10 + 1, 32 << 10, 64<<10 + 7, 1 << 20} {
		entries = append(entries, file(fmt.Sprintf("tail/size-%d", size), src.mixed(size)))
	}
	return entries
}

// manySmallEntries is an archive of n tiny files: the metadata-heavy case.
func manySmallEntries(src *dataSource, n int) []tarEntry {
	entries := make([]tarEntry, 0, n+n/1000+1)
	for i := range n {
		if i%1000 == 0 {
			entries = append(entries, dir(fmt.Sprintf("d%03d/", i/1000)))
		}
		var data []byte
		if i%10 == 0 {
			data = src.text(1 + src.rng.IntN(64))
		}
		entries = append(entries, file(fmt.Sprintf("d%03d/f%06d", i/1000, i), data))
	}
	return entries
}

// globalHeaderEntries starts with a PAX global header ('g'), as git archive
// writes. soci refuses the whole layer.
func globalHeaderEntries(src *dataSource) []tarEntry {
	return []tarEntry{
		{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header",
			PAXRecords: map[string]string{"comment": "0123456789abcdef"}}},
		file("README", src.text(2000)),
	}
}

// writeRegATar writes an archive whose regular files use the pre-POSIX
// typeflag NUL and whose directory uses NUL plus a trailing slash. Go's
// reader turns these into '0' and '5'. Go's writer cannot produce them, so
// the typeflag byte is patched and the header checksum recomputed.
func writeRegATar(w io.Writer, src *dataSource) error {
	var buf bytes.Buffer
	entries := []tarEntry{
		dir("olddir/"),
		file("olddir/v7-file", src.text(40_000)),
		file("v7-empty", nil),
	}
	if err := writeEntries(&buf, entries); err != nil {
		return err
	}
	archive := buf.Bytes()
	rd := tar.NewReader(bytes.NewReader(archive))
	var headerOffsets []int64
	var pos int64
	for {
		hdr, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reread tar: %w", err)
		}
		headerOffsets = append(headerOffsets, pos)
		pos += blockSize + (hdr.Size+blockSize-1)/blockSize*blockSize
	}
	for _, off := range headerOffsets {
		block := archive[off : off+blockSize]
		block[156] = 0 // typeflag
		setChecksum(block)
	}
	_, err := w.Write(archive)
	return err
}

const blockSize = 512

// setChecksum recomputes a USTAR header checksum: the byte sum of the block
// with the checksum field read as spaces, as six octal digits, NUL, space.
func setChecksum(block []byte) {
	copy(block[148:156], "        ")
	var sum int64
	for _, b := range block {
		sum += int64(b)
	}
	copy(block[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// writeNoEOFTar writes an archive without the two end-of-archive blocks:
// it stops after the padding of the last entry.
func writeNoEOFTar(w io.Writer, src *dataSource) error {
	tw := tar.NewWriter(w)
	for i, size := range []int{1000, 70_000, 3} {
		data := src.text(size)
		hdr := tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("no-eof-%d", i), Mode: 0o644, Size: int64(size),
			ModTime: baseTime}
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("write header: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("write data: %w", err)
		}
	}
	// Flush pads the last entry; Close would add the end-of-archive blocks.
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("flush tar: %w", err)
	}
	return nil
}

// writeGNUTreeTar builds a small directory tree on disk and archives it with
// the system GNU tar in GNU format. GNU tar pads the archive to 10240-byte
// records and writes its own long-name ('L') and long-link ('K') headers.
func writeGNUTreeTar(ctx context.Context, treeDir, outPath string, src *dataSource) error {
	longDir := filepath.Join(treeDir, strings.Repeat("gnu-tar-long-directory/", 5))
	if err := os.MkdirAll(longDir, 0o755); err != nil {
		return fmt.Errorf("make tree: %w", err)
	}
	files := map[string][]byte{
		"a.txt":     src.text(200_000),
		"b.bin":     src.mixed(1_500_000),
		"empty":     nil,
		"sub/c.txt": src.text(33_333),
		longDir[len(treeDir)+1:] + "/long-file-name-that-is-long": src.text(5_000),
	}
	for name, data := range files {
		path := filepath.Join(treeDir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("make dir: %w", err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := os.Symlink(filepath.Join(longDir, "long-file-name-that-is-long"), filepath.Join(treeDir, "abs-long-link")); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if err := os.Link(filepath.Join(treeDir, "a.txt"), filepath.Join(treeDir, "sub", "a-hardlink")); err != nil {
		return fmt.Errorf("hard link: %w", err)
	}
	if err := syscall.Mkfifo(filepath.Join(treeDir, "fifo"), 0o644); err != nil {
		return fmt.Errorf("mkfifo: %w", err)
	}
	cmd := exec.CommandContext(ctx, "tar", "--format=gnu", "--sort=name", "--owner=0", "--group=0",
		"--numeric-owner", "--mtime=@1683356889", "-cf", outPath, "-C", treeDir, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnu tar: %w: %s", err, out)
	}
	return nil
}

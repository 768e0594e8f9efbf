package ztoc

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestPackedFilesRoundTrip(t *testing.T) {
	var want []FileMetadata
	for i := range 2*fileChunkEntries + 3 {
		f := FileMetadata{
			Name:               "dir/file" + string(rune('a'+i%26)),
			Type:               "reg",
			UncompressedOffset: int64(i+1) * 1024,
			UncompressedSize:   int64(i % 500),
			Mode:               0o644,
			UID:                i % 3,
			GID:                -1,
			Uname:              "root",
			ModTime:            time.Unix(int64(i)-5, int64(i*7919)%1e9),
			Devmajor:           int64(i % 2),
			Devminor:           -int64(i % 5),
		}
		switch i % 3 {
		case 1:
			f.PAXHeaders = map[string]string{}
		case 2:
			f.Type, f.Linkname = "symlink", "../target"
			f.PAXHeaders = map[string]string{"SCHILY.xattr.user.a": "1", "path": f.Name}
		}
		want = append(want, f)
	}
	var p packedFiles
	for i := range want {
		p.add(&want[i])
	}
	if p.overlap != nil || p.len() != len(want) || p.chunks() != 3 {
		t.Fatalf("overlap %v, %d entries in %d chunks", p.overlap, p.len(), p.chunks())
	}
	i := 0
	for f := range p.all() {
		if !reflect.DeepEqual(*f, want[i]) {
			t.Fatalf("entry %d: got %+v, want %+v", i, *f, want[i])
		}
		i++
	}
	if err := deriveHeaderOffsets(want); err != nil {
		t.Fatal(err)
	}
	got, err := p.unpackAll()
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("unpackAll: %v, equal %v", err, reflect.DeepEqual(got, want))
	}
}

func TestPackedFilesOverlap(t *testing.T) {
	var p packedFiles
	p.add(&FileMetadata{Name: "a", UncompressedOffset: 512, UncompressedSize: 1000})
	p.add(&FileMetadata{Name: "b", UncompressedOffset: 1024})
	if !errors.Is(p.overlap, ErrInvalidTOCEntry) {
		t.Fatalf("overlap %v, want ErrInvalidTOCEntry", p.overlap)
	}
}

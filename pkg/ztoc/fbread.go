package ztoc

import (
	"encoding/binary"
	"fmt"
)

// fbTable reads one flatbuffers table with every offset bounds-checked, so
// that arbitrary bytes give an error instead of a panic or a huge
// allocation. Offsets are computed in uint64 so they cannot wrap.
type fbTable struct {
	buf    []byte
	pos    uint64 // start of the table
	vtable uint64
	vtLen  uint64
}

func (t fbTable) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: flatbuffer: "+format, append([]any{ErrInvalidZtoc}, args...)...)
}

func u32(buf []byte, at uint64) (uint64, bool) {
	if at+4 > uint64(len(buf)) {
		return 0, false
	}
	return uint64(binary.LittleEndian.Uint32(buf[at:])), true
}

// rootTable returns the table the buffer's root offset points to.
func rootTable(buf []byte) (fbTable, error) {
	root, ok := u32(buf, 0)
	if !ok {
		return fbTable{}, fmt.Errorf("%w: flatbuffer: %d bytes", ErrInvalidZtoc, len(buf))
	}
	return tableAt(buf, root)
}

func tableAt(buf []byte, pos uint64) (fbTable, error) {
	t := fbTable{buf: buf, pos: pos}
	soff, ok := u32(buf, pos)
	if !ok {
		return t, t.errorf("table at %d out of range", pos)
	}
	// The vtable is at pos minus a signed 32-bit offset.
	vt := int64(pos) - int64(int32(uint32(soff)))
	if vt < 0 || uint64(vt)+4 > uint64(len(buf)) {
		return t, t.errorf("vtable of table at %d out of range", pos)
	}
	t.vtable = uint64(vt)
	t.vtLen = uint64(binary.LittleEndian.Uint16(buf[t.vtable:]))
	if t.vtLen < 4 || t.vtable+t.vtLen > uint64(len(buf)) {
		return t, t.errorf("vtable at %d has bad length %d", t.vtable, t.vtLen)
	}
	return t, nil
}

// field returns the absolute position of a slot's value, or 0 when the slot
// is absent.
func (t fbTable) field(slot int) uint64 {
	vo := uint64(4 + 2*slot)
	if vo+2 > t.vtLen {
		return 0
	}
	off := uint64(binary.LittleEndian.Uint16(t.buf[t.vtable+vo:]))
	if off == 0 {
		return 0
	}
	return t.pos + off
}

func (t fbTable) scalar(slot, size int) ([]byte, error) {
	at := t.field(slot)
	if at == 0 {
		return nil, nil
	}
	if at+uint64(size) > uint64(len(t.buf)) {
		return nil, t.errorf("field %d out of range", slot)
	}
	return t.buf[at : at+uint64(size)], nil
}

func (t fbTable) int64(slot int) (int64, error) {
	b, err := t.scalar(slot, 8)
	if b == nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

func (t fbTable) uint32(slot int) (uint32, error) {
	b, err := t.scalar(slot, 4)
	if b == nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (t fbTable) int32(slot int) (int32, error) {
	v, err := t.uint32(slot)
	return int32(v), err
}

func (t fbTable) byte(slot int, def byte) (byte, error) {
	b, err := t.scalar(slot, 1)
	if b == nil {
		return def, err
	}
	return b[0], nil
}

// indirect follows the uoffset stored in a slot. ok is false for an absent
// slot.
func (t fbTable) indirect(slot int) (at uint64, ok bool, err error) {
	p := t.field(slot)
	if p == 0 {
		return 0, false, nil
	}
	off, in := u32(t.buf, p)
	if !in {
		return 0, false, t.errorf("field %d out of range", slot)
	}
	return p + off, true, nil
}

// bytes returns a string or byte-vector field (nil when absent). It aliases
// the buffer.
func (t fbTable) bytes(slot int) ([]byte, error) {
	at, ok, err := t.indirect(slot)
	if !ok {
		return nil, err
	}
	return vectorBytes(t.buf, at)
}

func vectorBytes(buf []byte, at uint64) ([]byte, error) {
	n, ok := u32(buf, at)
	if !ok || at+4+n > uint64(len(buf)) {
		return nil, fmt.Errorf("%w: flatbuffer: vector at %d out of range", ErrInvalidZtoc, at)
	}
	return buf[at+4 : at+4+n], nil
}

func (t fbTable) string(slot int) (string, error) {
	b, err := t.bytes(slot)
	return string(b), err
}

func (t fbTable) table(slot int) (fbTable, bool, error) {
	at, ok, err := t.indirect(slot)
	if !ok {
		return fbTable{}, false, err
	}
	sub, err := tableAt(t.buf, at)
	return sub, err == nil, err
}

// offsetVector is a vector of uoffsets (tables or strings).
type offsetVector struct {
	buf   []byte
	start uint64 // first element
	n     int
}

func (t fbTable) vector(slot int) (offsetVector, error) {
	at, ok, err := t.indirect(slot)
	if !ok {
		return offsetVector{}, err
	}
	n, in := u32(t.buf, at)
	// Every element takes 4 bytes, so a length the buffer cannot hold is
	// rejected before anything is allocated for it.
	if !in || at+4+4*n > uint64(len(t.buf)) {
		return offsetVector{}, t.errorf("vector field %d out of range", slot)
	}
	return offsetVector{buf: t.buf, start: at + 4, n: int(n)}, nil
}

func (v offsetVector) target(i int) uint64 {
	p := v.start + 4*uint64(i)
	return p + uint64(binary.LittleEndian.Uint32(v.buf[p:]))
}

func (v offsetVector) table(i int) (fbTable, error) { return tableAt(v.buf, v.target(i)) }

func (v offsetVector) string(i int) (string, error) {
	b, err := vectorBytes(v.buf, v.target(i))
	return string(b), err
}

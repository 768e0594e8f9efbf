package inflate

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// refDecoder is a deliberately simple gzip/deflate decoder (bit at a time,
// canonical Huffman decoding by code length) used to check the fast
// decoder's output and, above all, its boundaries.
type refDecoder struct {
	data   []byte
	bitPos int64 // bits consumed from data
	out    []byte
	bounds []Boundary
}

var errRef = errors.New("reference decoder: bad input")

func (r *refDecoder) bit() (int, error) {
	i := r.bitPos >> 3
	if i >= int64(len(r.data)) {
		return 0, errRef
	}
	b := int(r.data[i]>>(r.bitPos&7)) & 1
	r.bitPos++
	return b, nil
}

func (r *refDecoder) bitsN(n int) (int, error) {
	v := 0
	for i := 0; i < n; i++ {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		v |= b << i
	}
	return v, nil
}

func (r *refDecoder) boundary(final, header bool) {
	in := (r.bitPos + 7) / 8
	r.bounds = append(r.bounds, Boundary{In: in, Bits: uint8(in*8 - r.bitPos), Out: int64(len(r.out)), Final: final, Header: header})
}

type refHuffman struct {
	count  [16]int
	symbol []int
}

func newRefHuffman(lens []int) refHuffman {
	var h refHuffman
	for _, l := range lens {
		h.count[l]++
	}
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	h.symbol = make([]int, len(lens))
	for s, l := range lens {
		if l != 0 {
			h.symbol[offs[l]] = s
			offs[l]++
		}
	}
	return h
}

func (r *refDecoder) decode(h *refHuffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l <= 15; l++ {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		code |= b
		count := h.count[l]
		if code-count < first {
			return h.symbol[index+(code-first)], nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, errRef
}

var (
	refLenBase  = [29]int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	refLenExtra = [29]int{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	refDstBase  = [30]int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	refDstExtra = [30]int{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// gzip decodes every member of a well-formed gzip stream (the reference
// checks only what the tests need; inputs come from real compressors).
func (r *refDecoder) gzip() error {
	for {
		start := len(r.out)
		p := int(r.bitPos / 8)
		if p+10 > len(r.data) || r.data[p] != 0x1f || r.data[p+1] != 0x8b {
			return errRef
		}
		flags := r.data[p+3]
		p += 10
		if flags&flagExtra != 0 {
			p += 2 + int(binary.LittleEndian.Uint16(r.data[p:]))
		}
		for _, f := range []byte{flagName, flagComment} {
			if flags&f != 0 {
				for r.data[p] != 0 {
					p++
				}
				p++
			}
		}
		if flags&flagHCRC != 0 {
			p += 2
		}
		r.bitPos = int64(p) * 8
		r.boundary(false, true)
		if err := r.deflate(start); err != nil {
			return err
		}
		r.bitPos = (r.bitPos + 7) &^ 7
		p = int(r.bitPos / 8)
		if p+8 > len(r.data) {
			return errRef
		}
		if binary.LittleEndian.Uint32(r.data[p:]) != crc32.ChecksumIEEE(r.out[start:]) {
			return errRef
		}
		r.bitPos += 64
		if int(r.bitPos/8) == len(r.data) {
			return nil
		}
	}
}

// deflate decodes one raw deflate stream whose history starts at out[start].
func (r *refDecoder) deflate(start int) error {
	for {
		final, err := r.bit()
		if err != nil {
			return err
		}
		typ, err := r.bitsN(2)
		if err != nil {
			return err
		}
		switch typ {
		case 0:
			r.bitPos = (r.bitPos + 7) &^ 7
			n, err := r.bitsN(16)
			if err != nil {
				return err
			}
			if _, err := r.bitsN(16); err != nil {
				return err
			}
			p := int(r.bitPos / 8)
			if p+n > len(r.data) {
				return errRef
			}
			r.out = append(r.out, r.data[p:p+n]...)
			r.bitPos += int64(n) * 8
		case 1, 2:
			var lit, dst refHuffman
			if typ == 1 {
				lens := make([]int, 288+30)
				for i := range lens {
					switch {
					case i < 144:
						lens[i] = 8
					case i < 256:
						lens[i] = 9
					case i < 280:
						lens[i] = 7
					case i < 288:
						lens[i] = 8
					default:
						lens[i] = 5
					}
				}
				lit, dst = newRefHuffman(lens[:288]), newRefHuffman(lens[288:])
			} else {
				lit, dst, err = r.dynamic()
				if err != nil {
					return err
				}
			}
			for {
				sym, err := r.decode(&lit)
				if err != nil {
					return err
				}
				if sym < 256 {
					r.out = append(r.out, byte(sym))
					continue
				}
				if sym == 256 {
					break
				}
				sym -= 257
				if sym >= 29 {
					return errRef
				}
				e, err := r.bitsN(refLenExtra[sym])
				if err != nil {
					return err
				}
				length := refLenBase[sym] + e
				ds, err := r.decode(&dst)
				if err != nil || ds >= 30 {
					return errRef
				}
				e, err = r.bitsN(refDstExtra[ds])
				if err != nil {
					return err
				}
				dist := refDstBase[ds] + e
				if dist > len(r.out)-start {
					return errRef
				}
				for i := 0; i < length; i++ {
					r.out = append(r.out, r.out[len(r.out)-dist])
				}
			}
		default:
			return errRef
		}
		r.boundary(final == 1, false)
		if final == 1 {
			return nil
		}
	}
}

func (r *refDecoder) dynamic() (lit, dst refHuffman, err error) {
	nlen, err := r.bitsN(5)
	if err != nil {
		return
	}
	ndist, err := r.bitsN(5)
	if err != nil {
		return
	}
	ncode, err := r.bitsN(4)
	if err != nil {
		return
	}
	nlen, ndist, ncode = nlen+257, ndist+1, ncode+4
	clens := make([]int, 19)
	for i := 0; i < ncode; i++ {
		if clens[codeLengthOrder[i]], err = r.bitsN(3); err != nil {
			return
		}
	}
	cl := newRefHuffman(clens)
	lens := make([]int, nlen+ndist)
	for i := 0; i < len(lens); {
		var sym int
		if sym, err = r.decode(&cl); err != nil {
			return
		}
		if sym < 16 {
			lens[i] = sym
			i++
			continue
		}
		var rep, val int
		switch sym {
		case 16:
			if i == 0 {
				return lit, dst, errRef
			}
			val = lens[i-1]
			rep, err = r.bitsN(2)
			rep += 3
		case 17:
			rep, err = r.bitsN(3)
			rep += 3
		default:
			rep, err = r.bitsN(7)
			rep += 11
		}
		if err != nil {
			return
		}
		if i+rep > len(lens) {
			return lit, dst, errRef
		}
		for ; rep > 0; rep-- {
			lens[i] = val
			i++
		}
	}
	return newRefHuffman(lens[:nlen]), newRefHuffman(lens[nlen:]), nil
}

func crc32Update(crc uint32, b byte) uint32 { return crc32.Update(crc, crc32.IEEETable, []byte{b}) }

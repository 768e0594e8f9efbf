//go:build !((amd64 || arm64) && !purego)

package inflate

import "encoding/binary"

// This is the portable fast loop, with Go's bounds checks; fastloop_unsafe.go
// has the one amd64 and arm64 use. Both are tested (scripts/test runs this
// package's tests with -tags purego too).

// fastLoop decodes symbols while at least fastInMin input bytes and a
// whole match of output room remain. Each refill brings the bit buffer to
// at least 56 bits: enough for three literals, or for a length, a distance
// and their extra bits (at most 48 bits). The entry for the next symbol is
// looked up before a match is copied, so the two overlap.
func (d *decoder) fastLoop() (end bool, err error) {
	// in may be a chunk or a seam of any length (chunk input); the output
	// area has a fixed size, so its bounds checks compare with constants.
	in := d.in[:d.iend]
	out := (*[outBufSize + outSlack]byte)(d.out[:outBufSize+outSlack])
	lit, dist := &d.tables.lit, &d.tables.dist
	ipos, wpos := d.ipos, d.wpos
	// Only the low 6 bits of nbits count: subtracting whole entries
	// (whose low 6 bits are the bits consumed) leaves junk above them.
	bitBuf, nbits := d.bitBuf, d.nbits
	inLimit := d.iend - fastInMin
	outLimit := d.outLimit()
	minpos := d.minpos

	if ipos > inLimit || wpos > outLimit {
		return false, nil
	}
	bitBuf |= binary.LittleEndian.Uint64(in[ipos:]) << (nbits & 63)
	ipos += 7 - int(nbits>>3&7)
	nbits |= 56
	e := lit[bitBuf&litTableMask]
	for {
		if int32(e) < 0 {
			bitBuf >>= e & entryTotalMask
			nbits -= uint(e)
			out[wpos] = byte(e >> 16)
			wpos++
			e = lit[bitBuf&litTableMask]
			if int32(e) < 0 {
				bitBuf >>= e & entryTotalMask
				nbits -= uint(e)
				out[wpos] = byte(e >> 16)
				wpos++
				e = lit[bitBuf&litTableMask]
				if int32(e) < 0 {
					bitBuf >>= e & entryTotalMask
					nbits -= uint(e)
					out[wpos] = byte(e >> 16)
					wpos++
					bitBuf |= binary.LittleEndian.Uint64(in[ipos:]) << (nbits & 63)
					ipos += 7 - int(nbits>>3&7)
					nbits |= 56
					e = lit[bitBuf&litTableMask]
					if ipos > inLimit || wpos > outLimit {
						break
					}
					continue
				}
			}
			bitBuf |= binary.LittleEndian.Uint64(in[ipos:]) << (nbits & 63)
			ipos += 7 - int(nbits>>3&7)
			nbits |= 56
		}
		if e&entrySub != 0 {
			bitBuf >>= litTableBits
			nbits -= litTableBits
			e = lit[(e>>16)+uint32(bitBuf)&(1<<((e>>8)&0xf)-1)]
			if int32(e) < 0 {
				bitBuf >>= e & entryTotalMask
				nbits -= uint(e)
				out[wpos] = byte(e >> 16)
				wpos++
				bitBuf |= binary.LittleEndian.Uint64(in[ipos:]) << (nbits & 63)
				ipos += 7 - int(nbits>>3&7)
				nbits |= 56
				e = lit[bitBuf&litTableMask]
				if ipos > inLimit || wpos > outLimit {
					break
				}
				continue
			}
		}
		if e&entryMatch == 0 {
			if e&entryEOB != 0 {
				bitBuf >>= e & entryTotalMask
				nbits -= uint(e)
				end = true
			} else {
				err = errInvalidLitLen
			}
			break
		}
		// Consume code and extra bits at once; the extra bits are the
		// consumed bits above the code.
		v := bitBuf
		bitBuf >>= e & entryTotalMask
		nbits -= uint(e)
		length := int(e>>16) + int((v&(1<<(e&entryTotalMask)-1))>>((e>>8)&0xf))

		e = dist[bitBuf&distTableMask]
		if e&entrySub != 0 {
			bitBuf >>= distTableBits
			nbits -= distTableBits
			e = dist[(e>>16)+uint32(bitBuf)&(1<<((e>>8)&0xf)-1)]
		}
		if e&entryMatch == 0 {
			err = errInvalidDist
			break
		}
		v = bitBuf
		bitBuf >>= e & entryTotalMask
		nbits -= uint(e)
		distance := int(e>>16) + int((v&(1<<(e&entryTotalMask)-1))>>((e>>8)&0xf))
		if distance > wpos-minpos {
			err = errDistTooFar
			break
		}
		bitBuf |= binary.LittleEndian.Uint64(in[ipos:]) << (nbits & 63)
		ipos += 7 - int(nbits>>3&7)
		nbits |= 56
		e = lit[bitBuf&litTableMask]

		// Copy whole words; writing up to 15 bytes past the match is
		// allowed (outSlack) and overwritten later.
		src := wpos - distance
		if distance >= 8 {
			// Each word's source ends before its destination starts.
			binary.LittleEndian.PutUint64(out[wpos:], binary.LittleEndian.Uint64(out[src:]))
			binary.LittleEndian.PutUint64(out[wpos+8:], binary.LittleEndian.Uint64(out[src+8:]))
			for i := 16; i < length; i += 8 {
				binary.LittleEndian.PutUint64(out[wpos+i:], binary.LittleEndian.Uint64(out[src+i:]))
			}
		} else if distance == 1 {
			v := uint64(out[src]) * 0x0101010101010101
			for i := 0; i < length; i += 8 {
				binary.LittleEndian.PutUint64(out[wpos+i:], v)
			}
		} else {
			// Repeat the pattern byte by byte until it is a word long,
			// then copy words from a multiple of the distance back.
			for i := 0; i < 8; i++ {
				out[wpos+i] = out[src+i]
			}
			step := distance * ((8 + distance - 1) / distance)
			for i := 8; i < length; i += 8 {
				binary.LittleEndian.PutUint64(out[wpos+i:], binary.LittleEndian.Uint64(out[wpos+i-step:]))
			}
		}
		wpos += length
		if ipos > inLimit || wpos > outLimit {
			break
		}
	}

	d.ipos, d.wpos = ipos, wpos
	d.bitBuf, d.nbits = bitBuf, nbits&63
	switch err {
	case errInvalidLitLen:
		return false, d.corrupt("invalid literal/length code")
	case errInvalidDist:
		return false, d.corrupt("invalid distance code")
	case errDistTooFar:
		return false, d.corrupt("invalid distance too far back")
	}
	return end, nil
}

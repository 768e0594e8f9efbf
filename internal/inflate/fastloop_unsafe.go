//go:build (amd64 || arm64) && !purego

package inflate

import "unsafe"

// This fast loop walks the buffers with pointers and reads and writes them
// without bounds checks. With indexes and checks, the loop held more values
// than amd64 has registers, and the compiler kept the bit buffer on the
// stack; this version measured 8-10 % faster (docs/bench/inflate.md). Its
// accesses stay in bounds by the loop's own condition: at least fastInMin
// input bytes left (a refill reads 8 bytes and at most two refills run per
// iteration), room for a whole match plus outSlack in the output, and a
// match's source at or after minpos. fastloop_safe.go is the checked
// version, used with the purego build tag and on other platforms; both are
// tested and fuzzed against compress/flate.

// fastLoop decodes symbols while at least fastInMin input bytes and a
// whole match of output room remain. Each refill brings the bit buffer to
// at least 56 bits: enough for three literals, or for a length, a distance
// and their extra bits (at most 48 bits). The entry for the next symbol is
// looked up before a match is copied, so the two overlap.
func (d *decoder) fastLoop() (end bool, err error) {
	inLimit := d.iend - fastInMin
	outLimit := d.outLimit()
	if d.ipos > inLimit || d.wpos > outLimit {
		return false, nil
	}
	// The loop's guarantees rest on these (outLimit leaves a match and
	// outSlack of room by its definition); check them once.
	if d.iend > len(d.in) || d.minpos < 0 {
		panic("inflate: fast loop called with inconsistent buffers")
	}
	inBase := unsafe.Pointer(unsafe.SliceData(d.in))
	outBase := unsafe.Pointer(unsafe.SliceData(d.out))
	ip, ipEnd := unsafe.Add(inBase, d.ipos), unsafe.Add(inBase, inLimit)
	op, opEnd := unsafe.Add(outBase, d.wpos), unsafe.Add(outBase, outLimit)
	opMin := unsafe.Add(outBase, d.minpos)
	t := d.tables
	// Only the low 6 bits of nbits count: subtracting whole entries
	// (whose low 6 bits are the bits consumed) leaves junk above them.
	bitBuf, nbits := d.bitBuf, d.nbits

	bitBuf |= *(*uint64)(ip) << (nbits & 63)
	ip = unsafe.Add(ip, 7-int(nbits>>3&7))
	nbits |= 56
	e := t.lit[bitBuf&litTableMask]
	for {
		if int32(e) < 0 {
			bitBuf >>= e & entryTotalMask
			nbits -= uint(e)
			*(*byte)(op) = byte(e >> 16)
			op = unsafe.Add(op, 1)
			e = t.lit[bitBuf&litTableMask]
			if int32(e) < 0 {
				bitBuf >>= e & entryTotalMask
				nbits -= uint(e)
				*(*byte)(op) = byte(e >> 16)
				op = unsafe.Add(op, 1)
				e = t.lit[bitBuf&litTableMask]
				if int32(e) < 0 {
					bitBuf >>= e & entryTotalMask
					nbits -= uint(e)
					*(*byte)(op) = byte(e >> 16)
					op = unsafe.Add(op, 1)
					bitBuf |= *(*uint64)(ip) << (nbits & 63)
					ip = unsafe.Add(ip, 7-int(nbits>>3&7))
					nbits |= 56
					e = t.lit[bitBuf&litTableMask]
					if uintptr(ip) > uintptr(ipEnd) || uintptr(op) > uintptr(opEnd) {
						break
					}
					continue
				}
			}
			bitBuf |= *(*uint64)(ip) << (nbits & 63)
			ip = unsafe.Add(ip, 7-int(nbits>>3&7))
			nbits |= 56
		}
		if e&entrySub != 0 {
			bitBuf >>= litTableBits
			nbits -= litTableBits
			e = t.lit[(e>>16)+uint32(bitBuf)&(1<<((e>>8)&0xf)-1)]
			if int32(e) < 0 {
				bitBuf >>= e & entryTotalMask
				nbits -= uint(e)
				*(*byte)(op) = byte(e >> 16)
				op = unsafe.Add(op, 1)
				bitBuf |= *(*uint64)(ip) << (nbits & 63)
				ip = unsafe.Add(ip, 7-int(nbits>>3&7))
				nbits |= 56
				e = t.lit[bitBuf&litTableMask]
				if uintptr(ip) > uintptr(ipEnd) || uintptr(op) > uintptr(opEnd) {
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
		length := int(e>>16) + int((v&lowBits[e&entryTotalMask])>>((e>>8)&0xf))

		e = t.dist[bitBuf&distTableMask]
		if e&entrySub != 0 {
			bitBuf >>= distTableBits
			nbits -= distTableBits
			e = t.dist[(e>>16)+uint32(bitBuf)&(1<<((e>>8)&0xf)-1)]
		}
		if e&entryMatch == 0 {
			err = errInvalidDist
			break
		}
		v = bitBuf
		bitBuf >>= e & entryTotalMask
		nbits -= uint(e)
		distance := uintptr(e>>16) + uintptr((v&lowBits[e&entryTotalMask])>>((e>>8)&0xf))
		if distance > uintptr(op)-uintptr(opMin) {
			err = errDistTooFar
			break
		}
		bitBuf |= *(*uint64)(ip) << (nbits & 63)
		ip = unsafe.Add(ip, 7-int(nbits>>3&7))
		nbits |= 56
		e = t.lit[bitBuf&litTableMask]

		// Copy whole words; writing up to 15 bytes past the match is
		// allowed (outSlack) and overwritten later.
		src := unsafe.Add(op, -int(distance))
		if distance >= 8 {
			// Each word's source ends before its destination starts.
			*(*uint64)(op) = *(*uint64)(src)
			*(*uint64)(unsafe.Add(op, 8)) = *(*uint64)(unsafe.Add(src, 8))
			for i := 16; i < length; i += 8 {
				*(*uint64)(unsafe.Add(op, i)) = *(*uint64)(unsafe.Add(src, i))
			}
		} else if distance == 1 {
			v := uint64(*(*byte)(src)) * 0x0101010101010101
			for i := 0; i < length; i += 8 {
				*(*uint64)(unsafe.Add(op, i)) = v
			}
		} else {
			// Repeat the pattern byte by byte until it is a word long,
			// then copy words from a multiple of the distance back.
			for i := 0; i < 8; i++ {
				*(*byte)(unsafe.Add(op, i)) = *(*byte)(unsafe.Add(src, i))
			}
			step := int(distance) * ((8 + int(distance) - 1) / int(distance))
			for i := 8; i < length; i += 8 {
				*(*uint64)(unsafe.Add(op, i)) = *(*uint64)(unsafe.Add(op, i-step))
			}
		}
		op = unsafe.Add(op, length)
		if uintptr(ip) > uintptr(ipEnd) || uintptr(op) > uintptr(opEnd) {
			break
		}
	}

	d.ipos = int(uintptr(ip) - uintptr(inBase))
	d.wpos = int(uintptr(op) - uintptr(outBase))
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

// lowBits[n] has the low n bits set. Masking with a loaded value instead of
// 1<<n-1 leaves amd64's shift-count register to the shifts around it
// (1-2 % of decode time, measured).
var lowBits = func() (m [64]uint64) {
	for n := range m {
		m[n] = 1<<n - 1
	}
	return m
}()

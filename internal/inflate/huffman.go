package inflate

import (
	"errors"
	"math/bits"
	"sync"
)

// A decoding table entry packs everything the decoder needs for one table
// slot into a uint32, laid out so the hot paths need few operations:
//
//	bits  0-5   bits to consume: code length plus extra bits (subtable link: the primary bits)
//	bits  8-11  code length alone, so extra bits are (bits >> codelen) (subtable link: its index bits)
//	bits 12-15  kind flags
//	bits 16-30  value: literal byte, length or distance base, code-length symbol, or subtable offset
//	bit  31     literal flag, so a literal is a negative int32
const (
	entrySub     = 1 << 12 // link to a subtable
	entryEOB     = 1 << 13 // end of block
	entryInvalid = 1 << 14 // code not in use, or symbol not allowed
	entryMatch   = 1 << 15 // match length or distance: base + extra bits
	entryLit     = 1 << 31 // literal byte

	entryTotalMask = 0x3f
	entryValueMask = 0x7fff
)

// entryCodeLen returns the code length of a (non-link) entry.
func entryCodeLen(e uint32) uint { return uint(e>>8) & 0xf }

const (
	litTableBits  = 11
	distTableBits = 8
	clTableBits   = 7

	litTableMask  = 1<<litTableBits - 1
	distTableMask = 1<<distTableBits - 1

	maxCodeLen = 15

	// Each subtable holds at most 1<<(maxCodeLen-tableBits) entries and
	// at least one code, so these bounds can never be exceeded.
	litTableSize  = 1<<litTableBits + 288<<(maxCodeLen-litTableBits)
	distTableSize = 1<<distTableBits + 32<<(maxCodeLen-distTableBits)
	clTableSize   = 1 << clTableBits

	numLitLenSyms = 288
	numDistSyms   = 32
	numCLSyms     = 19
)

type litTable [litTableSize]uint32
type distTable [distTableSize]uint32

// codeTables are the decoding tables of one Huffman block. Keeping both in
// one struct lets the fast loop reach them through one base register.
type codeTables struct {
	lit  litTable
	dist distTable
}

const invalidEntry = entryInvalid | 1 | 1<<8

var (
	errOversubscribed = errors.New("over-subscribed code")
	errIncomplete     = errors.New("incomplete code")
)

// Symbol descriptions (entries without the code length) for each alphabet.
var (
	litLenSymbols = func() (s [numLitLenSyms]uint32) {
		for i := 0; i < 256; i++ {
			s[i] = entryLit | uint32(i)<<16
		}
		s[256] = entryEOB
		base := uint32(3)
		for i := 257; i < 285; i++ {
			extra := uint32(0)
			if i >= 265 {
				extra = uint32(i-261) / 4
			}
			s[i] = entryMatch | extra | base<<16
			base += 1 << extra
		}
		s[285] = entryMatch | 258<<16
		s[286] = entryInvalid
		s[287] = entryInvalid
		return s
	}()
	distSymbols = func() (s [numDistSyms]uint32) {
		for i := 0; i < 4; i++ {
			s[i] = entryMatch | uint32(i+1)<<16
		}
		for i := 4; i < 30; i++ {
			extra := uint32(i/2 - 1)
			base := (2+uint32(i&1))<<extra + 1
			s[i] = entryMatch | extra | base<<16
		}
		s[30] = entryInvalid
		s[31] = entryInvalid
		return s
	}()
	codeLenSymbols = func() (s [numCLSyms]uint32) {
		for i := range s {
			s[i] = uint32(i) << 16
		}
		return s
	}()
)

// fixedTables are the decoding tables of the fixed Huffman code (RFC 1951
// 3.2.6), built once on first use; they are never modified afterwards.
var fixedTables = sync.OnceValue(func() *codeTables {
	t := new(codeTables)
	var lens [numLitLenSyms]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	if err := buildTable(t.lit[:], litTableBits, lens[:], litLenSymbols[:], false); err != nil {
		panic("inflate: fixed literal/length table: " + err.Error())
	}
	var dlens [numDistSyms]uint8
	for i := range dlens {
		dlens[i] = 5
	}
	if err := buildTable(t.dist[:], distTableBits, dlens[:], distSymbols[:], false); err != nil {
		panic("inflate: fixed distance table: " + err.Error())
	}
	return t
})

// buildTable fills table with a primary table of 1<<tableBits entries
// followed by subtables for the canonical Huffman code given by lens
// (lens[sym] = code length, 0 = unused). symbols describes each symbol.
//
// It accepts what zlib's inflate_table accepts: an over-subscribed code is
// an error; an incomplete code is allowed only when it is a single code of
// length one (strict is false) or empty. For the code-length alphabet
// (strict) an incomplete code is an error, but an empty one is accepted and
// fails when used, as in zlib. Unused slots decode as entryInvalid.
func buildTable(table []uint32, tableBits uint, lens []uint8, symbols []uint32, strict bool) error {
	var count [maxCodeLen + 1]int
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	maxLen := maxCodeLen
	for maxLen > 0 && count[maxLen] == 0 {
		maxLen--
	}
	primary := 1 << tableBits
	if maxLen == 0 {
		for i := 0; i < primary; i++ {
			table[i] = invalidEntry
		}
		return nil
	}
	left := 1
	for l := 1; l <= maxCodeLen; l++ {
		left <<= 1
		left -= count[l]
		if left < 0 {
			return errOversubscribed
		}
	}
	if left > 0 && (strict || maxLen != 1) {
		return errIncomplete
	}

	// Sort symbols by code length, then by symbol value: canonical order.
	var offs [maxCodeLen + 2]int
	for l := 1; l <= maxCodeLen; l++ {
		offs[l+1] = offs[l] + count[l]
	}
	var sorted [numLitLenSyms]uint16
	for sym, l := range lens {
		if l != 0 {
			sorted[offs[l]] = uint16(sym)
			offs[l]++
		}
	}

	// The primary table is filled by doubling: once the codes of length l
	// are in the first 1<<l slots, copying those slots to the next 1<<l
	// repeats each code for both values of the bit after it. That is one
	// store per code and a copy per length, where repeating each code
	// across the table took a store per slot. A slot no code reaches (an
	// incomplete code) stays invalid.
	table[0], table[1] = invalidEntry, invalidEntry
	code := 0 // canonical code, most significant bit first
	next := primary
	subPrefix, subStart, subBits := -1, 0, uint(0)
	idx := 0
	// Lengths past maxLen have no codes; they only finish the doubling.
	for l := uint(1); l <= max(uint(maxLen), tableBits-1); l++ {
		for k := 0; k < count[l]; k++ {
			info := symbols[sorted[idx]]
			idx++
			// Deflate sends codes starting from the most significant bit;
			// the bit buffer delivers them least significant first.
			rev := int(bits.Reverse16(uint16(code)) >> (16 - l))
			if l <= tableBits {
				table[rev] = info + uint32(l) | uint32(l)<<8
			} else {
				prefix := rev & (primary - 1)
				if prefix != subPrefix {
					// Size the subtable to hold every remaining code that
					// shares this prefix: of length l, codes k and on; of
					// the longer lengths, all of them.
					sb := l - tableBits
					avail := 1 << sb
					for sb+tableBits < uint(maxLen) {
						left := count[sb+tableBits]
						if sb+tableBits == l {
							left -= k
						}
						avail -= left
						if avail <= 0 {
							break
						}
						sb++
						avail <<= 1
					}
					if next+1<<sb > len(table) {
						return errOversubscribed
					}
					subPrefix, subStart, subBits = prefix, next, sb
					next += 1 << sb
					table[prefix] = entrySub | uint32(tableBits) | uint32(sb)<<8 | uint32(subStart)<<16
				}
				entry := info + uint32(l-tableBits) | uint32(l-tableBits)<<8
				for i := rev >> tableBits; i < 1<<subBits; i += 1 << (l - tableBits) {
					table[subStart+i] = entry
				}
			}
			code++
		}
		if l < tableBits {
			copy(table[1<<l:2<<l], table[:1<<l])
		}
		code <<= 1
	}
	return nil
}

package inflate

import (
	"math/rand/v2"
	"testing"
)

// canonicalCode is a bit-by-bit decoder of the canonical code of lens.
type canonicalCode struct {
	count  [maxCodeLen + 1]int
	sorted []int // symbols in canonical order
}

func newCanonicalCode(lens []uint8) *canonicalCode {
	c := new(canonicalCode)
	for _, l := range lens {
		c.count[l]++
	}
	for l := 1; l <= maxCodeLen; l++ {
		for s, sl := range lens {
			if int(sl) == l {
				c.sorted = append(c.sorted, s)
			}
		}
	}
	return c
}

// decode decodes the first code of bits (least significant bit first, as
// deflate sends them) and returns the symbol and the code length, or ok
// false when no code matches.
func (c *canonicalCode) decode(bits uint32) (sym, length int, ok bool) {
	code, first, index := 0, 0, 0
	for l := 1; l <= maxCodeLen; l++ {
		code |= int(bits>>(l-1)) & 1
		if n := c.count[l]; code-first < n {
			return c.sorted[index+code-first], l, true
		}
		index += c.count[l]
		first = (first + c.count[l]) << 1
		code <<= 1
	}
	return 0, 0, false
}

// randomLengths returns code lengths of a complete prefix code over n
// symbols (some unused), made by splitting leaves of a random tree.
func randomLengths(r *rand.Rand, n int, maxLen uint8) []uint8 {
	lens := make([]uint8, n)
	used := r.IntN(n-1) + 2
	leaves := []uint8{1, 1}
	for len(leaves) < used {
		i := r.IntN(len(leaves))
		if leaves[i] >= maxLen {
			continue
		}
		leaves[i]++
		leaves = append(leaves, leaves[i])
	}
	for i, s := range r.Perm(n)[:used] {
		lens[s] = leaves[i]
	}
	return lens
}

// TestBuildTableMatchesCanonicalCode checks every 15-bit input against a
// bit-by-bit decoder of the canonical code, for random complete codes of
// both alphabets and the single-code and empty special cases.
func TestBuildTableMatchesCanonicalCode(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	type alphabet struct {
		name      string
		tableBits uint
		size      int
		symbols   []uint32
		tableLen  int
	}
	for _, a := range []alphabet{
		{"literal/length", litTableBits, numLitLenSyms - 2, litLenSymbols[:], litTableSize},
		{"distance", distTableBits, numDistSyms - 2, distSymbols[:], distTableSize},
	} {
		var cases [][]uint8
		for range 100 {
			cases = append(cases, randomLengths(r, a.size, maxCodeLen))
		}
		single := make([]uint8, a.size)
		single[r.IntN(a.size)] = 1
		cases = append(cases, single, make([]uint8, a.size))
		for ci, lens := range cases {
			table := make([]uint32, a.tableLen)
			for i := range table {
				table[i] = 0xdeadbeef // what a previous block left
			}
			if err := buildTable(table, a.tableBits, lens, a.symbols, false); err != nil {
				t.Fatalf("%s case %d: %v", a.name, ci, err)
			}
			ref := newCanonicalCode(lens)
			for bits := uint32(0); bits < 1<<maxCodeLen; bits++ {
				e := table[bits&(1<<a.tableBits-1)]
				n := entryCodeLen(e)
				if e&entrySub != 0 {
					e = table[(e>>16)+(bits>>a.tableBits)&(1<<entryCodeLen(e)-1)]
					n = a.tableBits + entryCodeLen(e)
				}
				sym, length, ok := ref.decode(bits)
				if !ok {
					if e&entryInvalid == 0 {
						t.Fatalf("%s case %d, bits %015b: no code, table has entry %#x", a.name, ci, bits, e)
					}
					continue
				}
				want := a.symbols[sym]
				if e&entryInvalid != 0 && want&entryInvalid == 0 || n != uint(length) ||
					e&^(entryTotalMask|0xf<<8) != want&^(entryTotalMask|0xf<<8) {
					t.Fatalf("%s case %d, bits %015b: entry %#x (length %d), want symbol %d %#x (length %d)",
						a.name, ci, bits, e, n, sym, want, length)
				}
			}
		}
	}
}

package ztoc

import "fmt"

// MinSpanSize is the smallest span size the service and the command line
// accept. Every span costs a checkpoint with a 32 KiB window in the zTOC, so
// small spans make the zTOC a large part of the layer (a 100-byte span gave
// a 12.9 MB layer an 18.9 MB zTOC) and multiply the range requests the
// snapshotter makes; at 1 MiB the windows are about 3 % of the uncompressed
// layer. Build itself takes any size soci takes, for comparisons with it.
const MinSpanSize = 1 << 20

// CheckSpanSize refuses a span size below MinSpanSize, saying why.
func CheckSpanSize(spanSize int64) error {
	if spanSize < MinSpanSize {
		return fmt.Errorf("%w: %d bytes is below the minimum of %d (1 MiB): each span adds a 32 KiB checkpoint window to the zTOC, so smaller spans make zTOCs a large part of the layer and multiply the snapshotter's range requests",
			ErrInvalidSpanSize, spanSize, MinSpanSize)
	}
	return nil
}

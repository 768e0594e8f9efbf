package queue

import "time"

// WithSettingsRefresh sets how often Consume reads the consumer's settings
// again (default 30s), so tests need not wait that long.
func WithSettingsRefresh(d time.Duration) ConsumeOption {
	return func(o *consumeOptions) { o.refreshEvery = d }
}

// RemoveFromWork is removeFromWork, for the test of a job already gone.
var RemoveFromWork = (*Queue).removeFromWork

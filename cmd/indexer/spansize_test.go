package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

// `indexer index` refuses a span below the minimum before it reaches the
// registry (nothing listens on the one named here), as serve and ztoc do.
func TestIndexRefusesTinySpan(t *testing.T) {
	for _, span := range []string{"0", "1", "100", "65536"} {
		if _, err := runIndexCmd(t, "index", "127.0.0.1:1/demo/app:v1", "--span-size", span); !errors.Is(err, ztoc.ErrInvalidSpanSize) {
			t.Errorf("--span-size %s: err = %v, want ErrInvalidSpanSize", span, err)
		}
	}
}

// `indexer index` refuses fewer than one Range GET connection, naming the
// flag, before it reaches the registry.
func TestIndexRefusesNoRangeFetchConnection(t *testing.T) {
	for _, conns := range []string{"0", "-2"} {
		_, err := runIndexCmd(t, "index", "127.0.0.1:1/demo/app:v1", "--range-fetch-conns", conns)
		if err == nil || !strings.Contains(err.Error(), "--range-fetch-conns "+conns+": want at least 1") {
			t.Errorf("--range-fetch-conns %s: err = %v", conns, err)
		}
	}
}

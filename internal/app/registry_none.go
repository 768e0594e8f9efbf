//go:build noregistry

package app

import (
	"context"
	"errors"
)

// ErrNoEmbeddedRegistry is returned for --registry-listen by a binary built
// with -tags noregistry.
var ErrNoEmbeddedRegistry = errors.New("this indexer was built without the embedded registry (-tags noregistry): " +
	"leave --registry-listen empty and point it at an external registry")

func startEmbeddedRegistry(context.Context, string, string, string, string) (embeddedRegistry, error) {
	return nil, ErrNoEmbeddedRegistry
}

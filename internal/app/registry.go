//go:build !noregistry

package app

import (
	"context"
	"net/http"

	embeddedregistry "github.com/soci-indexer/soci-indexer/internal/embedded/registry"
)

// startEmbeddedRegistry runs a CNCF distribution registry in this process
// that stores under root and notifies notifyURL of every push and delete.
// A build with -tags noregistry leaves it out (registry_none.go): a worker
// against an external registry needs none of its dependencies.
func startEmbeddedRegistry(ctx context.Context, addr, root, notifyURL, token string) (embeddedRegistry, error) {
	return embeddedregistry.Start(ctx, embeddedregistry.Options{
		Addr:    addr,
		RootDir: root,
		Notifications: []embeddedregistry.Notification{{
			URL:              notifyURL,
			Headers:          http.Header{"Authorization": {"Bearer " + token}},
			IgnoreMediaTypes: []string{"application/octet-stream"},
		}},
	})
}

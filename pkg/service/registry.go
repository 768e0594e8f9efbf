package service

import (
	"context"

	"oras.land/oras-go/v2/registry/remote"
)

// RepositoryFunc returns a client for one repository of a registry. The
// process that runs the workers builds it with its registry settings
// (`indexer serve` uses internal/registryclient, as the CLI does).
type RepositoryFunc func(ctx context.Context, registry, repository string) (*remote.Repository, error)

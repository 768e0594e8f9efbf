module github.com/soci-indexer/soci-indexer/test/snapshotter

go 1.26.8

replace github.com/soci-indexer/soci-indexer => ../..

require (
	github.com/opencontainers/go-digest v1.0.0
	github.com/opencontainers/image-spec v1.1.1
	github.com/soci-indexer/soci-indexer v0.0.0-00010101000000-000000000000
	oras.land/oras-go/v2 v2.7.0
)

require (
	github.com/google/flatbuffers v25.12.19+incompatible // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	golang.org/x/sync v0.25.0 // indirect
)

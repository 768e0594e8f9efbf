// Package snapshotter tests soci-indexer against the program that consumes
// its indexes: soci-snapshotter v0.16.1's soci-snapshotter-grpc behind
// containerd v2.2, both run as processes of the test. Images are pushed to
// the all-in-one `indexer serve`, pulled with `ctr image pull --snapshotter
// soci`, and the test checks that soci used the index the service pushed
// (one FUSE mount per zTOC, layer blobs only ever fetched by range) and that
// every file read through the lazy mounts equals the original.
//
// Run it with scripts/test-snapshotter, which builds the binaries (cached) and
// sets the environment this package reads; see docs/snapshotter.md.
package snapshotter

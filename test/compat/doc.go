// Package compat checks soci-indexer against awslabs/soci-snapshotter
// v0.16.1, used as a library oracle: zTOC byte identity, and that soci's own
// readers (ExtractFile, the span manager, the runtime header check) accept
// the zTOCs we build. The layers come from package corpus and are generated
// at test time. See docs/compat.md.
//
// soci's zinfo code is C linked against static zlib, so this module needs
// cgo and zlib1g-dev; it is a separate module to keep soci's dependency
// tree (containerd, grpc) out of the product.
package compat

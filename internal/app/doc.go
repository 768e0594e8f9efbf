// Package app assembles the `indexer serve` process and the one-off
// `indexer backfill`: it turns the settings (internal/config) into
// pkg/service's workers and backfill, connects NATS and the database,
// serves /metrics, /healthz, /readyz, /status/ and the webhook, and in
// all-in-one mode runs the embedded NATS server and registry under a locked
// data directory.
//
// The embedded registry (distribution, with its storage drivers) is linked
// here and so into cmd/indexer, which is one binary for every command; it
// is not in pkg/service, so a program that runs workers through the library
// does not carry it, and cmd/webhook does not either. A worker-only binary
// without it would be a second main package for serve alone; the Dockerfile
// builds one indexer image for the workers and the CLI, so that split is
// not made.
package app

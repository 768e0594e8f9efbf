// Package metrics checks deploy/grafana/soci-indexer.json and
// deploy/prometheus/alerts.yml against the metrics the binaries export. It is
// a module of its own so that Prometheus's PromQL parser, which the check
// uses, stays out of the product's go.mod.
package metrics

package app

import (
	"context"
	"testing"

	"github.com/soci-indexer/soci-indexer/internal/config"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/index"
	"github.com/soci-indexer/soci-indexer/pkg/service"
)

// The helpers the tests of pkg/service share with these are in
// internal/testsupport; these ones need internal/app or pkg/service.

// startServer starts a Server and runs its workers until the test ends.
func startServer(t *testing.T, cfg config.Config) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, cfg, testsupport.Logger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		s.Close()
	})
	return s
}

// jobsTotal reads soci_indexer_jobs_total{action="push",outcome} from a
// server's metrics registry.
func jobsTotal(t *testing.T, m *service.Metrics, outcome service.Outcome) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, f := range families {
		if f.GetName() != "soci_indexer_jobs_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["action"] == "push" && labels["outcome"] == string(outcome) {
				total += metric.GetCounter().GetValue()
			}
		}
	}
	return total
}

// newTestWorker returns a worker on plain-HTTP registries with small spans
// and no minimum layer size.
func newTestWorker(t *testing.T, store service.Store, spanSize int64, v index.IndexVersion) *service.Worker {
	t.Helper()
	build, identity := testsupport.WorkerBuild(spanSize)
	return service.NewWorker(testsupport.PlainRepos(t), store,
		service.WithBuildOptions(build...),
		service.WithOptionsIdentity(identity),
		service.WithIndexVersion(v),
		service.WithLogger(testsupport.Logger(t)),
	)
}

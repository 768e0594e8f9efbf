package service

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcome is how a job ended, as recorded in the database and in the
// soci_indexer_jobs_total metric.
type Outcome string

const (
	// OutcomeSucceeded: an index was built and pushed (or removed, for a
	// delete).
	OutcomeSucceeded Outcome = "succeeded"
	// OutcomeSkipped: nothing to do (our own artifact, already indexed, no
	// layer worth a zTOC).
	OutcomeSkipped Outcome = "skipped"
	// OutcomeRetried: a transient error; the job goes back to the queue.
	OutcomeRetried Outcome = "retried"
	// OutcomeFailed: a permanent error; the job is not tried again.
	OutcomeFailed Outcome = "failed"
)

// Stage names used by the soci_indexer_stage_seconds metric.
const (
	StageQueueWait = "queue_wait"
	StageBuild     = "download_build"
	StagePush      = "push"
	StageTotal     = "total"
)

// Metrics are the service's Prometheus metrics, on their own registry so
// that several services (tests, all-in-one) can live in one process.
type Metrics struct {
	Registry *prometheus.Registry

	jobs        *prometheus.CounterVec
	stages      *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	bytes       prometheus.Counter
	ztocs       *prometheus.CounterVec
	backfill    *prometheus.CounterVec
	deletedArts prometheus.Counter
}

// NewMetrics creates the metrics and registers them, together with the Go
// and process collectors, on a new registry.
func NewMetrics() *Metrics {
	latency := prometheus.ExponentialBuckets(0.05, 2, 14) // 50ms .. ~7min
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "soci_indexer_jobs_total",
			Help: "Jobs handled, by action and outcome (succeeded, skipped, retried, failed).",
		}, []string{"action", "outcome"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "soci_indexer_stage_seconds",
			Help:    "Latency of job stages: queue_wait (event to start), download_build, push, total.",
			Buckets: latency,
		}, []string{"stage"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "soci_indexer_jobs_in_flight",
			Help: "Jobs being handled now by this process.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "soci_indexer_layer_bytes_streamed_total",
			Help: "Compressed layer bytes read from registries to build zTOCs.",
		}),
		ztocs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "soci_indexer_ztocs_total",
			Help: "zTOCs placed in indexes, by how they were obtained: built or reused. reuse ratio = reused / (built + reused).",
		}, []string{"source"}),
		backfill: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "soci_indexer_backfill_images_total",
			Help: "Images seen by the backfill walker, by result: enqueued, indexed (already), older (than --since), error.",
		}, []string{"result"}),
		deletedArts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "soci_indexer_deleted_artifacts_total",
			Help: "SOCI artifacts removed from registries after their image was deleted.",
		}),
	}
	m.Registry.MustRegister(m.jobs, m.stages, m.inFlight, m.bytes, m.ztocs, m.backfill, m.deletedArts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

func (m *Metrics) observeStage(stage string, d time.Duration) {
	if m == nil || d < 0 {
		return
	}
	m.stages.WithLabelValues(stage).Observe(d.Seconds())
}

func (m *Metrics) countJob(action string, o Outcome) {
	if m == nil {
		return
	}
	m.jobs.WithLabelValues(action, string(o)).Inc()
}

func (m *Metrics) addInFlight(delta float64) {
	if m == nil {
		return
	}
	m.inFlight.Add(delta)
}

func (m *Metrics) addBytes(n int64) {
	if m == nil {
		return
	}
	m.bytes.Add(float64(n))
}

func (m *Metrics) countZtocs(built, reused int) {
	if m == nil {
		return
	}
	m.ztocs.WithLabelValues("built").Add(float64(built))
	m.ztocs.WithLabelValues("reused").Add(float64(reused))
}

func (m *Metrics) countBackfill(result string) {
	if m == nil {
		return
	}
	m.backfill.WithLabelValues(result).Inc()
}

func (m *Metrics) countDeleted(n int) {
	if m == nil {
		return
	}
	m.deletedArts.Add(float64(n))
}

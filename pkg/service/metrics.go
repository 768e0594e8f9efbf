package service

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
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

// QueueStats reads the queue's state; (*queue.Queue).Stats is one.
type QueueStats func(context.Context) (queue.Stats, error)

// WatchQueue exports the queue's depth, the age of its oldest job and the
// dead letters, read from JetStream at each scrape (at most 2s). Every
// process watching the same queue exports the same values: aggregate them
// with max, not sum.
func (m *Metrics) WatchQueue(stats QueueStats) {
	m.Registry.MustRegister(&queueCollector{stats: stats, now: time.Now})
}

var (
	queueUpDesc = prometheus.NewDesc("soci_indexer_queue_up",
		"1 when the last scrape read the queue's state from JetStream, 0 when it could not.", nil, nil)
	queuePendingDesc = prometheus.NewDesc("soci_indexer_queue_pending_jobs",
		"Jobs in the work stream not yet delivered to a worker.", nil, nil)
	queueUnackedDesc = prometheus.NewDesc("soci_indexer_queue_unacked_jobs",
		"Jobs delivered to a worker and not yet settled (running, or waiting for a retry).", nil, nil)
	queueRedeliveredDesc = prometheus.NewDesc("soci_indexer_queue_redelivered_jobs",
		"Unsettled jobs delivered more than once.", nil, nil)
	queueOldestDesc = prometheus.NewDesc("soci_indexer_queue_oldest_job_age_seconds",
		"Age of the oldest job still in the work stream; 0 when it is empty.", nil, nil)
	queueDeadDesc = prometheus.NewDesc("soci_indexer_queue_dead_letters",
		"Jobs in the dead-letter stream (failed for good, kept for inspection and retry).", nil, nil)
)

type queueCollector struct {
	stats QueueStats
	now   func() time.Time
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueUpDesc, queuePendingDesc, queueUnackedDesc, queueRedeliveredDesc, queueOldestDesc, queueDeadDesc} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.stats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(queueUpDesc, prometheus.GaugeValue, 0)
		return
	}
	var age float64
	if !st.Oldest.IsZero() {
		age = max(c.now().Sub(st.Oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(queueUpDesc, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(queuePendingDesc, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(queueUnackedDesc, prometheus.GaugeValue, float64(st.AckPending))
	ch <- prometheus.MustNewConstMetric(queueRedeliveredDesc, prometheus.GaugeValue, float64(st.Redelivered))
	ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(queueDeadDesc, prometheus.GaugeValue, float64(st.DeadLetters))
}

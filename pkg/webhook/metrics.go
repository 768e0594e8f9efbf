package webhook

import "github.com/prometheus/client_golang/prometheus"

// Event outcomes, labelling the events metric.
const (
	OutcomeQueued    = "queued"
	OutcomeDuplicate = "duplicate"
	OutcomeDropped   = "dropped"
	OutcomeFailed    = "failed"
)

type metrics struct {
	requests *prometheus.CounterVec
	events   *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	publish  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "soci_indexer", Subsystem: "webhook", Name: "requests_total",
			Help: "Notification requests by endpoint and HTTP status code.",
		}, []string{"endpoint", "code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "soci_indexer", Subsystem: "webhook", Name: "events_total",
			Help: "Registry events by source and outcome (queued, duplicate, dropped, failed).",
		}, []string{"source", "outcome"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "soci_indexer", Subsystem: "webhook", Name: "events_dropped_total",
			Help: "Registry events dropped by the filters, by source and reason.",
		}, []string{"source", "reason"}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "soci_indexer", Subsystem: "webhook", Name: "publish_duration_seconds",
			Help:    "Time to publish one job to JetStream and get its ack.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.events, m.dropped, m.publish} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

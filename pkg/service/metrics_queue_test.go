package service

import (
	"context"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

var queueSampleRx = regexp.MustCompile(`(?m)^(soci_indexer_queue_\w+) (\S+)$`)

// gaugeValues scrapes m's handler and returns the queue samples.
func gaugeValues(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := map[string]float64{}
	for _, s := range queueSampleRx.FindAllStringSubmatch(rec.Body.String(), -1) {
		v, err := strconv.ParseFloat(s[2], 64)
		if err != nil {
			t.Fatalf("%s: %v", s[0], err)
		}
		out[s[1]] = v
	}
	return out
}

// TestQueueMetrics: the queue gauges report the real JetStream state at
// scrape time, and queue_up drops to 0 when NATS is gone.
func TestQueueMetrics(t *testing.T) {
	ns := testsupport.NewEmbeddedNATS(t)
	cfg := testsupport.Config(t)
	cfg.NATSURL = ns.ClientURL()
	q, _ := testsupport.NewQueue(t, cfg)
	m := NewMetrics()
	m.WatchQueue(q.Stats)

	empty := gaugeValues(t, m)
	if empty["soci_indexer_queue_up"] != 1 || empty["soci_indexer_queue_pending_jobs"] != 0 || empty["soci_indexer_queue_oldest_job_age_seconds"] != 0 {
		t.Fatalf("empty queue: %v", empty)
	}

	before := time.Now()
	for _, d := range []string{"sha256:" + "1111111111111111111111111111111111111111111111111111111111111111",
		"sha256:" + "2222222222222222222222222222222222222222222222222222222222222222",
		"sha256:" + "3333333333333333333333333333333333333333333333333333333333333333"} {
		job := queue.Job{Action: queue.ActionPush, Registry: "r.example", Repository: "app", Digest: d, ReceivedAt: time.Now()}
		if _, err := q.Publish(context.Background(), job); err != nil {
			t.Fatal(err)
		}
	}
	got := gaugeValues(t, m)
	if got["soci_indexer_queue_pending_jobs"] != 3 || got["soci_indexer_queue_unacked_jobs"] != 0 || got["soci_indexer_queue_dead_letters"] != 0 {
		t.Errorf("three published jobs: %v", got)
	}
	if age := got["soci_indexer_queue_oldest_job_age_seconds"]; age <= 0 || age > time.Since(before).Seconds() {
		t.Errorf("oldest job age %vs, want in (0, %vs]", age, time.Since(before).Seconds())
	}

	ns.Shutdown()
	down := gaugeValues(t, m)
	if v, ok := down["soci_indexer_queue_up"]; !ok || v != 0 {
		t.Errorf("NATS gone: queue_up %v (present %v), want 0", v, ok)
	}
	if _, ok := down["soci_indexer_queue_pending_jobs"]; ok {
		t.Errorf("NATS gone: pending jobs still reported: %v", down)
	}
}

package webhook_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/internal/embedded/natsserver"
	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

const token = "s3cret-token"

func machineNATS() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// queueConfig names streams uniquely, so tests share a server safely.
func queueConfig() queue.Config {
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := strings.ToUpper(hex.EncodeToString(b[:]))
	return queue.Config{
		Stream: "WHTEST_" + id, SubjectPrefix: "whtest." + id + ".jobs",
		DLQStream: "WHTEST_" + id + "_DLQ", DLQPrefix: "whtest." + id + ".dlq",
		Duplicates: time.Minute,
	}
}

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatalf("connect to NATS at %s (run scripts/ensure-services): %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func newQueue(t *testing.T, js jetstream.JetStream, cfg queue.Config) *queue.Queue {
	t.Helper()
	q, err := queue.New(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = js.DeleteStream(context.Background(), cfg.Stream)
		_ = js.DeleteStream(context.Background(), cfg.DLQStream)
	})
	return q
}

// storedJobs reads the jobs in the work stream (nothing consumes them here).
func storedJobs(t *testing.T, js jetstream.JetStream, stream string) []queue.Job {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []queue.Job
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var j queue.Job
		if err := json.Unmarshal(m.Data, &j); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	return jobs
}

func allSources(c webhook.Config) webhook.Config {
	for _, s := range []*webhook.SourceConfig{&c.Distribution, &c.Harbor, &c.CloudEvents, &c.ECR} {
		if s.Token == "" {
			s.Token = token
		}
	}
	return c
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type hook struct {
	*webhook.Handler
	srv *httptest.Server
	log *syncBuffer
}

func newHook(t *testing.T, q *queue.Queue, cfg webhook.Config) *hook {
	t.Helper()
	logs := &syncBuffer{}
	h, err := webhook.New(q, allSources(cfg), webhook.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &hook{Handler: h, srv: srv, log: logs}
}

func post(t *testing.T, url, contentType string, header http.Header, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func bearer() http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// metric sums the samples of a metric family whose labels include labels.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue samples
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIngestRefusesBadRequests(t *testing.T) {
	js := connect(t, machineNATS())
	cfg := queueConfig()
	q := newQueue(t, js, cfg)
	h := newHook(t, q, webhook.Config{MaxBodyBytes: 4096})
	dist := h.srv.URL + webhook.PathDistribution
	body := readTestdata(t, "distribution-push.json")
	mt := webhook.MediaTypeDistributionEventsV2

	for _, tc := range []struct {
		name        string
		path        string
		contentType string
		header      http.Header
		body        []byte
		want        int
	}{
		{"no auth header", webhook.PathDistribution, mt, nil, body, http.StatusUnauthorized},
		{"empty auth header", webhook.PathDistribution, mt, http.Header{"Authorization": {""}}, body, http.StatusUnauthorized},
		{"wrong token", webhook.PathDistribution, mt, http.Header{"Authorization": {"Bearer nope"}}, body, http.StatusUnauthorized},
		{"token prefix only", webhook.PathDistribution, mt, http.Header{"Authorization": {"Bearer " + token[:4]}}, body, http.StatusUnauthorized},
		{"harbor no auth", webhook.PathHarbor, "application/json", nil, readTestdata(t, "harbor-default.json"), http.StatusUnauthorized},
		{"cloudevents no auth", webhook.PathCloudEvents, webhook.MediaTypeCloudEvents, nil, readTestdata(t, "zot-structured.json"), http.StatusUnauthorized},
		{"ecr no auth", webhook.PathECR, "application/json", nil, readTestdata(t, "ecr-eventbridge.json"), http.StatusUnauthorized},
		{"wrong content type", webhook.PathDistribution, "text/plain", bearer(), body, http.StatusUnsupportedMediaType},
		{"cloudevents as plain json", webhook.PathCloudEvents, "application/json", bearer(), readTestdata(t, "zot-structured.json"), http.StatusUnsupportedMediaType},
		{"too large", webhook.PathDistribution, mt, bearer(), bytes.Repeat([]byte(" "), 5000), http.StatusRequestEntityTooLarge},
		{"malformed", webhook.PathDistribution, mt, bearer(), []byte(`{"events":[`), http.StatusBadRequest},
		{"malformed harbor", webhook.PathHarbor, "application/json", bearer(), []byte(`{"type":`), http.StatusBadRequest},
		{"unknown path", "/hooks/quay", "application/json", bearer(), body, http.StatusNotFound},
	} {
		if code, _ := post(t, h.srv.URL+tc.path, tc.contentType, tc.header, tc.body); code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, code, tc.want)
		}
	}
	// The authenticated sender is told why its payload was refused.
	if _, msg := post(t, h.srv.URL+webhook.PathDistribution, mt, bearer(), []byte(`{"events":[`)); !strings.HasPrefix(msg, "unparseable payload: ") ||
		len(strings.TrimSpace(msg)) <= len("unparseable payload: ") {
		t.Errorf("malformed payload answered %q, want the reason after \"unparseable payload: \"", msg)
	}
	if !strings.Contains(h.log.String(), "unparseable payload") || !strings.Contains(h.log.String(), "source=distribution") {
		t.Errorf("no log line naming the source of the malformed payload:\n%s", h.log.String())
	}
	resp, err := http.Get(dist)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on an ingest path: %d, want 405", resp.StatusCode)
	}
	if jobs := storedJobs(t, js, cfg.Stream); len(jobs) != 0 {
		t.Fatalf("refused requests queued %d jobs", len(jobs))
	}
	if n := metric(t, h.Registry(), "soci_indexer_webhook_requests_total", map[string]string{"code": "401"}); n != 7 {
		t.Errorf("401 requests counted %v, want 7", n)
	}

	// Every accepted form of the secret.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("zot:"+token))
	for _, auth := range []string{"Bearer " + token, token, basic} {
		if code, resp := post(t, dist, mt, http.Header{"Authorization": {auth}}, body); code != http.StatusAccepted {
			t.Errorf("Authorization %q: %d %s, want 202", auth, code, resp)
		}
	}
	if jobs := storedJobs(t, js, cfg.Stream); len(jobs) != 1 {
		t.Fatalf("three deliveries of one event queued %d jobs, want 1", len(jobs))
	}
}

func TestCustomAuthHeaderAndDisabledEndpoint(t *testing.T) {
	js := connect(t, machineNATS())
	cfg := queueConfig()
	q := newQueue(t, js, cfg)
	h := newHook(t, q, webhook.Config{
		ECR:    webhook.SourceConfig{Token: "api-key", AuthHeader: "X-Api-Key"},
		Harbor: webhook.SourceConfig{Disabled: true},
	})
	body := readTestdata(t, "ecr-eventbridge.json")
	if code, _ := post(t, h.srv.URL+webhook.PathECR, "application/json", http.Header{"Authorization": {"Bearer api-key"}}, body); code != http.StatusUnauthorized {
		t.Errorf("token in the wrong header: %d, want 401", code)
	}
	if code, _ := post(t, h.srv.URL+webhook.PathECR, "application/json", http.Header{"X-Api-Key": {"api-key"}}, body); code != http.StatusAccepted {
		t.Errorf("token in X-Api-Key: %d, want 202", code)
	}
	if code, _ := post(t, h.srv.URL+webhook.PathHarbor, "application/json", bearer(), readTestdata(t, "harbor-default.json")); code != http.StatusNotFound {
		t.Errorf("disabled endpoint: %d, want 404", code)
	}
	if _, err := webhook.New(q, webhook.Config{}); !errors.Is(err, webhook.ErrNoToken) {
		t.Errorf("New with enabled endpoints and no tokens: %v, want ErrNoToken", err)
	}
}

func TestSourcesBecomeJobs(t *testing.T) {
	js := connect(t, machineNATS())
	cfg := queueConfig()
	q := newQueue(t, js, cfg)
	h := newHook(t, q, webhook.Config{
		CloudEvents: webhook.SourceConfig{Registry: "zot.example:5000"},
	})
	binaryZot := http.Header{"Authorization": {"Bearer " + token}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"7"},
		"Ce-Source": {"zotregistry.dev"}, "Ce-Type": {"zotregistry.image.updated"}}
	for _, tc := range []struct {
		path, contentType string
		header            http.Header
		file              string
	}{
		{webhook.PathHarbor, "application/json", bearer(), "harbor-default.json"},
		{webhook.PathHarbor, webhook.MediaTypeCloudEvents, bearer(), "harbor-cloudevents.json"},
		{webhook.PathCloudEvents, webhook.MediaTypeCloudEvents, bearer(), "zot-structured.json"},
		{webhook.PathCloudEvents, "application/json", binaryZot, "zot-binary-data.json"},
		{webhook.PathECR, "application/json", bearer(), "ecr-eventbridge.json"},
	} {
		code, resp := post(t, h.srv.URL+tc.path, tc.contentType, tc.header, readTestdata(t, tc.file))
		if code != http.StatusAccepted || !strings.Contains(resp, `"queued":1`) {
			t.Errorf("%s to %s: %d %s, want 202 with one job queued", tc.file, tc.path, code, resp)
		}
	}
	got := map[string]queue.Job{}
	for _, j := range storedJobs(t, js, cfg.Stream) {
		untagged := j
		untagged.Tag = "" // the keys below name the image and action
		got[untagged.Key()] = j
	}
	for key, source := range map[string]string{
		"harbor.example/library/app@sha256:7652000000000000000000000000000000000000000000000000000000000000/push":                           webhook.SourceHarbor,
		"harbor.example/library/app@sha256:8888000000000000000000000000000000000000000000000000000000000000/push":                           webhook.SourceHarbor,
		"zot.example:5000/tools/zot-app@sha256:aaaa000000000000000000000000000000000000000000000000000000000000/push":                       webhook.SourceZot,
		"zot.example:5000/tools/zot-app@sha256:cccc000000000000000000000000000000000000000000000000000000000000/push":                       webhook.SourceZot,
		"123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repo@sha256:7f5b000000000000000000000000000000000000000000000000000000000000/push": webhook.SourceECR,
	} {
		j, ok := got[key]
		if !ok {
			t.Errorf("no job %s", key)
			continue
		}
		if j.Source != source || j.ReceivedAt.IsZero() {
			t.Errorf("job %s: source %q received %v", key, j.Source, j.ReceivedAt)
		}
	}
	if len(got) != 5 {
		t.Errorf("%d jobs, want 5", len(got))
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	js := connect(t, machineNATS())
	q := newQueue(t, js, queueConfig())
	h := newHook(t, q, webhook.Config{})
	for path, want := range map[string]string{
		webhook.PathHealthz: "ok",
		webhook.PathReadyz:  "ok",
		webhook.PathMetrics: "soci_indexer_webhook_publish_duration_seconds",
	} {
		resp, err := http.Get(h.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, body without %q", path, resp.StatusCode, want)
		}
	}
}

// pushImage pushes a one-layer image with oras-go: blobs, then the manifest
// by tag. It returns the manifest descriptor.
func pushImage(t *testing.T, repo *remote.Repository, tag, seed string) ocispec.Descriptor {
	t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux","seed":"` + seed + `"}`)
	layer := []byte("layer of " + seed)
	configDesc := pushBlob(t, repo, ocispec.MediaTypeImageConfig, config)
	layerDesc := pushBlob(t, repo, ocispec.MediaTypeImageLayerGzip, layer)
	m, _ := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: configDesc, Layers: []ocispec.Descriptor{layerDesc},
	})
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, m)
	if err := repo.PushReference(context.Background(), desc, bytes.NewReader(m), tag); err != nil {
		t.Fatal(err)
	}
	return desc
}

func pushBlob(t *testing.T, repo *remote.Repository, mediaType string, data []byte) ocispec.Descriptor {
	t.Helper()
	desc := content.NewDescriptorFromBytes(mediaType, data)
	exists, err := repo.Exists(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	if !exists {
		if err := repo.Push(context.Background(), desc, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	return desc
}

func newRepo(t *testing.T, reg *registry.Registry, name string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(reg.Addr() + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	repo.SkipReferrersGC = true
	return repo
}

// TestRegistryNotifications runs a real distribution registry whose
// notifications go to the webhook.
func TestRegistryNotifications(t *testing.T) {
	js := connect(t, machineNATS())
	cfg := queueConfig()
	q := newQueue(t, js, cfg)
	h := newHook(t, q, webhook.Config{})
	ctx := context.Background()
	reg, err := registry.Start(ctx, registry.Options{Notifications: []registry.Notification{{
		URL:     h.srv.URL + webhook.PathDistribution,
		Headers: http.Header{"Authorization": {"Bearer " + token}},
		// Send everything, pulls and mounts included: the webhook filters.
		IgnoreActions: []string{},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	repo := newRepo(t, reg, "team/app")

	image := pushImage(t, repo, "v1", "app")
	// The same manifest again, under the same tag: the same job; under
	// another tag: another job (the tag needs its own v2 index tag).
	pushImage(t, repo, "v1", "app")
	pushImage(t, repo, "latest", "app")
	// A pull.
	rc, err := repo.Fetch(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()

	// Our own artifacts: a SOCI v1 index manifest (oras adds the
	// sha256-<hex> referrers index, since distribution has no referrers
	// API) and a v2 image index under the -soci tag.
	emptyConfig := pushBlob(t, repo, "application/vnd.amazon.soci.index.v1+json", []byte("{}"))
	ztoc := pushBlob(t, repo, "application/octet-stream", []byte("ztoc bytes"))
	ztoc.Annotations = map[string]string{
		"com.amazon.soci.image-layer-digest":    "sha256:" + strings.Repeat("1", 64),
		"com.amazon.soci.image-layer-mediaType": ocispec.MediaTypeImageLayerGzip,
	}
	soci, _ := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: emptyConfig, Layers: []ocispec.Descriptor{ztoc},
		Subject: &ocispec.Descriptor{MediaType: image.MediaType, Digest: image.Digest, Size: image.Size},
	})
	sociDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, soci)
	if err := repo.Push(ctx, sociDesc, bytes.NewReader(soci)); err != nil {
		t.Fatal(err)
	}
	index, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{image}})
	indexDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageIndex, index)
	if err := repo.PushReference(ctx, indexDesc, bytes.NewReader(index), "v1-soci"); err != nil {
		t.Fatal(err)
	}

	// An index under a referrers tag, from any tool.
	if err := repo.PushReference(ctx, indexDesc, bytes.NewReader(index), "sha256-"+image.Digest.Encoded()); err != nil {
		t.Fatal(err)
	}

	// Events reach the webhook in order; once the marker's job is in,
	// every earlier event has been handled.
	marker := pushImage(t, newRepo(t, reg, "marker/app"), "done", "marker")
	var jobs []queue.Job
	eventually(t, 30*time.Second, "the marker's job", func() bool {
		jobs = storedJobs(t, js, cfg.Stream)
		for _, j := range jobs {
			if j.Digest == marker.Digest.String() {
				return true
			}
		}
		return false
	})
	if len(jobs) != 3 {
		t.Fatalf("%d jobs, want 3 (the image under v1 and latest, and the marker): %+v", len(jobs), jobs)
	}
	if j := jobs[1]; j.Digest != image.Digest.String() || j.Tag != "latest" {
		t.Fatalf("second job %+v, want the image under latest", j)
	}
	j := jobs[0]
	if j.Source != webhook.SourceDistribution || j.Registry != reg.Addr() || j.Repository != "team/app" ||
		j.Digest != image.Digest.String() || j.Tag != "v1" || j.Action != queue.ActionPush || j.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("job %+v", j)
	}

	dropped := func(reason string) float64 {
		return metric(t, h.Registry(), "soci_indexer_webhook_events_dropped_total", map[string]string{"reason": reason})
	}
	for _, reason := range []string{webhook.DropBlob, webhook.DropAction, webhook.DropOwnArtifact, webhook.DropReferrers, webhook.DropOwnTag} {
		if dropped(reason) == 0 {
			t.Errorf("no event dropped for %s", reason)
		}
	}
	if n := metric(t, h.Registry(), "soci_indexer_webhook_events_total", map[string]string{"outcome": webhook.OutcomeDuplicate}); n < 1 {
		t.Errorf("duplicates counted %v, want ≥ 1 (v1 pushed twice)", n)
	}
}

// TestNATSDownRegistryRetries stops NATS under a running webhook: the
// registry gets 503 and retries; once NATS is back the job is stored, once.
func TestNATSDownRegistryRetries(t *testing.T) {
	ns, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)

	qc := queueConfig()
	settings := serverOptions(ns.ClientURL(), qc)
	settings.Handler.PublishTimeout = 500 * time.Millisecond

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- webhook.Serve(ctx, settings, ln, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, 10*time.Second, "readiness", func() bool { code, _ := get(webhook.PathReadyz); return code == http.StatusOK })

	reg, err := registry.Start(context.Background(), registry.Options{Notifications: []registry.Notification{{
		URL:              base + webhook.PathDistribution,
		Headers:          http.Header{"Authorization": {"Bearer " + token}},
		IgnoreMediaTypes: []string{"application/octet-stream"},
		Backoff:          100 * time.Millisecond,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })

	if err := ns.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "not ready while NATS is down", func() bool {
		code, _ := get(webhook.PathReadyz)
		return code == http.StatusServiceUnavailable
	})
	image := pushImage(t, newRepo(t, reg, "team/app"), "v1", "down")
	eventually(t, 15*time.Second, "a 503 while NATS is down", func() bool {
		_, m := get(webhook.PathMetrics)
		return strings.Contains(m, `soci_indexer_webhook_requests_total{code="503",endpoint="distribution"}`)
	})

	if err := ns.Restart(); err != nil {
		t.Fatal(err)
	}
	js := connect(t, ns.ClientURL())
	var jobs []queue.Job
	eventually(t, 30*time.Second, "the job after NATS is back", func() bool {
		if _, err := js.Stream(context.Background(), qc.Stream); err != nil {
			return false
		}
		jobs = storedJobs(t, js, qc.Stream)
		return len(jobs) > 0
	})
	// The registry delivers one endpoint's events in order, retrying each
	// until it is answered: once the job of an image pushed after it is
	// stored, every retry of the first event has landed.
	sentinel := pushImage(t, newRepo(t, reg, "team/app"), "v2", "sentinel")
	eventually(t, 30*time.Second, "the job of the image pushed after", func() bool {
		jobs = storedJobs(t, js, qc.Stream)
		for _, j := range jobs {
			if j.Digest == sentinel.Digest.String() {
				return true
			}
		}
		return false
	})
	if len(jobs) != 2 || jobs[0].Digest != image.Digest.String() {
		t.Fatalf("jobs %+v, want exactly the pushed image, then the one pushed after", jobs)
	}
}

package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Publisher stores jobs durably. *queue.Queue is one.
type Publisher interface {
	// Publish returns once the job is stored, or fails.
	Publish(ctx context.Context, job queue.Job) (queue.PublishAck, error)
	// Ready reports whether Publish can succeed.
	Ready(ctx context.Context) error
}

var _ Publisher = (*queue.Queue)(nil)

// SourceConfig configures one ingest endpoint.
type SourceConfig struct {
	// Disabled turns the endpoint off (404).
	Disabled bool
	// Token is the shared secret the sender must present. Required for
	// an enabled endpoint.
	Token string
	// AuthHeader carries the token; default "Authorization".
	AuthHeader string
	// Registry, if set, is the registry host put in jobs, replacing the
	// host found in the payload (distribution: target.url or request.host;
	// Harbor: resource_url; ECR: account and region). Zot's events name no
	// host, so a Zot source needs it.
	Registry string
}

func (s SourceConfig) authHeader() string {
	if s.AuthHeader == "" {
		return "Authorization"
	}
	return s.AuthHeader
}

// Config configures a Handler.
type Config struct {
	Distribution SourceConfig
	Harbor       SourceConfig
	CloudEvents  SourceConfig
	ECR          SourceConfig
	Filter       FilterConfig
	// MaxBodyBytes bounds a request body; default 1 MiB.
	MaxBodyBytes int64
	// PublishTimeout bounds the wait for JetStream's ack of one job;
	// default 2s. Past it the request fails with 503 and the registry
	// retries.
	PublishTimeout time.Duration
}

// Defaults for Config.
const (
	DefaultMaxBodyBytes   = 1 << 20
	DefaultPublishTimeout = 2 * time.Second
)

// Paths served by the Handler.
const (
	PathDistribution = "/hooks/distribution"
	PathHarbor       = "/hooks/harbor"
	PathCloudEvents  = "/hooks/cloudevents"
	PathECR          = "/hooks/ecr"
	PathHealthz      = "/healthz"
	PathReadyz       = "/readyz"
	PathMetrics      = "/metrics"
)

// ErrNoToken is returned by New when an enabled endpoint has no token.
var ErrNoToken = errors.New("webhook: enabled endpoint without a token")

// Option configures a Handler.
type Option func(*Handler)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// WithRegistry registers the metrics with reg and serves reg on /metrics,
// instead of a registry of the Handler's own.
func WithRegistry(reg *prometheus.Registry) Option { return func(h *Handler) { h.reg = reg } }

// Handler is the webhook's HTTP handler: the ingest endpoints, health,
// readiness and metrics.
type Handler struct {
	pub     Publisher
	cfg     Config
	filter  *Filter
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics
	mux     *http.ServeMux
}

// endpoint is one ingest path.
type endpoint struct {
	name string
	cfg  SourceConfig
	// accepts reports whether the request's content type fits.
	accepts func(r *http.Request) bool
	parse   func(r *http.Request, body []byte) ([]Event, error)
}

// New returns a Handler publishing jobs through pub.
func New(pub Publisher, cfg Config, opts ...Option) (*Handler, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	filter, err := NewFilter(cfg.Filter)
	if err != nil {
		return nil, err
	}
	h := &Handler{pub: pub, cfg: cfg, filter: filter, log: slog.New(slog.DiscardHandler), mux: http.NewServeMux()}
	for _, o := range opts {
		o(h)
	}
	if h.reg == nil {
		h.reg = prometheus.NewRegistry()
	}
	if h.metrics, err = newMetrics(h.reg); err != nil {
		return nil, fmt.Errorf("webhook: metrics: %w", err)
	}

	endpoints := map[string]endpoint{
		PathDistribution: {
			name: SourceDistribution, cfg: cfg.Distribution,
			accepts: contentTypeIn(MediaTypeDistributionEventsV2, MediaTypeDistributionEventsV1, "application/json"),
			parse:   func(_ *http.Request, b []byte) ([]Event, error) { return ParseDistribution(b) },
		},
		PathHarbor: {
			name: SourceHarbor, cfg: cfg.Harbor,
			accepts: contentTypeIn("application/json", MediaTypeCloudEvents),
			parse:   func(_ *http.Request, b []byte) ([]Event, error) { return ParseHarbor(b) },
		},
		PathCloudEvents: {
			name: SourceCloudEvents, cfg: cfg.CloudEvents,
			accepts: cloudEventsRequest,
			parse:   func(r *http.Request, b []byte) ([]Event, error) { return ParseCloudEvent(r.Header, b) },
		},
		PathECR: {
			name: SourceECR, cfg: cfg.ECR,
			accepts: func(r *http.Request) bool {
				return cloudEventsRequest(r) || contentTypeIn("application/json")(r)
			},
			parse: func(r *http.Request, b []byte) ([]Event, error) {
				if cloudEventsRequest(r) {
					return ParseCloudEvent(r.Header, b)
				}
				return ParseEventBridge(b)
			},
		},
	}
	for path, ep := range endpoints {
		if ep.cfg.Disabled {
			continue
		}
		if ep.cfg.Token == "" {
			return nil, fmt.Errorf("%w: %s", ErrNoToken, ep.name)
		}
		h.mux.Handle("POST "+path, h.ingest(ep))
	}
	h.mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	h.mux.HandleFunc("GET "+PathReadyz, h.ready)
	h.mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{}))
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Registry is the Prometheus registry the Handler serves on /metrics.
func (h *Handler) Registry() *prometheus.Registry { return h.reg }

func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.PublishTimeout)
	defer cancel()
	if err := h.pub.Ready(ctx); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// Result is the body of a 202 answer.
type Result struct {
	Queued     int `json:"queued"`
	Duplicates int `json:"duplicates"`
	Dropped    int `json:"dropped"`
}

func (h *Handler) ingest(ep endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := h.serveIngest(w, r, ep)
		h.metrics.requests.WithLabelValues(ep.name, strconv.Itoa(code)).Inc()
	})
}

// serveIngest answers one notification and returns the status code sent.
func (h *Handler) serveIngest(w http.ResponseWriter, r *http.Request, ep endpoint) int {
	log := h.log.With("source", ep.name, "remote", r.RemoteAddr)
	if !ep.cfg.authorized(r.Header) {
		log.Warn("webhook: unauthorized request")
		w.Header().Set("WWW-Authenticate", `Bearer realm="soci-indexer webhook"`)
		return fail(w, http.StatusUnauthorized, "unauthorized")
	}
	if !ep.accepts(r) {
		log.Warn("webhook: unsupported content type", "content_type", r.Header.Get("Content-Type"))
		return fail(w, http.StatusUnsupportedMediaType, "unsupported content type")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			log.Warn("webhook: body too large", "limit", h.cfg.MaxBodyBytes)
			return fail(w, http.StatusRequestEntityTooLarge, "body too large")
		}
		log.Warn("webhook: reading body", "error", err)
		return fail(w, http.StatusBadRequest, "unreadable body")
	}
	events, err := ep.parse(r, body)
	if err != nil {
		log.Warn("webhook: unparseable payload", "error", err)
		// The sender is authenticated by now: tell it what is wrong.
		return fail(w, http.StatusBadRequest, "unparseable payload: "+err.Error())
	}

	received := time.Now().UTC()
	var res Result
	seen := make(map[string]bool, len(events))
	for _, ev := range events {
		job := ev.Job
		job.ReceivedAt = received
		if ep.cfg.Registry != "" {
			job.Registry = ep.cfg.Registry
		}
		if job.Source == "" {
			job.Source = ep.name
		}
		reason := h.filter.Drop(ev)
		if reason == "" && job.Registry == "" {
			reason = DropNoRegistry
			log.Warn("webhook: event names no registry host; set the source's registry", "repository", job.Repository)
		}
		if reason == "" && job.Validate() != nil {
			// Refusing it would make distribution retry it forever.
			reason = DropInvalid
		}
		if reason != "" {
			res.Dropped++
			h.metrics.events.WithLabelValues(job.Source, OutcomeDropped).Inc()
			h.metrics.dropped.WithLabelValues(job.Source, reason).Inc()
			// Blob and pull events are routine noise; a registry outside the
			// allow-list is a misconfiguration or an attempt worth seeing.
			level := slog.LevelDebug
			if reason == DropRegistry {
				level = slog.LevelWarn
			}
			log.Log(r.Context(), level, "webhook: event dropped", "reason", reason, "action", ev.SourceAction,
				"registry", job.Registry, "repository", job.Repository, "digest", job.Digest, "tag", job.Tag)
			continue
		}
		if seen[job.Key()] {
			res.Duplicates++
			h.metrics.events.WithLabelValues(job.Source, OutcomeDuplicate).Inc()
			continue
		}
		seen[job.Key()] = true
		dup, err := h.publish(r.Context(), job)
		if err != nil {
			h.metrics.events.WithLabelValues(job.Source, OutcomeFailed).Inc()
			log.Warn("webhook: publish failed; asking the registry to retry", "job", job.Key(), "error", err)
			w.Header().Set("Retry-After", "5")
			return fail(w, http.StatusServiceUnavailable, "queue unavailable")
		}
		if dup {
			res.Duplicates++
			h.metrics.events.WithLabelValues(job.Source, OutcomeDuplicate).Inc()
			continue
		}
		res.Queued++
		h.metrics.events.WithLabelValues(job.Source, OutcomeQueued).Inc()
		log.Debug("webhook: job queued", "job", job.Key(), "tag", job.Tag)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(res)
	return http.StatusAccepted
}

func (h *Handler) publish(ctx context.Context, job queue.Job) (duplicate bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	ack, err := h.pub.Publish(ctx, job)
	if err != nil {
		return false, err
	}
	h.metrics.publish.Observe(time.Since(start).Seconds())
	return ack.Duplicate, nil
}

func fail(w http.ResponseWriter, code int, msg string) int {
	http.Error(w, msg, code)
	return code
}

// contentTypeIn accepts requests whose media type is one of types.
func contentTypeIn(types ...string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		mt := mediaTypeOf(r.Header.Get("Content-Type"))
		for _, t := range types {
			if mt == t {
				return true
			}
		}
		return false
	}
}

// cloudEventsRequest accepts CloudEvents in binary mode (with a JSON
// body) and in structured or batch mode.
func cloudEventsRequest(r *http.Request) bool {
	if IsBinaryCloudEvent(r.Header) {
		mt := mediaTypeOf(r.Header.Get("Content-Type"))
		return mt == "" || mt == "application/json"
	}
	return contentTypeIn(MediaTypeCloudEvents, MediaTypeCloudEventsBatch)(r)
}

package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults for Config fields left zero.
const (
	DefaultStream        = "INDEX_JOBS"
	DefaultSubjectPrefix = "index.jobs"
	DefaultDLQStream     = "INDEX_JOBS_DLQ"
	DefaultDLQPrefix     = "index.dlq"
	DefaultConsumer      = "indexer"
	DefaultDuplicates    = 10 * time.Minute
	DefaultMaxDeliver    = 5
	DefaultAckWait       = 5 * time.Minute
	DefaultMaxAckPending = 1000
)

// Config names and tunes the streams and the consumer. Zero fields take the
// defaults above.
type Config struct {
	// Stream is the work-queue stream; SubjectPrefix its subjects
	// (jobs go to <prefix>.<token>).
	Stream        string
	SubjectPrefix string
	// DLQStream keeps dead letters on <DLQPrefix>.<token>; it has limits
	// retention, so dead letters stay until retried or purged.
	DLQStream string
	DLQPrefix string
	// Consumer is the one durable pull consumer all workers share: a
	// work-queue stream allows only one consumer per subject.
	Consumer string
	// Replicas of both streams; default 1.
	Replicas int
	// MemoryStorage keeps the streams in memory instead of files.
	MemoryStorage bool
	// Duplicates is the dedup window for Nats-Msg-Id.
	Duplicates time.Duration
	// MaxDeliver is how many times a job is tried before it is dead-lettered.
	MaxDeliver int
	// AckWait is how long a worker may hold a job without progress before
	// JetStream redelivers it.
	AckWait time.Duration
	// BackOff, if set, replaces AckWait for redeliveries after an ack
	// timeout (JetStream's ConsumerConfig.BackOff). Naks use RetryBackoff.
	BackOff []time.Duration
	// MaxAckPending bounds the jobs out at once across all workers.
	MaxAckPending int
}

func (c Config) withDefaults() Config {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&c.Stream, DefaultStream)
	def(&c.SubjectPrefix, DefaultSubjectPrefix)
	def(&c.DLQStream, DefaultDLQStream)
	def(&c.DLQPrefix, DefaultDLQPrefix)
	def(&c.Consumer, DefaultConsumer)
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Duplicates <= 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	return c
}

func (c Config) storage() jetstream.StorageType {
	if c.MemoryStorage {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// Queue is a handle on the job streams. It is safe for concurrent use.
type Queue struct {
	js       jetstream.JetStream
	cfg      Config
	log      *slog.Logger
	stream   jetstream.Stream
	dlq      jetstream.Stream
	consumer jetstream.Consumer
}

// Option configures a Queue.
type Option func(*Queue)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(q *Queue) { q.log = l }
}

// Sentinel errors.
var (
	// ErrNotFound is returned when a stream, consumer or dead letter
	// does not exist.
	ErrNotFound = errors.New("queue: not found")
	// ErrUnavailable wraps failures to reach JetStream, so callers can
	// tell "try again later" from bad input.
	ErrUnavailable = errors.New("queue: jetstream unavailable")
)

// New creates or updates the work stream, the dead-letter stream and the
// durable consumer, and returns a Queue on them.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Queue, error) {
	q := newQueue(js, cfg, opts)
	c := q.cfg
	if overlaps(c.SubjectPrefix, c.DLQPrefix) {
		return nil, fmt.Errorf("queue: subject prefixes %q and %q overlap", c.SubjectPrefix, c.DLQPrefix)
	}
	var err error
	q.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "index jobs",
		Subjects:    []string{c.SubjectPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     c.storage(),
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", c.Stream, unavailable(err))
	}
	q.dlq, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.DLQStream,
		Description: "index jobs that failed for good",
		Subjects:    []string{c.DLQPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     c.storage(),
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", c.DLQStream, unavailable(err))
	}
	q.consumer, err = js.CreateOrUpdateConsumer(ctx, c.Stream, jetstream.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "index workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		BackOff:       c.BackOff,
		MaxAckPending: c.MaxAckPending,
		FilterSubject: c.SubjectPrefix + ".>",
	})
	if err != nil {
		return nil, fmt.Errorf("queue: consumer %s: %w", c.Consumer, unavailable(err))
	}
	return q, nil
}

// Bind returns a Queue on existing streams and consumer without changing
// them, for inspection tools.
func Bind(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Queue, error) {
	q := newQueue(js, cfg, opts)
	var err error
	if q.stream, err = js.Stream(ctx, q.cfg.Stream); err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", q.cfg.Stream, notFound(err))
	}
	if q.dlq, err = js.Stream(ctx, q.cfg.DLQStream); err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", q.cfg.DLQStream, notFound(err))
	}
	if q.consumer, err = q.stream.Consumer(ctx, q.cfg.Consumer); err != nil {
		return nil, fmt.Errorf("queue: consumer %s: %w", q.cfg.Consumer, notFound(err))
	}
	return q, nil
}

func newQueue(js jetstream.JetStream, cfg Config, opts []Option) *Queue {
	q := &Queue{js: js, cfg: cfg.withDefaults(), log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(q)
	}
	return q
}

// Config returns the configuration in use, defaults filled in.
func (q *Queue) Config() Config { return q.cfg }

// PublishAck tells where a published job went.
type PublishAck struct {
	// Sequence of the job in the work stream.
	Sequence uint64
	// Duplicate is true when the job's key was already published within
	// the dedup window; nothing new was stored.
	Duplicate bool
}

// Publish stores a job durably, deduplicated on its Key. It returns once
// JetStream acknowledged the job; bound the wait with ctx.
func (q *Queue) Publish(ctx context.Context, job Job) (PublishAck, error) {
	return q.publish(ctx, job, job.Key())
}

func (q *Queue) publish(ctx context.Context, job Job, msgID string) (PublishAck, error) {
	if err := job.Validate(); err != nil {
		return PublishAck{}, err
	}
	data, err := json.Marshal(job)
	if err != nil {
		return PublishAck{}, fmt.Errorf("queue: encode job: %w", err)
	}
	msg := nats.NewMsg(q.cfg.SubjectPrefix + "." + job.subjectToken())
	msg.Data = data
	ack, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(q.cfg.Stream))
	if err != nil {
		return PublishAck{}, fmt.Errorf("queue: publish %s: %w", job.Key(), unavailable(err))
	}
	return PublishAck{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Ready reports whether JetStream answers and the work stream exists.
func (q *Queue) Ready(ctx context.Context) error {
	if _, err := q.stream.Info(ctx); err != nil {
		return fmt.Errorf("queue: stream %s: %w", q.cfg.Stream, unavailable(err))
	}
	return nil
}

// unavailable marks connection-level failures with ErrUnavailable.
func unavailable(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.Code {
		case 404:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case 503: // JetStream not ready, no quorum
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, ErrInvalidJob) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func notFound(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return unavailable(err)
}

// overlaps reports whether the subjects under prefixes a and b intersect.
func overlaps(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".")
}

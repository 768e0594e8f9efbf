package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
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
	js     jetstream.JetStream
	cfg    Config // what this process asked for, defaults filled in
	log    *slog.Logger
	stream jetstream.Stream
	dlq    jetstream.Stream
	// consumer is nil for a publisher (NewPublisher): the durable
	// consumer belongs to the workers.
	consumer jetstream.Consumer

	mu   sync.Mutex
	live Config // cfg overlaid with the settings found on the server
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
	// ErrMisconfigured is returned when a stream or the consumer exists
	// but cannot serve this queue (it takes other subjects).
	ErrMisconfigured = errors.New("queue: misconfigured")
)

// Who sets what up. The streams' settings (replicas, storage, dedup window)
// and the consumer's (ack wait, max deliver, backoff, max ack pending) are
// set in one place: Setup, an operator's deliberate act (`indexer queue
// setup`). Every other process binds to what it finds and never changes it:
//
//   - NewPublisher (the webhook, backfill) binds to the two streams, creating
//     one that is missing with cfg; it never touches the consumer.
//   - New (the workers) does the same and binds to the durable consumer,
//     creating it with cfg when it is missing. Workers follow the consumer's
//     settings as they are on the server (see Config), not cfg.
//
// A process whose cfg differs from what it found logs one warning per
// stream or consumer and goes on with the server's settings.

// New opens the queue for workers: the work stream, the dead-letter stream
// and the durable consumer, each created with cfg if missing and otherwise
// used as it is.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Queue, error) {
	q, err := NewPublisher(ctx, js, cfg, opts...)
	if err != nil {
		return nil, err
	}
	if err := q.ensureConsumer(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

// NewPublisher opens the queue for publishing: the work stream and the
// dead-letter stream, each created with cfg if missing and otherwise used as
// it is. It neither creates nor changes the consumer.
func NewPublisher(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Queue, error) {
	q, err := newQueue(js, cfg, opts)
	if err != nil {
		return nil, err
	}
	if q.stream, err = q.ensureStream(ctx, q.workStreamConfig()); err != nil {
		return nil, err
	}
	if q.dlq, err = q.ensureStream(ctx, q.dlqStreamConfig()); err != nil {
		return nil, err
	}
	return q, nil
}

// Setup creates the streams and the consumer with cfg, or updates those
// that exist to cfg: the one deliberate way to change replicas, dedup
// window, ack wait, max deliver or backoff. JetStream refuses some changes
// (storage type, for one); Setup then returns its error.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Queue, error) {
	q, err := newQueue(js, cfg, opts)
	if err != nil {
		return nil, err
	}
	for _, sc := range []jetstream.StreamConfig{q.workStreamConfig(), q.dlqStreamConfig()} {
		s, err := js.CreateOrUpdateStream(ctx, sc)
		if err != nil {
			return nil, fmt.Errorf("queue: set up stream %s: %w", sc.Name, unavailable(err))
		}
		if sc.Name == q.cfg.Stream {
			q.stream = s
		} else {
			q.dlq = s
		}
	}
	q.consumer, err = js.CreateOrUpdateConsumer(ctx, q.cfg.Stream, q.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("queue: set up consumer %s: %w", q.cfg.Consumer, unavailable(err))
	}
	q.follow(q.stream.CachedInfo().Config, q.consumer.CachedInfo().Config)
	q.log.Info("queue: streams and consumer set up", "stream", q.cfg.Stream, "replicas", q.cfg.Replicas,
		"consumer", q.cfg.Consumer, "ack_wait", q.cfg.AckWait, "max_deliver", q.cfg.MaxDeliver)
	return q, nil
}

// Bind returns a Queue on existing streams and consumer without changing
// them, for inspection tools.
func Bind(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Queue, error) {
	q, err := newQueue(js, cfg, opts)
	if err != nil {
		return nil, err
	}
	if q.stream, err = js.Stream(ctx, q.cfg.Stream); err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", q.cfg.Stream, notFound(err))
	}
	if q.dlq, err = js.Stream(ctx, q.cfg.DLQStream); err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", q.cfg.DLQStream, notFound(err))
	}
	if q.consumer, err = q.stream.Consumer(ctx, q.cfg.Consumer); err != nil {
		return nil, fmt.Errorf("queue: consumer %s: %w", q.cfg.Consumer, notFound(err))
	}
	q.follow(q.stream.CachedInfo().Config, q.consumer.CachedInfo().Config)
	return q, nil
}

// Current returns cfg (defaults filled in) overlaid with the settings of
// whichever of its streams and consumer exist on the server, changing
// nothing: the starting point of a deliberate change (`indexer queue setup`
// changes only what it is told to).
func Current(ctx context.Context, js jetstream.JetStream, cfg Config) (Config, error) {
	c := cfg.withDefaults()
	s, err := js.Stream(ctx, c.Stream)
	switch {
	case err == nil:
		c = withStream(c, s.CachedInfo().Config)
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return c, fmt.Errorf("queue: stream %s: %w", c.Stream, unavailable(err))
	}
	if s != nil {
		cons, err := s.Consumer(ctx, c.Consumer)
		switch {
		case err == nil:
			c = withConsumer(c, cons.CachedInfo().Config)
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return c, fmt.Errorf("queue: consumer %s: %w", c.Consumer, unavailable(err))
		}
	}
	return c, nil
}

func newQueue(js jetstream.JetStream, cfg Config, opts []Option) (*Queue, error) {
	q := &Queue{js: js, cfg: cfg.withDefaults(), log: slog.New(slog.DiscardHandler)}
	q.live = q.cfg
	for _, o := range opts {
		o(q)
	}
	if overlaps(q.cfg.SubjectPrefix, q.cfg.DLQPrefix) {
		return nil, fmt.Errorf("queue: subject prefixes %q and %q overlap", q.cfg.SubjectPrefix, q.cfg.DLQPrefix)
	}
	return q, nil
}

func (q *Queue) workStreamConfig() jetstream.StreamConfig {
	c := q.cfg
	return jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "index jobs",
		Subjects:    []string{c.SubjectPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     c.storage(),
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
	}
}

func (q *Queue) dlqStreamConfig() jetstream.StreamConfig {
	c := q.cfg
	return jetstream.StreamConfig{
		Name:        c.DLQStream,
		Description: "index jobs that failed for good",
		Subjects:    []string{c.DLQPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     c.storage(),
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
	}
}

func (q *Queue) consumerConfig() jetstream.ConsumerConfig {
	c := q.cfg
	return jetstream.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "index workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		BackOff:       c.BackOff,
		MaxAckPending: c.MaxAckPending,
		FilterSubject: c.SubjectPrefix + ".>",
	}
}

// ensureStream binds to the stream want names, or creates it with want
// when it is missing. An existing stream is never changed.
func (q *Queue) ensureStream(ctx context.Context, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := q.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = q.js.CreateStream(ctx, want)
		if err == nil {
			q.log.Info("queue: stream created", "stream", want.Name, "replicas", want.Replicas,
				"storage", want.Storage.String(), "duplicates", want.Duplicates)
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another process created it meanwhile, with other settings.
			s, err = q.js.Stream(ctx, want.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", want.Name, unavailable(err))
	}
	have := s.CachedInfo().Config
	if !slices.Contains(have.Subjects, want.Subjects[0]) {
		return nil, fmt.Errorf("%w: stream %s takes subjects %v, not %s", ErrMisconfigured, want.Name, have.Subjects, want.Subjects[0])
	}
	if diff := streamDiff(want, have); len(diff) > 0 {
		q.log.Warn("queue: stream exists with other settings than this process's; using it as it is "+
			"(change it deliberately with `indexer queue setup`)", "stream", want.Name, "differences", strings.Join(diff, "; "))
	}
	if want.Name == q.cfg.Stream {
		q.mu.Lock()
		q.live = withStream(q.live, have)
		q.mu.Unlock()
	}
	return s, nil
}

// ensureConsumer binds to the durable consumer, or creates it with cfg when
// it is missing, and follows its settings on the server.
func (q *Queue) ensureConsumer(ctx context.Context) error {
	want := q.consumerConfig()
	c, err := q.stream.Consumer(ctx, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = q.stream.CreateConsumer(ctx, want)
		if err == nil {
			q.log.Info("queue: consumer created", "consumer", want.Durable, "ack_wait", want.AckWait,
				"max_deliver", want.MaxDeliver, "backoff", want.BackOff)
		}
		if errors.Is(err, jetstream.ErrConsumerExists) {
			c, err = q.stream.Consumer(ctx, want.Durable)
		}
	}
	if err != nil {
		return fmt.Errorf("queue: consumer %s: %w", want.Durable, unavailable(err))
	}
	have := c.CachedInfo().Config
	if have.FilterSubject != want.FilterSubject && !slices.Contains(have.FilterSubjects, want.FilterSubject) {
		return fmt.Errorf("%w: consumer %s filters %q, not %s", ErrMisconfigured, want.Durable,
			have.FilterSubject+strings.Join(have.FilterSubjects, ","), want.FilterSubject)
	}
	if diff := consumerDiff(want, have); len(diff) > 0 {
		q.log.Warn("queue: consumer exists with other settings than this process's; following the server's "+
			"(change them deliberately with `indexer queue setup`)", "consumer", want.Durable, "differences", strings.Join(diff, "; "))
	}
	q.consumer = c
	q.follow(q.stream.CachedInfo().Config, have)
	return nil
}

// follow records the settings found on the server as the ones in use.
func (q *Queue) follow(stream jetstream.StreamConfig, consumer jetstream.ConsumerConfig) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.live = withConsumer(withStream(q.live, stream), consumer)
}

// refreshConsumer reads the consumer's settings again, so that workers
// follow a deliberate change made while they run.
func (q *Queue) refreshConsumer(ctx context.Context) {
	info, err := q.consumer.Info(ctx)
	if err != nil {
		q.log.Debug("queue: reading the consumer's settings failed", "consumer", q.cfg.Consumer, "error", err)
		return
	}
	q.mu.Lock()
	before := q.live
	q.live = withConsumer(q.live, info.Config)
	after := q.live
	q.mu.Unlock()
	if before.AckWait != after.AckWait || before.MaxDeliver != after.MaxDeliver || !slices.Equal(before.BackOff, after.BackOff) {
		q.log.Info("queue: the consumer's settings changed on the server; following them", "consumer", q.cfg.Consumer,
			"ack_wait", after.AckWait, "max_deliver", after.MaxDeliver, "backoff", after.BackOff)
	}
}

func withStream(c Config, s jetstream.StreamConfig) Config {
	c.Replicas = s.Replicas
	c.MemoryStorage = s.Storage == jetstream.MemoryStorage
	c.Duplicates = s.Duplicates
	return c
}

func withConsumer(c Config, cc jetstream.ConsumerConfig) Config {
	c.AckWait = cc.AckWait
	c.MaxDeliver = cc.MaxDeliver
	c.BackOff = slices.Clone(cc.BackOff)
	c.MaxAckPending = cc.MaxAckPending
	return c
}

func streamDiff(want, have jetstream.StreamConfig) []string {
	var d []string
	if want.Replicas != have.Replicas {
		d = append(d, fmt.Sprintf("replicas: here %d, server %d", want.Replicas, have.Replicas))
	}
	if want.Storage != have.Storage {
		d = append(d, fmt.Sprintf("storage: here %s, server %s", want.Storage, have.Storage))
	}
	if want.Duplicates != have.Duplicates {
		d = append(d, fmt.Sprintf("duplicates: here %s, server %s", want.Duplicates, have.Duplicates))
	}
	if want.Retention != have.Retention {
		d = append(d, fmt.Sprintf("retention: here %s, server %s", want.Retention, have.Retention))
	}
	return d
}

func consumerDiff(want, have jetstream.ConsumerConfig) []string {
	var d []string
	if want.AckWait != have.AckWait {
		d = append(d, fmt.Sprintf("ack_wait: here %s, server %s", want.AckWait, have.AckWait))
	}
	if want.MaxDeliver != have.MaxDeliver {
		d = append(d, fmt.Sprintf("max_deliver: here %d, server %d", want.MaxDeliver, have.MaxDeliver))
	}
	if !slices.Equal(want.BackOff, have.BackOff) {
		d = append(d, fmt.Sprintf("backoff: here %v, server %v", want.BackOff, have.BackOff))
	}
	if want.MaxAckPending != have.MaxAckPending {
		d = append(d, fmt.Sprintf("max_ack_pending: here %d, server %d", want.MaxAckPending, have.MaxAckPending))
	}
	return d
}

// Config returns the configuration in use: the streams' and the consumer's
// settings as last read from the server (a publisher has not read the
// consumer's: those fields are its own), the rest as given, defaults filled
// in.
func (q *Queue) Config() Config {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.live
	c.BackOff = slices.Clone(c.BackOff)
	return c
}

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
	popts := []jetstream.PublishOpt{jetstream.WithMsgID(msgID), jetstream.WithExpectStream(q.cfg.Stream)}
	if deadline, ok := ctx.Deadline(); ok {
		// While a stream elects a new leader nobody answers; keep asking
		// until ctx ends, so that a failover shorter than the caller's
		// patience is no failure. The message id makes a retry safe.
		popts = append(popts, jetstream.WithRetryWait(publishRetryWait), jetstream.WithRetryAttempts(int(time.Until(deadline)/publishRetryWait)+1))
	}
	ack, err := q.js.PublishMsg(ctx, msg, popts...)
	if err != nil {
		return PublishAck{}, fmt.Errorf("queue: publish %s: %w", job.Key(), unavailable(err))
	}
	return PublishAck{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// publishRetryWait is the pause between publish attempts while a stream has
// no leader.
const publishRetryWait = 100 * time.Millisecond

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

package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrPermanent marks a handler error that retrying cannot fix: a handler
// returning an error that wraps it has its job terminated and
// dead-lettered at once. Wrap with Permanent.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so that Consume terminates the job instead of
// retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// Handler processes one job. If it returns without settling the delivery,
// Consume settles it: nil acks, an error wrapping ErrPermanent terminates,
// any other error naks with backoff. ctx is cancelled only once the
// consumer's drain timeout has passed after shutdown.
type Handler func(ctx context.Context, d *Delivery) error

// ConsumeOption configures Consume.
type ConsumeOption func(*consumeOptions)

type consumeOptions struct {
	concurrency  int
	backoffBase  time.Duration
	backoffMax   time.Duration
	drainTimeout time.Duration
	fetchWait    time.Duration
	deadLetters  bool
	// While pulls fail (no leader, JetStream unavailable): the pause
	// before the next pull, from pullBase doubling to pullMax, and how
	// often the ongoing outage is logged again.
	pullBase, pullMax time.Duration
	outageLogEvery    time.Duration
	refreshEvery      time.Duration
}

// WithConcurrency bounds the jobs handled at once by this Consume call;
// default 1.
func WithConcurrency(n int) ConsumeOption {
	return func(o *consumeOptions) { o.concurrency = max(n, 1) }
}

// WithRetryBackoff sets the nak delay: base·2^(deliveries-1), capped at
// max. Defaults 10s and 10m.
func WithRetryBackoff(base, max time.Duration) ConsumeOption {
	return func(o *consumeOptions) { o.backoffBase, o.backoffMax = base, max }
}

// WithDrainTimeout sets how long in-flight handlers may run after ctx is
// cancelled before their own context is cancelled; default 30s.
func WithDrainTimeout(d time.Duration) ConsumeOption {
	return func(o *consumeOptions) { o.drainTimeout = d }
}

// WithFetchWait sets how long one pull request waits for jobs; default 5s.
// Workers freed during a pull are used by the next one.
func WithFetchWait(d time.Duration) ConsumeOption {
	return func(o *consumeOptions) { o.fetchWait = d }
}

// WithPullBackoff sets the pause between pulls while they fail (the stream
// or consumer has no leader, JetStream is unavailable): base, doubling per
// failed pull up to max, back to none after a pull that works. Defaults
// 100ms and 5s.
func WithPullBackoff(base, max time.Duration) ConsumeOption {
	return func(o *consumeOptions) { o.pullBase, o.pullMax = base, max }
}

// WithOutageLogInterval sets how often an ongoing outage is logged again
// after the warning that it began; default 30s. Its end is logged once,
// at info.
func WithOutageLogInterval(d time.Duration) ConsumeOption {
	return func(o *consumeOptions) { o.outageLogEvery = d }
}

// WithoutDeadLetterWatch turns off the listener for JetStream's
// max-deliveries advisory, which dead-letters jobs whose last delivery
// timed out (the worker died). Any one running consumer is enough.
func WithoutDeadLetterWatch() ConsumeOption {
	return func(o *consumeOptions) { o.deadLetters = false }
}

// Consume pulls jobs and runs h on each, at most the configured number at
// once, until ctx is cancelled. Then it stops pulling, lets in-flight
// handlers finish within the drain timeout, gives back for immediate
// redelivery what they leave unsettled, and returns nil. Nothing it
// received is lost: a job is acked, given back, retried later or
// dead-lettered. It returns an error only if the NATS connection is closed.
func (q *Queue) Consume(ctx context.Context, h Handler, opts ...ConsumeOption) error {
	o := consumeOptions{
		concurrency:  1,
		backoffBase:  10 * time.Second,
		backoffMax:   10 * time.Minute,
		drainTimeout: 30 * time.Second,
		fetchWait:    5 * time.Second,
		deadLetters:  true,
		pullBase:     100 * time.Millisecond,
		pullMax:      5 * time.Second,

		outageLogEvery: 30 * time.Second,
		refreshEvery:   30 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	o.pullBase = max(o.pullBase, time.Millisecond)
	o.pullMax = max(o.pullMax, o.pullBase)
	if q.consumer == nil {
		return fmt.Errorf("queue: consume %s: this queue was opened for publishing only", q.cfg.Consumer)
	}

	if o.deadLetters {
		stop, err := q.watchMaxDeliveries()
		if err != nil {
			return err
		}
		defer stop()
	}

	// Handlers outlive ctx by the drain timeout, so a job near its end is
	// not thrown away on shutdown.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.NewTimer(o.drainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelHandlers()
		case <-handlerCtx.Done():
		}
	})
	defer stopDrain()

	slots := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()

	outage := newOutage(q, o)
	lastRefresh := time.Now()

	for ctx.Err() == nil {
		if time.Since(lastRefresh) >= o.refreshEvery {
			refreshCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			q.refreshConsumer(refreshCtx)
			cancel()
			lastRefresh = time.Now()
		}
		// Pull only as many jobs as there are free workers: a pulled job's
		// AckWait is already running.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1
	claim:
		for free < o.concurrency {
			select {
			case slots <- struct{}{}:
				free++
			default:
				break claim
			}
		}
		fetchCtx, cancelFetch := context.WithTimeout(ctx, o.fetchWait)
		batch, err := q.consumer.Fetch(free, jetstream.FetchContext(fetchCtx))
		if err != nil {
			cancelFetch()
			for range free {
				<-slots
			}
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, nats.ErrConnectionClosed) {
				return fmt.Errorf("queue: consume %s: %w", q.cfg.Consumer, err)
			}
			outage.wait(ctx, err)
			continue
		}
		used := 0
		for msg := range batch.Messages() {
			if ctx.Err() != nil {
				// Shutting down: give it back at once for another worker.
				q.giveBackUnstarted(msg, o)
				continue
			}
			used++
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				q.handle(handlerCtx, ctx, h, msg, o)
			}()
		}
		cancelFetch()
		for range free - used {
			<-slots
		}
		err = batch.Error()
		switch {
		case ctx.Err() != nil:
		case err == nil || used > 0:
			outage.end()
		case errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) ||
			errors.Is(err, nats.ErrTimeout):
			// An empty pull works only if it reached the server: one that
			// waited out its time while the connection was down (or being
			// re-established) is part of the outage, not its end.
			if q.js.Conn().IsConnected() {
				outage.end()
			} else {
				outage.wait(ctx, err)
			}
		case errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("queue: consume %s: %w", q.cfg.Consumer, err)
		default:
			outage.wait(ctx, err)
		}
	}
	return nil
}

// outage paces and logs a pull loop while its pulls fail: one warning when
// the failures begin, then at most one per outageLogEvery, one info when a
// pull works again; between failed pulls a pause that doubles up to
// pullMax. Each failed pull is logged at debug.
type outage struct {
	q *Queue
	o consumeOptions

	since    time.Time // zero: no outage
	failures int
	lastLog  time.Time
	delay    time.Duration
}

func newOutage(q *Queue, o consumeOptions) *outage { return &outage{q: q, o: o} }

// wait records a failed pull and pauses before the next one.
func (u *outage) wait(ctx context.Context, err error) {
	now := time.Now()
	u.failures++
	switch {
	case u.since.IsZero():
		u.since, u.lastLog, u.delay = now, now, u.o.pullBase
		u.q.log.Warn("queue: pulling jobs fails (no leader or JetStream unavailable); backing off",
			"stream", u.q.cfg.Stream, "consumer", u.q.cfg.Consumer, "error", err)
	default:
		u.delay = min(2*u.delay, u.o.pullMax)
		if now.Sub(u.lastLog) >= u.o.outageLogEvery {
			u.lastLog = now
			u.q.log.Warn("queue: pulling jobs still fails", "stream", u.q.cfg.Stream, "consumer", u.q.cfg.Consumer,
				"for", now.Sub(u.since).Round(time.Millisecond), "failed_pulls", u.failures, "error", err)
		}
	}
	u.q.log.Debug("queue: pull failed", "stream", u.q.cfg.Stream, "attempt", u.failures, "retry_in", u.delay, "error", err)
	t := time.NewTimer(u.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// end records a pull that worked, closing an outage if there was one.
func (u *outage) end() {
	if u.since.IsZero() {
		return
	}
	u.q.log.Info("queue: pulling jobs works again", "stream", u.q.cfg.Stream, "consumer", u.q.cfg.Consumer,
		"after", time.Since(u.since).Round(time.Millisecond), "failed_pulls", u.failures)
	u.since, u.failures, u.delay = time.Time{}, 0, 0
}

func (q *Queue) handle(ctx, consumeCtx context.Context, h Handler, msg jetstream.Msg, o consumeOptions) {
	d, err := q.newDelivery(msg, o)
	if err != nil {
		// Not a job we can read: retrying will not help.
		q.log.Error("queue: undecodable job", "subject", msg.Subject(), "error", err)
		if d == nil {
			_ = msg.TermWithReason(err.Error())
			return
		}
		_ = d.Term(ctx, err)
		return
	}
	herr := runHandler(ctx, h, d)
	if d.settled() {
		return
	}
	// Settle even when the handler's context is gone: an unsettled job
	// waits a whole AckWait before anyone gets it again.
	settleCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	switch {
	case herr == nil:
		err = d.Ack(settleCtx)
	case consumeCtx.Err() != nil && ctx.Err() != nil:
		// Cut short by shutdown: not the job's fault, give it back now.
		err = d.giveBack(settleCtx)
	case errors.Is(herr, ErrPermanent):
		err = d.Term(settleCtx, herr)
	default:
		err = d.Nak(settleCtx, herr)
	}
	if err != nil {
		q.log.Warn("queue: settling a job failed; JetStream will redeliver it", "job", d.Job.Key(), "error", err)
	}
}

// giveBackUnstarted returns a job received during shutdown, before any
// handler saw it.
func (q *Queue) giveBackUnstarted(msg jetstream.Msg, o consumeOptions) {
	d, err := q.newDelivery(msg, o)
	if err != nil {
		_ = msg.Nak()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if err := d.giveBack(ctx); err != nil {
		q.log.Warn("queue: giving a job back failed; JetStream will redeliver it", "job", d.Job.Key(), "error", err)
	}
}

// settleTimeout bounds an ack, nak or dead-lettering after a handler returns.
const settleTimeout = 10 * time.Second

// giveBack returns a job interrupted by shutdown for immediate redelivery.
// On its final delivery a nak would strand it, so it is queued afresh
// instead, with a new delivery count.
func (d *Delivery) giveBack(ctx context.Context) error {
	if err := d.settle(); err != nil {
		return err
	}
	if !d.Final() {
		return d.msg.Nak()
	}
	if _, err := d.q.publish(ctx, d.Job, d.Job.Key()+"/requeue:"+strconv.FormatUint(d.Sequence, 10)); err != nil {
		return err
	}
	if err := d.msg.Term(); err != nil {
		return fmt.Errorf("queue: term %s: %w", d.Job.Key(), err)
	}
	return d.q.removeFromWork(ctx, d.Sequence)
}

// runHandler turns a handler panic into an error so one bad job cannot take
// the worker down.
func runHandler(ctx context.Context, h Handler, d *Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("queue: handler panic: %v", p)
		}
	}()
	return h(ctx, d)
}

// Delivery is one delivery of a job to a handler, with the controls to
// settle it. Settle at most once; later calls return ErrSettled.
type Delivery struct {
	Job Job
	// NumDelivered counts deliveries of this job, this one included.
	NumDelivered uint64
	// Sequence is the job's sequence in the work stream.
	Sequence uint64

	q    *Queue
	msg  jetstream.Msg
	opts consumeOptions

	mu   sync.Mutex
	done bool
}

// ErrSettled is returned when a delivery is settled twice.
var ErrSettled = errors.New("queue: delivery already settled")

func (q *Queue) newDelivery(msg jetstream.Msg, o consumeOptions) (*Delivery, error) {
	md, err := msg.Metadata()
	if err != nil {
		return nil, fmt.Errorf("queue: message metadata: %w", err)
	}
	d := &Delivery{NumDelivered: md.NumDelivered, Sequence: md.Sequence.Stream, q: q, msg: msg, opts: o}
	if err := json.Unmarshal(msg.Data(), &d.Job); err != nil {
		return d, fmt.Errorf("queue: decode job: %w", err)
	}
	return d, nil
}

// Final reports whether this is the last delivery JetStream will make:
// failing now dead-letters the job.
//
// The limit is the consumer's max deliver as it is on the server (as last
// read), whatever this process was configured with; a consumer without a
// limit never has a final delivery.
func (d *Delivery) Final() bool {
	limit := d.q.Config().MaxDeliver
	return limit > 0 && d.NumDelivered >= uint64(limit)
}

// RetryDelay is the nak delay for this delivery.
func (d *Delivery) RetryDelay() time.Duration {
	return retryDelay(d.NumDelivered, d.opts.backoffBase, d.opts.backoffMax)
}

func retryDelay(numDelivered uint64, base, limit time.Duration) time.Duration {
	delay := base
	for i := uint64(1); i < numDelivered && delay < limit; i++ {
		delay *= 2
	}
	return min(delay, limit)
}

func (d *Delivery) settle() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return ErrSettled
	}
	d.done = true
	return nil
}

func (d *Delivery) settled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.done
}

// Ack marks the job done and removes it from the work stream. It waits
// for JetStream to confirm.
func (d *Delivery) Ack(ctx context.Context) error {
	if err := d.settle(); err != nil {
		return err
	}
	if err := d.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("queue: ack %s: %w", d.Job.Key(), err)
	}
	return nil
}

// Nak gives the job back to be retried after RetryDelay. On the final
// delivery it dead-letters the job with cause instead.
func (d *Delivery) Nak(ctx context.Context, cause error) error {
	if err := d.settle(); err != nil {
		return err
	}
	if d.Final() {
		return d.q.deadLetter(ctx, d, ReasonMaxDeliveries, cause)
	}
	delay := d.RetryDelay()
	d.q.log.Info("queue: job failed, will retry", "job", d.Job.Key(), "delivery", d.NumDelivered,
		"retry_in", delay, "error", cause)
	if err := d.msg.NakWithDelay(delay); err != nil {
		return fmt.Errorf("queue: nak %s: %w", d.Job.Key(), err)
	}
	return nil
}

// Term stops retrying the job and dead-letters it with cause.
func (d *Delivery) Term(ctx context.Context, cause error) error {
	if err := d.settle(); err != nil {
		return err
	}
	return d.q.deadLetter(ctx, d, ReasonTerminated, cause)
}

// InProgress tells JetStream the job is still being worked on, resetting
// its AckWait.
func (d *Delivery) InProgress() error {
	return d.msg.InProgress()
}

// progressWait is the shortest time the consumer on the server lets a job
// go without progress: its ack wait, or the shortest of its backoff steps.
func (q *Queue) progressWait() time.Duration {
	c := q.Config()
	wait := c.AckWait
	for _, b := range c.BackOff {
		if b > 0 && (wait <= 0 || b < wait) {
			wait = b
		}
	}
	if wait <= 0 {
		wait = DefaultAckWait
	}
	return wait
}

// KeepAlive signals progress every AckWait/3 until the returned stop is
// called or ctx ends. Use it around long work. AckWait is the consumer's
// on the server, as last read.
func (d *Delivery) KeepAlive(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(d.q.progressWait()/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if d.settled() {
					return
				}
				_ = d.msg.InProgress()
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

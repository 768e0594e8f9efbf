package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Why a job was dead-lettered.
const (
	// ReasonMaxDeliveries: the last allowed delivery failed.
	ReasonMaxDeliveries = "max_deliveries"
	// ReasonTerminated: a handler said retrying cannot help.
	ReasonTerminated = "terminated"
	// ReasonNoResult: the last allowed delivery ended without an ack or
	// nak (the worker died or its AckWait ran out); found through
	// JetStream's max-deliveries advisory.
	ReasonNoResult = "no_result"
)

// Headers on a dead letter. The body is the job as it was queued.
const (
	HeaderDeadReason     = "Dead-Reason"
	HeaderDeadError      = "Dead-Error"
	HeaderDeadDeliveries = "Dead-Deliveries"
	HeaderDeadSequence   = "Dead-Work-Sequence"
	HeaderDeadAt         = "Dead-At"
)

// maxErrorLen bounds the error text kept with a dead letter.
const maxErrorLen = 2048

// DeadLetter is a job that failed for good.
type DeadLetter struct {
	// Sequence in the dead-letter stream; pass it to RetryDeadLetter.
	Sequence uint64
	Job      Job
	// Reason is one of the Reason constants.
	Reason string
	// LastError is the error the job last failed with.
	LastError  string
	Deliveries uint64
	// WorkSequence was the job's sequence in the work stream.
	WorkSequence uint64
	DeadAt       time.Time
}

// deadLetter moves a delivery to the dead-letter stream, then terminates it,
// which removes it from the work stream.
func (q *Queue) deadLetter(ctx context.Context, d *Delivery, reason string, cause error) error {
	lastErr := "unknown"
	if cause != nil {
		lastErr = cause.Error()
	}
	if err := q.publishDeadLetter(ctx, d.msg.Data(), d.Sequence, d.NumDelivered, reason, lastErr); err != nil {
		// Leave the job to JetStream's redelivery rather than lose it.
		return err
	}
	q.log.Warn("queue: job dead-lettered", "job", d.Job.Key(), "reason", reason, "deliveries", d.NumDelivered, "error", lastErr)
	if err := d.msg.TermWithReason(truncate(reason+": "+lastErr, 256)); err != nil {
		return fmt.Errorf("queue: term %s: %w", d.Job.Key(), err)
	}
	return q.removeFromWork(ctx, d.Sequence)
}

// removeFromWork deletes a terminated job from the work stream: servers
// before 2.10 keep terminated messages in a work-queue stream.
func (q *Queue) removeFromWork(ctx context.Context, seq uint64) error {
	err := q.stream.DeleteMsg(ctx, seq)
	if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	// Servers from 2.10 remove a terminated message themselves and then
	// answer the delete with "sequence not found" or "no message found",
	// which nats.go flattens into text: ask whether it is still there.
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		if _, gerr := q.stream.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil
		}
	}
	return fmt.Errorf("queue: remove job %d from %s: %w", seq, q.cfg.Stream, err)
}

func (q *Queue) publishDeadLetter(ctx context.Context, data []byte, workSeq, deliveries uint64, reason, lastErr string) error {
	var job Job
	token := "undecodable"
	if json.Unmarshal(data, &job) == nil && job.Validate() == nil {
		token = job.subjectToken()
	}
	msg := nats.NewMsg(q.cfg.DLQPrefix + "." + token)
	msg.Data = data
	msg.Header.Set(HeaderDeadReason, reason)
	msg.Header.Set(HeaderDeadError, truncate(lastErr, maxErrorLen))
	msg.Header.Set(HeaderDeadDeliveries, strconv.FormatUint(deliveries, 10))
	msg.Header.Set(HeaderDeadSequence, strconv.FormatUint(workSeq, 10))
	msg.Header.Set(HeaderDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	// One dead letter per work message, whichever path gets there first.
	id := "dead:" + q.cfg.Stream + ":" + strconv.FormatUint(workSeq, 10)
	if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(q.cfg.DLQStream)); err != nil {
		return fmt.Errorf("queue: dead-letter work sequence %d: %w", workSeq, unavailable(err))
	}
	return nil
}

// maxDeliveriesAdvisory is the part of JetStream's advisory we use.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries dead-letters jobs whose final delivery ended without
// a result. JetStream stops delivering them but keeps them in the
// work-queue stream, where they would sit forever.
func (q *Queue) watchMaxDeliveries() (stop func(), err error) {
	subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + q.cfg.Stream + "." + q.cfg.Consumer
	sub, err := q.js.Conn().Subscribe(subject, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			q.log.Warn("queue: unreadable max-deliveries advisory", "error", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.deadLetterStuck(ctx, adv.StreamSeq, adv.Deliveries); err != nil {
			q.log.Error("queue: dead-letter after max deliveries", "sequence", adv.StreamSeq, "error", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("queue: subscribe %s: %w", subject, unavailable(err))
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

func (q *Queue) deadLetterStuck(ctx context.Context, seq, deliveries uint64) error {
	raw, err := q.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // settled meanwhile
	}
	if err != nil {
		return err
	}
	if err := q.publishDeadLetter(ctx, raw.Data, seq, deliveries, ReasonNoResult,
		"no ack or nak on the last delivery (worker stopped or AckWait ran out)"); err != nil {
		return err
	}
	if err := q.removeFromWork(ctx, seq); err != nil {
		return err
	}
	q.log.Warn("queue: job dead-lettered", "sequence", seq, "reason", ReasonNoResult, "deliveries", deliveries)
	return nil
}

// DeadLetters lists up to limit dead letters, oldest first; limit <= 0
// means all.
func (q *Queue) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	info, err := q.dlq.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", q.cfg.DLQStream, unavailable(err))
	}
	var out []DeadLetter
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if limit > 0 && len(out) >= limit {
			break
		}
		dl, err := q.deadLetterAt(ctx, seq)
		if errors.Is(err, ErrNotFound) {
			continue // retried or deleted
		}
		if err != nil {
			return out, err
		}
		out = append(out, dl)
	}
	return out, nil
}

// DeadLetter returns the dead letter at seq in the dead-letter stream.
func (q *Queue) DeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	return q.deadLetterAt(ctx, seq)
}

func (q *Queue) deadLetterAt(ctx context.Context, seq uint64) (DeadLetter, error) {
	raw, err := q.dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("queue: dead letter %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("queue: dead letter %d: %w", seq, unavailable(err))
	}
	dl := DeadLetter{
		Sequence:  seq,
		Reason:    raw.Header.Get(HeaderDeadReason),
		LastError: raw.Header.Get(HeaderDeadError),
	}
	dl.Deliveries, _ = strconv.ParseUint(raw.Header.Get(HeaderDeadDeliveries), 10, 64)
	dl.WorkSequence, _ = strconv.ParseUint(raw.Header.Get(HeaderDeadSequence), 10, 64)
	dl.DeadAt, _ = time.Parse(time.RFC3339Nano, raw.Header.Get(HeaderDeadAt))
	if err := json.Unmarshal(raw.Data, &dl.Job); err != nil {
		dl.LastError += " (job undecodable: " + err.Error() + ")"
	}
	return dl, nil
}

// RetryDeadLetter queues the dead letter at seq again, with a fresh
// delivery count, and removes it from the dead-letter stream.
func (q *Queue) RetryDeadLetter(ctx context.Context, seq uint64) (PublishAck, error) {
	dl, err := q.deadLetterAt(ctx, seq)
	if err != nil {
		return PublishAck{}, err
	}
	// A fresh message id: the original key may still be in the dedup
	// window, which would swallow the retry.
	ack, err := q.publish(ctx, dl.Job, dl.Job.Key()+"/retry:"+strconv.FormatUint(seq, 10))
	if err != nil {
		return PublishAck{}, err
	}
	if err := q.dlq.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return ack, fmt.Errorf("queue: remove dead letter %d: %w", seq, unavailable(err))
	}
	return ack, nil
}

// RetryAllDeadLetters queues every dead letter again and returns how many.
func (q *Queue) RetryAllDeadLetters(ctx context.Context) (int, error) {
	dls, err := q.DeadLetters(ctx, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, dl := range dls {
		if _, err := q.RetryDeadLetter(ctx, dl.Sequence); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Stats is the state of the queue, for `indexer queue ls`.
type Stats struct {
	Stream   string
	Messages uint64
	Bytes    uint64
	FirstSeq uint64
	LastSeq  uint64
	// Oldest is when the oldest job still in the work stream (waiting,
	// running or waiting for its retry) was published; zero when it is
	// empty. Settled jobs leave the stream (work-queue retention).
	Oldest time.Time

	Consumer string
	// Pending jobs not yet delivered.
	Pending uint64
	// AckPending jobs delivered and not yet settled.
	AckPending int
	// Redelivered jobs delivered more than once and not yet settled.
	Redelivered int
	// Waiting pull requests (idle workers).
	Waiting int

	DLQStream   string
	DeadLetters uint64
}

// Stats reads the streams' and consumer's state.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	si, err := q.stream.Info(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("queue: stream %s: %w", q.cfg.Stream, unavailable(err))
	}
	di, err := q.dlq.Info(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("queue: stream %s: %w", q.cfg.DLQStream, unavailable(err))
	}
	st := Stats{
		Stream:      q.cfg.Stream,
		Messages:    si.State.Msgs,
		Bytes:       si.State.Bytes,
		FirstSeq:    si.State.FirstSeq,
		LastSeq:     si.State.LastSeq,
		Oldest:      oldest(si.State.Msgs, si.State.FirstTime),
		Consumer:    q.cfg.Consumer,
		DLQStream:   q.cfg.DLQStream,
		DeadLetters: di.State.Msgs,
	}
	var ci *jetstream.ConsumerInfo
	if q.consumer != nil {
		ci, err = q.consumer.Info(ctx)
	} else {
		// A publisher has no handle on the workers' consumer; look.
		var c jetstream.Consumer
		c, err = q.stream.Consumer(ctx, q.cfg.Consumer)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			// No worker has started yet: nothing was delivered.
			st.Pending = st.Messages
			return st, nil
		}
		if err == nil {
			ci = c.CachedInfo()
		}
	}
	if err != nil {
		return Stats{}, fmt.Errorf("queue: consumer %s: %w", q.cfg.Consumer, unavailable(err))
	}
	st.Pending = ci.NumPending
	st.AckPending = ci.NumAckPending
	st.Redelivered = ci.NumRedelivered
	st.Waiting = ci.NumWaiting
	return st, nil
}

func oldest(msgs uint64, first time.Time) time.Time {
	if msgs == 0 {
		return time.Time{}
	}
	return first
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Retry publishes job again under a fresh message id (Key()+"/retry:"+
// nonce), so the dedup window of an earlier publish does not swallow it.
func (q *Queue) Retry(ctx context.Context, job Job, nonce string) (PublishAck, error) {
	return q.publish(ctx, job, job.Key()+"/retry:"+nonce)
}

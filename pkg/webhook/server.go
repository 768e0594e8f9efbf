package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Serve runs the webhook server described by s until ctx ends: it connects
// to NATS (one server or a cluster: s.NATSURL may list several), binds to
// the job streams (creating those that are missing; it never changes one
// that exists, and never touches the workers' consumer), and serves the
// Handler on
// s.Listen (HTTPS when a certificate and key are set). If ln is not nil it
// is used instead of s.Listen. On return, in-flight requests have been
// answered and the NATS connection drained.
func Serve(ctx context.Context, s Settings, ln net.Listener, log *slog.Logger) error {
	s.applyDefaultToken()
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return errors.New("webhook: tls-cert and tls-key go together")
	}
	if s.Queue.AckWait != 0 || s.Queue.MaxDeliver != 0 {
		log.Warn("webhook: queue.ack_wait and queue.max_deliver are ignored: the consumer belongs to the workers "+
			"(set them on the workers, or change them with `indexer queue setup`)",
			"ack_wait", s.Queue.AckWait, "max_deliver", s.Queue.MaxDeliver)
	}
	nc, err := queue.Connect(s.NATSURL, "soci-indexer-webhook", log,
		nats.RetryOnFailedConnect(true),
		// Fail publishes at once while disconnected, so the registry gets
		// a 503 and retries, rather than a buffered publish nobody waits for.
		nats.ReconnectBufSize(-1),
	)
	if err != nil {
		return fmt.Errorf("webhook: connect to NATS: %w", err)
	}
	defer func() { _ = nc.Drain() }()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("webhook: jetstream: %w", err)
	}
	q, err := openQueue(ctx, js, s.Queue.QueueConfig(), log)
	if err != nil {
		return err
	}
	h, err := New(q, s.Webhook, WithLogger(log))
	if err != nil {
		return err
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", s.Listen); err != nil {
			return fmt.Errorf("webhook: listen: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() {
		log.Info("webhook: serving", "addr", ln.Addr().String(), "tls", s.TLSCert != "")
		if s.TLSCert != "" {
			served <- srv.ServeTLS(ln, s.TLSCert, s.TLSKey)
		} else {
			served <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return fmt.Errorf("webhook: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("webhook: shutdown: %w", err)
	}
	return nil
}

// openQueue binds to the streams, waiting for NATS if it is not up yet.
func openQueue(ctx context.Context, js jetstream.JetStream, cfg queue.Config, log *slog.Logger) (*queue.Queue, error) {
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		q, err := queue.NewPublisher(attemptCtx, js, cfg, queue.WithLogger(log))
		cancel()
		if err == nil {
			return q, nil
		}
		if !errors.Is(err, queue.ErrUnavailable) {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		log.Warn("webhook: job streams not ready; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("webhook: %w", err)
		case <-time.After(2 * time.Second):
		}
	}
}

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

// DefaultListen is the address the webhook listens on when
// ServerOptions.Listen is empty.
const DefaultListen = ":8085"

// DefaultShutdownTimeout is the time in-flight requests get on shutdown
// when ServerOptions.ShutdownTimeout is zero.
const DefaultShutdownTimeout = 10 * time.Second

// ServerOptions configures Serve.
type ServerOptions struct {
	// Listen is the address to listen on; default DefaultListen.
	Listen string
	// TLSCert and TLSKey (PEM files), both or neither, make it serve HTTPS.
	TLSCert, TLSKey string
	// NATSURL names one NATS server or a cluster (comma-separated);
	// default nats.DefaultURL.
	NATSURL string
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown.
	ShutdownTimeout time.Duration
	// Queue names the job streams. Replicas and the dedup window apply
	// only to a stream the webhook creates because it is missing; the
	// consumer's settings are the workers'.
	Queue queue.Config
	// Handler configures the endpoints.
	Handler Config
}

// Serve runs the webhook server described by o until ctx ends: it connects
// to NATS, binds to the job streams (creating those that are missing; it
// never changes one that exists, and never touches the workers' consumer),
// and serves the Handler on o.Listen (HTTPS when a certificate and key are
// set). If ln is not nil it is used instead of o.Listen. On return,
// in-flight requests have been answered and the NATS connection drained.
func Serve(ctx context.Context, o ServerOptions, ln net.Listener, log *slog.Logger) error {
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("webhook: tls-cert and tls-key go together")
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.NATSURL == "" {
		o.NATSURL = nats.DefaultURL
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	nc, err := queue.Connect(o.NATSURL, "soci-indexer-webhook", log,
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
	q, err := openQueue(ctx, js, o.Queue, log)
	if err != nil {
		return err
	}
	h, err := New(q, o.Handler, WithLogger(log))
	if err != nil {
		return err
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", o.Listen); err != nil {
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
		log.Info("webhook: serving", "addr", ln.Addr().String(), "tls", o.TLSCert != "")
		if o.TLSCert != "" {
			served <- srv.ServeTLS(ln, o.TLSCert, o.TLSKey)
		} else {
			served <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return fmt.Errorf("webhook: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.ShutdownTimeout)
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

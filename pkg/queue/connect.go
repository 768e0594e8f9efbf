package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Reconnect settings of Connect, suited to a cluster: a client whose server
// goes away moves to another within about a second, and keeps trying for
// ever.
const (
	reconnectWait      = 500 * time.Millisecond
	reconnectJitter    = 250 * time.Millisecond
	reconnectJitterTLS = time.Second
	connectTimeout     = 2 * time.Second
	// A server that vanished without closing the connection is noticed
	// after pingInterval·maxPingsOut.
	pingInterval = 10 * time.Second
	maxPingsOut  = 3
)

// ErrNoURL is returned by Connect when urls names no server.
var ErrNoURL = errors.New("queue: no NATS URL")

// SplitURLs splits a comma-separated list of NATS URLs, dropping blanks.
func SplitURLs(urls string) []string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Connect opens a NATS connection to one server or to a cluster: urls is a
// comma-separated list of server URLs (any node of a cluster is enough to
// start; the client learns the others from it). The connection reconnects
// for ever, to whichever server answers, and logs losing and regaining its
// server. opts come last and override these settings.
func Connect(urls, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	list := SplitURLs(urls)
	if len(list) == 0 {
		return nil, ErrNoURL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := []nats.Option{
		nats.Name(name),
		nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(reconnectJitter, reconnectJitterTLS),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("queue: NATS connection lost; reconnecting", "error", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("queue: NATS reconnected", "url", c.ConnectedUrlRedacted())
		}),
	}
	nc, err := nats.Connect(strings.Join(list, ","), append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("queue: connect to NATS (%d servers): %w", len(list), err)
	}
	return nc, nil
}

package registryclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"time"
)

// probeTimeout bounds the one TLS handshake a loopback registry is probed
// with.
const probeTimeout = 3 * time.Second

// loopbackProbe finds out, once per host, whether a registry on a loopback
// address speaks plain HTTP. Docker treats localhost registries as
// insecure; this does the same without guessing: a TLS handshake answered
// with an HTTP response means plain HTTP, a completed one means HTTPS (with
// the certificate checked by the requests themselves).
type loopbackProbe struct {
	mu    sync.Mutex
	known map[string]bool
}

func newLoopbackProbe() *loopbackProbe { return &loopbackProbe{known: map[string]bool{}} }

func (p *loopbackProbe) plainHTTP(ctx context.Context, host string) bool {
	if !isLoopback(host) {
		return false
	}
	p.mu.Lock()
	plain, ok := p.known[host]
	p.mu.Unlock()
	if ok {
		return plain
	}
	plain, sure := speaksPlainHTTP(ctx, host)
	if sure {
		// Only a definite answer is kept: a registry that is not up yet
		// is asked again next time.
		p.mu.Lock()
		p.known[host] = plain
		p.mu.Unlock()
	}
	return plain
}

// speaksPlainHTTP handshakes with host; sure is false when the connection
// failed before either protocol showed.
func speaksPlainHTTP(ctx context.Context, host string) (plain, sure bool) {
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		addr = net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// The handshake only tells which protocol the server speaks; nothing
	// is sent over it, and the requests verify the certificate.
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // protocol probe only
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		_ = conn.Close()
		return false, true
	}
	var header tls.RecordHeaderError
	if errors.As(err, &header) {
		return true, true
	}
	return false, false
}

// isLoopback: localhost, or a loopback IP, with or without a port.
func isLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

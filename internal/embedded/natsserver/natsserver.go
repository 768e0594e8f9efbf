// Package natsserver runs a NATS server with JetStream inside this process:
// for tests, and for the all-in-one mode.
package natsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure a Server.
type Options struct {
	// StoreDir holds JetStream's file storage. Required: a server restarted
	// on the same directory keeps its streams and consumers.
	StoreDir string
	// Host to listen on; default "127.0.0.1".
	Host string
	// Port to listen on; zero picks a free port. After a Restart the
	// server listens on the port it had, so clients can reconnect.
	Port int
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept
	// connections; default 10s.
	ReadyTimeout time.Duration
	// Name is the server's name, unique within a cluster; default
	// "soci-indexer-embedded".
	Name string
	// Cluster, if set, makes the server a node of a JetStream cluster.
	Cluster *ClusterOptions
}

// ClusterOptions make a server one node of a cluster.
type ClusterOptions struct {
	// Name of the cluster, the same on every node.
	Name string
	// Port for routes from the other nodes; zero picks a free one. A
	// restarted node listens on the port it had.
	Port int
	// Routes are the other nodes' route URLs (nats-route://host:port).
	Routes []string
}

// Server is a running embedded NATS server.
type Server struct {
	opts Options

	mu          sync.Mutex
	ns          *server.Server
	port        int
	clusterPort int
}

// ErrNotRunning is returned by Stop when the server is already stopped.
var ErrNotRunning = errors.New("embedded nats-server: not running")

// Start starts a server and returns once it accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("embedded nats-server: StoreDir is required")
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	if opts.Name == "" {
		opts.Name = "soci-indexer-embedded"
	}
	s := &Server{opts: opts, port: opts.Port}
	if s.port == 0 {
		s.port = server.RANDOM_PORT
	}
	if opts.Cluster != nil {
		s.clusterPort = opts.Cluster.Port
		if s.clusterPort == 0 {
			s.clusterPort = server.RANDOM_PORT
		}
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	sopts := &server.Options{
		ServerName: s.opts.Name,
		Host:       s.opts.Host,
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.opts.StoreDir,
		NoSigs:     true,
		NoLog:      s.opts.Logger == nil,
	}
	if c := s.opts.Cluster; c != nil {
		sopts.Cluster = server.ClusterOpts{Name: c.Name, Host: s.opts.Host, Port: s.clusterPort}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return fmt.Errorf("embedded nats-server: route %q: %w", r, err)
			}
			sopts.Routes = append(sopts.Routes, u)
		}
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return fmt.Errorf("embedded nats-server: %w", err)
	}
	if s.opts.Logger != nil {
		ns.SetLoggerV2(slogAdapter{s.opts.Logger}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(s.opts.ReadyTimeout) {
		ns.Shutdown()
		return fmt.Errorf("embedded nats-server: not ready after %s", s.opts.ReadyTimeout)
	}
	// Keep the port across restarts so clients reconnect to the same URL.
	if addr, ok := ns.Addr().(*net.TCPAddr); ok {
		s.port = addr.Port
	}
	if addr := ns.ClusterAddr(); addr != nil && s.opts.Cluster != nil {
		s.clusterPort = addr.Port
	}
	s.ns = ns
	return nil
}

// ClientURL is the URL clients connect to, e.g. "nats://127.0.0.1:41234".
func (s *Server) ClientURL() string {
	return fmt.Sprintf("nats://%s:%d", s.opts.Host, s.Port())
}

// Name is the server's name.
func (s *Server) Name() string { return s.opts.Name }

// Running reports whether the server is up (not stopped).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ns != nil
}

// Port is the port the server listens on.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Stop shuts the server down but keeps its store, so Restart brings back
// the same streams and consumers.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns == nil {
		return ErrNotRunning
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.ns = nil
	return nil
}

// Restart starts a stopped server again on the same port and store.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		return errors.New("embedded nats-server: already running")
	}
	return s.start()
}

// Shutdown stops the server for good. It is safe to call more than once.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}

// slogAdapter routes nats-server's logger interface to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }

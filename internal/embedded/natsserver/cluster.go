package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ClusterConfig describes a JetStream cluster of embedded servers on one
// host, for tests.
type ClusterConfig struct {
	// Nodes is the number of servers; default 3.
	Nodes int
	// Name of the cluster; default "soci-indexer".
	Name string
	// StoreDir holds one directory of file storage per node. Required.
	StoreDir string
	// Host to listen on; default "127.0.0.1".
	Host string
	// Logger receives the servers' logs; nil discards them.
	Logger *slog.Logger
}

// Cluster is a running cluster of embedded servers. Its nodes can be
// stopped and restarted one by one; each keeps its name, ports and store.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts the nodes of a cluster, each routed to all others,
// and returns once every node accepts client connections. JetStream
// itself may need a moment more to elect its leaders: see WaitJetStream.
func StartCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats cluster: StoreDir is required")
	}
	if cfg.Nodes <= 0 {
		cfg.Nodes = 3
	}
	if cfg.Name == "" {
		cfg.Name = "soci-indexer"
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	// Every node must know the others' route ports before it starts.
	ports, err := freePorts(cfg.Host, cfg.Nodes)
	if err != nil {
		return nil, err
	}
	c := &Cluster{nodes: make([]*Server, cfg.Nodes)}
	errs := make([]error, cfg.Nodes)
	var wg sync.WaitGroup
	for i := range cfg.Nodes {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://%s:%d", cfg.Host, p))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		log := cfg.Logger
		if log != nil {
			log = log.With("node", name)
		}
		wg.Go(func() {
			c.nodes[i], errs[i] = Start(Options{
				StoreDir: filepath.Join(cfg.StoreDir, name),
				Host:     cfg.Host,
				Name:     name,
				Logger:   log,
				Cluster:  &ClusterOptions{Name: cfg.Name, Port: ports[i], Routes: routes},
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// freePorts finds n free TCP ports on host.
func freePorts(host string, n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("embedded nats cluster: %w", err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// Nodes are the cluster's servers, in order n1, n2, ...
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Node returns the server with the given name, or nil.
func (c *Cluster) Node(name string) *Server {
	for _, n := range c.nodes {
		if n.Name() == name {
			return n
		}
	}
	return nil
}

// ClientURLs lists every node's client URL, comma-separated, as NATS
// clients take them.
func (c *Cluster) ClientURLs() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.ClientURL()
	}
	return strings.Join(urls, ",")
}

// WaitJetStream waits until the running nodes agree on a JetStream meta
// leader, or ctx ends.
func (c *Cluster) WaitJetStream(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		leaders, running, current := 0, 0, 0
		for _, n := range c.nodes {
			n.mu.Lock()
			if ns := n.ns; ns != nil {
				running++
				if ns.JetStreamIsLeader() {
					leaders++
				}
				if ns.JetStreamIsCurrent() {
					current++
				}
			}
			n.mu.Unlock()
		}
		if leaders == 1 && current == running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("embedded nats cluster: no JetStream leader (%d of %d nodes running): %w", running, len(c.nodes), ctx.Err())
		case <-t.C:
		}
	}
}

// Shutdown stops every node for good.
func (c *Cluster) Shutdown() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n != nil {
			wg.Go(n.Shutdown)
		}
	}
	wg.Wait()
}

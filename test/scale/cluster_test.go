// Package scale_test runs soci-indexer in its deployed shape on one
// machine: the webhook (cmd/webhook) and several `indexer serve` worker
// processes, built from this module and started as separate processes, on
// the machine's NATS JetStream (a stream of their own per test) and one
// PostgreSQL database created for the test, with an embedded distribution
// registry in the test process. TestManyWorkersSurviveSIGKILL kills a worker
// process again and again during a run; BenchmarkWorkerProcesses measures
// throughput with 1, 2 and 4 worker processes (scripts/bench-workers).
package scale_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/soci-indexer/soci-indexer/internal/config"
	embeddedregistry "github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testproc"
	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

const machineNATS = "nats://127.0.0.1:4222"

// cluster is one deployment: a database, a stream, a registry, optionally
// the webhook, and worker processes.
type cluster struct {
	tb       testing.TB
	bin      string
	dsn      string
	stream   string
	subject  string
	consumer string
	token    string
	settings map[string]string // worker settings by YAML key (internal/config)
	webhook  *testproc.Proc
	hookAddr string
	reg      *embeddedregistry.Registry
	// workerRegistry is the registry as the workers reach it (and as jobs
	// name it): the registry itself, or a throttling proxy in front of it.
	workerRegistry string
	store          db.Store
	js             jetstream.JetStream
}

type clusterOptions struct {
	webhook  bool              // run cmd/webhook, and point the registry's notifications at it
	settings map[string]string // worker settings by YAML key, over the defaults below
	// throttle, when not 0, puts a proxy between the workers and the
	// registry that serves each connection at most this many bytes per
	// second, as a busy registry or a thin link would.
	throttle int
}

func newCluster(tb testing.TB, o clusterOptions) *cluster {
	tb.Helper()
	conn, err := nats.Connect(machineNATS, nats.Timeout(2*time.Second))
	if err != nil {
		tb.Fatalf("NATS with JetStream is needed at %s (scripts/ensure-services starts it): %v", machineNATS, err)
	}
	tb.Cleanup(conn.Close)
	js, err := jetstream.New(conn)
	if err != nil {
		tb.Fatal(err)
	}
	c := &cluster{
		tb:       tb,
		bin:      testproc.Build(tb, "./cmd/indexer", "./cmd/webhook"),
		stream:   fmt.Sprintf("SCALE_%d_%d", os.Getpid(), time.Now().UnixNano()),
		consumer: "workers",
		token:    "scale-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		js:       js,
	}
	c.subject = strings.ToLower(c.stream)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, c.stream)
		_ = js.DeleteStream(ctx, c.stream+"_DLQ")
	})
	c.dsn, _ = testpg.NewDatabase(tb, "scale")
	c.settings = map[string]string{
		"nats_url":       machineNATS,
		"database_url":   c.dsn,
		"stream":         c.stream,
		"subject":        c.subject,
		"consumer":       c.consumer,
		"plain_http":     "true",
		"docker_config":  filepath.Join(tb.TempDir(), "none.json"),
		"shutdown_grace": "5s",
		"retry_backoff":  "200ms",
		"retry_max":      "1s",
	}
	for k, v := range o.settings {
		c.settings[k] = v
	}

	regAddr := testproc.FreeAddr(tb)
	c.workerRegistry = regAddr
	if o.throttle > 0 {
		c.workerRegistry = startThrottle(tb, regAddr, o.throttle)
	}
	var notify []embeddedregistry.Notification
	if o.webhook {
		c.hookAddr = testproc.FreeAddr(tb)
		c.startWebhook(c.workerRegistry)
		notify = []embeddedregistry.Notification{{
			URL:              "http://" + c.hookAddr + webhook.PathDistribution,
			Headers:          http.Header{"Authorization": {"Bearer " + c.token}},
			IgnoreMediaTypes: []string{"application/octet-stream"},
		}}
	}
	c.reg, err = embeddedregistry.Start(context.Background(), embeddedregistry.Options{
		Addr: regAddr, RootDir: tb.TempDir(), Notifications: notify,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.reg.Close() })

	// The schema exists before the workers start: as the chart's migration
	// step does, and so that the store below can be opened first.
	migrate := testproc.Start(tb, "migrate", filepath.Join(c.bin, "indexer"),
		[]string{"migrate", "--database-url", c.dsn}, testproc.BaseEnv(tb))
	if err := migrate.Wait(time.Minute); err != nil {
		tb.Fatalf("indexer migrate: %v\n%s", err, migrate.Output())
	}
	c.store, err = db.Open(context.Background(), c.dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.store.Close() })
	return c
}

// startThrottle listens on loopback and forwards every connection to
// target, sending target's answers back at most rate bytes per second.
func startThrottle(tb testing.TB, target string, rate int) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(server, client)
				server.Close()
			}()
			go func() {
				defer wg.Done()
				defer client.Close()
				buf := make([]byte, 16<<10)
				for {
					n, err := server.Read(buf)
					if n > 0 {
						if _, werr := client.Write(buf[:n]); werr != nil {
							return
						}
						time.Sleep(time.Duration(n) * time.Second / time.Duration(rate))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// startWebhook runs cmd/webhook on the cluster's queue, with the same
// INDEXER_* names as the workers'. Every variable is checked against the
// settings cmd/webhook reads.
func (c *cluster) startWebhook(registry string) {
	c.tb.Helper()
	vars := map[string]string{
		"INDEXER_LISTEN":                c.hookAddr,
		"INDEXER_NATS_URL":              machineNATS,
		"INDEXER_WEBHOOK_SECRET":        c.token,
		"INDEXER_DISTRIBUTION_REGISTRY": registry,
		"INDEXER_HARBOR_DISABLED":       "true",
		"INDEXER_CLOUDEVENTS_DISABLED":  "true",
		"INDEXER_ECR_DISABLED":          "true",
		// The workers' queue: the dead letters follow from these as
		// they do for the workers (config.Config.QueueConfig).
		"INDEXER_STREAM":   c.stream,
		"INDEXER_SUBJECT":  c.subject,
		"INDEXER_CONSUMER": c.consumer,
	}
	read := map[string]bool{}
	var cfg config.Config
	fs := pflag.NewFlagSet("webhook", pflag.ContinueOnError)
	loader := config.RegisterWebhook(fs, &cfg, func(k string) (string, bool) { read[k] = true; return "", false })
	if err := fs.Parse(nil); err != nil {
		c.tb.Fatal(err)
	}
	if err := loader.Resolve(); err != nil {
		c.tb.Fatal(err)
	}
	env := testproc.BaseEnv(c.tb)
	for k, v := range vars {
		if !read[k] {
			c.tb.Fatalf("%s is not a setting of cmd/webhook any more", k)
		}
		env = append(env, k+"="+v)
	}
	c.webhook = testproc.Start(c.tb, "webhook", filepath.Join(c.bin, "webhook"), nil, env)
	if err := c.webhook.WaitHTTP("http://"+c.hookAddr+webhook.PathReadyz, 30*time.Second); err != nil {
		c.tb.Fatal(err)
	}
}

// workerEnv is the environment of one worker process: every setting
// through its variable as internal/config declares it.
func (c *cluster) workerEnv(listen string) []string {
	c.tb.Helper()
	byKey := map[string]string{}
	for _, s := range config.Settings() {
		byKey[s.Key] = s.Env
	}
	env := append(testproc.BaseEnv(c.tb), "INDEXER_LOG_LEVEL=info")
	settings := map[string]string{"listen": listen}
	for k, v := range c.settings {
		settings[k] = v
	}
	for k, v := range settings {
		name, ok := byKey[k]
		if !ok {
			c.tb.Fatalf("no setting %q in internal/config", k)
		}
		env = append(env, name+"="+v)
	}
	return env
}

// worker is one `indexer serve` process.
type worker struct {
	*testproc.Proc
	addr string
	name string // as job records name it: hostname:pid
}

var hostname, _ = os.Hostname()

// startWorker starts a worker process and waits until it is ready.
func (c *cluster) startWorker(label string) *worker {
	c.tb.Helper()
	addr := testproc.FreeAddr(c.tb)
	p := testproc.Start(c.tb, label, filepath.Join(c.bin, "indexer"), []string{"serve"}, c.workerEnv(addr))
	if err := p.WaitHTTP("http://"+addr+"/readyz", 30*time.Second); err != nil {
		c.tb.Fatal(err)
	}
	return &worker{Proc: p, addr: addr, name: fmt.Sprintf("%s:%d", hostname, p.PID())}
}

// runningOn reports whether the job table shows w running a job.
func (c *cluster) runningOn(ctx context.Context, w *worker) bool {
	jobs, err := c.store.List(ctx, db.JobFilter{Registry: c.workerRegistry, Status: db.JobRunning, Limit: 1000})
	if err != nil {
		return false
	}
	for _, j := range jobs {
		if j.Worker == w.name {
			return true
		}
	}
	return false
}

// queueState is what JetStream holds for the cluster's queue.
type queueState struct {
	streamMsgs, pending, ackPending, dead uint64
}

func (c *cluster) queueState(ctx context.Context) (queueState, error) {
	var q queueState
	s, err := c.js.Stream(ctx, c.stream)
	if err != nil {
		return q, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return q, err
	}
	q.streamMsgs = info.State.Msgs
	cons, err := s.Consumer(ctx, c.consumer)
	if err != nil {
		return q, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return q, err
	}
	q.pending, q.ackPending = ci.NumPending, uint64(ci.NumAckPending)
	if dlq, err := c.js.Stream(ctx, c.stream+"_DLQ"); err == nil {
		di, err := dlq.Info(ctx)
		if err != nil {
			return q, err
		}
		q.dead = di.State.Msgs
	}
	return q, nil
}

// waitJobs waits until every key's job is finished (succeeded, skipped or
// failed) and returns them.
func (c *cluster) waitJobs(keys []db.JobKey, timeout time.Duration) ([]*db.Job, error) {
	deadline := time.Now().Add(timeout)
	jobs := make([]*db.Job, len(keys))
	for {
		done := 0
		var last error
		for i, k := range keys {
			if jobs[i] != nil {
				done++
				continue
			}
			j, err := c.store.Get(context.Background(), k)
			if err != nil {
				last = err
				continue
			}
			switch j.Status {
			case db.JobSucceeded, db.JobSkipped, db.JobFailed:
				jobs[i] = j
				done++
			}
		}
		if done == len(keys) {
			return jobs, nil
		}
		if time.Now().After(deadline) {
			return jobs, fmt.Errorf("%d of %d jobs finished within %s (last error: %v)", done, len(keys), timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

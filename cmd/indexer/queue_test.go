package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

func TestQueueCommands(t *testing.T) {
	url := os.Getenv("NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to NATS at %s (run scripts/ensure-services): %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := strings.ToUpper(hex.EncodeToString(b[:]))
	cfg := queue.Config{Stream: "CLITEST_" + id, SubjectPrefix: "clitest." + id + ".jobs",
		DLQStream: "CLITEST_" + id + "_DLQ", DLQPrefix: "clitest." + id + ".dlq", Consumer: "workers"}
	ctx := context.Background()
	q, err := queue.New(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = js.DeleteStream(ctx, cfg.Stream)
		_ = js.DeleteStream(ctx, cfg.DLQStream)
	})
	for _, d := range []string{"sha256:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("b", 64)} {
		if _, err := q.Publish(ctx, queue.Job{Source: "test", Registry: "r.test", Repository: "app", Digest: d, Action: queue.ActionPush}); err != nil {
			t.Fatal(err)
		}
	}
	// Dead-letter the first job.
	consumeCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(consumeCtx, func(ctx context.Context, d *queue.Delivery) error {
			return queue.Permanent(errors.New("not an image"))
		}, queue.WithFetchWait(200*time.Millisecond))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := q.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.DeadLetters >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) string {
		t.Helper()
		cmd := newQueueCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--nats-url", url, "--stream", cfg.Stream, "--dlq-stream", cfg.DLQStream,
			"--consumer", cfg.Consumer, "--subject", cfg.SubjectPrefix))
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("queue %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	if out := run("ls"); !strings.Contains(out, cfg.Stream) || !strings.Contains(out, cfg.DLQStream) {
		t.Errorf("queue ls:\n%s", out)
	}
	var ls queueListing
	if err := json.Unmarshal([]byte(run("ls", "--json")), &ls); err != nil || ls.Stream != cfg.Stream || ls.DLQStream != cfg.DLQStream || ls.DeadLetters < 1 {
		t.Errorf("queue ls --json: %+v (%v)", ls, err)
	}
	var dls []deadLetterListing
	if err := json.Unmarshal([]byte(run("dlq", "ls", "--json")), &dls); err != nil || len(dls) < 1 ||
		dls[0].Reason != "terminated" || !strings.Contains(dls[0].LastError, "not an image") || dls[0].Job.Registry != "r.test" {
		t.Errorf("queue dlq ls --json: %+v (%v)", dls, err)
	}
	dlq := run("dlq", "ls")
	if !strings.Contains(dlq, "terminated") || !strings.Contains(dlq, "not an image") || !strings.Contains(dlq, "r.test/app@sha256:") {
		t.Errorf("queue dlq ls:\n%s", dlq)
	}
	if out := run("dlq", "retry", "--all"); !strings.Contains(out, "requeued") {
		t.Errorf("queue dlq retry --all:\n%s", out)
	}
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DeadLetters != 0 {
		t.Errorf("dead letters after retry: %d, want 0", st.DeadLetters)
	}
}

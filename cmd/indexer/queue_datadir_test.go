package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/soci-indexer/soci-indexer/internal/datadir"
	"github.com/soci-indexer/soci-indexer/internal/testproc"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// TestQueueFindsAllInOne runs the built binary: `queue ls` and `queue dlq
// ls` without --nats-url find the all-in-one server through --data-dir (as
// backfill does), say so when none runs there, and never create streams.
func TestQueueFindsAllInOne(t *testing.T) {
	bin := filepath.Join(testproc.Build(t, "./cmd/indexer"), "indexer")
	env := testproc.BaseEnv(t)
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return stdout.String(), stderr.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), 0
	}

	// No server on the directory: an error that says so, not a query to
	// whatever listens on 127.0.0.1:4222.
	empty := t.TempDir()
	for _, args := range [][]string{{"queue", "ls"}, {"queue", "dlq", "ls"}} {
		_, stderr, code := run(append(args, "--data-dir", empty)...)
		if code == 0 || !strings.Contains(stderr, "no --nats-url") || !strings.Contains(stderr, empty) {
			t.Errorf("%v on an empty data dir: exit %d, %s", args, code, stderr)
		}
	}

	dir := t.TempDir()
	testproc.Start(t, "serve", bin, []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0"}, env)
	var rec datadir.Server
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		if rec, err = datadir.Dir(dir).Running(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never recorded itself: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stdout, stderr, code := run("queue", "ls", "--data-dir", dir, "--json")
	if code != 0 {
		t.Fatalf("queue ls --data-dir: exit %d: %s", code, stderr)
	}
	var ls queueListing
	if err := json.Unmarshal([]byte(stdout), &ls); err != nil {
		t.Fatalf("queue ls --json: %v\n%s", err, stdout)
	}
	if ls.Stream != queue.DefaultStream || ls.Consumer != queue.DefaultConsumer || ls.DLQStream != queue.DefaultDLQStream {
		t.Errorf("queue ls on the all-in-one server: %+v", ls)
	}
	stdout, stderr, code = run("queue", "dlq", "ls", "--data-dir", dir, "--json")
	if code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("queue dlq ls --data-dir: exit %d, %q, %s", code, stdout, stderr)
	}

	// Read-only: a stream that does not exist stays missing.
	missing := fmt.Sprintf("NOSUCH_%d", time.Now().UnixNano())
	for _, args := range [][]string{{"queue", "ls"}, {"queue", "dlq", "ls"}} {
		if _, stderr, code := run(append(args, "--data-dir", dir, "--stream", missing)...); code == 0 {
			t.Errorf("%v --stream %s: exit 0 (%s)", args, missing, stderr)
		}
	}
	nc, err := nats.Connect(rec.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{missing, missing + "_DLQ"} {
		if _, err := js.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("stream %s after read-only commands: %v, want not found", name, err)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// `queue setup` changes only the settings it is given, on the server, and
// `queue ls` shows them.
func TestQueueSetupChangesOnlyWhatItIsGiven(t *testing.T) {
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
	cfg := queue.Config{Stream: "SETUPTEST_" + id, SubjectPrefix: "setuptest." + id + ".jobs",
		DLQStream: "SETUPTEST_" + id + "_DLQ", DLQPrefix: "setuptest." + id + ".dlq", Consumer: "workers",
		AckWait: 90 * time.Second, MaxDeliver: 3}
	ctx := context.Background()
	t.Cleanup(func() {
		_ = js.DeleteStream(ctx, cfg.Stream)
		_ = js.DeleteStream(ctx, cfg.DLQStream)
	})
	if _, err := queue.New(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := newQueueCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--nats-url", url, "--stream", cfg.Stream, "--dlq-stream", cfg.DLQStream,
			"--consumer", cfg.Consumer, "--subject", cfg.SubjectPrefix, "--dlq-prefix", cfg.DLQPrefix))
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("queue %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	out := run("setup", "--max-deliver", "4", "--stream-duplicates", "3m")
	c, err := js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	if cc.MaxDeliver != 4 || cc.AckWait != cfg.AckWait {
		t.Fatalf("after setup --max-deliver 4: max deliver %d, ack wait %s (want 4 and the untouched %s)\n%s",
			cc.MaxDeliver, cc.AckWait, cfg.AckWait, out)
	}
	for _, name := range []string{cfg.Stream, cfg.DLQStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if d := s.CachedInfo().Config.Duplicates; d != 3*time.Minute {
			t.Errorf("%s dedup window %s, want 3m", name, d)
		}
	}
	if ls := run("ls"); !strings.Contains(ls, "MAX DELIVER") || !strings.Contains(ls, "1m30s") {
		t.Errorf("queue ls does not show the settings:\n%s", ls)
	}
	// The former name still sets the same thing, with a notice.
	if out := run("setup", "--duplicates", "4m"); !strings.Contains(out, "use --stream-duplicates") {
		t.Errorf("--duplicates gives no deprecation notice:\n%s", out)
	}
	if s, err := js.Stream(ctx, cfg.Stream); err != nil || s.CachedInfo().Config.Duplicates != 4*time.Minute {
		t.Errorf("after setup --duplicates 4m: %v %+v", err, s)
	}
}

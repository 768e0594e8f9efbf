package natsserver

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStopRestartKeepsStreams(t *testing.T) {
	srv, err := Start(Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("x")); err != nil {
		t.Fatal(err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != ErrNotRunning {
		t.Fatalf("second Stop: %v, want ErrNotRunning", err)
	}
	pubCtx, pubCancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = js.Publish(pubCtx, "s.2", []byte("y"))
	pubCancel()
	if err == nil {
		t.Fatal("publish succeeded while the server was stopped")
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.ClientURL() != url {
		t.Fatalf("URL changed across restart: %s → %s", url, srv.ClientURL())
	}
	// The client reconnects on its own; the stream and its message survived.
	var info *jetstream.StreamInfo
	for {
		s, err := js.Stream(ctx, "S")
		if err == nil {
			info, err = s.Info(ctx)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("messages after restart = %d, want 1", info.State.Msgs)
	}
}

func TestStartNeedsStoreDir(t *testing.T) {
	if _, err := Start(Options{}); err == nil {
		t.Fatal("Start without StoreDir succeeded")
	}
}

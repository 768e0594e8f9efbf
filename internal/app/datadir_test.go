package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soci-indexer/soci-indexer/internal/datadir"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
)

// Two all-in-one servers on one data directory would share SQLite and the
// JetStream store: the second is refused with a clear error, and the
// first keeps its record, through which backfill finds it; once it stops,
// nothing claims to run there.
func TestOneServerPerDataDir(t *testing.T) {
	cfg := testsupport.Config(t)
	s := startServer(t, cfg)
	_, err := Start(context.Background(), cfg, testsupport.Logger(t))
	if !errors.Is(err, datadir.ErrInUse) || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Fatalf("second server on %s: %v, want datadir.ErrInUse naming the directory", cfg.DataDir, err)
	}
	running, err := datadir.Dir(cfg.DataDir).Running()
	if err != nil || running.HTTP != "http://"+s.Addr() || running.PID != os.Getpid() || running.NATSURL == "" {
		t.Fatalf("record of the running server: %+v, %v", running, err)
	}
	// The generated webhook token is kept where the startup log says.
	raw, err := os.ReadFile(filepath.Join(cfg.DataDir, "webhook.token"))
	if err != nil || strings.TrimSpace(string(raw)) != s.WebhookSecret() {
		t.Fatalf("webhook.token: %q, %v; want the server's token", raw, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := datadir.Dir(cfg.DataDir).Running(); !errors.Is(err, datadir.ErrNotRunning) {
		t.Fatalf("after Close: %v, want ErrNotRunning", err)
	}
	if _, _, err := OpenBackfiller(context.Background(), cfg, testsupport.Logger(t)); !errors.Is(err, datadir.ErrNotRunning) {
		t.Fatalf("backfill with no server: %v, want ErrNotRunning", err)
	}
}

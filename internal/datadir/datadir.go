// Package datadir is the all-in-one server's data directory: where it keeps
// NATS, SQLite and registry data, the lock that lets one server use it at a
// time, the webhook token it generated, and the record through which the
// other commands (backfill, queue, status) find the server running on it.
package datadir

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Sentinel errors.
var (
	// ErrInUse is returned by Lock when another process holds the directory.
	ErrInUse = errors.New("data directory in use by another indexer serve")
	// ErrNotRunning is returned by Running when no server holds the directory.
	ErrNotRunning = errors.New("no all-in-one server is running on this data directory")
)

// Dir is a data directory.
type Dir string

func (d Dir) path(name string) string { return filepath.Join(string(d), name) }

// NATSStore is the embedded NATS server's JetStream store.
func (d Dir) NATSStore() string { return d.path("nats") }

// DatabaseURL is the all-in-one SQLite database.
func (d Dir) DatabaseURL() string { return "sqlite://" + d.path("indexer.db") }

// RegistryStorage is the embedded registry's storage.
func (d Dir) RegistryStorage() string { return d.path("registry") }

// TokenFile holds the generated webhook token.
func (d Dir) TokenFile() string { return d.path("webhook.token") }

func (d Dir) lockFile() string   { return d.path("serve.lock") }
func (d Dir) serverFile() string { return d.path("server.json") }

// Lock is an exclusive hold on a data directory, released by Release or by
// the process's end (it is a flock, which the kernel drops with the process).
type Lock struct {
	dir Dir
	f   *os.File
}

// Lock creates the directory if needed and takes it for this process. It
// fails with ErrInUse, naming the holder's pid, when a server runs on it.
func (d Dir) Lock() (*Lock, error) {
	if err := os.MkdirAll(string(d), 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	f, err := os.OpenFile(d.lockFile(), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if s, rerr := d.readServer(); rerr == nil && s.PID > 0 {
			holder = fmt.Sprintf("pid %d", s.PID)
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by %s; stop it or pass another --data-dir", ErrInUse, d, holder)
		}
		return nil, fmt.Errorf("data dir: lock %s: %w", d.lockFile(), err)
	}
	// A record left by a server that died is stale from now on.
	_ = os.Remove(d.serverFile())
	return &Lock{dir: d, f: f}, nil
}

// Release removes the server record and lets another server take the
// directory.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = os.Remove(l.dir.serverFile())
	err := l.f.Close()
	l.f = nil
	return err
}

// Server is what a running all-in-one server publishes about itself.
type Server struct {
	PID int `json:"pid"`
	// NATSURL of the embedded NATS server.
	NATSURL string `json:"nats_url"`
	// HTTP is the base URL of its HTTP listener (webhook, status, metrics).
	HTTP string `json:"http"`
	// Registry is the embedded registry's host:port, if it runs one.
	Registry string `json:"registry,omitempty"`
	// DatabaseURL is the store it uses.
	DatabaseURL string `json:"database_url"`
}

// Publish records s for the other commands. Only the lock's holder may.
func (l *Lock) Publish(s Server) error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.dir.serverFile() + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o640); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return os.Rename(tmp, l.dir.serverFile())
}

// Running returns the record of the server running on the directory, or
// ErrNotRunning when none holds it (a record left by a dead one is ignored).
func (d Dir) Running() (Server, error) {
	f, err := os.Open(d.lockFile())
	if errors.Is(err, os.ErrNotExist) {
		return Server{}, fmt.Errorf("%w: %s (start one with `indexer serve --data-dir %s`)", ErrNotRunning, d, d)
	}
	if err != nil {
		return Server{}, fmt.Errorf("data dir: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return Server{}, fmt.Errorf("%w: %s (start one with `indexer serve --data-dir %s`)", ErrNotRunning, d, d)
	}
	s, err := d.readServer()
	if err != nil {
		return Server{}, fmt.Errorf("%w: %s is locked but has no server record yet: %w", ErrNotRunning, d, err)
	}
	return s, nil
}

func (d Dir) readServer() (Server, error) {
	raw, err := os.ReadFile(d.serverFile())
	if err != nil {
		return Server{}, err
	}
	var s Server
	if err := json.Unmarshal(raw, &s); err != nil {
		return Server{}, fmt.Errorf("%s: %w", d.serverFile(), err)
	}
	return s, nil
}

// WebhookToken returns the token in TokenFile, creating a random one the
// first time, so that a registry pointed at the webhook keeps working
// across restarts.
func (d Dir) WebhookToken() (string, error) { return d.token(d.TokenFile(), "webhook token") }

// StatusTokenFile holds the read token of the status API and page.
func (d Dir) StatusTokenFile() string { return d.path("status.token") }

// StatusToken returns the token in StatusTokenFile, creating a random one
// the first time. It is never the webhook's token.
func (d Dir) StatusToken() (string, error) { return d.token(d.StatusTokenFile(), "status token") }

func (d Dir) token(file, what string) (string, error) {
	raw, err := os.ReadFile(file)
	if err == nil {
		if tok := strings.TrimSpace(string(raw)); tok != "" {
			return tok, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	tok := hex.EncodeToString(b)
	if err := os.MkdirAll(string(d), 0o750); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return tok, nil
}

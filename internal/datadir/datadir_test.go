package datadir

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A child process that takes the lock, says so, and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DATADIR_TEST_HOLD"); dir != "" {
		l, err := Dir(dir).Lock()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		if err := l.Publish(Server{PID: os.Getpid(), NATSURL: "nats://127.0.0.1:1"}); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {}
	}
	os.Exit(m.Run())
}

func TestLockIsExclusive(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "data"))
	if _, err := d.Running(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Running on a new dir: %v, want ErrNotRunning", err)
	}
	l, err := d.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Publish(Server{PID: os.Getpid(), NATSURL: "nats://127.0.0.1:4222", HTTP: "http://127.0.0.1:8080"}); err != nil {
		t.Fatal(err)
	}
	_, err = d.Lock()
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Lock: %v, want ErrInUse naming pid %d", err, os.Getpid())
	}
	s, err := d.Running()
	if err != nil || s.NATSURL != "nats://127.0.0.1:4222" || s.HTTP != "http://127.0.0.1:8080" {
		t.Fatalf("Running = %+v, %v", s, err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Running(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Running after Release: %v, want ErrNotRunning", err)
	}
	l2, err := d.Lock()
	if err != nil {
		t.Fatalf("Lock after Release: %v", err)
	}
	l2.Release()
}

// A server killed with SIGKILL leaves its record behind, but not its lock:
// the directory reads as not running and can be taken again.
func TestKilledHolderFreesTheLock(t *testing.T) {
	d := Dir(t.TempDir())
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DATADIR_TEST_HOLD="+string(d))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		cmd.Process.Kill()
		t.Fatalf("child said %q", line)
	}
	if _, err := d.Lock(); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Errorf("Lock while the child holds it: %v", err)
	}
	if s, err := d.Running(); err != nil || s.PID != cmd.Process.Pid {
		t.Errorf("Running = %+v, %v; want the child's record", s, err)
	}
	cmd.Process.Kill()
	cmd.Wait() // the kernel has dropped the child's flock once it is reaped
	if _, err := d.Running(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Running after the holder died: %v, want ErrNotRunning", err)
	}
	l, err := d.Lock()
	if err != nil {
		t.Fatalf("Lock after the holder died: %v", err)
	}
	l.Release()
}

func TestWebhookTokenPersists(t *testing.T) {
	d := Dir(t.TempDir())
	tok, err := d.WebhookToken()
	if err != nil || len(tok) != 32 {
		t.Fatalf("token %q, %v", tok, err)
	}
	again, err := d.WebhookToken()
	if err != nil || again != tok {
		t.Fatalf("second read %q, %v; want %q", again, err, tok)
	}
	fi, err := os.Stat(d.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
}

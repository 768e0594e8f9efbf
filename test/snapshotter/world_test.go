package snapshotter_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tools are the binaries scripts/test-snapshotter built.
type tools struct {
	containerd, ctr, soci, indexer string
}

// needTools finds the binaries from SOCI_TOOLS_BIN and INDEXER_BIN. Without
// them the test skips, except under CI=true, where it fails.
func needTools(t *testing.T) tools {
	t.Helper()
	bin, indexer := os.Getenv("SOCI_TOOLS_BIN"), os.Getenv("INDEXER_BIN")
	tl := tools{
		containerd: filepath.Join(bin, "containerd"),
		ctr:        filepath.Join(bin, "ctr"),
		soci:       filepath.Join(bin, "soci-snapshotter-grpc"),
		indexer:    indexer,
	}
	var missing []string
	for _, p := range []string{tl.containerd, tl.ctr, tl.soci, tl.indexer} {
		if bin == "" || indexer == "" {
			missing = []string{"SOCI_TOOLS_BIN and INDEXER_BIN are not set (run scripts/test-snapshotter)"}
			break
		}
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse: "+err.Error())
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "not root: containerd and FUSE mounts need root")
	}
	if len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("snapshotter test cannot run: %s", strings.Join(missing, "; "))
		}
		t.Skipf("snapshotter test cannot run: %s", strings.Join(missing, "; "))
	}
	return tl
}

// proc is a process the test started, with its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	// The script's trap kills what is left by these pid files.
	_ = os.WriteFile(filepath.Join(dir, name+".pid"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o644)
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p
}

// stop sends SIGTERM and waits up to grace, then kills the process group.
func (p *proc) stop(t *testing.T, grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		t.Logf("%s did not stop within %s; killing it", p.name, grace)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitFor polls cond every 100ms until it is true, p exits, or timeout.
func waitFor(what string, timeout time.Duration, p *proc, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && p.exited() {
			return fmt.Errorf("%s: %s exited (%v):\n%s", what, p.name, p.err, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func socketUp(path string) func() bool {
	return func() bool {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

// world is containerd with soci-snapshotter-grpc as its proxy snapshotter
// "soci", and the proxy every pull goes through.
type world struct {
	tools
	dir, sock, sociRoot string
	soci                *proc
	proxy               *blobProxy
}

func startWorld(t *testing.T, tl tools) *world {
	t.Helper()
	// Unix socket paths are limited to 108 bytes: the script gives a short
	// directory.
	dir := os.Getenv("SNAPSHOTTER_TEST_DIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "soci-st."); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	w := &world{tools: tl, dir: dir, sock: filepath.Join(dir, "containerd.sock"), sociRoot: filepath.Join(dir, "soci")}
	proxy, err := startProxy()
	if err != nil {
		t.Fatal(err)
	}
	w.proxy = proxy
	t.Cleanup(func() { _ = proxy.srv.Close() })
	sociSock := filepath.Join(dir, "soci.sock")

	ctdConfig := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins]
  [plugins.'io.containerd.transfer.v1.local']
    [[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
      platform = 'linux/amd64'
      snapshotter = 'soci'
      differ = 'walking'
    [[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
      platform = 'linux/arm64'
      snapshotter = 'soci'
      differ = 'walking'

[proxy_plugins]
  [proxy_plugins.soci]
    type = 'snapshot'
    address = %[5]q
    [proxy_plugins.soci.exports]
      root = %[6]q
      enable_remote_snapshot_annotations = 'true'
`, filepath.Join(dir, "ctd-root"), filepath.Join(dir, "ctd-state"), w.sock, w.sock+".ttrpc", sociSock, w.sociRoot)
	// The mirror entry is what makes soci talk plain HTTP to the proxy when
	// it fetches the SOCI index and zTOCs: without an insecure mirror it uses
	// HTTPS, fails, and silently falls back to downloading whole layers. The
	// mirror's host needs its scheme, or it is not parsed as a host at all.
	// The background fetcher is off so that every layer byte soci reads is one
	// the test asked for.
	sociConfig := fmt.Sprintf(`skip_check_snapshotter_supported = true

[content_store]
  type = 'soci'
  containerd_address = %[1]q

[background_fetch]
  disable = true

[pull_modes]
  [pull_modes.soci_v1]
    enable = true
  [pull_modes.soci_v2]
    enable = true

[resolver.host.%[2]q]
  [[resolver.host.%[2]q.mirrors]]
    host = "http://%[2]s"
    insecure = true
`, w.sock, proxy.addr)
	ctdConf, sociConf := filepath.Join(dir, "containerd.toml"), filepath.Join(dir, "soci.toml")
	if err := os.WriteFile(ctdConf, []byte(ctdConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sociConf, []byte(sociConfig), 0o644); err != nil {
		t.Fatal(err)
	}

	ctd := startProc(t, dir, "containerd", tl.containerd, "--config", ctdConf, "--log-level", "info")
	t.Cleanup(func() { ctd.stop(t, 20*time.Second) })
	if err := waitFor("containerd socket", time.Minute, ctd, socketUp(w.sock)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(w.sociRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	w.soci = startProc(t, dir, "soci", tl.soci, "--address", sociSock, "--root", w.sociRoot,
		"--config", sociConf, "--log-level", "debug")
	t.Cleanup(func() {
		w.soci.stop(t, 20*time.Second)
		// soci leaves its FUSE mounts behind when it stops.
		for _, m := range w.fuseMounts() {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				t.Logf("unmount %s: %v", m, err)
			}
		}
	})
	if err := waitFor("soci socket", time.Minute, w.soci, socketUp(sociSock)); err != nil {
		t.Fatal(err)
	}
	out, err := w.ctrCmd(t, time.Minute, "plugins", "ls")
	if err != nil || !regexpLine(out, `io\.containerd\.snapshotter\.v1\s+soci\s+.*\sok`) {
		t.Fatalf("containerd does not list the soci snapshotter as ok (%v):\n%s", err, out)
	}
	return w
}

func regexpLine(out, pattern string) bool {
	return mustRegexp(pattern).MatchString(out)
}

// ctrCmd runs ctr against the test's containerd.
func (w *world) ctrCmd(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.ctr, append([]string{"--address", w.sock}, args...)...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("ctr %s: %w", strings.Join(args, " "), ctx.Err())
	}
	return string(out), err
}

// fuseMounts lists the FUSE mounts under soci's root.
func (w *world) fuseMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if strings.HasPrefix(fields[sep+1], "fuse") && strings.HasPrefix(mp, w.sociRoot+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescapeMountinfo(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// logEntry is one line of soci's JSON log.
type logEntry map[string]any

func (e logEntry) str(k string) string { s, _ := e[k].(string); return s }

// sociLog returns soci's log lines from byte offset from on.
func (w *world) sociLog(from int64) []logEntry {
	b, err := os.ReadFile(w.soci.log)
	if err != nil || int64(len(b)) < from {
		return nil
	}
	var out []logEntry
	for _, line := range strings.Split(string(b[from:]), "\n") {
		var e logEntry
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

func (w *world) sociLogSize() int64 {
	fi, err := os.Stat(w.soci.log)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// service is one all-in-one `indexer serve` with its embedded registry.
type service struct {
	registry string
	proc     *proc
}

func startService(t *testing.T, w *world, name string, args ...string) *service {
	t.Helper()
	dataDir := filepath.Join(w.dir, "svc-"+name)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	reg, listen := freeAddr(t), freeAddr(t)
	argv := append([]string{w.indexer, "serve", "--embedded", "--registry-listen", reg, "--listen", listen,
		"--data-dir", dataDir, "--min-layer-size", "1048576"}, args...)
	p := startProc(t, dataDir, "indexer", argv...)
	t.Cleanup(func() { p.stop(t, 30*time.Second) })
	ready := func() bool {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if err := waitFor("indexer serve ready", 2*time.Minute, p, ready); err != nil {
		t.Fatal(err)
	}
	if err := waitFor("embedded registry", time.Minute, p, func() bool {
		resp, err := http.Get("http://" + reg + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		t.Fatal(err)
	}
	return &service{registry: reg, proc: p}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var errNotYet = errors.New("not yet")

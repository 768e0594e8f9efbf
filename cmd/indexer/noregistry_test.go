package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/internal/testpg"
	"github.com/soci-indexer/soci-indexer/internal/testproc"
	"github.com/soci-indexer/soci-indexer/internal/testsupport"
)

// TestBuildWithoutRegistry: built with -tags noregistry (the worker image
// of the Dockerfile), the indexer links no embedded registry nor its
// dependencies; it runs as a worker against NATS and Postgres, and refuses
// --registry-listen with the reason.
func TestBuildWithoutRegistry(t *testing.T) {
	root, err := testproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	list := func(tags ...string) string {
		t.Helper()
		cmd := exec.Command("go", append(append([]string{"list", "-deps"}, tags...), "./cmd/indexer")...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		return string(out)
	}
	const embedded = "/internal/embedded/registry\n"
	if !strings.Contains(list(), embedded) {
		t.Fatal("the default build does not link the embedded registry: the check below proves nothing")
	}
	if deps := list("-tags=noregistry"); strings.Contains(deps, embedded) || strings.Contains(deps, "distribution/distribution") {
		t.Error("-tags noregistry still links the embedded registry or distribution")
	}

	bin := filepath.Join(testproc.Build(t, "-tags=noregistry", "./cmd/indexer"), "indexer")
	env := testproc.BaseEnv(t)
	out, code := testproc.Run(t, bin, env, "serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--registry-listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(out, "built without the embedded registry") {
		t.Errorf("serve --registry-listen on a noregistry build: exit %d\n%s", code, out)
	}

	dsn, _ := testpg.NewDatabase(t, "noregistry")
	name := fmt.Sprintf("NOREG_%d", time.Now().UnixNano())
	t.Cleanup(func() { testsupport.DeleteStreams(t, "nats://127.0.0.1:4222", name, name+"_DLQ") })
	addr := testproc.FreeAddr(t)
	worker := testproc.Start(t, "worker", bin, []string{"serve", "--listen", addr, "--database-url", dsn,
		"--nats-url", "nats://127.0.0.1:4222", "--stream", name, "--subject", strings.ToLower(name),
		"--dlq-stream", name + "_DLQ", "--dlq-prefix", "dlq." + strings.ToLower(name), "--consumer", "workers"}, env)
	if err := worker.WaitHTTP("http://"+addr+"/readyz", 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, worker.Output())
	}
}

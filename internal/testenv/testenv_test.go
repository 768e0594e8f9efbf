package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The behaviour that matters is in CI: a missing tool fails. Run a child
// test process with and without CI and read its verdict.
func TestMissingToolFailsInCI(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") != "" {
		RequireTool(t, "no-such-tool-soci-indexer")
		return
	}
	for _, tc := range []struct {
		ci   string
		want string
	}{{"true", "--- FAIL"}, {"", "--- SKIP"}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingToolFailsInCI$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+tc.ci)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("CI=%q: child said\n%s\nwant %s", tc.ci, out, tc.want)
		}
	}
	if p := RequireTool(t, "sh"); p == "" {
		t.Error("sh not found")
	}
}

// Package testenv answers what a test needs from the machine. Outside CI a
// missing tool skips the test that needs it; in CI (CI set, as .ci/run
// runs) it fails it, so that nothing that matters is skipped silently.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI.
func InCI() bool { return os.Getenv("CI") != "" }

// RequireTool returns the path of the program name, or skips tb (fails it
// in CI) when the machine lacks it.
func RequireTool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(tb, name+" is not installed (scripts/ensure-services installs it)")
	}
	return path
}

// Missing skips tb for what the machine lacks, or fails it in CI.
func Missing(tb testing.TB, what string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("CI: %s", what)
	}
	tb.Skip(what)
}

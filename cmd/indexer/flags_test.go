package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/soci-indexer/soci-indexer/internal/config"
)

func helpOf(t *testing.T, args ...string) string {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--help"))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v --help: %v", args, err)
	}
	return out.String()
}

// Every command names a setting as serve does.
func TestFlagNamesAreServes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"migrate"}, []string{"--database-url", "INDEXER_DATABASE_URL"}},
		{[]string{"report"}, []string{"--database-url", "INDEXER_DATABASE_URL"}},
		{[]string{"index"}, []string{"--database-url", "--index-version", "--v2-tag-template", "--registry-ca-file", "--registry-auth", "INDEXER_REGISTRY_AUTH"}},
		{[]string{"index", "ls"}, []string{"--registry-ca-file", "--registry-auth"}},
		{[]string{"queue", "ls"}, []string{"--nats-url", "--stream", "--subject", "--consumer", "INDEXER_STREAM"}},
	} {
		help := helpOf(t, c.args...)
		for _, w := range c.want {
			if !strings.Contains(help, w) {
				t.Errorf("%v --help lacks %s", c.args, w)
			}
		}
		for _, old := range []string{"--dsn", "--soci-version", "--v2-tag ", "--ca-file", "--username", "--password", "INDEXER_QUEUE_", "--subject-prefix"} {
			if strings.Contains(help, old) {
				t.Errorf("%v --help still has %s", c.args, old)
			}
		}
	}
}

func TestBackfillHelpHasNoServeOnlyFlags(t *testing.T) {
	help := helpOf(t, "backfill")
	for _, f := range slices.Concat(config.ServeOnly, config.WebhookOnly) {
		if strings.Contains(help, "--"+f+" ") {
			t.Errorf("backfill --help lists serve-only --%s", f)
		}
	}
	for _, f := range []string{"--nats-url", "--database-url", "--since", "--registry-auth"} {
		if !strings.Contains(help, f) {
			t.Errorf("backfill --help lacks %s", f)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Sizes that make no image are refused before anything is built or pushed
// (the registry named here does not exist: reaching it would be another error).
func TestDemoPushRefusesMeaninglessSizes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--layers", "0"}, "--layers 0"},
		{[]string{"--layers", "-3"}, "--layers -3"},
		{[]string{"--layers", "100000"}, "--layers 100000"},
		{[]string{"--layer-size", "0"}, "--layer-size 0"},
		{[]string{"--layer-size", "-1"}, "--layer-size -1"},
		{[]string{"--from", t.TempDir(), "--layers", "3"}, "with --from"},
		{[]string{"--from", t.TempDir(), "--max-layer-bytes", "0"}, "--max-layer-bytes 0"},
	} {
		cmd := newDemoCmd()
		cmd.SilenceUsage = true
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"push", "127.0.0.1:1/demo/app:v1"}, tc.args...))
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("demo push %v: err = %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}

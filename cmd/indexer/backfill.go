package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newBackfillCmd is a placeholder until its owner lands it.
func newBackfillCmd() *cobra.Command {
	return &cobra.Command{Use: "backfill", Short: "not built yet", RunE: func(*cobra.Command, []string) error {
		return errors.New("backfill: not built yet")
	}}
}

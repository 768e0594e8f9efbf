package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newMigrateCmd is a placeholder until its owner lands it.
func newMigrateCmd() *cobra.Command {
	return &cobra.Command{Use: "migrate", Short: "not built yet", RunE: func(*cobra.Command, []string) error {
		return errors.New("migrate: not built yet")
	}}
}

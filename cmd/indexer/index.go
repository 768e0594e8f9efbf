package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newIndexCmd is a placeholder until its owner lands it.
func newIndexCmd() *cobra.Command {
	return &cobra.Command{Use: "index", Short: "not built yet", RunE: func(*cobra.Command, []string) error {
		return errors.New("index: not built yet")
	}}
}

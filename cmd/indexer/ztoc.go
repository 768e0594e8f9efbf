package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newZtocCmd is a placeholder until its owner lands it.
func newZtocCmd() *cobra.Command {
	return &cobra.Command{Use: "ztoc", Short: "not built yet", RunE: func(*cobra.Command, []string) error {
		return errors.New("ztoc: not built yet")
	}}
}

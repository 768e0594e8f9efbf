// Command runstat runs a command and records its wall time, CPU time and
// peak resident set size (from wait4's rusage), so scripts/bench-ztoc does
// not depend on GNU time being installed.
//
//	runstat -o stats.txt -- indexer ztoc create layer.tar.gz
//
// The stats file holds one line: "wall_s user_s sys_s maxrss_kib".
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	output := flag.String("o", "", "file to write the stats line to (required)")
	flag.Parse()
	if *output == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: runstat -o FILE -- COMMAND [ARG...]")
		os.Exit(2)
	}
	if err := run(*output, flag.Args()); err != nil {
		slog.Error("runstat failed", "err", err)
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		os.Exit(1)
	}
}

func run(output string, argv []string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	usage, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return errors.New("no rusage on this platform")
	}
	line := fmt.Sprintf("%.3f %.3f %.3f %d\n", wall.Seconds(),
		time.Duration(usage.Utime.Nano()).Seconds(), time.Duration(usage.Stime.Nano()).Seconds(),
		usage.Maxrss) // KiB on Linux
	return os.WriteFile(output, []byte(line), 0o644)
}

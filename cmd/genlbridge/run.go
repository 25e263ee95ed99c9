package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/genlbridge/genlbridge/config"
	"github.com/genlbridge/genlbridge/daemon"
)

// cmdRun parses run's settings and runs the daemon until SIGTERM or
// SIGINT.
func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr, func(w io.Writer) {
		fmt.Fprint(w, "Usage: genlbridge run [flags]\n\nEvery setting is an environment variable and a flag (flags win):\n\n")
		config.Usage(w)
	})
	flags := config.Flags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(fs, flags)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return daemon.Run(ctx, cfg, daemon.Options{Version: version, Stdout: stdout, Stderr: stderr})
}

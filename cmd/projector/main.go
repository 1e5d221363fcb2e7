// Command projector builds the read model from the event stream, on its own,
// against NATS_URL and MONGO_URI (+ MONGO_DATABASE), or without MONGO_URI the
// embedded SQLite read model under DATA_DIR (which the API of the same
// DATA_DIR shares). Run it when the API runs with PROJECTOR=off. replay and
// verify also run against the embedded NATS under DATA_DIR, in this process,
// while the API is stopped.
//
//	projector          run the live projector (follows replayed generations)
//	projector replay   rebuild the read model from the first event into a new
//	                   generation, then switch readers to it (resumable)
//	projector verify   compare the read model with the fold of the stream;
//	                   exit status 0 when they match, 1 otherwise
//
// See docs/operations.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/buildinfo"
	"github.com/connreg/registry/internal/cli"
)

const description = `Builds the read model from the event stream, on its own, against NATS_URL and MONGO_URI
(+ MONGO_DATABASE); run it when the API runs with PROJECTOR=off. It serves /healthz, /readyz and
/metrics on METRICS_ADDR (default 127.0.0.1:9090; off: none). Configuration comes from the
environment: see the README's configuration table.

commands:
  (none)   run the live projector (follows replayed generations)
  replay   rebuild the read model from the first event into a new generation, then switch
           readers to it (resumable)
  verify   compare the read model with the fold of the stream; exit status 0 when they
           match, 1 otherwise

See docs/operations.md.`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	sub := ""
	if len(args) > 0 && (args[0] == "replay" || args[0] == "verify") {
		sub, args = args[0], args[1:]
	}
	cmd := cli.New("projector", "projector [--help] [--version] [replay | verify]", description)
	if code, exit := cmd.Parse(args, os.Stdout, os.Stderr, false); exit {
		return code
	}
	cfg, err := bootstrap.ConfigFromEnv(os.Getenv)
	if err != nil {
		slog.Error("configuration error", "error", err.Error())
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch sub {
	case "replay":
		return replay(ctx, cfg, logger)
	case "verify":
		return verify(ctx, cfg, logger)
	}
	logger.Info("projector starting", "version", buildinfo.Read().String())
	if err := bootstrap.RunProjector(ctx, cfg, logger); err != nil {
		logger.Error("projector failed", "error", err.Error())
		return 1
	}
	return 0
}

// isTerminal reports whether f is a character device (a terminal), where a
// progress bar may redraw its line.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func replay(ctx context.Context, cfg bootstrap.Config, logger *slog.Logger) int {
	show := progressPrinter(os.Stderr, isTerminal(os.Stderr))
	res, err := bootstrap.ReplayFromConfig(ctx, cfg, logger, show)
	show(bootstrap.ReplayProgress{}) // ends the bar's line
	if err != nil {
		logger.Error("replay failed", "error", err.Error())
		return 1
	}
	fmt.Fprintf(os.Stderr, "generation %d active (collection %s, consumer %s); was %d. %d events in %s this run, resumed=%t\n",
		res.Generation, res.Collection, res.Consumer, res.Previous, res.Events, res.Duration.Round(time.Millisecond), res.Resumed)
	return 0
}

// progressPrinter draws a progress bar on a terminal, redrawn at most ten
// times a second, and writes a plain line every five seconds otherwise. A
// zero ReplayProgress ends the output.
func progressPrinter(w io.Writer, tty bool) func(bootstrap.ReplayProgress) {
	var last time.Time
	drawn := false
	return func(p bootstrap.ReplayProgress) {
		if p == (bootstrap.ReplayProgress{}) {
			if drawn && tty {
				fmt.Fprintln(w)
			}
			return
		}
		every := 5 * time.Second
		if tty {
			every = 100 * time.Millisecond
		}
		if time.Since(last) < every && p.Done < p.Total {
			return
		}
		last, drawn = time.Now(), true
		left := "?"
		if p.Rate > 0 {
			left = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second)).Round(time.Second).String()
		}
		frac := 1.0
		if p.Total > 0 {
			frac = float64(p.Done) / float64(p.Total)
		}
		if !tty {
			fmt.Fprintf(w, "replay generation %d: %d/%d events (%.1f%%), %.0f events/s, %s left\n",
				p.Generation, p.Done, p.Total, 100*frac, p.Rate, left)
			return
		}
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(w, "\r[%s%s] %d/%d events  %.0f/s  %s left   ",
			strings.Repeat("=", n), strings.Repeat(" ", width-n), p.Done, p.Total, p.Rate, left)
	}
}

func verify(ctx context.Context, cfg bootstrap.Config, logger *slog.Logger) int {
	res, err := bootstrap.VerifyFromConfig(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "verify failed: %v\n", err)
		return 1
	}
	for _, d := range res.Differences {
		fmt.Println(d.String())
	}
	fmt.Fprintf(os.Stderr, "generation %d (%s): %d documents compared with %d events folded through stream sequence %d "+
		"(newest event %d); %d unapplied (parked), %d changed during the check and skipped; %d differences\n",
		res.Generation, res.Collection, res.Documents, res.Events, res.Through, res.Newest, res.Unapplied, res.Later, len(res.Differences))
	if len(res.Differences) > 0 {
		return 1
	}
	return 0
}

// Command monitor runs the connection monitor on its own, against NATS_URL:
// it tests every live connection every MONITOR_INTERVAL through the same
// tester as the API (network policy, TEST_RATE_LIMIT, the sealer of
// VAULT_ADDR) and records each result as connection.tested.v1 (origin
// "monitor"). With several monitors (or APIs with the monitor on) one is
// active at a time; the others stand by on a NATS KV lease. See the README's
// monitor section.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/buildinfo"
	"github.com/connreg/registry/internal/cli"
)

const description = `Runs the connection monitor on its own against NATS_URL: every live connection is tested
every MONITOR_INTERVAL (at most MONITOR_CONCURRENCY at once) through the API's tester, network
policy and TEST_RATE_LIMIT; results are connection.tested.v1 and connection.health-changed.v1
events. One monitor is active at a time among several processes (a NATS KV lease); the others
stand by. Configuration comes from the environment: see the README's configuration table.`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := cli.New("monitor", "monitor [--help] [--version]", description)
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
	logger.Info("monitor starting", "version", buildinfo.Read().String())
	if err := bootstrap.RunMonitor(ctx, cfg, logger); err != nil {
		logger.Error("monitor failed", "error", err.Error())
		return 1
	}
	return 0
}

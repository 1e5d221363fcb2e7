// Command projector builds the MongoDB read model from the event stream, on
// its own, against NATS_URL and MONGO_URI (+ MONGO_DATABASE). Run it when the
// API runs with PROJECTOR=off.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/connreg/registry/bootstrap"
)

func main() {
	cfg, err := bootstrap.ConfigFromEnv(os.Getenv)
	if err != nil {
		slog.Error("configuration error", "error", err.Error())
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bootstrap.RunProjector(ctx, cfg, logger); err != nil {
		logger.Error("projector failed", "error", err.Error())
		os.Exit(1)
	}
}

// Command api serves the connection registry's REST API. With no
// configuration it runs the whole service in one process: an embedded
// nats-server with JetStream, an embedded FerretDB for the read model, the
// projector and the development sealer, keeping state under DATA_DIR.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/connreg/registry/bootstrap"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := bootstrap.ConfigFromEnv(os.Getenv)
	if err != nil {
		slog.Error("configuration error", "error", err.Error())
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	svc, err := bootstrap.Start(ctx, cfg, logger)
	if err != nil {
		logger.Error("cannot start", "error", err.Error())
		return 1
	}
	defer svc.Close()

	srv := &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           svc.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("connection registry listening", "addr", cfg.HTTPAddr, "env", cfg.Env)

	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server failed", "error", err.Error())
			return 1
		}
	case <-ctx.Done():
		logger.Info("shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			logger.Error("http shutdown", "error", err.Error())
		}
	}
	return 0
}

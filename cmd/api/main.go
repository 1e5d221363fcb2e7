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

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/internal/bootstrap"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "reseal" {
		os.Exit(reseal())
	}
	os.Exit(run())
}

// reseal is `api reseal`: after a rotation of the Vault transit key it
// re-seals every stored credential under the newest key version (see
// docs/rotation.md). Exit status 0: every live connection is current; 1:
// something failed or the run stopped early (run it again to finish); 2:
// configuration error.
func reseal() int {
	cfg, logger, err := setup()
	if err != nil {
		slog.Error("configuration error", "error", err.Error())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	progress := func(p commands.ResealProgress) {
		attrs := []any{"connection", p.ID, "outcome", string(p.Outcome),
			"examined", p.Report.Examined, "total", p.Report.Total}
		if p.Err != nil {
			logger.Error("reseal: connection failed", append(attrs, "error", p.Err.Error())...)
			return
		}
		level := slog.LevelInfo
		if p.Outcome != commands.ResealResealed {
			level = slog.LevelDebug // skipped: one line per thousand below says how far the run is
		}
		logger.Log(ctx, level, "reseal: connection", attrs...)
		if p.Report.Examined%1000 == 0 {
			logger.Info("reseal: progress", "examined", p.Report.Examined, "total", p.Report.Total,
				"resealed", p.Report.Resealed, "skipped", p.Report.Skipped, "failed", p.Report.Failed)
		}
	}
	report, err := bootstrap.Reseal(ctx, cfg, logger, bootstrap.ResealOptions{Progress: progress})
	if errors.Is(err, bootstrap.ErrNothingToRotate) {
		logger.Info("reseal: nothing to rotate", "reason", err.Error())
		return 0
	}
	summary := []any{"key_version", report.KeyVersion, "total", report.Total, "examined", report.Examined,
		"resealed", report.Resealed, "skipped", report.Skipped, "failed", report.Failed}
	if err != nil && report.KeyVersion == 0 {
		logger.Error("reseal could not start", "error", err.Error())
		return 1
	}
	if err != nil {
		logger.Error("reseal stopped early; run it again to finish", append(summary, "error", err.Error())...)
		return 1
	}
	if report.Failed > 0 {
		logger.Error("reseal finished with failures; fix them and run it again", summary...)
		return 1
	}
	logger.Info("reseal finished", summary...)
	return 0
}

// setup reads the configuration and builds the JSON logger on stderr.
func setup() (bootstrap.Config, *slog.Logger, error) {
	cfg, err := bootstrap.ConfigFromEnv(os.Getenv)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel})), nil
}

func run() int {
	cfg, logger, err := setup()
	if err != nil {
		slog.Error("configuration error", "error", err.Error())
		return 2
	}
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

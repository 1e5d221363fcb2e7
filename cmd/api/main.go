// Command api serves the connection registry's REST API. With no
// configuration it runs the whole service in one process: an embedded
// nats-server with JetStream, an embedded SQLite read model, the
// projector and the development sealer, keeping state under DATA_DIR.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/buildinfo"
	"github.com/connreg/registry/internal/cli"
	"github.com/connreg/registry/internal/httpapi"
)

const description = `Serves the connection registry's REST API. With no configuration it runs the whole
service in one process (embedded nats-server, embedded read model, projector, development sealer)
with its state under DATA_DIR. Configuration comes from the environment: see the README's
configuration table.

commands:
  reseal   re-seal every stored credential under the newest Vault transit key version
           (after a key rotation; see docs/rotation.md). Needs --yes or --dry-run.`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "reseal" {
		return reseal(args[1:])
	}
	cmd := cli.New("api", "api [--help] [--version] | api reseal (--yes | --dry-run)", description)
	if code, exit := cmd.Parse(args, os.Stdout, os.Stderr, false); exit {
		return code
	}
	return serve()
}

// reseal is `api reseal`: after a rotation of the Vault transit key it
// re-seals every stored credential under the newest key version (see
// docs/rotation.md). Exit status 0: every live connection is current; 1:
// something failed or the run stopped early (run it again to finish); 2:
// configuration error.
func reseal(args []string) int {
	cmd := cli.New("api reseal", "api reseal (--yes | --dry-run)",
		`Re-seals every stored credential under the newest version of the Vault transit key (transit
rewrap: the plaintext never leaves Vault), appending one connection.credentials-resealed.v1 event per
connection it changes. It reads the service's configuration from the environment (VAULT_ADDR, NATS_URL,
...). Without NATS_URL it opens the embedded stack under DATA_DIR, which needs the API stopped.
Exit status 0: every live connection is current; 1: something failed (run it again); 2: usage or
configuration error.`)
	yes := cmd.Flags.Bool("yes", false, "really re-seal (appends events)")
	dryRun := cmd.Flags.Bool("dry-run", false, "count the connections that would be re-sealed; change nothing")
	if code, exit := cmd.Parse(args, os.Stdout, os.Stderr, false); exit {
		return code
	}
	if *yes == *dryRun {
		fmt.Fprintln(os.Stderr, "api reseal: say --yes to re-seal, or --dry-run to see what it would do")
		cmd.PrintUsage(os.Stderr)
		return 2
	}
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
	report, err := bootstrap.Reseal(ctx, cfg, logger, bootstrap.ResealOptions{Progress: progress, DryRun: *dryRun})
	if errors.Is(err, bootstrap.ErrNothingToRotate) {
		logger.Info("reseal: nothing to rotate", "reason", err.Error())
		return 0
	}
	summary := []any{"key_version", report.KeyVersion, "total", report.Total, "examined", report.Examined,
		"resealed", report.Resealed, "stale", report.Stale, "skipped", report.Skipped, "failed", report.Failed, "dry_run", *dryRun}
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

func serve() int {
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
		MaxHeaderBytes:    httpapi.MaxHeaderBytes,
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		logger.Error("HTTP_ADDR: cannot listen", "error", err.Error())
		return 1
	}
	errc := make(chan error, 1)
	// httpapi.Listener: the answers net/http writes itself (400, 431) are JSON too.
	go func() { errc <- srv.Serve(httpapi.Listener(ln)) }()
	logger.Info("connection registry listening", "addr", cfg.HTTPAddr, "env", cfg.Env, "version", buildinfo.Read().String())

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

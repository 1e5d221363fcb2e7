package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/generations"
	"github.com/connreg/registry/internal/retry"
	"github.com/connreg/registry/internal/telemetry"
	"github.com/connreg/registry/readmodel"
)

// RunProjector runs the projector alone against an external NATS and MongoDB (or the
// embedded SQLite read model under DATA_DIR)
// until ctx ends: the process behind `cmd/projector`. Several may run (one
// per node, say): they share a lease (eventstore.Lease) and only its holder
// consumes; a standby takes over about PROJECTOR_LEASE_TTL after the holder
// dies, at once when it stops cleanly. It projects into the
// active read-model generation and follows the generations `projector
// replay` activates (see generation.go).
func RunProjector(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if cfg.NATSURL == "" {
		return errors.New("NATS_URL: required to run the projector on its own")
	}
	nc, err := connectNATS(cfg, nil, "connreg-projector", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := ensureStream(ctx, js, cfg, logger); err != nil {
		return err
	}
	repo, err := OpenReadModel(ctx, cfg)
	if err != nil {
		return err
	}
	defer repo.Close(context.Background())
	// Probes and metrics serve for the whole process, standby included.
	tel, err := telemetry.New(ctx, cfg.Getenv, "connreg-projector")
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.WithoutCancel(ctx))
	stopOps, err := serveOps(ctx, cfg.MetricsAddr, nc, js, repo, tel, logger)
	if err != nil {
		return err
	}
	defer stopOps()
	host, _ := os.Hostname()
	owner := host + "/" + uuid.NewString()
	// Projectors starting together race to create the lease bucket, and a
	// cluster may be electing leaders: keep trying rather than exit.
	var lease *eventstore.Lease
	for b := retry.Backoff(250*time.Millisecond, 5*time.Second); ; {
		lease, err = eventstore.OpenLease(ctx, js, eventstore.ProjectorLeaseKey, owner, cfg.ProjectorLease, logger)
		if err == nil {
			break
		}
		pause := b.NextBackOff()
		logger.Warn("cannot open the projector lease; retrying", "error", err.Error(), "in", pause.String())
		if !retry.Wait(ctx, pause) {
			return nil
		}
	}
	logger.Info("projector waiting for the lease: one projector process consumes, the others stand by",
		"owner", owner, "ttl", cfg.ProjectorLease.String())
	// Each time this process becomes the active projector it reads the
	// active generation and its documents afresh: while it stood by, another
	// projector moved them on.
	lease.Hold(ctx, func(ctx context.Context) {
		if err := projectLeased(ctx, js, repo, logger, tel); err != nil && ctx.Err() == nil {
			logger.Error("projector failed; trying again", "error", err.Error())
		}
	})
	return nil
}

// projectLeased runs the live projector of the active generation while ctx
// lasts (the lease is held).
func projectLeased(ctx context.Context, js jetstream.JetStream, repo ReadModel, logger *slog.Logger, tel *telemetry.Telemetry) error {
	meta, err := repo.Active(ctx, eventstore.ProjectorConsumer)
	if err != nil {
		return err
	}
	live := generations.NewLiveReadModel(repo.WithCollection(meta.Collection))
	p, err := readmodel.NewProjector(tel.ProjectionStore(live), logger, time.Now)
	if err != nil {
		return err
	}
	p.OnParked(tel.Parked)
	if err := restartLostReadModel(ctx, js, live.Repo(), meta, logger); err != nil {
		return err
	}
	var idx *readmodel.Index
	if _, embedded := repo.(sqliteReadModel); !embedded {
		idx = readmodel.NewIndex()
		if err := live.Repo().Each(ctx, idx.Put); err != nil {
			return fmt.Errorf("load the projector's index: %w", err)
		}
		p.KeepIndex(idx)
	}
	logger.Info("projector running", "generation", meta.Generation, "collection", meta.Collection, "consumer", meta.Consumer)
	return generations.ProjectGenerations(ctx, js, repo, live, p, idx, meta, logger, tel)
}

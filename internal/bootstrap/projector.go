package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/mongostore"
	"github.com/connreg/registry/readmodel"
)

// RunProjector runs the projector alone against an external NATS and MongoDB
// until ctx ends: the process behind `cmd/projector`. It projects into the
// active read-model generation and follows the generations `projector
// replay` activates (see generation.go).
func RunProjector(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if cfg.NATSURL == "" {
		return errors.New("NATS_URL: required to run the projector on its own")
	}
	if cfg.MongoURI == "" {
		return errors.New("MONGO_URI: required to run the projector on its own")
	}
	nc, err := connectNATS(cfg, cfg.NATSURL, "connreg-projector", logger)
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
	repo, err := mongostore.Open(ctx, cfg.MongoURI, cfg.MongoDatabase, cfg.Timeout)
	if err != nil {
		return fmt.Errorf("MONGO_URI: %w", err)
	}
	defer repo.Close(context.Background())
	meta, err := repo.Active(ctx, eventstore.ProjectorConsumer)
	if err != nil {
		return err
	}
	live := newLiveReadModel(repo.WithCollection(meta.Collection))
	p, err := readmodel.NewProjector(live, logger, time.Now)
	if err != nil {
		return err
	}
	idx := readmodel.NewIndex()
	if err := live.repo().Each(ctx, idx.Put); err != nil {
		return fmt.Errorf("load the projector's index: %w", err)
	}
	p.KeepIndex(idx)
	logger.Info("projector running", "generation", meta.Generation, "collection", meta.Collection, "consumer", meta.Consumer)
	return projectGenerations(ctx, js, repo, live, p, idx, meta, logger)
}

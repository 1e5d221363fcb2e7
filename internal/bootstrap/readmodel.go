package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/generations"
	"github.com/connreg/registry/internal/mongostore"
	"github.com/connreg/registry/internal/sqlitestore"
	"github.com/connreg/registry/readmodel"
)

// ReadModel is the read-model store port (generations.ReadModel).
type ReadModel = generations.ReadModel

// mongoReadModel and sqliteReadModel adapt the adapters' WithCollection,
// which returns their own type, to ReadModel.
type mongoReadModel struct{ *mongostore.Repository }

func (m mongoReadModel) WithCollection(name string) ReadModel {
	return mongoReadModel{m.Repository.WithCollection(name)}
}

func (mongoReadModel) CollectionFor(gen int) string { return mongostore.CollectionFor(gen) }

func (m mongoReadModel) Parked(ctx context.Context) ([]readmodel.Parked, error) {
	ps, err := m.Repository.Parked(ctx)
	out := make([]readmodel.Parked, 0, len(ps))
	for _, p := range ps {
		out = append(out, readmodel.Parked{Sequence: p.Sequence, Subject: p.Subject, Data: []byte(p.Data), Reason: p.Reason, ParkedAt: p.ParkedAt})
	}
	return out, err
}

type sqliteReadModel struct{ *sqlitestore.Repository }

func (s sqliteReadModel) WithCollection(name string) ReadModel {
	return sqliteReadModel{s.Repository.WithCollection(name)}
}

func (sqliteReadModel) CollectionFor(gen int) string { return sqlitestore.CollectionFor(gen) }

// LiveDocuments is how many live connections the active generation holds.
func (s *Service) LiveDocuments(ctx context.Context) (int64, error) {
	res, err := s.live.List(ctx, readmodel.ListQuery{Limit: 1})
	return res.Total, err
}

// SQLiteDir is where the embedded read model lives under DATA_DIR.
const SQLiteDir = "readmodel"

// OpenReadModel opens the read model the configuration names: MongoDB at
// MONGO_URI, or else the embedded SQLite database under DATA_DIR. The SQLite
// file may be shared by the API, `projector` and `projector replay|verify`
// processes of one machine (WAL mode, one writer at a time).
func OpenReadModel(ctx context.Context, cfg Config) (ReadModel, error) {
	if cfg.MongoURI != "" {
		repo, err := mongostore.Open(ctx, cfg.MongoURI, cfg.MongoDatabase, cfg.Timeout)
		if err != nil {
			return nil, fmt.Errorf("MONGO_URI: %w", err)
		}
		return mongoReadModel{repo}, nil
	}
	repo, err := sqlitestore.Open(ctx, filepath.Join(cfg.DataDir, SQLiteDir), cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR: embedded read model: %w", err)
	}
	return sqliteReadModel{repo}, nil
}

// restartLostReadModel makes the durable consumer of generation meta start
// again from the first event when the embedded read model holds nothing
// while the consumer has acknowledged events: the SQLite file was deleted
// (the read model is disposable: deleting it rebuilds it) or this DATA_DIR
// held the FerretDB read model of an earlier version. Without it the
// projector would go on from the consumer's position into an empty table.
func restartLostReadModel(ctx context.Context, js jetstream.JetStream, repo ReadModel, meta readmodel.Generation, logger *slog.Logger) error {
	sq, ok := repo.(sqliteReadModel)
	if !ok {
		return nil
	}
	empty, err := sq.Empty(ctx)
	if err != nil || !empty {
		return err
	}
	p, err := eventstore.Progress(ctx, js, meta.Consumer)
	if err != nil || !p.Exists || p.Acknowledged == 0 {
		return err
	}
	if err := js.DeleteConsumer(ctx, events.StreamName, meta.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("restart the projector's consumer %s: %w", meta.Consumer, err)
	}
	logger.Warn("the embedded read model is empty but its consumer had acknowledged events: projecting again from the first event",
		"consumer", meta.Consumer, "acknowledged", p.Acknowledged, "file", sq.Path())
	return nil
}

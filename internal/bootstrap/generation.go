package bootstrap

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/generations"
)

// The read model's lifecycle (live projection across generations, replay,
// verify) is in internal/generations; this file wires it to the service and
// to the projector's subcommands.

// Names of the generations package the service's callers (cmd/projector,
// cmd/bench, the tests) use through bootstrap.
type (
	ReplayOptions  = generations.ReplayOptions
	ReplayProgress = generations.ReplayProgress
	ReplayResult   = generations.ReplayResult
	VerifyResult   = generations.VerifyResult
)

// Batch sizes (see generations).
const (
	ProjectorBatch = generations.ProjectorBatch
	ReplayBatch    = generations.ReplayBatch
)

// Replay rebuilds the read model into a new generation (generations.Replay).
func Replay(ctx context.Context, js jetstream.JetStream, base ReadModel, logger *slog.Logger, opts ReplayOptions) (ReplayResult, error) {
	return generations.Replay(ctx, js, base, logger, opts)
}

// Verify compares the read model with the fold of the stream (generations.Verify).
func Verify(ctx context.Context, js jetstream.JetStream, base ReadModel, consumer0 string) (VerifyResult, error) {
	return generations.Verify(ctx, js, base, consumer0)
}

// ActiveReadModel is the repository of the read-model generation this
// service reads now (ReadModel is the one Open returned, generation 0's).
func (s *Service) ActiveReadModel() ReadModel { return s.live.Repo() }

// openGeneration finds the active generation and points the service's live
// read model at it.
func (s *Service) openGeneration(ctx context.Context) error {
	meta, err := s.ReadModel.Active(ctx, eventstore.ProjectorConsumer)
	if err != nil {
		return err
	}
	s.generation = meta
	s.live = generations.NewLiveReadModel(s.ReadModel.WithCollection(meta.Collection))
	if meta.Generation != 0 {
		s.logger.Info("read model generation", "generation", meta.Generation, "collection", meta.Collection, "consumer", meta.Consumer)
	}
	return nil
}

// followGenerations moves an API process without its own projector to each
// new generation: its reader and its read-your-writes watermark.
func (s *Service) followGenerations(ctx context.Context, js jetstream.JetStream, wm *generations.Watermark) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		meta := s.generation
		for {
			var sw generations.SwitchTo
			generations.WatchGeneration(ctx, s.ReadModel, meta, false, s.logger, func(x generations.SwitchTo) { sw = x })
			if ctx.Err() != nil {
				return
			}
			wm.Follow(js, sw.Meta.Consumer)
			s.live.SwitchTo(sw.Repo)
			s.logger.Info("reading a new read-model generation", "generation", sw.Meta.Generation, "collection", sw.Meta.Collection)
			meta = sw.Meta
		}
	}()
}

// connectStandalone connects the projector's subcommands to NATS_URL, or,
// when it is empty, to the embedded nats-server started here, in this
// process, on the state under DATA_DIR (the embedded servers of a running API
// have no listener anyone else may use, so the API must be stopped first: its
// DATA_DIR lock refuses a second process), and to the read model: MONGO_URI,
// or the embedded SQLite file under DATA_DIR, which a running API shares
// (WAL mode, one writer at a time).
func connectStandalone(ctx context.Context, cfg Config, name string, logger *slog.Logger) (js jetstream.JetStream, repo ReadModel, closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	if cfg.NATSURL == "" {
		if addr := apiAnswersOn(cfg.HTTPAddr); addr != "" {
			return nil, nil, nil, fmt.Errorf("%w on %s (HTTP_ADDR) and NATS_URL is empty: stop the API "+
				"before running this against its embedded NATS under DATA_DIR=%s, or set NATS_URL to the server it uses",
				ErrAPIRunning, addr, cfg.DataDir)
		}
	}
	nc, stop, err := connectNATSOrEmbedded(cfg, name, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	closers = append(closers, stop)
	if js, err = jetstream.New(nc); err != nil {
		return nil, nil, nil, err
	}
	if _, err := ensureStream(ctx, js, cfg, logger); err != nil {
		return nil, nil, nil, err
	}
	if repo, err = OpenReadModel(ctx, cfg); err != nil {
		return nil, nil, nil, err
	}
	closers = append(closers, func() { _ = repo.Close(context.Background()) })
	return js, repo, closeAll, nil
}

// ReplayFromConfig runs Replay against NATS_URL (or the embedded NATS under
// DATA_DIR) and the read model: `projector replay`.
func ReplayFromConfig(ctx context.Context, cfg Config, logger *slog.Logger, progress func(ReplayProgress)) (ReplayResult, error) {
	js, repo, closeAll, err := connectStandalone(ctx, cfg, "connreg-replay", logger)
	if err != nil {
		return ReplayResult{}, err
	}
	defer closeAll()
	return Replay(ctx, js, repo, logger, ReplayOptions{Progress: progress})
}

// VerifyFromConfig runs Verify against NATS_URL (or the embedded NATS under
// DATA_DIR) and the read model: `projector verify`.
func VerifyFromConfig(ctx context.Context, cfg Config, logger *slog.Logger) (VerifyResult, error) {
	js, repo, closeAll, err := connectStandalone(ctx, cfg, "connreg-verify", logger)
	if err != nil {
		return VerifyResult{}, err
	}
	defer closeAll()
	return Verify(ctx, js, repo, eventstore.ProjectorConsumer)
}

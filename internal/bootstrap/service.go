package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/auth"
	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/generations"
	"github.com/connreg/registry/internal/httpapi"
	"github.com/connreg/registry/internal/sealer/devseal"
	"github.com/connreg/registry/internal/sealer/vault"
	"github.com/connreg/registry/internal/telemetry"
	"github.com/connreg/registry/readmodel"
)

// Service is the assembled registry.
type Service struct {
	Handler   http.Handler
	Store     *eventstore.Store
	ReadModel ReadModel
	Projector *readmodel.Projector
	Index     *readmodel.Index // nil when the projector runs in another process or the read model is SQLite
	NATSURL   string           // "" with the embedded nats-server: see ConnectNATS
	MongoURI  string           // empty when the read model is the embedded SQLite database
	// SQLiteFile is the embedded read model's database file (empty on MongoDB).
	SQLiteFile string

	nats *devstack.NATS // the embedded nats-server, nil with NATS_URL

	logger     *slog.Logger
	cfg        Config
	live       *generations.LiveReadModel // the active generation's repository (generation.go)
	generation readmodel.Generation       // the generation active at start
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closers    []func()
	tel        *telemetry.Telemetry // nil: off
	vault      *vault.Sealer        // nil: development sealer
}

// Sealer is what the service needs of a sealer.
type Sealer interface {
	commands.Sealer
	commands.Unsealer
	commands.SecretDescriber
}

// Start builds the service, with telemetry configured by the OTEL_*
// variables (observe.go). On error it releases whatever it had started.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	tel, err := telemetry.New(ctx, cfg.Getenv, "connreg-api")
	if err != nil {
		return nil, err
	}
	return StartWith(ctx, cfg, logger, tel)
}

// StartWith is Start with the given telemetry (telemetry.Off() for none);
// Close shuts it down.
func StartWith(ctx context.Context, cfg Config, logger *slog.Logger, tel *telemetry.Telemetry) (svc *Service, err error) {
	authn, err := authenticator(cfg, logger) // first: a refusal starts nothing
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s := &Service{logger: logger, cancel: cancel, tel: tel}
	s.closers = append(s.closers, func() { _ = tel.Shutdown(context.Background()) })
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	js, nc, err := s.connectNATS(cfg)
	if err != nil {
		return nil, err
	}
	stream, err := ensureStream(ctx, js, cfg, logger)
	if err != nil {
		return nil, err
	}
	logger.Info("event stream ready: append-only (delete and purge denied), file storage, no age limit",
		"stream", stream.CachedInfo().Config.Name, "replicas", stream.CachedInfo().Config.Replicas)
	if s.Store, err = eventstore.NewStore(nc, stream, cfg.Timeout); err != nil {
		return nil, err
	}
	s.Store.Observe = storeObserver(tel)
	store := tel.EventStore(s.Store)
	if s.ReadModel, err = s.openReadModel(ctx, cfg); err != nil {
		return nil, err
	}
	if err := s.openGeneration(ctx); err != nil {
		return nil, err
	}
	sealer, err := s.openSealer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sealer = tel.Seal(sealer, sealerKind(cfg))
	create, err := commands.NewCreateHandler(commands.CreateDeps{
		Store: store, History: s.Store, Sealer: sealer, NewID: newID, KeyedID: keyedID, Now: now,
	})
	if err != nil {
		return nil, err
	}
	update, err := commands.NewUpdateHandler(store, s.Store, sealer, newID, now)
	if err != nil {
		return nil, err
	}
	remove, err := commands.NewDeleteHandler(store, s.Store, newID, now)
	if err != nil {
		return nil, err
	}
	tester, err := newProber(cfg, logger)
	if err != nil {
		return nil, err
	}
	probe := tel.Prober(tester)
	limiter, err := rateLimiter(cfg)
	if err != nil {
		return nil, err
	}
	test, err := commands.NewTestHandler(commands.TestDeps{
		Store: store, History: s.Store, Unsealer: sealer, Prober: probe, Limiter: limiter, NewID: newID, Now: now,
	})
	if err != nil {
		return nil, err
	}
	discover, err := commands.NewDiscoverHandler(commands.DiscoverDeps{
		Store: store, History: s.Store, Unsealer: sealer, Discoverer: tester, Limiter: limiter, NewID: newID, Now: now,
	})
	if err != nil {
		return nil, err
	}
	if cfg.MonitorInterval > 0 {
		if err := s.runMonitor(runCtx, cfg, js, test); err != nil {
			return nil, err
		}
	}
	if s.Projector, err = readmodel.NewProjector(tel.ProjectionStore(s.live), logger, time.Now); err != nil {
		return nil, err
	}
	s.Projector.OnParked(tel.Parked)
	var projection readmodel.Projection = s.Projector
	var reader readmodel.Reader = s.live
	if _, embedded := s.ReadModel.(sqliteReadModel); embedded && cfg.Projector {
		if err := restartLostReadModel(ctx, js, s.live.Repo(), s.generation, logger); err != nil {
			return nil, err
		}
		// SQLite answers lists and reads from its indexes: no copy in
		// memory, and nothing to load at start.
		s.RunProjector(runCtx, js)
	} else if cfg.Projector {
		// On MongoDB the projector of this process keeps an in-memory index for lists;
		// it is loaded before the projector starts and kept by it after.
		s.Index = readmodel.NewIndex()
		start := time.Now()
		loadCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		err := s.live.Repo().Each(loadCtx, s.Index.Put)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("load the list index: %w", err)
		}
		logger.Info("list index loaded from the read model", "documents", s.Index.Len(), "durationMs", time.Since(start).Milliseconds())
		s.Projector.KeepIndex(s.Index)
		reader = indexedReader{index: s.Index, store: s.live}
		s.RunProjector(runCtx, js)
	} else {
		wm := &generations.Watermark{}
		wm.Follow(js, s.generation.Consumer)
		projection = wm
		s.followGenerations(runCtx, js, wm)
	}
	secrets, err := commands.NewSecretsReadHandler(store, s.Store, sealer, newID, now)
	if err != nil {
		return nil, err
	}
	queries, err := readmodel.NewQueries(reader, streamHistory{s.Store}, projection, logger, 0)
	if err != nil {
		return nil, err
	}
	api, err := httpapi.New(httpapi.Deps{
		Create:  create,
		Update:  update,
		Delete:  remove,
		Test:    test,
		Prober:  probe,
		Queries: queries,
		Secrets: secrets,
		Auth:    authn,
		Logger:  logger,

		Discover:     discover,
		SchemaMaxAge: cfg.SchemaMaxAge,

		Middleware: tel.HTTP("connreg-api"),
		Ready:      s.readiness(runCtx, js, nc),
		Metrics:    tel.MetricsHandler(),
	})
	if err != nil {
		return nil, err
	}
	s.Handler = api.Handler()
	return s, nil
}

// RunProjector runs the read-model projector in the background until Close,
// on the active read-model generation, following the generations replay
// activates (see generation.go).
func (s *Service) RunProjector(ctx context.Context, js jetstream.JetStream) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := generations.ProjectGenerations(ctx, js, s.ReadModel, s.live, s.Projector, s.Index, s.generation, s.logger, s.tel); err != nil {
			s.logger.Error("projector stopped", "error", err.Error())
		}
	}()
}

func (s *Service) connectNATS(cfg Config) (jetstream.JetStream, *nats.Conn, error) {
	s.NATSURL = cfg.NATSURL
	s.cfg = cfg
	if cfg.NATSURL == "" {
		dir := filepath.Join(cfg.DataDir, "nats")
		n, err := devstack.StartPrivateNATS(dir)
		if err != nil {
			return nil, nil, err
		}
		s.closers = append(s.closers, n.Shutdown)
		s.nats = n
		s.logger.Info("embedded nats-server with JetStream started, without a listener: only this process reaches it", "dir", dir)
	}
	nc, err := connectNATS(cfg, s.nats, "connreg", s.logger)
	if err != nil {
		return nil, nil, err
	}
	s.closers = append(s.closers, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	return js, nc, nil
}

// ConnectNATS opens another connection to the service's NATS: NATS_URL
// (with the service's NATS authentication), or in-process to the embedded
// server, which has no listener. opts come after the service's own.
func (s *Service) ConnectNATS(opts ...nats.Option) (*nats.Conn, error) {
	return connectNATS(s.cfg, s.nats, "connreg", s.logger, opts...)
}

// openReadModel opens MONGO_URI's read model, or the embedded SQLite one.
func (s *Service) openReadModel(ctx context.Context, cfg Config) (ReadModel, error) {
	repo, err := OpenReadModel(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = repo.Close(context.Background()) })
	s.MongoURI = cfg.MongoURI
	if sq, ok := repo.(sqliteReadModel); ok {
		s.SQLiteFile = sq.Path()
		s.logger.Info("embedded read model (SQLite)", "file", s.SQLiteFile)
	}
	return repo, nil
}

func (s *Service) openSealer(ctx context.Context, cfg Config) (Sealer, error) {
	if cfg.VaultAddr != "" {
		vcfg, err := vault.ConfigFromEnv(cfg.Getenv)
		if err != nil {
			return nil, err
		}
		v, err := vault.New(ctx, vcfg, s.logger.With("component", "vault"))
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, func() { _ = v.Close() })
		s.vault = v
		s.tel.CounterFunc("connreg_vault_token_renewals_total", "Vault token renewals.", func() float64 { return float64(v.Stats().Renewals) })
		s.tel.CounterFunc("connreg_vault_logins_total", "Vault logins (AppRole) and token checks.", func() float64 { return float64(v.Stats().Logins) })
		return v, nil
	}
	if err := devseal.Allowed(cfg.Env); err != nil {
		return nil, fmt.Errorf("VAULT_ADDR: required when ENV=production (the development sealer is refused): %w", err)
	}
	d, err := devseal.New(filepath.Join(cfg.DataDir, "sealer"))
	if err != nil {
		return nil, err
	}
	s.logger.Warn("DEVELOPMENT SEALER IN USE: credentials are sealed with a local key file, not Vault. " +
		"Set VAULT_ADDR to seal through Vault transit; ENV=production refuses this sealer.")
	return d, nil
}

// Close stops the projector, disconnects and stops the embedded servers, in
// the reverse order of their start.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// now is the service clock: UTC, to the millisecond, the precision the read
// model keeps, so that a connection reads the same from every source.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// idempotencyNamespace scopes the ids derived from Idempotency-Keys.
var idempotencyNamespace = uuid.MustParse("6f1c2f3e-5d1a-4c8e-9b7a-2e4d8c9f0a11")

// keyedID derives a connection id from an idempotency scope (UUID v5).
func keyedID(scope string) string { return uuid.NewSHA1(idempotencyNamespace, []byte(scope)).String() }

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// indexedReader answers lists from the in-memory index and single reads from
// it too, falling back to the store for a document the index lacks.
type indexedReader struct {
	index *readmodel.Index
	store *generations.LiveReadModel
}

func (r indexedReader) Get(ctx context.Context, id string) (*readmodel.Document, error) {
	if d, err := r.index.Get(ctx, id); err == nil {
		return d, nil
	}
	return r.store.Get(ctx, id)
}

func (r indexedReader) List(ctx context.Context, q readmodel.ListQuery) (readmodel.ListResult, error) {
	return r.index.List(ctx, q)
}

// streamHistory is the event store as the query side sees it: the store's
// not-found is the read side's.
type streamHistory struct{ store *eventstore.Store }

func (h streamHistory) Load(ctx context.Context, id string) ([]events.Event, uint64, error) {
	evs, seq, err := h.store.Load(ctx, id)
	if errors.Is(err, domain.ErrNotFound) {
		err = fmt.Errorf("%w: %w", readmodel.ErrNotFound, err)
	}
	return evs, seq, err
}

// authenticator builds the caller check of AUTH_MODE. Off is loud (every
// caller may then read, change and test every connection) and refused in
// production. The check lives here, not in ConfigFromEnv, because only the
// API serves callers: cmd/projector reads the same configuration.
func authenticator(cfg Config, logger *slog.Logger) (httpapi.Authenticator, error) {
	c := cfg.Auth
	if c.Mode != AuthOIDC {
		if cfg.Production() {
			return nil, fmt.Errorf("AUTH_MODE=%s: refused when ENV=production (set AUTH_MODE=oidc, AUTH_ISSUER and AUTH_AUDIENCE)", c.Mode)
		}
		logger.Warn("AUTHENTICATION IS OFF (AUTH_MODE=off): every caller is anonymous in organization \"default\" " +
			"and may read, change and test every connection; set AUTH_MODE=oidc before exposing the API")
		return auth.Off{}, nil
	}
	v, err := auth.NewVerifier(auth.Config{Issuer: c.Issuer, Audience: c.Audience, OrgClaim: c.OrgClaim, ProductsClaim: c.ProductsClaim})
	if err != nil {
		return nil, err
	}
	logger.Info("bearer tokens verified", "issuer", c.Issuer, "audience", c.Audience, "orgClaim", c.OrgClaim, "productsClaim", c.ProductsClaim)
	return v, nil
}

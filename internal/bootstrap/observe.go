package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/sealer/vault"
	"github.com/connreg/registry/internal/telemetry"
)

// LagPoll is how often the projection lag is measured from the projector's
// durable consumer; LagStale is how old the last measurement may be for
// /readyz to call the lag known.
const (
	LagPoll  = 2 * time.Second
	LagStale = 10 * time.Second
)

// lagWatch measures the projection lag from the active generation's durable
// consumer, whichever process runs the projector: the events it has not
// acknowledged, those it has not been delivered, and the age of the oldest
// one it has not acknowledged.
type lagWatch struct {
	js    jetstream.JetStream
	meta  ReadModel // the generations' meta document names the consumer
	tel   *telemetry.Telemetry
	known atomic.Int64 // unix nanoseconds of the last successful measurement
}

func (l *lagWatch) run(ctx context.Context, logger *slog.Logger) {
	failing := false
	for {
		err := l.measure(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			logger.Warn("projection lag unknown", "error", err.Error())
			failing = true
		case err == nil:
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(LagPoll):
		}
	}
}

func (l *lagWatch) measure(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, LagPoll)
	defer cancel()
	meta, err := l.meta.Active(ctx, eventstore.ProjectorConsumer)
	if err != nil {
		return fmt.Errorf("read model generation: %w", err)
	}
	p, err := eventstore.Progress(ctx, l.js, meta.Consumer)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", meta.Consumer, err)
	}
	if !p.Exists {
		return fmt.Errorf("consumer %s does not exist yet", meta.Consumer)
	}
	behind := p.Pending + uint64(p.AckPending)
	age := 0.0
	if behind > 0 {
		stream, err := l.js.Stream(ctx, events.StreamName)
		if err != nil {
			return err
		}
		oldest, err := stream.GetMsg(ctx, p.Acknowledged+1, jetstream.WithGetMsgSubject(events.EventSubjectFilter))
		if err == nil {
			age = max(0, time.Since(oldest.Time).Seconds())
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return err
		}
	}
	l.tel.ProjectionLag(age, behind, p.Pending)
	l.known.Store(time.Now().UnixNano())
	return nil
}

// check is the /readyz check: the lag was measured recently.
func (l *lagWatch) check(context.Context) error {
	at := l.known.Load()
	if at == 0 {
		return errors.New("not measured yet")
	}
	if age := time.Since(time.Unix(0, at)); age > LagStale {
		return fmt.Errorf("last measured %s ago", age.Round(time.Second))
	}
	return nil
}

// readiness builds the /readyz checks. Their errors are the registry's own
// wording (a dependency's error text may name hosts or users).
func readiness(nc *nats.Conn, js jetstream.JetStream, repo func() ReadModel, sealer *vault.Sealer, lag *lagWatch) *telemetry.Readiness {
	checks := []*telemetry.Check{
		{Name: "eventStore", Run: func(ctx context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected to NATS")
			}
			if _, err := js.Stream(ctx, events.StreamName); err != nil {
				return quiet("stream "+events.StreamName, err)
			}
			return nil
		}},
		{Name: "readModel", Run: func(ctx context.Context) error { return quiet("read model", repo().Ping(ctx)) }},
		{Name: "projectionLag", Run: lag.check},
	}
	if sealer != nil {
		checks = append(checks, &telemetry.Check{Name: "sealer", Cache: 5 * time.Second,
			Run: func(ctx context.Context) error { return quiet("vault", sealer.Ping(ctx)) }})
	}
	return &telemetry.Readiness{Checks: checks, Timeout: 2 * time.Second}
}

// quiet says what did not answer without the dependency's own text.
func quiet(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: no answer in time", what)
	}
	return fmt.Errorf("%s: refused or unreachable", what)
}

// storeObserver is what the event store reports to telemetry.
func storeObserver(tel *telemetry.Telemetry) eventstore.Observer {
	if tel == nil {
		return eventstore.Observer{}
	}
	o := eventstore.Observer{Propagator: tel.Propagator, Takeover: tel.Takeover}
	if tel.Exporting {
		o.Tracer = tel.Tracer()
	}
	return o
}

// sealerKind is the sealer label of the metrics.
func sealerKind(cfg Config) string {
	if cfg.VaultAddr != "" {
		return "vault"
	}
	return "dev"
}

// readiness starts measuring the projection lag and returns the /readyz
// checks of the API process.
func (s *Service) readiness(ctx context.Context, js jetstream.JetStream, nc *nats.Conn) *telemetry.Readiness {
	lag := &lagWatch{js: js, meta: s.ReadModel, tel: s.tel}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		lag.run(ctx, s.logger)
	}()
	return readiness(nc, js, s.live.Repo, s.vault, lag)
}

// serveOps serves /healthz, /readyz and /metrics on addr ("off": nothing)
// for the standalone projector, which has no API port; the returned func
// stops it.
func serveOps(ctx context.Context, addr string, nc *nats.Conn, js jetstream.JetStream, repo ReadModel,
	tel *telemetry.Telemetry, logger *slog.Logger) (func(), error) {
	if addr == "off" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("METRICS_ADDR=%q: %w", addr, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	lag := &lagWatch{js: js, meta: repo, tel: tel}
	go lag.run(lctx, logger)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.Handle("GET /readyz", readiness(nc, js, func() ReadModel { return repo }, nil, lag))
	mux.Handle("GET /metrics", tel.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	logger.Info("projector metrics and probes listening", "addr", ln.Addr().String())
	return func() {
		cancel()
		sctx, done := context.WithTimeout(context.Background(), 2*time.Second)
		defer done()
		_ = srv.Shutdown(sctx)
	}, nil
}

package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/monitor"
)

// MonitorLeaseKey is the monitor's key in the service's lease bucket (the
// projector's lease, eventstore.Lease): one monitor is active at a time.
const MonitorLeaseKey = "connection-monitor"

// runMonitor starts the connection monitor in the background until Close,
// behind the monitor lease so that one process of several is active.
func (s *Service) runMonitor(ctx context.Context, cfg Config, js jetstream.JetStream, test *commands.TestHandler) error {
	m, err := monitor.New(js, test, s.Store, s.logger, monitor.Options{Interval: cfg.MonitorInterval, Concurrency: cfg.MonitorConcurrency})
	if err != nil {
		return err
	}
	lease, err := eventstore.OpenLease(ctx, js, MonitorLeaseKey, holderName("api"), cfg.ProjectorLease, s.logger)
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		holdMonitor(ctx, lease, m, s.logger)
	}()
	return nil
}

// holdMonitor runs the monitor each time this process holds the lease.
func holdMonitor(ctx context.Context, lease *eventstore.Lease, m *monitor.Monitor, logger *slog.Logger) {
	lease.Hold(ctx, func(ctx context.Context) {
		if err := m.Run(ctx); err != nil && ctx.Err() == nil {
			logger.Error("connection monitor failed; trying again", "error", err.Error())
		}
	})
}

// RunMonitor runs the connection monitor alone against NATS_URL until ctx
// ends: the process behind `cmd/monitor`. It tests through the same tester
// as the API (network policy, TEST_RATE_LIMIT, sealer) and is active only
// while it holds the monitor lease.
func RunMonitor(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if cfg.NATSURL == "" {
		return errors.New("NATS_URL: required to run the monitor on its own")
	}
	if cfg.MonitorInterval <= 0 {
		return errors.New("MONITOR_INTERVAL: the monitor is off (set a duration such as 15m)")
	}
	nc, err := connectNATS(cfg, nil, "connreg-monitor", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	stream, err := ensureStream(ctx, js, cfg, logger)
	if err != nil {
		return err
	}
	store, err := eventstore.NewStore(nc, stream, cfg.Timeout)
	if err != nil {
		return err
	}
	// The sealer is opened as the API opens it; the Service value only
	// carries the logger and collects what must be closed.
	s := &Service{logger: logger, cancel: func() {}}
	defer s.Close()
	sealer, err := s.openSealer(ctx, cfg)
	if err != nil {
		return err
	}
	probe, err := newProber(cfg, logger)
	if err != nil {
		return err
	}
	limiter, err := rateLimiter(cfg)
	if err != nil {
		return err
	}
	test, err := commands.NewTestHandler(commands.TestDeps{
		Store: store, History: store, Unsealer: sealer, Prober: probe, Limiter: limiter, NewID: newID, Now: now,
	})
	if err != nil {
		return err
	}
	m, err := monitor.New(js, test, store, logger, monitor.Options{Interval: cfg.MonitorInterval, Concurrency: cfg.MonitorConcurrency})
	if err != nil {
		return err
	}
	lease, err := eventstore.OpenLease(ctx, js, MonitorLeaseKey, holderName("monitor"), cfg.ProjectorLease, logger)
	if err != nil {
		return err
	}
	logger.Info("monitor waiting for the lease: one monitor is active, the others stand by", "owner", holderName("monitor"))
	holdMonitor(ctx, lease, m, logger)
	return nil
}

// holderName names this process in the lease: command, host and pid
// (unique among live processes).
func holderName(command string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s/%d", command, host, os.Getpid())
}

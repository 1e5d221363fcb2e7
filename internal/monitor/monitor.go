package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/retry"
)

// Actor is the actor recorded on the events the monitor's tests append.
const Actor = "connreg-monitor"

// Tester runs one connection test: commands.TestHandler, with its network
// policy, rate limit and credential handling.
type Tester interface {
	Handle(ctx context.Context, cmd commands.TestConnection) (commands.ProbeResult, error)
}

// IDLister lists every connection id the event store knows, deleted ones
// included (a test of a deleted one answers not found and drops it).
type IDLister interface {
	AggregateIDs(ctx context.Context) ([]string, error)
}

// Options tune the monitor; zero values take the defaults.
type Options struct {
	// Interval between two tests of one connection (default 15m).
	Interval time.Duration
	// Concurrency is how many tests may run at once (default 4).
	Concurrency int
	// Soon is the delay between a create or a change of the target and
	// its test (default 2s): events that follow within it are coalesced.
	Soon time.Duration
	// PerSecond caps the tests started per second (Throttle; default 20).
	PerSecond int
	// Consumer is the durable consumer's name (default Consumer).
	Consumer string
	// Timeout bounds one test, retries included (default 2m).
	Timeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = 15 * time.Minute
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Soon <= 0 {
		o.Soon = 2 * time.Second
	}
	if o.PerSecond <= 0 {
		o.PerSecond = 20
	}
	if o.Consumer == "" {
		o.Consumer = Consumer
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	return o
}

// Monitor is the connection monitor. Run it in one process at a time (under
// a lease): two monitors would test every connection twice.
type Monitor struct {
	js     jetstream.JetStream
	tester Tester
	ids    IDLister
	logger *slog.Logger
	opts   Options
	sched  *schedule
}

// New wires a monitor; every dependency is required.
func New(js jetstream.JetStream, tester Tester, ids IDLister, logger *slog.Logger, opts Options) (*Monitor, error) {
	if js == nil || tester == nil || ids == nil || logger == nil {
		return nil, errors.New("monitor: New needs a JetStream context, a tester, an id lister and a logger")
	}
	opts = opts.withDefaults()
	return &Monitor{js: js, tester: tester, ids: ids, logger: logger, opts: opts,
		sched: newSchedule(opts.Interval, opts.Soon, opts.Concurrency)}, nil
}

// errUndecodable marks a message that goes to the poison queue.
var errUndecodable = errors.New("undecodable connection event")

// Run runs the monitor until ctx ends. It subscribes before it loads the
// connection ids, so a connection created in between is in one or both.
func (m *Monitor) Run(ctx context.Context) error {
	if err := EnsurePoisonStream(ctx, m.js); err != nil {
		return err
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(m.logger.With("component", "monitor"), map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug, // the router's start and stop lines
	})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return err
	}
	router.AddMiddleware(middleware.Recoverer)

	poison, err := middleware.PoisonQueueWithFilter(poisonPublisher{js: m.js, timeout: 5 * time.Second}, PoisonSubject,
		func(err error) bool { return errors.Is(err, errUndecodable) })
	if err != nil {
		return err
	}
	subscriber := &jsSubscriber{js: m.js, consumer: m.opts.Consumer}
	router.AddConsumerHandler("connection-events", events.EventSubjectFilter, subscriber, m.handleEvent).
		AddMiddleware(poison)

	retry := middleware.Retry{
		MaxRetries: 5, InitialInterval: 500 * time.Millisecond, MaxInterval: 10 * time.Second, Multiplier: 2,
		RandomizationFactor: 0.2, ResetContextOnRetry: true, Logger: wlog,
		ShouldRetry: func(p middleware.RetryParams) bool {
			var u *domain.UnavailableError
			return errors.As(p.Err, &u)
		},
	}
	throttle := middleware.NewThrottle(int64(m.opts.PerSecond), time.Second)
	router.AddConsumerHandler("connection-tests", "due", m.sched, m.handleTest).
		AddMiddleware(throttle.Middleware, retry.Middleware)

	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(ctx) }()
	select {
	case <-router.Running():
	case err := <-runErr:
		return err
	}
	ids, err := m.listIDs(ctx)
	if err != nil {
		_ = router.Close()
		<-runErr
		_ = subscriber.Close()
		return nil // ctx ended
	}
	for _, id := range ids {
		m.sched.load(id)
	}
	m.logger.Info("connection monitor running", "connections", len(ids), "interval", m.opts.Interval.String(),
		"concurrency", m.opts.Concurrency)
	err = <-runErr
	_ = subscriber.Close()
	return err
}

// listIDs lists the connection ids, retrying while the event store is
// unreachable: the monitor waits for it rather than stopping for good.
func (m *Monitor) listIDs(ctx context.Context) ([]string, error) {
	b := retry.Backoff(time.Second, 30*time.Second)
	for {
		ids, err := m.ids.AggregateIDs(ctx)
		if err == nil || ctx.Err() != nil {
			return ids, err
		}
		pause := b.NextBackOff()
		m.logger.Warn("monitor: cannot list the connections; retrying", "error", err.Error(), "in", pause.String())
		if !retry.Wait(ctx, pause) {
			return nil, ctx.Err()
		}
	}
}

// targetFields are the changed fields after which a connection is tested
// again soon: where it points and how it logs in.
var targetFields = []string{events.FieldHost, events.FieldPort, events.FieldType, events.FieldDatabaseName,
	events.FieldUserName, events.FieldPassword, events.FieldSchema, events.FieldSSL}

// handleEvent keeps the schedule. It cannot fail but for an undecodable
// message (parked by the poison middleware); an event type this version
// does not know is skipped, as the events package asks of consumers.
func (m *Monitor) handleEvent(msg *message.Message) error {
	ev, err := events.Decode(msg.Payload)
	switch {
	case errors.Is(err, events.ErrUnknownType):
		m.logger.Debug("monitor: event type unknown to this version; skipped", "subject", msg.Metadata.Get("subject"))
		return nil
	case err != nil:
		return fmt.Errorf("%w: %w", errUndecodable, err)
	}
	if !m.sched.observe(ev.AggregateID, ev.AggregateVersion) {
		return nil // superseded: a newer event of this connection was already seen
	}
	corr := ev.CorrelationID
	if corr == "" {
		corr = ev.RequestID
	}
	switch p := ev.Payload.(type) {
	case *events.ConnectionCreatedV1:
		m.sched.testSoon(ev.AggregateID, corr)
	case *events.ConnectionUpdatedV1:
		if slices.ContainsFunc(p.Changed, func(f string) bool { return slices.Contains(targetFields, f) }) {
			m.sched.testSoon(ev.AggregateID, corr)
		}
	case *events.ConnectionDeletedV1:
		m.sched.remove(ev.AggregateID)
	}
	return nil
}

// handleTest runs one due test and reschedules the connection. Only a
// transient error is returned (the Retry middleware retries it; after the
// last retry the schedule tries again later); every other outcome is final
// for this round.
func (m *Monitor) handleTest(msg *message.Message) error {
	id := string(msg.Payload)
	ctx, cancel := context.WithTimeout(msg.Context(), m.opts.Timeout)
	defer cancel()
	_, err := m.tester.Handle(ctx, commands.TestConnection{
		ID:        id,
		Scope:     domain.EveryOrganization(), // the monitor tests every organization's connections
		ByMonitor: true,
		Origin:    domain.Origin{Actor: Actor, RequestID: msg.UUID, CorrelationID: middleware.MessageCorrelationID(msg)},
	})
	var limited *commands.RateLimitedError
	var unavailable *domain.UnavailableError
	switch {
	case err == nil, errors.Is(err, commands.ErrTargetRefused):
		// A refused target is recorded as a failure by the tester.
		m.sched.finish(id, m.sched.jitter(), time.Time{}, false)
	case errors.As(err, &limited):
		m.sched.finish(id, limited.RetryAfter, time.Now().Add(limited.RetryAfter), false)
	case errors.Is(err, domain.ErrNotFound):
		m.sched.finish(id, 0, time.Time{}, true)
	case errors.Is(err, commands.ErrProbeBusy):
		m.sched.finish(id, m.opts.Soon, time.Time{}, false)
	case errors.As(err, &unavailable):
		return err
	case msg.Context().Err() != nil:
		return err
	default:
		m.logger.Warn("monitor: connection test failed", "connection", id, "error", err.Error())
		m.sched.finish(id, m.sched.jitter(), time.Time{}, false)
	}
	return nil
}

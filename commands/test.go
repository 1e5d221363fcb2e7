package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// ProbeSSL is the TLS configuration of a probe; Key is a plaintext secret.
type ProbeSSL struct {
	Mode     string
	CA, Cert string
	Key      []byte
}

// ProbeTarget is what a connection test dials: the stored settings with the
// credentials unsealed, for the duration of one attempt.
type ProbeTarget struct {
	Engine       string
	Host         string
	Port         int
	DatabaseName string
	UserName     string
	Password     []byte
	Schema       string
	SSL          *ProbeSSL
}

// ProbeResult is the outcome of one attempt. Reason is one of the fixed
// failure reasons (HOST_UNREACHABLE, CONNECTION_REFUSED, TIMEOUT, TLS_FAILED,
// AUTH_FAILED, DATABASE_NOT_FOUND, SCHEMA_NOT_FOUND, UNKNOWN); Message helps a
// person fix it and never holds a secret.
type ProbeResult struct {
	Status  string // domain.TestSucceeded or domain.TestFailed
	Reason  string
	Message string
	Latency time.Duration
}

// Errors of the probe port that callers branch on.
var (
	// ErrTargetRefused: the host resolves to an address the network policy
	// refuses (server-side request forgery guard); nothing was dialled.
	ErrTargetRefused = errors.New("the host is refused by the network policy")
	// ErrProbeBusy: too many tests run at once; nothing was dialled.
	ErrProbeBusy = errors.New("too many connection tests in progress")
)

// Prober connects to a database for real and reports why it could not.
type Prober interface {
	Probe(ctx context.Context, t ProbeTarget) (ProbeResult, error)
}

// Unsealer opens sealed credentials, for the duration of a test only.
type Unsealer interface {
	Unseal(ctx context.Context, binding string, s domain.SealedSecret) ([]byte, error)
}

// Limiter rations tests per connection.
type Limiter interface {
	Allow(id string, now time.Time) (ok bool, retryAfter time.Duration)
}

// RateLimitedError says a connection was tested too often; retry after.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("connection tested too often; retry in %s", e.RetryAfter.Round(time.Second))
}

// TestConnection asks to test a stored connection.
type TestConnection struct {
	ID     string
	Scope  domain.Scope // a connection outside it is domain.ErrNotFound
	Origin domain.Origin
	// ByMonitor marks a test the connection monitor asked for (recorded with
	// origin "monitor"); otherwise the API did.
	ByMonitor bool
}

// TestDeps are the test handler's collaborators; all are required.
type TestDeps struct {
	Store    EventStore
	History  History
	Unsealer Unsealer
	Prober   Prober
	Limiter  Limiter
	NewID    func() string
	Now      func() time.Time
}

// TestHandler tests stored connections and records each attempt as a
// connection.tested.v1 event, so the history shows when one last worked.
type TestHandler struct {
	TestDeps
}

// NewTestHandler wires the handler.
func NewTestHandler(d TestDeps) (*TestHandler, error) {
	if d.Store == nil || d.History == nil || d.Unsealer == nil || d.Prober == nil || d.Limiter == nil || d.NewID == nil || d.Now == nil {
		return nil, errors.New("commands: NewTestHandler needs a store, a history, an unsealer, a prober, a limiter, an id generator and a clock")
	}
	return &TestHandler{TestDeps: d}, nil
}

// Handle tests the connection. The plaintext credentials live only for the
// attempt and are wiped after it. A refused host is recorded too, as a
// failure, before ErrTargetRefused is returned.
func (h *TestHandler) Handle(ctx context.Context, cmd TestConnection) (ProbeResult, error) {
	conn, err := load(ctx, h.History, cmd.ID, cmd.Scope, nil)
	if err != nil {
		return ProbeResult{}, err
	}
	if ok, after := h.Limiter.Allow(cmd.ID, h.Now()); !ok {
		return ProbeResult{}, &RateLimitedError{RetryAfter: after}
	}
	target, err := unsealTarget(ctx, h.Unsealer, conn)
	if err != nil {
		return ProbeResult{}, err
	}
	res, perr := h.Prober.Probe(ctx, target)
	target.wipe()
	switch {
	case errors.Is(perr, ErrTargetRefused):
		res = ProbeResult{Status: domain.TestFailed, Reason: "HOST_REFUSED"}
	case perr != nil:
		return ProbeResult{}, perr
	}
	if err := h.record(ctx, cmd, conn, res); err != nil {
		return ProbeResult{}, err
	}
	return res, perr
}

// unsealTarget is what a probe of a stored connection dials, its secrets
// unsealed: the caller wipes them as soon as the probe returns.
func unsealTarget(ctx context.Context, u Unsealer, conn *domain.Connection) (ProbeTarget, error) {
	s, creds := conn.Spec(), conn.Credentials()
	password, err := u.Unseal(ctx, conn.ID(), creds.Password)
	if err != nil {
		return ProbeTarget{}, fmt.Errorf("unseal password: %w", err)
	}
	t := ProbeTarget{Engine: string(s.Engine), Host: s.Host, Port: s.Port, DatabaseName: s.DatabaseName,
		UserName: s.UserName, Password: password, Schema: s.Schema}
	if s.SSL != nil {
		t.SSL = &ProbeSSL{Mode: s.SSL.Mode, CA: s.SSL.CA, Cert: s.SSL.Cert}
		if !creds.SSLKey.IsZero() {
			if t.SSL.Key, err = u.Unseal(ctx, conn.ID(), creds.SSLKey); err != nil {
				clear(password)
				return ProbeTarget{}, fmt.Errorf("unseal ssl key: %w", err)
			}
		}
	}
	return t, nil
}

// wipe overwrites the plaintext secrets.
func (t ProbeTarget) wipe() {
	clear(t.Password)
	if t.SSL != nil {
		clear(t.SSL.Key)
	}
}

// record appends the outcome to the connection as loaded for the test,
// reloading after a concurrent change: a test result is a fact whatever else
// happened to the connection meanwhile.
func (h *TestHandler) record(ctx context.Context, cmd TestConnection, conn *domain.Connection, res ProbeResult) error {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			var err error
			if conn, err = load(ctx, h.History, cmd.ID, cmd.Scope, nil); err != nil {
				return err
			}
		}
		origin := cmd.Origin
		origin.At = h.Now()
		obs := domain.Observation{Status: res.Status, Reason: res.Reason, Message: res.Message,
			LatencyMs: res.Latency.Milliseconds(), Origin: events.TestOriginAPI}
		if cmd.ByMonitor {
			obs.Origin = events.TestOriginMonitor
		}
		if err := conn.Observe(obs, origin); err != nil {
			return err
		}
		_, err := h.Store.Append(ctx, Append{AggregateID: cmd.ID, Organization: conn.Organization(), ExpectedVersion: conn.PendingFrom(), Events: stamp(conn, h.NewID)})
		if retry, err := afterConflict(err, nil, attempt); !retry {
			return err
		}
	}
}

// ProbeSpec tests a connection before it is saved: nothing is sealed,
// stored or appended.
func ProbeSpec(ctx context.Context, p Prober, in domain.SpecInput) (ProbeResult, error) {
	defer clear(in.Password)
	spec, secrets, err := domain.ParseSpec(in)
	if err != nil {
		return ProbeResult{}, err
	}
	t := ProbeTarget{Engine: string(spec.Engine), Host: spec.Host, Port: spec.Port, DatabaseName: spec.DatabaseName,
		UserName: spec.UserName, Password: secrets.Password, Schema: spec.Schema}
	if spec.SSL != nil {
		t.SSL = &ProbeSSL{Mode: spec.SSL.Mode, CA: spec.SSL.CA, Cert: spec.SSL.Cert, Key: secrets.SSLKey}
		defer clear(secrets.SSLKey)
	}
	return p.Probe(ctx, t)
}

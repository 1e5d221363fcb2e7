package commands_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/dbprobe"
	"github.com/connreg/registry/internal/sealer/devseal"
)

// fixedProber stands for the remote database a connection test dials: it
// answers a fixed outcome and remembers what it was asked to dial. The real
// prober (internal/dbprobe) is tested against real PostgreSQL and MariaDB
// servers there and in internal/bootstrap; here only the handler's rules
// are under test, and they must not depend on a database server.
type fixedProber struct {
	res probeAnswer

	mu       sync.Mutex
	calls    int
	target   commands.ProbeTarget
	password string // the plaintext as the prober saw it
	sslKey   string
}

// probeAnswer is what a fixedProber answers.
type probeAnswer struct {
	res commands.ProbeResult
	err error
}

func (p *fixedProber) Probe(_ context.Context, t commands.ProbeTarget) (commands.ProbeResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	p.target = t
	p.password = string(t.Password)
	if t.SSL != nil {
		p.sslKey = string(t.SSL.Key)
	}
	return p.res.res, p.res.err
}

// testHandler wires a test handler over store with a real rate limiter of
// limit tests a minute.
func (f *fixture) testHandler(store commands.EventStore, p commands.Prober, unsealer commands.Unsealer, limit int) *commands.TestHandler {
	f.t.Helper()
	h, err := commands.NewTestHandler(commands.TestDeps{Store: store, History: f.store, Unsealer: unsealer, Prober: p,
		Limiter: dbprobe.NewRateLimiter(limit, time.Minute), NewID: f.ids.next, Now: f.clock.now})
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

func TestConnectionTestIsRecorded(t *testing.T) {
	tests := []struct {
		name       string
		answer     probeAnswer
		wantErr    error
		wantStatus string
		wantReason string
		recorded   bool
	}{
		{"success", probeAnswer{res: commands.ProbeResult{Status: domain.TestSucceeded, Message: "connected", Latency: 12 * time.Millisecond}},
			nil, domain.TestSucceeded, "", true},
		{"refused by the database", probeAnswer{res: commands.ProbeResult{Status: domain.TestFailed, Reason: "AUTH_FAILED", Message: "password authentication failed", Latency: 7 * time.Millisecond}},
			nil, domain.TestFailed, "AUTH_FAILED", true},
		{"refused by the network policy", probeAnswer{err: commands.ErrTargetRefused},
			commands.ErrTargetRefused, domain.TestFailed, "HOST_REFUSED", true},
		{"too many tests at once", probeAnswer{err: commands.ErrProbeBusy}, commands.ErrProbeBusy, "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			id := f.mustCreate("orders")
			p := &fixedProber{res: tc.answer}
			h := f.testHandler(f.store, p, f.sealer, 10)
			f.clock.advance(time.Second)
			res, err := h.Handle(ctx(t), commands.TestConnection{Scope: caller, ID: id, Origin: origin})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if p.calls != 1 || p.password != "pw-of-orders" || p.target.Host != "db.example.com" || p.target.Port != 5432 ||
				p.target.Engine != "POSTGRESQL" || p.target.DatabaseName != "ledger" || p.target.UserName != "app" || p.target.Schema != "public" {
				t.Fatalf("the prober dialled %+v (password %q) in %d calls", p.target, p.password, p.calls)
			}
			if strings.Trim(string(p.target.Password), "\x00") != "" {
				t.Fatal("the unsealed password was not wiped after the attempt")
			}
			if !tc.recorded {
				f.assertHistory(id, "created")
				return
			}
			if res.Status != tc.wantStatus || res.Reason != tc.wantReason {
				t.Fatalf("answer %+v, want %s %s", res, tc.wantStatus, tc.wantReason)
			}
			// The first test moves the health from unknown, so a
			// health-changed event follows the tested one.
			evs := f.assertHistory(id, "created", "tested", "health-changed")
			if hc := evs[2].Payload.(*events.ConnectionHealthChangedV1); hc.Previous != events.HealthUnknown ||
				(hc.Status == events.HealthHealthy) != (tc.wantStatus == domain.TestSucceeded) || hc.Reason != tc.wantReason {
				t.Fatalf("health change %+v", hc)
			}
			e := evs[1]
			got := e.Payload.(*events.ConnectionTestedV1)
			if got.Status != tc.wantStatus || got.Reason != tc.wantReason || got.LatencyMs != tc.answer.res.Latency.Milliseconds() ||
				!e.OccurredAt.Equal(f.clock.now()) || e.Actor != "alice" {
				t.Fatalf("recorded %+v at %s by %s", got, e.OccurredAt, e.Actor)
			}
		})
	}
}

func TestConnectionTestIsRateLimited(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	p := &fixedProber{res: probeAnswer{res: commands.ProbeResult{Status: domain.TestSucceeded}}}
	h := f.testHandler(f.store, p, f.sealer, 2)
	for range 2 {
		if _, err := h.Handle(ctx(t), commands.TestConnection{Scope: caller, ID: id, Origin: origin}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.Handle(ctx(t), commands.TestConnection{Scope: caller, ID: id, Origin: origin})
	var limited *commands.RateLimitedError
	if !errors.As(err, &limited) || limited.RetryAfter <= 0 || limited.RetryAfter > time.Minute {
		t.Fatalf("third test within a minute: %v", err)
	}
	if p.calls != 2 {
		t.Fatalf("the prober was called %d times, want 2", p.calls)
	}
	f.assertHistory(id, "created", "tested", "health-changed", "tested")
	f.clock.advance(limited.RetryAfter) // the handler's clock drives the limiter
	if _, err := h.Handle(ctx(t), commands.TestConnection{Scope: caller, ID: id, Origin: origin}); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	other := f.mustCreate("payments") // the quota is per connection
	if _, err := h.Handle(ctx(t), commands.TestConnection{Scope: caller, ID: other, Origin: origin}); err != nil {
		t.Fatalf("another connection: %v", err)
	}
}

func TestConnectionTestOfAMissingConnection(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	if _, err := f.delete.Handle(ctx(t), commands.DeleteConnection{Scope: caller, ID: id, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	p := &fixedProber{res: probeAnswer{res: commands.ProbeResult{Status: domain.TestSucceeded}}}
	h := f.testHandler(f.store, p, f.sealer, 10)
	for _, target := range []string{id, "00000000-0000-7000-8000-999999999999"} {
		if _, err := h.Handle(ctx(t), commands.TestConnection{Scope: caller, ID: target, Origin: origin}); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("test of %s: %v, want domain.ErrNotFound", target, err)
		}
	}
	if p.calls != 0 {
		t.Fatal("a missing connection was dialled")
	}
	f.assertHistory(id, "created", "deleted")
}

// TestConnectionTestThatCannotUnseal: the credentials do not open (another
// key); nothing is dialled and nothing recorded.
func TestConnectionTestThatCannotUnseal(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	other, err := devseal.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := &fixedProber{res: probeAnswer{res: commands.ProbeResult{Status: domain.TestSucceeded}}}
	_, err = f.testHandler(f.store, p, other, 10).Handle(ctx(t), commands.TestConnection{Scope: caller, ID: id, Origin: origin})
	if !errors.Is(err, devseal.ErrRejected) || strings.Contains(err.Error(), "pw-of-orders") {
		t.Fatalf("err = %v, want devseal.ErrRejected without the secret", err)
	}
	if p.calls != 0 {
		t.Fatal("dialled without credentials")
	}
	f.assertHistory(id, "created")
}

// TestConnectionTestRecordsAfterAConcurrentChange: the connection changes
// while it is tested; the outcome is a fact all the same and is recorded
// on top of the change (afterConflict without If-Match).
func TestConnectionTestRecordsAfterAConcurrentChange(t *testing.T) {
	tests := []struct {
		races   int
		wantErr error
		want    []string
	}{
		{1, nil, []string{"created", "updated", "tested", "health-changed"}},
		{commands.MaxConflictRetries, nil, []string{"created", "updated", "updated", "updated", "tested", "health-changed"}},
		{commands.MaxConflictRetries + 1, domain.ErrConcurrentChange, []string{"created", "updated", "updated", "updated", "updated"}},
	}
	for _, tc := range tests {
		f := newFixture(t)
		id := f.mustCreate("orders")
		p := &fixedProber{res: probeAnswer{res: commands.ProbeResult{Status: domain.TestFailed, Reason: "TIMEOUT", Latency: time.Second}}}
		store := f.racer(id, tc.races)
		_, err := f.testHandler(store, p, f.sealer, 10).Handle(ctx(t), commands.TestConnection{Scope: caller, ID: id, Origin: origin})
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%d races: %v, want %v", tc.races, err, tc.wantErr)
		}
		if p.calls != 1 {
			t.Fatalf("%d races: dialled %d times, want once", tc.races, p.calls)
		}
		f.assertHistory(id, tc.want...)
	}
}

func TestProbeSpecStoresNothing(t *testing.T) {
	f := newFixture(t)
	p := &fixedProber{res: probeAnswer{res: commands.ProbeResult{Status: domain.TestSucceeded}}}
	bad := input("orders")
	bad.Port = 0
	var verr *domain.ValidationError
	if _, err := commands.ProbeSpec(ctx(t), p, bad); !errors.As(err, &verr) || p.calls != 0 {
		t.Fatalf("invalid spec: %v after %d calls", err, p.calls)
	}
	in := input("orders")
	password := in.Password
	res, err := commands.ProbeSpec(ctx(t), p, in)
	if err != nil || res.Status != domain.TestSucceeded || p.password != "pw-of-orders" || p.target.Schema != "public" {
		t.Fatalf("probe: %+v %v; dialled %+v", res, err, p.target)
	}
	if strings.Trim(string(password), "\x00") != "" {
		t.Fatal("the caller's password was not wiped")
	}
	if f.aggregates() != 0 || f.sealer.count() != 0 {
		t.Fatal("a probe of an unsaved spec stored or sealed something")
	}
}

// TestConnectionTestUnsealsTheClientKeyForTheAttemptOnly: the client key
// reaches the prober in plaintext and is wiped after the attempt.
func TestConnectionTestUnsealsTheClientKeyForTheAttemptOnly(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreateFrom(withClientKey("tls-db"))
	p := &fixedProber{res: probeAnswer{res: commands.ProbeResult{Status: domain.TestSucceeded}}}
	if _, err := f.testHandler(f.store, p, f.sealer, 10).Handle(ctx(t), commands.TestConnection{Scope: caller, ID: id, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	cert, key := clientCert()
	if p.sslKey != string(key) || p.target.SSL.Cert != cert || p.target.SSL.Mode != "verify-full" {
		t.Fatalf("the prober saw key %d bytes, ssl %+v", len(p.sslKey), p.target.SSL)
	}
	if strings.Trim(string(p.target.SSL.Key), "\x00") != "" {
		t.Fatal("the unsealed client key was not wiped after the attempt")
	}
}

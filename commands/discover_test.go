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
)

// fixedDiscoverer stands for the remote database a discovery reads, as
// fixedProber does for a test: the real discovery (internal/dbprobe) runs
// against real PostgreSQL, MariaDB and FerretDB there and in
// internal/bootstrap; here only the handler's rules are under test.
type fixedDiscoverer struct {
	mu       sync.Mutex
	res      commands.ProbeResult
	schema   domain.Schema
	err      error
	calls    int
	target   commands.ProbeTarget
	password string
}

func (d *fixedDiscoverer) Discover(_ context.Context, t commands.ProbeTarget) (commands.ProbeResult, domain.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	d.target, d.password = t, string(t.Password)
	return d.res, d.schema, d.err
}

func (f *fixture) discoverHandler(store commands.EventStore, d commands.SchemaDiscoverer, limit int) *commands.DiscoverHandler {
	f.t.Helper()
	h, err := commands.NewDiscoverHandler(commands.DiscoverDeps{Store: store, History: f.store, Unsealer: f.sealer, Discoverer: d,
		Limiter: dbprobe.NewRateLimiter(limit, time.Minute), NewID: f.ids.next, Now: f.clock.now})
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

var (
	ordersTable = domain.Table{Name: "orders", Columns: []domain.Column{{Name: "id", Type: "bigint", PrimaryKey: true}}}
	succeeded   = commands.ProbeResult{Status: domain.TestSucceeded, Message: "discovered"}
)

// TestDiscoveryRecordsOnlyAChangedSchema: the first schema is recorded, the
// same one again is not, a changed one is; the password reaches the
// discoverer unsealed and is wiped after.
func TestDiscoveryRecordsOnlyAChangedSchema(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	d := &fixedDiscoverer{res: succeeded, schema: domain.Schema{Tables: []domain.Table{ordersTable}}}
	h := f.discoverHandler(f.store, d, 10)
	discover := func(wantRecorded bool) commands.Discovery {
		t.Helper()
		f.clock.advance(time.Second)
		res, err := h.Handle(ctx(t), commands.DiscoverSchema{Scope: caller, ID: id, Origin: origin})
		if err != nil || res.Recorded != wantRecorded || res.Digest != d.schema.Digest() || res.Connection.ID() != id || !res.At.Equal(f.clock.now()) {
			t.Fatalf("discovery: %+v %v, want recorded %v", res, err, wantRecorded)
		}
		return res
	}
	first := discover(true)
	if d.password != "pw-of-orders" || d.target.Host != "db.example.com" || d.target.Schema != "public" ||
		strings.Trim(string(d.target.Password), "\x00") != "" {
		t.Fatalf("the discoverer dialled %+v with %q; the password must be wiped after", d.target, d.password)
	}
	discover(false)
	d.schema.Tables = append(d.schema.Tables, domain.Table{Name: "lines", View: true})
	second := discover(true)
	evs := f.assertHistory(id, "created", "schema-discovered", "schema-discovered")
	if second.Sequence <= first.Sequence || evs[2].Actor != "alice" {
		t.Fatalf("sequences %d then %d; actor %q", first.Sequence, second.Sequence, evs[2].Actor)
	}
	p := evs[2].Payload.(*events.ConnectionSchemaDiscoveredV1)
	if p.Digest != d.schema.Digest() || len(p.Tables) != 2 || p.Tables[0].Name != "lines" || !p.Tables[0].View {
		t.Fatalf("recorded %+v", p)
	}
}

func TestDiscoveryFailuresRecordNothing(t *testing.T) {
	for name, c := range map[string]struct {
		d       *fixedDiscoverer
		wantErr error
	}{
		"unreachable": {&fixedDiscoverer{res: commands.ProbeResult{Status: domain.TestFailed, Reason: "CONNECTION_REFUSED"}}, nil},
		"refused":     {&fixedDiscoverer{err: commands.ErrTargetRefused}, commands.ErrTargetRefused},
		"busy":        {&fixedDiscoverer{err: commands.ErrProbeBusy}, commands.ErrProbeBusy},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			id := f.mustCreate("orders")
			res, err := f.discoverHandler(f.store, c.d, 10).Handle(ctx(t), commands.DiscoverSchema{Scope: caller, ID: id, Origin: origin})
			if !errors.Is(err, c.wantErr) || res.Recorded {
				t.Fatalf("%+v %v", res, err)
			}
			if c.wantErr == nil && (res.Probe.Reason != "CONNECTION_REFUSED" || len(res.Schema.Tables) != 0) {
				t.Fatalf("failed discovery answered %+v", res)
			}
			f.assertHistory(id, "created")
		})
	}
}

func TestDiscoveryIsRateLimitedWithTheTests(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	d := &fixedDiscoverer{res: succeeded}
	h := f.discoverHandler(f.store, d, 1)
	if _, err := h.Handle(ctx(t), commands.DiscoverSchema{Scope: caller, ID: id, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	var limited *commands.RateLimitedError
	if _, err := h.Handle(ctx(t), commands.DiscoverSchema{Scope: caller, ID: id, Origin: origin}); !errors.As(err, &limited) || d.calls != 1 {
		t.Fatalf("second discovery within a minute: %v after %d calls", err, d.calls)
	}
}

// TestDiscoveryAfterAConcurrentChange: the schema is recorded on the
// connection as it is after another writer's change.
func TestDiscoveryAfterAConcurrentChange(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	d := &fixedDiscoverer{res: succeeded, schema: domain.Schema{Tables: []domain.Table{ordersTable}}}
	res, err := f.discoverHandler(f.racer(id, 1), d, 10).Handle(ctx(t), commands.DiscoverSchema{Scope: caller, ID: id, Origin: origin})
	if err != nil || !res.Recorded || res.Connection.Version() != 3 {
		t.Fatalf("%+v %v", res, err)
	}
	f.assertHistory(id, "created", "updated", "schema-discovered")
}

func TestDiscoveryOfADeletedConnection(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	if _, err := f.delete.Handle(ctx(t), commands.DeleteConnection{Scope: caller, ID: id, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	d := &fixedDiscoverer{res: succeeded}
	if _, err := f.discoverHandler(f.store, d, 10).Handle(ctx(t), commands.DiscoverSchema{Scope: caller, ID: id, Origin: origin}); !errors.Is(err, domain.ErrNotFound) || d.calls != 0 {
		t.Fatalf("%v after %d calls", err, d.calls)
	}
}

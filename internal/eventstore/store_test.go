package eventstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/readmodel"
)

type fixture struct {
	url    string
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	store  *Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv, err := devstack.StartNATS(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	f := fixtureOn(t, nc)
	f.url = srv.URL()
	return f
}

// fixtureOn makes the stream and a store over the connection nc.
func fixtureOn(t *testing.T, nc *nats.Conn) *fixture {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := EnsureStream(t.Context(), js, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewStore(nc, stream, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{nc: nc, js: js, stream: stream, store: store}
}

func createdEvent(id, name string) events.Event {
	return events.Event{
		Metadata: events.Metadata{EventID: uuid.NewString(), AggregateID: id, AggregateVersion: 1, OccurredAt: time.Now(), Actor: "test"},
		Payload: &events.ConnectionCreatedV1{Organization: "default", ConfigName: name, Type: "POSTGRESQL",
			Password: events.SealedSecret{Scheme: "dev", KeyName: "k", Ciphertext: "devseal:v1:x"}},
	}
}

func createAppend(id, name string) commands.Append {
	return commands.Append{
		AggregateID: id,
		Events:      []events.Event{createdEvent(id, name)},
		Claim:       &commands.NameClaim{Organization: "default", ConfigName: name},
	}
}

func (f *fixture) count(t *testing.T, filter string) uint64 {
	t.Helper()
	info, err := f.stream.Info(t.Context(), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func TestStreamIsAppendOnly(t *testing.T) {
	f := newFixture(t)
	if _, err := f.store.Append(t.Context(), createAppend(uuid.NewString(), "a-db")); err != nil {
		t.Fatal(err)
	}
	cfg := f.stream.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.MaxAge != 0 || cfg.Storage != jetstream.FileStorage || cfg.Duplicates == 0 {
		t.Fatalf("stream config %+v", cfg)
	}
	if err := f.stream.Purge(t.Context()); err == nil {
		t.Error("purge succeeded on the system of record")
	}
	if err := f.stream.DeleteMsg(t.Context(), 1); err == nil {
		t.Error("deleting a message succeeded on the system of record")
	}
}

func TestAppendClaimsTheNameAtomically(t *testing.T) {
	f := newFixture(t)
	first := uuid.NewString()
	seq, err := f.store.Append(t.Context(), createAppend(first, "Orders"))
	if err != nil || seq != 2 {
		t.Fatalf("seq %d err %v", seq, err)
	}
	_, err = f.store.Append(t.Context(), createAppend(uuid.NewString(), "orders"))
	if !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("second claim: %v", err)
	}
	if n := f.count(t, events.EventSubjectFilter); n != 1 {
		t.Fatalf("%d events", n)
	}
	history, last, err := f.store.Load(t.Context(), first)
	if err != nil || len(history) != 1 || last != 2 || history[0].AggregateID != first {
		t.Fatalf("load: %v %d %v", history, last, err)
	}
	if _, _, err := f.store.Load(t.Context(), uuid.NewString()); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("load of unknown: %v", err)
	}
}

func TestConcurrentClaimsOfOneNameLetOneWin(t *testing.T) {
	f := newFixture(t)
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.store.Append(context.Background(), createAppend(uuid.NewString(), "hot-name"))
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, domain.ErrNameTaken):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 || f.count(t, events.EventSubjectFilter) != 1 || f.count(t, events.NameSubjectFilter) != 1 {
		t.Fatalf("%d won; %d events; %d claims", won, f.count(t, events.EventSubjectFilter), f.count(t, events.NameSubjectFilter))
	}
}

// TestCrashBetweenClaimAndEvent injects the crash between the two writes of
// a create: a writer claims the name and dies before its event. The name is
// held for the grace period only (a slow writer may still be on its way),
// then another connection takes it over; no connection ever exists without
// its claim, and the dead writer's connection does not exist at all.
func TestCrashBetweenClaimAndEvent(t *testing.T) {
	f := newFixture(t)
	f.store.ClaimGrace = 300 * time.Millisecond
	var takeovers atomic.Int32
	f.store.Observe.Takeover = func() { takeovers.Add(1) }
	crashed := uuid.NewString()
	name := commands.NameClaim{Organization: "default", ConfigName: "fragile-db"}
	if _, err := f.store.claim(t.Context(), name, crashed); err != nil {
		t.Fatal(err)
	}
	// ... the writer dies here, before appending its event.

	other := uuid.NewString()
	if _, err := f.store.Append(t.Context(), createAppend(other, "FRAGILE-db")); !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("within the grace period the claim must hold: %v", err)
	}
	time.Sleep(f.store.ClaimGrace)
	if _, err := f.store.Append(t.Context(), createAppend(other, "FRAGILE-db")); err != nil {
		t.Fatalf("the name stayed blocked after the crash: %v", err)
	}
	if n := takeovers.Load(); n != 1 {
		t.Errorf("lease takeovers reported: %d, want 1", n)
	}
	if _, _, err := f.store.Load(t.Context(), crashed); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("the crashed connection exists: %v", err)
	}
	holder, _, err := f.store.nameHolder(t.Context(), name)
	if err != nil || holder != other {
		t.Fatalf("the name is held by %q (%v), want %s", holder, err, other)
	}
	// A live holder is never dispossessed, however old its claim.
	if _, err := f.store.Append(t.Context(), createAppend(uuid.NewString(), "fragile-db")); !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("a live holder lost its name: %v", err)
	}
}

// TestRetriedAppendIsStoredOnce: a writer whose commit reached the server but
// whose answer was lost retries the same events; they are stored once and the
// retry answers with the stored sequence.
func TestRetriedAppendIsStoredOnce(t *testing.T) {
	f := newFixture(t)
	id := uuid.NewString()
	a := createAppend(id, "retry-db")
	if _, err := f.store.Append(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	// The retry of the very same append: the name is held by the same
	// connection and the event id is within the duplicate window.
	seq, err := f.store.Append(t.Context(), a)
	if err != nil || seq != 2 {
		t.Fatalf("retry: seq %d, %v", seq, err)
	}
	if n := f.count(t, events.EventSubjectFilter); n != 1 {
		t.Fatalf("%d events after a retry", n)
	}
}

func TestAppendWithNATSDownIsUnavailable(t *testing.T) {
	f := newFixture(t)
	f.nc.Close()
	_, err := f.store.Append(t.Context(), createAppend(uuid.NewString(), "down-db"))
	if !domain.IsUnavailable(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestConsumeSurvivesAPanickingHandler(t *testing.T) {
	f := newFixture(t)
	if _, err := f.store.Append(t.Context(), createAppend(uuid.NewString(), "panicky")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	calls := 0
	done := make(chan error, 1)
	go func() {
		done <- Consume(ctx, f.js, "panic-test", 16, slog.New(slog.NewTextHandler(io.Discard, nil)),
			func(_ context.Context, batch []readmodel.Message) error {
				calls++
				if calls == 1 {
					panic("a bug")
				}
				cancel() // the retry of the same batch arrived: done
				return nil
			})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("%d calls, want the panicking one and its retry", calls)
	}
}

// TestLoadLeavesNoConsumerBehind: loading a connection with more than one
// event reads it through a consumer, which must not outlive the read (the
// server allows 1,000 per stream: an update-heavy minute used to exhaust it).
func TestLoadLeavesNoConsumerBehind(t *testing.T) {
	f := newFixture(t)
	id := uuid.NewString()
	if _, err := f.store.Append(t.Context(), createAppend(id, "loaded")); err != nil {
		t.Fatal(err)
	}
	tested := events.Event{
		Metadata: events.Metadata{EventID: uuid.NewString(), AggregateID: id, AggregateVersion: 2, OccurredAt: time.Now(), Actor: "test"},
		Payload:  &events.ConnectionTestedV1{Status: "success", LatencyMs: 1},
	}
	if _, err := f.store.Append(t.Context(), commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{tested}}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		history, _, err := f.store.Load(t.Context(), id)
		if err != nil || len(history) != 2 {
			t.Fatalf("load: %d events, %v", len(history), err)
		}
	}
	info, err := f.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Each load deletes its consumer; one the ordered consumer recreated as
	// it ended may linger until its inactivity threshold, never more.
	if info.State.Consumers > 1 {
		t.Fatalf("%d consumers left on the stream after 20 loads", info.State.Consumers)
	}
	deadline := time.Now().Add(15 * time.Second)
	for info.State.Consumers != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d consumers still on the stream 15 s after 20 loads", info.State.Consumers)
		}
		time.Sleep(100 * time.Millisecond)
		if info, err = f.stream.Info(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// Package eventstoretest is the contract every event store behind the
// commands ports (commands.EventStore, commands.History,
// commands.ConnectionLister) must meet, written once and run against each
// implementation: the NATS JetStream store and the in-memory store the
// command tests use. It is what lets a command test trust the in-memory
// store: it holds names, versions and histories exactly as the system of
// record does.
package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// Store is what the suite exercises: the ports the command handlers use.
type Store interface {
	commands.EventStore
	commands.History
	commands.ConnectionLister
}

// Harness is one fresh, empty store and the controls the suite needs to
// inject the failures the contract speaks of.
type Harness struct {
	Store Store
	// Grace is the store's claim lease: a claim younger than Grace holds
	// even when its holder does not use the name.
	Grace time.Duration
	// Advance moves the store's clock forward, so that the claims written so
	// far age past the grace period without the suite sleeping.
	Advance func(d time.Duration)
	// ClaimOnly writes a claim of the name for aggregateID as Append does,
	// and nothing else: what a writer that dies between its claim and its
	// event leaves behind.
	ClaimOnly func(ctx context.Context, n commands.NameClaim, aggregateID string) error
}

// Run runs the contract against the stores newHarness returns, one fresh
// harness per subtest (it should register its own cleanup with t.Cleanup).
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"AppendCreatesAnAggregate", testAppendCreates},
		{"LoadOfAnUnknownAggregateIsNotFound", testLoadUnknown},
		{"HistoryIsOldestFirstWithIncreasingSequences", testHistoryOrder},
		{"AppendOfSeveralEvents", testSeveralEvents},
		{"EmptyAppendIsRefused", testEmptyAppend},
		{"ExpectedVersionIsChecked", testExpectedVersion},
		{"ExpectedVersionOfAnUnknownAggregateIsNotFound", testExpectedVersionUnknown},
		{"ConcurrentAppendsToOneAggregateLetOneWin", testConcurrentAppends},
		{"RetriedCreateIsStoredOnce", testRetriedCreate},
		{"RetriedUpdateIsAConcurrentChange", testRetriedUpdate},
		{"NameTakenByAnotherAggregate", testNameTaken},
		{"NamesArePerOrganization", testNamesPerOrganization},
		{"SameAggregateMayClaimItsNameAgain", testReclaim},
		{"RenameReleasesTheOldName", testRenameReleases},
		{"DeleteReleasesTheName", testDeleteReleases},
		{"ReleaseByAnotherAggregateIsIgnored", testReleaseByNonHolder},
		{"FailedAppendGivesItsClaimBack", testFailedAppendGivesBack},
		{"FailedAppendKeepsANameHeldBefore", testFailedAppendKeepsHeldName},
		{"ConcurrentCreatesOfOneNameLetOneWin", testConcurrentCreates},
		{"ConcurrentCreatesOfOneAggregateKeepItsName", testConcurrentSameAggregate},
		{"ConcurrentRenamesToOneNameLetOneWin", testConcurrentRenames},
		{"AbandonedClaimIsTakenOverAfterTheGrace", testAbandonedClaim},
		{"LostReleaseOfARenameIsRecognised", testLostRenameRelease},
		{"LostReleaseOfADeleteIsRecognised", testLostDeleteRelease},
		{"AggregateIDsListsEveryAggregateWithEvents", testAggregateIDs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newHarness(t))
		})
	}
}

// org is the organization the suite's connections belong to, as the domain
// records it.
const org = domain.DefaultOrganization

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func event(id string, version uint64, p events.Payload) events.Event {
	return events.Event{
		Metadata: events.Metadata{EventID: uuid.NewString(), AggregateID: id, AggregateVersion: version,
			OccurredAt: time.Date(2026, 12, 2, 12, 0, int(version), 0, time.UTC), Actor: "eventstoretest",
			RequestID: "req-" + id[:8]},
		Payload: p,
	}
}

func created(id, name string) events.Event {
	return event(id, 1, &events.ConnectionCreatedV1{Organization: org, ConfigName: name, ProductName: "suite",
		Type: "POSTGRESQL", Host: "db.example.com", Port: 5432, DatabaseName: "db", UserName: "u", Schema: "public",
		Password: events.SealedSecret{Scheme: "dev", KeyName: "k", Ciphertext: "devseal:v1:x"}})
}

func renamed(id string, version uint64, name string) events.Event {
	return event(id, version, &events.ConnectionUpdatedV1{Changed: []string{events.FieldConfigName}, ConfigName: &name})
}

func moved(id string, version uint64, host string) events.Event {
	return event(id, version, &events.ConnectionUpdatedV1{Changed: []string{events.FieldHost}, Host: &host})
}

func deleted(id string, version uint64, name string) events.Event {
	return event(id, version, &events.ConnectionDeletedV1{ConfigName: name})
}

func tested(id string, version uint64) events.Event {
	return event(id, version, &events.ConnectionTestedV1{Status: domain.TestSucceeded, LatencyMs: 3})
}

func claim(name string) *commands.NameClaim {
	return &commands.NameClaim{Organization: org, ConfigName: name}
}

// create appends a new aggregate holding name and returns its id and the
// sequence of its event.
func create(t *testing.T, s Store, name string) (string, uint64) {
	t.Helper()
	id := uuid.NewString()
	seq, err := s.Append(ctx(t), commands.Append{AggregateID: id, Events: []events.Event{created(id, name)}, Claim: claim(name)})
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	if seq == 0 {
		t.Fatalf("create %q answered sequence 0", name)
	}
	return id, seq
}

// mustAppend appends and fails the test on an error.
func mustAppend(t *testing.T, s Store, a commands.Append) uint64 {
	t.Helper()
	seq, err := s.Append(ctx(t), a)
	if err != nil {
		t.Fatalf("append to %s at version %d: %v", a.AggregateID, a.ExpectedVersion, err)
	}
	return seq
}

// tryCreate attempts a create of name by a new aggregate.
func tryCreate(t *testing.T, s Store, name string) (string, error) {
	t.Helper()
	id := uuid.NewString()
	_, err := s.Append(ctx(t), commands.Append{AggregateID: id, Events: []events.Event{created(id, name)}, Claim: claim(name)})
	return id, err
}

// assertFree fails unless a new aggregate can take name.
func assertFree(t *testing.T, s Store, name string) {
	t.Helper()
	if _, err := tryCreate(t, s, name); err != nil {
		t.Fatalf("name %q should be free: %v", name, err)
	}
}

// assertTaken fails unless a new aggregate is refused name, and checks the
// refused aggregate was not stored.
func assertTaken(t *testing.T, s Store, name string) {
	t.Helper()
	id, err := tryCreate(t, s, name)
	if !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("create of taken name %q: err = %v, want domain.ErrNameTaken", name, err)
	}
	if _, _, err := s.Load(ctx(t), id); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("the aggregate refused name %q was stored (load: %v)", name, err)
	}
}

// history loads an aggregate and fails the test on an error.
func history(t *testing.T, s Store, id string) ([]events.Event, uint64) {
	t.Helper()
	evs, last, err := s.Load(ctx(t), id)
	if err != nil {
		t.Fatalf("load %s: %v", id, err)
	}
	return evs, last
}

// sameEvent compares what a store must keep of an event.
func sameEvent(got, want events.Event) error {
	switch {
	case got.EventID != want.EventID, got.AggregateID != want.AggregateID, got.AggregateVersion != want.AggregateVersion,
		!got.OccurredAt.Equal(want.OccurredAt), got.Actor != want.Actor, got.RequestID != want.RequestID,
		got.Payload == nil, got.Type() != want.Type():
		return fmt.Errorf("stored event %+v (%T), appended %+v (%T)", got.Metadata, got.Payload, want.Metadata, want.Payload)
	}
	g, _ := events.Encode(got)
	w, _ := events.Encode(want)
	if string(g) != string(w) {
		return fmt.Errorf("stored event encodes as %s, appended as %s", g, w)
	}
	return nil
}

func testAppendCreates(t *testing.T, h Harness) {
	id := uuid.NewString()
	e := created(id, "orders")
	seq := mustAppend(t, h.Store, commands.Append{AggregateID: id, Events: []events.Event{e}, Claim: claim("orders")})
	if seq == 0 {
		t.Fatal("Append answered sequence 0 for a stored event")
	}
	evs, last := history(t, h.Store, id)
	if len(evs) != 1 || last != seq {
		t.Fatalf("load: %d events, last sequence %d; want 1 event at %d", len(evs), last, seq)
	}
	if err := sameEvent(evs[0], e); err != nil {
		t.Fatal(err)
	}
}

func testLoadUnknown(t *testing.T, h Harness) {
	create(t, h.Store, "someone-else")
	evs, last, err := h.Store.Load(ctx(t), uuid.NewString())
	if !errors.Is(err, domain.ErrNotFound) || len(evs) != 0 || last != 0 {
		t.Fatalf("load of an unknown id: %d events, %d, %v; want domain.ErrNotFound", len(evs), last, err)
	}
}

func testHistoryOrder(t *testing.T, h Harness) {
	id := uuid.NewString()
	want := []events.Event{created(id, "ordered")}
	prev := mustAppend(t, h.Store, commands.Append{AggregateID: id, Events: want[:1], Claim: claim("ordered")})
	other, otherSeq := create(t, h.Store, "interleaved") // another aggregate's events come between
	if otherSeq <= prev {
		t.Fatalf("sequence %d after %d", otherSeq, prev)
	}
	prev = otherSeq
	for v := uint64(2); v <= 5; v++ {
		e := moved(id, v, fmt.Sprintf("host-%d.example.com", v))
		if v == 4 {
			e = tested(id, v)
		}
		seq := mustAppend(t, h.Store, commands.Append{AggregateID: id, ExpectedVersion: v - 1, Events: []events.Event{e}})
		if seq <= prev {
			t.Fatalf("append of version %d answered sequence %d after %d: sequences must increase", v, seq, prev)
		}
		prev = seq
		want = append(want, e)
	}
	evs, last := history(t, h.Store, id)
	if last != prev {
		t.Fatalf("load: last sequence %d, the last append answered %d", last, prev)
	}
	if len(evs) != len(want) {
		t.Fatalf("load: %d events, want %d", len(evs), len(want))
	}
	for i := range want {
		if err := sameEvent(evs[i], want[i]); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if evs, _ := history(t, h.Store, other); len(evs) != 1 || evs[0].AggregateID != other {
		t.Fatalf("the other aggregate's history: %+v", evs)
	}
}

func testSeveralEvents(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "batch")
	batch := []events.Event{moved(id, 2, "a.example.com"), tested(id, 3), moved(id, 4, "b.example.com")}
	seq := mustAppend(t, h.Store, commands.Append{AggregateID: id, ExpectedVersion: 1, Events: batch})
	evs, last := history(t, h.Store, id)
	if len(evs) != 4 || last != seq {
		t.Fatalf("load: %d events, last %d; want 4 events, last %d", len(evs), last, seq)
	}
	for i, e := range batch {
		if err := sameEvent(evs[i+1], e); err != nil {
			t.Fatalf("event %d: %v", i+1, err)
		}
	}
	// The next append expects the version of the batch's last event.
	if _, err := h.Store.Append(ctx(t), commands.Append{AggregateID: id, ExpectedVersion: 2, Events: []events.Event{tested(id, 3)}}); !errors.Is(err, domain.ErrConcurrentChange) {
		t.Fatalf("append expecting a version inside the batch: %v, want domain.ErrConcurrentChange", err)
	}
	mustAppend(t, h.Store, commands.Append{AggregateID: id, ExpectedVersion: 4, Events: []events.Event{tested(id, 5)}})
}

func testEmptyAppend(t *testing.T, h Harness) {
	id := uuid.NewString()
	if _, err := h.Store.Append(ctx(t), commands.Append{AggregateID: id, Claim: claim("empty")}); err == nil {
		t.Fatal("an append without events succeeded")
	}
	if _, _, err := h.Store.Load(ctx(t), id); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("load after an empty append: %v", err)
	}
	assertFree(t, h.Store, "empty")
}

func testExpectedVersion(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "versioned")
	for _, stale := range []uint64{0, 2, 7} {
		_, err := h.Store.Append(ctx(t), commands.Append{AggregateID: id, ExpectedVersion: stale, Events: []events.Event{moved(id, stale+1, "x.example.com")}})
		if !errors.Is(err, domain.ErrConcurrentChange) {
			t.Fatalf("append expecting version %d of an aggregate at 1: %v, want domain.ErrConcurrentChange", stale, err)
		}
	}
	mustAppend(t, h.Store, commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{moved(id, 2, "y.example.com")}})
	if _, err := h.Store.Append(ctx(t), commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{moved(id, 2, "z.example.com")}}); !errors.Is(err, domain.ErrConcurrentChange) {
		t.Fatalf("second append expecting version 1: %v, want domain.ErrConcurrentChange", err)
	}
	if evs, _ := history(t, h.Store, id); len(evs) != 2 {
		t.Fatalf("%d events after one good append and four refused ones", len(evs))
	}
}

func testExpectedVersionUnknown(t *testing.T, h Harness) {
	id := uuid.NewString()
	_, err := h.Store.Append(ctx(t), commands.Append{AggregateID: id, ExpectedVersion: 3, Events: []events.Event{moved(id, 4, "x.example.com")}})
	if !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("append expecting version 3 of an unknown aggregate: %v, want domain.ErrNotFound", err)
	}
}

// race runs the n appends next(i) returns at once and counts those that
// succeed; every other one must fail with loss.
func race(t *testing.T, s Store, n int, next func(i int) commands.Append, loss error) int {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	c := ctx(t)
	for i := range n {
		a := next(i)
		wg.Go(func() { _, errs[i] = s.Append(c, a) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, loss):
			t.Errorf("a losing append: %v, want %v", err, loss)
		}
	}
	return won
}

func testConcurrentAppends(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "contended")
	const n = 20
	won := race(t, h.Store, n, func(i int) commands.Append {
		return commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{moved(id, 2, fmt.Sprintf("h%d.example.com", i))}}
	}, domain.ErrConcurrentChange)
	if evs, _ := history(t, h.Store, id); won != 1 || len(evs) != 2 {
		t.Fatalf("%d of %d appends at version 1 won, %d events stored; want exactly one", won, n, len(evs))
	}
}

// testRetriedCreate: a writer whose append was stored but whose answer was
// lost sends the very same append again; it is stored once and the retry
// answers the stored sequence.
func testRetriedCreate(t *testing.T, h Harness) {
	id := uuid.NewString()
	a := commands.Append{AggregateID: id, Events: []events.Event{created(id, "retried")}, Claim: claim("retried")}
	seq := mustAppend(t, h.Store, a)
	again, err := h.Store.Append(ctx(t), a)
	if err != nil || again != seq {
		t.Fatalf("retry of a stored create: sequence %d, %v; want %d, nil", again, err, seq)
	}
	if evs, _ := history(t, h.Store, id); len(evs) != 1 {
		t.Fatalf("%d events after a retried create", len(evs))
	}
	assertTaken(t, h.Store, "retried")
}

// testRetriedUpdate: the retry of a stored update finds the aggregate past
// its expected version. It is refused as a concurrent change (the handler
// reloads and finds nothing left to do) and stored once.
func testRetriedUpdate(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "retried-update")
	a := commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{moved(id, 2, "new.example.com")}}
	mustAppend(t, h.Store, a)
	if _, err := h.Store.Append(ctx(t), a); !errors.Is(err, domain.ErrConcurrentChange) {
		t.Fatalf("retry of a stored update: %v, want domain.ErrConcurrentChange", err)
	}
	if evs, _ := history(t, h.Store, id); len(evs) != 2 {
		t.Fatalf("%d events after a retried update, want 2", len(evs))
	}
}

func testNameTaken(t *testing.T, h Harness) {
	create(t, h.Store, "Orders")
	for _, name := range []string{"Orders", "orders", "ORDERS", "oRdErS"} {
		assertTaken(t, h.Store, name)
	}
	assertFree(t, h.Store, "orders-2")
}

func testNamesPerOrganization(t *testing.T, h Harness) {
	for _, o := range []string{"org-a", "org-b"} {
		id := uuid.NewString()
		mustAppend(t, h.Store, commands.Append{AggregateID: id, Events: []events.Event{created(id, "shared")},
			Claim: &commands.NameClaim{Organization: o, ConfigName: "shared"}})
	}
	id := uuid.NewString()
	_, err := h.Store.Append(ctx(t), commands.Append{AggregateID: id, Events: []events.Event{created(id, "SHARED")},
		Claim: &commands.NameClaim{Organization: "org-b", ConfigName: "SHARED"}})
	if !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("a second claim within org-b: %v, want domain.ErrNameTaken", err)
	}
	assertFree(t, h.Store, "shared") // the default organization is a third one
}

func testReclaim(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "mine")
	// A case-only rename claims the name the aggregate already holds.
	mustAppend(t, h.Store, commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{renamed(id, 2, "MINE")}, Claim: claim("MINE")})
	if evs, _ := history(t, h.Store, id); len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	assertTaken(t, h.Store, "mine")
}

func testRenameReleases(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "before")
	mustAppend(t, h.Store, commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{renamed(id, 2, "after")},
		Claim: claim("after"), Release: claim("before")})
	assertTaken(t, h.Store, "after")
	assertFree(t, h.Store, "BEFORE")
	assertTaken(t, h.Store, "before")
}

func testDeleteReleases(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "retired")
	mustAppend(t, h.Store, commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{deleted(id, 2, "retired")}, Release: claim("retired")})
	assertFree(t, h.Store, "Retired")
	if evs, _ := history(t, h.Store, id); len(evs) != 2 || evs[1].Type() != events.TypeConnectionDeletedV1 {
		t.Fatalf("the deleted aggregate's history: %d events", len(evs))
	}
}

func testReleaseByNonHolder(t *testing.T, h Harness) {
	create(t, h.Store, "held")
	other, _ := create(t, h.Store, "other")
	mustAppend(t, h.Store, commands.Append{AggregateID: other, ExpectedVersion: 1, Events: []events.Event{tested(other, 2)}, Release: claim("held")})
	assertTaken(t, h.Store, "held")
}

// testFailedAppendGivesItsClaimBack: when the events are refused, the name
// the append claimed is free again at once.
func testFailedAppendGivesBack(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "taken-once")
	// A second create of the same aggregate with another name fails on the
	// aggregate's version after claiming the name.
	_, err := h.Store.Append(ctx(t), commands.Append{AggregateID: id, Events: []events.Event{created(id, "wanted")}, Claim: claim("wanted")})
	if !errors.Is(err, domain.ErrConcurrentChange) {
		t.Fatalf("create of an existing aggregate: %v, want domain.ErrConcurrentChange", err)
	}
	assertFree(t, h.Store, "wanted")
	// A rename from a stale version neither takes the new name nor frees
	// the old one.
	_, err = h.Store.Append(ctx(t), commands.Append{AggregateID: id, ExpectedVersion: 5, Events: []events.Event{renamed(id, 6, "elsewhere")},
		Claim: claim("elsewhere"), Release: claim("taken-once")})
	if !errors.Is(err, domain.ErrConcurrentChange) {
		t.Fatalf("rename from a stale version: %v, want domain.ErrConcurrentChange", err)
	}
	assertFree(t, h.Store, "elsewhere")
	assertTaken(t, h.Store, "taken-once")
}

// testFailedAppendKeepsHeldName: an append that claims a name its aggregate
// held before, and then fails, leaves the name held. Two concurrent retries
// of one idempotent create are this case: the loser must not free the
// winner's name.
func testFailedAppendKeepsHeldName(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "kept")
	// The losing retry: same aggregate and name, its own event ids.
	_, err := h.Store.Append(ctx(t), commands.Append{AggregateID: id, Events: []events.Event{created(id, "kept")}, Claim: claim("kept")})
	if !errors.Is(err, domain.ErrConcurrentChange) {
		t.Fatalf("second create of one aggregate: %v, want domain.ErrConcurrentChange", err)
	}
	assertTaken(t, h.Store, "kept")
}

func testConcurrentCreates(t *testing.T, h Harness) {
	const n = 50
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	c := ctx(t)
	for i := range n {
		ids[i] = uuid.NewString()
		name := "Hot-Name"
		if i%2 == 1 {
			name = "hot-name"
		}
		wg.Go(func() {
			_, errs[i] = h.Store.Append(c, commands.Append{AggregateID: ids[i], Events: []events.Event{created(ids[i], name)}, Claim: claim(name)})
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		_, _, lerr := h.Store.Load(c, ids[i])
		switch {
		case err == nil:
			won++
			if lerr != nil {
				t.Errorf("the winner %s cannot be loaded: %v", ids[i], lerr)
			}
		case !errors.Is(err, domain.ErrNameTaken):
			t.Errorf("a losing create: %v, want domain.ErrNameTaken", err)
		case !errors.Is(lerr, domain.ErrNotFound):
			t.Errorf("a losing create %s was stored (load: %v)", ids[i], lerr)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent creates of one name won, want exactly 1", won, n)
	}
	ids, err := h.Store.AggregateIDs(c)
	if err != nil || len(ids) != 1 {
		t.Fatalf("aggregates after the race: %v, %v; want one", ids, err)
	}
}

// testConcurrentSameAggregate: concurrent retries of one idempotent create
// append the same aggregate with the same name, each with its own event ids.
// One is stored; the losers must not give back the claim the winner's event
// relies on, whichever of them wrote it.
func testConcurrentSameAggregate(t *testing.T, h Harness) {
	for round := range 10 {
		id, name := uuid.NewString(), fmt.Sprintf("retried-%d", round)
		won := race(t, h.Store, 8, func(int) commands.Append {
			return commands.Append{AggregateID: id, Events: []events.Event{created(id, name)}, Claim: claim(name)}
		}, domain.ErrConcurrentChange)
		if evs, _ := history(t, h.Store, id); won != 1 || len(evs) != 1 {
			t.Fatalf("round %d: %d appends won, %d events stored; want 1 and 1", round, won, len(evs))
		}
		assertTaken(t, h.Store, name)
	}
}

func testConcurrentRenames(t *testing.T, h Harness) {
	const n = 10
	ids := make([]string, n)
	for i := range n {
		ids[i], _ = create(t, h.Store, fmt.Sprintf("origin-%d", i))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	c := ctx(t)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = h.Store.Append(c, commands.Append{AggregateID: ids[i], ExpectedVersion: 1,
				Events: []events.Event{renamed(ids[i], 2, "destination")}, Claim: claim("destination"), Release: claim(fmt.Sprintf("origin-%d", i))})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("renames %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, domain.ErrNameTaken):
			t.Errorf("a losing rename: %v, want domain.ErrNameTaken", err)
		default:
			if evs, _ := history(t, h.Store, ids[i]); len(evs) != 1 {
				t.Errorf("a losing rename stored its event (%d events)", len(evs))
			}
		}
	}
	if winner < 0 {
		t.Fatal("no rename won")
	}
	assertTaken(t, h.Store, "destination")
	for i := range n {
		name := fmt.Sprintf("origin-%d", i)
		if i == winner {
			assertFree(t, h.Store, name)
		} else {
			assertTaken(t, h.Store, name) // a lost rename keeps its old name
		}
	}
}

// testAbandonedClaim injects the crash between the two writes of a create:
// a writer claims the name and dies before its event. The name is held for
// the grace period (a slow writer may still be on its way), then another
// aggregate takes it over; a live holder is never dispossessed.
func testAbandonedClaim(t *testing.T, h Harness) {
	crashed := uuid.NewString()
	if err := h.ClaimOnly(ctx(t), *claim("fragile-db"), crashed); err != nil {
		t.Fatal(err)
	}
	assertTaken(t, h.Store, "FRAGILE-db")
	h.Advance(h.Grace / 2)
	assertTaken(t, h.Store, "fragile-db")
	h.Advance(h.Grace/2 + time.Second)
	id, err := tryCreate(t, h.Store, "Fragile-DB")
	if err != nil {
		t.Fatalf("the name stayed blocked past the grace period: %v", err)
	}
	if _, _, err := h.Store.Load(ctx(t), crashed); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("the crashed writer's aggregate exists: %v", err)
	}
	h.Advance(2 * h.Grace)
	assertTaken(t, h.Store, "fragile-db")
	if _, _, err := h.Store.Load(ctx(t), id); err != nil {
		t.Fatal(err)
	}
}

// testLostRenameRelease: a rename stored its event but died before
// releasing the old name; past the grace period the old name is recognised
// as unused, and the new one stays held.
func testLostRenameRelease(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "old-name")
	mustAppend(t, h.Store, commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{renamed(id, 2, "new-name")}, Claim: claim("new-name")})
	assertTaken(t, h.Store, "old-name") // within the grace period the claim holds
	h.Advance(h.Grace + time.Second)
	assertFree(t, h.Store, "old-name")
	assertTaken(t, h.Store, "new-name")
}

// testLostDeleteRelease: a delete stored its event but not its release.
func testLostDeleteRelease(t *testing.T, h Harness) {
	id, _ := create(t, h.Store, "gone")
	mustAppend(t, h.Store, commands.Append{AggregateID: id, ExpectedVersion: 1, Events: []events.Event{deleted(id, 2, "gone")}})
	assertTaken(t, h.Store, "gone")
	h.Advance(h.Grace + time.Second)
	assertFree(t, h.Store, "gone")
}

func testAggregateIDs(t *testing.T, h Harness) {
	ids, err := h.Store.AggregateIDs(ctx(t))
	if err != nil || len(ids) != 0 {
		t.Fatalf("an empty store lists %v, %v", ids, err)
	}
	var want []string
	for _, name := range []string{"c-one", "a-two", "b-three"} {
		id, _ := create(t, h.Store, name)
		want = append(want, id)
	}
	mustAppend(t, h.Store, commands.Append{AggregateID: want[1], ExpectedVersion: 1, Events: []events.Event{deleted(want[1], 2, "a-two")}, Release: claim("a-two")})
	if err := h.ClaimOnly(ctx(t), *claim("claim-only"), uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	ids, err = h.Store.AggregateIDs(ctx(t))
	if err != nil || !slices.Equal(ids, want) {
		t.Fatalf("AggregateIDs = %v, %v; want %s (sorted, deleted included, claims excluded)", ids, err, strings.Join(want, " "))
	}
}

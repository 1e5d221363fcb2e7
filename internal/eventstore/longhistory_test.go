package eventstore

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/events"
)

// TestLoadOfALongHistory: a connection with more events than one fetch
// brings (loadBatch) loads whole and in order; Load fetches in batches
// instead of a round trip per event.
func TestLoadOfALongHistory(t *testing.T) {
	f := newFixture(t)
	id := uuid.NewString()
	if _, err := f.store.Append(t.Context(), createAppend(id, "long-history")); err != nil {
		t.Fatal(err)
	}
	const n = 3*loadBatch + 17
	for v := uint64(1); v < n; v++ {
		e := events.Event{
			Metadata: events.Metadata{EventID: uuid.NewString(), AggregateID: id, AggregateVersion: v + 1, OccurredAt: time.Now(), Actor: "test"},
			Payload:  &events.ConnectionTestedV1{Status: "success", LatencyMs: int64(v)},
		}
		if _, err := f.store.Append(t.Context(), commands.Append{AggregateID: id, ExpectedVersion: v, Events: []events.Event{e}}); err != nil {
			t.Fatalf("append %d: %v", v+1, err)
		}
	}
	start := time.Now()
	evs, _, err := f.store.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Fatalf("loaded %d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		if e.AggregateVersion != uint64(i+1) {
			t.Fatalf("event %d has version %d", i, e.AggregateVersion)
		}
	}
	t.Logf("loaded %d events in %s", n, time.Since(start))
}

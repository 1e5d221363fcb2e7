package eventstore

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// TestStalledWriterIsFencedOut: a writer claims a name and stalls, past the
// grace period, before its event. Another writer judges the claim abandoned
// and takes the name over. When the stalled writer wakes up, the server must
// refuse its event: the name has exactly one owner. The stalled writer can
// still create its connection (same id, as a retry with the same
// Idempotency-Key would) under a free name.
func TestStalledWriterIsFencedOut(t *testing.T) {
	f := newFixture(t)
	f.store.ClaimGrace = 300 * time.Millisecond
	other, err := NewStore(f.nc, f.stream, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	other.ClaimGrace = f.store.ClaimGrace

	claimed, takenOver := make(chan struct{}), make(chan struct{})
	f.store.beforeEvent = func() {
		close(claimed)
		<-takenOver // stalled between the claim and the event
	}
	stalled, taker := uuid.NewString(), uuid.NewString()
	done := make(chan error, 1)
	go func() {
		_, err := f.store.Append(t.Context(), createAppend(stalled, "contested"))
		done <- err
	}()
	<-claimed
	if _, err := other.Append(t.Context(), createAppend(taker, "contested")); !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("within the grace period the claim must hold: %v", err)
	}
	time.Sleep(f.store.ClaimGrace) // the fault: the writer stays stalled past the grace period
	if _, err := other.Append(t.Context(), createAppend(taker, "contested")); err != nil {
		t.Fatalf("the abandoned-looking claim was not taken over: %v", err)
	}
	close(takenOver)
	if err := <-done; !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("the stalled writer's create answered %v, want the name taken", err)
	}
	f.store.beforeEvent = nil

	if _, _, err := f.store.Load(t.Context(), stalled); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("the stalled writer's event was stored after the takeover: %v", err)
	}
	if n := f.count(t, events.EventSubjectFilter); n != 1 {
		t.Fatalf("%d events for one name", n)
	}
	holder, _, err := f.store.nameHolder(t.Context(), commands.NameClaim{Organization: "default", ConfigName: "contested"})
	if err != nil || holder != taker {
		t.Fatalf("the name is held by %q (%v), want %s", holder, err, taker)
	}
	// The fenced connection id is not blocked for good.
	if _, err := f.store.Append(t.Context(), createAppend(stalled, "contested")); !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("retry under the taken name: %v", err)
	}
	if _, err := f.store.Append(t.Context(), createAppend(stalled, "elsewhere")); err != nil {
		t.Fatalf("retry under a free name: %v", err)
	}
}

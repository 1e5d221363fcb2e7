package readmodel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/internal/mongostore"
	"github.com/connreg/registry/readmodel"
)

func created(id, name string, version uint64) events.Event {
	return events.Event{
		Metadata: events.Metadata{EventID: uuid.NewString(), AggregateID: id, AggregateVersion: version,
			OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Actor: "test"},
		Payload: &events.ConnectionCreatedV1{Organization: "default", ConfigName: name, ProductName: "p",
			Type: "POSTGRESQL", Host: "h", Port: 5432, DatabaseName: "d", UserName: "u", Schema: "public",
			Password: events.SealedSecret{Scheme: "dev", KeyName: "k", Ciphertext: "devseal:v1:abc"},
			SSL:      &events.SSL{Mode: "require", Key: &events.SealedSecret{Ciphertext: "devseal:v1:key"}}},
	}
}

func message(t *testing.T, seq uint64, e events.Event) readmodel.Message {
	t.Helper()
	b, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return readmodel.Message{Sequence: seq, Subject: events.EventSubject(e.AggregateID), Data: b}
}

func TestApply(t *testing.T) {
	id := uuid.NewString()
	doc, applied, err := readmodel.Apply(nil, created(id, "Orders", 1), 7)
	if err != nil || !applied {
		t.Fatalf("%v %v", applied, err)
	}
	if doc.ConfigNameKey != "orders" || doc.Version != 1 || doc.Sequence != 7 || doc.SSL == nil || !doc.SSL.HasKey || doc.Deleted {
		t.Fatalf("doc = %+v", doc)
	}
	tests := []struct {
		name    string
		doc     *readmodel.Document
		event   events.Event
		applied bool
		err     error
	}{
		{"redelivered event changes nothing", doc, created(id, "Orders", 1), false, nil},
		{"event past a gap is refused", nil, created(id, "Orders", 2), false, readmodel.ErrGap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, applied, err := readmodel.Apply(tt.doc, tt.event, 9)
			if applied != tt.applied || !errors.Is(err, tt.err) || got != tt.doc {
				t.Fatalf("applied %v err %v doc %p want %p", applied, err, got, tt.doc)
			}
		})
	}
}

func TestProjectorIsIdempotentAndParksWhatItCannotApply(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := devstack.StartMongo(t.TempDir(), "", quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repo, err := mongostore.Open(ctx, m.URI(), "test", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = repo.Close(context.Background()) })
	p, err := readmodel.NewProjector(repo, quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}

	a, b, c := uuid.NewString(), uuid.NewString(), uuid.NewString()
	batch := []readmodel.Message{
		message(t, 1, created(a, "a-db", 1)),
		{Sequence: 2, Subject: events.EventSubject("x"), Data: []byte("{not json")},
		message(t, 3, created(b, "b-db", 1)),
		message(t, 4, created(c, "c-db", 2)), // its version 1 never came
		message(t, 5, created(a, "a-db", 1)), // redelivered inside the batch
	}
	for round := range 2 { // the second round is a full redelivery
		if err := p.Project(ctx, batch); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		docs, err := repo.Documents(ctx, []string{a, b, c})
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != 2 || docs[a].Version != 1 || docs[a].Sequence != 1 || docs[b].Version != 1 {
			t.Fatalf("round %d: docs %+v", round, docs)
		}
		parked, err := repo.Parked(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(parked) != 2 || parked[0].Sequence != 2 || parked[1].Sequence != 4 ||
			!strings.Contains(parked[0].Reason, "malformed") || !strings.Contains(parked[1].Reason, "does not follow") {
			t.Fatalf("round %d: parked %+v", round, parked)
		}
	}
	if p.Projected() != 5 {
		t.Fatalf("projected %d", p.Projected())
	}
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer wcancel()
	if err := p.WaitFor(wctx, 6); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor past the end: %v", err)
	}
	if err := p.WaitFor(ctx, 5); err != nil {
		t.Fatal(err)
	}
	// A store outage is an error worth redelivering, not a parked event.
	m.Shutdown()
	octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
	defer ocancel()
	if err := p.Project(octx, []readmodel.Message{message(t, 6, created(uuid.NewString(), "d-db", 1))}); err == nil {
		t.Fatal("projecting into a stopped store succeeded")
	}
}

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
	"github.com/connreg/registry/internal/sqlitestore"
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

// projectorStore is a read-model store as this test drives it: the
// projector's port, its parked events, and a way to take it down.
type projectorStore struct {
	readmodel.Store
	parked func(ctx context.Context) ([]readmodel.Parked, error)
	stop   func()
}

func TestProjectorIsIdempotentAndParksWhatItCannotApply(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("mongostore on FerretDB", func(t *testing.T) {
		m, err := devstack.StartMongo(t.TempDir(), "", quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Shutdown)
		repo, err := mongostore.Open(t.Context(), m.URI(), "test", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = repo.Close(context.Background()) })
		testProjector(t, projectorStore{Store: repo, stop: m.Shutdown, parked: func(ctx context.Context) ([]readmodel.Parked, error) {
			ps, err := repo.Parked(ctx)
			out := make([]readmodel.Parked, 0, len(ps))
			for _, p := range ps {
				out = append(out, readmodel.Parked{Sequence: p.Sequence, Subject: p.Subject, Data: []byte(p.Data), Reason: p.Reason, ParkedAt: p.ParkedAt})
			}
			return out, err
		}})
	})
	t.Run("sqlitestore", func(t *testing.T) {
		repo, err := sqlitestore.Open(t.Context(), t.TempDir(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		testProjector(t, projectorStore{Store: repo, parked: repo.Parked, stop: func() { _ = repo.Close(context.Background()) }})
	})
}

func testProjector(t *testing.T, repo projectorStore) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
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
		parked, err := repo.parked(ctx)
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
	repo.stop()
	octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
	defer ocancel()
	if err := p.Project(octx, []readmodel.Message{message(t, 6, created(uuid.NewString(), "d-db", 1))}); err == nil {
		t.Fatal("projecting into a stopped store succeeded")
	}
}

func updated(id string, version uint64, md map[string]string) events.Event {
	e := created(id, "", version)
	e.Payload = &events.ConnectionUpdatedV1{Changed: []string{events.FieldMetadata}, Metadata: md}
	return e
}

// TestProjectorParksWhatTheStoreRefuses: events whose document the store
// refuses for good (an invalid key, in a new document or in an update of an
// existing one) are parked with the store's reason, the rest of the batch is
// written, with the in-memory index, and the projector moves past them; a
// later event of the refused connection is parked as a gap, never retried
// forever.
func TestProjectorParksWhatTheStoreRefuses(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := devstack.StartMongo(t.TempDir(), "", quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
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
	idx := readmodel.NewIndex()
	p.KeepIndex(idx)

	good, bad, nul, later := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	poisoned := created(bad, "bad-db", 1)
	poisoned.Payload.(*events.ConnectionCreatedV1).Metadata = map[string]string{"$where": "v"}
	withNUL := created(nul, "nul-db", 1)
	withNUL.Payload.(*events.ConnectionCreatedV1).Metadata = map[string]string{"a\x00b": "v"}
	// Events of one connection in one batch fold into one document: only
	// the state a batch ends with must be storable. So each refused state
	// ends its batch here.
	batches := [][]readmodel.Message{
		{
			message(t, 1, created(good, "good-db", 1)),
			message(t, 2, poisoned),
			message(t, 3, withNUL),
			message(t, 4, created(later, "later-db", 1)),
			message(t, 5, updated(nul, 2, map[string]string{"a\x00b": "w"})), // folded with its refused creation
		},
		{
			message(t, 6, updated(bad, 2, map[string]string{"team": "x"})), // its creation was parked
			message(t, 7, updated(good, 2, map[string]string{"a.b": "v"})), // a refused replace
			message(t, 8, updated(later, 2, map[string]string{"team": "ok"})),
		},
		{message(t, 9, updated(good, 3, map[string]string{"team": "y"}))}, // after the refused version
	}
	for i, b := range batches {
		if err := p.Project(ctx, b); err != nil {
			t.Fatalf("batch %d with refused documents failed: %v", i, err)
		}
	}
	if p.Projected() != 9 {
		t.Fatalf("projected %d, want 9", p.Projected())
	}
	docs, err := repo.Documents(ctx, []string{good, bad, nul, later})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[good].Version != 1 || docs[later].Version != 2 || docs[later].Metadata["team"] != "ok" {
		t.Fatalf("documents %+v", docs)
	}
	if res, err := idx.List(ctx, readmodel.ListQuery{Limit: 10}); err != nil || res.Total != 2 {
		t.Fatalf("index lists %+v (%v), want the two stored documents", res, err)
	}
	parked, err := repo.Parked(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]string{2: "invalid key", 3: "null bytes", 5: "null bytes", 6: "does not follow", 7: "invalid key", 9: "does not follow"}
	if len(parked) != len(want) {
		t.Fatalf("parked %+v, want sequences %v", parked, want)
	}
	for _, pk := range parked {
		if !strings.Contains(pk.Reason, want[pk.Sequence]) {
			t.Errorf("parked %d: reason %q, want it to mention %q", pk.Sequence, pk.Reason, want[pk.Sequence])
		}
	}
}

// A batch redelivered after a store write that succeeded unseen (the answer
// lost, or an unordered bulk insert that met one duplicate and inserted the
// rest) finds its documents applied already and writes nothing; the index the
// lists read must still get them.
func TestProjectorIndexGetsDocumentsItFindsAlreadyStored(t *testing.T) {
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

	a, b := uuid.NewString(), uuid.NewString()
	// An earlier attempt stored a's creation, and its answer never came back.
	earlier, err := readmodel.NewProjector(repo, quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := earlier.Project(ctx, []readmodel.Message{message(t, 1, created(a, "a-db", 1))}); err != nil {
		t.Fatal(err)
	}
	idx := readmodel.NewIndex()
	p, err := readmodel.NewProjector(repo, quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	p.KeepIndex(idx)
	if err := p.Project(ctx, []readmodel.Message{message(t, 1, created(a, "a-db", 1)), message(t, 2, created(b, "b-db", 1))}); err != nil {
		t.Fatal(err)
	}
	res, err := idx.List(ctx, readmodel.ListQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 2 {
		t.Fatalf("the index lists %d documents, the store holds 2: %+v", res.Total, res.Items)
	}
}

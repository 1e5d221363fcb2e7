package readmodel_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/readmodel"
)

func deleted(id string, version uint64) events.Event {
	return events.Event{
		Metadata: events.Metadata{EventID: uuid.NewString(), AggregateID: id, AggregateVersion: version,
			OccurredAt: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), Actor: "test"},
		Payload: &events.ConnectionDeletedV1{},
	}
}

func TestFoldFoldsLikeTheProjectorAndCompareFindsEachDifference(t *testing.T) {
	a, b, c := uuid.NewString(), uuid.NewString(), uuid.NewString()
	f := readmodel.NewFold()
	for _, m := range []readmodel.Message{
		message(t, 1, created(a, "a-db", 1)),
		message(t, 2, created(b, "b-db", 1)),
		{Sequence: 3, Data: []byte("{not json")},
		message(t, 4, created(c, "c-db", 2)), // a gap: c stays without a document
		message(t, 5, deleted(b, 2)),
		message(t, 6, created(a, "a-db", 1)), // a redelivery changes nothing
	} {
		f.Add(m)
	}
	docs := f.Documents()
	if f.Events != 6 || f.Unapplied != 2 || f.Through != 6 || len(docs) != 2 ||
		docs[a].Version != 1 || docs[a].Sequence != 1 || !docs[b].Deleted || docs[b].Sequence != 5 {
		t.Fatalf("fold: %+v %+v", f, docs)
	}

	stored := map[string]*readmodel.Document{}
	for id, d := range docs {
		c := *d
		c.CreatedAt = c.CreatedAt.Local() // a BSON date read back: same instant, other zone
		stored[id] = &c
	}
	if diffs := readmodel.Compare(stored, docs); len(diffs) != 0 {
		t.Fatalf("equal read model: %v", diffs)
	}
	tampered := *stored[a]
	tampered.Host, tampered.Metadata = "other", map[string]string{"k": "v"}
	stored[a] = &tampered
	delete(stored, b)
	stored[c] = &readmodel.Document{ID: c, Version: 1}
	diffs := readmodel.Compare(stored, docs)
	got := map[string]string{}
	for _, d := range diffs {
		got[d.ID+" "+d.Field] = d.String()
	}
	want := []string{a + " host", a + " metadata", b + " document", c + " document"}
	if len(got) != len(want) {
		t.Fatalf("differences: %v", diffs)
	}
	for _, k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("missing difference %q in %v", k, diffs)
		}
	}
}

func TestIndexReplaceWithSwapsEverything(t *testing.T) {
	ctx := context.Background()
	old, fresh := readmodel.NewIndex(), readmodel.NewIndex()
	d1, _, _ := readmodel.Apply(nil, created(uuid.NewString(), "old-db", 1), 1)
	d2, _, _ := readmodel.Apply(nil, created(uuid.NewString(), "new-db", 1), 2)
	old.Put(d1)
	fresh.Put(d2)
	old.ReplaceWith(fresh)
	if _, err := old.Get(ctx, d1.ID); err == nil {
		t.Fatal("the old generation's document is still there")
	}
	res, err := old.List(ctx, readmodel.ListQuery{Limit: 10})
	if err != nil || res.Total != 1 || res.Items[0].ID != d2.ID {
		t.Fatalf("list after the switch: %+v %v", res, err)
	}
}

// memStore is a readmodel.Store whose guarded writes conflict on demand,
// as a collection half written by a crashed replay does.
type memStore struct {
	docs        map[string]*readmodel.Document
	conflict    bool
	overwritten int
}

func (m *memStore) Documents(context.Context, []string) (map[string]*readmodel.Document, error) {
	panic("a sole writer never reads its store")
}

func (m *memStore) Write(_ context.Context, ws []readmodel.Write) error {
	if m.conflict {
		return readmodel.ErrConflict
	}
	for _, w := range ws {
		m.docs[w.Doc.ID] = w.Doc
	}
	return nil
}

func (m *memStore) Park(context.Context, []readmodel.Parked) error { return nil }

func (m *memStore) Overwrite(_ context.Context, docs []*readmodel.Document) error {
	for _, d := range docs {
		m.docs[d.ID] = d
	}
	m.overwritten += len(docs)
	return nil
}

func TestSoleWriterReadsItsIndexAndOverwritesAHalfWrittenBatch(t *testing.T) {
	ctx := context.Background()
	store := &memStore{docs: map[string]*readmodel.Document{}}
	idx := readmodel.NewIndex()
	p, err := readmodel.NewProjector(readmodel.SoleWriter(store, store, idx), quietLog(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	p.KeepIndex(idx)
	a, b := uuid.NewString(), uuid.NewString()
	if err := p.Project(ctx, []readmodel.Message{message(t, 1, created(a, "a-db", 1))}); err != nil {
		t.Fatal(err)
	}
	// The crash wrote b but not the index: the redelivered batch conflicts
	// on b's insert and is overwritten whole.
	store.conflict = true
	err = p.Project(ctx, []readmodel.Message{message(t, 2, created(b, "b-db", 1)), message(t, 3, deleted(a, 2))})
	store.conflict = false
	if err != nil {
		t.Fatal(err)
	}
	if store.overwritten != 2 || !store.docs[a].Deleted || store.docs[b].Version != 1 || p.Projected() != 3 {
		t.Fatalf("store %+v projected %d", store, p.Projected())
	}
	if len(store.docs) != 2 {
		t.Fatalf("documents %v", store.docs)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

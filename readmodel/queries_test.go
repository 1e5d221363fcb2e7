package readmodel_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/readmodel"
)

// streamOf is a connection's history held in memory: the system of record's
// answer to Load, for the query side's fold path.
type streamOf map[string][]events.Event

func (s streamOf) Load(_ context.Context, id string) ([]events.Event, uint64, error) {
	if evs, ok := s[id]; ok {
		return evs, uint64(len(evs)), nil
	}
	return nil, 0, readmodel.ErrNotFound
}

type caughtUp struct{}

func (caughtUp) WaitFor(context.Context, uint64) error { return nil }

// TestQueriesKeepOrganizationsApart: a connection of another organization or
// product is not found, whether it is answered from the read model or folded
// from the stream (the read model lags behind this process's write, or has
// never heard of it), as of an instant, or as history.
func TestQueriesKeepOrganizationsApart(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	created := events.Event{
		Metadata: events.Metadata{EventID: "e1", AggregateID: "conn-a", AggregateVersion: 1, OccurredAt: at, Actor: "alice"},
		Payload: &events.ConnectionCreatedV1{Organization: "org-a", ConfigName: "orders", ProductName: "reports",
			Type: "POSTGRESQL", Host: "db", Port: 5432, DatabaseName: "d", UserName: "u",
			Password: events.SealedSecret{Scheme: "dev", KeyName: "k", Ciphertext: "c"}},
	}
	stream := streamOf{"conn-a": {created}}
	indexed := readmodel.NewIndex()
	doc, _, err := readmodel.Apply(nil, created, 1)
	if err != nil {
		t.Fatal(err)
	}
	indexed.Put(doc)

	owner := readmodel.Visibility{Organization: "org-a"}
	for _, tt := range []struct {
		name string
		vis  readmodel.Visibility
		ok   bool
	}{
		{"owner", owner, true},
		{"owner, its product", readmodel.Visibility{Organization: "org-a", Products: []string{"reports"}}, true},
		{"owner, another product", readmodel.Visibility{Organization: "org-a", Products: []string{"billing"}}, false},
		{"another organization", readmodel.Visibility{Organization: "org-b"}, false},
		{"no organization", readmodel.Visibility{}, false},
	} {
		for _, reader := range []struct {
			name string
			r    readmodel.Reader
		}{{"read model", indexed}, {"fold fallback", readmodel.NewIndex()}} {
			q, err := readmodel.NewQueries(reader.r, stream, caughtUp{}, slog.New(slog.DiscardHandler), 0)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			check := func(what string, err error) {
				t.Helper()
				if tt.ok && err != nil || !tt.ok && !errors.Is(err, readmodel.ErrNotFound) {
					t.Errorf("%s, %s, %s: %v", tt.name, reader.name, what, err)
				}
			}
			_, err = q.Get(ctx, "conn-a", tt.vis)
			check("Get", err)
			_, err = q.AsOf(ctx, "conn-a", at.Add(time.Second), tt.vis)
			check("AsOf", err)
			_, err = q.History(ctx, "conn-a", tt.vis, 1, 10)
			check("History", err)
		}
	}
	// A read model that lags this process's write folds the stream: still scoped.
	q, _ := readmodel.NewQueries(indexed, stream, caughtUp{}, slog.New(slog.DiscardHandler), 0)
	q.NoteWrite("conn-a", 2, 9)
	if _, err := q.Get(context.Background(), "conn-a", readmodel.Visibility{Organization: "org-b"}); !errors.Is(err, readmodel.ErrNotFound) {
		t.Fatalf("lagging read model, another organization: %v", err)
	}
	// Lists hold one organization.
	res, err := q.List(context.Background(), readmodel.ListQuery{Organization: "org-b", Limit: 10})
	if err != nil || res.Total != 0 {
		t.Fatalf("org-b lists %d (%v)", res.Total, err)
	}
	res, _ = q.List(context.Background(), readmodel.ListQuery{Organization: "org-a", Limit: 10})
	if res.Total != 1 {
		t.Fatalf("org-a lists %d", res.Total)
	}
}

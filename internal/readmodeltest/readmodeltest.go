// Package readmodeltest is the contract every read-model store (the embedded
// SQLite one, the MongoDB one) must meet, written once and run against each,
// so that the embedded default cannot drift from production. Lists are
// checked against readmodel.Index, the in-memory reference of what a list
// answers.
package readmodeltest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/readmodel"
)

// Store is what the suite exercises: the projector's port, the queries, and
// what replay and verify need of one generation's collection.
type Store interface {
	readmodel.Store
	Get(ctx context.Context, id string) (*readmodel.Document, error)
	List(ctx context.Context, q readmodel.ListQuery) (readmodel.ListResult, error)
	Each(ctx context.Context, fn func(*readmodel.Document)) error
	Overwrite(ctx context.Context, docs []*readmodel.Document) error
	Drop(ctx context.Context) error
	EnsureIndexes(ctx context.Context) error
	Active(ctx context.Context, consumer0 string) (readmodel.Generation, error)
	Lease(ctx context.Context, consumer0 string, active, pending int, owner string, until, now time.Time) error
	ReleaseLease(ctx context.Context, owner string) error
	Activate(ctx context.Context, from int, owner string, next readmodel.Generation, now time.Time) error
}

// Run runs the contract against the store open returns (an empty one per
// subtest; it registers its own cleanup with t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"WriteThenRead", testWriteThenRead},
		{"GuardedWrites", testGuardedWrites},
		{"ManyWritesInOneCall", testManyWrites},
		{"ListsMatchTheReference", testLists},
		{"CursorPagingIsComplete", testCursorPaging},
		{"MetadataFilterFollowsUpdates", testMetadataFollows},
		{"OverwriteAndDrop", testOverwriteAndDrop},
		{"ParkTwiceIsHarmless", testPark},
		{"GenerationLease", testGenerationLease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var base = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// doc is a document of version 1 whose fields vary with i.
func doc(i int) *readmodel.Document {
	types := []string{"POSTGRESQL", "MYSQL", "MONGODB"}
	products := []string{"Reports", "Fetcher"}
	name := fmt.Sprintf("Conn-%03d", (i*37)%1000)
	d := &readmodel.Document{
		ID:            fmt.Sprintf("0190a1b2-0000-7000-8000-%012d", i),
		Version:       1,
		Sequence:      uint64(i + 1),
		Organization:  "org",
		ConfigName:    name,
		ConfigNameKey: strings.ToLower(name),
		ProductName:   products[i%2],
		Type:          types[i%3],
		Host:          fmt.Sprintf("db%d.example.com", i%4),
		Port:          5432,
		DatabaseName:  fmt.Sprintf("db%d", i%5),
		UserName:      "user",
		Metadata:      map[string]string{"team": []string{"data", "platform"}[i%2], "tier": fmt.Sprint(i % 3)},
		CreatedAt:     base.Add(time.Duration(i/2) * time.Minute), // pairs share a time: ties break by id
		UpdatedAt:     base.Add(time.Duration(i*7%50) * time.Minute),
	}
	if i%5 == 0 {
		d.SSL = &readmodel.SSL{Mode: "require", HasCA: true}
	}
	switch i % 4 { // 0: never tested (unknown)
	case 1:
		d.Health = &readmodel.Health{Status: events.HealthHealthy, Since: base, CheckedAt: base}
	case 2:
		d.Health = &readmodel.Health{Status: events.HealthFailing, Reason: "TIMEOUT", Message: "timed out", Since: base, CheckedAt: base, ConsecutiveFailures: 3}
	case 3:
		d.Health = &readmodel.Health{CheckedAt: base, ConsecutiveFailures: 1} // tested, no status yet
	}
	return d
}

func insert(t *testing.T, s Store, docs ...*readmodel.Document) {
	t.Helper()
	writes := make([]readmodel.Write, 0, len(docs))
	for _, d := range docs {
		writes = append(writes, readmodel.Write{Doc: d})
	}
	if err := s.Write(t.Context(), writes); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func same(t *testing.T, what string, got, want *readmodel.Document) {
	t.Helper()
	if diff := readmodel.Compare(map[string]*readmodel.Document{want.ID: got}, map[string]*readmodel.Document{want.ID: want}); len(diff) > 0 {
		t.Errorf("%s: the store returned another document: %v", what, diff)
	}
}

func testWriteThenRead(t *testing.T, s Store) {
	ctx := t.Context()
	d := doc(1)
	d.LastTest = &readmodel.TestResult{Status: "failure", Reason: "TIMEOUT", LatencyMs: 12, At: base}
	d.Discovered = &readmodel.DiscoveredSchema{Digest: "d1", At: base, Tables: []readmodel.SchemaTable{
		{Name: "orders", Columns: []readmodel.SchemaColumn{{Name: "id", Type: "bigint", PrimaryKey: true}, {Name: "note", Type: "text", Nullable: true}}},
		{Name: "open_orders", View: true, Columns: []readmodel.SchemaColumn{}},
	}}
	insert(t, s, d, doc(2))
	got, err := s.Get(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "Get", got, d)
	if !reflect.DeepEqual(got.Discovered, d.Discovered) {
		t.Errorf("Get: discovered schema %+v, want %+v as written", got.Discovered, d.Discovered)
	}
	page, err := s.List(ctx, readmodel.ListQuery{Limit: 10})
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("List: %d items, %v", len(page.Items), err)
	}
	for _, item := range page.Items {
		if item.Discovered != nil {
			t.Errorf("List: %s carries its discovered schema; a page leaves it out", item.ID)
		}
	}
	if _, err := s.Get(ctx, "0190a1b2-0000-7000-8000-999999999999"); !errors.Is(err, readmodel.ErrNotFound) {
		t.Errorf("Get of an unknown id: %v, want ErrNotFound", err)
	}
	docs, err := s.Documents(ctx, []string{d.ID, doc(2).ID, doc(3).ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[doc(3).ID] != nil {
		t.Fatalf("Documents returned %d documents, want the 2 that exist", len(docs))
	}
	same(t, "Documents", docs[d.ID], d)
	n := 0
	if err := s.Each(ctx, func(*readmodel.Document) { n++ }); err != nil || n != 2 {
		t.Errorf("Each saw %d documents (%v), want 2", n, err)
	}
}

func testGuardedWrites(t *testing.T, s Store) {
	ctx := t.Context()
	d := doc(1)
	insert(t, s, d)
	if err := s.Write(ctx, []readmodel.Write{{Doc: d}}); !errors.Is(err, readmodel.ErrConflict) {
		t.Errorf("a second insert of one id: %v, want ErrConflict", err)
	}
	next := *d
	next.Version, next.Host, next.UpdatedAt = 2, "moved.example.com", base.Add(time.Hour)
	if err := s.Write(ctx, []readmodel.Write{{Doc: &next, Previous: 5}}); !errors.Is(err, readmodel.ErrConflict) {
		t.Errorf("a replace guarded by the wrong version: %v, want ErrConflict", err)
	}
	if got, _ := s.Get(ctx, d.ID); got == nil || got.Version != 1 {
		t.Fatalf("a refused replace changed the document: %+v", got)
	}
	if err := s.Write(ctx, []readmodel.Write{{Doc: &next, Previous: 1}}); err != nil {
		t.Fatalf("a replace guarded by the right version: %v", err)
	}
	got, err := s.Get(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "after the replace", got, &next)
	gone := next
	at := base.Add(2 * time.Hour)
	gone.Version, gone.Deleted, gone.DeletedAt, gone.UpdatedAt = 3, true, &at, at
	if err := s.Write(ctx, []readmodel.Write{{Doc: &gone, Previous: 2}}); err != nil {
		t.Fatal(err)
	}
	got, err = s.Get(ctx, d.ID)
	if err != nil {
		t.Fatalf("Get of a deleted document: %v (the store keeps it for its version)", err)
	}
	same(t, "deleted", got, &gone)
	res, err := s.List(ctx, readmodel.ListQuery{Limit: 10})
	if err != nil || res.Total != 0 || len(res.Items) != 0 {
		t.Errorf("a deleted document is listed: %+v %v", res, err)
	}
}

// testManyWrites writes more documents in one call, then replaces them all
// in one call: a store that splits the work must do it itself.
func testManyWrites(t *testing.T, s Store) {
	ctx := t.Context()
	const n = 300
	var docs []*readmodel.Document
	for i := range n {
		docs = append(docs, doc(i))
	}
	insert(t, s, docs...)
	writes := make([]readmodel.Write, 0, n)
	for _, d := range docs {
		next := *d
		next.Version, next.Port = 2, 6543
		writes = append(writes, readmodel.Write{Doc: &next, Previous: 1})
	}
	if err := s.Write(ctx, writes); err != nil {
		t.Fatal(err)
	}
	got, err := s.Documents(ctx, []string{docs[0].ID, docs[n-1].ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range got {
		if d.Version != 2 || d.Port != 6543 {
			t.Errorf("%s: version %d port %d after the replace", d.ID, d.Version, d.Port)
		}
	}
}

func reference(docs []*readmodel.Document) *readmodel.Index {
	x := readmodel.NewIndex()
	for _, d := range docs {
		x.Put(d)
	}
	return x
}

func ids(items []readmodel.Document) []string {
	out := make([]string, len(items))
	for i, d := range items {
		out[i] = d.ID
	}
	return out
}

func fill(t *testing.T, s Store, n int) []*readmodel.Document {
	t.Helper()
	var docs []*readmodel.Document
	for i := range n {
		docs = append(docs, doc(i))
	}
	insert(t, s, docs...)
	// Delete every seventh, so lists must leave them out.
	var writes []readmodel.Write
	for i := 0; i < n; i += 7 {
		gone := *docs[i]
		at := base.Add(time.Hour)
		gone.Version, gone.Deleted, gone.DeletedAt = 2, true, &at
		docs[i] = &gone
		writes = append(writes, readmodel.Write{Doc: &gone, Previous: 1})
	}
	if err := s.Write(t.Context(), writes); err != nil {
		t.Fatal(err)
	}
	return docs
}

func testLists(t *testing.T, s Store) {
	ctx := t.Context()
	docs := fill(t, s, 120)
	ref := reference(docs)
	from, before := base.Add(10*time.Minute), base.Add(40*time.Minute)
	queries := map[string]readmodel.ListQuery{
		"default":                 {Limit: 20},
		"second page":             {Limit: 20, Page: 2},
		"last page":               {Limit: 25, Page: 5},
		"product":                 {ProductName: "Reports", Limit: 100},
		"type asc":                {Type: "MYSQL", Ascending: true, Limit: 10},
		"host by name":            {Host: "db1.example.com", SortBy: readmodel.SortConfigName, Ascending: true, Limit: 15},
		"database by updated":     {DatabaseName: "db2", SortBy: readmodel.SortUpdatedAt, Limit: 15},
		"name prefix any case":    {ConfigNamePrefix: "CONN-1", SortBy: readmodel.SortConfigName, Limit: 100},
		"metadata":                {Metadata: map[string]string{"team": "data"}, Limit: 100},
		"two metadata keys":       {Metadata: map[string]string{"team": "platform", "tier": "2"}, Limit: 100},
		"metadata without match":  {Metadata: map[string]string{"team": "nobody"}, Limit: 10},
		"created range":           {CreatedFrom: &from, CreatedBefore: &before, Ascending: true, Limit: 100},
		"everything":              {ProductName: "Fetcher", Type: "POSTGRESQL", Metadata: map[string]string{"team": "platform"}, CreatedFrom: &from, Limit: 100},
		"updated desc small page": {SortBy: readmodel.SortUpdatedAt, Limit: 3, Page: 4},
		"healthy":                 {Health: events.HealthHealthy, Limit: 100},
		"failing by name":         {Health: events.HealthFailing, SortBy: readmodel.SortConfigName, Limit: 100},
		"health unknown":          {Health: events.HealthUnknown, Limit: 100},
		"product and health":      {ProductName: "Reports", Health: events.HealthFailing, Limit: 100},
	}
	for name, q := range queries {
		want, _ := ref.List(ctx, q)
		got, err := s.List(ctx, q)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got.Total != want.Total || !slices.Equal(ids(got.Items), ids(want.Items)) {
			t.Errorf("%s: total %d items %v, want total %d items %v", name, got.Total, ids(got.Items), want.Total, ids(want.Items))
		}
	}
}

func testCursorPaging(t *testing.T, s Store) {
	ctx := t.Context()
	docs := fill(t, s, 90)
	ref := reference(docs)
	for _, sortBy := range []string{readmodel.SortCreatedAt, readmodel.SortUpdatedAt, readmodel.SortConfigName} {
		for _, asc := range []bool{true, false} {
			all, _ := ref.List(ctx, readmodel.ListQuery{SortBy: sortBy, Ascending: asc, Limit: 1000})
			var seen []string
			q := readmodel.ListQuery{SortBy: sortBy, Ascending: asc, Limit: 7}
			for range 100 {
				page, err := s.List(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				seen = append(seen, ids(page.Items)...)
				if len(page.Items) < q.Limit {
					break
				}
				c := readmodel.CursorOf(&page.Items[len(page.Items)-1], sortBy)
				q.After = &c
			}
			if !slices.Equal(seen, ids(all.Items)) {
				t.Errorf("sort %s asc=%t: cursor pages gave %d ids, want the %d of the whole list in order", sortBy, asc, len(seen), len(all.Items))
			}
		}
	}
}

func testMetadataFollows(t *testing.T, s Store) {
	ctx := t.Context()
	d := doc(1) // team platform
	insert(t, s, d)
	next := *d
	next.Version, next.Metadata = 2, map[string]string{"team": "security"}
	if err := s.Write(ctx, []readmodel.Write{{Doc: &next, Previous: 1}}); err != nil {
		t.Fatal(err)
	}
	for value, want := range map[string]int64{"platform": 0, "security": 1} {
		res, err := s.List(ctx, readmodel.ListQuery{Metadata: map[string]string{"team": value}, Limit: 10})
		if err != nil || res.Total != want {
			t.Errorf("metadata.team=%s: total %d (%v), want %d", value, res.Total, err, want)
		}
	}
	none := next
	none.Version, none.Metadata = 3, nil
	if err := s.Write(ctx, []readmodel.Write{{Doc: &none, Previous: 2}}); err != nil {
		t.Fatal(err)
	}
	if res, err := s.List(ctx, readmodel.ListQuery{Metadata: map[string]string{"team": "security"}, Limit: 10}); err != nil || res.Total != 0 {
		t.Errorf("metadata removed, still listed by it: total %d (%v)", res.Total, err)
	}
}

func testOverwriteAndDrop(t *testing.T, s Store) {
	ctx := t.Context()
	d := doc(3)
	insert(t, s, d)
	older := *d
	older.Version, older.Host = 1, "overwritten.example.com"
	fresh := doc(4)
	if err := s.Overwrite(ctx, []*readmodel.Document{&older, fresh}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, d.ID)
	if err != nil || got.Host != "overwritten.example.com" {
		t.Fatalf("Overwrite did not replace unguarded: %+v %v", got, err)
	}
	if _, err := s.Get(ctx, fresh.ID); err != nil {
		t.Fatalf("Overwrite did not insert a new document: %v", err)
	}
	if err := s.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := s.List(ctx, readmodel.ListQuery{Limit: 10}); err != nil || res.Total != 0 {
		t.Errorf("after Drop: total %d (%v), want an empty collection", res.Total, err)
	}
	insert(t, s, d) // usable again
}

func testPark(t *testing.T, s Store) {
	p := readmodel.Parked{Sequence: 42, Subject: "connections.events.x", Data: []byte("{}"), Reason: "bad", ParkedAt: base}
	for range 2 {
		if err := s.Park(t.Context(), []readmodel.Parked{p}); err != nil {
			t.Fatalf("parking (again): %v", err)
		}
	}
}

func testGenerationLease(t *testing.T, s Store) {
	ctx := t.Context()
	now := base
	g, err := s.Active(ctx, "consumer")
	if err != nil || g.Generation != 0 || g.Consumer != "consumer" || g.Collection == "" {
		t.Fatalf("Active with no record: %+v %v", g, err)
	}
	if err := s.Lease(ctx, "consumer", 0, 1, "a", now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := s.Lease(ctx, "consumer", 0, 1, "b", now.Add(time.Minute), now); !errors.Is(err, readmodel.ErrGenerationMoved) {
		t.Errorf("a second owner took a live lease: %v", err)
	}
	if err := s.Lease(ctx, "consumer", 0, 1, "a", now.Add(2*time.Minute), now); err != nil {
		t.Errorf("the owner could not renew: %v", err)
	}
	later := now.Add(3 * time.Minute)
	if err := s.Lease(ctx, "consumer", 0, 1, "b", later.Add(time.Minute), later); err != nil {
		t.Errorf("an expired lease was not taken over: %v", err)
	}
	g, _ = s.Active(ctx, "consumer")
	if g.Pending != 1 || g.PendingOwner != "b" {
		t.Errorf("after the takeover: %+v", g)
	}
	next := readmodel.Generation{Generation: 1, Collection: "connections_g1", Consumer: "consumer-g1"}
	if err := s.Activate(ctx, 0, "a", next, later); !errors.Is(err, readmodel.ErrGenerationMoved) {
		t.Errorf("a former owner activated: %v", err)
	}
	if err := s.ReleaseLease(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if g, _ = s.Active(ctx, "consumer"); g.Pending != 1 || g.PendingOwner != "" {
		t.Errorf("ReleaseLease must keep the pending generation and drop the owner: %+v", g)
	}
	if err := s.Lease(ctx, "consumer", 0, 1, "b", later.Add(time.Minute), later); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate(ctx, 0, "b", next, later); err != nil {
		t.Fatal(err)
	}
	g, err = s.Active(ctx, "consumer")
	if err != nil || g.Generation != 1 || g.Collection != "connections_g1" || g.Consumer != "consumer-g1" || g.Pending != 0 || g.PendingOwner != "" {
		t.Errorf("after Activate: %+v %v", g, err)
	}
	if err := s.Lease(ctx, "consumer", 0, 2, "c", later.Add(time.Minute), later); !errors.Is(err, readmodel.ErrGenerationMoved) {
		t.Errorf("a lease from a generation no longer active: %v", err)
	}
}

package readmodel_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/connreg/registry/readmodel"
)

func doc(i int, typ string, created time.Time) *readmodel.Document {
	return &readmodel.Document{
		ID: fmt.Sprintf("id-%05d", i), Version: 1, ConfigName: fmt.Sprintf("Name-%05d", i), ConfigNameKey: fmt.Sprintf("name-%05d", i),
		ProductName: "p", Type: typ, Host: "h", DatabaseName: "d", CreatedAt: created, UpdatedAt: created,
		Metadata: map[string]string{"team": fmt.Sprint(i % 3)},
	}
}

func TestIndexKeepsOrderFiltersAndVersions(t *testing.T) {
	idx := readmodel.NewIndex()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10 {
		typ := "POSTGRESQL"
		if i%2 == 1 {
			typ = "MYSQL"
		}
		idx.Put(doc(i, typ, base.Add(time.Duration(i)*time.Minute)))
	}
	ctx := context.Background()
	res, _ := idx.List(ctx, readmodel.ListQuery{SortBy: readmodel.SortCreatedAt, Limit: 3, Page: 1})
	if res.Total != 10 || len(res.Items) != 3 || res.Items[0].ID != "id-00009" || res.Items[2].ID != "id-00007" {
		t.Fatalf("newest first: %+v", res)
	}
	res, _ = idx.List(ctx, readmodel.ListQuery{SortBy: readmodel.SortCreatedAt, Limit: 3, Page: 2, Type: "MYSQL"})
	if res.Total != 5 || len(res.Items) != 2 || res.Items[0].ID != "id-00003" {
		t.Fatalf("filtered page 2: %+v", res)
	}
	cur := readmodel.CursorOf(&res.Items[0], readmodel.SortCreatedAt)
	res, _ = idx.List(ctx, readmodel.ListQuery{SortBy: readmodel.SortCreatedAt, Limit: 10, After: &cur, Type: "MYSQL"})
	if len(res.Items) != 1 || res.Items[0].ID != "id-00001" {
		t.Fatalf("after a cursor: %+v", res.Items)
	}
	res, _ = idx.List(ctx, readmodel.ListQuery{SortBy: readmodel.SortConfigName, Ascending: true, Limit: 2, ConfigNamePrefix: "NAME-0000", Metadata: map[string]string{"team": "1"}})
	if res.Total != 3 || res.Items[0].ID != "id-00001" || res.Items[1].ID != "id-00004" {
		t.Fatalf("prefix and metadata: %+v", res)
	}

	// An older state never replaces a newer one; an update moves the document
	// in the orders; a deletion removes it.
	newer := doc(0, "ORACLE", base)
	newer.Version, newer.UpdatedAt = 3, base.Add(time.Hour)
	idx.Put(newer)
	idx.Put(doc(0, "POSTGRESQL", base))
	if d, _ := idx.Get(ctx, "id-00000"); d.Type != "ORACLE" {
		t.Fatalf("an older state won: %+v", d)
	}
	res, _ = idx.List(ctx, readmodel.ListQuery{SortBy: readmodel.SortUpdatedAt, Limit: 1})
	if res.Items[0].ID != "id-00000" {
		t.Fatalf("updatedAt order: %+v", res.Items)
	}
	gone := doc(5, "MYSQL", base)
	gone.Version, gone.Deleted = 2, true
	idx.Put(gone)
	idx.Put(doc(5, "MYSQL", base)) // a late, older state must not resurrect it
	if _, err := idx.Get(ctx, "id-00005"); err == nil || idx.Len() != 9 {
		t.Fatalf("deleted document still listed: len %d", idx.Len())
	}
}

func BenchmarkIndexList100k(b *testing.B) {
	idx := readmodel.NewIndex()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	types := []string{"POSTGRESQL", "MYSQL", "MONGODB", "ORACLE", "SQL_SERVER"}
	for i := range 100_000 {
		idx.Put(doc(i, types[i%5], base.Add(time.Duration(i)*time.Second)))
	}
	ctx := context.Background()
	q := readmodel.ListQuery{SortBy: readmodel.SortCreatedAt, Limit: 20, Page: 3, Type: "MYSQL", Metadata: map[string]string{"team": "2"}}
	b.ResetTimer()
	for b.Loop() {
		if res, _ := idx.List(ctx, q); len(res.Items) != 20 {
			b.Fatal(len(res.Items))
		}
	}
}

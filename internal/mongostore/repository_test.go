package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/internal/mongostore"
	"github.com/connreg/registry/internal/readmodeltest"
	"github.com/connreg/registry/readmodel"
)

func openRepo(t *testing.T) *mongostore.Repository {
	t.Helper()
	m, err := devstack.StartMongo(t.TempDir(), "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Shutdown)
	repo, err := mongostore.Open(context.Background(), m.URI(), "test", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = repo.Close(context.Background()) })
	return repo
}

// TestManyGuardedReplacesInOneWrite: a batch of 150 updates, more than
// FerretDB on SQLite serves in one bulk command, is written in full.
func TestManyGuardedReplacesInOneWrite(t *testing.T) {
	repo := openRepo(t)
	ctx := context.Background()
	var writes []readmodel.Write
	for i := range 150 {
		writes = append(writes, readmodel.Write{Doc: &readmodel.Document{ID: fmt.Sprintf("id-%03d", i), Version: 1, Host: "a"}})
	}
	if err := repo.Write(ctx, writes); err != nil {
		t.Fatal(err)
	}
	for i := range writes {
		d := *writes[i].Doc
		d.Version, d.Host = 2, "b"
		writes[i] = readmodel.Write{Doc: &d, Previous: 1}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := repo.Write(wctx, writes); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, w := range writes {
		ids = append(ids, w.Doc.ID)
	}
	docs, err := repo.Documents(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if d := docs[id]; d == nil || d.Version != 2 || d.Host != "b" {
			t.Fatalf("%s = %+v", id, d)
		}
	}
	// A replace whose guard no longer holds is a conflict, not a silent loss.
	stale := *writes[0].Doc
	stale.Version = 3
	if err := repo.Write(ctx, []readmodel.Write{{Doc: &stale, Previous: 1}}); !errors.Is(err, readmodel.ErrConflict) {
		t.Fatalf("stale guard: %v", err)
	}
}

// TestNoDeadIndexesOnFerretDB: FerretDB cannot use secondary indexes but
// pays for them on every insert, so none is created there.
func TestNoDeadIndexesOnFerretDB(t *testing.T) {
	repo := openRepo(t)
	if err := repo.Write(context.Background(), []readmodel.Write{{Doc: &readmodel.Document{ID: "one", Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	names, err := repo.IndexNames(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "_id_" {
		t.Fatalf("indexes on FerretDB: %v", names)
	}
}

// TestWriteRefusesUnstorableDocumentsAndWritesTheRest: a document whose
// metadata keys the store refuses for good ('$' prefix, '.', NUL, invalid
// UTF-8) is reported by id in a *readmodel.RefusedError, and every other
// document of the same call, insert or replace, is written.
func TestWriteRefusesUnstorableDocumentsAndWritesTheRest(t *testing.T) {
	repo := openRepo(t)
	ctx := context.Background()
	bad := []string{"$where", "$", "a.b", ".", "a..b", "a\x00b", "k\xff"}
	writes := []readmodel.Write{{Doc: &readmodel.Document{ID: "fine", Version: 1}}}
	for i, k := range bad {
		writes = append(writes,
			readmodel.Write{Doc: &readmodel.Document{ID: fmt.Sprintf("good-%d", i), Version: 1}},
			readmodel.Write{Doc: &readmodel.Document{ID: fmt.Sprintf("bad-%d", i), Version: 1, Metadata: map[string]string{k: "v"}}})
	}
	checkRefused := func(err error, prefix string) {
		t.Helper()
		var refused *readmodel.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("Write = %v, want a *readmodel.RefusedError", err)
		}
		if errors.Is(err, readmodel.ErrConflict) {
			t.Errorf("Write = %v: a refusal is not a conflict", err)
		}
		for i := range bad {
			if _, ok := refused.Reasons[fmt.Sprintf("%s-%d", prefix, i)]; !ok {
				t.Errorf("%s-%d (key %q) not refused: %v", prefix, i, bad[i], refused.Reasons)
			}
		}
		if len(refused.Reasons) != len(bad) {
			t.Errorf("refused %v, want only the %d bad documents", refused.Reasons, len(bad))
		}
	}
	checkRefused(repo.Write(ctx, writes), "bad")
	ids := make([]string, 0, len(bad))
	for i := range bad {
		ids = append(ids, fmt.Sprintf("good-%d", i))
	}
	docs, err := repo.Documents(ctx, ids)
	if err != nil || len(docs) != len(bad) {
		t.Fatalf("good documents stored: %d of %d (%v)", len(docs), len(bad), err)
	}
	// The same through guarded replaces: the good documents gain a bad key.
	var replaces []readmodel.Write
	for i, k := range bad {
		d := *docs[fmt.Sprintf("good-%d", i)]
		d.Version, d.Metadata = 2, map[string]string{k: "v"}
		replaces = append(replaces, readmodel.Write{Doc: &d, Previous: 1})
		if i == 0 {
			// A clean replace after a refused one is written all the same.
			replaces = append(replaces, readmodel.Write{Doc: &readmodel.Document{ID: "fine", Version: 2, Host: "h2"}, Previous: 1})
		}
	}
	other := &readmodel.Document{ID: "other", Version: 1}
	replaces = append(replaces, readmodel.Write{Doc: other})
	checkRefused(repo.Write(ctx, replaces), "good")
	if d, err := repo.Documents(ctx, []string{"other", "good-0", "fine"}); err != nil || d["other"] == nil ||
		d["good-0"].Version != 1 || d["fine"].Version != 2 || d["fine"].Host != "h2" {
		t.Fatalf("after refused replaces: %v %v", d, err)
	}
}

// TestDiscoveredSchemaIsStoredAndLeftOutOfLists: Get returns the latest
// schema as written; a list page leaves it out.
func TestDiscoveredSchemaIsStoredAndLeftOutOfLists(t *testing.T) {
	repo := openRepo(t)
	ctx := context.Background()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	schema := &readmodel.DiscoveredSchema{Digest: "d1", At: at, Tables: []readmodel.SchemaTable{
		{Name: "orders", Columns: []readmodel.SchemaColumn{{Name: "id", Type: "bigint", PrimaryKey: true}, {Name: "note", Type: "text", Nullable: true}}},
		{Name: "open_orders", View: true, Columns: []readmodel.SchemaColumn{}},
	}}
	doc := &readmodel.Document{ID: "s1", Version: 2, ConfigName: "orders-db", ConfigNameKey: "orders-db", CreatedAt: at, UpdatedAt: at, Discovered: schema}
	if err := repo.Write(ctx, []readmodel.Write{{Doc: doc}}); err != nil {
		t.Fatal(err)
	}
	got, err := repo.Get(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Discovered, schema) {
		t.Fatalf("stored %+v, read %+v", schema, got.Discovered)
	}
	page, err := repo.List(ctx, readmodel.ListQuery{SortBy: readmodel.SortCreatedAt, Page: 1, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].ID != "s1" || page.Items[0].Discovered != nil {
		t.Fatalf("list page %+v", page.Items)
	}
}

// TestContract runs the read-model store contract against the MongoDB adapter
// on embedded FerretDB.
func TestContract(t *testing.T) {
	readmodeltest.Run(t, func(t *testing.T) readmodeltest.Store { return openRepo(t) })
}

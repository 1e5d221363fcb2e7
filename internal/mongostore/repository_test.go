package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/internal/mongostore"
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

package sqlitestore_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/connreg/registry/internal/readmodeltest"
	"github.com/connreg/registry/internal/sqlitestore"
	"github.com/connreg/registry/readmodel"
)

func open(t *testing.T) *sqlitestore.Repository {
	t.Helper()
	r, err := sqlitestore.Open(t.Context(), t.TempDir(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(t.Context()) })
	return r
}

func TestContract(t *testing.T) {
	readmodeltest.Run(t, func(t *testing.T) readmodeltest.Store { return open(t) })
}

func TestContractOnAnotherGeneration(t *testing.T) {
	readmodeltest.Run(t, func(t *testing.T) readmodeltest.Store {
		r := open(t).WithCollection(sqlitestore.CollectionFor(3))
		if err := r.EnsureIndexes(t.Context()); err != nil {
			t.Fatal(err)
		}
		return r
	})
}

// TestTimedOutWriteStopsItsWork: a write that outlasts the timeout is
// interrupted inside SQLite, not left running on the one writer connection.
// A trigger makes the insert cost minutes of CPU; the write must come back
// with an error long before that, and the next write must not wait for it.
func TestTimedOutWriteStopsItsWork(t *testing.T) {
	r, err := sqlitestore.Open(t.Context(), t.TempDir(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(t.Context())
	db, err := sql.Open("sqlite", "file:"+r.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// 20,000² steps of a join per insert: minutes, even on a fast machine.
	if _, err := db.ExecContext(t.Context(), `CREATE TABLE burn (x INTEGER);
		WITH RECURSIVE c(x) AS (VALUES(1) UNION ALL SELECT x+1 FROM c WHERE x < 20000) INSERT INTO burn SELECT x FROM c;
		CREATE TRIGGER slow AFTER INSERT ON connections WHEN NEW.host = 'slow' BEGIN
			SELECT sum(a.x * b.x) FROM burn a, burn b; END;`); err != nil {
		t.Fatal(err)
	}
	slow := &readmodel.Document{ID: "0190a1b2-0000-7000-8000-000000000001", Version: 1, Host: "slow"}
	start := time.Now()
	err = r.Write(t.Context(), []readmodel.Write{{Doc: slow}})
	if err == nil {
		t.Fatal("a write slower than the timeout succeeded")
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("the timed-out write came back after %v: SQLite was not interrupted", took)
	}
	fast := &readmodel.Document{ID: "0190a1b2-0000-7000-8000-000000000002", Version: 1, Host: "fast"}
	if err := r.Write(t.Context(), []readmodel.Write{{Doc: fast}}); err != nil {
		t.Fatalf("the write after an interrupted one: %v", err)
	}
	if _, err := r.Get(t.Context(), slow.ID); err == nil {
		t.Error("the interrupted write was kept")
	}
}

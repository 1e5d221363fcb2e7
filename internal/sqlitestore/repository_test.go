package sqlitestore_test

import (
	"testing"
	"time"

	"github.com/connreg/registry/internal/readmodeltest"
	"github.com/connreg/registry/internal/sqlitestore"
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

package bootstrap_test

import (
	"net/http"
	"testing"

	"github.com/connreg/registry/internal/dbprobe/dbtest"
)

// startSQLServers starts a throwaway PostgreSQL and MariaDB whose
// certificates ca signs; both stop when the test ends.
func startSQLServers(t *testing.T) (ca *dbtest.CA, pg, my *dbtest.Server) {
	t.Helper()
	ca, err := dbtest.NewCA("registry test CA")
	if err != nil {
		t.Fatal(err)
	}
	if pg, err = dbtest.StartPostgres(ca); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	if my, err = dbtest.StartMariaDB(ca); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(my.Close)
	return ca, pg, my
}

// registerServer stores a connection of engine typ to s through the API,
// edit changing the body first, and returns its id.
func (h *harness) registerServer(name, typ string, s *dbtest.Server, edit func(map[string]any)) string {
	h.t.Helper()
	body := validBody(name)
	body["type"], body["host"], body["port"] = typ, s.Host, s.Port
	body["databaseName"], body["userName"], body["password"] = s.Database, s.User, s.Password
	if s.Schema != "" {
		body["schema"] = s.Schema
	}
	if edit != nil {
		edit(body)
	}
	res := h.create(body)
	if res.status != http.StatusCreated {
		h.t.Fatalf("%s: %d %s", name, res.status, res.body)
	}
	return res.json(h.t)["id"].(string)
}

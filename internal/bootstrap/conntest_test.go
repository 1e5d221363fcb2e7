package bootstrap_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/dbprobe/dbtest"
)

// TestConnectionTestsAgainstRealServers stores connections to a throwaway
// PostgreSQL and MariaDB and tests them through the API: success, the
// failure reasons, the recorded events, the rate limit and the SSRF guard.
func TestConnectionTestsAgainstRealServers(t *testing.T) {
	ca, pg, my := startSQLServers(t)
	h := startService(t, t.TempDir(), map[string]string{"TEST_RATE_LIMIT": "3", "TEST_TIMEOUT": "5s"})
	register := h.registerServer
	test := func(id string) response {
		return h.do(http.MethodPost, "/v1/management/connections/"+id+"/test", nil, nil)
	}
	expect := func(name, id, status, reason string) {
		t.Helper()
		res := test(id)
		if res.status != http.StatusOK {
			t.Fatalf("%s: %d %s", name, res.status, res.body)
		}
		got := res.json(t)
		if got["status"] != status || (reason != "" && got["reason"] != reason) || got["message"] == "" {
			t.Fatalf("%s: %s", name, res.body)
		}
		for _, secret := range []string{pg.Password, my.Password, "wrong-" + pg.Password} {
			if strings.Contains(string(res.body), secret) {
				t.Fatalf("%s: the answer holds a password", name)
			}
		}
	}

	pgOK := register("pg-ok", "POSTGRESQL", pg, nil)
	expect("postgres success", pgOK, "success", "")
	expect("postgres wrong password", register("pg-badpw", "POSTGRESQL", pg, func(b map[string]any) { b["password"] = "wrong-" + pg.Password }), "failure", "AUTH_FAILED")
	expect("postgres unknown database", register("pg-nodb", "POSTGRESQL", pg, func(b map[string]any) { b["databaseName"] = "missing_db" }), "failure", "DATABASE_NOT_FOUND")
	expect("postgres missing schema", register("pg-noschema", "POSTGRESQL", pg, func(b map[string]any) { b["schema"] = "missing_schema" }), "failure", "SCHEMA_NOT_FOUND")
	expect("postgres verify-full with the CA", register("pg-tls", "POSTGRESQL", pg, func(b map[string]any) {
		b["ssl"] = map[string]any{"mode": "verify-full", "ca": ca.PEM}
	}), "success", "")
	other, err := dbtest.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	expect("postgres verify-full with a wrong CA", register("pg-badca", "POSTGRESQL", pg, func(b map[string]any) {
		b["ssl"] = map[string]any{"mode": "verify-full", "ca": other.PEM}
	}), "failure", "TLS_FAILED")
	expect("mariadb success", register("my-ok", "MYSQL", my, nil), "success", "")
	expect("mariadb TLS with the CA", register("my-tls", "MYSQL", my, func(b map[string]any) {
		b["ssl"] = map[string]any{"mode": "true", "ca": ca.PEM}
	}), "success", "")
	expect("mariadb wrong password", register("my-badpw", "MYSQL", my, func(b map[string]any) { b["password"] = "nope" }), "failure", "AUTH_FAILED")
	closed := register("closed-port", "POSTGRESQL", pg, func(b map[string]any) { b["port"] = 1 })
	expect("closed port", closed, "failure", "CONNECTION_REFUSED")

	// Every attempt is in the history, the outcome without a secret, and
	// the first test moves the health from unknown to healthy.
	evs := h.streamMessages(events.EventSubject(pgOK))
	if len(evs) != 3 || !strings.Contains(string(evs[1].Data), `"status":"success"`) || !strings.Contains(string(evs[1].Data), `"origin":"api"`) ||
		!strings.Contains(string(evs[2].Data), events.TypeConnectionHealthChangedV1) || !strings.Contains(string(evs[2].Data), `"status":"healthy"`) {
		t.Fatalf("events of the tested connection: %d", len(evs))
	}
	// Rate limit: 3 a minute per connection.
	test(pgOK)
	test(pgOK)
	limited := test(pgOK)
	if limited.status != http.StatusTooManyRequests || limited.header.Get("Retry-After") == "" {
		t.Fatalf("fourth test in a minute: %d %s", limited.status, limited.body)
	}
	if n, _ := strconv.Atoi(limited.header.Get("Retry-After")); n < 1 || n > 60 {
		t.Fatalf("Retry-After %q", limited.header.Get("Retry-After"))
	}

	// Testing before saving stores nothing.
	before := len(h.streamMessages(""))
	body := validBody("unsaved")
	body["host"], body["port"], body["databaseName"], body["userName"], body["password"] = pg.Host, pg.Port, pg.Database, pg.User, pg.Password
	body["schema"] = pg.Schema
	res := h.do(http.MethodPost, "/v1/management/connections/test", body, map[string]string{"X-Product-Name": "p"})
	if res.status != http.StatusOK || res.json(t)["status"] != "success" {
		t.Fatalf("test before save: %d %s", res.status, res.body)
	}
	if after := len(h.streamMessages("")); after != before {
		t.Fatalf("testing an unsaved connection appended %d messages", after-before)
	}
	if strings.Contains(h.logs.String(), pg.Password) || strings.Contains(h.logs.String(), my.Password) {
		t.Fatal("a database password is in the logs")
	}
}

// TestSSRFGuardRefusesAndRecords runs the API with loopback denied: a
// stored connection to 127.0.0.1 is refused with FET-0414, and the refusal
// is recorded.
func TestSSRFGuardRefusesAndRecords(t *testing.T) {
	h := startService(t, t.TempDir(), map[string]string{"TEST_DENIED_NETWORKS": "127.0.0.0/8,::1/128"})
	for _, host := range []string{"127.0.0.1", "localhost"} {
		body := validBody("guarded-" + strings.ReplaceAll(host, ".", "-"))
		body["host"] = host
		res := h.create(body)
		if res.status != http.StatusCreated {
			t.Fatalf("%d %s", res.status, res.body)
		}
		id := res.json(t)["id"].(string)
		refused := h.do(http.MethodPost, "/v1/management/connections/"+id+"/test", nil, nil)
		if refused.status != http.StatusBadRequest || refused.json(t)["code"] != "FET-0414" {
			t.Fatalf("%s: %d %s", host, refused.status, refused.body)
		}
		evs := h.streamMessages(events.EventSubject(id))
		if len(evs) != 3 || !strings.Contains(string(evs[1].Data), "HOST_REFUSED") || !strings.Contains(string(evs[2].Data), `"status":"failing"`) {
			t.Fatalf("%s: the refusal is not recorded (%d events)", host, len(evs))
		}
	}
	if !strings.Contains(h.logs.String(), "refused by the network policy") {
		t.Fatal("the refusal is not logged")
	}
}

package bootstrap_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/dbprobe/dbtest"
)

// TestSchemaDiscoveryAndValidation runs the real API against a throwaway
// PostgreSQL and MariaDB: a schema discovered exactly, recorded only when it
// changes (with the change named in the history), validate-schema answered
// from the read model or by discovering, and an unreachable database.
func TestSchemaDiscoveryAndValidation(t *testing.T) {
	ctx := context.Background()
	_, pg, my := startSQLServers(t)
	if err := pg.Exec(ctx,
		"CREATE TABLE customers (id bigint PRIMARY KEY, name varchar(40) NOT NULL, email text)",
		"CREATE VIEW customer_names AS SELECT id, name FROM customers",
	); err != nil {
		t.Fatal(err)
	}
	if err := my.Exec(ctx, "CREATE TABLE items (sku VARCHAR(20) NOT NULL PRIMARY KEY, price DECIMAL(10,2))"); err != nil {
		t.Fatal(err)
	}
	h := startService(t, t.TempDir(), map[string]string{"TEST_RATE_LIMIT": "100", "TEST_TIMEOUT": "5s"})
	product := map[string]string{"X-Product-Name": "Reports"}

	register := h.registerServer
	schemaOf := func(id, query string) map[string]any {
		t.Helper()
		res := h.do(http.MethodGet, "/v1/management/connections/"+id+"/schema"+query, nil, nil)
		if res.status != http.StatusOK {
			t.Fatalf("schema: %d %s", res.status, res.body)
		}
		return res.json(t)
	}
	schemaEvents := func(id string) []events.Event {
		t.Helper()
		var out []events.Event
		for _, m := range h.streamMessages(events.EventSubject(id)) {
			e, err := events.Decode(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if e.Type() == events.TypeConnectionSchemaDiscoveredV1 {
				out = append(out, e)
			}
		}
		return out
	}
	pgID := register("pg-orders", "POSTGRESQL", pg, nil)
	myID := register("my-shop", "MYSQL", my, nil)

	// No schema yet: the first read discovers it, exactly.
	first := schemaOf(pgID, "")
	wantTables := `[
	  {"name":"customer_names","view":true,"fields":["id","name"],"columns":[
	    {"name":"id","type":"bigint","nullable":true,"primaryKey":false},
	    {"name":"name","type":"character varying(40)","nullable":true,"primaryKey":false}]},
	  {"name":"customers","view":false,"fields":["id","name","email"],"columns":[
	    {"name":"id","type":"bigint","nullable":false,"primaryKey":true},
	    {"name":"name","type":"character varying(40)","nullable":false,"primaryKey":false},
	    {"name":"email","type":"text","nullable":true,"primaryKey":false}]}]`
	var want any
	if err := json.Unmarshal([]byte(wantTables), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first["tables"], want) || first["id"] != pgID || first["configName"] != "pg-orders" ||
		first["type"] != "POSTGRESQL" || first["databaseName"] != pg.Database || first["discoveredAt"] == "" {
		t.Fatalf("first schema: %v", first)
	}
	if n := len(schemaEvents(pgID)); n != 1 {
		t.Fatalf("%d schema events after the first discovery", n)
	}
	// The next read answers from what was recorded; a refresh that finds
	// nothing new records nothing.
	if again := schemaOf(pgID, ""); again["discoveredAt"] != first["discoveredAt"] || !reflect.DeepEqual(again["tables"], want) {
		t.Fatalf("second read: %v", again)
	}
	schemaOf(pgID, "?refresh=true")
	if n := len(schemaEvents(pgID)); n != 1 {
		t.Fatalf("%d schema events after a discovery without change", n)
	}

	// A column added between two discoveries: one event, named in the history.
	if err := pg.Exec(ctx, "ALTER TABLE customers ADD COLUMN phone varchar(20)"); err != nil {
		t.Fatal(err)
	}
	refreshed := schemaOf(pgID, "?refresh=true")
	if !strings.Contains(string(mustJSON(t, refreshed["tables"])), `"phone"`) {
		t.Fatalf("refreshed schema lacks the new column: %v", refreshed["tables"])
	}
	if n := len(schemaEvents(pgID)); n != 2 {
		t.Fatalf("%d schema events after a column was added", n)
	}
	hist := h.do(http.MethodGet, "/v1/management/connections/"+pgID+"/history", nil, nil).json(t)
	items := hist["items"].([]any)
	last := items[len(items)-1].(map[string]any)
	if last["type"] != events.TypeConnectionSchemaDiscoveredV1 {
		t.Fatalf("last history entry: %v", last)
	}
	values := last["values"].(map[string]any)
	if !reflect.DeepEqual(values["added"], []any{"customers.phone"}) || values["removed"] != nil || !reflect.DeepEqual(last["changed"], []any{"customers.phone"}) {
		t.Fatalf("history entry of the added column: %v", last)
	}

	validate := func(mapped map[string]any) response {
		t.Helper()
		return h.do(http.MethodPost, "/v1/management/connections/validate-schema", map[string]any{"mappedFields": mapped}, product)
	}
	// A correct mapping; the MariaDB connection, never discovered, is discovered now.
	ok := validate(map[string]any{
		"pg-orders": map[string]any{"customers": []string{"id", "phone"}, "customer_names": []string{"name"}},
		"my-shop":   map[string]any{"items": []string{"sku", "price"}},
	})
	if ok.status != http.StatusOK || ok.json(t)["status"] != "success" || ok.json(t)["message"] == "" {
		t.Fatalf("valid mapping: %d %s", ok.status, ok.body)
	}
	if n := len(schemaEvents(myID)); n != 1 {
		t.Fatalf("%d schema events of the connection validate-schema discovered", n)
	}

	// One error per missing table or field, and for an unknown configName.
	bad := validate(map[string]any{
		"pg-orders":   map[string]any{"customers": []string{"id", "nope"}, "ghosts": []string{"x"}},
		"my-shop":     map[string]any{"items": []string{"sku", "colour"}},
		"no-such-cfg": map[string]any{"t": []string{"f"}},
	})
	body := bad.json(t)
	wantErrors := []any{
		map[string]any{"dataSourceId": "my-shop", "table": "items", "field": "colour", "type": "field"},
		map[string]any{"dataSourceId": "no-such-cfg", "type": "connection"},
		map[string]any{"dataSourceId": "pg-orders", "table": "customers", "field": "nope", "type": "field"},
		map[string]any{"dataSourceId": "pg-orders", "table": "ghosts", "type": "table"},
	}
	if bad.status != http.StatusUnprocessableEntity || body["status"] != "failure" || body["message"] == "" ||
		!reflect.DeepEqual(body["errors"], wantErrors) || body["code"] == "" || len(body["fields"].(map[string]any)) != 4 {
		t.Fatalf("invalid mapping: %d %s", bad.status, bad.body)
	}
	// Another product does not see these connections.
	other := h.do(http.MethodPost, "/v1/management/connections/validate-schema",
		map[string]any{"mappedFields": map[string]any{"pg-orders": map[string]any{"customers": []string{"id"}}}},
		map[string]string{"X-Product-Name": "elsewhere"})
	if other.status != http.StatusUnprocessableEntity || !strings.Contains(string(other.body), `"type":"connection"`) {
		t.Fatalf("other product: %d %s", other.status, other.body)
	}

	// A fresh schema is answered from the read model: a column dropped since
	// the last discovery still validates until SCHEMA_MAX_AGE or a refresh.
	if err := pg.Exec(ctx, "ALTER TABLE customers DROP COLUMN phone"); err != nil {
		t.Fatal(err)
	}
	if res := validate(map[string]any{"pg-orders": map[string]any{"customers": []string{"phone"}}}); res.status != http.StatusOK {
		t.Fatalf("fresh schema not served from the read model: %d %s", res.status, res.body)
	}
	schemaOf(pgID, "?refresh=true")
	if res := validate(map[string]any{"pg-orders": map[string]any{"customers": []string{"phone"}}}); res.status != http.StatusUnprocessableEntity {
		t.Fatalf("after a refresh the dropped column still validates: %d %s", res.status, res.body)
	}
	hist = h.do(http.MethodGet, "/v1/management/connections/"+pgID+"/history", nil, nil).json(t)
	items = hist["items"].([]any)
	if v := items[len(items)-1].(map[string]any)["values"].(map[string]any); !reflect.DeepEqual(v["removed"], []any{"customers.phone"}) {
		t.Fatalf("history entry of the dropped column: %v", v)
	}

	// An unreachable database: unreachable in validate-schema, the test's reason on /schema.
	port, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	closedID := register("pg-closed", "POSTGRESQL", pg, func(b map[string]any) { b["port"] = port })
	down := validate(map[string]any{"pg-closed": map[string]any{"customers": []string{"id"}}})
	if down.status != http.StatusUnprocessableEntity ||
		!reflect.DeepEqual(down.json(t)["errors"], []any{map[string]any{"dataSourceId": "pg-closed", "type": "unreachable"}}) {
		t.Fatalf("unreachable in validate-schema: %d %s", down.status, down.body)
	}
	res := h.do(http.MethodGet, "/v1/management/connections/"+closedID+"/schema", nil, nil)
	if res.status != http.StatusBadGateway || res.json(t)["fields"].(map[string]any)["reason"] != "CONNECTION_REFUSED" {
		t.Fatalf("schema of an unreachable database: %d %s", res.status, res.body)
	}
	if n := len(schemaEvents(closedID)); n != 0 {
		t.Fatalf("a failed discovery recorded %d events", n)
	}

	// Bad requests keep the error shape.
	for _, c := range []struct {
		method, path string
		body         any
		code         string
	}{
		{http.MethodGet, "/v1/management/connections/" + pgID + "/schema?refresh=maybe", nil, "FET-0405"},
		{http.MethodGet, "/v1/management/connections/not-a-uuid/schema", nil, "FET-0404"},
		{http.MethodPost, "/v1/management/connections/validate-schema", map[string]any{}, "FET-0402"},
		{http.MethodPost, "/v1/management/connections/validate-schema", map[string]any{"mappedFields": []string{"x"}}, "FET-0001"},
	} {
		res := h.do(c.method, c.path, c.body, nil)
		if res.status != http.StatusBadRequest || res.json(t)["code"] != c.code {
			t.Errorf("%s %s: %d %s, want 400 %s", c.method, c.path, res.status, res.body, c.code)
		}
	}
	// Every schema event meets the AsyncAPI document.
	cs := loadContract(t)
	checked := 0
	for _, m := range h.streamMessages(events.EventSubjectPrefix) {
		if cs.check(t, m.Subject, m.Header, m.Data) == events.TypeConnectionSchemaDiscoveredV1 {
			checked++
		}
		if strings.Contains(string(m.Data), pg.Password) || strings.Contains(string(m.Data), my.Password) {
			t.Errorf("%s carries a plaintext password", m.Subject)
		}
	}
	if checked != 4 { // pg-orders: first, phone added, phone dropped; my-shop: first
		t.Errorf("%d schema events checked against the AsyncAPI document, want 4", checked)
	}
	for _, secret := range []string{pg.Password, my.Password} {
		if strings.Contains(h.logs.String(), secret) {
			t.Fatal("a database password is in the logs")
		}
		h.mu.Lock()
		for _, b := range h.responses {
			if strings.Contains(string(b), secret) {
				t.Fatal("a database password is in a response")
			}
		}
		h.mu.Unlock()
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package bootstrap_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/connreg/registry/events"
)

func TestCreateAnswersTheContractAndReadsItsOwnWrite(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	body := validBody("production-db")
	body["type"] = "postgresql"
	body["ssl"] = map[string]any{"mode": "require"}
	res := h.create(body)
	if res.status != http.StatusCreated {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	got := res.json(t)
	id, _ := got["id"].(string)
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		t.Fatalf("id %q is not a UUIDv7", id)
	}
	if loc := res.header.Get("Location"); loc != "/v1/management/connections/"+id {
		t.Errorf("Location = %q", loc)
	}
	want := map[string]any{
		"configName": "production-db", "productName": "reports", "type": "POSTGRESQL", "host": "db.example.com",
		"port": float64(5432), "databaseName": "mydatabase", "userName": "dbuser", "schema": "public",
		"ssl": map[string]any{"mode": "require"}, "metadata": map[string]any{"team": "data"},
	}
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, ok := got["password"]; ok {
		t.Error("the response carries a password field")
	}
	if got["createdAt"] == "" || got["createdAt"] != got["updatedAt"] {
		t.Errorf("createdAt %v updatedAt %v", got["createdAt"], got["updatedAt"])
	}

	// Read-your-writes: the very next GET and list see it.
	one := h.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil)
	if one.status != http.StatusOK {
		t.Fatalf("GET after 201: %d %s", one.status, one.body)
	}
	if g := one.json(t); g["configName"] != "production-db" || g["createdAt"] != got["createdAt"] {
		t.Errorf("GET = %s", one.body)
	}
	list := h.do(http.MethodGet, "/v1/management/connections", nil, reports)
	if list.status != http.StatusOK || !strings.Contains(string(list.body), id) {
		t.Fatalf("list after 201: %d %s", list.status, list.body)
	}
	if l := list.json(t); l["total"] != float64(1) || l["page"] != float64(1) || l["limit"] != float64(10) {
		t.Errorf("list = %s", list.body)
	}

	// The event is on the connection's subject with its claim before it.
	msgs := h.streamMessages("")
	if len(msgs) != 2 || msgs[0].Subject != events.NameSubject("default", "production-db") || msgs[1].Subject != events.EventSubject(id) {
		t.Fatalf("stream holds %d messages: %+v", len(msgs), msgs)
	}
	ev, err := events.Decode(msgs[1].Data)
	if err != nil {
		t.Fatal(err)
	}
	created, ok := ev.Payload.(*events.ConnectionCreatedV1)
	if !ok || ev.AggregateID != id || ev.AggregateVersion != 1 || ev.Actor != "anonymous" || ev.RequestID == "" || ev.EventID == "" {
		t.Fatalf("event = %+v", ev)
	}
	if !strings.HasPrefix(created.Password.Ciphertext, "devseal:v1:") || created.Password.Scheme != "dev" {
		t.Errorf("sealed password = %+v", created.Password)
	}
}

func TestNamesAreUniqueCaseInsensitivelyAndAcrossProducts(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	if res := h.create(validBody("Orders-DB")); res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	res := h.do(http.MethodPost, "/v1/management/connections", validBody("orders-db"), map[string]string{"X-Product-Name": "other"})
	if res.status != http.StatusConflict || res.json(t)["code"] != "FET-1002" {
		t.Fatalf("%d %s", res.status, res.body)
	}
	if n := len(h.streamMessages(events.EventSubjectPrefix)); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func TestConcurrentCreatesOfOneNameYieldOneConnection(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	const n = 64
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// The same name in different cases: one organization, one owner.
			name := "race-db"
			if i%2 == 1 {
				name = "RACE-db"
			}
			statuses[i] = h.create(validBody(name)).status
		}()
	}
	close(start)
	wg.Wait()
	created, conflicts := 0, 0
	for _, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
			conflicts++
		default:
			t.Errorf("unexpected status %d", s)
		}
	}
	if created != 1 || conflicts != n-1 {
		t.Fatalf("%d created, %d conflicts", created, conflicts)
	}
	if evs := h.streamMessages(events.EventSubjectPrefix); len(evs) != 1 {
		t.Fatalf("%d events in the stream, want 1", len(evs))
	}
	if claims := h.streamMessages(events.NameSubjectPrefix); len(claims) != 1 {
		t.Fatalf("%d name claims in the stream, want 1", len(claims))
	}
	list := h.do(http.MethodGet, "/v1/management/connections", nil, reports)
	if list.json(t)["total"] != float64(1) {
		t.Fatalf("list: %s", list.body)
	}
}

func TestStateSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	h := startService(t, dir, nil)
	res := h.create(validBody("kept-db"))
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)
	eventually(t, "projection", func() bool { return h.svc.Projector.Projected() >= 2 })
	h.stop()

	h2 := startService(t, dir, nil)
	got := h2.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil)
	if got.status != http.StatusOK || got.json(t)["configName"] != "kept-db" {
		t.Fatalf("after restart: %d %s", got.status, got.body)
	}
	if again := h2.create(validBody("KEPT-db")); again.status != http.StatusConflict {
		t.Fatalf("name free after restart: %d %s", again.status, again.body)
	}
	// The read model kept the document; the projector did not re-apply anything.
	doc, err := h2.svc.ReadModel.Get(t.Context(), id)
	if err != nil || doc.Version != 1 {
		t.Fatalf("read model after restart: %+v %v", doc, err)
	}
	// Sealed credentials still open after the restart (the dev key persisted).
	if list := h2.do(http.MethodGet, "/v1/management/connections", nil, reports); list.json(t)["total"] != float64(1) {
		t.Fatalf("list after restart: %s", list.body)
	}
}

func TestUnknownAndMalformedIDs(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	res := h.do(http.MethodGet, "/v1/management/connections/"+uuid.NewString(), nil, nil)
	if res.status != http.StatusNotFound || res.json(t)["code"] != "FET-1001" {
		t.Fatalf("unknown id: %d %s", res.status, res.body)
	}
	res = h.do(http.MethodGet, "/v1/management/connections/not-a-uuid", nil, nil)
	if res.status != http.StatusBadRequest || res.json(t)["code"] != "FET-0404" {
		t.Fatalf("malformed id: %d %s", res.status, res.body)
	}
}

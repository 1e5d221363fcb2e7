package bootstrap_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/connreg/registry/events"
)

func (h *harness) mustCreate(name string) (id, etag string) {
	h.t.Helper()
	res := h.create(validBody(name))
	if res.status != http.StatusCreated {
		h.t.Fatalf("create %s: %d %s", name, res.status, res.body)
	}
	return res.json(h.t)["id"].(string), res.header.Get("ETag")
}

func (h *harness) patch(id string, body map[string]any, headers map[string]string) response {
	h.t.Helper()
	return h.do(http.MethodPatch, "/v1/management/connections/"+id, body, headers)
}

func TestPatchChangesOnlyWhatItSays(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	id, etag := h.mustCreate("patch-db")
	if etag != `"1"` {
		t.Fatalf("ETag %q", etag)
	}
	res := h.patch(id, map[string]any{"host": "db2.example.com", "port": 6432, "metadata": map[string]any{"tier": "gold"}, "password": "new-secret-pw"}, nil)
	if res.status != http.StatusOK || res.header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %d %s %v", res.status, res.body, res.header)
	}
	got := res.json(t)
	if got["host"] != "db2.example.com" || got["port"] != float64(6432) || got["configName"] != "patch-db" ||
		got["metadata"].(map[string]any)["tier"] != "gold" || got["metadata"].(map[string]any)["team"] != nil {
		t.Fatalf("after patch: %s", res.body)
	}
	// Read-your-writes after a patch.
	read := h.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil)
	if read.json(t)["host"] != "db2.example.com" || read.header.Get("ETag") != `"2"` {
		t.Fatalf("GET after PATCH: %s %v", read.body, read.header)
	}
	// A patch that changes nothing records nothing.
	same := h.patch(id, map[string]any{"host": "db2.example.com"}, nil)
	if same.status != http.StatusOK || same.header.Get("ETag") != `"2"` {
		t.Fatalf("no-op patch: %d %v", same.status, same.header)
	}
	evs := h.streamMessages(events.EventSubject(id))
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	ev, err := events.Decode(evs[1].Data)
	if err != nil {
		t.Fatal(err)
	}
	upd := ev.Payload.(*events.ConnectionUpdatedV1)
	if strings.Join(upd.Changed, ",") != "host,port,password,metadata" || upd.Password == nil || strings.Contains(string(evs[1].Data), "new-secret-pw") {
		t.Fatalf("update event: %s", evs[1].Data)
	}
	// productName cannot change; unknown fields and bad values are refused.
	for _, bad := range []map[string]any{{"productName": "x"}, {"port": 0}, {"ssl": map[string]any{"mode": "bogus"}}, {"nope": 1}} {
		if res := h.patch(id, bad, nil); res.status != http.StatusBadRequest {
			t.Errorf("patch %v: %d %s", bad, res.status, res.body)
		}
	}
}

func TestStaleIfMatchChangesNothing(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	id, _ := h.mustCreate("etag-db")
	if res := h.patch(id, map[string]any{"host": "a.example.com", "password": "moved-pw"}, map[string]string{"If-Match": `"1"`}); res.status != http.StatusOK {
		t.Fatalf("fresh If-Match: %d %s", res.status, res.body)
	}
	res := h.patch(id, map[string]any{"host": "b.example.com", "password": "moved-pw"}, map[string]string{"If-Match": `"1"`})
	if res.status != http.StatusPreconditionFailed || res.json(t)["code"] != "REG-0412" {
		t.Fatalf("stale If-Match: %d %s", res.status, res.body)
	}
	del := h.do(http.MethodDelete, "/v1/management/connections/"+id, nil, map[string]string{"If-Match": `"1"`})
	if del.status != http.StatusPreconditionFailed {
		t.Fatalf("stale delete: %d %s", del.status, del.body)
	}
	if got := h.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil); got.json(t)["host"] != "a.example.com" {
		t.Fatalf("after stale writes: %s", got.body)
	}
	if n := len(h.streamMessages(events.EventSubject(id))); n != 2 {
		t.Fatalf("%d events", n)
	}
}

func TestConcurrentPatchesWithoutIfMatchAllApply(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	id, _ := h.mustCreate("busy-db")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := h.patch(id, map[string]any{"metadata": map[string]any{"writer": string(rune('a' + i))}}, nil)
			if res.status != http.StatusOK {
				t.Errorf("patch %d: %d %s", i, res.status, res.body)
			}
		}()
	}
	wg.Wait()
	if n := len(h.streamMessages(events.EventSubject(id))); n != 5 {
		t.Fatalf("%d events, want the create and 4 updates", n)
	}
}

func TestDeleteFreesTheNameAndKeepsHistory(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	id, _ := h.mustCreate("retired-db")
	del := h.do(http.MethodDelete, "/v1/management/connections/"+id, nil, nil)
	if del.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", del.status, del.body)
	}
	for _, r := range []response{
		h.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil),
		h.patch(id, map[string]any{"host": "x.example.com"}, nil),
		h.do(http.MethodDelete, "/v1/management/connections/"+id, nil, nil),
	} {
		if r.status != http.StatusNotFound || r.json(t)["code"] != "FET-1001" {
			t.Fatalf("after delete: %d %s", r.status, r.body)
		}
	}
	list := h.do(http.MethodGet, "/v1/management/connections", nil, reports)
	if list.json(t)["total"] != float64(0) {
		t.Fatalf("list after delete: %s", list.body)
	}
	again, _ := h.mustCreate("RETIRED-db")
	if again == id {
		t.Fatal("the re-created connection reused the id")
	}
	if n := len(h.streamMessages(events.EventSubject(id))); n != 2 {
		t.Fatalf("history of the deleted connection: %d events", n)
	}
}

func TestRenameUnderConcurrentCreatesOfTheNewName(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	id, _ := h.mustCreate("old-name")
	const creators = 20
	var wg sync.WaitGroup
	statuses := make([]int, creators+1)
	start := make(chan struct{})
	for i := range creators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = h.create(validBody("new-name")).status
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		statuses[creators] = h.patch(id, map[string]any{"configName": "NEW-name"}, nil).status
	}()
	close(start)
	wg.Wait()
	winners := 0
	for _, s := range statuses {
		if s == http.StatusCreated || s == http.StatusOK {
			winners++
		} else if s != http.StatusConflict {
			t.Errorf("status %d", s)
		}
	}
	if winners != 1 {
		t.Fatalf("%d winners of the name: %v", winners, statuses)
	}
	claims := h.streamMessages(events.NameSubject("default", "new-name"))
	if len(claims) != 1 {
		t.Fatalf("%d claims of the new name", len(claims))
	}
	if statuses[creators] == http.StatusOK {
		// The rename won: the old name is free again.
		h.mustCreate("old-name")
	} else if res := h.create(validBody("old-name")); res.status != http.StatusConflict {
		t.Fatalf("the old name was released by a failed rename: %d", res.status)
	}
}

func TestIdempotentCreate(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	key := map[string]string{"X-Product-Name": "Reports", "Idempotency-Key": "req-42"}
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := h.do(http.MethodPost, "/v1/management/connections", validBody("idem-db"), key)
			if res.status != http.StatusCreated {
				t.Errorf("retry %d: %d %s", i, res.status, res.body)
				return
			}
			ids[i] = res.json(t)["id"].(string)
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("retries got different ids: %v", ids)
		}
	}
	if n := len(h.streamMessages(events.EventSubjectPrefix)); n != 1 {
		t.Fatalf("%d events for one idempotent create", n)
	}
	other := validBody("idem-db")
	other["host"] = "elsewhere.example.com"
	if res := h.do(http.MethodPost, "/v1/management/connections", other, key); res.status != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body: %d %s", res.status, res.body)
	}
}

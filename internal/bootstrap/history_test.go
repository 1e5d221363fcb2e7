package bootstrap_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestHistoryAndAsOf(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	id, _ := h.mustCreate("audited-db")
	time.Sleep(5 * time.Millisecond) // distinct event instants, for asOf
	beforePatch := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	if res := h.patch(id, map[string]any{"host": "moved.example.com", "password": "rotated-pw-123"}, map[string]string{"X-Request-Id": "req-patch-1"}); res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	time.Sleep(5 * time.Millisecond)
	beforeDelete := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	if res := h.do(http.MethodDelete, "/v1/management/connections/"+id, nil, nil); res.status != http.StatusNoContent {
		t.Fatalf("%d %s", res.status, res.body)
	}

	res := h.do(http.MethodGet, "/v1/management/connections/"+id+"/history", nil, nil)
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	body := res.json(t)
	items := body["items"].([]any)
	if body["total"] != float64(3) || len(items) != 3 {
		t.Fatalf("history: %s", res.body)
	}
	upd := items[1].(map[string]any)
	if upd["type"] != "connection.updated.v1" || upd["version"] != float64(2) || upd["actor"] != "anonymous" || upd["requestId"] != "req-patch-1" {
		t.Fatalf("update entry: %v", upd)
	}
	if changed := upd["changed"].([]any); len(changed) != 2 || changed[0] != "host" || changed[1] != "password" {
		t.Fatalf("changed: %v", changed)
	}
	if vals := upd["values"].(map[string]any); vals["host"] != "moved.example.com" || vals["password"] != nil {
		t.Fatalf("values: %v", vals)
	}
	if strings.Contains(string(res.body), "rotated-pw-123") || strings.Contains(string(res.body), "devseal:") {
		t.Fatal("the history shows a password or its ciphertext")
	}
	if items[2].(map[string]any)["type"] != "connection.deleted.v1" {
		t.Fatalf("last entry: %v", items[2])
	}
	if paged := h.do(http.MethodGet, "/v1/management/connections/"+id+"/history?page=2&limit=2", nil, nil).json(t); len(paged["items"].([]any)) != 1 {
		t.Fatalf("page 2: %v", paged)
	}

	asOf := func(at time.Time) response {
		return h.do(http.MethodGet, "/v1/management/connections/"+id+"?asOf="+url.QueryEscape(at.Format(time.RFC3339Nano)), nil, nil)
	}
	if r := asOf(beforePatch); r.status != http.StatusOK || r.json(t)["host"] != "db.example.com" {
		t.Fatalf("asOf before the patch: %d %s", r.status, r.body)
	}
	if r := asOf(beforeDelete); r.status != http.StatusOK || r.json(t)["host"] != "moved.example.com" {
		t.Fatalf("asOf before the delete: %d %s", r.status, r.body)
	}
	if r := asOf(time.Now()); r.status != http.StatusNotFound {
		t.Fatalf("asOf after the delete: %d %s", r.status, r.body)
	}
	if r := asOf(beforePatch.Add(-time.Hour)); r.status != http.StatusNotFound {
		t.Fatalf("asOf before the create: %d %s", r.status, r.body)
	}
	if r := h.do(http.MethodGet, "/v1/management/connections/"+id+"?asOf=yesterday", nil, nil); r.status != http.StatusBadRequest {
		t.Fatalf("bad asOf: %d", r.status)
	}
}

package bootstrap_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func (h *harness) list(query string, headers map[string]string) map[string]any {
	h.t.Helper()
	res := h.do(http.MethodGet, "/v1/management/connections?"+query, nil, headers)
	if res.status != http.StatusOK {
		h.t.Fatalf("list ?%s: %d %s", query, res.status, res.body)
	}
	return res.json(h.t)
}

func names(page map[string]any) []string {
	var out []string
	for _, it := range page["items"].([]any) {
		out = append(out, it.(map[string]any)["configName"].(string))
	}
	return out
}

func TestListFiltersSortsAndRefusesUnknownParameters(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	type conn struct {
		product, name, typ, host, db, team string
		port                               int
	}
	for _, c := range []conn{
		{"alpha", "orders-main", "POSTGRESQL", "pg1.example.com", "orders", "sales", 5432},
		{"alpha", "orders-replica", "POSTGRESQL", "pg2.example.com", "orders", "sales", 5432},
		{"alpha", "billing", "MYSQL", "my1.example.com", "billing", "finance", 3306},
		{"alpha", "Analytics", "MONGODB", "mongo.example.com", "events", "data", 27017},
		{"alpha", "legacy", "ORACLE", "ora.example.com", "erp", "finance", 1521},
		// A list is of one product (X-Product-Name is required): another
		// product's connections, even matching every filter, never appear.
		{"beta", "beta-orders", "POSTGRESQL", "pg1.example.com", "orders", "sales", 5432},
		{"beta", "beta-legacy", "ORACLE", "ora.example.com", "erp", "finance", 1521},
	} {
		body := validBody(c.name)
		body["type"], body["host"], body["databaseName"], body["port"] = c.typ, c.host, c.db, c.port
		body["metadata"] = map[string]any{"team": c.team}
		res := h.do(http.MethodPost, "/v1/management/connections", body, map[string]string{"X-Product-Name": c.product})
		if res.status != http.StatusCreated {
			t.Fatalf("%d %s", res.status, res.body)
		}
		time.Sleep(2 * time.Millisecond) // distinct createdAt
	}
	// An old connection is listed like a new one: no hidden date window.
	alpha := map[string]string{"X-Product-Name": "alpha"}
	tests := []struct {
		query   string
		headers map[string]string
		want    string // comma-joined names, in order
	}{
		{"", alpha, "legacy,Analytics,billing,orders-replica,orders-main"},
		{"sortOrder=asc", alpha, "orders-main,orders-replica,billing,Analytics,legacy"},
		{"sortBy=configName&sortOrder=asc", alpha, "Analytics,billing,legacy,orders-main,orders-replica"},
		{"sortBy=updatedAt", alpha, "legacy,Analytics,billing,orders-replica,orders-main"},
		{"type=postgresql", alpha, "orders-replica,orders-main"},
		{"host=my1.example.com", alpha, "billing"},
		{"databaseName=orders&sortOrder=asc", alpha, "orders-main,orders-replica"},
		{"configName=ORDERS-", alpha, "orders-replica,orders-main"},
		{"configName=an", alpha, "Analytics"},
		{"metadata.team=finance", alpha, "legacy,billing"},
		{"metadata.team=finance&type=MYSQL", alpha, "billing"},
		{"", map[string]string{"X-Product-Name": "BETA"}, "beta-legacy,beta-orders"},
		{"createdFrom=2000-01-01&createdTo=2000-12-31", alpha, ""},
		{"createdFrom=2000-01-01", alpha, "legacy,Analytics,billing,orders-replica,orders-main"},
		{"createdTo=" + url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)), alpha, "legacy,Analytics,billing,orders-replica,orders-main"},
		{"limit=2&page=2", alpha, "billing,orders-replica"},
		// Lerian's manager names the creation range startDate and endDate.
		{"startDate=2000-01-01&endDate=2000-12-31", alpha, ""},
		{"startDate=2000-01-01&endDate=" + time.Now().UTC().Format(time.DateOnly), alpha, "legacy,Analytics,billing,orders-replica,orders-main"},
		{"startDate=" + time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly), alpha, ""},
	}
	for _, tt := range tests {
		page := h.list(tt.query, tt.headers)
		if got := strings.Join(names(page), ","); got != tt.want {
			t.Errorf("?%s %v: got %q, want %q", tt.query, tt.headers, got, tt.want)
		}
		if want := len(strings.Split(tt.want, ",")); tt.want != "" && !strings.Contains(tt.query, "limit") && page["total"] != float64(want) {
			t.Errorf("?%s: total %v, want %d", tt.query, page["total"], want)
		}
	}
	for _, bad := range []struct{ query, code string }{
		{"bogus=1", "FET-0405"},
		{"type=DB2", "FET-0405"},
		{"sortBy=host", "FET-0405"},
		{"sortOrder=up", "FET-0405"},
		{"createdFrom=yesterday", "FET-0405"},
		{"limit=101", "FET-0406"},
		{"limit=0", "FET-0405"},
		{"page=0", "FET-0405"},
		{"cursor=garbage", "FET-0405"},
		{"endDate=tomorrow", "FET-0405"},
		{"startDate=2000-01-01&createdFrom=2000-01-01", "FET-0405"},
	} {
		res := h.do(http.MethodGet, "/v1/management/connections?"+bad.query, nil, alpha)
		if res.status != http.StatusBadRequest || res.json(t)["code"] != bad.code {
			t.Errorf("?%s: %d %s, want 400 %s", bad.query, res.status, res.body, bad.code)
		}
	}
	for _, h0 := range []map[string]string{nil, {"X-Product-Name": ""}, {"X-Product-Name": "a.b"}} {
		res := h.do(http.MethodGet, "/v1/management/connections", nil, h0)
		if body := res.json(t); res.status != http.StatusBadRequest || body["code"] != "FET-0403" || body["fields"].(map[string]any)["X-Product-Name"] == nil {
			t.Errorf("list with %v: %d %s, want 400 FET-0403 naming X-Product-Name", h0, res.status, res.body)
		}
	}
}

// TestCursorPagingIsStableUnderConcurrentInserts pages through 1,000
// connections while others are being created: no connection appears twice
// and none of those that existed at the start is missed.
func TestCursorPagingIsStableUnderConcurrentInserts(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	const n = 1000
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if res := h.create(validBody(fmt.Sprintf("page-%04d", i))); res.status != http.StatusCreated {
					t.Errorf("%d %s", res.status, res.body)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	// Paging is what is under test, not projection lag (slow under -race):
	// start once the read model holds every connection.
	eventually(t, "projection of the 1,000", func() bool { return h.liveDocuments() >= int64(n) })

	stop := make(chan struct{})
	inserted := make(chan struct{})
	go func() {
		defer close(inserted)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				h.create(validBody(fmt.Sprintf("late-%04d", i)))
			}
		}
	}()
	seen := map[string]bool{}
	pages := 0
	for _, order := range []string{"desc", "asc"} {
		clear(seen)
		cursor := ""
		for {
			q := "limit=37&sortOrder=" + order
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			page := h.list(q, map[string]string{"X-Product-Name": "reports"})
			pages++
			late := false
			for _, name := range names(page) {
				if seen[name] {
					t.Fatalf("%s appears twice (%s)", name, order)
				}
				seen[name] = true
				late = late || strings.HasPrefix(name, "late-")
			}
			next, _ := page["nextCursor"].(string)
			// Oldest first, the pages reach the connections created while
			// paging, which keep coming: every earlier one was seen by then.
			if next == "" || late && order == "asc" {
				break
			}
			if pages > 4*n {
				t.Fatal("paging does not end")
			}
			cursor = next
		}
		for i := range n {
			if name := fmt.Sprintf("page-%04d", i); !seen[name] {
				t.Fatalf("%s is missing from the pages (%s)", name, order)
			}
		}
	}
	close(stop)
	<-inserted
	if pages < 2*n/37 {
		t.Fatalf("only %d pages", pages)
	}
}

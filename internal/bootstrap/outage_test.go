package bootstrap_test

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/devstack"
)

func TestEventStoreDownGives503AndWritesNothing(t *testing.T) {
	natsDir := t.TempDir()
	n, err := devstack.StartNATS(natsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(n.URL())
	port, _ := strconv.Atoi(u.Port())
	h := startService(t, t.TempDir(), map[string]string{"NATS_URL": n.URL(), "STORE_TIMEOUT": "1s"})
	if res := h.create(validBody("before-outage")); res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}

	n.Shutdown()
	res := h.create(validBody("during-outage"))
	if res.status != http.StatusServiceUnavailable || res.json(t)["code"] != "REG-5031" || res.header.Get("Retry-After") == "" {
		t.Fatalf("create while NATS is down: %d %s", res.status, res.body)
	}

	n, err = devstack.StartNATS(natsDir, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	eventually(t, "reconnect", func() bool {
		return h.create(validBody("after-outage")).status == http.StatusCreated
	})
	if res := h.create(validBody("during-outage")); res.status != http.StatusCreated {
		t.Fatalf("the name of the failed create is not free: %d %s", res.status, res.body)
	}
	if evs := h.streamMessages(events.EventSubjectPrefix); len(evs) != 3 {
		t.Fatalf("%d events, want 3 (before, after, during-again)", len(evs))
	}
	// The projector came through the outage: the read model has all three.
	eventually(t, "projection after the outage", func() bool { return h.liveDocuments() == 3 })
}

func TestReadModelDownStillServesByIDFromTheStream(t *testing.T) {
	m := externalMongo(t)
	h := startService(t, t.TempDir(), map[string]string{"MONGO_URI": m.URI(), "STORE_TIMEOUT": "1s"})
	res := h.create(validBody("resilient-db"))
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)
	eventually(t, "projection", func() bool { return h.svc.Projector.Projected() >= 2 })

	m.Shutdown()
	got := h.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil)
	if got.status != http.StatusOK || got.json(t)["configName"] != "resilient-db" {
		t.Fatalf("GET by id with the read model down: %d %s", got.status, got.body)
	}
	// Lists come from the projector's in-memory index: they keep answering
	// with what was projected.
	list := h.do(http.MethodGet, "/v1/management/connections", nil, reports)
	if list.status != http.StatusOK || list.json(t)["total"] != float64(1) {
		t.Fatalf("list with the read model down: %d %s", list.status, list.body)
	}
	// Writes do not depend on the read model.
	if res := h.create(validBody("written-while-down")); res.status != http.StatusCreated {
		t.Fatalf("create with the read model down: %d %s", res.status, res.body)
	}
}

func TestProjectorInItsOwnProcessServesListsAfterWrites(t *testing.T) {
	n := externalNATS(t)
	m := externalMongo(t)
	env := map[string]string{"NATS_URL": n.URL(), "MONGO_URI": m.URI(), "PROJECTOR": "off"}
	h := startService(t, t.TempDir(), env)
	ctx, cancel := testContext(t)
	done := make(chan error, 1)
	go func() {
		done <- runProjector(ctx, testConfig(t, t.TempDir(), env))
	}()
	t.Cleanup(func() { cancel(); <-done })

	for i := range 5 {
		if res := h.create(validBody("separate-" + strconv.Itoa(i))); res.status != http.StatusCreated {
			t.Fatalf("%d %s", res.status, res.body)
		}
		list := h.do(http.MethodGet, "/v1/management/connections", nil, reports)
		if total := list.json(t)["total"]; total != float64(i+1) {
			t.Fatalf("list right after create %d: total %v", i+1, total)
		}
	}
}

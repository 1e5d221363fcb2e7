package domain_test

import (
	"testing"
	"time"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

func healthFixture(t *testing.T) *domain.Connection {
	t.Helper()
	spec, _, err := domain.ParseSpec(domain.SpecInput{ConfigName: "health-db", ProductName: "reports", Type: "POSTGRESQL",
		Host: "db.example.com", Port: 5432, DatabaseName: "app", UserName: "u", Password: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	c, err := domain.Create("c1", "org-a", spec, domain.Credentials{Password: domain.SealedSecret{Scheme: "dev", KeyName: "k", Ciphertext: "devseal:v1:x"}},
		domain.Origin{Actor: "a", At: time.Unix(0, 0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestObserveRecordsHealthChangesOnly: every test is recorded; a
// health-changed event follows only when the status or the failure reason
// changes.
func TestObserveRecordsHealthChangesOnly(t *testing.T) {
	c := healthFixture(t)
	if h := c.Health(); h.Status != events.HealthUnknown {
		t.Fatalf("new connection health = %+v", h)
	}
	fail := func(reason string) domain.Observation {
		return domain.Observation{Status: domain.TestFailed, Reason: reason, Message: "m " + reason, Origin: events.TestOriginMonitor}
	}
	ok := domain.Observation{Status: domain.TestSucceeded, Origin: events.TestOriginMonitor}
	steps := []struct {
		obs      domain.Observation
		changed  bool
		status   string
		previous string
		failures int
	}{
		{ok, true, events.HealthHealthy, events.HealthUnknown, 0},
		{ok, false, events.HealthHealthy, "", 0},
		{fail("CONNECTION_REFUSED"), true, events.HealthFailing, events.HealthHealthy, 1},
		{fail("CONNECTION_REFUSED"), false, events.HealthFailing, "", 2},
		{fail("AUTH_FAILED"), true, events.HealthFailing, events.HealthFailing, 3},
		{ok, true, events.HealthHealthy, events.HealthFailing, 0},
	}
	for i, st := range steps {
		before := len(c.PendingEvents())
		at := time.Unix(int64(100+i), 0).UTC()
		if err := c.Observe(st.obs, domain.Origin{Actor: "monitor", At: at}); err != nil {
			t.Fatal(err)
		}
		recorded := c.PendingEvents()[before:]
		if _, isTest := recorded[0].Payload.(*events.ConnectionTestedV1); !isTest {
			t.Fatalf("step %d: first event %s", i, recorded[0].Type())
		}
		if got := len(recorded) == 2; got != st.changed {
			t.Fatalf("step %d: %d events recorded, health change expected %t", i, len(recorded), st.changed)
		}
		h := c.Health()
		if h.Status != st.status || h.ConsecutiveFailures != st.failures || !h.CheckedAt.Equal(at) {
			t.Errorf("step %d: health %+v", i, h)
		}
		if st.changed {
			p := recorded[1].Payload.(*events.ConnectionHealthChangedV1)
			if p.Status != st.status || p.Previous != st.previous || p.Reason != st.obs.Reason || !h.Since.Equal(at) {
				t.Errorf("step %d: health-changed %+v, since %v", i, p, h.Since)
			}
		}
	}
	// The rebuilt aggregate has the same health.
	rebuilt, err := domain.Rebuild(c.PendingEvents())
	if err != nil {
		t.Fatal(err)
	}
	if rebuilt.Health() != c.Health() {
		t.Errorf("rebuilt health %+v, want %+v", rebuilt.Health(), c.Health())
	}
	if err := c.Observe(domain.Observation{Status: domain.TestSucceeded, Origin: "cron"}, domain.Origin{}); err == nil {
		t.Error("an unknown origin was accepted")
	}
}

package bootstrap_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/dbprobe/dbtest"
	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/monitor"
)

// gate is a loopback TCP forwarder in front of a test database: closing it
// stops the port from listening (as a stopped server does: connection
// refused), opening it listens on the same port again. It stands for stopping
// and restarting the database server, which dbtest does not offer.
type gate struct {
	port, to int
	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]bool
}

func newGate(t *testing.T, to int) *gate {
	t.Helper()
	port, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{port: port, to: to, conns: map[net.Conn]bool{}}
	g.open(t)
	t.Cleanup(g.close)
	return g
}

func (g *gate) open(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", g.port))
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go g.forward(c)
		}
	}()
}

func (g *gate) forward(c net.Conn) {
	up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.to))
	if err != nil {
		c.Close()
		return
	}
	g.mu.Lock()
	g.conns[c], g.conns[up] = true, true
	g.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
		delete(g.conns, c)
	}
}

// monitorEvents decodes the events of one connection.
func (h *harness) monitorEvents(id string) []events.Event {
	h.t.Helper()
	var out []events.Event
	for _, m := range h.streamMessages(events.EventSubject(id)) {
		if ev, err := events.Decode(m.Data); err == nil {
			out = append(out, ev)
		}
	}
	return out
}

// monitorTests counts the monitor's tests of id and the health changes.
func (h *harness) monitorTests(id string) (tests []events.Event, changes []*events.ConnectionHealthChangedV1) {
	for _, ev := range h.monitorEvents(id) {
		switch p := ev.Payload.(type) {
		case *events.ConnectionTestedV1:
			if p.Origin == events.TestOriginMonitor {
				tests = append(tests, ev)
			}
		case *events.ConnectionHealthChangedV1:
			changes = append(changes, p)
		}
	}
	return tests, changes
}

func (h *harness) health(id string) map[string]any {
	h.t.Helper()
	res := h.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil)
	if res.status != http.StatusOK {
		h.t.Fatalf("GET %s: %d %s", id, res.status, res.body)
	}
	hl, _ := res.json(h.t)["health"].(map[string]any)
	return hl
}

// TestMonitorFollowsHealth: with MONITOR_INTERVAL=1s, connections to a real
// PostgreSQL and MariaDB become healthy on their own; the PostgreSQL server
// going away makes its connection failing (CONNECTION_REFUSED) with one
// health change however many tests fail, its return healthy with one more;
// a PATCH with a wrong password makes it failing (AUTH_FAILED) soon after,
// through a test that carries the PATCH's correlation id.
func TestMonitorFollowsHealth(t *testing.T) {
	ca, err := dbtest.NewCA("monitor test CA")
	if err != nil {
		t.Fatal(err)
	}
	pg, err := dbtest.StartPostgres(ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	my, err := dbtest.StartMariaDB(ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(my.Close)
	g := newGate(t, pg.Port)
	h := startService(t, t.TempDir(), map[string]string{"MONITOR_INTERVAL": "1s", "TEST_RATE_LIMIT": "600", "TEST_TIMEOUT": "5s"})

	register := func(name, typ string, s *dbtest.Server, port int) string {
		body := validBody(name)
		body["type"], body["host"], body["port"] = typ, s.Host, port
		body["databaseName"], body["userName"], body["password"] = s.Database, s.User, s.Password
		if s.Schema != "" {
			body["schema"] = s.Schema
		}
		res := h.create(body)
		if res.status != http.StatusCreated {
			t.Fatalf("%s: %d %s", name, res.status, res.body)
		}
		return res.json(t)["id"].(string)
	}
	pgID := register("pg-watched", "POSTGRESQL", pg, g.port)
	myID := register("my-watched", "MYSQL", my, my.Port)
	waitHealth := func(id, status, reason string) {
		t.Helper()
		eventually(t, id+" "+status+" "+reason, func() bool {
			hl := h.health(id)
			return hl["status"] == status && (reason == "" || hl["reason"] == reason)
		})
	}
	// settled waits for two more monitor tests of id, then returns the
	// health changes recorded so far.
	settled := func(id string) []*events.ConnectionHealthChangedV1 {
		t.Helper()
		before, _ := h.monitorTests(id)
		var changes []*events.ConnectionHealthChangedV1
		eventually(t, "two more monitor tests of "+id, func() bool {
			var tests []events.Event
			tests, changes = h.monitorTests(id)
			return len(tests) >= len(before)+2
		})
		return changes
	}

	waitHealth(pgID, "healthy", "")
	waitHealth(myID, "healthy", "")
	if changes := settled(pgID); len(changes) != 1 || changes[0].Status != events.HealthHealthy || changes[0].Previous != events.HealthUnknown {
		t.Fatalf("health changes after the first tests: %+v", changes)
	}

	g.close()
	waitHealth(pgID, "failing", "CONNECTION_REFUSED")
	changes := settled(pgID)
	if len(changes) != 2 || changes[1].Status != events.HealthFailing || changes[1].Reason != "CONNECTION_REFUSED" {
		t.Fatalf("health changes after the server stopped: %+v", changes)
	}
	if hl := h.health(pgID); hl["consecutiveFailures"].(float64) < 2 || hl["since"] == nil {
		t.Fatalf("health while failing: %v", hl)
	}

	g.open(t)
	waitHealth(pgID, "healthy", "")
	if changes := settled(pgID); len(changes) != 3 || changes[2].Status != events.HealthHealthy || changes[2].Previous != events.HealthFailing {
		t.Fatalf("health changes after the server restarted: %+v", changes)
	}

	const corr = "monitor-patch-1"
	res := h.do(http.MethodPatch, "/v1/management/connections/"+pgID, map[string]any{"password": "wrong-" + pg.Password},
		map[string]string{"X-Correlation-Id": corr})
	if res.status != http.StatusOK {
		t.Fatalf("PATCH: %d %s", res.status, res.body)
	}
	waitHealth(pgID, "failing", "AUTH_FAILED")
	tests, _ := h.monitorTests(pgID)
	carried := false
	for _, ev := range tests {
		carried = carried || (ev.CorrelationID == corr && ev.Actor == monitor.Actor)
	}
	if !carried {
		t.Fatalf("no monitor test carries the PATCH's correlation id %q", corr)
	}
	// MariaDB kept being tested, healthy, with one health change.
	if _, changes := h.monitorTests(myID); len(changes) != 1 {
		t.Fatalf("MariaDB health changes: %+v", changes)
	}
	for _, m := range h.streamMessages(events.EventSubjectPrefix) {
		for _, secret := range []string{pg.Password, my.Password} {
			if strings.Contains(string(m.Data), secret) {
				t.Fatal("an event holds a password")
			}
		}
	}
}

// TestMonitorBurstAndPoison: 1,000 PATCHes (100 with -short) to one connection, each moving
// its target between two closed loopback ports (so each asks for a test),
// cause no more tests than TEST_RATE_LIMIT allows; an undecodable message
// on the connection events' subjects is parked on the poison stream with its
// reason, and the monitor goes on testing.
func TestMonitorBurstAndPoison(t *testing.T) {
	const limit = 5 // tests per minute and connection
	// Each PATCH loads the connection's whole history (the event store
	// keeps no snapshot), so 1,000 of them to one connection take minutes
	// here; the store's timeout is raised for the last, longest loads.
	burst := 1000
	if testing.Short() {
		burst = 100
	}
	h := startService(t, t.TempDir(), map[string]string{"MONITOR_INTERVAL": "1s", "TEST_RATE_LIMIT": fmt.Sprint(limit),
		"TEST_TIMEOUT": "2s", "STORE_TIMEOUT": "60s"})
	closedA, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	closedB, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	body := validBody("burst")
	body["host"], body["port"] = "127.0.0.1", closedA
	res := h.create(body)
	if res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)
	start := time.Now()
	for i := range burst {
		port := closedA
		if i%2 == 0 {
			port = closedB
		}
		res := h.do(http.MethodPatch, "/v1/management/connections/"+id, map[string]any{"port": port, "password": "burst-pw"}, nil) // a move sends the password again (REG-0423)
		if res.status != http.StatusOK {
			t.Fatalf("PATCH %d: %d %s", i, res.status, res.body)
		}
	}
	eventually(t, "the connection is failing", func() bool { return h.health(id)["status"] == "failing" })
	tests, _ := h.monitorTests(id)
	elapsed := time.Since(start)
	// The limiter (GCRA) allows a burst of limit, then one per minute/limit.
	allowed := limit + int(elapsed/(time.Minute/limit)) + 1
	if len(tests) == 0 || len(tests) > allowed {
		t.Fatalf("%d monitor tests in %s after %d target changes; the rate limit allows %d", len(tests), elapsed, burst, allowed)
	}
	t.Logf("%d target changes in %s: %d monitor tests (the rate limit allows %d)", burst, elapsed.Round(time.Millisecond), len(tests), allowed)

	// Poison: garbage on a connection's subject.
	nc, err := h.svc.ConnectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, events.EventSubject("00000000-0000-7000-8000-00000000dead"), []byte("{not an event")); err != nil {
		t.Fatal(err)
	}
	var parked *jetstream.RawStreamMsg
	eventually(t, "the undecodable message is parked", func() bool {
		s, err := js.Stream(ctx, monitor.PoisonStream)
		if err != nil {
			return false
		}
		parked, err = s.GetLastMsgForSubject(ctx, monitor.PoisonSubject)
		return err == nil
	})
	if string(parked.Data) != "{not an event" || !strings.Contains(parked.Header.Get(monitor.HeaderPoisonReason), "malformed envelope") {
		t.Fatalf("parked message %q, reason %q", parked.Data, parked.Header.Get(monitor.HeaderPoisonReason))
	}
	// The monitor goes on: a new connection is tested.
	body = validBody("after-poison")
	body["host"], body["port"] = "127.0.0.1", closedA
	res = h.create(body)
	if res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	next := res.json(t)["id"].(string)
	eventually(t, "the connection created after the poison is tested", func() bool {
		tests, _ := h.monitorTests(next)
		return len(tests) > 0
	})
	if hl := h.health(next); hl["status"] != "failing" && hl["status"] != "unknown" {
		t.Fatalf("health of a closed port: %v", hl)
	}
}

// TestMonitorOneActiveAmongProcesses: an API with the monitor on and a
// cmd/monitor process share NATS; the API holds the monitor's lease and the
// other stands by; when the API stops, the standby takes the lease and goes
// on testing.
func TestMonitorOneActiveAmongProcesses(t *testing.T) {
	n := externalNATS(t)
	m := externalMongo(t)
	env := map[string]string{"NATS_URL": n.URL(), "MONGO_URI": m.URI(), "MONITOR_INTERVAL": "1s", "TEST_RATE_LIMIT": "600",
		"TEST_TIMEOUT": "2s", "PROJECTOR_LEASE_TTL": "2s"}
	dir := t.TempDir()
	h := startService(t, dir, env)
	closed, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	body := validBody("watched")
	body["host"], body["port"] = "127.0.0.1", closed
	res := h.create(body)
	if res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)

	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	holder := func() string {
		kv, err := js.KeyValue(ctx, eventstore.LeaseBucket)
		if err != nil {
			return ""
		}
		e, err := kv.Get(ctx, bootstrap.MonitorLeaseKey)
		if err != nil {
			return ""
		}
		return string(e.Value())
	}
	eventually(t, "the API holds the monitor lease", func() bool { return strings.HasPrefix(holder(), "api@") })

	// The standby: cmd/monitor's process, on the same NATS and DATA_DIR (the
	// development sealer's key).
	standbyCtx, stopStandby := context.WithCancel(ctx)
	standbyDone := make(chan error, 1)
	go func() {
		standbyDone <- bootstrap.RunMonitor(standbyCtx, testConfig(t, dir, env), slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { stopStandby(); <-standbyDone }()
	tests, _ := h.monitorTests(id)
	eventually(t, "the API's monitor keeps testing", func() bool {
		now, _ := h.monitorTests(id)
		return len(now) >= len(tests)+3
	})
	if got := holder(); !strings.HasPrefix(got, "api@") {
		t.Fatalf("lease holder while the API runs: %q", got)
	}

	h.stop()
	eventually(t, "the standby takes the lease", func() bool { return strings.HasPrefix(holder(), "monitor@") })
	count := func() int {
		n := 0
		for _, m := range streamOf(t, js, events.EventSubject(id)) {
			if ev, err := events.Decode(m.Data); err == nil {
				if p, ok := ev.Payload.(*events.ConnectionTestedV1); ok && p.Origin == events.TestOriginMonitor {
					n++
				}
			}
		}
		return n
	}
	before := count()
	eventually(t, "the standby tests", func() bool { return count() >= before+2 })
}

// streamOf reads the messages of one subject of the event stream.
func streamOf(t *testing.T, js jetstream.JetStream, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	var seq uint64
	for {
		m, err := s.GetMsg(ctx, seq+1, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			return out
		}
		out = append(out, m)
		seq = m.Sequence
	}
}

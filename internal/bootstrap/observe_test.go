package bootstrap_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/sealer/vault/vaulttest"
	"github.com/connreg/registry/internal/telemetry"
)

var seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// metricSum adds the values of every series of name whose labels include
// want, in a Prometheus text exposition; found is false when none matched.
func metricSum(exposition, name string, want map[string]string) (sum float64, found bool) {
	for _, line := range strings.Split(exposition, "\n") {
		m := seriesLine.FindStringSubmatch(line)
		if m == nil || m[1] != name {
			continue
		}
		labels := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			labels[p[1]] = p[2]
		}
		ok := true
		for k, v := range want {
			ok = ok && labels[k] == v
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err == nil {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

func (h *harness) scrape() string {
	h.t.Helper()
	res := h.do(http.MethodGet, "/metrics", nil, nil)
	if res.status != http.StatusOK {
		h.t.Fatalf("GET /metrics = %d", res.status)
	}
	return string(res.body)
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func TestMetricsMoveWithRealTraffic(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	before := h.scrape()
	created := h.create(validBody("metrics-db"))
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	id := created.json(t)["id"].(string)
	if res := h.create(validBody("metrics-db")); res.status != http.StatusConflict {
		t.Fatalf("duplicate create: %d %s", res.status, res.body)
	}
	if res := h.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil); res.status != http.StatusOK {
		t.Fatalf("get: %d", res.status)
	}
	refused := validBody("probe-db")
	refused["host"], refused["port"] = "127.0.0.1", closedPort(t)
	if res := h.do(http.MethodPost, "/v1/management/connections/test", refused, map[string]string{"X-Product-Name": "Reports"}); res.status != http.StatusOK {
		t.Fatalf("test: %d %s", res.status, res.body)
	}
	h.do(http.MethodGet, "/v1/management/connections/not-a-uuid", nil, nil)

	var after string
	eventually(t, "the projector's batch and lag metrics", func() bool {
		after = h.scrape()
		written, _ := metricSum(after, "connreg_projector_batches_total", map[string]string{"outcome": "written"})
		_, lag := metricSum(after, "connreg_projection_lag_events", nil)
		return written >= 1 && lag
	})
	moved := []struct {
		name    string
		labels  map[string]string
		atLeast float64
	}{
		{"connreg_http_requests_total", map[string]string{"route": "/v1/management/connections", "method": "POST", "status": "201"}, 1},
		{"connreg_http_requests_total", map[string]string{"route": "/v1/management/connections", "method": "POST", "status": "409"}, 1},
		{"connreg_http_requests_total", map[string]string{"route": "/v1/management/connections/:id", "method": "GET", "status": "200"}, 1},
		{"connreg_http_requests_total", map[string]string{"route": "/v1/management/connections/:id", "method": "GET", "status": "400"}, 1},
		{"connreg_http_request_duration_seconds_count", map[string]string{"route": "/v1/management/connections", "method": "POST"}, 2},
		{"connreg_eventstore_appends_total", map[string]string{"outcome": "ok"}, 1},
		{"connreg_eventstore_appends_total", map[string]string{"outcome": "name_taken"}, 1},
		{"connreg_eventstore_append_duration_seconds_count", nil, 2},
		{"connreg_name_claim_conflicts_total", nil, 1},
		{"connreg_sealer_operations_total", map[string]string{"sealer": "dev", "operation": "seal", "outcome": "ok"}, 1},
		{"connreg_sealer_duration_seconds_count", map[string]string{"sealer": "dev", "operation": "seal"}, 1},
		{"connreg_connection_tests_total", map[string]string{"type": "POSTGRESQL", "status": "failure", "reason": "CONNECTION_REFUSED"}, 1},
		{"connreg_connection_test_duration_seconds_count", map[string]string{"type": "POSTGRESQL"}, 1},
		{"connreg_projector_batches_total", map[string]string{"outcome": "written"}, 1},
		{"connreg_projector_events_total", nil, 1},
		{"connreg_projection_delay_seconds_count", nil, 1},
		{"connreg_readmodel_write_duration_seconds_count", map[string]string{"outcome": "ok"}, 1},
		{"connreg_build_info", nil, 1},
		{"go_goroutines", nil, 1},
		{"process_cpu_seconds_total", nil, 0},
	}
	for _, m := range moved {
		was, _ := metricSum(before, m.name, m.labels)
		now, found := metricSum(after, m.name, m.labels)
		if !found || now < m.atLeast || (m.atLeast > 0 && m.name != "go_goroutines" && m.name != "connreg_build_info" && now <= was) {
			t.Errorf("%s%v = %v (before %v, found %t), want at least %v and more than before", m.name, m.labels, now, was, found, m.atLeast)
		}
	}
	for _, present := range []string{"connreg_projection_lag_seconds", "connreg_projection_lag_events", "connreg_projector_consumer_pending", "connreg_projector_parked_events_total"} {
		if _, found := metricSum(after, present, nil); !found {
			t.Errorf("%s is not exposed", present)
		}
	}
	if strings.Contains(after, id) || strings.Contains(after, "metrics-db") || strings.Contains(after, "s3cret") {
		t.Error("/metrics names a connection id, a config name or a secret")
	}
}

func TestReadyzNamesEachCheckAndHealthzStaysAlive(t *testing.T) {
	n := externalNATS(t)
	h := startService(t, t.TempDir(), map[string]string{"NATS_URL": n.URL()})
	var body map[string]any
	eventually(t, "/readyz answers 200", func() bool {
		res := h.do(http.MethodGet, "/readyz", nil, nil)
		body = res.json(t)
		return res.status == http.StatusOK
	})
	checks := body["checks"].(map[string]any)
	for _, name := range []string{"eventStore", "readModel", "projectionLag"} {
		c, ok := checks[name].(map[string]any)
		if !ok || c["state"] != "up" {
			t.Errorf("check %s = %v, want up", name, checks[name])
		}
	}
	res := h.do(http.MethodGet, "/version", nil, nil)
	if v := res.json(t); res.status != http.StatusOK || v["goVersion"] != runtime.Version() || v["version"] == "" {
		t.Errorf("/version = %d %s", res.status, res.body)
	}

	n.Shutdown()
	eventually(t, "/readyz answers 503 with NATS down", func() bool {
		res := h.do(http.MethodGet, "/readyz", nil, nil)
		body = res.json(t)
		return res.status == http.StatusServiceUnavailable
	})
	if body["code"] != "REG-5030" || body["fields"].(map[string]any)["eventStore"] != "down" {
		t.Errorf("/readyz body with NATS down: %v", body)
	}
	if c := body["checks"].(map[string]any)["eventStore"].(map[string]any); c["state"] != "down" || c["error"] == "" {
		t.Errorf("eventStore check with NATS down: %v", c)
	}
	if res := h.do(http.MethodGet, "/healthz", nil, nil); res.status != http.StatusOK {
		t.Errorf("/healthz with NATS down = %d, want 200 (it calls no dependency)", res.status)
	}
}

const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

// accessLine finds the access log line of a request.
func accessLine(t *testing.T, logs, requestID string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "http request" && m["requestId"] == requestID {
			return m
		}
	}
	t.Fatalf("no access log line for request %s", requestID)
	return nil
}

func TestIncomingTraceparentTravelsWithoutExporter(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	res := h.do(http.MethodPost, "/v1/management/connections", validBody("traced-db"), map[string]string{
		"X-Product-Name": "Reports", "X-Request-Id": "trace-req-1",
		"traceparent": "00-" + incomingTrace + "-00f067aa0ba902b7-01",
	})
	if res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)
	msgs := h.streamMessages(events.EventSubject(id))
	if len(msgs) != 1 {
		t.Fatalf("%d messages on the connection's subject", len(msgs))
	}
	tp := msgs[0].Header.Get("traceparent")
	if !strings.HasPrefix(tp, "00-"+incomingTrace+"-") {
		t.Errorf("NATS header traceparent = %q, want the incoming trace id", tp)
	}
	var env events.Envelope
	if err := json.Unmarshal(msgs[0].Data, &env); err != nil || env.TraceParent != tp {
		t.Errorf("envelope traceparent = %q (%v), want the header's %q", env.TraceParent, err, tp)
	}
	// A traced event still meets the AsyncAPI document (envelope and headers).
	loadContract(t).check(t, msgs[0].Subject, msgs[0].Header, msgs[0].Data)
	line := accessLine(t, h.logs.String(), "trace-req-1")
	if line["trace_id"] != incomingTrace || line["span_id"] == nil {
		t.Errorf("access log line without the trace: %v", line)
	}
}

// TestTraceRunsFromRequestThroughNATSToProjection records spans in memory
// and follows the parent/child chain: the incoming context, the HTTP span,
// the append (whose context the NATS message carries), and the projection
// of that message in the projector.
func TestTraceRunsFromRequestThroughNATSToProjection(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	start := func(ctx context.Context, cfg bootstrap.Config, logger *slog.Logger) (*bootstrap.Service, error) {
		tel, err := telemetry.New(ctx, func(string) string { return "" }, "connreg-api")
		if err != nil {
			return nil, err
		}
		return bootstrap.StartWith(ctx, cfg, logger, tel.WithTracerProvider(tp))
	}
	h := startServiceWith(t, t.TempDir(), nil, start)
	res := h.do(http.MethodPost, "/v1/management/connections", validBody("chain-db"), map[string]string{
		"X-Product-Name": "Reports", "traceparent": "00-" + incomingTrace + "-00f067aa0ba902b7-01",
	})
	if res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)

	find := func(name string) []tracetest.SpanStub {
		var out []tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if s.Name == name && s.SpanContext.TraceID().String() == incomingTrace {
				out = append(out, s)
			}
		}
		return out
	}
	eventually(t, "the projection span of the created event", func() bool { return len(find("readmodel.project")) > 0 })
	one := func(name string) tracetest.SpanStub {
		t.Helper()
		s := find(name)
		if len(s) != 1 {
			t.Fatalf("%d spans %q in the trace, want 1; spans: %v", len(s), name, spanNames(exp.GetSpans()))
		}
		return s[0]
	}
	server := one("POST /v1/management/connections")
	appendSpan := one("eventstore.append")
	claim := one("eventstore.claim")
	seal := one("sealer.seal")
	project := one("readmodel.project")
	if server.Parent.SpanID().String() != "00f067aa0ba902b7" || !server.Parent.IsRemote() {
		t.Errorf("HTTP span's parent = %s, want the incoming span", server.Parent.SpanID())
	}
	for child, parent := range map[*tracetest.SpanStub]*tracetest.SpanStub{&appendSpan: &server, &seal: &server, &claim: &appendSpan, &project: &appendSpan} {
		if child.Parent.SpanID() != parent.SpanContext.SpanID() {
			t.Errorf("span %s's parent is %s, want %s (%s)", child.Name, child.Parent.SpanID(), parent.Name, parent.SpanContext.SpanID())
		}
	}
	if !project.Parent.IsRemote() {
		t.Error("the projection span's parent did not come across NATS (not remote)")
	}
	// The message on the stream carries the append span's context.
	msgs := h.streamMessages(events.EventSubject(id))
	if want := fmt.Sprintf("00-%s-%s-01", incomingTrace, appendSpan.SpanContext.SpanID()); msgs[0].Header.Get("traceparent") != want {
		t.Errorf("NATS traceparent = %q, want %q", msgs[0].Header.Get("traceparent"), want)
	}
	// The event's projection span links its batch span, and the store write
	// is the batch span's child.
	var batch *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		for _, l := range project.Links {
			if s.Name == "readmodel.project batch" && l.SpanContext.SpanID() == s.SpanContext.SpanID() {
				batch = &s
			}
		}
	}
	if batch == nil {
		t.Fatal("the projection span links no batch span")
	}
	wrote := false
	for _, s := range exp.GetSpans() {
		wrote = wrote || (s.Name == "readmodel.write" && s.Parent.SpanID() == batch.SpanContext.SpanID())
	}
	if !wrote {
		t.Error("no readmodel.write span under the batch span")
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	out := make([]string, 0, len(spans))
	for _, s := range spans {
		out = append(out, s.Name+"@"+s.SpanContext.TraceID().String()[:8])
	}
	return out
}

func TestStandaloneProjectorServesProbesAndMetrics(t *testing.T) {
	n := externalNATS(t)
	m := externalMongo(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{"NATS_URL": n.URL(), "MONGO_URI": m.URI(), "PROJECTOR": "off"}
	h := startService(t, t.TempDir(), env)
	ctx, cancel := testContext(t)
	done := make(chan error, 1)
	go func() {
		done <- runProjector(ctx, testConfig(t, t.TempDir(), map[string]string{"NATS_URL": n.URL(), "MONGO_URI": m.URI(), "METRICS_ADDR": addr}))
	}()
	t.Cleanup(func() { cancel(); <-done })
	if res := h.create(validBody("standalone-db")); res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	get := func(path string) (int, string) {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	eventually(t, "the projector's /readyz answers 200", func() bool { s, _ := get("/readyz"); return s == http.StatusOK })
	eventually(t, "the projector's /metrics counts the batch", func() bool {
		_, body := get("/metrics")
		v, _ := metricSum(body, "connreg_projector_batches_total", map[string]string{"outcome": "written"})
		return v >= 1
	})
	if s, body := get("/healthz"); s != http.StatusOK || !strings.Contains(body, "ok") {
		t.Errorf("projector /healthz = %d %s", s, body)
	}
}

func TestReadyzAndMetricsWithVault(t *testing.T) {
	v := vaulttest.Start(t)
	h := startService(t, t.TempDir(), map[string]string{"VAULT_ADDR": v.Addr, "VAULT_TOKEN": v.Token, "VAULT_TIMEOUT": "1s"})
	var body map[string]any
	eventually(t, "/readyz answers 200 with Vault", func() bool {
		res := h.do(http.MethodGet, "/readyz", nil, nil)
		body = res.json(t)
		return res.status == http.StatusOK
	})
	if c, _ := body["checks"].(map[string]any)["sealer"].(map[string]any); c == nil || c["state"] != "up" {
		t.Fatalf("sealer check = %v", body["checks"])
	}
	if res := h.create(validBody("vault-metrics-db")); res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	metrics := h.scrape()
	if n, _ := metricSum(metrics, "connreg_sealer_operations_total", map[string]string{"sealer": "vault", "operation": "seal", "outcome": "ok"}); n < 1 {
		t.Errorf("vault seals counted: %v", n)
	}
	for _, name := range []string{"connreg_vault_token_renewals_total", "connreg_vault_logins_total"} {
		if _, found := metricSum(metrics, name, nil); !found {
			t.Errorf("%s is not exposed", name)
		}
	}
	v.Stop()
	eventually(t, "/readyz answers 503 with Vault down (after the cached answer expires)", func() bool {
		res := h.do(http.MethodGet, "/readyz", nil, nil)
		body = res.json(t)
		return res.status == http.StatusServiceUnavailable
	})
	if body["fields"].(map[string]any)["sealer"] != "down" {
		t.Errorf("/readyz with Vault down: %v", body)
	}
}

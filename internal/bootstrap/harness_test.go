package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/devstack"
)

// syncBuffer collects the service's log lines for the tests that read them.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is the whole service, booted as `go run ./cmd/api` boots it, and
// served on a real loopback socket.
type harness struct {
	t    *testing.T
	svc  *bootstrap.Service
	srv  *httptest.Server
	logs *syncBuffer
	dir  string
	// responses keeps every body the API answered, for secret scans.
	mu        sync.Mutex
	responses [][]byte
}

func testConfig(t *testing.T, dir string, env map[string]string) bootstrap.Config {
	t.Helper()
	getenv := func(k string) string {
		if k == "DATA_DIR" {
			return dir
		}
		if k == "METRICS_ADDR" && env[k] == "" {
			return "127.0.0.1:0" // a standalone projector's probes: never a fixed port in tests
		}
		return env[k]
	}
	cfg, err := bootstrap.ConfigFromEnv(getenv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startService(t *testing.T, dir string, env map[string]string) *harness {
	t.Helper()
	return startServiceWith(t, dir, env, bootstrap.Start)
}

// startServiceWith is startService with another start function (one that
// injects telemetry, say).
func startServiceWith(t *testing.T, dir string, env map[string]string,
	start func(context.Context, bootstrap.Config, *slog.Logger) (*bootstrap.Service, error)) *harness {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svc, err := start(ctx, testConfig(t, dir, env), logger)
	if err != nil {
		t.Fatalf("start: %v\nlogs:\n%s", err, logs.String())
	}
	h := &harness{t: t, svc: svc, srv: httptest.NewServer(conformance(t, svc.Handler)), logs: logs, dir: dir}
	t.Cleanup(h.stop)
	return h
}

// stop shuts the service down; calling it twice is harmless.
func (h *harness) stop() {
	if h.srv != nil {
		h.srv.Close()
		h.svc.Close()
		h.srv = nil
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func (h *harness) do(method, path string, body any, headers map[string]string) response {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.responses = append(h.responses, b)
	h.mu.Unlock()
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// reports names the product of h.create's connections, as a list requires.
var reports = map[string]string{"X-Product-Name": "Reports"}

func (h *harness) create(body map[string]any) response {
	h.t.Helper()
	return h.do(http.MethodPost, "/v1/management/connections", body, reports)
}

func validBody(name string) map[string]any {
	return map[string]any{
		"configName":   name,
		"type":         "POSTGRESQL",
		"host":         "db.example.com",
		"port":         5432,
		"databaseName": "mydatabase",
		"userName":     "dbuser",
		"password":     "s3cret-" + name,
		"metadata":     map[string]any{"team": "data"},
	}
}

// streamMessages reads every message of the system-of-record stream.
func (h *harness) streamMessages(filter string) []jetstream.RawStreamMsg {
	h.t.Helper()
	nc, err := h.svc.ConnectNATS()
	if err != nil {
		h.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // sequences of abandoned batches stay empty
		}
		if filter == "" || strings.HasPrefix(m.Subject, filter) {
			out = append(out, *m)
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithCancel(context.Background())
}

func runProjector(ctx context.Context, cfg bootstrap.Config) error {
	return bootstrap.RunProjector(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// externalNATS starts a nats-server of the test's own, as an operator's
// NATS_URL would point to; it stops with the test (or earlier, by Shutdown).
func externalNATS(t *testing.T) *devstack.NATS {
	t.Helper()
	n, err := devstack.StartNATS(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

// externalMongo starts a FerretDB of the test's own, as an operator's
// MONGO_URI would point to; it stops with the test (or earlier, by Shutdown).
func externalMongo(t *testing.T) *devstack.Mongo {
	t.Helper()
	m, err := devstack.StartMongo(t.TempDir(), "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Shutdown)
	return m
}

// liveDocuments is how many live connections the service's read model holds.
func (h *harness) liveDocuments() int64 {
	h.t.Helper()
	n, err := h.svc.LiveDocuments(h.t.Context())
	if err != nil {
		return -1
	}
	return n
}

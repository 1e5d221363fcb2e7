package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestExportRequestedFollowsTheStandardVariables(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    bool
		wantErr bool
	}{
		{"nothing set", nil, false, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true, false},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true, false},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, false, false},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, false, false},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, true},
		{"grpc refused", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, true},
		{"traces protocol wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := exportRequested(func(k string) string { return tc.env[k] })
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("exportRequested = %t, %v; want %t, error %t", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestNilTelemetryLeavesPortsAsTheyAre(t *testing.T) {
	var tel *Telemetry
	if tel.HTTP("x") != nil || tel.MetricsHandler() != nil || tel.Shutdown(context.Background()) != nil {
		t.Fatal("nil telemetry must add nothing")
	}
	tel.ProjectionLag(1, 2, 3)
	tel.Parked(1)
	tel.Takeover()
}

func TestReadinessReportsEachCheckAndCachesWhenAsked(t *testing.T) {
	var vaultCalls atomic.Int32
	down := errors.New("read model: no answer in time")
	r := &Readiness{Checks: []*Check{
		{Name: "eventStore", Run: func(context.Context) error { return nil }},
		{Name: "readModel", Run: func(context.Context) error { return down }},
		{Name: "sealer", Cache: time.Hour, Run: func(context.Context) error { vaultCalls.Add(1); return nil }},
	}}
	for range 3 {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d with a check down", rec.Code)
		}
		var body ReadyBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if body.Code != "REG-5030" || body.Fields["readModel"] != "down" || len(body.Fields) != 1 ||
			body.Checks["eventStore"].State != "up" || body.Checks["readModel"].Error != down.Error() {
			t.Fatalf("body %+v", body)
		}
	}
	if n := vaultCalls.Load(); n != 1 {
		t.Errorf("the cached check ran %d times, want 1", n)
	}
	r.Checks = r.Checks[:1]
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d with every check up", rec.Code)
	}
}

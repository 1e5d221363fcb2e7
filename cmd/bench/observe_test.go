package main

import (
	"context"
	"testing"
	"time"
)

// TestTelemetryCostComparesBothModes runs the telemetry comparison with tiny
// phases: both modes create, and with telemetry on the no-op collector
// receives exported spans (so "on" measures real export work). It asserts
// that the phase works, never a speed.
func TestTelemetryCostComparesBothModes(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the whole service four times")
	}
	for _, k := range []string{"NATS_URL", "MONGO_URI", "VAULT_ADDR"} {
		t.Setenv(k, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := telemetryCost(ctx, 4, 2, 300*time.Millisecond, "teltest", func(f string, a ...any) { t.Logf(f, a...) })
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Off) != 2 || len(r.On) != 2 {
		t.Fatalf("rounds: %d off, %d on", len(r.Off), len(r.On))
	}
	for _, c := range append(r.Off, r.On...) {
		if c.Created == 0 || c.Errors != 0 {
			t.Errorf("phase created %d with %d errors: %v", c.Created, c.Errors, c.ErrorSamples)
		}
	}
	if r.ExportRequests == 0 || r.ExportBytes == 0 {
		t.Errorf("the collector received no spans while telemetry was on: %+v", r)
	}
}

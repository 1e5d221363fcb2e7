package main

import (
	"context"
	"testing"
	"time"
)

// TestTelemetryCostComparesBothModes runs the telemetry comparison with tiny
// phases: every mode creates, and with telemetry on the no-op collector
// receives exported spans (so "on" measures real export work). It asserts
// that the phase works, never a speed.
func TestTelemetryCostComparesEveryMode(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the whole service eight times")
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
	for _, mode := range telemetryModes {
		m := r.Modes[mode]
		if m == nil || len(m.Rounds) != 2 {
			t.Fatalf("mode %s: %+v", mode, m)
		}
		for _, c := range m.Rounds {
			if c.Created == 0 || c.Errors != 0 {
				t.Errorf("mode %s: a phase created %d with %d errors: %v", mode, c.Created, c.Errors, c.ErrorSamples)
			}
		}
	}
	if r.ExportRequests == 0 || r.ExportBytes == 0 {
		t.Errorf("the collector received no spans while telemetry was on: %+v", r)
	}
}

package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestMonitorBenchShort runs the monitor benchmark's short form: it must
// measure tests and both create rates.
func TestMonitorBenchShort(t *testing.T) {
	var out strings.Builder
	res, err := runMonitorBench(context.Background(), true, "", &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tests == 0 || res.CreatesPerSecOff <= 0 || res.CreatesPerSecOn <= 0 || !strings.Contains(out.String(), "CPU per test") {
		t.Fatalf("monitor bench: %+v\n%s", res, out.String())
	}
	t.Log(out.String())
}

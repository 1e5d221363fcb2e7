package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/telemetry"
)

// TelemetryResult is the cost of being observable: creates/s at one
// concurrency with telemetry off (no metrics, no tracing) and on (Prometheus
// metrics and every request traced, exported over OTLP/HTTP to a no-op
// collector on loopback), each on a fresh stack, in alternating rounds so
// that a slow moment of the shared machine falls on both.
type TelemetryResult struct {
	Concurrency int            `json:"concurrency"`
	Rounds      int            `json:"rounds"`
	Off         []CreateResult `json:"off"`
	On          []CreateResult `json:"on"`
	// OffPerSecond and OnPerSecond are the rounds' medians (the machine is
	// shared: a mean would carry one disturbed round); CostPercent is how
	// much slower on is than off.
	OffPerSecond float64 `json:"offPerSecond"`
	OnPerSecond  float64 `json:"onPerSecond"`
	CostPercent  float64 `json:"costPercent"`
	// ExportRequests and ExportBytes are what the collector received while
	// telemetry was on: proof that spans were exported.
	ExportRequests int64 `json:"exportRequests"`
	ExportBytes    int64 `json:"exportBytes"`
}

// nopCollector accepts OTLP/HTTP trace exports and discards them.
type nopCollector struct {
	srv             *http.Server
	url             string
	requests, bytes atomic.Int64
}

func startCollector() (*nopCollector, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &nopCollector{url: "http://" + ln.Addr().String()}
	c.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		c.requests.Add(1)
		c.bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse: everything accepted
	})}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// telemetryCost measures TelemetryResult at concurrency conc, each phase
// lasting d.
func telemetryCost(ctx context.Context, conc, rounds int, d time.Duration, runID string, say func(string, ...any)) (TelemetryResult, error) {
	res := TelemetryResult{Concurrency: conc, Rounds: rounds}
	col, err := startCollector()
	if err != nil {
		return res, err
	}
	defer col.srv.Close()
	// The OTLP exporter reads the standard variables from the process
	// environment, as in production.
	exporterEnv := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
	for round := range rounds {
		for _, on := range []bool{false, true} {
			mode := "off"
			if on {
				mode = "on"
			}
			start := func(ctx context.Context, cfg bootstrap.Config, logger *slog.Logger) (*bootstrap.Service, error) {
				if !on {
					return bootstrap.StartWith(ctx, cfg, logger, telemetry.Off())
				}
				tel, err := telemetry.New(ctx, func(k string) string {
					if v, ok := exporterEnv[k]; ok {
						return v
					}
					return os.Getenv(k)
				}, "connreg-bench")
				if err != nil {
					return nil, err
				}
				if !tel.Exporting {
					return nil, fmt.Errorf("telemetry on: no exporter configured")
				}
				return bootstrap.StartWith(ctx, cfg, logger, tel)
			}
			for k, v := range exporterEnv {
				os.Setenv(k, v)
			}
			r, err := createsOnFreshStack(ctx, conc, d, fmt.Sprintf("%s-tel%s%d", runID, mode, round), start)
			for k := range exporterEnv {
				os.Unsetenv(k)
			}
			if err != nil {
				return res, fmt.Errorf("telemetry %s: %w", mode, err)
			}
			say("  round %d, telemetry %-3s: %.0f creates/s, p50 %.2f ms, p99 %.2f ms, %d errors",
				round+1, mode, r.PerSecond, r.Latency.P50Ms, r.Latency.P99Ms, r.Errors)
			if on {
				res.On = append(res.On, r)
			} else {
				res.Off = append(res.Off, r)
			}
		}
	}
	median := func(rs []CreateResult) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = r.PerSecond
		}
		slices.Sort(v)
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2
		}
		return v[len(v)/2]
	}
	res.OffPerSecond, res.OnPerSecond = round(median(res.Off)), round(median(res.On))
	if res.OffPerSecond > 0 {
		res.CostPercent = round(100 * (res.OffPerSecond - res.OnPerSecond) / res.OffPerSecond)
	}
	res.ExportRequests, res.ExportBytes = col.requests.Load(), col.bytes.Load()
	return res, nil
}

// createsOnFreshStack boots a stack in a new directory with start, runs one
// closed-loop create phase, and stops the stack (which flushes its spans).
func createsOnFreshStack(ctx context.Context, conc int, d time.Duration, runID string, start startFunc) (CreateResult, error) {
	dir, err := os.MkdirTemp("", "connreg-bench-tel-")
	if err != nil {
		return CreateResult{}, err
	}
	defer os.RemoveAll(dir)
	st, err := startStackWith(ctx, dir, runID, start)
	if err != nil {
		return CreateResult{}, err
	}
	defer st.close()
	c := &creator{base: st.base, runID: runID}
	c.closedLoop(ctx, conc, min(d, time.Second)) // warm up: connections, JIT of the store, first batches
	if _, err := st.waitProjected(ctx, 5*time.Minute); err != nil {
		return CreateResult{}, err
	}
	r := c.closedLoop(ctx, conc, d)
	drain, err := st.waitProjected(ctx, 5*time.Minute)
	r.DrainSeconds = round(drain.Seconds())
	return r, err
}

// printTelemetry writes the comparison and its JSON beside the other results.
func printTelemetry(out io.Writer, dir, runID string, r TelemetryResult) error {
	fmt.Fprintf(out, "\ntelemetry cost at concurrency %d (%d rounds, fresh stack each): off %.0f creates/s, on %.0f creates/s "+
		"(metrics + every request traced, OTLP/HTTP to a no-op collector: %d exports, %d bytes): cost %.1f%%\n",
		r.Concurrency, r.Rounds, r.OffPerSecond, r.OnPerSecond, r.ExportRequests, r.ExportBytes, r.CostPercent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, runID+".telemetry.json")
	fmt.Fprintf(out, "telemetry results: %s\n", path)
	return os.WriteFile(path, b, 0o644)
}

// runTelemetry is `bench -telemetry-only`: the telemetry comparison alone.
func runTelemetry(ctx context.Context, o benchOptions, out, progress io.Writer) error {
	o = o.withDefaults()
	runID := time.Now().UTC().Format("20060102t150405")
	say := func(format string, args ...any) {
		fmt.Fprintf(progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	say("telemetry cost: creates at concurrency %d, telemetry off then on, %s each, %d rounds", telemetryConcurrency, o.Duration, telemetryRounds)
	r, err := telemetryCost(ctx, telemetryConcurrency, telemetryRounds, o.Duration, runID, say)
	if err != nil {
		return err
	}
	return printTelemetry(out, o.Out, runID, r)
}

// The telemetry comparison runs at the concurrency, in two rounds.
const (
	telemetryConcurrency = 16
	telemetryRounds      = 3
)

// telemetryPhase is the comparison as one phase of the full run; a failure
// is reported and does not stop the run.
func telemetryPhase(ctx context.Context, o benchOptions, runID string, out io.Writer, say func(string, ...any)) {
	say("telemetry cost: creates at concurrency %d, telemetry off then on, %s each, %d rounds", telemetryConcurrency, o.Duration, telemetryRounds)
	r, err := telemetryCost(ctx, telemetryConcurrency, telemetryRounds, o.Duration, runID, say)
	if err == nil {
		err = printTelemetry(out, o.Out, runID, r)
	}
	if err != nil {
		say("  telemetry cost not measured: %v", err)
	}
}

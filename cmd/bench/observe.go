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
	"syscall"
	"time"

	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/telemetry"
)

// TelemetryResult is the cost of being observable: creates/s at one
// concurrency in three modes, each on a fresh stack, in alternating rounds so
// that a slow moment of the shared machine falls on every mode:
//
//	off      no metrics, no tracing (telemetry.Off)
//	default  what runs with no OTEL_* variable: Prometheus metrics, and the
//	         W3C trace context carried into the events, nothing recorded
//	on       metrics, and every request traced and exported over OTLP/HTTP to
//	         a no-op collector on loopback (the worst case: 100% sampling)
//	sampled  the same with one request in ten traced
//	         (OTEL_TRACES_SAMPLER=parentbased_traceidratio, ARG 0.1)
type TelemetryResult struct {
	Concurrency int                    `json:"concurrency"`
	Rounds      int                    `json:"rounds"`
	Modes       map[string]*ModeResult `json:"modes"`
	// CostPercent is how many fewer creates/s a mode made than off (medians);
	// CPUCostPercent how much more CPU a create took.
	CostPercent    map[string]float64 `json:"costPercent"`
	CPUCostPercent map[string]float64 `json:"cpuCostPercent"`
	// ExportRequests and ExportBytes are what the collector received while
	// tracing was on: proof that spans were exported.
	ExportRequests int64 `json:"exportRequests"`
	ExportBytes    int64 `json:"exportBytes"`
}

// ModeResult is one mode's rounds and their medians.
type ModeResult struct {
	Rounds    []CreateResult `json:"rounds"`
	PerSecond float64        `json:"perSecond"`
	// CPUPerCreateUs is the process CPU time (user + system of the whole
	// process: service, embedded servers and load generator) per create,
	// phase and projection drain included. Unlike creates/s it hardly
	// depends on what else the machine runs.
	CPUPerCreateUs float64   `json:"cpuPerCreateUs"`
	cpu            []float64 // per round
}

// telemetryModes are the compared modes, in the order each round runs them.
var telemetryModes = []string{"off", "default", "on", "sampled"}

// exporting reports whether a mode exports spans.
func exporting(mode string) bool { return mode == "on" || mode == "sampled" }

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
	res := TelemetryResult{Concurrency: conc, Rounds: rounds, Modes: map[string]*ModeResult{},
		CostPercent: map[string]float64{}, CPUCostPercent: map[string]float64{}}
	col, err := startCollector()
	if err != nil {
		return res, err
	}
	defer col.srv.Close()
	// The OTLP exporter reads the standard variables from the process
	// environment, as in production.
	exporterEnv := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
	samplerEnv := map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
	for _, m := range telemetryModes {
		res.Modes[m] = &ModeResult{}
	}
	for round := range rounds {
		for _, mode := range telemetryModes {
			start := func(ctx context.Context, cfg bootstrap.Config, logger *slog.Logger) (*bootstrap.Service, error) {
				if mode == "off" {
					return bootstrap.StartWith(ctx, cfg, logger, telemetry.Off())
				}
				tel, err := telemetry.New(ctx, func(k string) string {
					if v, ok := exporterEnv[k]; ok && exporting(mode) {
						return v
					}
					return os.Getenv(k)
				}, "connreg-bench")
				if err != nil {
					return nil, err
				}
				if tel.Exporting != exporting(mode) {
					return nil, fmt.Errorf("telemetry %s: exporting=%t", mode, tel.Exporting)
				}
				return bootstrap.StartWith(ctx, cfg, logger, tel)
			}
			if exporting(mode) {
				for k, v := range exporterEnv {
					os.Setenv(k, v)
				}
			}
			if mode == "sampled" {
				for k, v := range samplerEnv {
					os.Setenv(k, v)
				}
			}
			r, cpu, err := createsOnFreshStack(ctx, conc, d, fmt.Sprintf("%s-tel%s%d", runID, mode, round), start)
			for _, env := range []map[string]string{exporterEnv, samplerEnv} {
				for k := range env {
					os.Unsetenv(k)
				}
			}
			if err != nil {
				return res, fmt.Errorf("telemetry %s: %w", mode, err)
			}
			perCreate := 0.0
			if r.Created > 0 {
				perCreate = cpu.Seconds() * 1e6 / float64(r.Created)
			}
			say("  round %d, telemetry %-7s: %.0f creates/s, p50 %.2f ms, p99 %.2f ms, %d errors, %.0f µs CPU per create",
				round+1, mode, r.PerSecond, r.Latency.P50Ms, r.Latency.P99Ms, r.Errors, perCreate)
			mr := res.Modes[mode]
			mr.Rounds = append(mr.Rounds, r)
			mr.cpu = append(mr.cpu, perCreate)
		}
	}
	median := func(v []float64) float64 {
		v = slices.Sorted(slices.Values(v))
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2
		}
		return v[len(v)/2]
	}
	for _, mr := range res.Modes {
		rates := make([]float64, len(mr.Rounds))
		for i, r := range mr.Rounds {
			rates[i] = r.PerSecond
		}
		mr.PerSecond, mr.CPUPerCreateUs = round(median(rates)), round(median(mr.cpu))
	}
	off := res.Modes["off"]
	for _, mode := range telemetryModes[1:] {
		mr := res.Modes[mode]
		if off.PerSecond > 0 {
			res.CostPercent[mode] = round(100 * (off.PerSecond - mr.PerSecond) / off.PerSecond)
		}
		if off.CPUPerCreateUs > 0 {
			res.CPUCostPercent[mode] = round(100 * (mr.CPUPerCreateUs - off.CPUPerCreateUs) / off.CPUPerCreateUs)
		}
	}
	res.ExportRequests, res.ExportBytes = col.requests.Load(), col.bytes.Load()
	return res, nil
}

// createsOnFreshStack boots a stack in a new directory with start, runs one
// closed-loop create phase, and stops the stack (which flushes its spans).
// It also returns the process CPU time of the phase and its drain (the
// projection of the phase's creates belongs to their cost).
func createsOnFreshStack(ctx context.Context, conc int, d time.Duration, runID string, start startFunc) (CreateResult, time.Duration, error) {
	dir, err := os.MkdirTemp("", "connreg-bench-tel-")
	if err != nil {
		return CreateResult{}, 0, err
	}
	defer os.RemoveAll(dir)
	st, err := startStackWith(ctx, dir, runID, nil, start)
	if err != nil {
		return CreateResult{}, 0, err
	}
	defer st.close()
	c := &creator{base: st.base, runID: runID}
	c.closedLoop(ctx, conc, min(d, time.Second)) // warm up: connections, the store's first batches
	if _, err := st.waitProjected(ctx, 5*time.Minute); err != nil {
		return CreateResult{}, 0, err
	}
	before := processCPU()
	r := c.closedLoop(ctx, conc, d)
	drain, err := st.waitProjected(ctx, 5*time.Minute)
	cpu := processCPU() - before
	r.DrainSeconds = round(drain.Seconds())
	return r, cpu, err
}

// processCPU is the user and system CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// printTelemetry writes the comparison and its JSON beside the other results.
func printTelemetry(out io.Writer, dir, runID string, r TelemetryResult) error {
	fmt.Fprintf(out, "\ntelemetry cost at concurrency %d (%d rounds, fresh stack each, medians; traces: %d exports, %d bytes to the no-op collector)\n",
		r.Concurrency, r.Rounds, r.ExportRequests, r.ExportBytes)
	fmt.Fprintf(out, "%-8s %10s %12s %14s %12s\n", "mode", "creates/s", "vs off", "CPU/create µs", "vs off")
	for _, mode := range telemetryModes {
		m := r.Modes[mode]
		fmt.Fprintf(out, "%-8s %10.0f %11.1f%% %14.0f %11.1f%%\n", mode, m.PerSecond, -r.CostPercent[mode], m.CPUPerCreateUs, r.CPUCostPercent[mode])
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "telemetry-"+runID+".json") // not "2*.json": those are the full reports
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
	say("telemetry cost: creates at concurrency %d, telemetry off, default, on and sampled, %s each, %d rounds", telemetryConcurrency, o.Duration, telemetryRounds)
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
	rounds := telemetryRounds
	if o.Short {
		rounds = 1
	}
	say("telemetry cost: creates at concurrency %d, telemetry off, default, on and sampled, %s each, %d rounds", telemetryConcurrency, o.Duration, rounds)
	r, err := telemetryCost(ctx, telemetryConcurrency, rounds, o.Duration, runID, say)
	if err == nil {
		err = printTelemetry(out, o.Out, runID, r)
	}
	if err != nil {
		say("  telemetry cost not measured: %v", err)
	}
}

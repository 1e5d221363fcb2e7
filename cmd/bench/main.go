// Command bench shows how fast the registry is and how close it runs to the
// machine's limits. It boots the whole service as cmd/api does (embedded
// NATS, SQLite read model and development sealer in a temporary DATA_DIR, or the
// servers named by NATS_URL, MONGO_URI and VAULT_ADDR), serves its real HTTP
// handler on a loopback socket and drives it with Go HTTP clients. Next to
// every headline figure it measures the raw ceiling of the part underneath
// (JetStream publish, read-model bulk write, sealer), in the same run, and
// prints the ratio. Results go to stdout as a table and to
// bench-results/<timestamp>.json (and latest.json) for comparison.
//
// Benchmarks measure; they do not gate: the exit status says whether the run
// worked, not whether the targets were met.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// benchOptions say what to run; flags fill them, the test sets them directly.
type benchOptions struct {
	Short         bool          `json:"short"`
	Duration      time.Duration `json:"-"`
	N             int64         `json:"n"`
	Out           string        `json:"out"`
	CPUProfile    string        `json:"cpuProfile,omitempty"`
	Concurrencies []int         `json:"concurrencies"`
	// LimitDuration is how long each raw limit runs; ListDuration how long
	// each list query is timed.
	LimitDuration time.Duration `json:"-"`
	ListDuration  time.Duration `json:"-"`
	LagWorkers    int           `json:"lagWorkers"`
	SeedWorkers   int           `json:"seedWorkers"`
	DurationS     float64       `json:"durationSeconds"`
	LimitS        float64       `json:"limitSeconds"`
	ListS         float64       `json:"listSeconds"`
	// BulkBatch is the size of one raw bulk write; defaultBulkBatch when 0.
	BulkBatch int `json:"bulkBatch"`
	// Scale runs at 1,000,000 connections (N) instead of 100,000.
	Scale bool `json:"scale"`
	// Vault repeats the create phases on a second service sealing through
	// the repository's own Vault dev server (bin/vault), Vault's CPU counted.
	Vault bool `json:"vault"`
	// UpdateConcurrency is the closed-loop PATCH concurrency, UpdateRate the
	// open-loop PATCH rate of the update lag, TestedEvents how many
	// connection.tested.v1 events the update phase projects.
	UpdateConcurrency int     `json:"updateConcurrency"`
	UpdateRate        float64 `json:"updateRate"`
	TestedEvents      int     `json:"testedEvents"`
}

func main() {
	var o benchOptions
	flag.BoolVar(&o.Short, "short", false, "quick run, under a minute: 3s phases, 10,000 connections")
	flag.DurationVar(&o.Duration, "duration", 0, "length of each create phase and of the lag phase (default 10s, 3s with -short)")
	flag.Int64Var(&o.N, "n", 0, "read-model size for the list and replay phases (default 100000, 10000 with -short)")
	flag.StringVar(&o.Out, "out", "bench-results", "directory for the JSON results")
	flag.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the create phase at concurrency 64 to this file")
	telemetryOnly := flag.Bool("telemetry-only", false, "only compare creates/s at concurrency 16 with telemetry off and on (observe.go)")
	monitorOnly := flag.Bool("monitor", false, "measure only the connection monitor's cost (monitor.go; -cpuprofile profiles its window, and FILE.creates the creates beside it)")
	flag.BoolVar(&o.Vault, "vault", false, "also run the create phases sealing through a Vault dev server (bin/vault, built by scripts/build-vault.sh)")
	flag.BoolVar(&o.Scale, "scale", false, "1,000,000 connections for the list, update and replay phases (long: not for CI)")
	flag.Parse()
	o = o.withDefaults()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *telemetryOnly {
		if err := runTelemetry(ctx, o, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *monitorOnly {
		if _, err := runMonitorBench(ctx, o.Short, o.CPUProfile, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if _, err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o benchOptions) withDefaults() benchOptions {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
		if o.Short {
			o.Duration = 3 * time.Second
		}
	}
	if o.N <= 0 {
		o.N = 100_000
		if o.Short {
			o.N = 10_000
		}
		if o.Scale {
			o.N = 1_000_000
		}
	}
	if o.UpdateConcurrency <= 0 {
		o.UpdateConcurrency = 16
	}
	if o.UpdateRate <= 0 {
		o.UpdateRate = 200
	}
	if o.TestedEvents <= 0 {
		o.TestedEvents = 20_000
		if o.Short {
			o.TestedEvents = 2_000
		}
	}
	if o.Out == "" {
		o.Out = "bench-results"
	}
	if len(o.Concurrencies) == 0 {
		o.Concurrencies = []int{1, 16, 64}
	}
	if o.LimitDuration <= 0 {
		o.LimitDuration = max(500*time.Millisecond, o.Duration/2)
	}
	if o.ListDuration <= 0 {
		o.ListDuration = max(500*time.Millisecond, o.Duration/2)
	}
	if o.LagWorkers <= 0 {
		o.LagWorkers = 64
	}
	if o.SeedWorkers <= 0 {
		o.SeedWorkers = 64
	}
	o.DurationS, o.LimitS, o.ListS = o.Duration.Seconds(), o.LimitDuration.Seconds(), o.ListDuration.Seconds()
	return o
}

// run executes every phase and writes the report; progress goes to progress,
// the table to out.
func run(ctx context.Context, o benchOptions, out, progress io.Writer) (_ *Report, err error) {
	o = o.withDefaults()
	started := time.Now().UTC()
	runID := started.Format("20060102t150405")
	say := func(format string, args ...any) {
		fmt.Fprintf(progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}

	dir, err := os.MkdirTemp("", "connreg-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	say("starting the service (DATA_DIR=%s)", dir)
	st, err := startStack(ctx, dir, runID, nil)
	if err != nil {
		return nil, err
	}
	defer st.close()
	defer func() {
		if err != nil {
			// Keep what the service said about a failed run.
			if b, rerr := os.ReadFile(st.logPath); rerr == nil && os.MkdirAll(o.Out, 0o755) == nil {
				kept := filepath.Join(o.Out, runID+".service.log")
				if os.WriteFile(kept, b, 0o644) == nil {
					say("service log kept in %s", kept)
				}
			}
		}
	}()

	rep := newReport(started, o, st)
	c := &creator{base: st.base, runID: runID}

	// 1. Creates, closed loop, one phase per concurrency.
	for _, conc := range o.Concurrencies {
		var stopProfile func() error
		if conc == 64 && o.CPUProfile != "" {
			if stopProfile, err = startCPUProfile(o.CPUProfile); err != nil {
				return nil, err
			}
		}
		say("creates at concurrency %d for %s", conc, o.Duration)
		cpu := cpuTime()
		r := c.closedLoop(ctx, conc, o.Duration)
		r.CPUSeconds = round((cpuTime() - cpu).Seconds())
		if r.Created > 0 {
			r.CPUPerCreateUs = round(float64((cpuTime() - cpu).Microseconds()) / float64(r.Created))
		}
		if stopProfile != nil {
			if err := stopProfile(); err != nil {
				return nil, err
			}
			rep.CPUProfile = o.CPUProfile
		}
		drain, err := st.waitProjected(ctx, 5*time.Minute)
		r.DrainSeconds = round(drain.Seconds())
		rep.Creates = append(rep.Creates, r)
		say("  %.0f creates/s, p50 %.2f ms, p99 %.2f ms, %d errors, %.0f µs CPU per create; projector drained in %.2fs",
			r.PerSecond, r.Latency.P50Ms, r.Latency.P99Ms, r.Errors, r.CPUPerCreateUs, drain.Seconds())
		if err != nil {
			return nil, err
		}
	}

	// 1b. The cost of telemetry, on fresh stacks of its own (observe.go).
	telemetryPhase(ctx, o, runID, out, say)

	// 1c. The same creates, sealed by Vault transit.
	if o.Vault {
		say("creates sealed through a Vault dev server (bin/vault), %s per concurrency", o.Duration)
		if rep.VaultCreates, err = vaultCreates(ctx, o, runID, dir, say); err != nil {
			return nil, fmt.Errorf("vault creates: %w", err)
		}
	}

	// 2. Projection lag at half the peak create rate.
	peak := 0.0
	for _, r := range rep.Creates {
		peak = max(peak, r.PerSecond)
	}
	if peak <= 0 {
		return nil, errors.New("no create succeeded; see the error samples")
	}
	say("projection lag at %.0f creates/s (half the peak) for %s", peak/2, o.Duration)
	rep.ProjectionLag = c.projectionLag(ctx, st, peak/2, o.Duration, o.LagWorkers)
	say("  lag p50 %.2f ms, p99 %.2f ms over %d samples (%d timeouts); watermark p50 %.2f ms p99 %.2f ms",
		rep.ProjectionLag.Lag.P50Ms, rep.ProjectionLag.Lag.P99Ms, rep.ProjectionLag.Lag.Samples, rep.ProjectionLag.Timeouts,
		rep.ProjectionLag.Watermark.P50Ms, rep.ProjectionLag.Watermark.P99Ms)
	if _, err := st.waitProjected(ctx, 5*time.Minute); err != nil {
		return nil, err
	}

	// 3. Fill the read model up to N.
	size, err := readModelSize(ctx, st)
	if err != nil {
		return nil, err
	}
	say("seeding %d connections through the command handler and svc.Store.Append (read model has %d)", max(0, o.N-size), size)
	rep.Seed, err = seed(ctx, st, runID, dir, o.N-size, o.SeedWorkers)
	if err != nil {
		return nil, err
	}
	if rep.Seed.Events > 0 {
		say("  %.0f appends/s; projector caught up %.2fs after the last append", rep.Seed.PerSecond, rep.Seed.CatchUpSeconds)
	}

	// 4. List latency at that size.
	say("list latency, %d queries, %s each", len(listQueries), o.ListDuration)
	rep.List = listLatency(ctx, st.base, o.ListDuration)
	if rep.List.ReadModelSize == 0 {
		// The unfiltered list failed (see its errors): count what was written.
		rep.List.ReadModelSize = size + rep.Seed.Events
	}
	for _, q := range rep.List.Queries {
		say("  %-32s p50 %.2f ms, p99 %.2f ms (%d samples, total %d)", q.Name, q.Latency.P50Ms, q.Latency.P99Ms, q.Latency.Samples, q.Total)
	}

	// 5. Updates at that size.
	ids, err := st.sampleIDs(ctx, 10_000)
	if err != nil || len(ids) == 0 {
		return nil, fmt.Errorf("no connection to update: %v", err)
	}
	say("updates: PATCH at concurrency %d, lag at %.0f PATCH/s, %d tested events, store reads; %s each", o.UpdateConcurrency, o.UpdateRate, o.TestedEvents, o.Duration)
	if rep.Updates, err = updatePhase(ctx, st, ids, o.UpdateConcurrency, o.UpdateRate, o.Duration, o.TestedEvents); err != nil {
		return nil, fmt.Errorf("updates: %w", err)
	}
	u := rep.Updates
	say("  PATCH %.0f/s p99 %.2f ms; lag p50 %.2f ms p99 %.2f ms; tested %.0f/s; store get p99 %.3f ms; RSS %d MiB",
		u.Patch.PerSecond, u.Patch.Latency.P99Ms, u.Lag.Lag.P50Ms, u.Lag.Lag.P99Ms, u.Tested.PerSecond, u.StoreGet.P99Ms, u.RSSBytes>>20)

	// 6. Replay the whole stream into a fresh read model.
	say("replaying the stream into a fresh read-model database")
	rep.Replay, err = replay(ctx, st, runID)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	say("  %d events in %.2fs: %.0f events/s", rep.Replay.Events, rep.Replay.Seconds, rep.Replay.PerSecond)

	// 7. The machine's limits.
	ev, err := st.sampleEvent(ctx)
	if err != nil {
		return nil, err
	}
	msgSize := len(ev.Data)
	for k, vs := range ev.Header {
		for _, v := range vs {
			msgSize += len(k) + len(v) + 4
		}
	}
	rep.EventBytes = msgSize
	say("raw JetStream publish of %d-byte messages, %s per concurrency", msgSize, o.LimitDuration)
	if rep.Limits.Publish, err = rawPublish(ctx, st, runID, msgSize, o.LimitDuration); err != nil {
		return nil, err
	}
	sample, err := st.readModelFirst(ctx)
	if err != nil || len(sample.Items) == 0 {
		return nil, fmt.Errorf("no read-model document to copy for the bulk-upsert limit: %v", err)
	}
	say("raw read-model bulk upsert for %s", o.LimitDuration)
	if rep.Limits.BulkUpsert, rep.Limits.BulkInsert, err = rawBulkUpsert(ctx, st, runID, &sample.Items[0], o.LimitDuration, cmp.Or(o.BulkBatch, defaultBulkBatch)); err != nil {
		return nil, err
	}
	say("raw sealer rates")
	if rep.Limits.Sealer, err = rawSeal(ctx, dir, max(250*time.Millisecond, o.LimitDuration/2)); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// 7. Schema discovery of a 200-table PostgreSQL database, and
	// validate-schema from the read model. Last, so that its large event is
	// neither the sample of the raw publish limit nor part of the replay.
	discoveries := schemaDiscoveries
	if o.Short {
		discoveries = 3
	}
	say("schema discovery of a %d-table PostgreSQL database (%d discoveries), validate-schema for %s", schemaTables, discoveries, o.ListDuration)
	rep.Schema = schemaCost(ctx, st.base+"/v1/management/connections", runID, discoveries, o.ListDuration, func() error {
		_, err := st.waitProjected(ctx, 5*time.Minute)
		return err
	})
	if rep.Schema.Skipped != "" {
		say("  skipped: %s", rep.Schema.Skipped)
	} else {
		say("  discovery p50 %.2f ms, p99 %.2f ms; validate-schema p50 %.2f ms, p99 %.2f ms; %d errors",
			rep.Schema.Discovery.P50Ms, rep.Schema.Discovery.P99Ms, rep.Schema.Validate.P50Ms, rep.Schema.Validate.P99Ms, rep.Schema.Errors)
	}

	rep.ServiceLog = summarizeLog(st.logPath)
	rep.finish()
	rep.printTable(out)
	path, err := rep.write(o.Out)
	if err != nil {
		return rep, err
	}
	fmt.Fprintf(out, "\nresults: %s (and %s)\n", path, latestName(o.Out))
	return rep, nil
}

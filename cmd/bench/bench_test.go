package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/connreg/registry/internal/dbprobe/dbtest"
)

// TestShortRunWritesEverySection runs the whole bench end to end with tiny
// sizes and checks the JSON it writes. It asserts that the bench works and
// reports every section, never how fast anything was: benchmarks measure,
// they do not gate CI on numbers.
func TestShortRunWritesEverySection(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the whole service")
	}
	for _, k := range []string{"NATS_URL", "MONGO_URI", "VAULT_ADDR"} {
		t.Setenv(k, "") // always the embedded stack here
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var table, progress bytes.Buffer
	_, err := run(ctx, benchOptions{
		Short: true, Duration: 300 * time.Millisecond, N: 300, Out: out,
		Concurrencies: []int{1, 16, 64}, LimitDuration: 200 * time.Millisecond,
		ListDuration: 100 * time.Millisecond, CPUProfile: filepath.Join(out, "cpu.pprof"),
		BulkBatch: 20, // keeps the raw bulk-write limit short under -race
	}, &table, &progress)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}

	b, err := os.ReadFile(filepath.Join(out, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(b, &sections); err != nil {
		t.Fatalf("latest.json: %v", err)
	}
	for _, s := range []string{"machine", "stack", "creates", "projectionLag", "seed", "list", "updates", "replay", "limits", "ratios", "targets", "competitor"} {
		if v, ok := sections[s]; !ok || string(v) == "null" {
			t.Errorf("latest.json has no %q section", s)
		}
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Creates) != 3 {
		t.Errorf("creates: %d phases, want 3", len(rep.Creates))
	}
	for _, c := range rep.Creates {
		if c.Created == 0 || c.Latency.Samples == 0 {
			t.Errorf("create phase at c=%d created nothing: %+v", c.Concurrency, c)
		}
	}
	if rep.ProjectionLag.Lag.Samples == 0 {
		t.Error("projection lag: no sample")
	}
	if rep.List.ReadModelSize < 300 || len(rep.List.Queries) != len(listQueries) {
		t.Errorf("list: read model of %d, %d queries", rep.List.ReadModelSize, len(rep.List.Queries))
	}
	if _, err := os.Stat(filepath.Join(dbtest.PostgresBin, "postgres")); err == nil {
		if rep.Schema.Discovery.Samples == 0 || rep.Schema.Validate.Samples == 0 || rep.Schema.Errors != 0 {
			t.Errorf("schema: %+v", rep.Schema)
		}
	} else if rep.Schema.Skipped == "" {
		t.Errorf("schema: measured without PostgreSQL? %+v", rep.Schema)
	}
	if rep.Replay.Events < 300 {
		t.Errorf("replay: %d events, want every event of the stream (>= 300)", rep.Replay.Events)
	}
	if len(rep.Limits.Publish) == 0 || rep.Limits.BulkUpsert.Ops == 0 || rep.Limits.BulkInsert.Ops == 0 || len(rep.Limits.Sealer) == 0 {
		t.Errorf("limits incomplete: %+v", rep.Limits)
	}
	if len(rep.Targets) != 9 {
		t.Errorf("targets: %d, want the issues' 9", len(rep.Targets))
	}
	for _, c := range rep.Creates {
		if c.CPUPerCreateUs <= 0 {
			t.Errorf("create phase at c=%d: no CPU time per create", c.Concurrency)
		}
	}
	u := rep.Updates
	if u.Patch.Ops == 0 || u.Lag.Lag.Samples == 0 || u.Tested.Events == 0 || u.StoreGet.Samples == 0 || u.RSSBytes == 0 {
		t.Errorf("updates incomplete: %+v", u)
	}
	if fi, err := os.Stat(filepath.Join(out, "cpu.pprof")); err != nil || fi.Size() == 0 {
		t.Errorf("cpu profile not written: %v", err)
	}
	matches, _ := filepath.Glob(filepath.Join(out, "2*.json"))
	if len(matches) != 1 {
		t.Errorf("timestamped results: %v", matches)
	}
	if !bytes.Contains(table.Bytes(), []byte("TARGETS")) {
		t.Errorf("no table on stdout:\n%s", table.String())
	}
}

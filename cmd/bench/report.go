package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/connreg/registry/readmodel"
)

// Report is everything one run measured; its JSON form is the file that runs
// are compared by.
type Report struct {
	SchemaVersion int            `json:"schemaVersion"`
	StartedAt     time.Time      `json:"startedAt"`
	Mode          string         `json:"mode"`
	Commit        string         `json:"commit,omitempty"`
	Machine       Machine        `json:"machine"`
	Options       benchOptions   `json:"options"`
	Stack         StackInfo      `json:"stack"`
	EventBytes    int            `json:"eventBytes"`
	Creates       []CreateResult `json:"creates"`
	// VaultCreates are the create phases of a -vault run: the same creates
	// sealed through Vault transit, Vault's CPU time included in the CPU per
	// create.
	VaultCreates  []CreateResult `json:"vaultCreates,omitempty"`
	ProjectionLag LagResult      `json:"projectionLag"`
	Seed          SeedResult     `json:"seed"`
	List          ListSection    `json:"list"`
	Updates       UpdateSection  `json:"updates"`
	Replay        ReplayResult   `json:"replay"`
	Schema        SchemaResult   `json:"schema"`
	Limits        Limits         `json:"limits"`
	Ratios        []Ratio        `json:"ratios"`
	Targets       []Target       `json:"targets"`
	Competitor    []Competitor   `json:"competitor"`
	ServiceLog    LogSummary     `json:"serviceLog"`
	CPUProfile    string         `json:"cpuProfile,omitempty"`
	Notes         []string       `json:"notes"`
}

// Machine is where the run happened.
type Machine struct {
	GoVersion  string `json:"goVersion"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	NumCPU     int    `json:"numCPU"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Hostname   string `json:"hostname"`
	// LoadAtStart and LoadAtEnd are /proc/loadavg: other work on the
	// machine during the run makes every figure worse.
	LoadAtStart string `json:"loadAtStart,omitempty"`
	LoadAtEnd   string `json:"loadAtEnd,omitempty"`
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// StackInfo says which servers the service ran against.
type StackInfo struct {
	NATS      string `json:"nats"`
	ReadModel string `json:"readModel"`
	Sealer    string `json:"sealer"`
	LogLevel  string `json:"logLevel"`
}

// Ratio is a headline figure over the limit of the part beneath it.
type Ratio struct {
	Name        string  `json:"name"`
	Value       float64 `json:"value"`
	Numerator   float64 `json:"numerator"`
	Denominator float64 `json:"denominator"`
	Unit        string  `json:"unit"`
}

// Target is one goal from the issue, met or not in this run.
type Target struct {
	Name     string  `json:"name"`
	Goal     string  `json:"goal"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
	Note     string  `json:"note,omitempty"`
}

// Competitor is a row of /work/shared/FACTS.md: Lerian's connection manager
// on this kind of machine against FerretDB/SQLite.
type Competitor struct {
	Load      string  `json:"load"`
	PerSecond float64 `json:"perSecond"`
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
}

var competitor = []Competitor{
	{"1 client", 600, 1.5, 3.9},
	{"16 connections", 950, 11, 670},
	{"64 connections", 900, 44, 1300},
}

var readModelFirst = readmodel.ListQuery{Page: 1, Limit: 1}

func readModelSize(ctx context.Context, st *stack) (int64, error) {
	if st.svc.Index != nil {
		return int64(st.svc.Index.Len()), nil
	}
	r, err := st.readModelFirst(ctx)
	return r.Total, err
}

func newReport(started time.Time, o benchOptions, st *stack) *Report {
	host, _ := os.Hostname()
	mode := "full"
	if o.Short {
		mode = "short"
	}
	r := &Report{
		SchemaVersion: 1, StartedAt: started, Mode: mode, Commit: commit(), Options: o,
		Machine: Machine{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
			NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Hostname: host, LoadAtStart: loadavg()},
		Stack: StackInfo{NATS: "embedded nats-server", ReadModel: "embedded SQLite (sqlitestore)", Sealer: "development sealer (AES-GCM)",
			LogLevel: st.cfg.LogLevel.String()},
		Competitor: competitor,
		Notes: []string{
			"client, service, NATS server, read-model server and projector share this machine's CPUs; the HTTP client's own cost is inside every create figure",
			"create figures go through the real socket, Gin router, validation, sealer, name-claim lookup and atomic batch append; the projector runs concurrently as in production",
			"each create phase waits for the projector to drain before the next phase starts",
		},
	}
	if st.cfg.NATSURL != "" {
		r.Stack.NATS = "external " + st.cfg.NATSURL
	}
	if st.cfg.MongoURI != "" {
		r.Stack.ReadModel = "external MONGO_URI, database " + st.cfg.MongoDatabase
	}
	if st.cfg.VaultAddr != "" {
		r.Stack.Sealer = "vault transit " + st.cfg.VaultAddr
	}
	return r
}

// commit names the source tree measured (read-only git queries).
func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "-dirty"
	}
	return c
}

func (r *Report) create(conc int) *CreateResult {
	for i := range r.Creates {
		if r.Creates[i].Concurrency == conc {
			return &r.Creates[i]
		}
	}
	return nil
}

func (r *Report) publish(conc int) *RateResult {
	for i := range r.Limits.Publish {
		if r.Limits.Publish[i].Concurrency == conc && strings.HasPrefix(r.Limits.Publish[i].Name, "js.Publish") {
			return &r.Limits.Publish[i]
		}
	}
	return nil
}

// serviceSealer is the parallel rate of the sealer the service runs with
// (coalesced Vault when VAULT_ADDR is set).
func (r *Report) serviceSealer() *RateResult {
	want := "devseal AES-GCM"
	if strings.HasPrefix(r.Stack.Sealer, "vault") {
		want = "vault transit, coalesced"
	}
	for i := range r.Limits.Sealer {
		if s := &r.Limits.Sealer[i]; s.Name == want && s.Concurrency == 64 {
			return s
		}
	}
	return nil
}

func ratio(name string, num, den float64, unit string) Ratio {
	v := 0.0
	if den > 0 {
		v = round(num / den)
	}
	return Ratio{Name: name, Value: v, Numerator: num, Denominator: den, Unit: unit}
}

// finish computes the ratios and judges the targets.
func (r *Report) finish() {
	r.Machine.LoadAtEnd = loadavg()
	c1, c16, c64 := r.create(1), r.create(16), r.create(64)
	p1, p64 := r.publish(1), r.publish(64)
	// The replay ceiling is the faster of the two raw bulk writes.
	bulk := max(r.Limits.BulkUpsert.PerSecond, r.Limits.BulkInsert.PerSecond)
	if c64 != nil && p64 != nil {
		r.Ratios = append(r.Ratios, ratio("creates@64 / raw js.Publish@64", c64.PerSecond, p64.PerSecond, "/s"))
	}
	if c1 != nil && p1 != nil {
		r.Ratios = append(r.Ratios, ratio("creates@1 / raw js.Publish@1", c1.PerSecond, p1.PerSecond, "/s"))
		r.Ratios = append(r.Ratios, ratio("create p50@1 / raw publish p50@1 (latency, x)", c1.Latency.P50Ms, p1.Latency.P50Ms, "ms"))
	}
	for _, b := range r.Limits.Publish {
		if strings.HasPrefix(b.Name, "atomic batch") {
			if c := r.create(b.Concurrency); c != nil {
				r.Ratios = append(r.Ratios, ratio(fmt.Sprintf("creates@%d / raw atomic batch@%d", b.Concurrency, b.Concurrency), c.PerSecond, b.PerSecond, "/s"))
			}
		}
	}
	if s := r.serviceSealer(); s != nil && c64 != nil {
		r.Ratios = append(r.Ratios, ratio("creates@64 / "+s.Name+" seals@64", c64.PerSecond, s.PerSecond, "/s"))
	}
	r.Ratios = append(r.Ratios, ratio("replay / raw bulk write (best of upsert, insert)", r.Replay.PerSecond, bulk, "/s"))
	if r.Seed.ProjectedPerSecond > 0 {
		r.Ratios = append(r.Ratios, ratio("live projection while seeding / raw bulk write", r.Seed.ProjectedPerSecond, bulk, "/s"))
	}

	if c64 != nil {
		r.Targets = append(r.Targets, Target{Name: "CPU time per create at c=64", Goal: "<= 300 µs",
			Measured: c64.CPUPerCreateUs, Unit: "µs", Met: c64.Created > 0 && c64.CPUPerCreateUs <= 300,
			Note: fmt.Sprintf("process CPU (getrusage: client, API, NATS, read model, projector) %.2fs over %d creates", c64.CPUSeconds, c64.Created)})
		r.Targets = append(r.Targets, Target{Name: "creates/s at c=64", Goal: ">= 5x Lerian's ~900/s (4,500/s)",
			Measured: c64.PerSecond, Unit: "/s", Met: c64.PerSecond >= 4500 && c64.Errors == 0,
			Note: fmt.Sprintf("%d errors", c64.Errors)})
	}
	if c16 != nil {
		r.Targets = append(r.Targets, Target{Name: "create p99 at c=16", Goal: "< 25 ms",
			Measured: c16.Latency.P99Ms, Unit: "ms", Met: c16.Latency.P99Ms < 25 && c16.Errors == 0 && c16.Created > 0})
	}
	lag := r.ProjectionLag
	r.Targets = append(r.Targets, Target{Name: "projection lag p99 at half peak", Goal: "< 100 ms",
		Measured: lag.Lag.P99Ms, Unit: "ms", Met: lag.Lag.Samples > 0 && lag.Timeouts == 0 && lag.Lag.P99Ms < 100,
		Note: fmt.Sprintf("at %.0f creates/s (target %.0f), %d samples, %d timeouts, resolution %.0f ms",
			lag.AchievedPerSecond, lag.TargetPerSecond, lag.Lag.Samples, lag.Timeouts, lag.PollIntervalMs)})
	rv := 0.0
	if bulk > 0 {
		rv = round(r.Replay.PerSecond / bulk)
	}
	r.Targets = append(r.Targets, Target{Name: "replay rate", Goal: ">= 50% of raw bulk write",
		Measured: round(100 * rv), Unit: "%", Met: rv >= 0.5,
		Note: fmt.Sprintf("%.0f events/s vs %.0f docs/s (upsert %.0f, insert %.0f), %d events", r.Replay.PerSecond, bulk,
			r.Limits.BulkUpsert.PerSecond, r.Limits.BulkInsert.PerSecond, r.Replay.Events)})
	worst := 0.0
	ok := len(r.List.Queries) > 0
	for _, q := range r.List.Queries {
		worst = max(worst, q.Latency.P99Ms)
		ok = ok && q.Errors == 0 && q.Latency.Samples > 0
	}
	note := fmt.Sprintf("worst of %d queries, read model of %d connections", len(r.List.Queries), r.List.ReadModelSize)
	if r.List.ReadModelSize < 100_000 {
		note += " (smaller than the 100k of the target)"
	}
	r.Targets = append(r.Targets, Target{Name: "list p99 at 100k", Goal: "< 20 ms", Measured: worst, Unit: "ms",
		Met: ok && worst < 20, Note: note})
	u := r.Updates
	r.Targets = append(r.Targets, Target{Name: "update projection lag p99", Goal: "< 100 ms at 200 updates/s",
		Measured: u.Lag.Lag.P99Ms, Unit: "ms", Met: u.Lag.Lag.Samples > 0 && u.Lag.Timeouts == 0 && u.Lag.Errors == 0 && u.Lag.Lag.P99Ms < 100,
		Note: fmt.Sprintf("at %.0f updates/s, %d connections, %d samples, %d timeouts", u.Lag.AchievedPerSecond, u.ReadModelSize, u.Lag.Lag.Samples, u.Lag.Timeouts)})
	r.Targets = append(r.Targets, Target{Name: "store GET by id p99", Goal: "< 5 ms",
		Measured: u.StoreGet.P99Ms, Unit: "ms", Met: u.StoreGet.Samples > 0 && u.StoreGet.P99Ms < 5,
		Note: fmt.Sprintf("%d connections, %d samples", u.ReadModelSize, u.StoreGet.Samples)})
	r.Targets = append(r.Targets, Target{Name: "PATCH p99 at c=16", Goal: "< 30 ms",
		Measured: u.Patch.Latency.P99Ms, Unit: "ms", Met: u.Patch.Ops > 0 && u.Patch.Errors == 0 && u.Patch.Latency.P99Ms < 30,
		Note: fmt.Sprintf("%.0f PATCH/s, %d errors", u.Patch.PerSecond, u.Patch.Errors)})
}

func (r *Report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nconnreg bench (%s) %s  commit %s  %s/%s %d CPU, %s\n", r.Mode, r.StartedAt.Format(time.RFC3339), r.Commit,
		r.Machine.OS, r.Machine.Arch, r.Machine.NumCPU, r.Machine.GoVersion)
	fmt.Fprintf(w, "load average at start %s, at end %s (on %d CPUs: anything near or above that means the figures are depressed)\n",
		r.Machine.LoadAtStart, r.Machine.LoadAtEnd, r.Machine.NumCPU)
	fmt.Fprintf(w, "stack: %s; %s; sealer: %s; service log level %s; event %d bytes\n",
		r.Stack.NATS, r.Stack.ReadModel, r.Stack.Sealer, r.Stack.LogLevel, r.EventBytes)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "\nCREATES (POST /v1/management/connections, every request unique, 201 checked)")
	fmt.Fprintln(tw, "concurrency\tcreates/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\tdrain s\tCPU µs/create\t\tLerian/s\tLerian p99 ms\t")
	for i, c := range r.Creates {
		comp := "\t"
		if i < len(competitor) {
			comp = fmt.Sprintf("%.0f\t%.0f", competitor[i].PerSecond, competitor[i].P99Ms)
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.1f\t%d\t%.2f\t%.0f\t\t%s\t\n", c.Concurrency, c.PerSecond, c.Latency.P50Ms,
			c.Latency.P95Ms, c.Latency.P99Ms, c.Latency.MaxMs, c.Errors, c.DrainSeconds, c.CPUPerCreateUs, comp)
	}
	tw.Flush()
	for _, c := range r.Creates {
		for _, s := range c.ErrorSamples {
			fmt.Fprintf(w, "  c=%d error: %s\n", c.Concurrency, s)
		}
	}

	if len(r.VaultCreates) > 0 {
		fmt.Fprintln(w, "\nCREATES SEALED BY VAULT TRANSIT (Vault dev server on loopback; CPU per create includes Vault's)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "concurrency\tcreates/s\tp50 ms\tp99 ms\terrors\tCPU µs/create\t")
		for _, c := range r.VaultCreates {
			fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%.2f\t%d\t%.0f\t\n", c.Concurrency, c.PerSecond, c.Latency.P50Ms, c.Latency.P99Ms, c.Errors, c.CPUPerCreateUs)
		}
		tw.Flush()
	}

	l := r.ProjectionLag
	fmt.Fprintf(w, "\nPROJECTION LAG (201 -> document in the read model) at %.0f creates/s (target %.0f = half peak), %d workers\n",
		l.AchievedPerSecond, l.TargetPerSecond, l.Workers)
	fmt.Fprintf(w, "  lag p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms  (%d samples, %d timeouts, poll %.0f ms); create p99 %.2f ms, %d errors\n",
		l.Lag.P50Ms, l.Lag.P95Ms, l.Lag.P99Ms, l.Lag.MaxMs, l.Lag.Samples, l.Timeouts, l.PollIntervalMs, l.CreateLatency.P99Ms, l.Errors)
	fmt.Fprintf(w, "  projector watermark (upper bound) p50 %.2f ms  p99 %.2f ms; one read-model Get p50 %.2f ms  p99 %.2f ms\n",
		l.Watermark.P50Ms, l.Watermark.P99Ms, l.PollQuery.P50Ms, l.PollQuery.P99Ms)

	fmt.Fprintf(w, "\nSEED (%d appends, %d goroutines): %.0f appends/s; projector caught up %.2fs later (%.0f projected/s overall)\n",
		r.Seed.Events, r.Seed.Concurrency, r.Seed.PerSecond, r.Seed.CatchUpSeconds, r.Seed.ProjectedPerSecond)
	fmt.Fprintf(w, "  method: %s\n", r.Seed.Method)

	fmt.Fprintf(w, "\nLIST (one client, sequential) with %d connections in the read model\n", r.List.ReadModelSize)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  query\tX-Product-Name\tsamples\tp50 ms\tp99 ms\tmax ms\terrors\ttotal")
	for _, q := range r.List.Queries {
		fmt.Fprintf(tw, "  %s %s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%d\t%d\n", q.Name, q.Path, q.ProductName, q.Latency.Samples,
			q.Latency.P50Ms, q.Latency.P99Ms, q.Latency.MaxMs, q.Errors, q.Total)
	}
	tw.Flush()
	for _, q := range r.List.Queries {
		for _, e := range q.ErrorSamples {
			fmt.Fprintf(w, "  %s error: %s\n", q.Name, e)
		}
	}

	if sc := r.Schema; sc.Skipped != "" {
		fmt.Fprintf(w, "\nSCHEMA: skipped (%s)\n", sc.Skipped)
	} else {
		fmt.Fprintf(w, "\nSCHEMA (PostgreSQL, %d tables, %d columns; started and filled in %.1fs)\n", sc.Tables, sc.Columns, sc.StartupSeconds)
		fmt.Fprintf(w, "  discovery (GET /{id}/schema?refresh=true): p50 %.2f ms  p99 %.2f ms  max %.2f ms (%d samples, answer %d bytes)\n",
			sc.Discovery.P50Ms, sc.Discovery.P99Ms, sc.Discovery.MaxMs, sc.Discovery.Samples, sc.ResponseBytes)
		fmt.Fprintf(w, "  validate-schema from the read model (%d fields in %d tables): p50 %.2f ms  p99 %.2f ms  max %.2f ms (%d samples), %d errors\n",
			sc.MappedFields, sc.MappedTables, sc.Validate.P50Ms, sc.Validate.P99Ms, sc.Validate.MaxMs, sc.Validate.Samples, sc.Errors)
		for _, e := range sc.ErrorSamples {
			fmt.Fprintf(w, "  schema error: %s\n", e)
		}
	}

	u := r.Updates
	fmt.Fprintf(w, "\nUPDATES with %d connections in the read model\n", u.ReadModelSize)
	fmt.Fprintf(w, "  %s: %.0f/s, p50 %.2f ms, p99 %.2f ms, %d errors\n", u.Patch.Name, u.Patch.PerSecond, u.Patch.Latency.P50Ms, u.Patch.Latency.P99Ms, u.Patch.Errors)
	fmt.Fprintf(w, "  projection lag at %.0f PATCH/s (target %.0f): p50 %.2f ms, p99 %.2f ms (%d samples, %d timeouts); PATCH p99 %.2f ms, %d errors\n",
		u.Lag.AchievedPerSecond, u.Lag.TargetPerSecond, u.Lag.Lag.P50Ms, u.Lag.Lag.P99Ms, u.Lag.Lag.Samples, u.Lag.Timeouts, u.Lag.PatchLatency.P99Ms, u.Lag.Errors)
	fmt.Fprintf(w, "  connection.tested.v1 applied: %d events in %.2fs = %.0f/s\n", u.Tested.Events, u.Tested.Seconds, u.Tested.PerSecond)
	fmt.Fprintf(w, "  read-model store Get by id: p50 %.3f ms, p99 %.3f ms (%d samples)\n", u.StoreGet.P50Ms, u.StoreGet.P99Ms, u.StoreGet.Samples)
	fmt.Fprintf(w, "  process RSS %.0f MiB (peak %.0f MiB)\n", float64(u.RSSBytes)/(1<<20), float64(u.MaxRSSBytes)/(1<<20))

	fmt.Fprintf(w, "\nREPLAY: %d events in %.2fs = %.0f events/s (%d batches)\n  method: %s\n",
		r.Replay.Events, r.Replay.Seconds, r.Replay.PerSecond, r.Replay.Batches, r.Replay.Method)

	fmt.Fprintln(w, "\nLIMITS (raw, same servers, same run)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  operation\tconcurrency\tops/s\tp50 ms\tp99 ms\terrors")
	rows := append(append([]RateResult{}, r.Limits.Publish...), r.Limits.BulkUpsert, r.Limits.BulkInsert)
	rows = append(rows, r.Limits.Sealer...)
	for _, x := range rows {
		fmt.Fprintf(tw, "  %s\t%d\t%.0f\t%.3f\t%.3f\t%d\n", x.Name, x.Concurrency, x.PerSecond, x.Latency.P50Ms, x.Latency.P99Ms, x.Errors)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nRATIOS (headline / limit)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, x := range r.Ratios {
		fmt.Fprintf(tw, "  %s\t%.0f / %.0f\t= %.2f\n", x.Name, x.Numerator, x.Denominator, x.Value)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nTARGETS (from the issue)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range r.Targets {
		met := "NOT MET"
		if t.Met {
			met = "met"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.2f %s\t%s\t%s\n", t.Name, t.Goal, t.Measured, t.Unit, met, t.Note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nservice log: %d lines, %d warnings, %d errors\n", r.ServiceLog.Lines, r.ServiceLog.Warnings, r.ServiceLog.Errors)
	for _, s := range r.ServiceLog.Samples {
		fmt.Fprintf(w, "  %s\n", s)
	}
	if r.CPUProfile != "" {
		fmt.Fprintf(w, "cpu profile of the c=64 create phase: %s (go tool pprof -top %s)\n", r.CPUProfile, r.CPUProfile)
	}
}

func latestName(dir string) string { return filepath.Join(dir, "latest.json") }

// write stores the report as <dir>/<timestamp>.json and <dir>/latest.json.
func (r *Report) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	b = append(b, '\n')
	path := filepath.Join(dir, r.StartedAt.Format("20060102T150405Z")+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", err
	}
	return path, os.WriteFile(latestName(dir), b, 0o644)
}

func startCPUProfile(path string) (func() error, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

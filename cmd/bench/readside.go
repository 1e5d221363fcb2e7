package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/sealer/devseal"
)

// SeedResult is how the read model was filled up to the requested size.
type SeedResult struct {
	Method      string  `json:"method"`
	Concurrency int     `json:"concurrency"`
	Events      int64   `json:"events"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"perSecond"`
	// CatchUpSeconds is how long the service's own projector needed after
	// the last append to reflect everything; ProjectedPerSecond is the
	// live projection rate over the whole seeding (appends + catch-up).
	CatchUpSeconds     float64 `json:"catchUpSeconds"`
	ProjectedPerSecond float64 `json:"projectedPerSecond"`
}

const seedMethod = "commands.CreateHandler (validate, seal with a throwaway development sealer, build the " +
	"connection.created.v1 event) -> a seeding event store that publishes the same claim and event messages as " +
	"jetstream.Store.Append, asynchronously and without the atomic batch (which costs ~20 ms each, serialized, on " +
	"this single-replica file stream: see the atomic-batch limit); no HTTP. The service's projector projects them live."

// seed appends count creates through the command handler and the service's
// event store, from conc goroutines, then waits for the service's projector.
func seed(ctx context.Context, st *stack, runID, dir string, count int64, conc int) (SeedResult, error) {
	res := SeedResult{Method: seedMethod, Concurrency: conc}
	if count <= 0 {
		return res, nil
	}
	sealer, err := devseal.New(filepath.Join(dir, "seed-sealer"))
	if err != nil {
		return res, err
	}
	create, err := commands.NewCreateHandler(commands.CreateDeps{
		Store: seedStore{js: st.js}, History: st.svc.Store, Sealer: sealer,
		NewID:   func() string { return uuid.Must(uuid.NewV7()).String() },
		KeyedID: func(scope string) string { return uuid.NewSHA1(uuid.NameSpaceOID, []byte(scope)).String() },
		Now:     func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
	})
	if err != nil {
		return res, err
	}
	var next, errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := next.Add(1)
				if n > count {
					return
				}
				schema := "public"
				in := domain.SpecInput{
					ProductName: productName(n), ConfigName: "seed-" + runID + "-" + strconv.FormatInt(n, 10),
					Type: "POSTGRESQL", Host: "db-" + strconv.FormatInt(n%100, 10) + ".example.com", Port: 5432,
					DatabaseName: "mydatabase", UserName: "dbuser", Password: []byte("secretpassword-" + strconv.FormatInt(n, 10)),
					Schema: &schema, SSL: &domain.SSLInput{Mode: "require"},
					Metadata: map[string]string{"environment": "production", "team": "data-engineering"},
				}
				_, err := create.Handle(ctx, commands.CreateConnection{Input: in, Scope: domain.Scope{Organization: domain.DefaultOrganization}, Origin: domain.Origin{Actor: "bench-seed"}})
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	appended := time.Since(start)
	res.Events = count - errs.Load()
	res.Errors = errs.Load()
	res.Seconds = round(appended.Seconds())
	res.PerSecond = perSecond(res.Events, appended)
	if e := firstErr.Load(); e != nil {
		return res, fmt.Errorf("seed: %d of %d creates failed, first: %v", res.Errors, count, e)
	}
	catchUp, err := st.waitProjected(ctx, 10*time.Minute)
	res.CatchUpSeconds = round(catchUp.Seconds())
	res.ProjectedPerSecond = perSecond(res.Events, appended+catchUp)
	return res, err
}

// listQuery is one list request the bench times. Every list query lives in
// listQueries; add new filters there.
type listQuery struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	ProductName string `json:"productName,omitempty"`
}

var listQueries = []listQuery{
	{Name: "first page, limit 20", Path: "/v1/management/connections?limit=20", ProductName: "bench-product-0"},
	{Name: "one product, limit 20", Path: "/v1/management/connections?limit=20", ProductName: "bench-product-3"},
	{Name: "one product, page 10, limit 20", Path: "/v1/management/connections?page=10&limit=20", ProductName: "bench-product-3"},
}

// ListResult is the latency of one list query, one client, sequential.
type ListResult struct {
	listQuery
	Total        int64    `json:"total"`
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"errorSamples,omitempty"`
	Latency      Latency  `json:"latency"`
}

func (r *ListResult) note(s string) {
	if len(r.ErrorSamples) < 3 {
		r.ErrorSamples = append(r.ErrorSamples, truncate(s, 300))
	}
}

// ListSection holds every list query's result and the read model's size.
type ListSection struct {
	ReadModelSize int64        `json:"readModelSize"`
	Queries       []ListResult `json:"queries"`
}

// minListSamples is how many answers a query gets even when each takes
// longer than its share of the duration (a slow store is what we measure).
const minListSamples = 20

func listLatency(ctx context.Context, base string, d time.Duration) ListSection {
	var sec ListSection
	client := newClient()
	client.Timeout = 10 * time.Minute // a list that scans a big collection is what this measures
	defer client.CloseIdleConnections()
	for _, q := range listQueries {
		r := ListResult{listQuery: q}
		var lat []time.Duration
		deadline := time.Now().Add(d)
		hardStop := time.Now().Add(10 * d)
		for ctx.Err() == nil && (time.Now().Before(deadline) || len(lat)+int(r.Errors) < minListSamples) && time.Now().Before(hardStop) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+q.Path, nil)
			if q.ProductName != "" {
				req.Header.Set("X-Product-Name", q.ProductName)
			}
			t := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				r.Errors++
				r.note(fmt.Sprintf("after %s: %v", time.Since(t).Round(time.Millisecond), err))
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			elapsed := time.Since(t)
			var page struct {
				Items []json.RawMessage `json:"items"`
				Total int64             `json:"total"`
			}
			if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(body, &page) != nil || len(page.Items) == 0 {
				r.Errors++
				r.note(fmt.Sprintf("after %s: %d %s", elapsed.Round(time.Millisecond), resp.StatusCode, body))
				continue
			}
			r.Total = page.Total
			lat = append(lat, elapsed)
		}
		r.Latency = summarize(lat)
		if q == listQueries[0] {
			// A list is of one product; the seed spreads connections evenly
			// over the products.
			sec.ReadModelSize = r.Total * products
		}
		sec.Queries = append(sec.Queries, r)
	}
	return sec
}

// ReplayResult is the rate of rebuilding a read model from the stream.
type ReplayResult struct {
	Method    string  `json:"method"`
	Events    int64   `json:"events"`
	Batches   int64   `json:"batches"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"perSecond"`
}

const replayMethod = "bootstrap.Replay (what `projector replay` runs) into a fresh read-model database of the service's kind: new " +
	"generation collection (table) with its indexes, a new durable consumer read with jetstream.CatchUp (batches of " +
	"bootstrap.ProjectorBatch, each acknowledged before the next fetch), readmodel.NewProjector keeping its own " +
	"index (no store reads), then the guarded activation; timed from the call until it returns"

// replay rebuilds the read model from the whole stream into a fresh
// database with the replay command's own function, and times it.
func replay(ctx context.Context, st *stack, runID string) (ReplayResult, error) {
	res := ReplayResult{Method: replayMethod}
	nc, err := st.svc.ConnectNATS(nats.Name("connreg-bench-replay"))
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	dbName := "connreg_replay_" + runID
	consumer := "bench-replay-" + runID
	repo, drop, err := st.scratchReadModel(ctx, dbName)
	if err != nil {
		return res, err
	}
	defer drop()
	var out bootstrap.ReplayResult
	defer func() {
		if out.Consumer != "" {
			_ = js.DeleteConsumer(context.Background(), events.StreamName, out.Consumer)
		}
	}()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var batches atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	start := time.Now()
	out, err = bootstrap.Replay(rctx, js, repo, quiet, bootstrap.ReplayOptions{
		Consumer: consumer,
		Progress: func(bootstrap.ReplayProgress) { batches.Add(1) },
	})
	elapsed := time.Since(start)
	res.Events = int64(out.Events)
	res.Batches = batches.Load()
	res.Seconds = round(elapsed.Seconds())
	res.PerSecond = perSecond(res.Events, elapsed)
	return res, err
}

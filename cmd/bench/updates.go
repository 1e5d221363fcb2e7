package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/readmodel"
)

// UpdateSection is the update phase, at the read model's full size: what
// every PATCH, DELETE and connection test costs once the registry is big.
type UpdateSection struct {
	ReadModelSize int64 `json:"readModelSize"`
	// Patch is a closed loop of PATCHes (a new host, no If-Match) on random
	// live connections.
	Patch RateResult `json:"patch"`
	// Lag is the projection lag of PATCHes sent open loop at LagRate.
	Lag UpdateLag `json:"lag"`
	// Tested is how fast the projector applies connection.tested.v1 events.
	Tested TestedResult `json:"tested"`
	// StoreGet is a read by id from the read-model store itself (not the
	// fold, not an in-memory index), on random ids.
	StoreGet Latency `json:"storeGet"`
	// RSSBytes is the process's resident memory after the phase, MaxRSSBytes
	// its peak so far (the service, NATS, the read model and the client all
	// run in this process).
	RSSBytes    int64 `json:"rssBytes"`
	MaxRSSBytes int64 `json:"maxRssBytes"`
}

// UpdateLag is the lag from a PATCH's 200 to the read-model store holding
// that version.
type UpdateLag struct {
	TargetPerSecond   float64 `json:"targetPerSecond"`
	AchievedPerSecond float64 `json:"achievedPerSecond"`
	Updated           int64   `json:"updated"`
	Errors            int64   `json:"errors"`
	Timeouts          int64   `json:"timeouts"`
	PatchLatency      Latency `json:"patchLatency"`
	Lag               Latency `json:"lag"`
	Method            string  `json:"method"`
}

// TestedResult is the projection rate of connection.tested.v1 events.
type TestedResult struct {
	Events    int64   `json:"events"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"perSecond"`
	Method    string  `json:"method"`
}

// sampleIDs returns up to n ids of live connections, read from the store by
// cursor pages.
func (s *stack) sampleIDs(ctx context.Context, n int) ([]string, error) {
	var ids []string
	q := readmodel.ListQuery{Limit: 100}
	for len(ids) < n {
		var (
			page readmodel.ListResult
			err  error
		)
		if s.svc.Index != nil {
			page, err = s.svc.Index.List(ctx, q)
		} else {
			page, err = s.svc.ActiveReadModel().List(ctx, q)
		}
		if err != nil {
			return nil, err
		}
		for _, d := range page.Items {
			ids = append(ids, d.ID)
		}
		if len(page.Items) < q.Limit {
			break
		}
		c := readmodel.CursorOf(&page.Items[len(page.Items)-1], readmodel.SortCreatedAt)
		q.After = &c
	}
	return ids[:min(n, len(ids))], nil
}

// patchOne changes one connection's host and returns the version the answer
// names (its ETag).
func patchOne(ctx context.Context, client *http.Client, base, id string, n int64) (uint64, int, string) {
	body := `{"host":"db-upd-` + strconv.FormatInt(n, 10) + `.example.com","password":"bench-moved-pw"}` // a move sends the password again (REG-0423)
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, base+"/v1/management/connections/"+id, strings.NewReader(body))
	if err != nil {
		return 0, 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, resp.StatusCode, fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	v, err := strconv.ParseUint(strings.Trim(resp.Header.Get("ETag"), `"`), 10, 64)
	if err != nil {
		return 0, resp.StatusCode, "200 without a numeric ETag: " + resp.Header.Get("ETag")
	}
	return v, resp.StatusCode, ""
}

// updatePhase runs the update measures on ids.
func updatePhase(ctx context.Context, st *stack, ids []string, conc int, lagRate float64, d time.Duration, testedEvents int) (UpdateSection, error) {
	var sec UpdateSection
	size, err := readModelSize(ctx, st)
	if err != nil {
		return sec, err
	}
	sec.ReadModelSize = size
	var n atomic.Int64

	// PATCH throughput, closed loop.
	sec.Patch = patchLoop(ctx, st.base, ids, conc, d, &n)
	if _, err := st.waitProjected(ctx, 5*time.Minute); err != nil {
		return sec, err
	}

	// Lag during an open-loop update rate.
	sec.Lag = updateLag(ctx, st, ids, lagRate, d, &n)
	if _, err := st.waitProjected(ctx, 5*time.Minute); err != nil {
		return sec, err
	}

	// Tested events applied per second.
	if sec.Tested, err = testedRate(ctx, st, ids, testedEvents); err != nil {
		return sec, err
	}

	// Store reads by id.
	var lat []time.Duration
	deadline := time.Now().Add(max(d/2, 300*time.Millisecond))
	repo := st.svc.ActiveReadModel()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		id := ids[rand.IntN(len(ids))]
		t := time.Now()
		if _, err := repo.Get(ctx, id); err != nil {
			return sec, fmt.Errorf("store get %s: %w", id, err)
		}
		lat = append(lat, time.Since(t))
	}
	sec.StoreGet = summarize(lat)
	sec.RSSBytes, sec.MaxRSSBytes = rss()
	return sec, nil
}

func patchLoop(ctx context.Context, base string, ids []string, conc int, d time.Duration, n *atomic.Int64) RateResult {
	rec := newRecorder()
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range conc {
		wg.Go(func() {
			client := newClient()
			defer client.CloseIdleConnections()
			var w workerLog
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := time.Now()
				_, status, detail := patchOne(ctx, client, base, ids[rand.IntN(len(ids))], n.Add(1))
				if detail != "" {
					w.failure(status, detail)
					continue
				}
				w.success(time.Since(t))
			}
			rec.merge(&w)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	return RateResult{Name: fmt.Sprintf("PATCH (new host) on random connections, concurrency %d", conc), Concurrency: conc,
		Ops: rec.ok, Errors: rec.errors, Seconds: round(elapsed.Seconds()), PerSecond: perSecond(rec.ok, elapsed),
		Latency: summarize(rec.lat), Note: strings.Join(rec.samples, "; ")}
}

func updateLag(ctx context.Context, st *stack, ids []string, rate float64, d time.Duration, n *atomic.Int64) UpdateLag {
	res := UpdateLag{TargetPerSecond: rate, Method: "PATCHes sent open loop at the target rate by 32 workers; for every one, " +
		"the read-model store's Get(id) every " + pollInterval.String() + " until it holds the version of the answer's ETag; " +
		"lag = that Get's return - the 200's arrival"}
	repo := st.svc.ActiveReadModel()
	var mu sync.Mutex
	var lags []time.Duration
	var timeouts atomic.Int64
	var watchers sync.WaitGroup
	poll := func(id string, version uint64, at time.Time) {
		defer watchers.Done()
		for ctx.Err() == nil {
			doc, err := repo.Get(ctx, id)
			now := time.Now()
			if err == nil && doc.Version >= version {
				mu.Lock()
				lags = append(lags, now.Sub(at))
				mu.Unlock()
				return
			}
			if now.Sub(at) > lagTimeout {
				timeouts.Add(1)
				return
			}
			time.Sleep(pollInterval)
		}
	}
	rec := newRecorder()
	var seq atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	total := int64(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	for range 32 {
		wg.Go(func() {
			client := newClient()
			defer client.CloseIdleConnections()
			var w workerLog
			for ctx.Err() == nil {
				i := seq.Add(1) - 1
				if i >= total {
					break
				}
				if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
					time.Sleep(wait)
				}
				id := ids[rand.IntN(len(ids))]
				t := time.Now()
				v, status, detail := patchOne(ctx, client, st.base, id, n.Add(1))
				if detail != "" {
					w.failure(status, detail)
					continue
				}
				done := time.Now()
				w.success(done.Sub(t))
				watchers.Add(1)
				go poll(id, v, done)
			}
			rec.merge(&w)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	watchers.Wait()
	res.Updated, res.Errors = rec.ok, rec.errors
	res.AchievedPerSecond = perSecond(rec.ok, elapsed)
	res.PatchLatency = summarize(rec.lat)
	res.Timeouts = timeouts.Load()
	res.Lag = summarize(lags)
	return res
}

// testedRate appends count connection.tested.v1 events (round robin over
// ids, each the next version of its connection) straight to the stream and
// times the service's projector from the first append until it has applied
// the last.
func testedRate(ctx context.Context, st *stack, ids []string, count int) (TestedResult, error) {
	res := TestedResult{Method: "connection.tested.v1 events published asynchronously to the stream (eventstore.EventMessage, " +
		"round robin over sampled connections); time from the first publish until the projector's watermark passes the last"}
	if count <= 0 || len(ids) == 0 {
		return res, nil
	}
	docs, err := st.svc.ActiveReadModel().Documents(ctx, ids)
	if err != nil {
		return res, err
	}
	version := make(map[string]uint64, len(docs))
	for id, d := range docs {
		version[id] = d.Version
	}
	start := time.Now()
	var futures []jetstream.PubAckFuture
	var last uint64
	flush := func() error {
		for _, f := range futures {
			select {
			case ack := <-f.Ok():
				last = max(last, ack.Sequence)
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	for i := range count {
		id := ids[i%len(ids)]
		v, ok := version[id]
		if !ok {
			continue
		}
		version[id] = v + 1
		e := events.Event{
			Metadata: events.Metadata{EventID: uuid.NewString(), AggregateID: id, AggregateVersion: v + 1,
				OccurredAt: time.Now().UTC().Truncate(time.Millisecond), Actor: "bench-tested"},
			Payload: &events.ConnectionTestedV1{Status: "success", LatencyMs: 3},
		}
		m, err := eventstore.EventMessage(e, "default") // the bench seeds organization default
		if err != nil {
			return res, err
		}
		f, err := st.js.PublishMsgAsync(m)
		if err != nil {
			return res, err
		}
		futures = append(futures, f)
		res.Events++
		if len(futures) >= 1000 {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := st.svc.Projector.WaitFor(wctx, last); err != nil {
		return res, fmt.Errorf("tested events: projector at %d, want %d: %w", st.svc.Projector.Projected(), last, err)
	}
	elapsed := time.Since(start)
	res.Seconds = round(elapsed.Seconds())
	res.PerSecond = perSecond(res.Events, elapsed)
	return res, nil
}

// rss returns the resident memory now (VmRSS) and at peak (getrusage).
func rss() (now, peak int64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		peak = ru.Maxrss * 1024
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, peak
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(rest)), "kB")), 10, 64)
			return kb * 1024, peak
		}
	}
	return 0, peak
}

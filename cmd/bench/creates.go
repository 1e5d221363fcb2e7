package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// products is how many X-Product-Name values the bench spreads connections
// over; the filtered list query selects one of them (1/products of the rows).
const products = 10

func productName(n int64) string { return "bench-product-" + strconv.FormatInt(n%products, 10) }

// createBody is a create request shaped like the README's example, with a
// config name unique to this run and number.
func createBody(runID string, n int64) []byte {
	b := make([]byte, 0, 400)
	b = append(b, `{"configName":"bench-`...)
	b = append(b, runID...)
	b = append(b, '-')
	b = strconv.AppendInt(b, n, 10)
	b = append(b, `","type":"POSTGRESQL","host":"db-`...)
	b = strconv.AppendInt(b, n%100, 10)
	b = append(b, `.example.com","port":5432,"databaseName":"mydatabase","userName":"dbuser","password":"secretpassword-`...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, `","ssl":{"mode":"require"},"metadata":{"environment":"production","team":"data-engineering"}}`...)
	return b
}

// creator sends creates through the real HTTP API.
type creator struct {
	base  string
	runID string
	next  atomic.Int64 // every request gets a new number: a new config name
}

// createOne posts one unique create and checks the answer: 201 with the new
// connection's id. It returns the id, or the status (0: transport error) and
// a description of what went wrong.
func (c *creator) createOne(ctx context.Context, client *http.Client) (string, int, string) {
	n := c.next.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/management/connections", bytes.NewReader(createBody(c.runID, n)))
	if err != nil {
		return "", 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Product-Name", productName(n))
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err.Error()
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", 0, err.Error()
	}
	if resp.StatusCode != http.StatusCreated {
		return "", resp.StatusCode, fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &created); err != nil || created.ID == "" {
		return "", resp.StatusCode, fmt.Sprintf("201 without an id: %s", body)
	}
	return created.ID, resp.StatusCode, ""
}

// CreateResult is one closed-loop create phase: conc workers, each sending
// its next create as soon as the previous answer arrives.
type CreateResult struct {
	Concurrency    int              `json:"concurrency"`
	Seconds        float64          `json:"seconds"`
	Requests       int64            `json:"requests"`
	Created        int64            `json:"created"`
	Errors         int64            `json:"errors"`
	ErrorsByStatus map[string]int64 `json:"errorsByStatus,omitempty"`
	ErrorSamples   []string         `json:"errorSamples,omitempty"`
	PerSecond      float64          `json:"perSecond"`
	Latency        Latency          `json:"latency"`
	// DrainSeconds is how long the projector needed, after the phase, to
	// reflect every create of the phase in the read model.
	DrainSeconds float64 `json:"drainSeconds"`
	// CPUSeconds is the process's CPU time (user + system, getrusage) over
	// the phase: client, API, NATS, read model and projector together;
	// CPUPerCreateUs is that over the creates. It moves far less with the
	// machine's other work than creates/s.
	CPUSeconds     float64 `json:"cpuSeconds"`
	CPUPerCreateUs float64 `json:"cpuPerCreateUs"`
}

func (c *creator) closedLoop(ctx context.Context, conc int, d time.Duration) CreateResult {
	rec := newRecorder()
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := newClient()
			defer client.CloseIdleConnections()
			var w workerLog
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := time.Now()
				_, status, detail := c.createOne(ctx, client)
				if detail != "" {
					w.failure(status, detail)
					continue
				}
				w.success(time.Since(t))
			}
			rec.merge(&w)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return CreateResult{
		Concurrency:    conc,
		Seconds:        round(elapsed.Seconds()),
		Requests:       rec.ok + rec.errors,
		Created:        rec.ok,
		Errors:         rec.errors,
		ErrorsByStatus: statusKeys(rec.byStatus),
		ErrorSamples:   rec.samples,
		PerSecond:      perSecond(rec.ok, elapsed),
		Latency:        summarize(rec.lat),
	}
}

func statusKeys(m map[int]int64) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "transport"
		}
		out[name] = v
	}
	return out
}

// LagResult is the projection lag: from the 201 to the connection readable
// in the read model, under an open-loop create rate.
type LagResult struct {
	TargetPerSecond   float64          `json:"targetPerSecond"`
	AchievedPerSecond float64          `json:"achievedPerSecond"`
	Workers           int              `json:"workers"`
	Seconds           float64          `json:"seconds"`
	Created           int64            `json:"created"`
	Errors            int64            `json:"errors"`
	ErrorsByStatus    map[string]int64 `json:"errorsByStatus,omitempty"`
	CreateLatency     Latency          `json:"createLatency"`
	SampleEvery       int64            `json:"sampleEvery"`
	Timeouts          int64            `json:"timeouts"`
	PollIntervalMs    float64          `json:"pollIntervalMs"`
	Method            string           `json:"method"`
	// Lag is the read-model check; Watermark the projector's own view
	// (Projected() passing the stream's newest event sequence read just
	// after the 201, an upper bound for that create).
	Lag       Latency `json:"lag"`
	Watermark Latency `json:"watermark"`
	// PollQuery is the latency of one read-model Get while polling: the
	// lag cannot be resolved finer than this plus the poll interval.
	PollQuery Latency `json:"pollQuery"`
}

// pollInterval is how often a sampled id is looked up in the read model.
const pollInterval = 2 * time.Millisecond

// lagTimeout is when a sampled create counts as never projected.
const lagTimeout = 10 * time.Second

// projectionLag creates at rate per second (open loop: the i-th create is
// due at start+i/rate, whatever happened to the others) from workers
// goroutines, and for every sampleEvery-th created id measures when it
// becomes readable in the read model the API reads (the in-memory index
// that the projector fills after each successful store write, or the store
// itself when the projector runs elsewhere).
func (c *creator) projectionLag(ctx context.Context, st *stack, rate float64, d time.Duration, workers int) LagResult {
	sampleEvery := max(int64(1), int64(rate/100))
	res := LagResult{
		TargetPerSecond: round(rate), Workers: workers, SampleEvery: sampleEvery,
		PollIntervalMs: ms(pollInterval),
		Method: "for every sampled create, a read-model Get(id) (index, else store) every " + pollInterval.String() +
			" until found; lag = time the Get that found it returned - time the 201 arrived",
	}
	var mu sync.Mutex
	var lags, marks, polls []time.Duration
	var timeouts atomic.Int64
	var watchers sync.WaitGroup
	watch := func(id string, at time.Time) {
		defer watchers.Done()
		if seq, err := st.lastEventSeq(ctx); err == nil {
			wctx, cancel := context.WithTimeout(ctx, lagTimeout)
			if st.svc.Projector.WaitFor(wctx, seq) == nil {
				mu.Lock()
				marks = append(marks, time.Since(at))
				mu.Unlock()
			}
			cancel()
		}
	}
	poll := func(id string, at time.Time) {
		defer watchers.Done()
		var mine []time.Duration
		defer func() {
			mu.Lock()
			polls = append(polls, mine...)
			mu.Unlock()
		}()
		for ctx.Err() == nil {
			t := time.Now()
			_, err := st.readModelGet(ctx, id)
			now := time.Now()
			mine = append(mine, now.Sub(t))
			if err == nil {
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
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
				t := time.Now()
				id, status, detail := c.createOne(ctx, client)
				if detail != "" {
					w.failure(status, detail)
					continue
				}
				done := time.Now()
				w.success(done.Sub(t))
				if i%sampleEvery == 0 {
					watchers.Add(2)
					go poll(id, done)
					go watch(id, done)
				}
			}
			rec.merge(&w)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	watchers.Wait()

	res.Seconds = round(elapsed.Seconds())
	res.Created = rec.ok
	res.Errors = rec.errors
	res.ErrorsByStatus = statusKeys(rec.byStatus)
	res.AchievedPerSecond = perSecond(rec.ok, elapsed)
	res.CreateLatency = summarize(rec.lat)
	res.Timeouts = timeouts.Load()
	res.Lag = summarize(lags)
	res.Watermark = summarize(marks)
	res.PollQuery = summarize(polls)
	return res
}

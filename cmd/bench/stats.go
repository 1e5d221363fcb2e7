package main

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Latency summarizes a set of durations, in milliseconds, nearest-rank
// percentiles.
type Latency struct {
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50Ms"`
	P95Ms   float64 `json:"p95Ms"`
	P99Ms   float64 `json:"p99Ms"`
	MaxMs   float64 `json:"maxMs"`
	MeanMs  float64 `json:"meanMs"`
}

func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		i = max(0, min(i, len(s)-1))
		return ms(s[i])
	}
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	return Latency{
		Samples: len(s),
		P50Ms:   pct(0.50),
		P95Ms:   pct(0.95),
		P99Ms:   pct(0.99),
		MaxMs:   ms(s[len(s)-1]),
		MeanMs:  round(float64(sum) / float64(len(s)) / 1e6),
	}
}

func ms(d time.Duration) float64 { return round(float64(d) / 1e6) }

// round keeps three decimals, enough for milliseconds and rates.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round(float64(n) / d.Seconds())
}

// recorder collects latencies and outcomes from many goroutines; each worker
// keeps its own slice and merges once, so recording costs no lock per call.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	ok       int64
	errors   int64
	byStatus map[int]int64
	samples  []string // the first few error answers, for the report
}

func newRecorder() *recorder { return &recorder{byStatus: map[int]int64{}} }

type workerLog struct {
	lat      []time.Duration
	ok       int64
	errors   int64
	byStatus map[int]int64
	samples  []string
}

func (w *workerLog) success(d time.Duration) {
	w.lat = append(w.lat, d)
	w.ok++
}

// failure counts an error; status 0 is a transport error.
func (w *workerLog) failure(status int, detail string) {
	w.errors++
	if w.byStatus == nil {
		w.byStatus = map[int]int64{}
	}
	w.byStatus[status]++
	if len(w.samples) < 3 {
		w.samples = append(w.samples, truncate(detail, 300))
	}
}

func (r *recorder) merge(w *workerLog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, w.lat...)
	r.ok += w.ok
	r.errors += w.errors
	for k, v := range w.byStatus {
		r.byStatus[k] += v
	}
	for _, s := range w.samples {
		if len(r.samples) < 5 {
			r.samples = append(r.samples, s)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

package dbprobe

import (
	"sync"
	"time"
)

// RateLimiter allows at most Limit tests per Per for each connection id (default 10 per minute), so the
// test endpoint cannot be used to hammer a database or to scan a network. It is a GCRA: the quota
// refills continuously, bursts up to Limit are allowed, and a refusal says exactly when to retry. It is
// safe for concurrent use and keeps memory bounded by forgetting ids whose quota has fully refilled.
type RateLimiter struct {
	mu       sync.Mutex
	interval time.Duration // time to earn one test back
	burst    time.Duration // Per: how far ahead the schedule may run
	tat      map[string]time.Time
	swept    time.Time
}

// NewRateLimiter returns a limiter of limit tests per per; zero or negative values take the defaults
// (10 per minute).
func NewRateLimiter(limit int, per time.Duration) *RateLimiter {
	if limit <= 0 {
		limit = 10
	}
	if per <= 0 {
		per = time.Minute
	}
	return &RateLimiter{interval: per / time.Duration(limit), burst: per, tat: map[string]time.Time{}}
}

// Allow records one test of id at now if the quota allows it. When it does not, retryAfter is how long
// until the next test would be allowed (for a Retry-After header). The clock is passed in so callers and
// tests control it.
func (r *RateLimiter) Allow(id string, now time.Time) (ok bool, retryAfter time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(now)
	tat, seen := r.tat[id]
	if !seen || tat.Before(now) {
		tat = now
	}
	next := tat.Add(r.interval)
	if allowAt := next.Add(-r.burst); now.Before(allowAt) {
		return false, allowAt.Sub(now)
	}
	r.tat[id] = next
	return true, 0
}

// sweep forgets ids whose schedule is in the past (their quota is full again) at most once per Per.
func (r *RateLimiter) sweep(now time.Time) {
	if now.Sub(r.swept) < r.burst {
		return
	}
	r.swept = now
	for id, tat := range r.tat {
		if !tat.After(now) {
			delete(r.tat, id)
		}
	}
}

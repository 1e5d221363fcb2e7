package telemetry

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Check is one dependency the service needs to serve: it answers nil when
// the dependency works.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
	// Cache keeps an answer this long (0: ask every time), for a check that
	// costs the dependency something (Vault).
	Cache time.Duration

	mu     sync.Mutex
	at     time.Time
	last   error
	lastMs float64
}

// CheckResult is a check's state in the /readyz body.
type CheckResult struct {
	State     string  `json:"state"` // "up" or "down"
	LatencyMs float64 `json:"latencyMs"`
	Error     string  `json:"error,omitempty"`
	Cached    bool    `json:"cached,omitempty"`
}

// Readiness runs every check, concurrently, each bounded by Timeout.
type Readiness struct {
	Checks  []*Check
	Timeout time.Duration
}

// ReadyBody is the /readyz answer: the error shape's fields when not ready,
// and every check.
type ReadyBody struct {
	Status  string                 `json:"status"` // "ready" or "unavailable"
	Code    string                 `json:"code,omitempty"`
	Title   string                 `json:"title,omitempty"`
	Message string                 `json:"message,omitempty"`
	Fields  map[string]string      `json:"fields,omitempty"` // the checks that are down
	Checks  map[string]CheckResult `json:"checks"`
}

// Run runs the checks and reports whether all are up.
func (r *Readiness) Run(ctx context.Context) (bool, map[string]CheckResult) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	out := make(map[string]CheckResult, len(r.Checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range r.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := c.run(ctx, timeout)
			mu.Lock()
			out[c.Name] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	ok := true
	for _, res := range out {
		ok = ok && res.State == "up"
	}
	return ok, out
}

func (c *Check) run(ctx context.Context, timeout time.Duration) CheckResult {
	c.mu.Lock()
	defer c.mu.Unlock() // one probe of a dependency at a time
	cached := c.Cache > 0 && !c.at.IsZero() && time.Since(c.at) < c.Cache
	if !cached {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		c.last = c.Run(cctx)
		cancel()
		c.at, c.lastMs = time.Now(), float64(time.Since(start).Microseconds())/1000
	}
	res := CheckResult{State: "up", LatencyMs: c.lastMs, Cached: cached}
	if c.last != nil {
		// Check errors are our own wording about a dependency (no secrets:
		// nothing a caller sent reaches them).
		res.State, res.Error = "down", c.last.Error()
	}
	return res
}

// ServeHTTP answers 200 when every check is up, 503 otherwise, with each
// check's state and latency.
func (r *Readiness) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	ok, checks := r.Run(req.Context())
	body := ReadyBody{Status: "ready", Checks: checks}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
		body.Status, body.Code, body.Title = "unavailable", "REG-5030", "Not ready"
		body.Message = "A dependency the service needs does not answer; see checks."
		body.Fields = map[string]string{}
		for name, res := range checks {
			if res.State != "up" {
				body.Fields[name] = "down"
			}
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/hashicorp/vault/api"

	"github.com/connreg/registry/domain"
)

// batcher coalesces concurrent calls of one transit operation (encrypt,
// decrypt, rewrap) into batch_input requests. It never waits on a timer:
// a call is sent as soon as one of MaxInFlight request slots is free, and
// calls that arrive while every slot is busy are gathered (up to MaxBatch)
// into the next request. A lone call therefore costs one round trip, and
// under load the batch size grows with the queue.
type batcher struct {
	s    *Sealer
	op   string // "encrypt", "decrypt", "rewrap"
	path string // <mount>/<op>/<key>
	in   chan *call
	// slots holds one token per outstanding request.
	slots chan struct{}
}

// call is one caller's item, waiting for its own result.
type call struct {
	ctx   context.Context
	input map[string]string
	res   chan callResult // buffered: the flusher never blocks on a caller
}

type callResult struct {
	item batchItem
	err  error
}

// batchItem is one entry of transit's batch_results.
type batchItem struct {
	Ciphertext string `json:"ciphertext"`
	Plaintext  string `json:"plaintext"`
	KeyVersion int    `json:"key_version"`
	Reference  string `json:"reference"`
	Error      string `json:"error"`
}

func (s *Sealer) newBatcher(op string) *batcher {
	b := &batcher{
		s:     s,
		op:    op,
		path:  s.cfg.TransitMount + "/" + op + "/" + s.cfg.Key,
		in:    make(chan *call, s.cfg.MaxBatch),
		slots: make(chan struct{}, s.cfg.MaxInFlight),
	}
	if s.cfg.MaxBatch > 1 {
		s.batchersWG.Add(1)
		go b.run()
	}
	return b
}

// do submits one item and waits for its result, for at most the timeout.
func (b *batcher) do(ctx context.Context, input map[string]string) (batchItem, error) {
	ctx, cancel := context.WithTimeout(ctx, b.s.cfg.Timeout)
	defer cancel()
	c := &call{ctx: ctx, input: input, res: make(chan callResult, 1)}

	if b.s.cfg.MaxBatch <= 1 {
		// Coalescing off: one request per call, no queue.
		if err := b.s.enter(); err != nil {
			return batchItem{}, err
		}
		b.s.flushes.Add(1)
		b.s.mu.RUnlock()
		defer b.s.flushes.Done()
		b.flush(ctx, []*call{c})
		r := <-c.res
		return r.item, r.err
	}

	if err := b.s.enter(); err != nil {
		return batchItem{}, err
	}
	select {
	case b.in <- c:
		b.s.mu.RUnlock()
	case <-ctx.Done():
		b.s.mu.RUnlock()
		return batchItem{}, b.s.ctxErr(ctx, b.op)
	}
	select {
	case r := <-c.res:
		return r.item, r.err
	case <-ctx.Done():
		return batchItem{}, b.s.ctxErr(ctx, b.op)
	}
}

// enter read-locks the sealer for an enqueue, or reports it closed.
func (s *Sealer) enter() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return domain.Unavailable(domain.DependencySealer, ErrClosed)
	}
	return nil
}

// ctxErr explains why a caller stopped waiting: its own cancellation is
// returned as is; a deadline (ours or the caller's) means Vault was too slow.
func (s *Sealer) ctxErr(ctx context.Context, op string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("vault %s: %w", op, ctx.Err())
	}
	return s.unavailable("transit "+op, context.DeadlineExceeded)
}

// run gathers calls into batches until the input channel is closed, then
// sends what it holds and returns.
func (b *batcher) run() {
	defer b.s.batchersWG.Done()
	for {
		first, ok := <-b.in
		if !ok {
			return
		}
		batch := []*call{first}
		open := true
		acquired := false
		for !acquired && len(batch) < b.s.cfg.MaxBatch {
			select {
			case c, ok := <-b.in:
				if !ok {
					open = false
					b.slots <- struct{}{}
					acquired = true
					break
				}
				batch = append(batch, c)
			case b.slots <- struct{}{}:
				acquired = true
			}
		}
		if !acquired {
			b.slots <- struct{}{}
		}
		batch = live(batch)
		if len(batch) == 0 {
			<-b.slots
		} else {
			b.s.flushes.Add(1)
			go func(batch []*call) {
				defer b.s.flushes.Done()
				defer func() { <-b.slots }()
				ctx, cancel := context.WithTimeout(context.Background(), b.s.cfg.Timeout)
				defer cancel()
				b.flush(ctx, batch)
			}(batch)
		}
		if !open {
			return
		}
	}
}

// live drops calls whose caller has already given up.
func live(batch []*call) []*call {
	out := batch[:0]
	for _, c := range batch {
		if c.ctx.Err() == nil {
			out = append(out, c)
		}
	}
	return out
}

// flush sends one batch request and hands every caller its own result.
func (b *batcher) flush(ctx context.Context, batch []*call) {
	inputs := make([]map[string]string, len(batch))
	for i, c := range batch {
		in := make(map[string]string, len(c.input)+1)
		for k, v := range c.input {
			in[k] = v
		}
		in["reference"] = strconv.Itoa(i)
		inputs[i] = in
	}
	items, status, err := b.send(ctx, inputs)
	for i, c := range batch {
		switch {
		case err != nil:
			c.res <- callResult{err: err}
		case items[i].Error != "" && status >= 500:
			c.res <- callResult{err: domain.Unavailable(domain.DependencySealer,
				fmt.Errorf("vault transit %s: %s", b.op, items[i].Error))}
		case items[i].Error != "":
			c.res <- callResult{err: fmt.Errorf("vault transit %s: %s: %w", b.op, items[i].Error, ErrRejected)}
		default:
			c.res <- callResult{item: items[i]}
		}
	}
}

// send posts batch_input and returns batch_results in input order. Transit
// answers 400 (or 500) with the per-item results when some items failed, so
// the body is read whatever the status.
func (b *batcher) send(ctx context.Context, inputs []map[string]string) ([]batchItem, int, error) {
	b.s.requests.Add(1)
	b.s.items.Add(uint64(len(inputs)))
	body, err := json.Marshal(map[string]any{"batch_input": inputs})
	if err != nil {
		return nil, 0, fmt.Errorf("vault transit %s: encode request: %w", b.op, err)
	}
	resp, reqErr := b.s.client.Logical().WriteRawWithContext(ctx, b.path, body)
	if resp == nil || resp.Body == nil {
		if reqErr == nil {
			reqErr = errors.New("empty answer")
		}
		return nil, 0, b.s.unavailable("transit "+b.op, reqErr)
	}
	defer resp.Body.Close()

	var parsed struct {
		Data struct {
			BatchResults []batchItem `json:"batch_results"`
		} `json:"data"`
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, 0, b.s.unavailable("transit "+b.op, err)
	}
	decErr := json.Unmarshal(buf.Bytes(), &parsed)
	results := parsed.Data.BatchResults
	if decErr != nil || len(results) != len(inputs) {
		if reqErr == nil {
			reqErr = fmt.Errorf("answer has %d batch results for %d items", len(results), len(inputs))
		}
		return nil, 0, b.s.unavailable("transit "+b.op, reqErr)
	}
	for i := range results {
		if r := results[i].Reference; r != "" && r != strconv.Itoa(i) {
			return nil, 0, b.s.unavailable("transit "+b.op, fmt.Errorf("batch result %d carries reference %q", i, r))
		}
	}
	status := http.StatusOK
	var re *api.ResponseError
	if errors.As(reqErr, &re) {
		status = re.StatusCode
	}
	return results, status, nil
}

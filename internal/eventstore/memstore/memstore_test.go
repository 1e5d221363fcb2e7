package memstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/connreg/registry/internal/eventstore/eventstoretest"
	"github.com/connreg/registry/internal/eventstore/memstore"
)

// clock is a settable clock, so claims age without the test sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestContract runs the event-store contract the NATS store passes.
func TestContract(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstoretest.Harness {
		c := &clock{t: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
		s := memstore.New(c.now)
		return eventstoretest.Harness{Store: s, Grace: s.ClaimGrace, Advance: c.advance, ClaimOnly: s.ClaimOnly}
	})
}

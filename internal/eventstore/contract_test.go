package eventstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/internal/eventstore/eventstoretest"
)

// TestContract runs the event-store contract against the NATS store on a
// real embedded nats-server, one server per subtest.
func TestContract(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstoretest.Harness {
		f := newFixture(t)
		var offset atomic.Int64 // how far the store's clock runs ahead
		f.store.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		return eventstoretest.Harness{
			Store:   f.store,
			Grace:   f.store.ClaimGrace,
			Advance: func(d time.Duration) { offset.Add(int64(d)) },
			ClaimOnly: func(ctx context.Context, n commands.NameClaim, id string) error {
				_, err := f.store.claim(ctx, n, id)
				return err
			},
		}
	})
}

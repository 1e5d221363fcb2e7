package eventstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/readmodel"
)

// leasedProjectors runs projectors that share the projector lease, each
// on its own NATS connection, and records who consumes.
type leasedProjectors struct {
	t       *testing.T
	f       *fixture
	ttl     time.Duration
	active  atomic.Int32 // projectors consuming now
	overlap atomic.Int32 // times two consumed at once
	holder  atomic.Value // name of the last projector that started consuming
	mu      sync.Mutex
	seen    map[uint64]int // stream sequence -> deliveries handled
	sent    []uint64       // stream sequences of the appended events
}

type leasedProjector struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

func (lp *leasedProjectors) start(name string) *leasedProjector {
	t := lp.t
	t.Helper()
	nc, err := nats.Connect(lp.f.url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	lease, err := OpenLease(t.Context(), js, ProjectorLeaseKey, name, lp.ttl, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &leasedProjector{nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		lease.Hold(ctx, func(ctx context.Context) {
			if lp.active.Add(1) > 1 {
				lp.overlap.Add(1)
			}
			defer lp.active.Add(-1)
			lp.holder.Store(name)
			_ = Consume(ctx, js, ProjectorConsumer, 16, logger, func(_ context.Context, batch []readmodel.Message) error {
				lp.mu.Lock()
				defer lp.mu.Unlock()
				for _, m := range batch {
					lp.seen[m.Sequence]++
				}
				return nil
			})
		})
	}()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

// crash ends a projector as kill -9 would: its connection drops at once and
// it never releases the lease.
func (p *leasedProjector) crash() {
	p.nc.Close()
	p.cancel()
	<-p.done
}

func (lp *leasedProjectors) waitHolder(name string, within time.Duration) time.Duration {
	lp.t.Helper()
	start := time.Now()
	for lp.holder.Load() != name || lp.active.Load() != 1 {
		if time.Since(start) > within {
			lp.t.Fatalf("%s did not become the active projector within %s", name, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// appendAndWait appends n events and waits until every event of the stream
// has been handled.
func (lp *leasedProjectors) appendAndWait(n int) {
	lp.t.Helper()
	var last uint64
	for i := range n {
		seq, err := lp.f.store.Append(lp.t.Context(), createAppend(uuid.NewString(), fmt.Sprintf("db-%d-%d", time.Now().UnixNano(), i)))
		if err != nil {
			lp.t.Fatal(err)
		}
		last = seq
		lp.sent = append(lp.sent, seq)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		lp.mu.Lock()
		_, ok := lp.seen[last]
		lp.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			lp.t.Fatalf("event %d was not projected", last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProjectorLeaseFailover: of two projectors sharing the lease only one
// consumes; when the active one is cut off from NATS (a partition: it keeps
// running) or crashes, the standby takes over within seconds, never while
// the other still consumes, and every event is projected.
func TestProjectorLeaseFailover(t *testing.T) {
	lp := &leasedProjectors{t: t, f: newFixture(t), ttl: 2 * time.Second, seen: map[uint64]int{}}
	a := lp.start("a")
	lp.waitHolder("a", 10*time.Second)
	b := lp.start("b")
	lp.appendAndWait(40)
	if lp.holder.Load() != "a" {
		t.Fatalf("the standby took over from a live holder")
	}

	// Partition: a's connection drops but the process goes on; it must
	// stop consuming before b starts.
	a.nc.Close()
	took := lp.waitHolder("b", 5*lp.ttl)
	t.Logf("takeover after the holder was cut off: %s (lease ttl %s)", took, lp.ttl)
	a.cancel()
	<-a.done
	lp.appendAndWait(40)

	// Crash of the new holder, with a third projector standing by.
	lp.start("c")
	b.crash()
	took = lp.waitHolder("c", 5*lp.ttl)
	t.Logf("takeover after the holder crashed: %s (lease ttl %s)", took, lp.ttl)
	lp.appendAndWait(40)

	if n := lp.overlap.Load(); n != 0 {
		t.Fatalf("two projectors consumed at once %d times", n)
	}
	lp.mu.Lock()
	defer lp.mu.Unlock()
	for _, seq := range lp.sent {
		if lp.seen[seq] == 0 {
			t.Errorf("event at sequence %d was never projected", seq)
		}
	}
}

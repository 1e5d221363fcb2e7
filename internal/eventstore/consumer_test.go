package eventstore

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/readmodel"
)

// TestKilledProjectorLosesNoEvent: a projector received events and was
// killed before writing them (nothing acknowledged); more events came. The
// projector that takes over the durable consumer must hand every event to
// its handler, the dead one's first and in stream order, before the
// consumer's acknowledgement floor passes them.
func TestKilledProjectorLosesNoEvent(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, f *fixture, name string, handle BatchHandler) error
	}{
		{"live projector", func(ctx context.Context, f *fixture, name string, handle BatchHandler) error {
			return Consume(ctx, f.js, name, 4, slog.New(slog.NewTextHandler(io.Discard, nil)), handle)
		}},
		{"resumed replay", func(ctx context.Context, f *fixture, name string, handle BatchHandler) error {
			_, err := CatchUp(ctx, f.js, name, 4, slog.New(slog.NewTextHandler(io.Discard, nil)), handle, nil)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			var want []uint64
			appendSome := func(n int) {
				for range n {
					seq, err := f.store.Append(ctx, createAppend(uuid.NewString(), uuid.NewString()))
					if err != nil {
						t.Fatal(err)
					}
					want = append(want, seq)
				}
			}
			appendSome(5)
			const name = "killed-test"
			cons, err := f.js.CreateOrUpdateConsumer(ctx, "CONNECTIONS", projectorConsumerConfig(name))
			if err != nil {
				t.Fatal(err)
			}
			// The process that dies: it receives three events and never
			// writes (nor acknowledges) them.
			got, err := cons.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			received := 0
			for range got.Messages() {
				received++
			}
			if received != 3 {
				t.Fatalf("the doomed projector received %d events", received)
			}
			appendSome(5)

			var mu sync.Mutex
			var handled []uint64
			handle := func(_ context.Context, batch []readmodel.Message) error {
				mu.Lock()
				defer mu.Unlock()
				for _, m := range batch {
					handled = append(handled, m.Sequence)
				}
				return nil
			}
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- tc.run(rctx, f, name, handle) }()
			last := want[len(want)-1]
			for {
				p, err := Progress(ctx, f.js, name)
				if err != nil {
					t.Fatal(err)
				}
				if p.Acknowledged >= last {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("the acknowledgement floor stayed at %d, want %d", p.Acknowledged, last)
				}
				time.Sleep(10 * time.Millisecond)
			}
			stop()
			if err := <-done; err != nil && err != context.Canceled {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(handled, want) {
				t.Fatalf("handled %v, want every event in stream order %v", handled, want)
			}
		})
	}
}

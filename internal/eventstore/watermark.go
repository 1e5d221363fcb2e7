package eventstore

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
)

// ConsumerWatermark tells how far a projector running in another process has
// projected, from its durable consumer's acknowledgement floor. The API uses
// it for read-your-writes when it does not run the projector itself.
type ConsumerWatermark struct {
	js   jetstream.JetStream
	name string
	poll time.Duration
}

// NewConsumerWatermark watches the durable consumer name.
func NewConsumerWatermark(js jetstream.JetStream, name string) *ConsumerWatermark {
	return &ConsumerWatermark{js: js, name: name, poll: 5 * time.Millisecond}
}

// WaitFor blocks until the consumer has acknowledged stream sequence seq.
func (w *ConsumerWatermark) WaitFor(ctx context.Context, seq uint64) error {
	for {
		c, err := w.js.Consumer(ctx, events.StreamName, w.name)
		if err == nil {
			info, err := c.Info(ctx)
			if err == nil && info.AckFloor.Stream >= seq {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.poll):
		}
	}
}

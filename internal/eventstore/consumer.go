package eventstore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/readmodel"
)

// ProjectorConsumer is the durable consumer name of the read-model projector.
// Renaming it makes the projector start again from the first event.
const ProjectorConsumer = "readmodel-projector"

// BatchHandler applies a batch of messages; an error asks for the same batch
// again.
type BatchHandler func(ctx context.Context, batch []readmodel.Message) error

// Consume delivers the stream's connection events, in stream order, to
// handle in batches of up to maxBatch, through the durable consumer name,
// until ctx ends. A batch is acknowledged after handle succeeds; a failing
// batch is retried with backoff while its messages are kept in progress, so a
// store outage delays projection but loses nothing. Batches form from what is
// already delivered: an idle projector handles a lone event at once.
func Consume(ctx context.Context, js jetstream.JetStream, name string, maxBatch int, logger *slog.Logger, handle BatchHandler) error {
	cons, err := projectorConsumer(ctx, js, name)
	if err != nil {
		return err
	}
	// Start from the acknowledgement floor. Messages an earlier session (a
	// crashed process, the lease holder before this one) had received but
	// not acknowledged would otherwise come back only after AckWait, behind
	// newer ones, and acknowledging a newer one (AckAll) would acknowledge
	// them unprojected.
	if _, err := js.ResetConsumer(ctx, events.StreamName, name); err != nil {
		logger.Warn("projector consumer not reset to its acknowledgement floor (nats-server older than 2.14?); "+
			"unacknowledged events of an earlier session come back after the ack wait", "consumer", name, "error", err.Error())
	}
	inbox := make(chan jetstream.Msg, 4*maxBatch)
	cc, err := cons.Consume(func(m jetstream.Msg) { inbox <- m },
		jetstream.PullMaxMessages(2*maxBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			logger.Warn("projector consumer", "error", err.Error())
		}))
	if err != nil {
		return fmt.Errorf("jetstream: consume %s: %w", name, err)
	}
	defer cc.Stop()

	msgs := make([]jetstream.Msg, 0, maxBatch)
	batch := make([]readmodel.Message, 0, maxBatch)
	for {
		msgs, batch = msgs[:0], batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case m := <-inbox:
			msgs = append(msgs, m)
		}
	drain:
		for len(msgs) < maxBatch {
			select {
			case m := <-inbox:
				msgs = append(msgs, m)
			default:
				break drain
			}
		}
		for _, m := range msgs {
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("jetstream: message without metadata: %w", err)
			}
			batch = append(batch, readmodel.Message{Sequence: meta.Sequence.Stream, Subject: m.Subject(), Data: m.Data()})
		}
		pause := 50 * time.Millisecond
		for {
			err := safely(ctx, handle, batch)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			logger.Warn("projector batch failed; retrying", "error", err.Error(), "first", batch[0].Sequence, "size", len(batch))
			for _, m := range msgs {
				_ = m.InProgress()
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pause):
			}
			pause = min(2*pause, 5*time.Second)
		}
		if err := msgs[len(msgs)-1].Ack(); err != nil {
			logger.Warn("projector ack failed; the batch will be redelivered and skipped", "error", err.Error())
		}
	}
}

// safely runs handle, turning a panic into an error so that a bug in one
// batch is logged and retried instead of killing the process.
func safely(ctx context.Context, handle BatchHandler, batch []readmodel.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("jetstream: batch handler panicked at sequence %d: %v", batch[0].Sequence, p)
		}
	}()
	return handle(ctx, batch)
}

package eventstore

import (
	"context"
	"errors"
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
//
// The consumer acknowledges cumulatively (AckAll): acknowledging an event
// acknowledges every earlier one. An event delivered but lost on the way (the
// client's NATS node died with it, a consumer leader changed) must therefore
// never be passed by an acknowledgement. Each session starts from the
// acknowledgement floor, and a gap in the delivery sequence ends the session
// after the events before the gap: the next one starts from the floor again.
func Consume(ctx context.Context, js jetstream.JetStream, name string, maxBatch int, logger *slog.Logger, handle BatchHandler) error {
	cons, err := projectorConsumer(ctx, js, name)
	if err != nil {
		return err
	}
	for {
		err := consumeSession(ctx, js, cons, name, maxBatch, logger, handle)
		if !errors.Is(err, errDeliveryGap) {
			return err
		}
		logger.Warn("projector consumer: a delivery was lost (NATS failover?); restarting from the acknowledgement floor", "consumer", name)
	}
}

var errDeliveryGap = errors.New("jetstream: gap in the delivery sequence")

func consumeSession(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, name string, maxBatch int,
	logger *slog.Logger, handle BatchHandler) error {
	// Start from the acknowledgement floor: messages an earlier session (a
	// crashed process, the lease holder before this one) had received but
	// not acknowledged would otherwise come back only after AckWait, behind
	// newer ones whose acknowledgement would acknowledge them unprojected.
	if _, err := js.ResetConsumer(ctx, events.StreamName, name); err != nil {
		logger.Warn("projector consumer not reset to its acknowledgement floor (nats-server older than 2.14?); "+
			"unacknowledged events of an earlier session come back after the ack wait", "consumer", name, "error", err.Error())
	}
	inbox := make(chan jetstream.Msg, 4*maxBatch)
	ended := make(chan struct{})
	defer close(ended)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case inbox <- m:
		case <-ended:
		}
	},
		jetstream.PullMaxMessages(2*maxBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			logger.Warn("projector consumer", "error", err.Error())
		}))
	if err != nil {
		return fmt.Errorf("jetstream: consume %s: %w", name, err)
	}
	defer cc.Stop()

	var delivered uint64 // delivery (consumer) sequence of the last message taken
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
		gap := false
		for i, m := range msgs {
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("jetstream: message without metadata: %w", err)
			}
			if delivered != 0 && meta.Sequence.Consumer != delivered+1 {
				msgs, gap = msgs[:i], true
				break
			}
			delivered = meta.Sequence.Consumer
			batch = append(batch, readmodel.Message{Sequence: meta.Sequence.Stream, Subject: m.Subject(), Data: m.Data()})
		}
		if len(msgs) > 0 {
			if done := handleBatch(ctx, handle, msgs, batch, logger); !done {
				return nil
			}
		}
		if gap {
			return errDeliveryGap
		}
	}
}

// handleBatch handles a batch until it succeeds, then acknowledges it; false
// means ctx ended first.
func handleBatch(ctx context.Context, handle BatchHandler, msgs []jetstream.Msg, batch []readmodel.Message, logger *slog.Logger) bool {
	pause := 50 * time.Millisecond
	for {
		err := safely(ctx, handle, batch)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		logger.Warn("projector batch failed; retrying", "error", err.Error(), "first", batch[0].Sequence, "size", len(batch))
		for _, m := range msgs {
			_ = m.InProgress()
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
	if err := msgs[len(msgs)-1].Ack(); err != nil {
		logger.Warn("projector ack failed; the batch will be redelivered and skipped", "error", err.Error())
	}
	return true
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

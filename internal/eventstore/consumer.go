package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/readmodel"
)

// ProjectorConsumer is the durable consumer name of the read-model projector.
// Renaming it makes the projector start again from the first event.
const ProjectorConsumer = "readmodel-projector"

// projectorConsumerConfig is the one configuration of a read-model
// projector's durable consumer, used by the live projector (Consume) and by
// replay (CatchUp), since the live projector takes over the consumer a replay
// built.
//
// Acknowledgement is explicit, one ack per message after its batch is
// stored: the acknowledgement floor then only ever passes events that were
// written. (With ack-all, a restarted projector acknowledged newer events and
// with them the ones delivered to the killed process and never written, which
// were lost from the read model for good.)
func projectorConsumerConfig(name string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "Projects connection events into the read model.",
		FilterSubject: events.EventSubjectFilter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 20000,
	}
}

// projectorConsumer creates (or updates) the durable consumer of a read-model
// projector; Consume and CatchUp share it, since the live projector takes
// over the consumer a replay created. The consumer has as many replicas as
// the stream: a consumer on one node of an R3 stream would stop the
// projection when that node dies, and its acknowledgements would be lost
// with it. A consumer an earlier version created with cumulative
// acknowledgement (AckAll) cannot be updated in place: it is deleted and
// created again from the first event, which re-projects everything once
// (applying an event twice changes nothing) instead of trusting an ack floor
// that may have passed unwritten events.
func projectorConsumer(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Consumer, error) {
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, fmt.Errorf("jetstream: stream %s: %w", events.StreamName, err)
	}
	cfg := projectorConsumerConfig(name)
	cfg.Replicas = stream.CachedInfo().Config.Replicas
	if old, err := stream.Consumer(ctx, name); err == nil && old.CachedInfo().Config.AckPolicy != cfg.AckPolicy {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("jetstream: replace consumer %s: %w", name, err)
		}
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer %s: %w", name, err)
	}
	return cons, nil
}

// BatchHandler applies a batch of messages; an error asks for the same batch
// again.
type BatchHandler func(ctx context.Context, batch []readmodel.Message) error

// errResubscribe asks Consume to start its subscription again from the
// acknowledgement floor: a delivery was lost on the way, or the subscription
// reported trouble that may have lost one.
var errResubscribe = errors.New("jetstream: resubscribe from the acknowledgement floor")

// Consume delivers the stream's connection events, in stream order, to
// handle in batches of up to maxBatch, through the durable consumer name,
// until ctx ends. Every message of a batch is acknowledged after handle
// succeeds, never before; a failing batch is retried with backoff while its
// messages are kept in progress, so a store outage delays projection but
// loses nothing. Batches form from what is already delivered: an idle
// projector handles a lone event at once.
//
// Order holds across crashes and lost deliveries: each subscription starts by
// resetting the consumer to its acknowledgement floor (what a killed process
// had received but not acknowledged is delivered again, first, instead of
// after AckWait behind newer events), and a gap in the delivery sequence (a
// message lost on the way, around a NATS restart) ends the subscription and
// starts another from the floor. Events are then handed over again at worst,
// and applying one twice changes nothing. One projector process per durable
// consumer: a second one would reset the first one's deliveries.
func Consume(ctx context.Context, js jetstream.JetStream, name string, maxBatch int, logger *slog.Logger, handle BatchHandler) error {
	pace := NewBackoff(100*time.Millisecond, 5*time.Second)
	for {
		began := time.Now()
		err := consumeOnce(ctx, js, name, maxBatch, logger, handle)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errResubscribe) {
			return err
		}
		// A subscription that keeps failing at once is paced, not spun.
		pause := time.Duration(0)
		if time.Since(began) < 5*time.Second {
			pause = pace.NextBackOff()
		} else {
			pace.Reset()
		}
		logger.Info("projector resubscribing from its acknowledgement floor", "consumer", name, "reason", err.Error(), "in", pause.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
	}
}

func consumeOnce(ctx context.Context, js jetstream.JetStream, name string, maxBatch int, logger *slog.Logger, handle BatchHandler) error {
	cons, err := projectorConsumer(ctx, js, name)
	if err != nil {
		return fmt.Errorf("jetstream: consumer %s: %w", name, err)
	}
	order, err := resetToAckFloor(ctx, js, name, logger)
	if err != nil {
		return err
	}
	inbox := make(chan jetstream.Msg, 4*maxBatch)
	trouble := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) { inbox <- m },
		jetstream.PullMaxMessages(2*maxBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			logger.Warn("projector consumer", "error", err.Error())
			select {
			case trouble <- err:
			default:
			}
		}))
	if err != nil {
		return fmt.Errorf("jetstream: consume %s: %w", name, err)
	}
	defer cc.Stop()

	msgs := make([]jetstream.Msg, 0, maxBatch)
	batch := make([]readmodel.Message, 0, maxBatch)
	retry := retryBackoff()
	for {
		msgs, batch = msgs[:0], batch[:0]
		gap := false
		take := func(m jetstream.Msg) error {
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("jetstream: message without metadata: %w", err)
			}
			if !order.next(meta.Sequence.Consumer) {
				gap = true
				return nil
			}
			msgs = append(msgs, m)
			batch = append(batch, readmodel.Message{Sequence: meta.Sequence.Stream, Subject: m.Subject(), Data: m.Data(),
				Stored: meta.Timestamp, TraceParent: m.Headers().Get(HeaderTraceParent), TraceState: m.Headers().Get(HeaderTraceState)})
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-trouble:
			// Deliveries may have been lost with the connection; the ones
			// still to come would show it only by a gap, and the last ones
			// never: start again from the floor.
			return fmt.Errorf("%w: %v", errResubscribe, err)
		case m := <-inbox:
			if err := take(m); err != nil {
				return err
			}
		}
	drain:
		for !gap && len(msgs) < maxBatch {
			select {
			case m := <-inbox:
				if err := take(m); err != nil {
					return err
				}
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			if err := handleRetrying(ctx, batch, handle, logger, msgs, retry); err != nil {
				return nil // ctx ended
			}
			for _, m := range msgs {
				if err := m.Ack(); err != nil {
					// The message comes again (after a resubscription or
					// AckWait) and changes nothing then.
					logger.Warn("projector ack failed", "error", err.Error())
				}
			}
		}
		if gap {
			return fmt.Errorf("%w: a delivery was lost", errResubscribe)
		}
	}
}

// deliveryOrder checks that deliveries come without a gap: the consumer's
// delivery sequence grows by one with every delivery, redeliveries included.
type deliveryOrder struct{ last uint64 }

func (o *deliveryOrder) next(seq uint64) bool {
	if seq != o.last+1 {
		return false
	}
	o.last = seq
	return true
}

// resetToAckFloor makes the durable consumer name deliver again everything
// after its acknowledgement floor, in stream order, forgetting what it had
// delivered without acknowledgement (to a process that died, or on a
// connection that broke). It returns the delivery order to expect next.
// nats-server answers the reset from 2.14 on (ADR-60); without it the
// projector goes on, and a killed projector's unacknowledged events come back
// only after AckWait.
func resetToAckFloor(ctx context.Context, js jetstream.JetStream, name string, logger *slog.Logger) (*deliveryOrder, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := js.ResetConsumer(rctx, events.StreamName, name)
	if err == nil {
		return &deliveryOrder{last: resp.Delivered.Consumer}, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	logger.Warn("the consumer reset failed (nats-server older than 2.14?): events a stopped projector "+
		"had received come back only after AckWait", "consumer", name, "error", err.Error())
	c, err := js.Consumer(ctx, events.StreamName, name)
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer %s: %w", name, err)
	}
	return &deliveryOrder{last: c.CachedInfo().Delivered.Consumer}, nil
}

// NewBackoff is the one retry schedule of the event-store loops: exponential
// (doubling) from initial to at most ceiling, each pause drawn within +-50% so
// that processes stopped by one outage do not retry in step.
func NewBackoff(initial, ceiling time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = initial
	b.MaxInterval = ceiling
	b.Multiplier = 2
	return b
}

// retryBackoff is the pause between two attempts of a failing batch.
func retryBackoff() *backoff.ExponentialBackOff {
	return NewBackoff(50*time.Millisecond, 5*time.Second)
}

// handleRetrying hands batch to handle until it succeeds or ctx ends (then
// it returns ctx's error), keeping the messages in progress meanwhile so that
// the server does not deliver them again.
func handleRetrying(ctx context.Context, batch []readmodel.Message, handle BatchHandler, logger *slog.Logger,
	msgs []jetstream.Msg, retry *backoff.ExponentialBackOff) error {
	retry.Reset()
	for {
		err := safely(ctx, handle, batch)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pause := retry.NextBackOff()
		logger.Warn("projector batch failed; retrying", "error", err.Error(), "first", batch[0].Sequence, "size", len(batch),
			"in", pause.String())
		for _, m := range msgs {
			_ = m.InProgress()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
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

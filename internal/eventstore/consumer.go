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
	"github.com/connreg/registry/internal/retry"
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
// succeeds, never before; a failing batch is split and retried with backoff
// while its messages are kept in progress (see retrier), so a store outage
// delays projection but loses nothing. Batches form from what is already delivered: an idle
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
	pace := retry.Backoff(100*time.Millisecond, 5*time.Second)
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
	r := newRetrier(handle, logger, maxBatch)
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
		for !gap && len(msgs) < r.limit {
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
			if !r.deliver(ctx, msgs, batch) {
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

// retryBackoff is the pause between two attempts of a failing batch.
func retryBackoff() *backoff.ExponentialBackOff {
	return retry.Backoff(50*time.Millisecond, 5*time.Second)
}

// retrier hands batches to a handler that may fail. A failing batch is
// never retried at the same size: it is split in halves, each handed on its
// own and in order, down to single events, and only a single event that
// still fails is retried, after a jittered exponential backoff. A store
// slower than its timeout for a large batch therefore still progresses in
// smaller ones, and a store that is down costs one attempt per backoff
// interval instead of a retry loop of ever-growing abandoned writes. After a
// failure the next batches are no larger than the part that succeeded; the
// limit doubles back with each success. While failing it logs what the
// projector is doing and how far behind it is. The caller acknowledges the
// messages once deliver returns true (the handler is idempotent, so parts
// handled again after a crash change nothing).
type retrier struct {
	handle  BatchHandler
	logger  *slog.Logger
	backoff *backoff.ExponentialBackOff
	max     int
	limit   int // the largest batch to take now

	failingSince time.Time // zero while healthy
	failures     int
}

func newRetrier(handle BatchHandler, logger *slog.Logger, maxBatch int) *retrier {
	return &retrier{handle: handle, logger: logger, backoff: retryBackoff(), max: maxBatch, limit: maxBatch}
}

// deliver hands batch (whose messages are msgs) to the handler until every
// part of it succeeded; it returns false when ctx ended first.
func (r *retrier) deliver(ctx context.Context, msgs []jetstream.Msg, batch []readmodel.Message) bool {
	for {
		err := safely(ctx, r.handle, batch)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			r.succeeded(msgs)
			return true
		}
		r.failed(msgs, batch, err)
		for _, m := range msgs {
			_ = m.InProgress()
		}
		if len(batch) > 1 {
			half := len(batch) / 2
			r.limit = max(1, min(r.limit, half))
			return r.deliver(ctx, msgs[:half], batch[:half]) && r.deliver(ctx, msgs[half:], batch[half:])
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(r.backoff.NextBackOff()):
		}
	}
}

func (r *retrier) succeeded(msgs []jetstream.Msg) {
	r.limit = min(r.max, 2*r.limit)
	if !r.failingSince.IsZero() {
		r.logger.Info("projector recovered", "limit", r.limit, "failedFor", time.Since(r.failingSince).String(), "failures", r.failures,
			"lagMs", lag(msgs[len(msgs)-1]).Milliseconds(), "pending", pending(msgs[len(msgs)-1]))
		r.failingSince, r.failures = time.Time{}, 0
		r.backoff.Reset()
	}
}

func (r *retrier) failed(msgs []jetstream.Msg, batch []readmodel.Message, err error) {
	if r.failingSince.IsZero() {
		r.failingSince = time.Now()
	}
	r.failures++
	next := "split in halves"
	if len(batch) == 1 {
		next = "retry after backoff"
	}
	r.logger.Warn("projector batch failed", "error", err.Error(), "first", batch[0].Sequence, "size", len(batch),
		"next", next, "failingFor", time.Since(r.failingSince).String(), "failures", r.failures,
		"lagMs", lag(msgs[0]).Milliseconds(), "pending", pending(msgs[len(msgs)-1]))
}

// lag is how long ago m was appended to the stream.
func lag(m jetstream.Msg) time.Duration {
	meta, err := m.Metadata()
	if err != nil {
		return 0
	}
	return time.Since(meta.Timestamp)
}

// pending is how many messages the consumer holds after m.
func pending(m jetstream.Msg) uint64 {
	meta, err := m.Metadata()
	if err != nil {
		return 0
	}
	return meta.NumPending
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

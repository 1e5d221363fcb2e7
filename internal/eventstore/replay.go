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

// CatchUp delivers the connection events the durable consumer name has not
// acknowledged yet (creating it to deliver from the first event when it does
// not exist, with the configuration Consume uses) to handle, in stream order,
// in batches of up to maxBatch, and returns once the consumer has nothing
// pending: every event appended before that moment has been handled and
// acknowledged. It starts from the consumer's acknowledgement floor (see
// resetToAckFloor: a crashed run's last batch comes first), acknowledges
// every message of a batch once handle succeeded, and has the server confirm
// the batch's last acknowledgement before the next fetch. A gap in the
// deliveries starts again from the floor. A failing batch is split and
// retried with backoff, as in Consume. progress, when not nil, is called after each batch
// with the number of events handled so far by this call and the number still
// pending on the server.
func CatchUp(ctx context.Context, js jetstream.JetStream, name string, maxBatch int, logger *slog.Logger,
	handle BatchHandler, progress func(done, pending uint64)) (done uint64, err error) {
	cons, err := projectorConsumer(ctx, js, name)
	if err != nil {
		return 0, fmt.Errorf("jetstream: consumer %s: %w", name, err)
	}
	order, err := resetToAckFloor(ctx, js, name, logger)
	if err != nil {
		return 0, err
	}
	msgs := make([]jetstream.Msg, 0, maxBatch)
	batch := make([]readmodel.Message, 0, maxBatch)
	r := newRetrier(handle, logger, maxBatch)
	backlog := true
	for {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		// With a backlog, wait for a full batch (a no-wait fetch returns
		// only what the server has at hand, a fraction of one); at the
		// tail, take what there is.
		var fetched jetstream.MessageBatch
		if backlog {
			fetched, err = cons.Fetch(r.limit, jetstream.FetchMaxWait(time.Second))
		} else {
			fetched, err = cons.FetchNoWait(r.limit)
		}
		if err != nil {
			return done, fmt.Errorf("jetstream: fetch from %s: %w", name, err)
		}
		msgs, batch = msgs[:0], batch[:0]
		gap := false
		for m := range fetched.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return done, fmt.Errorf("jetstream: message without metadata: %w", err)
			}
			if gap || !order.next(meta.Sequence.Consumer) {
				gap = true
				continue // drain the batch; it comes again after the reset
			}
			msgs = append(msgs, m)
			batch = append(batch, readmodel.Message{Sequence: meta.Sequence.Stream, Subject: m.Subject(), Data: m.Data()})
		}
		if err := fetched.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return done, fmt.Errorf("jetstream: fetch from %s: %w", name, err)
		}
		if len(msgs) > 0 {
			if !r.deliver(ctx, msgs, batch) {
				return done, ctx.Err()
			}
			for _, m := range msgs[:len(msgs)-1] {
				_ = m.Ack()
			}
			// The server handles a consumer's acknowledgements in order:
			// the confirmed last one confirms the batch.
			if err := msgs[len(msgs)-1].DoubleAck(ctx); err != nil {
				return done, fmt.Errorf("jetstream: acknowledge to %s: %w", name, err)
			}
			done += uint64(len(batch))
		}
		if gap {
			logger.Info("replay resuming from its acknowledgement floor: a delivery was lost", "consumer", name)
			if order, err = resetToAckFloor(ctx, js, name, logger); err != nil {
				return done, err
			}
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return done, fmt.Errorf("jetstream: consumer %s info: %w", name, err)
		}
		if progress != nil && len(msgs) > 0 {
			progress(done, info.NumPending)
		}
		logger.Debug("catch-up", "consumer", name, "fetched", len(batch), "pending", info.NumPending, "ackPending", info.NumAckPending, "ackFloor", info.AckFloor.Stream)
		backlog = info.NumPending >= uint64(maxBatch)
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return done, nil
		}
		if len(msgs) == 0 && !gap {
			// Messages are pending but none came: they are delivered to
			// someone else or about to be; look again shortly.
			select {
			case <-ctx.Done():
				return done, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// ConsumerProgress is where a durable consumer stands.
type ConsumerProgress struct {
	// Acknowledged is the stream sequence up to which every message was
	// acknowledged.
	Acknowledged uint64
	// Pending is how many events the consumer has not delivered yet,
	// AckPending how many it delivered without acknowledgement so far.
	Pending    uint64
	AckPending int
	// Exists is false when there is no such consumer.
	Exists bool
}

// Progress reports where the durable consumer name stands.
func Progress(ctx context.Context, js jetstream.JetStream, name string) (ConsumerProgress, error) {
	c, err := js.Consumer(ctx, events.StreamName, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return ConsumerProgress{}, nil
	}
	if err != nil {
		return ConsumerProgress{}, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return ConsumerProgress{}, err
	}
	return ConsumerProgress{Acknowledged: info.AckFloor.Stream, Pending: info.NumPending, AckPending: info.NumAckPending, Exists: true}, nil
}

// FoldEvents reads the connection events of the stream up to stream
// sequence upTo once, in stream order, through an ordered (ephemeral,
// unacknowledged) consumer, and calls fn with each. It stops early at the
// newest event when the stream ends before upTo. It returns the stream
// sequence of the last event read (0 when none was). It neither creates a
// durable consumer nor changes any.
func FoldEvents(ctx context.Context, js jetstream.JetStream, upTo uint64, fn func(readmodel.Message)) (uint64, error) {
	if upTo == 0 {
		return 0, nil
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return 0, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.EventSubjectFilter},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return 0, err
	}
	var through uint64
	for {
		batch, err := cons.Fetch(2000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return through, err
		}
		n, end := 0, false
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return through, err
			}
			n++
			if end || meta.Sequence.Stream > upTo {
				end = true
				continue // drain the batch
			}
			fn(readmodel.Message{Sequence: meta.Sequence.Stream, Subject: m.Subject(), Data: m.Data()})
			through = meta.Sequence.Stream
			end = meta.NumPending == 0 || through >= upTo
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return through, err
		}
		if end || n == 0 {
			return through, nil
		}
		if err := ctx.Err(); err != nil {
			return through, err
		}
	}
}

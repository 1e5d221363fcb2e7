package monitor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
)

// Names the monitor owns on the NATS server. Renaming Consumer makes a
// monitor start again from the newest event (it loads every connection id at
// start anyway); renaming the poison names strands what was parked there.
const (
	Consumer      = "connection-monitor"
	PoisonStream  = "MONITOR_POISON"
	PoisonSubject = "connreg.monitor.poison"
	// HeaderPoisonReason carries why a message was parked.
	HeaderPoisonReason = "Connreg-Poison-Reason"
)

// EnsurePoisonStream creates or updates the small stream that keeps the
// messages the monitor could not handle, for a person to look at: bounded
// in count and age, since nothing replays it automatically.
func EnsurePoisonStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        PoisonStream,
		Description: "Messages the connection monitor could not handle, with the reason in " + HeaderPoisonReason + ".",
		Subjects:    []string{PoisonSubject},
		Storage:     jetstream.FileStorage,
		MaxMsgs:     10000,
		MaxAge:      30 * 24 * time.Hour,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", PoisonStream, err)
	}
	return nil
}

// jsSubscriber is a message.Subscriber on the CONNECTIONS stream through one
// durable consumer. It hands the router one message at a time and waits for
// its ack or nack before the next, so events reach the schedule in stream
// order. A nack asks JetStream to deliver the message again.
type jsSubscriber struct {
	js       jetstream.JetStream
	consumer string

	mu     sync.Mutex
	stops  []func()
	closed bool
	wg     sync.WaitGroup
}

var _ message.Subscriber = (*jsSubscriber)(nil)

// Subscribe ignores topic's value beyond naming the filter: the consumer
// always filters to connections.events.>. A new consumer starts at the
// newest event: the monitor loads every existing connection at start, so the
// history before it adds nothing.
func (s *jsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	cons, err := s.js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       s.consumer,
		Description:   "The connection monitor: schedules connection tests from connection events.",
		FilterSubject: topic,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 256,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer %s: %w", s.consumer, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return nil, fmt.Errorf("jetstream: consume %s: %w", s.consumer, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		it.Stop()
		return nil, errors.New("monitor: subscriber closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	s.stops = append(s.stops, func() { cancel(); it.Stop() })
	s.wg.Add(1)
	s.mu.Unlock()

	out := make(chan *message.Message)
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer it.Stop()
		for {
			m, err := it.Next()
			if err != nil {
				return // stopped (Close or ctx) or the connection closed
			}
			meta, _ := m.Metadata()
			uuid := m.Headers().Get(jetstream.MsgIDHeader)
			if uuid == "" && meta != nil {
				uuid = strconv.FormatUint(meta.Sequence.Stream, 10)
			}
			wm := message.NewMessage(uuid, m.Data())
			wm.Metadata.Set("subject", m.Subject())
			wm.SetContext(ctx)
			select {
			case out <- wm:
			case <-ctx.Done():
				_ = m.Nak()
				return
			}
			select {
			case <-wm.Acked():
				_ = m.Ack()
			case <-wm.Nacked():
				_ = m.Nak()
			case <-ctx.Done():
				_ = m.Nak()
				return
			}
		}
	}()
	go func() { <-ctx.Done(); it.Stop() }()
	return out, nil
}

// Close stops every subscription and waits for their goroutines.
func (s *jsSubscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	stops := s.stops
	s.stops = nil
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	s.wg.Wait()
	return nil
}

// poisonPublisher parks messages on the poison stream, their metadata as
// headers (Watermill's poison middleware puts the reason in
// "reason_poisoned"; it is copied to HeaderPoisonReason).
type poisonPublisher struct {
	js      jetstream.JetStream
	timeout time.Duration
}

var _ message.Publisher = poisonPublisher{}

func (p poisonPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		nm := nats.NewMsg(topic)
		nm.Data = m.Payload
		for k, v := range m.Metadata {
			nm.Header.Set(k, v)
		}
		nm.Header.Set(HeaderPoisonReason, m.Metadata.Get("reason_poisoned"))
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		_, err := p.js.PublishMsg(ctx, nm)
		cancel()
		if err != nil {
			return fmt.Errorf("jetstream: park a message on %s: %w", topic, err)
		}
	}
	return nil
}

func (poisonPublisher) Close() error { return nil }

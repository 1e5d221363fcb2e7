package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// Headers the store sets on every message besides the CloudEvents ones.
const (
	HeaderAggregateVersion = "Connreg-Aggregate-Version"
	HeaderEventType        = "Connreg-Event-Type"
)

// claim is the body of a message on a name subject. The newest message of a
// name subject tells whether the name is held, and by which connection.
type claim struct {
	State        string `json:"state"` // "claimed" or "released"
	ConnectionID string `json:"connectionId"`
	ConfigName   string `json:"configName"`
}

const (
	stateClaimed  = "claimed"
	stateReleased = "released"
)

// Store appends to and reads from the system-of-record stream.
type Store struct {
	nc      *nats.Conn
	stream  jetstream.Stream
	timeout time.Duration
}

// NewStore returns a store over an existing stream (see EnsureStream).
// timeout bounds each call to NATS.
func NewStore(nc *nats.Conn, stream jetstream.Stream, timeout time.Duration) (*Store, error) {
	if nc == nil || stream == nil {
		return nil, errors.New("jetstream: NewStore needs a connection and a stream")
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Store{nc: nc, stream: stream, timeout: timeout}, nil
}

var _ commands.EventStore = (*Store)(nil)

// Append writes the events of one aggregate together with its name claim and
// release in one atomic JetStream batch: every message carries the expected
// last sequence of its subject, so a concurrent writer of the same name or
// aggregate makes the whole batch fail and nothing is stored. A client that
// dies between the messages of a batch leaves no trace: the server abandons
// an uncommitted batch.
func (s *Store) Append(ctx context.Context, a commands.Append) (uint64, error) {
	if len(a.Events) == 0 {
		return 0, errors.New("jetstream: nothing to append")
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	msgs, err := s.prepare(ctx, a)
	if err != nil {
		return 0, err
	}
	seq, err := s.publishRetrying(ctx, msgs)
	if err == nil {
		// The answer names the batch's last message; report the last event's,
		// which is what readers of the events (the projector) reach.
		last := 0
		for i, m := range msgs {
			if strings.HasPrefix(m.Subject, events.EventSubjectPrefix) {
				last = i
			}
		}
		return seq - uint64(len(msgs)-1-last), nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeBatchDuplicate {
		// The same events were stored before (a retry after a lost answer).
		return s.alreadyStored(ctx, a)
	}
	if errors.As(err, &apiErr) && isWrongLastSequence(apiErr) {
		// Someone wrote between our reads and the commit: say which invariant.
		if a.Claim != nil {
			if held, _, rerr := s.nameHolder(ctx, *a.Claim); rerr == nil && held != "" && held != a.AggregateID {
				return 0, domain.ErrNameTaken
			}
		}
		return 0, domain.ErrConcurrentChange
	}
	if errors.As(err, &apiErr) {
		return 0, fmt.Errorf("jetstream: append refused: %w", err)
	}
	return 0, domain.Unavailable(domain.DependencyEventStore, err)
}

// prepare reads the current heads of the subjects involved and builds the
// batch with its expectations.
func (s *Store) prepare(ctx context.Context, a commands.Append) ([]*nats.Msg, error) {
	subject := events.EventSubject(a.AggregateID)
	expected := uint64(0)
	if a.ExpectedVersion > 0 {
		last, err := s.stream.GetLastMsgForSubject(ctx, subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil, domain.ErrNotFound
		case err != nil:
			return nil, domain.Unavailable(domain.DependencyEventStore, err)
		}
		v, _ := strconv.ParseUint(last.Header.Get(HeaderAggregateVersion), 10, 64)
		if v != a.ExpectedVersion {
			return nil, domain.ErrConcurrentChange
		}
		expected = last.Sequence
	}

	var msgs []*nats.Msg
	for i, e := range a.Events {
		body, err := events.Encode(e)
		if err != nil {
			return nil, err
		}
		m := nats.NewMsg(subject)
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, e.EventID)
		m.Header.Set("Content-Type", "application/cloudevents+json")
		m.Header.Set("ce-specversion", events.SpecVersion)
		m.Header.Set("ce-id", e.EventID)
		m.Header.Set("ce-type", e.Type())
		m.Header.Set("ce-source", events.Source)
		m.Header.Set("ce-subject", e.AggregateID)
		m.Header.Set("ce-time", e.OccurredAt.UTC().Format(time.RFC3339Nano))
		m.Header.Set(HeaderEventType, e.Type())
		m.Header.Set(HeaderAggregateVersion, strconv.FormatUint(e.AggregateVersion, 10))
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
		}
		msgs = append(msgs, m)
	}
	eventID := a.Events[0].EventID
	if a.Release != nil {
		m, err := s.nameMessage(ctx, *a.Release, a.AggregateID, stateReleased, eventID)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	if a.Claim != nil {
		m, err := s.nameMessage(ctx, *a.Claim, a.AggregateID, stateClaimed, eventID)
		if err != nil {
			return nil, err
		}
		// The claim goes first: an event never precedes its name claim in the stream.
		msgs = append([]*nats.Msg{m}, msgs...)
	}
	return msgs, nil
}

func (s *Store) nameMessage(ctx context.Context, n commands.NameClaim, aggregateID, state, eventID string) (*nats.Msg, error) {
	holder, seq, err := s.nameHolder(ctx, n)
	if err != nil {
		return nil, err
	}
	switch state {
	case stateClaimed:
		if holder != "" && holder != aggregateID {
			return nil, domain.ErrNameTaken
		}
	case stateReleased:
		if holder != aggregateID {
			return nil, fmt.Errorf("jetstream: %s does not hold the name it releases", aggregateID)
		}
	}
	body, err := json.Marshal(claim{State: state, ConnectionID: aggregateID, ConfigName: n.ConfigName})
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(events.NameSubject(n.Organization, n.ConfigName))
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, eventID+"."+state)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(seq, 10))
	return m, nil
}

// nameHolder returns the connection holding a name ("" when free) and the
// sequence of the name subject's newest message (0 when it has none).
func (s *Store) nameHolder(ctx context.Context, n commands.NameClaim) (string, uint64, error) {
	last, err := s.stream.GetLastMsgForSubject(ctx, events.NameSubject(n.Organization, n.ConfigName))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, domain.Unavailable(domain.DependencyEventStore, err)
	}
	var c claim
	if err := json.Unmarshal(last.Data, &c); err != nil {
		return "", 0, fmt.Errorf("jetstream: name subject %s holds a malformed claim at %d: %w", last.Subject, last.Sequence, err)
	}
	if c.State == stateClaimed {
		return c.ConnectionID, last.Sequence, nil
	}
	return "", last.Sequence, nil
}

// pubAck is the server's answer to a commit (or a single publish).
type pubAck struct {
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	Count    int                 `json:"count"`
	Error    *jetstream.APIError `json:"error"`
}

// publish sends one message as a plain publish, or several as an atomic
// batch whose last message commits.
func (s *Store) publish(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	if len(msgs) > 1 {
		id := nuid.Next()
		for i, m := range msgs {
			m.Header.Set("Nats-Batch-Id", id)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		}
		msgs[len(msgs)-1].Header.Set("Nats-Batch-Commit", "1")
		for _, m := range msgs[:len(msgs)-1] {
			if err := s.nc.PublishMsg(m); err != nil {
				return 0, err
			}
		}
	}
	resp, err := s.nc.RequestMsgWithContext(ctx, msgs[len(msgs)-1])
	if err != nil {
		return 0, err
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("jetstream: malformed publish answer: %w", err)
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	return ack.Sequence, nil
}

// Atomic-batch errors that a new attempt can cure: the server holds too many
// open batches, or refused our first message for that reason.
const (
	errCodeBatchDuplicate       = 10201
	errCodeBatchIncomplete      = 10176
	errCodeBatchTooManyInflight = 10210
)

// publishRetrying retries a batch the server turned away for load, with a
// short growing pause, until the context ends.
func (s *Store) publishRetrying(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	pause := 500 * time.Microsecond
	for {
		seq, err := s.publish(ctx, msgs)
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) ||
			(apiErr.ErrorCode != errCodeBatchIncomplete && apiErr.ErrorCode != errCodeBatchTooManyInflight) {
			return seq, err
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(pause):
		}
		pause = min(2*pause, 20*time.Millisecond)
	}
}

// alreadyStored answers a retried append whose events the stream holds
// already: success with the stored sequence when the aggregate's newest event
// is our last one, a concurrent change otherwise.
func (s *Store) alreadyStored(ctx context.Context, a commands.Append) (uint64, error) {
	last, err := s.stream.GetLastMsgForSubject(ctx, events.EventSubject(a.AggregateID))
	if err != nil {
		return 0, domain.ErrConcurrentChange
	}
	if last.Header.Get(jetstream.MsgIDHeader) == a.Events[len(a.Events)-1].EventID {
		return last.Sequence, nil
	}
	return 0, domain.ErrConcurrentChange
}

func isWrongLastSequence(e *jetstream.APIError) bool {
	return e.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		e.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant ||
		strings.Contains(e.Description, "wrong last sequence")
}

// Load reads the whole history of one connection, oldest first, and the
// stream sequence of its newest event. It fails with domain.ErrNotFound when
// the connection has no event.
func (s *Store) Load(ctx context.Context, aggregateID string) ([]events.Event, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	subject := events.EventSubject(aggregateID)
	last, err := s.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, domain.ErrNotFound
	}
	if err != nil {
		return nil, 0, domain.Unavailable(domain.DependencyEventStore, err)
	}
	version, _ := strconv.ParseUint(last.Header.Get(HeaderAggregateVersion), 10, 64)
	if version <= 1 {
		e, err := events.Decode(last.Data)
		if err != nil {
			return nil, 0, err
		}
		return []events.Event{e}, last.Sequence, nil
	}
	cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, 0, domain.Unavailable(domain.DependencyEventStore, err)
	}
	history := make([]events.Event, 0, version)
	for {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			return nil, 0, domain.Unavailable(domain.DependencyEventStore, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, 0, err
		}
		e, err := events.Decode(msg.Data())
		if err != nil {
			return nil, 0, err
		}
		history = append(history, e)
		if meta.Sequence.Stream >= last.Sequence {
			return history, last.Sequence, nil
		}
	}
}

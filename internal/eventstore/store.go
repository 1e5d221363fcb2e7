package eventstore

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

// Headers the store sets on every event message besides the CloudEvents ones.
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
//
// A config name is held by a claim message on its name subject, written
// create-if-absent (Nats-Expected-Last-Subject-Sequence) before the event
// that uses the name, so an event never exists without its claim and of any
// number of racing writers exactly one holds the name. The claim and the
// event are two writes: a writer that dies between them leaves a claim whose
// connection does not use the name. Such a claim is a lease: once older than
// ClaimGrace (far longer than any write may take), a writer that finds it
// folds the holder's events, sees that the holder does not use the name, and
// takes the claim over, so a crash never blocks a name for good.
type Store struct {
	nc      *nats.Conn
	stream  jetstream.Stream
	timeout time.Duration
	// ClaimGrace is how old a claim must be before a writer may judge it
	// abandoned. It must exceed the time any append may take (the timeout).
	ClaimGrace time.Duration
	now        func() time.Time
}

// NewStore returns a store over an existing stream (see EnsureStream).
// timeout bounds each append or load.
func NewStore(nc *nats.Conn, stream jetstream.Stream, timeout time.Duration) (*Store, error) {
	if nc == nil || stream == nil {
		return nil, errors.New("jetstream: NewStore needs a connection and a stream")
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Store{nc: nc, stream: stream, timeout: timeout, ClaimGrace: max(30*time.Second, 6*timeout), now: time.Now}, nil
}

var _ commands.EventStore = (*Store)(nil)

// Append claims the new name (if any), appends the events with the expected
// version of the aggregate, and releases the old name (if any). When the
// events cannot be appended, the claim just made is released again.
func (s *Store) Append(ctx context.Context, a commands.Append) (uint64, error) {
	if len(a.Events) == 0 {
		return 0, errors.New("jetstream: nothing to append")
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	expected, err := s.expectedSequence(ctx, a)
	if err != nil {
		return 0, err
	}
	var claimed uint64
	if a.Claim != nil {
		if claimed, err = s.claim(ctx, *a.Claim, a.AggregateID); err != nil {
			return 0, err
		}
	}
	seq, err := s.appendEvents(ctx, a, expected)
	if err != nil {
		// Give the name back when the server refused the events. When the
		// answer was lost (a timeout, a broken connection) the events may be
		// stored: the claim stays, and the lease check decides later from
		// what the stream holds. The claim is the aggregate's, not this
		// append's: when another append of the same aggregate (a concurrent
		// retry of one idempotent create) stored an event that uses the
		// name, the claim stays too.
		if a.Claim != nil && claimed > 0 && !domain.IsUnavailable(err) {
			if used, uerr := s.usesName(context.WithoutCancel(ctx), *a.Claim, a.AggregateID); uerr == nil && !used {
				_, _ = s.writeName(context.WithoutCancel(ctx), *a.Claim, a.AggregateID, stateReleased, claimed)
			}
		}
		return 0, err
	}
	if a.Release != nil {
		// The event is stored: the old name is free whatever happens next.
		// Should this write be lost, the claim is recognised as stale later.
		if holder, last, err := s.nameHolder(ctx, *a.Release); err == nil && holder == a.AggregateID {
			_, _ = s.writeName(ctx, *a.Release, a.AggregateID, stateReleased, last.Sequence)
		}
	}
	return seq, nil
}

// usesName reports whether an aggregate's stored history ends with a live
// connection of that name.
func (s *Store) usesName(ctx context.Context, n commands.NameClaim, aggregateID string) (bool, error) {
	history, _, err := s.Load(ctx, aggregateID)
	if errors.Is(err, domain.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	conn, err := domain.Rebuild(history)
	if err != nil {
		return false, err
	}
	return !conn.Deleted() && strings.EqualFold(conn.Spec().ConfigName, n.ConfigName), nil
}

// expectedSequence checks the aggregate is at the expected version and
// returns the stream sequence of its newest event (0 for a new aggregate).
func (s *Store) expectedSequence(ctx context.Context, a commands.Append) (uint64, error) {
	if a.ExpectedVersion == 0 {
		return 0, nil
	}
	last, err := s.stream.GetLastMsgForSubject(ctx, events.EventSubject(a.AggregateID))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, domain.ErrNotFound
	case err != nil:
		return 0, domain.Unavailable(domain.DependencyEventStore, err)
	}
	v, _ := strconv.ParseUint(last.Header.Get(HeaderAggregateVersion), 10, 64)
	if v != a.ExpectedVersion {
		return 0, domain.ErrConcurrentChange
	}
	return last.Sequence, nil
}

// claim makes aggregateID the holder of a name and returns the claim's
// sequence. It fails with domain.ErrNameTaken when another connection holds
// the name.
func (s *Store) claim(ctx context.Context, n commands.NameClaim, aggregateID string) (uint64, error) {
	for attempt := 0; attempt < 5; attempt++ {
		holder, last, err := s.nameHolder(ctx, n)
		if err != nil {
			return 0, err
		}
		if holder == aggregateID {
			return last.Sequence, nil // a retry of our own claim
		}
		if holder != "" {
			stale, err := s.abandoned(ctx, n, holder, last)
			if err != nil {
				return 0, err
			}
			if !stale {
				return 0, domain.ErrNameTaken
			}
		}
		var expected uint64
		if last != nil {
			expected = last.Sequence
		}
		seq, err := s.writeName(ctx, n, aggregateID, stateClaimed, expected)
		if errors.Is(err, domain.ErrConcurrentChange) {
			continue // someone wrote the name subject first: look again
		}
		if err != nil {
			return 0, err
		}
		// The claim's sequence is the one the server acknowledged. Reading
		// it back is no substitute: on a replicated stream a direct get may
		// be answered by a follower that has not stored the claim yet.
		return seq, nil
	}
	return 0, domain.ErrNameTaken
}

// abandoned reports whether a claim is a leftover: older than the grace
// period, and its holder does not use the name (it has no events, was
// deleted, or was renamed).
func (s *Store) abandoned(ctx context.Context, n commands.NameClaim, holder string, last *jetstream.RawStreamMsg) (bool, error) {
	if s.now().Sub(last.Time) < s.ClaimGrace {
		return false, nil
	}
	history, _, err := s.Load(ctx, holder)
	if errors.Is(err, domain.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	conn, err := domain.Rebuild(history)
	if err != nil {
		return false, err
	}
	return conn.Deleted() || !strings.EqualFold(conn.Spec().ConfigName, n.ConfigName), nil
}

// writeName writes a claim or release, expecting the name subject's newest
// message to be at sequence expected.
func (s *Store) writeName(ctx context.Context, n commands.NameClaim, aggregateID, state string, expected uint64) (uint64, error) {
	body, err := json.Marshal(claim{State: state, ConnectionID: aggregateID, ConfigName: n.ConfigName})
	if err != nil {
		return 0, err
	}
	m := nats.NewMsg(events.NameSubject(n.Organization, n.ConfigName))
	m.Data = body
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	seq, err := s.publish(ctx, []*nats.Msg{m})
	return seq, s.mapPublishError(err)
}

// nameHolder returns the connection holding a name ("" when free) and the
// name subject's newest message (nil when it has none).
func (s *Store) nameHolder(ctx context.Context, n commands.NameClaim) (string, *jetstream.RawStreamMsg, error) {
	last, err := s.stream.GetLastMsgForSubject(ctx, events.NameSubject(n.Organization, n.ConfigName))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, domain.Unavailable(domain.DependencyEventStore, err)
	}
	var c claim
	if err := json.Unmarshal(last.Data, &c); err != nil {
		return "", nil, fmt.Errorf("jetstream: name subject %s holds a malformed claim at %d: %w", last.Subject, last.Sequence, err)
	}
	if c.State == stateClaimed {
		return c.ConnectionID, last, nil
	}
	return "", last, nil
}

// appendEvents writes the events on the aggregate's subject, the first one
// expecting the subject's newest message at sequence expected. Several
// events go as one atomic batch.
func (s *Store) appendEvents(ctx context.Context, a commands.Append, expected uint64) (uint64, error) {
	msgs := make([]*nats.Msg, 0, len(a.Events))
	for i, e := range a.Events {
		m, err := EventMessage(e)
		if err != nil {
			return 0, err
		}
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
		}
		msgs = append(msgs, m)
	}
	seq, err := s.publishRetrying(ctx, msgs)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeBatchDuplicate || isWrongLastSequence(apiErr)) {
		// Either another writer came first, or these very events were stored
		// before (a retry after a lost answer): the newest event tells.
		return s.alreadyStored(ctx, a)
	}
	return seq, s.mapPublishError(err)
}

// EventMessage is the message that carries an event on its connection's
// subject: the CloudEvents envelope as body, the message id that JetStream
// deduplicates on, and headers that let a consumer route without decoding.
func EventMessage(e events.Event) (*nats.Msg, error) {
	body, err := events.Encode(e)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(events.EventSubject(e.AggregateID))
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
	return m, nil
}

func (s *Store) mapPublishError(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &apiErr) && isWrongLastSequence(apiErr):
		return domain.ErrConcurrentChange
	case errors.As(err, &apiErr):
		return fmt.Errorf("jetstream: append refused: %w", err)
	}
	return domain.Unavailable(domain.DependencyEventStore, err)
}

// pubAck is the server's answer to a publish or a batch commit.
type pubAck struct {
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	Count    int                 `json:"count"`
	Error    *jetstream.APIError `json:"error"`
}

// publish sends one message as a plain publish, or several as an atomic
// batch whose last message commits, and returns the last sequence. A plain
// publish that the duplicate window recognises answers with the stored
// message's sequence.
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

// Atomic-batch errors: a new attempt cures the load ones.
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

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

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// Headers the store sets on every event message besides the CloudEvents ones.
const (
	HeaderAggregateVersion = "Connreg-Aggregate-Version"
	HeaderEventType        = "Connreg-Event-Type"
	// HeaderOrganization names the organization that owns the connection, so
	// that a subscriber can route or filter without decoding the payload.
	HeaderOrganization = "Connreg-Organization"
)

// Store appends to and reads from the system-of-record stream. Config names
// are kept unique by name claims (claim.go).
type Store struct {
	nc      *nats.Conn
	stream  jetstream.Stream
	timeout time.Duration
	// ClaimGrace is how old a claim must be before a writer may judge it
	// abandoned (claim.go). Uniqueness does not depend on it (the fence
	// does); it only spares a writer on its way from being fenced.
	ClaimGrace time.Duration
	now        func() time.Time
	// beforeEvent, when set (by tests), runs between a claim and the event
	// that uses it: where a writer may stall or die.
	beforeEvent func()
	// Observe reports what only the store sees (trace.go); the zero value
	// reports nothing.
	Observe Observer
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
	return &Store{nc: nc, stream: stream, timeout: timeout, ClaimGrace: 2 * timeout, now: time.Now}, nil
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
		cctx, end := s.Observe.span(ctx, "eventstore.claim")
		claimed, err = s.claim(cctx, *a.Claim, a.AggregateID)
		end(err)
		if err != nil {
			return 0, err
		}
	}
	if s.beforeEvent != nil {
		s.beforeEvent()
	}
	seq, err := s.appendEvents(ctx, a, expected, claimed)
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
		// (The append may have spent ctx finding out its outcome.)
		rctx := context.WithoutCancel(ctx)
		if holder, last, err := s.nameHolder(rctx, *a.Release); err == nil && holder == a.AggregateID {
			_, _ = s.writeName(rctx, *a.Release, a.AggregateID, stateReleased, last.Sequence)
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
// returns the stream sequence of the newest message of its lane (0 for a new
// aggregate): its newest event, or a fence written after it (claim.go).
func (s *Store) expectedSequence(ctx context.Context, a commands.Append) (uint64, error) {
	if a.ExpectedVersion == 0 {
		return 0, nil
	}
	last, err := s.stream.GetLastMsgForSubject(ctx, lane(a.AggregateID))
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

// appendEvents writes the events on the aggregate's subject, each one
// conditional on its lane (claim.go): the lane's newest message must be at
// the sequence of the event before (the first at expected). An aggregate's
// events are written one message at a time; a command records one event.
// claimed is the sequence of the claim the events use (0: none).
func (s *Store) appendEvents(ctx context.Context, a commands.Append, expected, claimed uint64) (uint64, error) {
	var seq uint64
	for i, e := range a.Events {
		s.Observe.stamp(ctx, &e)
		m, err := EventMessage(e, a.Organization)
		if err != nil {
			return 0, err
		}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
		m.Header.Set(expectedLastSubjSeqSubjectHeader, lane(a.AggregateID))
		seq, err = s.publishKnowing(ctx, m)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && isWrongLastSequence(apiErr) {
			if i == 0 && a.ExpectedVersion == 0 {
				after, retry, ferr := s.fencedBefore(ctx, a, claimed)
				if ferr != nil {
					return 0, ferr
				}
				if retry {
					m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(after, 10))
					seq, err = s.publishKnowing(ctx, m)
				}
			}
		}
		if errors.As(err, &apiErr) && isWrongLastSequence(apiErr) {
			// Either another writer came first, or this very event was
			// stored before (a retry after a lost answer): the newest event
			// tells.
			return s.alreadyStored(ctx, a)
		}
		if err != nil {
			return 0, s.mapPublishError(err)
		}
		expected = seq
	}
	return seq, nil
}

// fencedBefore looks at the lane of a create refused for its lane's state.
// When the lane holds only a fence written before claimed (this writer
// claimed its name after the fence: a retry of a create whose earlier attempt
// was fenced), the create goes on after the fence: it returns the fence's
// sequence and true. When the fence came after claimed, this very writer was
// fenced and its name taken over: domain.ErrNameTaken. Otherwise (the
// connection has events) false, for alreadyStored to judge.
func (s *Store) fencedBefore(ctx context.Context, a commands.Append, claimed uint64) (uint64, bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	last, err := s.stream.GetLastMsgForSubject(ctx, lane(a.AggregateID))
	if err != nil || !strings.HasPrefix(last.Subject, fenceSubjectPrefix) || last.Header.Get(HeaderAggregateVersion) != "0" {
		return 0, false, nil
	}
	if claimed == 0 || claimed < last.Sequence {
		return 0, false, domain.ErrNameTaken
	}
	return last.Sequence, true, nil
}

// publishKnowing publishes m and, when its answer does not come (a timeout,
// a connection lost after the message left), finds out whether the server
// stored it by publishing it again: the message id makes the server store it
// once and answer the second attempt with the stored sequence
// (DuplicateWindow). When that answer does not come either, the outcome is
// unknown and the error says so (domain.ErrOutcomeUnknown): the caller must
// not say that nothing was written.
func (s *Store) publishKnowing(ctx context.Context, m *nats.Msg) (uint64, error) {
	seq, err := s.publish(ctx, m)
	if err == nil || !mayHaveLanded(err) {
		return seq, err
	}
	// The caller's time may be spent: the check gets a bound of its own.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	seq, err2 := s.publish(cctx, m)
	if err2 == nil || !mayHaveLanded(err2) {
		return seq, err2
	}
	return 0, fmt.Errorf("%w: %w", domain.ErrOutcomeUnknown, domain.Unavailable(domain.DependencyEventStore, err))
}

// mayHaveLanded tells whether a publish that failed with err may still have
// been stored: its request left, and its answer did not come back. No
// responders and a refusal by the server are definite.
func mayHaveLanded(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr), errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrBadSubject), errors.Is(err, nats.ErrMaxPayload):
		return false
	}
	return true
}

// EventMessage is the message that carries an event on its connection's
// subject: the CloudEvents envelope as body, the message id that JetStream
// deduplicates on, and headers that let a consumer route without decoding.
func EventMessage(e events.Event, org string) (*nats.Msg, error) {
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
	if e.TraceParent != "" {
		m.Header.Set(HeaderTraceParent, e.TraceParent)
		if e.TraceState != "" {
			m.Header.Set(HeaderTraceState, e.TraceState)
		}
	}
	m.Header.Set(HeaderOrganization, org)
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

// pubAck is the server's answer to a publish.
type pubAck struct {
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	Error    *jetstream.APIError `json:"error"`
}

// publish sends one message and returns its stream sequence. A publish that
// the duplicate window recognises answers with the stored message's
// sequence.
func (s *Store) publish(ctx context.Context, m *nats.Msg) (uint64, error) {
	resp, err := s.nc.RequestMsgWithContext(ctx, m)
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

// alreadyStored answers a retried append whose events the stream holds
// already: success with the stored sequence when the aggregate's newest event
// is our last one, a concurrent change otherwise.
func (s *Store) alreadyStored(ctx context.Context, a commands.Append) (uint64, error) {
	// The caller's time may be spent by a publish asked twice.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
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
	// An ordered consumer would outlive the read by its inactive threshold
	// (5 minutes by default), and nats-server allows 1,000 consumers per
	// stream by default: past 1,000 loads in 5 minutes (every update, delete
	// and test loads its connection) every further one failed. It is deleted
	// as soon as the history is read; the short threshold covers a failed
	// deletion.
	cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject},
		InactiveThreshold: 30 * time.Second})
	if err != nil {
		return nil, 0, domain.Unavailable(domain.DependencyEventStore, err)
	}
	// Fetch in batches: one pull request per message (Next) made a long
	// history cost a round trip per event, and every command loads it.
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
			_ = s.stream.DeleteConsumer(dctx, info.Name)
			dcancel()
		}
	}()
	history := make([]events.Event, 0, version)
	for {
		want := min(max(int(version)-len(history), 1), loadBatch)
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(time.Until(deadlineOf(ctx))))
		if err != nil {
			return nil, 0, domain.Unavailable(domain.DependencyEventStore, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
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
		if err := batch.Error(); err != nil && got == 0 {
			return nil, 0, domain.Unavailable(domain.DependencyEventStore, err)
		}
		if ctx.Err() != nil {
			return nil, 0, domain.Unavailable(domain.DependencyEventStore, ctx.Err())
		}
	}
}

// loadBatch bounds one fetch of a connection's history.
const loadBatch = 256

// deadlineOf is ctx's deadline (Load always sets one).
func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// Package memstore is an event store held in memory, for tests of the
// command handlers that must run in seconds without a server. It keeps the
// contract of the NATS store (internal/eventstore/eventstoretest runs
// against both): expected versions, name claims with their lease, releases,
// retries. It is never wired into the service: it forgets everything when
// the process ends.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// DefaultClaimGrace is the claim lease of a new Store: the NATS store's
// with its default timeout (two store timeouts of 5 s).
const DefaultClaimGrace = 10 * time.Second

// Store holds every aggregate's events as their encoded envelopes (so a
// payload that cannot travel fails here as it would on the wire, and a
// loaded event shares nothing with the appended one) and the newest claim of
// every name. One mutex makes each Append atomic, so a concurrent writer
// sees it whole or not at all, as the NATS store's expected-sequence checks
// guarantee. Safe for concurrent use.
type Store struct {
	// ClaimGrace is how old a claim must be before a writer may judge it
	// abandoned (its holder does not use the name) and take it over.
	ClaimGrace time.Duration

	now      func() time.Time
	mu       sync.Mutex
	sequence uint64 // the last sequence given, events and claims alike
	streams  map[string][]stored
	names    map[string]claim // by organization and lower-cased name
}

type stored struct {
	sequence uint64
	eventID  string
	version  uint64
	body     []byte
}

type claim struct {
	holder string // "" when released
	at     time.Time
}

// New returns an empty store whose claims age by the clock now.
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{ClaimGrace: DefaultClaimGrace, now: now, streams: map[string][]stored{}, names: map[string]claim{}}
}

var (
	_ commands.EventStore       = (*Store)(nil)
	_ commands.History          = (*Store)(nil)
	_ commands.ConnectionLister = (*Store)(nil)
)

func nameKey(n commands.NameClaim) string {
	return n.Organization + "\x00" + strings.ToLower(n.ConfigName)
}

// Append claims the new name, appends the events at the expected version and
// releases the old name, all or nothing. Its errors are the port's:
// domain.ErrNotFound for an expected version of an unknown aggregate,
// domain.ErrConcurrentChange, domain.ErrNameTaken. The checks run in the NATS
// store's order, so that an append refused for two reasons gives the same
// error from both stores.
func (s *Store) Append(ctx context.Context, a commands.Append) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, domain.Unavailable(domain.DependencyEventStore, err)
	}
	if len(a.Events) == 0 {
		return 0, errors.New("memstore: nothing to append")
	}
	bodies := make([][]byte, len(a.Events))
	for i, e := range a.Events {
		var err error
		if bodies[i], err = events.Encode(e); err != nil {
			return 0, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	stream := s.streams[a.AggregateID]
	if a.ExpectedVersion > 0 {
		if len(stream) == 0 {
			return 0, domain.ErrNotFound
		}
		if stream[len(stream)-1].version != a.ExpectedVersion {
			return 0, domain.ErrConcurrentChange
		}
	}
	if a.Claim != nil {
		if err := s.claimable(*a.Claim, a.AggregateID); err != nil {
			return 0, err
		}
	}
	if a.ExpectedVersion == 0 && len(stream) > 0 {
		// A retry of these very events after a lost answer is answered
		// with what was stored; anything else came second.
		if last := stream[len(stream)-1]; last.eventID == a.Events[len(a.Events)-1].EventID {
			return last.sequence, nil
		}
		return 0, domain.ErrConcurrentChange
	}
	if a.Claim != nil {
		if c, ok := s.names[nameKey(*a.Claim)]; !ok || c.holder != a.AggregateID {
			s.sequence++
			s.names[nameKey(*a.Claim)] = claim{holder: a.AggregateID, at: s.now()}
		}
	}
	for i, e := range a.Events {
		s.sequence++
		stream = append(stream, stored{sequence: s.sequence, eventID: e.EventID, version: e.AggregateVersion, body: bodies[i]})
	}
	s.streams[a.AggregateID] = stream
	if a.Release != nil {
		if c := s.names[nameKey(*a.Release)]; c.holder == a.AggregateID {
			s.sequence++
			s.names[nameKey(*a.Release)] = claim{at: s.now()}
		}
	}
	return stream[len(stream)-1].sequence, nil
}

// ClaimOnly writes a claim of the name for aggregateID and nothing else:
// what a writer that dies between its claim and its event leaves behind.
// It exists for tests of the claim lease.
func (s *Store) ClaimOnly(_ context.Context, n commands.NameClaim, aggregateID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.claimable(n, aggregateID); err != nil {
		return err
	}
	s.sequence++
	s.names[nameKey(n)] = claim{holder: aggregateID, at: s.now()}
	return nil
}

// claimable reports whether aggregateID may hold a name: it is free, held by
// aggregateID already, or abandoned (older than ClaimGrace, and its holder
// has no events, was deleted or renamed). The caller holds s.mu.
func (s *Store) claimable(n commands.NameClaim, aggregateID string) error {
	c, ok := s.names[nameKey(n)]
	if !ok || c.holder == "" || c.holder == aggregateID {
		return nil
	}
	if s.now().Sub(c.at) < s.ClaimGrace {
		return domain.ErrNameTaken
	}
	history, err := s.decode(c.holder)
	if errors.Is(err, domain.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	conn, err := domain.Rebuild(history)
	if err != nil {
		return err
	}
	if conn.Deleted() || !strings.EqualFold(conn.Spec().ConfigName, n.ConfigName) {
		return nil
	}
	return domain.ErrNameTaken
}

// Load returns an aggregate's events, oldest first, and the sequence of the
// newest; domain.ErrNotFound when it has none.
func (s *Store) Load(ctx context.Context, aggregateID string) ([]events.Event, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, domain.Unavailable(domain.DependencyEventStore, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	history, err := s.decode(aggregateID)
	if err != nil {
		return nil, 0, err
	}
	stream := s.streams[aggregateID]
	return history, stream[len(stream)-1].sequence, nil
}

// decode reads an aggregate's events back from their envelopes. The caller
// holds s.mu.
func (s *Store) decode(aggregateID string) ([]events.Event, error) {
	stream := s.streams[aggregateID]
	if len(stream) == 0 {
		return nil, domain.ErrNotFound
	}
	history := make([]events.Event, len(stream))
	for i, m := range stream {
		e, err := events.Decode(m.body)
		if err != nil {
			return nil, fmt.Errorf("memstore: event %d of %s: %w", m.sequence, aggregateID, err)
		}
		history[i] = e
	}
	return history, nil
}

// AggregateIDs lists every aggregate with at least one event, deleted ones
// included, sorted.
func (s *Store) AggregateIDs(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.streams))
	for id := range s.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// Config names are unique within an organization through three kinds of
// messages in the stream:
//
//   - A claim on the name's subject (connections.names.<org>.<name>), written
//     create-if-absent (Nats-Expected-Last-Subject-Sequence) before the event
//     that uses the name: of any number of racing writers exactly one holds
//     the name, and an event never exists without its claim.
//   - The event, conditional on the connection's lane: the newest message of
//     connections.*.<id>, its events and its fences
//     (Nats-Expected-Last-Subject-Sequence-Subject). A connection's history
//     therefore has one event per version, and no event lands after a fence
//     written since its writer looked.
//   - A fence on connections.fences.<id>. The claim and the event are two
//     writes: a writer that dies between them leaves a claim whose connection
//     does not use the name. Such a claim is a lease: once older than
//     ClaimGrace, a writer that finds it folds the holder's events, sees that
//     the holder does not use the name, fences the holder's lane (conditional
//     on the lane's newest message it folded, so a holder's event that landed
//     meanwhile wins) and only then takes the claim over. A writer that was
//     merely slow, stalled past the grace period between its claim and its
//     event, finds its event refused by the server: the name keeps one owner
//     whatever the timing, and the grace period only spares writers on their
//     way from being fenced (it is two store timeouts, 10 s by default).
//
// Fences are internal, like claims: consumers filter on connections.events.>
// and never see them.

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

// fence is the body of a message on a fence subject: who took which name
// from the fenced connection.
type fence struct {
	ConnectionID string `json:"connectionId"`
	ConfigName   string `json:"configName"`
	TakenBy      string `json:"takenBy"`
}

// Subjects of the fences, internal to the store.
const (
	fenceSubjectPrefix = "connections.fences."
	fenceSubjectFilter = "connections.fences.>"
)

func fenceSubject(aggregateID string) string { return fenceSubjectPrefix + aggregateID }

// lane is the filter of one connection's events and fences: the subject its
// events are conditional on.
func lane(aggregateID string) string { return "connections.*." + aggregateID }

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
			stale, err := s.abandoned(ctx, n, holder, last, aggregateID)
			if errors.Is(err, domain.ErrConcurrentChange) {
				continue // the holder wrote meanwhile: look again
			}
			if err != nil {
				return 0, err
			}
			if !stale {
				return 0, domain.ErrNameTaken
			}
			s.Observe.takeover()
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
// deleted, or was renamed). A leftover's holder is fenced (by taker) before
// abandoned answers true, so that its event, should it still come, is
// refused. domain.ErrConcurrentChange means the holder wrote while it was
// being judged.
func (s *Store) abandoned(ctx context.Context, n commands.NameClaim, holder string, last *jetstream.RawStreamMsg, taker string) (bool, error) {
	if s.now().Sub(last.Time) < s.ClaimGrace {
		return false, nil
	}
	var seen, version uint64
	newest, err := s.stream.GetLastMsgForSubject(ctx, lane(holder))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return false, domain.Unavailable(domain.DependencyEventStore, err)
	default:
		seen = newest.Sequence
		version, _ = strconv.ParseUint(newest.Header.Get(HeaderAggregateVersion), 10, 64)
	}
	if version > 0 {
		used, err := s.usesName(ctx, n, holder)
		if err != nil || used {
			return false, err
		}
	}
	return true, s.fence(ctx, n, holder, taker, version, seen)
}

// fence closes the lane of holder: its newest message must still be the one
// at sequence seen, and afterwards an event of holder written against an
// older state is refused by the server. The fence carries the holder's
// version, so that the holder's later writes go on from it.
func (s *Store) fence(ctx context.Context, n commands.NameClaim, holder, taker string, version, seen uint64) error {
	body, err := json.Marshal(fence{ConnectionID: holder, ConfigName: n.ConfigName, TakenBy: taker})
	if err != nil {
		return err
	}
	m := nats.NewMsg(fenceSubject(holder))
	m.Data = body
	m.Header.Set(HeaderAggregateVersion, strconv.FormatUint(version, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(seen, 10))
	m.Header.Set(expectedLastSubjSeqSubjectHeader, lane(holder))
	_, err = s.publish(ctx, m)
	return s.mapPublishError(err)
}

// expectedLastSubjSeqSubjectHeader makes a publish's expected last subject
// sequence apply to another subject (here a filter) than its own: nats-server
// 2.15 honours it.
const expectedLastSubjSeqSubjectHeader = "Nats-Expected-Last-Subject-Sequence-Subject"

// writeName writes a claim or release, expecting the name subject's newest
// message to be at sequence expected, and returns its stream sequence.
func (s *Store) writeName(ctx context.Context, n commands.NameClaim, aggregateID, state string, expected uint64) (uint64, error) {
	body, err := json.Marshal(claim{State: state, ConnectionID: aggregateID, ConfigName: n.ConfigName})
	if err != nil {
		return 0, err
	}
	m := nats.NewMsg(events.NameSubject(n.Organization, n.ConfigName))
	m.Data = body
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	seq, err := s.publish(ctx, m)
	if err != nil {
		return 0, s.mapPublishError(err)
	}
	return seq, nil
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

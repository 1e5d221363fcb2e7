package commands

import (
	"context"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// Sealer encrypts credentials before they enter the event stream. The binding
// is the connection id: a ciphertext sealed for one connection cannot be
// unsealed for another. Implementations return a *domain.UnavailableError
// (domain.DependencySealer) when the sealing service is down, denies the call
// or times out, and never put the plaintext in an error.
type Sealer interface {
	Seal(ctx context.Context, binding string, plaintext []byte) (domain.SealedSecret, error)
}

// NameClaim names a config name within an organization. The event store
// holds at most one live claim per (organization, lower-cased name).
type NameClaim struct {
	Organization string
	ConfigName   string
}

// Append is one write of one aggregate's new events (of Organization's
// connection), expected to follow
// ExpectedVersion, with the name the aggregate claims (held before any event
// is written) and the name it releases (freed after).
type Append struct {
	AggregateID     string
	Organization    string // the owner, stated on every event message for subscribers
	ExpectedVersion uint64
	Events          []events.Event
	Claim           *NameClaim
	Release         *NameClaim
}

// EventStore is the system of record. Append returns the stream sequence of
// the last event written; it fails with domain.ErrNameTaken when the claim is
// held by another connection, domain.ErrConcurrentChange when the aggregate
// moved past ExpectedVersion, and a *domain.UnavailableError when the store
// cannot be reached (no event is then written, unless only its answer was
// lost; a claim written without its event is released by the store's lease).
type EventStore interface {
	Append(ctx context.Context, a Append) (uint64, error)
}

// History loads an aggregate's events, oldest first, from the event store;
// domain.ErrNotFound when it has none.
type History interface {
	Load(ctx context.Context, aggregateID string) ([]events.Event, uint64, error)
}

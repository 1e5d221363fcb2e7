package commands

import (
	"context"
	"errors"
	"time"

	"github.com/connreg/registry/domain"
)

// SecretDescriber completes a sealed secret with what a downstream service
// needs to open it itself (for Vault transit: the mount and the derivation
// context of the connection, missing from secrets sealed before they were
// recorded). It never opens anything.
type SecretDescriber interface {
	Describe(binding string, s domain.SealedSecret) domain.SealedSecret
}

// ReadSealedSecrets asks for a connection's sealed secrets on behalf of a
// caller allowed to receive them.
type ReadSealedSecrets struct {
	ID     string
	Scope  domain.Scope  // a connection outside it is domain.ErrNotFound
	Origin domain.Origin // At is set by the handler's clock
}

// SealedSecrets is what a reader receives: the connection as it was when the
// read was recorded, and its secrets, sealed. SSLKey is zero when the
// connection has no client key.
type SealedSecrets struct {
	Connection *domain.Connection
	Password   domain.SealedSecret
	SSLKey     domain.SealedSecret
	Sequence   uint64
}

// SecretsReadHandler hands out sealed secrets, never plaintext, and records
// every hand-out as connection.secrets-read.v1 before it answers: the history
// shows who received them, and Vault's audit log shows who opened them. When
// the record cannot be written (the event store is down), nothing is handed
// out.
type SecretsReadHandler struct {
	store    EventStore
	history  History
	describe SecretDescriber
	newID    func() string
	now      func() time.Time
}

// NewSecretsReadHandler wires the handler; every dependency is required.
func NewSecretsReadHandler(store EventStore, history History, describe SecretDescriber, newID func() string, now func() time.Time) (*SecretsReadHandler, error) {
	if store == nil || history == nil || describe == nil || newID == nil || now == nil {
		return nil, errors.New("commands: NewSecretsReadHandler needs a store, a history, a describer, an id generator and a clock")
	}
	return &SecretsReadHandler{store: store, history: history, describe: describe, newID: newID, now: now}, nil
}

// Handle records the read and returns the sealed secrets. A deleted or
// unknown connection is domain.ErrNotFound; a lost race with another writer
// is retried from a fresh load (afterConflict).
func (h *SecretsReadHandler) Handle(ctx context.Context, cmd ReadSealedSecrets) (SealedSecrets, error) {
	for attempt := 0; ; attempt++ {
		conn, err := load(ctx, h.history, cmd.ID, cmd.Scope, nil)
		if err != nil {
			return SealedSecrets{}, err
		}
		o := cmd.Origin
		o.At = h.now()
		if _, err := conn.RecordSecretsRead(o); err != nil {
			return SealedSecrets{}, err
		}
		seq, err := h.store.Append(ctx, Append{AggregateID: cmd.ID, Organization: conn.Organization(), ExpectedVersion: conn.PendingFrom(), Events: stamp(conn, h.newID)})
		if retry, err := afterConflict(err, nil, attempt); retry {
			continue
		} else if err != nil {
			return SealedSecrets{}, err
		}
		creds := conn.Credentials()
		out := SealedSecrets{Connection: conn, Password: h.describe.Describe(cmd.ID, creds.Password), Sequence: seq}
		if !creds.SSLKey.IsZero() {
			out.SSLKey = h.describe.Describe(cmd.ID, creds.SSLKey)
		}
		return out, nil
	}
}

package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/connreg/registry/domain"
)

// CreateConnection asks to register a connection. Input holds plaintext
// secrets; the handler seals them and wipes the input's copies.
type CreateConnection struct {
	Input  domain.SpecInput
	Origin domain.Origin // At is set by the handler's clock
}

// Created is what a successful create returns: the new aggregate and the
// stream sequence of its event, which readers use to wait for the projection.
type Created struct {
	Connection *domain.Connection
	Sequence   uint64
}

// CreateHandler validates, seals and appends. It never appends a connection
// whose secrets are not sealed, and a failure at any step writes nothing.
type CreateHandler struct {
	store  EventStore
	sealer Sealer
	newID  func() string
	now    func() time.Time
}

// NewCreateHandler wires the handler; every dependency is required.
func NewCreateHandler(store EventStore, sealer Sealer, newID func() string, now func() time.Time) (*CreateHandler, error) {
	if store == nil || sealer == nil || newID == nil || now == nil {
		return nil, errors.New("commands: NewCreateHandler needs a store, a sealer, an id generator and a clock")
	}
	return &CreateHandler{store: store, sealer: sealer, newID: newID, now: now}, nil
}

// Handle runs the command.
func (h *CreateHandler) Handle(ctx context.Context, cmd CreateConnection) (Created, error) {
	defer clear(cmd.Input.Password)
	if cmd.Input.SSL != nil {
		defer clear(cmd.Input.SSL.Key)
	}
	spec, secrets, err := domain.ParseSpec(cmd.Input)
	if err != nil {
		return Created{}, err
	}
	id := h.newID()
	creds, err := h.seal(ctx, id, secrets)
	if err != nil {
		return Created{}, err
	}
	origin := cmd.Origin
	origin.At = h.now()
	conn, err := domain.Create(id, spec, creds, origin)
	if err != nil {
		return Created{}, err
	}
	evs := conn.PendingEvents()
	for i := range evs {
		evs[i].EventID = h.newID()
	}
	seq, err := h.store.Append(ctx, Append{
		AggregateID:     id,
		ExpectedVersion: 0,
		Events:          evs,
		Claim:           &NameClaim{Organization: conn.Organization(), ConfigName: spec.ConfigName},
	})
	if err != nil {
		return Created{}, err
	}
	return Created{Connection: conn, Sequence: seq}, nil
}

func (h *CreateHandler) seal(ctx context.Context, id string, s domain.Secrets) (domain.Credentials, error) {
	var creds domain.Credentials
	var err error
	if creds.Password, err = h.sealer.Seal(ctx, id, s.Password); err != nil {
		return creds, fmt.Errorf("seal password: %w", err)
	}
	if len(s.SSLKey) > 0 {
		if creds.SSLKey, err = h.sealer.Seal(ctx, id, s.SSLKey); err != nil {
			return creds, fmt.Errorf("seal ssl key: %w", err)
		}
	}
	return creds, nil
}

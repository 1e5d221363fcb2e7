package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/connreg/registry/domain"
)

// CreateConnection asks to register a connection. Input holds plaintext
// secrets; the handler seals them and wipes the input's copies.
// IdempotencyKey, when set, makes a retry of the same request return the
// connection it created instead of a second one.
type CreateConnection struct {
	Input          domain.SpecInput
	Scope          domain.Scope  // the caller's: its organization owns the connection
	Origin         domain.Origin // At is set by the handler's clock
	IdempotencyKey string
}

// CreateDeps are the create handler's collaborators; all are required.
type CreateDeps struct {
	Store   EventStore
	History History
	Sealer  Sealer
	// NewID makes a new connection or event id.
	NewID func() string
	// KeyedID makes the id of a connection created with an Idempotency-Key:
	// the same scope always gives the same id.
	KeyedID func(scope string) string
	Now     func() time.Time
}

// CreateHandler validates, seals and appends. It never appends a connection
// whose secrets are not sealed, and a failure at any step writes nothing.
type CreateHandler struct {
	CreateDeps
}

// NewCreateHandler wires the handler.
func NewCreateHandler(d CreateDeps) (*CreateHandler, error) {
	if d.Store == nil || d.History == nil || d.Sealer == nil || d.NewID == nil || d.KeyedID == nil || d.Now == nil {
		return nil, errors.New("commands: NewCreateHandler needs a store, a history, a sealer, id generators and a clock")
	}
	return &CreateHandler{CreateDeps: d}, nil
}

// Handle runs the command. With an Idempotency-Key the connection id is
// derived from the key (scoped to the organization and product), so two concurrent retries
// race for one aggregate and the event store lets one win; the other, like
// any later retry, gets the connection as it was created. Reusing the key
// for another configuration fails with domain.ErrIdempotencyKeyReused.
func (h *CreateHandler) Handle(ctx context.Context, cmd CreateConnection) (Result, error) {
	defer clear(cmd.Input.Password)
	if cmd.Input.SSL != nil {
		defer clear(cmd.Input.SSL.Key)
	}
	spec, secrets, err := domain.ParseSpec(cmd.Input)
	if err != nil {
		return Result{}, err
	}
	org := cmd.Scope.Organization
	if !cmd.Scope.AllowsProduct(spec.ProductName) {
		return Result{}, domain.ErrProductNotAllowed
	}
	id := h.NewID()
	var idem *domain.Idempotency
	if cmd.IdempotencyKey != "" {
		scope := org + "\x00" + spec.ProductName + "\x00" + cmd.IdempotencyKey
		sum := sha256.Sum256([]byte(scope))
		idem = &domain.Idempotency{KeyHash: hex.EncodeToString(sum[:]), Fingerprint: spec.Fingerprint()}
		id = h.KeyedID(scope)
		if res, err := h.replay(ctx, id, idem, cmd.Scope); !errors.Is(err, domain.ErrNotFound) {
			return res, err
		}
	}
	creds, err := sealSecrets(ctx, h.Sealer, id, secrets)
	if err != nil {
		return Result{}, err
	}
	origin := cmd.Origin
	origin.At = h.Now()
	conn, err := domain.Create(id, org, spec, creds, origin, idem)
	if err != nil {
		return Result{}, err
	}
	seq, err := h.Store.Append(ctx, Append{
		AggregateID:     id,
		Organization:    org,
		ExpectedVersion: 0,
		Events:          stamp(conn, h.NewID),
		Claim:           &NameClaim{Organization: conn.Organization(), ConfigName: spec.ConfigName},
	})
	if idem != nil && (errors.Is(err, domain.ErrConcurrentChange) || errors.Is(err, domain.ErrNameTaken)) {
		// A concurrent retry of the same request may have won.
		if res, rerr := h.replay(ctx, id, idem, cmd.Scope); rerr == nil || !errors.Is(rerr, domain.ErrNotFound) {
			return res, rerr
		}
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Connection: conn, Sequence: seq, Changed: true}, nil
}

// replay answers a retried idempotent create with the connection as its
// create made it.
func (h *CreateHandler) replay(ctx context.Context, id string, idem *domain.Idempotency, scope domain.Scope) (Result, error) {
	evs, _, err := h.History.Load(ctx, id)
	if err != nil {
		return Result{}, err
	}
	first, err := domain.Rebuild(evs[:1])
	if err != nil {
		return Result{}, err
	}
	if !scope.Contains(first) {
		// The key derives the id from the organization: another
		// organization's connection here would be a hash collision.
		return Result{}, domain.ErrIdempotencyKeyReused
	}
	if by := first.CreatedBy(); by == nil || by.KeyHash != idem.KeyHash || by.Fingerprint != idem.Fingerprint {
		return Result{}, domain.ErrIdempotencyKeyReused
	}
	return Result{Connection: first}, nil
}

// sealSecrets seals whichever secrets are present, bound to the connection id.
func sealSecrets(ctx context.Context, sealer Sealer, id string, s domain.Secrets) (domain.Credentials, error) {
	var creds domain.Credentials
	var err error
	if len(s.Password) > 0 {
		if creds.Password, err = sealer.Seal(ctx, id, s.Password); err != nil {
			return creds, fmt.Errorf("seal password: %w", err)
		}
	}
	if len(s.SSLKey) > 0 {
		if creds.SSLKey, err = sealer.Seal(ctx, id, s.SSLKey); err != nil {
			return creds, fmt.Errorf("seal ssl key: %w", err)
		}
	}
	return creds, nil
}

package commands

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// MaxConflictRetries bounds how often a command without If-Match reloads and
// retries after another writer changed the connection first.
const MaxConflictRetries = 3

// UpdateConnection asks to change a connection. IfMatch, when set, is the
// version the caller last saw: a stale one fails with
// domain.ErrVersionMismatch and changes nothing.
type UpdateConnection struct {
	ID      string
	Scope   domain.Scope // a connection outside it is domain.ErrNotFound
	IfMatch *uint64
	Input   domain.PatchInput
	Origin  domain.Origin
}

// Result is a connection after a command, the stream sequence of the event
// written (0 when nothing was written) and whether anything changed.
type Result struct {
	Connection *domain.Connection
	Sequence   uint64
	Changed    bool
}

// UpdateHandler loads, patches and appends, retrying lost races when the
// caller did not pin a version. A rename claims the new name before its event
// and releases the old one after it.
type UpdateHandler struct {
	store   EventStore
	history History
	sealer  Sealer
	newID   func() string
	now     func() time.Time
}

// NewUpdateHandler wires the handler; every dependency is required.
func NewUpdateHandler(store EventStore, history History, sealer Sealer, newID func() string, now func() time.Time) (*UpdateHandler, error) {
	if store == nil || history == nil || sealer == nil || newID == nil || now == nil {
		return nil, errors.New("commands: NewUpdateHandler needs a store, a history, a sealer, an id generator and a clock")
	}
	return &UpdateHandler{store: store, history: history, sealer: sealer, newID: newID, now: now}, nil
}

// Handle runs the command.
func (h *UpdateHandler) Handle(ctx context.Context, cmd UpdateConnection) (Result, error) {
	defer clear(cmd.Input.Password)
	if cmd.Input.SSL != nil {
		defer clear(cmd.Input.SSL.Key)
	}
	var creds *domain.Credentials // sealed once, reused by retries
	for attempt := 0; ; attempt++ {
		conn, err := load(ctx, h.history, cmd.ID, cmd.Scope, cmd.IfMatch)
		if err != nil {
			return Result{}, err
		}
		patch, secrets, err := conn.ParsePatch(cmd.Input)
		if err != nil {
			return Result{}, err
		}
		if creds == nil {
			c, err := sealSecrets(ctx, h.sealer, cmd.ID, secrets)
			if err != nil {
				return Result{}, err
			}
			creds = &c
		}
		before := conn.Spec().ConfigName
		origin := cmd.Origin
		origin.At = h.now()
		changed, err := conn.Update(patch, *creds, origin)
		if err != nil || !changed {
			return Result{Connection: conn}, err
		}
		a := Append{AggregateID: cmd.ID, Organization: conn.Organization(), ExpectedVersion: conn.PendingFrom(), Events: stamp(conn, h.newID)}
		if after := conn.Spec().ConfigName; !strings.EqualFold(before, after) {
			a.Claim = &NameClaim{Organization: conn.Organization(), ConfigName: after}
			a.Release = &NameClaim{Organization: conn.Organization(), ConfigName: before}
		}
		seq, err := h.store.Append(ctx, a)
		if retry, err := afterConflict(err, cmd.IfMatch, attempt); retry {
			continue
		} else if err != nil {
			return Result{}, err
		}
		return Result{Connection: conn, Sequence: seq, Changed: true}, nil
	}
}

// DeleteConnection asks to retire a connection.
type DeleteConnection struct {
	ID      string
	Scope   domain.Scope // a connection outside it is domain.ErrNotFound
	IfMatch *uint64
	Origin  domain.Origin
}

// DeleteHandler records the deletion, then releases the name.
type DeleteHandler struct {
	store   EventStore
	history History
	newID   func() string
	now     func() time.Time
}

// NewDeleteHandler wires the handler; every dependency is required.
func NewDeleteHandler(store EventStore, history History, newID func() string, now func() time.Time) (*DeleteHandler, error) {
	if store == nil || history == nil || newID == nil || now == nil {
		return nil, errors.New("commands: NewDeleteHandler needs a store, a history, an id generator and a clock")
	}
	return &DeleteHandler{store: store, history: history, newID: newID, now: now}, nil
}

// Handle runs the command.
func (h *DeleteHandler) Handle(ctx context.Context, cmd DeleteConnection) (Result, error) {
	for attempt := 0; ; attempt++ {
		conn, err := load(ctx, h.history, cmd.ID, cmd.Scope, cmd.IfMatch)
		if err != nil {
			return Result{}, err
		}
		origin := cmd.Origin
		origin.At = h.now()
		if err := conn.Delete(origin); err != nil {
			return Result{}, err
		}
		seq, err := h.store.Append(ctx, Append{
			AggregateID:     cmd.ID,
			Organization:    conn.Organization(),
			ExpectedVersion: conn.PendingFrom(),
			Events:          stamp(conn, h.newID),
			Release:         &NameClaim{Organization: conn.Organization(), ConfigName: conn.Spec().ConfigName},
		})
		if retry, err := afterConflict(err, cmd.IfMatch, attempt); retry {
			continue
		} else if err != nil {
			return Result{}, err
		}
		return Result{Connection: conn, Sequence: seq, Changed: true}, nil
	}
}

// afterConflict says what a failed append means for a command: with a pinned
// version (If-Match) a concurrent change is a stale version; without one it
// is retried from a fresh load while attempts are left.
func afterConflict(err error, ifMatch *uint64, attempt int) (retry bool, _ error) {
	if errors.Is(err, domain.ErrConcurrentChange) {
		if ifMatch != nil {
			return false, domain.ErrVersionMismatch
		}
		if attempt < MaxConflictRetries {
			return true, nil
		}
	}
	return false, err
}

// load folds a live connection of the caller's scope and checks the caller's
// expected version. A connection outside the scope is not found, checked
// before the version so that a 412 does not reveal it either.
func load(ctx context.Context, history History, id string, scope domain.Scope, ifMatch *uint64) (*domain.Connection, error) {
	evs, _, err := history.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	conn, err := domain.Rebuild(evs)
	if err != nil {
		return nil, err
	}
	if conn.Deleted() || !scope.Contains(conn) {
		return nil, domain.ErrNotFound
	}
	if ifMatch != nil && *ifMatch != conn.Version() {
		return nil, domain.ErrVersionMismatch
	}
	return conn, nil
}

// stamp gives each pending event its id.
func stamp(conn *domain.Connection, newID func() string) []events.Event {
	evs := conn.PendingEvents()
	for i := range evs {
		evs[i].EventID = newID()
	}
	return evs
}

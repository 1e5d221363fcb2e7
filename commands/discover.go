package commands

import (
	"context"
	"errors"
	"time"

	"github.com/connreg/registry/domain"
)

// SchemaDiscoverer lists what a database offers. Like Prober, an unreachable
// database is a failed ProbeResult, not an error; the errors are those of
// Prober (ErrTargetRefused, ErrProbeBusy, a *domain.ValidationError for a
// target that cannot be dialled at all).
type SchemaDiscoverer interface {
	Discover(ctx context.Context, t ProbeTarget) (ProbeResult, domain.Schema, error)
}

// DiscoverSchema asks for the schema of a stored connection, now.
type DiscoverSchema struct {
	ID     string
	Scope  domain.Scope // a connection outside it is domain.ErrNotFound
	Origin domain.Origin
}

// Discovery is the outcome of one discovery. When Probe.Status is
// domain.TestFailed the database could not be read, Probe.Reason says why and
// Schema is empty; nothing was recorded.
type Discovery struct {
	Probe ProbeResult
	// Connection is the connection the schema belongs to, as loaded.
	Connection *domain.Connection
	Schema     domain.Schema
	Digest     string
	// Recorded is true when the schema differed from the last one recorded
	// and connection.schema-discovered.v1 was appended, at stream Sequence.
	Recorded bool
	Sequence uint64
	At       time.Time
}

// DiscoverDeps are the discovery handler's collaborators; all are required.
// Limiter is the connection test's own: a discovery dials the database like
// a test and counts against the same budget.
type DiscoverDeps struct {
	Store      EventStore
	History    History
	Unsealer   Unsealer
	Discoverer SchemaDiscoverer
	Limiter    Limiter
	NewID      func() string
	Now        func() time.Time
}

// DiscoverHandler reads a stored connection's schema from its database and
// records it as connection.schema-discovered.v1 when it changed, so that the
// history shows when a table or column appeared or vanished.
type DiscoverHandler struct {
	DiscoverDeps
}

// NewDiscoverHandler wires the handler.
func NewDiscoverHandler(d DiscoverDeps) (*DiscoverHandler, error) {
	if d.Store == nil || d.History == nil || d.Unsealer == nil || d.Discoverer == nil || d.Limiter == nil || d.NewID == nil || d.Now == nil {
		return nil, errors.New("commands: NewDiscoverHandler needs a store, a history, an unsealer, a discoverer, a limiter, an id generator and a clock")
	}
	return &DiscoverHandler{DiscoverDeps: d}, nil
}

// Handle discovers the schema. The plaintext credentials live only for the
// discovery and are wiped after it. A failed discovery records nothing: the
// connection test is the place where reachability becomes history.
func (h *DiscoverHandler) Handle(ctx context.Context, cmd DiscoverSchema) (Discovery, error) {
	conn, err := load(ctx, h.History, cmd.ID, cmd.Scope, nil)
	if err != nil {
		return Discovery{}, err
	}
	if conn.Deleted() {
		return Discovery{}, domain.ErrNotFound
	}
	if ok, after := h.Limiter.Allow(cmd.ID, h.Now()); !ok {
		return Discovery{}, &RateLimitedError{RetryAfter: after}
	}
	target, err := unsealTarget(ctx, h.Unsealer, conn)
	if err != nil {
		return Discovery{}, err
	}
	res, schema, err := h.Discoverer.Discover(ctx, target)
	target.wipe()
	if err != nil {
		return Discovery{}, err
	}
	d := Discovery{Probe: res, Connection: conn, At: h.Now()}
	if res.Status != domain.TestSucceeded {
		return d, nil
	}
	d.Schema, d.Digest = schema, schema.Digest()
	return d, h.record(ctx, cmd, &d)
}

// record appends the schema when it differs from the last one recorded,
// reloading after a concurrent change (a concurrent discovery may have
// recorded the same schema meanwhile, and then there is nothing to add).
func (h *DiscoverHandler) record(ctx context.Context, cmd DiscoverSchema, d *Discovery) error {
	conn := d.Connection
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			var err error
			if conn, err = load(ctx, h.History, cmd.ID, cmd.Scope, nil); err != nil {
				return err
			}
			d.Connection = conn
		}
		origin := cmd.Origin
		origin.At = d.At
		changed, err := conn.RecordSchema(d.Schema, origin)
		if err != nil || !changed {
			return err
		}
		seq, err := h.Store.Append(ctx, Append{AggregateID: cmd.ID, Organization: conn.Organization(), ExpectedVersion: conn.PendingFrom(), Events: stamp(conn, h.NewID)})
		if retry, err := afterConflict(err, nil, attempt); !retry {
			d.Recorded, d.Sequence = err == nil, seq
			return err
		}
	}
}

// DiscoveryFailedError says the database could not be read for its schema;
// Reason is one of the connection test's reasons, Message never holds a secret.
type DiscoveryFailedError struct {
	Reason  string
	Message string
}

func (e *DiscoveryFailedError) Error() string {
	return "schema discovery failed: " + e.Reason + ": " + e.Message
}

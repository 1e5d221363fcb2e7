package readmodel

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connreg/registry/events"
)

// Reader reads stored documents: the read model (or the projector's
// in-memory index over it).
type Reader interface {
	Get(ctx context.Context, id string) (*Document, error)
	List(ctx context.Context, q ListQuery) (ListResult, error)
}

// EventHistory loads a connection's events, oldest first, from the system of
// record; ErrNotFound when the connection has none.
type EventHistory interface {
	Load(ctx context.Context, id string) ([]events.Event, uint64, error)
}

// Projection tells when the read model reflects a stream sequence.
type Projection interface {
	WaitFor(ctx context.Context, seq uint64) error
}

// Visibility is what one caller may read: the connections of one
// organization and, when Products is not nil, only of those products. A
// connection outside it is ErrNotFound, never a refusal, so that its
// existence is not revealed.
type Visibility struct {
	Organization string
	Products     []string // nil: every product of the organization
}

// Allows reports whether a connection of the organization and product is
// inside the visibility.
func (v Visibility) Allows(org, product string) bool {
	return v.Organization != "" && org == v.Organization && (v.Products == nil || slices.Contains(v.Products, product))
}

// Queries answers the read side's questions with their consistency rules:
// read-your-writes (a read right after this process's write sees it, from
// the stream when the read model lags), point in time (asOf) and history.
// The read model is a projection that lags; the stream is the truth, so every
// answer that cannot wait for the projection folds the stream instead.
type Queries struct {
	reader     Reader
	history    EventHistory
	projection Projection
	logger     *slog.Logger
	wait       time.Duration

	recent    *recentWrites
	lastWrite atomic.Uint64
}

// NewQueries builds the query side. wait bounds how long a list waits for the
// projection of this process's latest write (default 2 s): past it the list
// is served as the read model has it, and a warning is logged.
func NewQueries(reader Reader, history EventHistory, projection Projection, logger *slog.Logger, wait time.Duration) (*Queries, error) {
	if reader == nil || history == nil || projection == nil || logger == nil {
		return nil, errors.New("readmodel: NewQueries needs a reader, a history, a projection and a logger")
	}
	if wait <= 0 {
		wait = 2 * time.Second
	}
	return &Queries{reader: reader, history: history, projection: projection, logger: logger, wait: wait,
		recent: newRecentWrites(5 * time.Minute)}, nil
}

// NoteWrite remembers this process's write (the connection's new version and
// the stream sequence of its last event) so that the next reads see it.
func (q *Queries) NoteWrite(id string, version, seq uint64) {
	q.recent.add(id, version)
	for {
		cur := q.lastWrite.Load()
		if seq <= cur || q.lastWrite.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// Get returns the live connection id. It reads the read model; when the
// document is missing, older than this process's own write, or the read
// model is down, it folds the connection's events from the stream instead.
// A deleted or unknown connection is ErrNotFound (or the store's not-found).
func (q *Queries) Get(ctx context.Context, id string, vis Visibility) (*Document, error) {
	doc, err := q.reader.Get(ctx, id)
	if err == nil && doc.Version >= q.recent.version(id) {
		if doc.Deleted || !vis.Allows(doc.Organization, doc.ProductName) {
			return nil, ErrNotFound
		}
		return doc, nil
	}
	folded, ferr := q.fold(ctx, id, time.Time{}, vis)
	if ferr != nil {
		// When the stream has no such connection but the read model failed
		// for another reason, the read model's failure is the truth to tell.
		if err != nil && !errors.Is(err, ErrNotFound) && errors.Is(ferr, ErrNotFound) {
			return nil, err
		}
		return nil, ferr
	}
	return folded, nil
}

// AsOf returns the connection as it was at an instant, folded from the
// stream: deleted connections answer for the time they were alive.
func (q *Queries) AsOf(ctx context.Context, id string, at time.Time, vis Visibility) (*Document, error) {
	return q.fold(ctx, id, at, vis)
}

// fold applies the connection's events (up to at, when set) the way the
// projector does.
func (q *Queries) fold(ctx context.Context, id string, at time.Time, vis Visibility) (*Document, error) {
	evs, _, err := q.history.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	var doc *Document
	for _, e := range evs {
		if !at.IsZero() && e.OccurredAt.After(at) {
			break
		}
		if doc, _, err = Apply(doc, e, 0); err != nil {
			return nil, err
		}
	}
	if doc == nil || doc.Deleted || !vis.Allows(doc.Organization, doc.ProductName) {
		return nil, ErrNotFound
	}
	return doc, nil
}

// List returns one page of live connections (of lq.Organization: the API
// always sets it). It first waits (bounded) until
// the projector has passed this process's latest write, so a list right
// after a create shows it; reads that follow no write pay nothing.
func (q *Queries) List(ctx context.Context, lq ListQuery) (ListResult, error) {
	if seq := q.lastWrite.Load(); seq > 0 {
		wctx, cancel := context.WithTimeout(ctx, q.wait)
		if err := q.projection.WaitFor(wctx, seq); err != nil {
			q.logger.WarnContext(ctx, "list served before the read model caught up", "sequence", seq)
		}
		cancel()
	}
	return q.reader.List(ctx, lq)
}

// HistoryPage is one page of a connection's history.
type HistoryPage struct {
	Items []HistoryEntry
	Total int
}

// History returns page (1-based) of the connection's events as auditors see
// them (see Describe). A deleted connection keeps its history.
func (q *Queries) History(ctx context.Context, id string, vis Visibility, page, limit int) (HistoryPage, error) {
	evs, _, err := q.history.Load(ctx, id)
	if err != nil {
		return HistoryPage{}, err
	}
	if len(evs) == 0 {
		return HistoryPage{}, ErrNotFound
	}
	created, ok := evs[0].Payload.(*events.ConnectionCreatedV1)
	if !ok || !vis.Allows(created.Organization, created.ProductName) {
		return HistoryPage{}, ErrNotFound
	}
	out := HistoryPage{Items: []HistoryEntry{}, Total: len(evs)}
	var schema *events.ConnectionSchemaDiscoveredV1 // the one before evs[i], for a schema's changes
	for i := 0; i < len(evs) && i < page*limit; i++ {
		p, isSchema := evs[i].Payload.(*events.ConnectionSchemaDiscoveredV1)
		if i >= (page-1)*limit {
			h := Describe(evs[i])
			if isSchema {
				describeSchemaChange(&h, schema, p)
			}
			out.Items = append(out.Items, h)
		}
		if isSchema {
			schema = p
		}
	}
	return out, nil
}

// recentWrites remembers, for a while, the version this process last wrote
// of each connection, so that a read right after a write is served from the
// event stream when the read model is still behind.
type recentWrites struct {
	ttl  time.Duration
	mu   sync.Mutex
	m    map[string]recentWrite
	next time.Time
}

type recentWrite struct {
	version uint64
	at      time.Time
}

func newRecentWrites(ttl time.Duration) *recentWrites {
	return &recentWrites{ttl: ttl, m: map[string]recentWrite{}}
}

func (r *recentWrites) add(id string, version uint64) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[id] = recentWrite{version: version, at: now}
	if now.After(r.next) {
		for k, w := range r.m {
			if now.Sub(w.at) > r.ttl {
				delete(r.m, k)
			}
		}
		r.next = now.Add(r.ttl / 4)
	}
}

func (r *recentWrites) version(id string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.m[id]
	if !ok || time.Since(w.at) > r.ttl {
		return 0
	}
	return w.version
}

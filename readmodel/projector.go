package readmodel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/connreg/registry/events"
)

// Message is one stream message handed to the projector.
type Message struct {
	Sequence uint64
	Subject  string
	Data     []byte
	// Stored is when the stream stored the message (for the projection lag);
	// TraceParent and TraceState its W3C trace context, when it has one (for
	// tracing the projection as part of the request that wrote it). The
	// projection itself ignores them.
	Stored      time.Time
	TraceParent string
	TraceState  string
}

// Write replaces one document, guarded: it applies only while the stored
// document still has version Previous (0: no document yet).
type Write struct {
	Doc      *Document
	Previous uint64
}

// Parked is an event the projector could not apply and set aside, with the
// reason, so that it neither stops the projector nor vanishes.
type Parked struct {
	Sequence uint64
	Subject  string
	Data     []byte
	Reason   string
	ParkedAt time.Time
}

// ErrConflict is returned by a Store when a guarded write found a document of
// another version: another projector wrote in between.
var ErrConflict = errors.New("readmodel: document changed concurrently")

// RefusedError is returned by a Store's Write when it refused some
// documents for good (a MongoDB "invalid key", a document it cannot encode)
// and wrote all the others: retrying would be refused again, so the
// projector parks the events of those documents instead of retrying the
// batch forever. It may be joined with ErrConflict.
type RefusedError struct {
	Reasons map[string]string // document id -> the store's reason
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("readmodel: the store refused %d document(s) permanently", len(e.Reasons))
}

// Store is where the projector keeps the documents. Write refuses a
// document it can never store with a *RefusedError and still writes the
// others; any other error means the batch is worth retrying.
type Store interface {
	Documents(ctx context.Context, ids []string) (map[string]*Document, error)
	Write(ctx context.Context, writes []Write) error
	Park(ctx context.Context, parked []Parked) error
}

// Projector applies batches of events to the read model: one read of the
// documents involved and one bulk write per batch, because single writes
// into the embedded store cost milliseconds each.
type Projector struct {
	store  Store
	logger *slog.Logger
	now    func() time.Time

	mu        sync.Mutex
	projected uint64
	advanced  chan struct{}
	index     *Index
	onParked  func(n int)
}

// OnParked makes the projector call f with the number of events it parked,
// after they are stored, for metrics. Call it before the projector runs.
func (p *Projector) OnParked(f func(n int)) { p.onParked = f }

// KeepIndex makes the projector put every document it writes into idx
// after the write succeeded, and read the current documents from it instead
// of the store. Load idx from the store, then call KeepIndex, before the
// projector runs.
func (p *Projector) KeepIndex(idx *Index) { p.index = idx }

// NewProjector returns a projector writing to store.
func NewProjector(store Store, logger *slog.Logger, now func() time.Time) (*Projector, error) {
	if store == nil || logger == nil || now == nil {
		return nil, errors.New("readmodel: NewProjector needs a store, a logger and a clock")
	}
	return &Projector{store: store, logger: logger, now: now, advanced: make(chan struct{})}, nil
}

// Project applies one batch, in stream order. It returns an error only for
// a failure worth redelivering the whole batch (the store is down); events
// that cannot be applied are parked, and events already applied are skipped,
// so redelivery is harmless.
func (p *Projector) Project(ctx context.Context, batch []Message) error {
	if len(batch) == 0 {
		return nil
	}
	type decoded struct {
		msg Message
		ev  events.Event
	}
	var (
		evs    []decoded
		parked []Parked
		ids    []string
		first  = map[string]uint64{} // the version of each connection's first event in the batch
	)
	for _, m := range batch {
		e, err := events.Decode(m.Data)
		if err != nil {
			parked = append(parked, p.park(m, err))
			continue
		}
		evs = append(evs, decoded{m, e})
		if _, ok := first[e.AggregateID]; !ok {
			first[e.AggregateID] = e.AggregateVersion
			ids = append(ids, e.AggregateID)
		}
	}
	// A connection whose first event in the batch is its creation has no
	// document yet, unless this is a redelivery: skip reading it (unless the
	// index has it: a redelivery after a restart of NATS or of the projector,
	// settled without a write), and let a guarded insert that finds a
	// document send us through a full re-read.
	var known []string
	for _, id := range ids {
		if first[id] != 1 || p.indexed(id) {
			known = append(known, id)
		}
	}
	refused := map[string]string{} // ids the store refused for good: their events are parked
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			known = ids
		}
		docs, err := p.documents(ctx, known, attempt == 0)
		if err != nil {
			return err
		}
		previous := make(map[string]uint64, len(docs))
		for id, d := range docs {
			previous[id] = d.Version
		}
		var parkedNow []Parked
		changed := map[string]bool{}
		blocked := map[string]bool{}
		for _, d := range evs {
			id := d.ev.AggregateID
			if reason, ok := refused[id]; ok {
				if d.ev.AggregateVersion > previous[id] { // stored events stay as they are
					parkedNow = append(parkedNow, p.park(d.msg, refusedBy(id, reason)))
				}
				continue
			}
			if blocked[id] {
				parkedNow = append(parkedNow, p.park(d.msg, fmt.Errorf("%w: an earlier event of %s in this batch was parked", ErrGap, id)))
				continue
			}
			next, applied, err := Apply(docs[id], d.ev, d.msg.Sequence)
			if err != nil {
				blocked[id] = true
				parkedNow = append(parkedNow, p.park(d.msg, err))
				continue
			}
			if applied {
				docs[id] = next
				changed[id] = true
			}
		}
		writes := make([]Write, 0, len(changed))
		for _, id := range ids {
			if changed[id] {
				writes = append(writes, Write{Doc: docs[id], Previous: previous[id]})
			}
		}
		err = p.store.Write(ctx, writes)
		var refusal *RefusedError
		if errors.As(err, &refusal) && len(refusal.Reasons) > 0 {
			for id, reason := range refusal.Reasons {
				refused[id] = reason
			}
			if !errors.Is(err, ErrConflict) {
				// The others are written: park every event of the refused
				// documents in this batch, and go on.
				writes = slices.DeleteFunc(writes, func(w Write) bool { _, ok := refused[w.Doc.ID]; return ok })
				already := map[uint64]bool{}
				for _, pk := range parkedNow {
					already[pk.Sequence] = true
				}
				for _, d := range evs {
					id := d.ev.AggregateID
					if reason, ok := refused[id]; ok && !already[d.msg.Sequence] && d.ev.AggregateVersion > previous[id] {
						parkedNow = append(parkedNow, p.park(d.msg, refusedBy(id, reason)))
					}
				}
				err = nil
			} else {
				err = ErrConflict
			}
		}
		if errors.Is(err, ErrConflict) && attempt < 3 {
			clear(changed)
			continue // another projector moved; re-read and re-fold
		}
		if err != nil {
			return err
		}
		if p.index != nil {
			for _, w := range writes {
				p.index.Put(w.Doc)
			}
		}
		if all := append(parked, parkedNow...); len(all) > 0 {
			if err := p.store.Park(ctx, all); err != nil {
				return err
			}
			if p.onParked != nil {
				p.onParked(len(all))
			}
		}
		p.advance(batch[len(batch)-1].Sequence)
		return nil
	}
}

func refusedBy(id, reason string) error {
	return fmt.Errorf("the read model refused the document of %s: %s", id, reason)
}

// documents returns the current documents of ids: from the index when the
// projector keeps one and may trust it (it wrote them itself), from the store
// for the rest and after a conflict. Every document read from the store goes
// into the index too: a store write can succeed in part (an unordered bulk
// insert that meets one duplicate inserts the others) or succeed after its
// client gave up, and the batch retried after it finds those documents
// already applied and writes nothing; without this the index, and the lists
// it answers, would miss them until the next restart.
func (p *Projector) documents(ctx context.Context, ids []string, fromIndex bool) (map[string]*Document, error) {
	if p.index == nil {
		return p.store.Documents(ctx, ids)
	}
	if !fromIndex {
		docs, err := p.store.Documents(ctx, ids)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			p.index.Put(d)
		}
		return docs, nil
	}
	docs := make(map[string]*Document, len(ids))
	var missing []string
	for _, id := range ids {
		if d, ok := p.index.current(id); ok {
			docs[id] = d
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		more, err := p.store.Documents(ctx, missing)
		if err != nil {
			return nil, err
		}
		for id, d := range more {
			docs[id] = d
			p.index.Put(d)
		}
	}
	return docs, nil
}

// indexed reports whether the projector's index holds a document of id.
func (p *Projector) indexed(id string) bool {
	if p.index == nil {
		return false
	}
	_, ok := p.index.current(id)
	return ok
}

func (p *Projector) park(m Message, reason error) Parked {
	p.logger.Error("projector parked an event", "sequence", m.Sequence, "subject", m.Subject, "reason", reason.Error())
	return Parked{Sequence: m.Sequence, Subject: m.Subject, Data: m.Data, Reason: reason.Error(), ParkedAt: p.now().UTC()}
}

func (p *Projector) advance(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq > p.projected {
		p.projected = seq
		close(p.advanced)
		p.advanced = make(chan struct{})
	}
}

// Projected is the stream sequence up to which every event is reflected in
// the read model (or parked).
func (p *Projector) Projected() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.projected
}

// WaitFor blocks until the read model reflects the stream up to seq, or ctx
// ends. Readers call it after a write of their own (read-your-writes).
func (p *Projector) WaitFor(ctx context.Context, seq uint64) error {
	for {
		p.mu.Lock()
		done, ch := p.projected >= seq, p.advanced
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

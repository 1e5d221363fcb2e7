package readmodel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/connreg/registry/events"
)

// ReplaceWith makes x hold exactly what y holds, in one step under x's lock:
// how the readers of a process move to a new read-model generation without
// ever seeing half of one and half of the other. y must not be used after.
func (x *Index) ReplaceWith(y *Index) {
	y.mu.Lock()
	docs, byCreated, byUpdated, byName := y.docs, y.byCreated, y.byUpdated, y.byName
	y.mu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.docs, x.byCreated, x.byUpdated, x.byName = docs, byCreated, byUpdated, byName
}

// Restart sets the sequence the projector reports as projected, lower or
// higher, when it moves to a new read-model generation: the new generation
// reflects the stream up to its own consumer's acknowledgement floor, not up
// to where the old one was. Waiters (WaitFor) for a later sequence keep
// waiting until the new generation reaches it, so read-your-writes holds
// across the switch. Call it only while Project is not running.
func (p *Projector) Restart(projected uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.projected = projected
	close(p.advanced)
	p.advanced = make(chan struct{})
}

// Fold is the read model computed in memory from the event stream, the way
// the projector computes it (Apply, and an aggregate whose event cannot be
// applied stays at its last good state, as the projector parks the rest of
// its events): what `verify` compares the stored read model with.
type Fold struct {
	docs    map[string]*Document
	blocked map[string]bool
	// Events is how many events were folded, Unapplied how many of them
	// could not be applied (the projector parks those).
	Events, Unapplied int
	// Through is the stream sequence of the last message folded.
	Through uint64
}

// NewFold returns an empty fold.
func NewFold() *Fold { return &Fold{docs: map[string]*Document{}, blocked: map[string]bool{}} }

// Add folds one message. Messages must come in stream order.
func (f *Fold) Add(m Message) {
	f.Through = max(f.Through, m.Sequence)
	f.Events++
	e, err := events.Decode(m.Data)
	if err != nil {
		f.Unapplied++
		return
	}
	id := e.AggregateID
	if f.blocked[id] {
		f.Unapplied++
		return
	}
	next, _, err := Apply(f.docs[id], e, m.Sequence)
	if err != nil {
		f.blocked[id] = true
		f.Unapplied++
		return
	}
	if next != nil {
		f.docs[id] = next
	}
}

// Documents is the folded state of every connection, deleted ones included.
func (f *Fold) Documents() map[string]*Document { return f.docs }

// Difference is one way a stored document disagrees with the fold.
type Difference struct {
	ID        string
	Field     string // "document" when one side has no document at all
	ReadModel string
	Stream    string
}

func (d Difference) String() string {
	return fmt.Sprintf("%s: %s: read model %s, stream %s", d.ID, d.Field, d.ReadModel, d.Stream)
}

// Compare returns how stored differs from folded, sorted by id and field.
// Every field is compared, Sequence included (the stream sequence of the
// event that produced the document's version is the same however often the
// stream is projected). Two representations are not differences: times are
// compared at millisecond precision in UTC, the precision and zone a BSON
// date keeps, and a missing metadata map equals an empty one (an empty map
// is not stored).
func Compare(stored, folded map[string]*Document) []Difference {
	var out []Difference
	for id, s := range stored {
		f, ok := folded[id]
		if !ok {
			out = append(out, Difference{ID: id, Field: "document", ReadModel: describe(s), Stream: "absent"})
			continue
		}
		out = append(out, compareDoc(s, f)...)
	}
	for id, f := range folded {
		if _, ok := stored[id]; !ok {
			out = append(out, Difference{ID: id, Field: "document", ReadModel: "absent", Stream: describe(f)})
		}
	}
	slices.SortFunc(out, func(a, b Difference) int {
		if a.ID != b.ID {
			if a.ID < b.ID {
				return -1
			}
			return 1
		}
		if a.Field < b.Field {
			return -1
		}
		if a.Field > b.Field {
			return 1
		}
		return 0
	})
	return out
}

func describe(d *Document) string {
	return fmt.Sprintf("version %d (%s, deleted=%t)", d.Version, d.ConfigName, d.Deleted)
}

func ms(t time.Time) string { return t.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano) }

func msp(t *time.Time) string {
	if t == nil {
		return "<nil>"
	}
	return ms(*t)
}

func fields(d *Document) [][2]string {
	ssl, test := "<nil>", "<nil>"
	if d.SSL != nil {
		ssl = fmt.Sprintf("%+v", *d.SSL)
	}
	if d.LastTest != nil {
		test = fmt.Sprintf("{Status:%s Reason:%s LatencyMs:%d At:%s}", d.LastTest.Status, d.LastTest.Reason, d.LastTest.LatencyMs, ms(d.LastTest.At))
	}
	health := "<nil>"
	if h := d.Health; h != nil {
		health = fmt.Sprintf("{Status:%s Reason:%s Message:%q Since:%s CheckedAt:%s ConsecutiveFailures:%d}",
			h.Status, h.Reason, h.Message, ms(h.Since), ms(h.CheckedAt), h.ConsecutiveFailures)
	}
	schema := "<nil>"
	if s := d.Discovered; s != nil { // the digest stands for the tables
		schema = fmt.Sprintf("{Digest:%s Sampled:%t At:%s Tables:%d}", s.Digest, s.Sampled, ms(s.At), len(s.Tables))
	}
	meta := "{}"
	if len(d.Metadata) > 0 {
		keys := slices.Sorted(maps.Keys(d.Metadata))
		meta = ""
		for _, k := range keys {
			meta += fmt.Sprintf("%q:%q ", k, d.Metadata[k])
		}
	}
	return [][2]string{
		{"version", fmt.Sprint(d.Version)},
		{"sequence", fmt.Sprint(d.Sequence)},
		{"organization", d.Organization},
		{"configName", d.ConfigName},
		{"configNameKey", d.ConfigNameKey},
		{"productName", d.ProductName},
		{"type", d.Type},
		{"host", d.Host},
		{"port", fmt.Sprint(d.Port)},
		{"databaseName", d.DatabaseName},
		{"userName", d.UserName},
		{"schema", d.Schema},
		{"ssl", ssl},
		{"metadata", meta},
		{"createdAt", ms(d.CreatedAt)},
		{"updatedAt", ms(d.UpdatedAt)},
		{"deleted", fmt.Sprint(d.Deleted)},
		{"deletedAt", msp(d.DeletedAt)},
		{"lastTest", test},
		{"health", health},
		{"discovered", schema},
	}
}

func compareDoc(s, f *Document) []Difference {
	var out []Difference
	sf, ff := fields(s), fields(f)
	for i := range sf {
		if sf[i][1] != ff[i][1] {
			out = append(out, Difference{ID: s.ID, Field: sf[i][0], ReadModel: fmt.Sprintf("%q", sf[i][1]), Stream: fmt.Sprintf("%q", ff[i][1])})
		}
	}
	return out
}

// Overwriter stores documents as they are, unguarded.
type Overwriter interface {
	Overwrite(ctx context.Context, docs []*Document) error
}

// SoleWriter is the store of a projector that is the only writer of its
// collection and keeps every document of it in idx (loaded from the
// collection before it starts): a replay building a new generation. It
// answers Documents from idx without reading the store, and when a guarded
// write conflicts (a batch a crashed run had half written, redelivered) it
// overwrites the batch's documents instead, which is right because the
// projector computed them from idx and the stream, the only truth for a
// collection nobody else writes.
func SoleWriter(store Store, over Overwriter, idx *Index) Store {
	return soleWriter{Store: store, over: over, idx: idx}
}

type soleWriter struct {
	Store
	over Overwriter
	idx  *Index
}

func (s soleWriter) Documents(_ context.Context, ids []string) (map[string]*Document, error) {
	out := make(map[string]*Document, len(ids))
	for _, id := range ids {
		if d, ok := s.idx.current(id); ok {
			out[id] = d
		}
	}
	return out, nil
}

func (s soleWriter) Write(ctx context.Context, writes []Write) error {
	err := s.Store.Write(ctx, writes)
	if !errors.Is(err, ErrConflict) {
		return err
	}
	// Documents the store refused for good are not overwritten (it would
	// refuse them again); the refusal goes back to the projector to park.
	var refused *RefusedError
	errors.As(err, &refused)
	docs := make([]*Document, 0, len(writes))
	for _, w := range writes {
		if refused != nil {
			if _, ok := refused.Reasons[w.Doc.ID]; ok {
				continue
			}
		}
		docs = append(docs, w.Doc)
	}
	if err := s.over.Overwrite(ctx, docs); err != nil {
		return err
	}
	if refused != nil {
		return refused
	}
	return nil
}

package domain_test

import (
	"testing"
	"time"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

var (
	orders   = domain.Table{Name: "orders", Columns: []domain.Column{{Name: "id", Type: "bigint", PrimaryKey: true}}}
	view     = domain.Table{Name: "open_orders", View: true, Columns: []domain.Column{{Name: "id", Type: "bigint", Nullable: true}}}
	withNote = domain.Table{Name: "orders", Columns: []domain.Column{{Name: "id", Type: "bigint", PrimaryKey: true}, {Name: "note", Type: "text", Nullable: true}}}
)

// TestRecordSchemaOnlyOnChange: given the schemas recorded so far, a
// discovery records an event exactly when its schema differs.
func TestRecordSchemaOnlyOnChange(t *testing.T) {
	for _, c := range []struct {
		name   string
		before []domain.Schema
		found  domain.Schema
		record bool
	}{
		{"first discovery", nil, domain.Schema{Tables: []domain.Table{orders}}, true},
		{"first discovery of an empty database", nil, domain.Schema{}, true},
		{"same schema", []domain.Schema{{Tables: []domain.Table{orders, view}}}, domain.Schema{Tables: []domain.Table{orders, view}}, false},
		{"same schema, tables in another order", []domain.Schema{{Tables: []domain.Table{orders, view}}}, domain.Schema{Tables: []domain.Table{view, orders}}, false},
		{"column added", []domain.Schema{{Tables: []domain.Table{orders}}}, domain.Schema{Tables: []domain.Table{withNote}}, true},
		{"table became a view", []domain.Schema{{Tables: []domain.Table{orders}}}, domain.Schema{Tables: []domain.Table{{Name: "orders", View: true, Columns: orders.Columns}}}, true},
		{"back to an older schema", []domain.Schema{{Tables: []domain.Table{orders}}, {Tables: []domain.Table{withNote}}}, domain.Schema{Tables: []domain.Table{orders}}, true},
		{"sampled differs", []domain.Schema{{Tables: []domain.Table{orders}}}, domain.Schema{Tables: []domain.Table{orders}, Sampled: true}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := healthFixture(t)
			history := append([]events.Event(nil), conn.PendingEvents()...)
			for _, s := range c.before {
				if ok, err := conn.RecordSchema(s, domain.Origin{At: time.Now()}); !ok || err != nil {
					t.Fatalf("given: %v %v", ok, err)
				}
			}
			history = append(history, conn.PendingEvents()[1:]...)
			loaded, err := domain.Rebuild(history)
			if err != nil {
				t.Fatal(err)
			}
			recorded, err := loaded.RecordSchema(c.found, domain.Origin{At: time.Now()})
			if err != nil || recorded != c.record || len(loaded.PendingEvents()) != map[bool]int{true: 1}[c.record] {
				t.Fatalf("recorded %v (%d events), err %v; want %v", recorded, len(loaded.PendingEvents()), err, c.record)
			}
			if !recorded {
				return
			}
			p := loaded.PendingEvents()[0].Payload.(*events.ConnectionSchemaDiscoveredV1)
			if p.Digest != c.found.Digest() || domain.SchemaFromEvent(p).Digest() != p.Digest || loaded.SchemaDigest() != p.Digest {
				t.Fatalf("digest %s, schema %s, event's schema %s, aggregate %s", p.Digest, c.found.Digest(), domain.SchemaFromEvent(p).Digest(), loaded.SchemaDigest())
			}
			for i := 1; i < len(p.Tables); i++ {
				if p.Tables[i-1].Name > p.Tables[i].Name {
					t.Fatalf("tables not sorted by name: %+v", p.Tables)
				}
			}
		})
	}
}

func TestRecordSchemaOfADeletedConnection(t *testing.T) {
	conn := healthFixture(t)
	if err := conn.Delete(domain.Origin{At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.RecordSchema(domain.Schema{}, domain.Origin{At: time.Now()}); err != domain.ErrNotFound {
		t.Fatalf("err %v", err)
	}
}

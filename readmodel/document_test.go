package readmodel_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/readmodel"
)

// TestApplySchemaDiscovered: the document keeps the latest schema, replaced
// whole, and nothing else moves but the version.
func TestApplySchemaDiscovered(t *testing.T) {
	id := uuid.NewString()
	doc, _, err := readmodel.Apply(nil, created(id, "Orders", 1), 1)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	discovered := func(version uint64, digest string, tables ...events.SchemaTable) events.Event {
		return events.Event{
			Metadata: events.Metadata{EventID: uuid.NewString(), AggregateID: id, AggregateVersion: version, OccurredAt: at, Actor: "t"},
			Payload:  &events.ConnectionSchemaDiscoveredV1{Digest: digest, Tables: tables},
		}
	}
	first, applied, err := readmodel.Apply(doc, discovered(2, "d1",
		events.SchemaTable{Name: "orders", Columns: []events.SchemaColumn{{Name: "id", Type: "bigint", PrimaryKey: true}}},
		events.SchemaTable{Name: "v", View: true, Columns: []events.SchemaColumn{{Name: "id", Type: "bigint", Nullable: true}}}), 2)
	if err != nil || !applied {
		t.Fatal(applied, err)
	}
	want := &readmodel.DiscoveredSchema{Digest: "d1", At: at, Tables: []readmodel.SchemaTable{
		{Name: "orders", Columns: []readmodel.SchemaColumn{{Name: "id", Type: "bigint", PrimaryKey: true}}},
		{Name: "v", View: true, Columns: []readmodel.SchemaColumn{{Name: "id", Type: "bigint", Nullable: true}}},
	}}
	if !reflect.DeepEqual(first.Discovered, want) || first.Version != 2 || !first.UpdatedAt.Equal(doc.UpdatedAt) || doc.Discovered != nil {
		t.Fatalf("doc %+v schema %+v", first, first.Discovered)
	}
	second, _, err := readmodel.Apply(first, discovered(3, "d2"), 3)
	if err != nil || second.Discovered.Digest != "d2" || len(second.Discovered.Tables) != 0 || first.Discovered.Digest != "d1" {
		t.Fatalf("%v %+v", err, second.Discovered)
	}
	if _, _, err := readmodel.Apply(nil, discovered(1, "d"), 1); err == nil {
		t.Fatal("a schema without a document was applied")
	}
}

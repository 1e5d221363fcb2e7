package mongostore

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/readmodel"
)

// TestSchemaTablesAreStoredAsOneString pins the storage form schema.go
// explains: one JSON string, not nested documents, for inserts and guarded
// replaces alike.
func TestSchemaTablesAreStoredAsOneString(t *testing.T) {
	m, err := devstack.StartMongo(t.TempDir(), "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Shutdown)
	ctx := context.Background()
	r, err := Open(ctx, m.URI(), "test", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(ctx) })
	schema := &readmodel.DiscoveredSchema{Digest: "d", Tables: []readmodel.SchemaTable{{Name: "t", Columns: []readmodel.SchemaColumn{{Name: "c", Type: "int"}}}}}
	doc := readmodel.Document{ID: "s", Version: 1, Discovered: schema}
	for _, w := range []readmodel.Write{{Doc: &doc}, {Doc: &readmodel.Document{ID: "s", Version: 2, Discovered: schema}, Previous: 1}} {
		if err := r.Write(ctx, []readmodel.Write{w}); err != nil {
			t.Fatal(err)
		}
		raw, err := r.connections.FindOne(ctx, bson.D{{Key: "_id", Value: "s"}}).Raw()
		if err != nil {
			t.Fatal(err)
		}
		v, err := raw.LookupErr("discovered", "tables")
		if err != nil || v.Type != bson.TypeString || v.StringValue() != `[{"name":"t","columns":[{"name":"c","type":"int"}]}]` {
			t.Fatalf("version %d: tables stored as %v %s (%v)", w.Doc.Version, v.Type, v, err)
		}
	}
}

package dbprobe

import (
	"context"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func discoverOK(t *testing.T, tg Target) Schema {
	t.Helper()
	res, s, err := devTester(t, 10*time.Second).Discover(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusSuccess {
		t.Fatalf("discovery failed: %s %s", res.Reason, res.Message)
	}
	assertNoSecret(t, res.Message, tg.Password)
	return s
}

func tableNamed(t *testing.T, s Schema, name string) Table {
	t.Helper()
	for _, tb := range s.Tables {
		if tb.Name == name {
			return tb
		}
	}
	t.Fatalf("no table %q in %+v", name, s.Tables)
	return Table{}
}

// TestDiscoverPostgres creates tables, a view and a materialized view in the connection's schema and
// a table in another schema, and expects exactly the former with their types, nullability and keys.
func TestDiscoverPostgres(t *testing.T) {
	s := postgresServer(t)
	ctx := context.Background()
	if err := s.Exec(ctx,
		"CREATE TABLE disc_customers (id bigint PRIMARY KEY, name varchar(40) NOT NULL, email text)",
		"CREATE TABLE disc_lines (order_id int, line_no smallint, amount numeric(12,2) NOT NULL, PRIMARY KEY (order_id, line_no))",
		"CREATE VIEW disc_named AS SELECT id, name FROM disc_customers",
		"CREATE MATERIALIZED VIEW disc_totals AS SELECT order_id, sum(amount) AS total FROM disc_lines GROUP BY order_id",
		"CREATE TABLE public.disc_elsewhere (x int)",
		"CREATE TABLE disc_events (at date NOT NULL, kind text) PARTITION BY RANGE (at)",
		"CREATE TABLE disc_events_2026 PARTITION OF disc_events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
	); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Exec(ctx, "DROP TABLE disc_events", "DROP MATERIALIZED VIEW disc_totals", "DROP VIEW disc_named", "DROP TABLE disc_lines", "DROP TABLE disc_customers", "DROP TABLE public.disc_elsewhere")
	})
	got := discoverOK(t, Target{Engine: PostgreSQL, Host: s.Host, Port: s.Port, Database: s.Database, User: s.User,
		Password: []byte(s.Password), Schema: s.Schema})
	want := []Table{
		{Name: "disc_customers", Columns: []Column{
			{Name: "id", Type: "bigint", PrimaryKey: true},
			{Name: "name", Type: "character varying(40)"},
			{Name: "email", Type: "text", Nullable: true},
		}},
		{Name: "disc_events", Columns: []Column{
			{Name: "at", Type: "date"},
			{Name: "kind", Type: "text", Nullable: true},
		}},
		{Name: "disc_lines", Columns: []Column{
			{Name: "order_id", Type: "integer", PrimaryKey: true},
			{Name: "line_no", Type: "smallint", PrimaryKey: true},
			{Name: "amount", Type: "numeric(12,2)"},
		}},
		{Name: "disc_named", View: true, Columns: []Column{
			{Name: "id", Type: "bigint", Nullable: true},
			{Name: "name", Type: "character varying(40)", Nullable: true},
		}},
		{Name: "disc_totals", View: true, Columns: []Column{
			{Name: "order_id", Type: "integer", Nullable: true},
			{Name: "total", Type: "numeric", Nullable: true},
		}},
	}
	var disc []Table
	for _, tb := range got.Tables {
		if len(tb.Name) > 5 && tb.Name[:5] == "disc_" {
			disc = append(disc, tb)
		}
	}
	if !reflect.DeepEqual(disc, want) || got.Sampled {
		t.Fatalf("discovered\n%+v\nwant\n%+v", disc, want)
	}
	// Without a schema, the session's current schema (public) is listed.
	pub := discoverOK(t, Target{Engine: PostgreSQL, Host: s.Host, Port: s.Port, Database: s.Database, User: s.User,
		Password: []byte(s.Password)})
	tableNamed(t, pub, "disc_elsewhere")
}

func TestDiscoverMariaDB(t *testing.T) {
	s := mariaDBServer(t)
	ctx := context.Background()
	if err := s.Exec(ctx,
		"CREATE TABLE disc_items (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(20) NOT NULL, note TEXT)",
		"CREATE VIEW disc_skus AS SELECT sku FROM disc_items",
	); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Exec(ctx, "DROP VIEW disc_skus", "DROP TABLE disc_items") })
	got := discoverOK(t, Target{Engine: MySQL, Host: s.Host, Port: s.Port, Database: s.Database, User: s.User,
		Password: []byte(s.Password)})
	want := []Table{
		{Name: "disc_items", Columns: []Column{
			{Name: "id", Type: "int(10) unsigned", PrimaryKey: true},
			{Name: "sku", Type: "varchar(20)"},
			{Name: "note", Type: "text", Nullable: true},
		}},
		{Name: "disc_skus", View: true, Columns: []Column{{Name: "sku", Type: "varchar(20)"}}},
	}
	if !reflect.DeepEqual(got.Tables, want) {
		t.Fatalf("discovered\n%+v\nwant\n%+v", got.Tables, want)
	}
}

func TestDiscoverMongoDBSamplesFields(t *testing.T) {
	f := ferretServer(t)
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + net.JoinHostPort(f.Host, strconv.Itoa(f.Port)) + "/"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(ctx) })
	db := client.Database("discdb")
	if _, err := db.Collection("orders").InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "sku", Value: "a"}, {Key: "qty", Value: int32(2)}},
		bson.D{{Key: "_id", Value: 2}, {Key: "sku", Value: "b"}, {Key: "note", Value: nil}},
	}); err != nil {
		t.Fatal(err)
	}
	got := discoverOK(t, Target{Engine: MongoDB, Host: f.Host, Port: f.Port, Database: "discdb"})
	want := []Table{{Name: "orders", Columns: []Column{
		{Name: "_id", Type: bson.TypeInt32.String(), PrimaryKey: true},
		{Name: "sku", Type: bson.TypeString.String()},
		{Name: "qty", Type: bson.TypeInt32.String(), Nullable: true},
		{Name: "note", Type: bson.TypeNull.String(), Nullable: true},
	}}}
	if !got.Sampled || !reflect.DeepEqual(got.Tables, want) {
		t.Fatalf("discovered %+v (sampled %v)\nwant %+v", got.Tables, got.Sampled, want)
	}
}

// TestDiscoverUnreachable: a closed port is a failed Result with the test's reason, not an error.
func TestDiscoverUnreachable(t *testing.T) {
	res, s, err := devTester(t, 5*time.Second).Discover(context.Background(),
		Target{Engine: PostgreSQL, Host: "127.0.0.1", Port: closedPort(t), User: "u", Password: []byte("secret-pw")})
	if err != nil || res.Status != StatusFailure || res.Reason != ReasonConnectionRefused || len(s.Tables) != 0 {
		t.Fatalf("got %+v %+v %v", res, s, err)
	}
}

// TestSchemaBuilderFoldsCatalogRows checks the row folding every SQL engine shares, with the spellings
// of SQL Server (TABLE_TYPE "BASE TABLE"/"VIEW", YES/NO) and Oracle (OBJECT_TYPE "TABLE"/"VIEW", Y/N),
// whose queries cannot run here.
func TestSchemaBuilderFoldsCatalogRows(t *testing.T) {
	var b schemaBuilder
	b.row("ORDERS", "TABLE", "ID", "NUMBER", "N", "Y")
	b.row("ORDERS", "TABLE", "NOTE", "VARCHAR2", "Y", "N")
	b.row("EMPTY", "BASE TABLE", "", "", "", "")
	b.row("OPEN_ORDERS", "VIEW", "ID", "int", "YES", "NO")
	want := []Table{
		{Name: "ORDERS", Columns: []Column{{Name: "ID", Type: "NUMBER", PrimaryKey: true}, {Name: "NOTE", Type: "VARCHAR2", Nullable: true}}},
		{Name: "EMPTY", Columns: []Column{}},
		{Name: "OPEN_ORDERS", View: true, Columns: []Column{{Name: "ID", Type: "int", Nullable: true}}},
	}
	if !reflect.DeepEqual(b.s.Tables, want) {
		t.Fatalf("folded %+v", b.s.Tables)
	}
}

package dbprobe

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	mssql "github.com/microsoft/go-mssqldb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Column is one column of a discovered table, with the engine's own type name.
type Column struct {
	Name       string
	Type       string
	Nullable   bool
	PrimaryKey bool
}

// Table is a table, view or MongoDB collection, its columns in database order.
type Table struct {
	Name    string
	View    bool
	Columns []Column
}

// Schema is what a discovery found. Sampled is true when the columns come from a sample of documents
// (MongoDB) rather than from a catalog.
type Schema struct {
	Tables  []Table
	Sampled bool
}

// MongoSampleSize bounds the documents read from each MongoDB collection to name its fields: a schema
// is a catalog question, and a collection of millions must not be scanned to answer it.
const MongoSampleSize = 100

// Discover connects to target like Test (same validation, network policy, concurrency bound and
// timeout) and lists its tables and views with their columns: PostgreSQL and SQL Server those of the
// target's schema (the session's current schema when none is set), MySQL/MariaDB those of its
// database, Oracle those of the schema's owner (the user when none is set), MongoDB the collections of
// its database with the fields of a sample of MongoSampleSize documents each. A database that cannot
// be reached is a failed Result, as for Test; the error is non-nil only when nothing was attempted.
func (t *Tester) Discover(ctx context.Context, target Target) (Result, Schema, error) {
	var s Schema
	res, err := t.attempt(ctx, target, func(ctx context.Context, target Target, d *guardedDialer) error {
		var err error
		s, err = t.discover(ctx, target, d)
		return err
	})
	if err == nil && res.Status == StatusSuccess {
		res.Message = fmt.Sprintf("discovered %d tables and views in %s", len(s.Tables), res.Latency.Round(time.Millisecond))
	}
	if res.Status != StatusSuccess {
		s = Schema{}
	}
	return res, s, err
}

func (t *Tester) discover(ctx context.Context, target Target, d *guardedDialer) (Schema, error) {
	var b schemaBuilder
	var err error
	switch target.Engine {
	case PostgreSQL:
		err = withPostgres(ctx, target, d, func(c *pgconn.PgConn) error { return discoverPostgres(ctx, c, target.Schema, &b) })
	case MySQL:
		err = withMySQL(ctx, target, d, t.timeout, func(c *sql.Conn) error { return b.scanSQL(ctx, c, mysqlSchemaQuery) })
	case SQLServer:
		var cfg, cerr = sqlServerConfig(target, t.timeout)
		if cerr != nil {
			return Schema{}, cerr
		}
		c := mssql.NewConnectorConfig(cfg)
		c.Dialer = d
		err = withSQL(ctx, c, "SELECT 1", "SELECT 1 FROM sys.schemas WHERE name = @p1", target.Schema,
			func(conn *sql.Conn) error { return b.scanSQL(ctx, conn, sqlServerSchemaQuery, target.Schema) })
	case Oracle:
		cfg, cerr := oracleConfig(target, d)
		if cerr != nil {
			return Schema{}, cerr
		}
		err = withSQL(ctx, oracleConnector{cfg}, "SELECT 1 FROM DUAL", "", "",
			func(conn *sql.Conn) error { return b.scanSQL(ctx, conn, oracleSchemaQuery, target.Schema) })
	case MongoDB:
		b.s.Sampled = true
		err = withMongo(ctx, target, d, t.timeout, func(ctx context.Context, db *mongo.Database) error { return discoverMongo(ctx, db, &b) })
	default:
		err = fmt.Errorf("engine %s not implemented", target.Engine)
	}
	if err != nil {
		return Schema{}, err
	}
	return b.s, nil
}

// schemaBuilder folds catalog rows (one per column, ordered by table then column position; a table
// without columns is one row with no column) into a Schema.
type schemaBuilder struct {
	s     Schema
	index map[string]int
}

func (b *schemaBuilder) table(name string, view bool) *Table {
	if b.index == nil {
		b.index = map[string]int{}
	}
	i, ok := b.index[name]
	if !ok {
		i = len(b.s.Tables)
		b.index[name] = i
		b.s.Tables = append(b.s.Tables, Table{Name: name, View: view, Columns: []Column{}})
	}
	return &b.s.Tables[i]
}

// row adds one catalog row. kind is the engine's table type (a view's contains "VIEW" or is "v"/"m");
// nullable and pk are the engine's spellings of yes and no.
func (b *schemaBuilder) row(table, kind, column, typ, nullable, pk string) {
	k := strings.ToUpper(kind)
	tb := b.table(table, strings.Contains(k, "VIEW") || k == "V" || k == "M")
	if column == "" {
		return
	}
	tb.Columns = append(tb.Columns, Column{Name: column, Type: typ, Nullable: truthy(nullable), PrimaryKey: truthy(pk)})
}

func truthy(s string) bool {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "YES", "Y", "T", "TRUE", "1", "PRI":
		return true
	}
	return false
}

// scanSQL runs a catalog query returning (table, kind, column, type, nullable, primary key) rows.
func (b *schemaBuilder) scanSQL(ctx context.Context, c *sql.Conn, query string, args ...any) error {
	rows, err := c.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var f [6]sql.NullString
		if err := rows.Scan(&f[0], &f[1], &f[2], &f[3], &f[4], &f[5]); err != nil {
			return err
		}
		b.row(f[0].String, f[1].String, f[2].String, f[3].String, f[4].String, f[5].String)
	}
	return rows.Err()
}

// postgresSchemaQuery reads pg_catalog rather than information_schema: the latter hides the columns of
// tables the user has no privilege on and spells types without their modifiers. relkind: r table,
// p partitioned table, f foreign table, v view, m materialized view; the partitions of a partitioned
// table are left out (queries go through their parent).
const postgresSchemaQuery = `SELECT c.relname, c.relkind::text, COALESCE(a.attname, ''),
  COALESCE(pg_catalog.format_type(a.atttypid, a.atttypmod), ''),
  CASE WHEN a.attnotnull THEN 'f' ELSE 't' END,
  CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i
    WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey)) THEN 't' ELSE 'f' END
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = COALESCE(NULLIF($1, ''), current_schema()) AND c.relkind IN ('r', 'p', 'f', 'v', 'm')
  AND NOT c.relispartition
ORDER BY c.relname, a.attnum`

func discoverPostgres(ctx context.Context, c *pgconn.PgConn, schema string, b *schemaBuilder) error {
	rr := c.ExecParams(ctx, postgresSchemaQuery, [][]byte{[]byte(schema)}, nil, nil, nil).Read()
	if rr.Err != nil {
		return rr.Err
	}
	for _, r := range rr.Rows {
		b.row(string(r[0]), string(r[1]), string(r[2]), string(r[3]), string(r[4]), string(r[5]))
	}
	return nil
}

// mysqlSchemaQuery lists the tables and views of the connection's database; COLUMN_TYPE keeps the
// length and sign ("int(10) unsigned"), COLUMN_KEY is PRI for primary-key columns.
const mysqlSchemaQuery = `SELECT t.TABLE_NAME, t.TABLE_TYPE, c.COLUMN_NAME, c.COLUMN_TYPE, c.IS_NULLABLE, c.COLUMN_KEY
FROM information_schema.TABLES t
LEFT JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME
WHERE t.TABLE_SCHEMA = DATABASE()
ORDER BY t.TABLE_NAME, c.ORDINAL_POSITION`

// sqlServerSchemaQuery lists the tables and views of the connection's schema (the user's default
// schema when none is set). Written from the documented INFORMATION_SCHEMA views; no SQL Server runs
// here, so it is untested against a server.
const sqlServerSchemaQuery = `SELECT t.TABLE_NAME, t.TABLE_TYPE, c.COLUMN_NAME, c.DATA_TYPE, c.IS_NULLABLE,
  CASE WHEN k.COLUMN_NAME IS NULL THEN 'NO' ELSE 'YES' END
FROM INFORMATION_SCHEMA.TABLES t
LEFT JOIN INFORMATION_SCHEMA.COLUMNS c ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME
LEFT JOIN (SELECT ku.TABLE_SCHEMA, ku.TABLE_NAME, ku.COLUMN_NAME
    FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS tc
    JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE ku
      ON ku.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND ku.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
    WHERE tc.CONSTRAINT_TYPE = 'PRIMARY KEY') k
  ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME AND k.COLUMN_NAME = c.COLUMN_NAME
WHERE t.TABLE_SCHEMA = COALESCE(NULLIF(@p1, ''), SCHEMA_NAME())
ORDER BY t.TABLE_NAME, c.ORDINAL_POSITION`

// oracleSchemaQuery lists the tables and views owned by the schema (the user when none is set; in
// Oracle the empty string is NULL). Written from the documented ALL_* dictionary views; no Oracle runs
// here, so it is untested against a server.
const oracleSchemaQuery = `SELECT o.OBJECT_NAME, o.OBJECT_TYPE, c.COLUMN_NAME, c.DATA_TYPE, c.NULLABLE,
  CASE WHEN p.COLUMN_NAME IS NULL THEN 'N' ELSE 'Y' END
FROM ALL_OBJECTS o
LEFT JOIN ALL_TAB_COLUMNS c ON c.OWNER = o.OWNER AND c.TABLE_NAME = o.OBJECT_NAME
LEFT JOIN (SELECT cc.OWNER, cc.TABLE_NAME, cc.COLUMN_NAME
    FROM ALL_CONSTRAINTS uc
    JOIN ALL_CONS_COLUMNS cc ON cc.OWNER = uc.OWNER AND cc.CONSTRAINT_NAME = uc.CONSTRAINT_NAME
    WHERE uc.CONSTRAINT_TYPE = 'P') p
  ON p.OWNER = c.OWNER AND p.TABLE_NAME = c.TABLE_NAME AND p.COLUMN_NAME = c.COLUMN_NAME
WHERE o.OWNER = NVL(UPPER(:1), USER) AND o.OBJECT_TYPE IN ('TABLE', 'VIEW')
ORDER BY o.OBJECT_NAME, c.COLUMN_ID`

// discoverMongo names each collection's fields from a sample of its documents, in the order they were
// first seen. A field's type is the BSON type seen, "mixed" when the sample holds several; it is
// nullable when a sampled document lacks it or holds null. _id is the primary key.
func discoverMongo(ctx context.Context, db *mongo.Database, b *schemaBuilder) error {
	specs, err := db.ListCollectionSpecifications(ctx, bson.D{})
	if err != nil {
		return err
	}
	for _, spec := range specs {
		if strings.HasPrefix(spec.Name, "system.") {
			continue
		}
		tb := b.table(spec.Name, spec.Type == "view")
		if err := sampleCollection(ctx, db.Collection(spec.Name), tb); err != nil {
			return err
		}
	}
	slices.SortFunc(b.s.Tables, func(x, y Table) int { return strings.Compare(x.Name, y.Name) })
	return nil
}

func sampleCollection(ctx context.Context, coll *mongo.Collection, tb *Table) error {
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetLimit(MongoSampleSize).SetBatchSize(MongoSampleSize))
	if err != nil {
		return err
	}
	defer func() { _ = cur.Close(ctx) }()
	seen := map[string]int{} // field -> documents holding it
	docs := 0
	pos := map[string]int{}
	for cur.Next(ctx) {
		docs++
		elems, err := cur.Current.Elements()
		if err != nil {
			return err
		}
		for _, e := range elems {
			name := e.Key()
			typ := e.Value().Type
			i, ok := pos[name]
			if !ok {
				i = len(tb.Columns)
				pos[name] = i
				tb.Columns = append(tb.Columns, Column{Name: name, Type: typ.String(), PrimaryKey: name == "_id"})
			} else if tb.Columns[i].Type != typ.String() && typ != bson.TypeNull {
				if tb.Columns[i].Type == bson.TypeNull.String() {
					tb.Columns[i].Type = typ.String()
				} else {
					tb.Columns[i].Type = "mixed"
				}
			}
			if typ == bson.TypeNull {
				tb.Columns[i].Nullable = true
			}
			seen[name]++
		}
	}
	if err := cur.Err(); err != nil {
		return err
	}
	for i := range tb.Columns {
		if seen[tb.Columns[i].Name] < docs {
			tb.Columns[i].Nullable = true
		}
	}
	return nil
}

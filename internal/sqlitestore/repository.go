// Package sqlitestore keeps the read model in an embedded SQLite database
// (modernc.org/sqlite: pure Go, no cgo): the default when no MONGO_URI is
// given. Every write and every lookup goes through a B-tree index, so its
// cost grows with log n, not n: one row per connection with a column for
// each list filter and sort, the document itself as JSON, a table of
// metadata pairs for the metadata.<key> filters, and an index for every
// filter and sort the list offers, keyset cursor included.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/readmodel"
)

// ConnectionsTable is generation 0's table; generation N lives in
// "connections_gN", the names the MongoDB adapter gives its collections.
const ConnectionsTable = "connections"

// FileName is the database file inside the directory Open is given.
const FileName = "readmodel.db"

// Repository is the read model in one SQLite database. Writes go through a
// single connection (SQLite has one writer at a time: more connections would
// only wait for each other's lock); reads use a pool of read-only
// connections, which WAL mode lets run beside the writer.
type Repository struct {
	*shared
	table string
}

// shared is what every generation's repository of one database shares.
type shared struct {
	path    string
	writer  *sql.DB
	reader  *sql.DB
	timeout time.Duration
}

// Open opens (creating it when missing) the read model in dir/FileName.
// timeout bounds every call: the driver interrupts SQLite's work when a
// call's context ends, so abandoned work does not keep running.
func Open(ctx context.Context, dir string, timeout time.Duration) (*Repository, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// busy_timeout waits for a lock another process (`projector replay`,
	// `verify`) holds; it is bounded by timeout so a locked database is an
	// error the caller sees, not a hang.
	busy := strconv.FormatInt(timeout.Milliseconds(), 10)
	// synchronous(NORMAL) in WAL mode syncs at checkpoints, not at every
	// commit: a crash may lose the last commits, which the projector
	// re-applies from the stream (it acknowledges only after a commit, and a
	// redelivered event changes nothing). The page cache and the memory map
	// keep the B-tree pages of a large read model in memory: without them a
	// write at 200,000 documents costs twice one at 1,000.
	pragmas := "_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(" + busy + ")" +
		"&_pragma=foreign_keys(0)&_pragma=cache_size(-32768)&_pragma=mmap_size(2147418112)"
	writer, err := sql.Open("sqlite", "file:"+url.PathEscape(path)+"?"+pragmas+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxIdleTime(0)
	reader, err := sql.Open("sqlite", "file:"+url.PathEscape(path)+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	reader.SetMaxOpenConns(8)
	reader.SetMaxIdleConns(8)
	r := &Repository{shared: &shared{path: path, writer: writer, reader: reader, timeout: timeout}, table: ConnectionsTable}
	cctx, cancel := context.WithTimeout(ctx, 3*timeout)
	defer cancel()
	if _, err := writer.ExecContext(cctx, schema); err != nil {
		r.closeDBs()
		return nil, unavailable(fmt.Errorf("sqlite: create schema in %s: %w", path, err))
	}
	if err := r.EnsureIndexes(cctx); err != nil {
		r.closeDBs()
		return nil, err
	}
	return r, nil
}

func (s *shared) closeDBs() {
	_ = s.reader.Close()
	_ = s.writer.Close()
}

// Close closes the database (every generation's repository with it).
func (r *Repository) Close(context.Context) error {
	err := r.reader.Close()
	if werr := r.writer.Close(); err == nil {
		err = werr
	}
	return err
}

// Path is the database file.
func (r *Repository) Path() string { return r.path }

// schema holds what every generation shares: the parked events and the
// generation record.
const schema = `
CREATE TABLE IF NOT EXISTS parked_events (
	sequence  INTEGER PRIMARY KEY,
	subject   TEXT NOT NULL,
	data      BLOB NOT NULL,
	reason    TEXT NOT NULL,
	parked_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS readmodel_meta (
	id            TEXT PRIMARY KEY,
	generation    INTEGER NOT NULL,
	collection    TEXT NOT NULL,
	consumer      TEXT NOT NULL,
	pending       INTEGER NOT NULL DEFAULT 0,
	pending_owner TEXT,
	pending_until INTEGER,
	switched_at   INTEGER
);`

// tableName accepts only the names generations get: table names cannot be
// bound as parameters, so nothing else reaches the SQL text.
var tableName = regexp.MustCompile(`^connections(_g[0-9]+)?$`)

// tableSchema is one generation: the documents, with a column for every
// filter and sort of a list, and their metadata pairs. The list indexes are
// partial (live documents only), which keeps deleted connections out of them
// and lets a query that says "deleted = 0" use them. The documents table has
// a rowid: its rows (the JSON document, most of a kilobyte) are too large for
// a WITHOUT ROWID table (SQLite advises rows under a twentieth of a page), and
// every index then points at an 8-byte rowid instead of the 36-byte id.
func tableSchema(t string) string {
	return strings.ReplaceAll(`
CREATE TABLE IF NOT EXISTS "{T}" (
	id            TEXT NOT NULL UNIQUE,
	version       INTEGER NOT NULL,
	sequence      INTEGER NOT NULL,
	product       TEXT NOT NULL,
	type          TEXT NOT NULL,
	host          TEXT NOT NULL,
	database_name TEXT NOT NULL,
	name_key      TEXT NOT NULL,
	health        TEXT NOT NULL,
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL,
	deleted       INTEGER NOT NULL,
	doc           BLOB NOT NULL,
	discovered    BLOB
);
CREATE TABLE IF NOT EXISTS "{T}_metadata" (
	key   TEXT NOT NULL,
	value TEXT NOT NULL,
	id    TEXT NOT NULL,
	PRIMARY KEY (key, value, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "{T}_metadata_id" ON "{T}_metadata" (id);
CREATE INDEX IF NOT EXISTS "{T}_created" ON "{T}" (created_at, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS "{T}_updated" ON "{T}" (updated_at, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS "{T}_name" ON "{T}" (name_key, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS "{T}_product_created" ON "{T}" (product, created_at, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS "{T}_product_updated" ON "{T}" (product, updated_at, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS "{T}_product_name" ON "{T}" (product, name_key, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS "{T}_type_created" ON "{T}" (type, created_at, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS "{T}_host_created" ON "{T}" (host, created_at, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS "{T}_database_created" ON "{T}" (database_name, created_at, id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS "{T}_health_created" ON "{T}" (health, created_at, id) WHERE deleted = 0;
`, "{T}", t)
}

// countsSchema keeps the number of live connections per product, in the
// same transaction as every write (triggers), so that the total of an
// unfiltered or product-only list, the common ones, is read, not counted:
// counting a million index entries takes a third of a second. The table is
// filled from the documents when it is created.
func countsSchema(t string) string {
	return strings.ReplaceAll(`
CREATE TABLE "{T}_counts" (product TEXT PRIMARY KEY, live INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO "{T}_counts" (product, live) SELECT product, count(*) FROM "{T}" WHERE deleted = 0 GROUP BY product;
CREATE TRIGGER "{T}_count_insert" AFTER INSERT ON "{T}" WHEN NEW.deleted = 0 BEGIN
	INSERT INTO "{T}_counts" (product, live) VALUES (NEW.product, 1) ON CONFLICT (product) DO UPDATE SET live = live + 1;
END;
CREATE TRIGGER "{T}_count_delete" AFTER DELETE ON "{T}" WHEN OLD.deleted = 0 BEGIN
	UPDATE "{T}_counts" SET live = live - 1 WHERE product = OLD.product;
END;
CREATE TRIGGER "{T}_count_update" AFTER UPDATE OF product, deleted ON "{T}"
	WHEN OLD.product IS NOT NEW.product OR OLD.deleted IS NOT NEW.deleted BEGIN
	UPDATE "{T}_counts" SET live = live - 1 WHERE product = OLD.product AND OLD.deleted = 0;
	INSERT INTO "{T}_counts" (product, live) SELECT NEW.product, 1 WHERE NEW.deleted = 0
		ON CONFLICT (product) DO UPDATE SET live = live + 1;
END;
`, "{T}", t)
}

// CollectionFor is the table of generation gen.
func CollectionFor(gen int) string {
	if gen == 0 {
		return ConnectionsTable
	}
	return ConnectionsTable + "_g" + strconv.Itoa(gen)
}

// EnsureIndexes creates this generation's tables and indexes when missing.
func (r *Repository) EnsureIndexes(ctx context.Context) error {
	if !tableName.MatchString(r.table) {
		return fmt.Errorf("sqlite: invalid table name %q", r.table)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*r.timeout)
	defer cancel()
	tx, err := r.writer.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(fmt.Errorf("sqlite: create %s: %w", r.table, err))
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, tableSchema(r.table)); err != nil {
		return unavailable(fmt.Errorf("sqlite: create %s: %w", r.table, err))
	}
	var counted int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, r.table+"_counts").Scan(&counted); err != nil {
		return unavailable(err)
	}
	if counted == 0 {
		if _, err := tx.ExecContext(ctx, countsSchema(r.table)); err != nil {
			return unavailable(fmt.Errorf("sqlite: create %s_counts: %w", r.table, err))
		}
	}
	if err := tx.Commit(); err != nil {
		return unavailable(err)
	}
	return nil
}

// WithCollection returns the repository of another generation's table in the
// same database, sharing this one's connections, parked events and
// generation record. Close only the repository Open returned.
func (r *Repository) WithCollection(name string) *Repository {
	return &Repository{shared: r.shared, table: name}
}

// Collection is the name of the table this repository reads and writes.
func (r *Repository) Collection() string { return r.table }

func unavailable(err error) error {
	return domain.Unavailable(domain.DependencyReadModel, err)
}

// q substitutes this repository's table into a statement.
func (r *Repository) q(stmt string) string {
	return strings.ReplaceAll(stmt, "{T}", r.table)
}

// Documents implements readmodel.Store: one primary-key lookup per id.
func (r *Repository) Documents(ctx context.Context, ids []string) (map[string]*readmodel.Document, error) {
	out := make(map[string]*readmodel.Document, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	for chunk := range slices.Chunk(ids, 500) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := r.reader.QueryContext(ctx, r.q(`SELECT doc, discovered FROM "{T}" WHERE id IN (`+placeholders(len(chunk))+`)`), args...)
		if err != nil {
			return nil, unavailable(err)
		}
		err = scanDocs(rows, func(d *readmodel.Document) { out[d.ID] = d })
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// scanDocs decodes rows of (doc, discovered).
func scanDocs(rows *sql.Rows, fn func(*readmodel.Document)) error {
	defer rows.Close()
	var raw, schema []byte
	for rows.Next() {
		if err := rows.Scan(&raw, &schema); err != nil {
			return unavailable(err)
		}
		d, err := decode(raw, schema)
		if err != nil {
			return err
		}
		fn(d)
	}
	if err := rows.Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// stored is the JSON a row keeps: the document with its time fields as
// written, so that a read returns exactly what was written.
func encode(d *readmodel.Document) ([]byte, error) { return json.Marshal(d) }

func decode(raw, schema []byte) (*readmodel.Document, error) {
	var d readmodel.Document
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("sqlite: decode a stored document: %w", err)
	}
	if len(schema) > 0 {
		if err := json.Unmarshal(schema, &d.Discovered); err != nil {
			return nil, fmt.Errorf("sqlite: decode a stored schema: %w", err)
		}
	}
	return &d, nil
}

// row is a document's columns, in the order of the insert statement.
// The discovered schema has a column of its own: it can weigh more than the
// rest of a page of documents, and lists leave it out (Get reads it).
func row(d *readmodel.Document) ([]any, error) {
	withoutSchema := *d
	withoutSchema.Discovered = nil
	raw, err := encode(&withoutSchema)
	if err != nil {
		return nil, err
	}
	var schema []byte
	if d.Discovered != nil {
		if schema, err = json.Marshal(d.Discovered); err != nil {
			return nil, err
		}
	}
	deleted := 0
	if d.Deleted {
		deleted = 1
	}
	return []any{d.ID, int64(d.Version), int64(d.Sequence), d.ProductName, d.Type, d.Host, d.DatabaseName,
		d.ConfigNameKey, d.HealthStatus(), d.CreatedAt.UnixMilli(), d.UpdatedAt.UnixMilli(), deleted, raw, schema}, nil
}

const (
	insertDoc = `INSERT INTO "{T}" (id, version, sequence, product, type, host, database_name, name_key, health, created_at, updated_at, deleted, doc, discovered)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING`
	upsertDoc = `INSERT INTO "{T}" (id, version, sequence, product, type, host, database_name, name_key, health, created_at, updated_at, deleted, doc, discovered)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET version = excluded.version, sequence = excluded.sequence,
		product = excluded.product, type = excluded.type, host = excluded.host, database_name = excluded.database_name,
		name_key = excluded.name_key, health = excluded.health, created_at = excluded.created_at, updated_at = excluded.updated_at,
		deleted = excluded.deleted, doc = excluded.doc, discovered = excluded.discovered`
	replaceDoc = `UPDATE "{T}" SET version = ?, sequence = ?, product = ?, type = ?, host = ?, database_name = ?, name_key = ?,
		health = ?, created_at = ?, updated_at = ?, deleted = ?, doc = ?, discovered = ? WHERE id = ? AND version = ?`
	deleteMeta = `DELETE FROM "{T}_metadata" WHERE id = ?`
	insertMeta = `INSERT OR IGNORE INTO "{T}_metadata" (key, value, id) VALUES (?,?,?)`
)

// writeTx runs fn in one write transaction, bounded by the timeout: fn must
// run its statements with the context it is given, whose end interrupts them
// inside SQLite. Statements are prepared per transaction: modernc.org/sqlite
// v1.32 compiles a statement at every execution anyway, prepared or not.
func (r *Repository) writeTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	tx, err := r.writer.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(fmt.Errorf("sqlite: begin: %w", err))
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback()
		if errors.Is(err, readmodel.ErrConflict) {
			return err
		}
		return unavailable(err)
	}
	if err := tx.Commit(); err != nil {
		return unavailable(fmt.Errorf("sqlite: commit: %w", err))
	}
	return nil
}

// Write implements readmodel.Store in one transaction: an insert for each new
// document and a replace guarded by the previous version for the others.
// When a guard fails nothing of the batch is kept and ErrConflict is
// returned: the projector re-reads and re-folds.
func (r *Repository) Write(ctx context.Context, writes []readmodel.Write) error {
	if len(writes) == 0 {
		return nil
	}
	return r.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, r.q(insertDoc))
		if err != nil {
			return err
		}
		defer ins.Close()
		rep, err := tx.PrepareContext(ctx, r.q(replaceDoc))
		if err != nil {
			return err
		}
		defer rep.Close()
		meta, err := r.metaWriter(ctx, tx)
		if err != nil {
			return err
		}
		defer meta.close()
		for _, w := range writes {
			args, err := row(w.Doc)
			if err != nil {
				return err
			}
			var res sql.Result
			if w.Previous == 0 {
				res, err = ins.ExecContext(ctx, args...)
			} else {
				res, err = rep.ExecContext(ctx, append(args[1:], w.Doc.ID, int64(w.Previous))...)
			}
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return readmodel.ErrConflict
			}
			if err := meta.put(ctx, w.Doc, w.Previous == 0); err != nil {
				return err
			}
		}
		return nil
	})
}

type metaWriter struct{ del, ins *sql.Stmt }

func (r *Repository) metaWriter(ctx context.Context, tx *sql.Tx) (*metaWriter, error) {
	del, err := tx.PrepareContext(ctx, r.q(deleteMeta))
	if err != nil {
		return nil, err
	}
	ins, err := tx.PrepareContext(ctx, r.q(insertMeta))
	if err != nil {
		_ = del.Close()
		return nil, err
	}
	return &metaWriter{del, ins}, nil
}

func (m *metaWriter) close() { _ = m.del.Close(); _ = m.ins.Close() }

// put makes the metadata rows of d its metadata; a deleted document keeps
// none (no list shows it).
func (m *metaWriter) put(ctx context.Context, d *readmodel.Document, fresh bool) error {
	if !fresh {
		if _, err := m.del.ExecContext(ctx, d.ID); err != nil {
			return err
		}
	}
	if d.Deleted {
		return nil
	}
	for k, v := range d.Metadata {
		if _, err := m.ins.ExecContext(ctx, k, v, d.ID); err != nil {
			return err
		}
	}
	return nil
}

// Overwrite stores docs as they are, replacing whatever has their id,
// unguarded. Only a writer that is alone on the table and knows the
// documents are newest may use it: a replay building a generation nobody else
// writes yet, recovering from a batch that a crash left half applied.
func (r *Repository) Overwrite(ctx context.Context, docs []*readmodel.Document) error {
	if len(docs) == 0 {
		return nil
	}
	return r.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		up, err := tx.PrepareContext(ctx, r.q(upsertDoc))
		if err != nil {
			return err
		}
		defer up.Close()
		meta, err := r.metaWriter(ctx, tx)
		if err != nil {
			return err
		}
		defer meta.close()
		for _, d := range docs {
			args, err := row(d)
			if err != nil {
				return err
			}
			if _, err := up.ExecContext(ctx, args...); err != nil {
				return err
			}
			if err := meta.put(ctx, d, false); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReplaceDocument overwrites one document, unguarded: for tests and repair
// tools that need to put the read model into a given state.
func (r *Repository) ReplaceDocument(ctx context.Context, d *readmodel.Document) error {
	return r.Overwrite(ctx, []*readmodel.Document{d})
}

// Drop removes this repository's table. Replay uses it on a generation that
// is neither active nor pending, never on the active one.
func (r *Repository) Drop(ctx context.Context) error {
	if !tableName.MatchString(r.table) {
		return fmt.Errorf("sqlite: invalid table name %q", r.table)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*r.timeout)
	defer cancel()
	if _, err := r.writer.ExecContext(ctx, r.q(`DROP TABLE IF EXISTS "{T}"; DROP TABLE IF EXISTS "{T}_metadata"; DROP TABLE IF EXISTS "{T}_counts";`)); err != nil {
		return unavailable(fmt.Errorf("sqlite: drop %s: %w", r.table, err))
	}
	return nil
}

// Park implements readmodel.Store. Parking the same event twice keeps one.
func (r *Repository) Park(ctx context.Context, parked []readmodel.Parked) error {
	if len(parked) == 0 {
		return nil
	}
	return r.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, p := range parked {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO parked_events (sequence, subject, data, reason, parked_at) VALUES (?,?,?,?,?)`,
				int64(p.Sequence), p.Subject, p.Data, p.Reason, p.ParkedAt.UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
}

// Parked lists parked events, oldest first.
func (r *Repository) Parked(ctx context.Context) ([]readmodel.Parked, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	rows, err := r.reader.QueryContext(ctx, `SELECT sequence, subject, data, reason, parked_at FROM parked_events ORDER BY sequence`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []readmodel.Parked
	for rows.Next() {
		var (
			p  readmodel.Parked
			at int64
		)
		if err := rows.Scan(&p.Sequence, &p.Subject, &p.Data, &p.Reason, &at); err != nil {
			return nil, unavailable(err)
		}
		p.ParkedAt = time.UnixMilli(at).UTC()
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

// Ping checks the database answers a query.
func (r *Repository) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var one int
	if err := r.reader.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return unavailable(err)
	}
	return nil
}

// ParkedCount is how many events are parked.
func (r *Repository) ParkedCount(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var n int64
	if err := r.reader.QueryRowContext(ctx, `SELECT count(*) FROM parked_events`).Scan(&n); err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

// Get returns the document of a connection, deleted ones included (the
// caller decides what a deleted one means, as with the MongoDB adapter).
func (r *Repository) Get(ctx context.Context, id string) (*readmodel.Document, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var raw, schema []byte
	err := r.reader.QueryRowContext(ctx, r.q(`SELECT doc, discovered FROM "{T}" WHERE id = ?`), id).Scan(&raw, &schema)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, readmodel.ErrNotFound
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return decode(raw, schema)
}

// Each calls fn with every document, in no order: verify reads the whole
// generation with it, and an in-memory index is loaded with it.
func (r *Repository) Each(ctx context.Context, fn func(*readmodel.Document)) error {
	rows, err := r.reader.QueryContext(ctx, r.q(`SELECT doc, discovered FROM "{T}"`))
	if err != nil {
		return unavailable(err)
	}
	return scanDocs(rows, fn)
}

// Len is the number of live documents.
func (r *Repository) Len(ctx context.Context) (int64, error) {
	res, err := r.List(ctx, readmodel.ListQuery{Limit: 0})
	return res.Total, err
}

// IndexNames lists the indexes of this generation's table.
func (r *Repository) IndexNames(ctx context.Context) ([]string, error) {
	rows, err := r.reader.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? ORDER BY name`, r.table)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, unavailable(err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Empty reports whether this generation holds no document at all, deleted
// ones included.
func (r *Repository) Empty(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var any int
	if err := r.reader.QueryRowContext(ctx, r.q(`SELECT EXISTS (SELECT 1 FROM "{T}")`)).Scan(&any); err != nil {
		return false, unavailable(err)
	}
	return any == 0, nil
}

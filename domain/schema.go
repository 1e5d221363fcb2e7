package domain

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"

	"github.com/connreg/registry/events"
)

// Schema is what a connection's database offered at a discovery: its tables,
// views (or MongoDB collections) and their columns.
type Schema struct {
	Tables []Table
	// Sampled says that the columns come from a bounded sample of documents
	// (MongoDB), so a field absent from the sample may still exist.
	Sampled bool
}

// Table is one table, view or collection; columns in database order.
type Table struct {
	Name    string
	View    bool
	Columns []Column
}

// Column is one column with the engine's own type name.
type Column struct {
	Name       string
	Type       string
	Nullable   bool
	PrimaryKey bool
}

// Digest identifies the schema's content: equal schemas have equal digests
// whatever order their tables were discovered in. It is what decides
// whether a discovery is worth recording.
func (s Schema) Digest() string {
	tables := slices.Clone(s.Tables)
	slices.SortStableFunc(tables, func(a, b Table) int { return cmp.Compare(a.Name, b.Name) })
	h := sha256.New()
	// Every string is length-prefixed, so no two schemas share an encoding.
	w := func(parts ...string) {
		for _, p := range parts {
			h.Write([]byte(strconv.Itoa(len(p))))
			h.Write([]byte{':'})
			h.Write([]byte(p))
		}
	}
	w("sampled", strconv.FormatBool(s.Sampled))
	for _, t := range tables {
		w("table", t.Name, strconv.FormatBool(t.View), strconv.Itoa(len(t.Columns)))
		for _, c := range t.Columns {
			w(c.Name, c.Type, strconv.FormatBool(c.Nullable), strconv.FormatBool(c.PrimaryKey))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SchemaDigest is the digest of the last schema recorded, empty before the
// first discovery.
func (c *Connection) SchemaDigest() string { return c.schemaDigest }

// RecordSchema records a discovered schema when it differs from the last one
// recorded and reports whether it did: a discovery that finds nothing new is
// not an event.
func (c *Connection) RecordSchema(s Schema, origin Origin) (bool, error) {
	if c.deleted {
		return false, ErrNotFound
	}
	digest := s.Digest()
	if digest == c.schemaDigest {
		return false, nil
	}
	p := &events.ConnectionSchemaDiscoveredV1{Digest: digest, Sampled: s.Sampled, Tables: make([]events.SchemaTable, 0, len(s.Tables))}
	tables := slices.Clone(s.Tables)
	slices.SortStableFunc(tables, func(a, b Table) int { return cmp.Compare(a.Name, b.Name) })
	for _, t := range tables {
		et := events.SchemaTable{Name: t.Name, View: t.View, Columns: make([]events.SchemaColumn, 0, len(t.Columns))}
		for _, col := range t.Columns {
			et.Columns = append(et.Columns, events.SchemaColumn{Name: col.Name, Type: col.Type, Nullable: col.Nullable, PrimaryKey: col.PrimaryKey})
		}
		p.Tables = append(p.Tables, et)
	}
	return true, c.record(p, origin)
}

// SchemaFromEvent is the schema an event recorded.
func SchemaFromEvent(p *events.ConnectionSchemaDiscoveredV1) Schema {
	s := Schema{Sampled: p.Sampled, Tables: make([]Table, 0, len(p.Tables))}
	for _, t := range p.Tables {
		dt := Table{Name: t.Name, View: t.View, Columns: make([]Column, 0, len(t.Columns))}
		for _, c := range t.Columns {
			dt.Columns = append(dt.Columns, Column{Name: c.Name, Type: c.Type, Nullable: c.Nullable, PrimaryKey: c.PrimaryKey})
		}
		s.Tables = append(s.Tables, dt)
	}
	return s
}

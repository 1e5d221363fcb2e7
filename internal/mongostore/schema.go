package mongostore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/connreg/registry/readmodel"
)

// A discovered schema's tables are stored as one JSON string, not as nested
// documents. FerretDB/SQLite, the embedded store, reads every document of a
// collection on every update and lookup (it uses no index), and its cost
// grows with the number of nested values: measured on 2,000 connections, 20
// schemas of 200 tables x 10 columns made an unrelated ReplaceOne 80 times
// slower as nested documents (7 ms -> 609 ms) and 2.3 times as a string
// (17 ms). Nothing queries inside a schema, so nothing is lost.

var tablesType = reflect.TypeFor[[]readmodel.SchemaTable]()

// storedTable is the JSON form of a table; its names are the storage format.
type storedTable struct {
	Name    string         `json:"name"`
	View    bool           `json:"view,omitempty"`
	Columns []storedColumn `json:"columns"`
}

type storedColumn struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Nullable   bool   `json:"nullable,omitempty"`
	PrimaryKey bool   `json:"primaryKey,omitempty"`
}

func encodeTables(_ bson.EncodeContext, vw bson.ValueWriter, v reflect.Value) error {
	if v.Type() != tablesType {
		return bson.ValueEncoderError{Name: "encodeTables", Types: []reflect.Type{tablesType}, Received: v}
	}
	tables := v.Interface().([]readmodel.SchemaTable)
	stored := make([]storedTable, 0, len(tables))
	for _, t := range tables {
		st := storedTable{Name: t.Name, View: t.View, Columns: make([]storedColumn, 0, len(t.Columns))}
		for _, c := range t.Columns {
			st.Columns = append(st.Columns, storedColumn(c))
		}
		stored = append(stored, st)
	}
	b, err := json.Marshal(stored)
	if err != nil {
		return err
	}
	return vw.WriteString(string(b))
}

func decodeTables(_ bson.DecodeContext, vr bson.ValueReader, v reflect.Value) error {
	if !v.CanSet() || v.Type() != tablesType {
		return bson.ValueDecoderError{Name: "decodeTables", Types: []reflect.Type{tablesType}, Received: v}
	}
	if vr.Type() == bson.TypeNull {
		v.SetZero()
		return vr.ReadNull()
	}
	s, err := vr.ReadString()
	if err != nil {
		return fmt.Errorf("schema tables: %w", err)
	}
	var stored []storedTable
	if err := json.Unmarshal([]byte(s), &stored); err != nil {
		return fmt.Errorf("schema tables: %w", err)
	}
	tables := make([]readmodel.SchemaTable, 0, len(stored))
	for _, st := range stored {
		t := readmodel.SchemaTable{Name: st.Name, View: st.View, Columns: make([]readmodel.SchemaColumn, 0, len(st.Columns))}
		for _, c := range st.Columns {
			t.Columns = append(t.Columns, readmodel.SchemaColumn(c))
		}
		tables = append(tables, t)
	}
	v.Set(reflect.ValueOf(tables))
	return nil
}

// marshal encodes a document with the client's registry, as the driver
// would when it is handed the document itself.
func (r *Repository) marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := bson.NewEncoder(bson.NewDocumentWriter(&buf))
	enc.SetRegistry(r.registry)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// registry is the driver's default registry with the schema tables codec.
func registry() *bson.Registry {
	r := bson.NewRegistry()
	r.RegisterTypeEncoder(tablesType, bson.ValueEncoderFunc(encodeTables))
	r.RegisterTypeDecoder(tablesType, bson.ValueDecoderFunc(decodeTables))
	return r
}

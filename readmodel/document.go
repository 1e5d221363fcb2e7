// Package readmodel turns the event stream into the documents that queries
// read: one document per connection, its current state, never a secret.
// Projection is idempotent: each document remembers the aggregate version it
// reflects, and an event at or below it changes nothing.
package readmodel

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/connreg/registry/events"
)

// Document is one connection as queries see it. It holds no secret, not even
// a sealed one: credentials are read from the event stream by the few
// operations that need them.
type Document struct {
	ID            string            `bson:"_id"`
	Version       uint64            `bson:"version"`
	Sequence      uint64            `bson:"sequence"`
	Organization  string            `bson:"organization"`
	ConfigName    string            `bson:"configName"`
	ConfigNameKey string            `bson:"configNameKey"`
	ProductName   string            `bson:"productName"`
	Type          string            `bson:"type"`
	Host          string            `bson:"host"`
	Port          int               `bson:"port"`
	DatabaseName  string            `bson:"databaseName"`
	UserName      string            `bson:"userName"`
	Schema        string            `bson:"schema,omitempty"`
	SSL           *SSL              `bson:"ssl,omitempty"`
	Metadata      map[string]string `bson:"metadata,omitempty"`
	CreatedAt     time.Time         `bson:"createdAt"`
	UpdatedAt     time.Time         `bson:"updatedAt"`
	Deleted       bool              `bson:"deleted"`
	DeletedAt     *time.Time        `bson:"deletedAt,omitempty"`
	LastTest      *TestResult       `bson:"lastTest,omitempty"`
	Health        *Health           `bson:"health,omitempty"` // nil: unknown, never tested
	// Discovered is the latest schema recorded (connection.schema-discovered.v1).
	Discovered *DiscoveredSchema `bson:"discovered,omitempty"`
}

// DiscoveredSchema is the latest schema of a document's database: a new
// value replaces it whole, it is never changed in place (documents share it).
type DiscoveredSchema struct {
	Digest  string        `bson:"digest"`
	Sampled bool          `bson:"sampled,omitempty"`
	At      time.Time     `bson:"at"`
	Tables  []SchemaTable `bson:"tables"`
}

// SchemaTable is a table, view or collection of a DiscoveredSchema.
type SchemaTable struct {
	Name    string         `bson:"name"`
	View    bool           `bson:"view,omitempty"`
	Columns []SchemaColumn `bson:"columns"`
}

// SchemaColumn is one column of a SchemaTable.
type SchemaColumn struct {
	Name       string `bson:"name"`
	Type       string `bson:"type"`
	Nullable   bool   `bson:"nullable,omitempty"`
	PrimaryKey bool   `bson:"primaryKey,omitempty"`
}

// Health is what the tests of a connection say about it (see
// events.ConnectionHealthChangedV1): Status is events.HealthHealthy or
// HealthFailing once a health-changed event arrived; tests keep CheckedAt and
// ConsecutiveFailures current.
type Health struct {
	Status              string    `bson:"status"`
	Reason              string    `bson:"reason,omitempty"`
	Message             string    `bson:"message,omitempty"`
	Since               time.Time `bson:"since,omitzero"`
	CheckedAt           time.Time `bson:"checkedAt,omitzero"`
	ConsecutiveFailures int       `bson:"consecutiveFailures"`
}

// HealthStatus is the document's health status, events.HealthUnknown when
// it has none yet.
func (d *Document) HealthStatus() string {
	if d.Health == nil || d.Health.Status == "" {
		return events.HealthUnknown
	}
	return d.Health.Status
}

// TestResult is the latest connection test of a document.
type TestResult struct {
	Status    string    `bson:"status"`
	Reason    string    `bson:"reason,omitempty"`
	LatencyMs int64     `bson:"latencyMs"`
	At        time.Time `bson:"at"`
}

// SSL is the SSL block of a document: the mode and which parts are set.
type SSL struct {
	Mode    string `bson:"mode"`
	HasCA   bool   `bson:"hasCA"`
	HasCert bool   `bson:"hasCert"`
	HasKey  bool   `bson:"hasKey"`
}

// ErrGap means an event arrived for a document that has not seen the event
// before it: something earlier was parked or lost. The event is parked too.
var ErrGap = errors.New("readmodel: event does not follow the document's version")

// Apply folds one event into doc (nil when the connection has no document
// yet) and returns the new document. applied is false when the event was
// already reflected (a redelivery or a replay), in which case doc is returned
// unchanged.
func Apply(doc *Document, e events.Event, sequence uint64) (next *Document, applied bool, err error) {
	current := uint64(0)
	if doc != nil {
		current = doc.Version
	}
	if e.AggregateVersion <= current {
		return doc, false, nil
	}
	if e.AggregateVersion != current+1 {
		return doc, false, fmt.Errorf("%w: event version %d, document version %d", ErrGap, e.AggregateVersion, current)
	}
	switch p := e.Payload.(type) {
	case *events.ConnectionCreatedV1:
		next = &Document{
			ID:            e.AggregateID,
			Organization:  p.Organization,
			ConfigName:    p.ConfigName,
			ConfigNameKey: strings.ToLower(p.ConfigName),
			ProductName:   p.ProductName,
			Type:          p.Type,
			Host:          p.Host,
			Port:          p.Port,
			DatabaseName:  p.DatabaseName,
			UserName:      p.UserName,
			Schema:        p.Schema,
			Metadata:      maps.Clone(p.Metadata),
			CreatedAt:     e.OccurredAt.UTC(),
		}
		if p.SSL != nil {
			next.SSL = &SSL{Mode: p.SSL.Mode, HasCA: p.SSL.CA != "", HasCert: p.SSL.Cert != "", HasKey: p.SSL.Key != nil}
		}
		next.UpdatedAt = e.OccurredAt.UTC()
	case *events.ConnectionUpdatedV1:
		if doc == nil {
			return doc, false, fmt.Errorf("%w: update of a connection without a document", ErrGap)
		}
		next = doc.clone()
		applyUpdate(next, p)
		next.UpdatedAt = e.OccurredAt.UTC()
	case *events.ConnectionDeletedV1:
		if doc == nil {
			return doc, false, fmt.Errorf("%w: deletion of a connection without a document", ErrGap)
		}
		next = doc.clone()
		at := e.OccurredAt.UTC()
		next.Deleted, next.DeletedAt, next.UpdatedAt = true, &at, at
	case *events.ConnectionCredentialsResealedV1:
		if doc == nil {
			return doc, false, fmt.Errorf("%w: reseal of a connection without a document", ErrGap)
		}
		next = doc.clone() // no visible field changes; the version moves
	case *events.ConnectionTestedV1:
		if doc == nil {
			return doc, false, fmt.Errorf("%w: test of a connection without a document", ErrGap)
		}
		next = doc.clone()
		next.LastTest = &TestResult{Status: p.Status, Reason: p.Reason, LatencyMs: p.LatencyMs, At: e.OccurredAt.UTC()}
		if next.Health == nil {
			next.Health = &Health{}
		}
		next.Health.CheckedAt = e.OccurredAt.UTC()
		if p.Status == "success" {
			next.Health.ConsecutiveFailures = 0
		} else {
			next.Health.ConsecutiveFailures++
		}
	case *events.ConnectionHealthChangedV1:
		if doc == nil {
			return doc, false, fmt.Errorf("%w: health change of a connection without a document", ErrGap)
		}
		next = doc.clone()
		if next.Health == nil {
			next.Health = &Health{}
		}
		next.Health.Status, next.Health.Reason, next.Health.Message = p.Status, p.Reason, p.Message
		next.Health.Since = e.OccurredAt.UTC()
	case *events.ConnectionSecretsReadV1:
		if doc == nil {
			return doc, false, fmt.Errorf("%w: secrets read of a connection without a document", ErrGap)
		}
		next = doc.clone() // an audit record: no visible field changes; the version moves
	case *events.ConnectionSchemaDiscoveredV1:
		if doc == nil {
			return doc, false, fmt.Errorf("%w: schema of a connection without a document", ErrGap)
		}
		next = doc.clone()
		next.Discovered = discovered(p, e.OccurredAt.UTC())
	default:
		return doc, false, fmt.Errorf("readmodel: no projection for %s", e.Type())
	}
	next.Version = e.AggregateVersion
	next.Sequence = sequence
	return next, true, nil
}

func discovered(p *events.ConnectionSchemaDiscoveredV1, at time.Time) *DiscoveredSchema {
	s := &DiscoveredSchema{Digest: p.Digest, Sampled: p.Sampled, At: at, Tables: make([]SchemaTable, 0, len(p.Tables))}
	for _, t := range p.Tables {
		st := SchemaTable{Name: t.Name, View: t.View, Columns: make([]SchemaColumn, 0, len(t.Columns))}
		for _, c := range t.Columns {
			st.Columns = append(st.Columns, SchemaColumn{Name: c.Name, Type: c.Type, Nullable: c.Nullable, PrimaryKey: c.PrimaryKey})
		}
		s.Tables = append(s.Tables, st)
	}
	return s
}

func (d *Document) clone() *Document {
	c := *d
	c.Metadata = maps.Clone(d.Metadata)
	if d.Health != nil {
		h := *d.Health
		c.Health = &h
	}
	if d.SSL != nil {
		ssl := *d.SSL
		c.SSL = &ssl
	}
	return &c
}

func applyUpdate(d *Document, p *events.ConnectionUpdatedV1) {
	if p.ConfigName != nil {
		d.ConfigName, d.ConfigNameKey = *p.ConfigName, strings.ToLower(*p.ConfigName)
	}
	if p.Type != nil {
		d.Type = *p.Type
	}
	if p.Host != nil {
		d.Host = *p.Host
	}
	if p.Port != nil {
		d.Port = *p.Port
	}
	if p.DatabaseName != nil {
		d.DatabaseName = *p.DatabaseName
	}
	if p.UserName != nil {
		d.UserName = *p.UserName
	}
	if p.Schema != nil {
		d.Schema = *p.Schema
	}
	for _, f := range p.Changed {
		switch f {
		case events.FieldSSL:
			d.SSL = nil
			if p.SSL != nil {
				d.SSL = &SSL{Mode: p.SSL.Mode, HasCA: p.SSL.CA != "", HasCert: p.SSL.Cert != "", HasKey: p.SSL.Key != nil}
			}
		case events.FieldMetadata:
			d.Metadata = maps.Clone(p.Metadata)
			if len(d.Metadata) == 0 {
				d.Metadata = nil
			}
		}
	}
}

package readmodel

import (
	"time"

	"github.com/connreg/registry/events"
)

// HistoryEntry is one event of a connection as auditors see it: who, when,
// in which request, and which fields changed. Secret fields are named when
// they change; their values never appear, not even sealed.
type HistoryEntry struct {
	Version    uint64
	EventID    string
	Type       string
	OccurredAt time.Time
	Actor      string
	RequestID  string
	Changed    []string
	Values     map[string]any // new values of the changed fields, secrets excepted
}

// Describe is the history view of one event.
func Describe(e events.Event) HistoryEntry {
	h := HistoryEntry{
		Version:    e.AggregateVersion,
		EventID:    e.EventID,
		Type:       e.Type(),
		OccurredAt: e.OccurredAt.UTC(),
		Actor:      e.Actor,
		RequestID:  e.RequestID,
	}
	values := map[string]any{}
	set := func(field string, v any) {
		h.Changed = append(h.Changed, field)
		if v != nil {
			values[field] = v
		}
	}
	switch p := e.Payload.(type) {
	case *events.ConnectionCreatedV1:
		set(events.FieldConfigName, p.ConfigName)
		set("productName", p.ProductName)
		set(events.FieldType, p.Type)
		set(events.FieldHost, p.Host)
		set(events.FieldPort, p.Port)
		set(events.FieldDatabaseName, p.DatabaseName)
		set(events.FieldUserName, p.UserName)
		set(events.FieldPassword, nil)
		if p.Schema != "" {
			set(events.FieldSchema, p.Schema)
		}
		if p.SSL != nil {
			set(events.FieldSSL, map[string]any{"mode": p.SSL.Mode})
		}
		if len(p.Metadata) > 0 {
			set(events.FieldMetadata, p.Metadata)
		}
	case *events.ConnectionUpdatedV1:
		for _, f := range p.Changed {
			set(f, updatedValue(p, f))
		}
	case *events.ConnectionCredentialsResealedV1:
		set(events.FieldPassword, nil)
		if p.SSLKey != nil {
			set("ssl.key", nil)
		}
	case *events.ConnectionSecretsReadV1:
		values["secrets"] = p.Secrets
	case *events.ConnectionHealthChangedV1:
		values["status"] = p.Status
		values["previous"] = p.Previous
		if p.Reason != "" {
			values["reason"] = p.Reason
		}
	case *events.ConnectionTestedV1:
		if p.Origin != "" {
			values["origin"] = p.Origin
		}
		values["status"] = p.Status
		values["latencyMs"] = p.LatencyMs
		if p.Reason != "" {
			values["reason"] = p.Reason
		}
	}
	if len(values) > 0 {
		h.Values = values
	}
	return h
}

// updatedValue is the new value of one changed field of an update; nil for a
// secret (the password is named as changed, never shown).
func updatedValue(p *events.ConnectionUpdatedV1, field string) any {
	str := func(s *string) any {
		if s == nil {
			return ""
		}
		return *s
	}
	switch field {
	case events.FieldConfigName:
		return str(p.ConfigName)
	case events.FieldType:
		return str(p.Type)
	case events.FieldHost:
		return str(p.Host)
	case events.FieldPort:
		if p.Port != nil {
			return *p.Port
		}
	case events.FieldDatabaseName:
		return str(p.DatabaseName)
	case events.FieldUserName:
		return str(p.UserName)
	case events.FieldSchema:
		return str(p.Schema)
	case events.FieldSSL:
		if p.SSL != nil {
			return map[string]any{"mode": p.SSL.Mode}
		}
		return map[string]any{}
	case events.FieldMetadata:
		return p.Metadata
	}
	return nil
}

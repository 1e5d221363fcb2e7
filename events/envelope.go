package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Stream and subject names. They are part of the contract: renaming one would
// strand every consumer that filters on it.
const (
	StreamName         = "CONNECTIONS"
	EventSubjectPrefix = "connections.events."
	EventSubjectFilter = "connections.events.>"
	NameSubjectPrefix  = "connections.names."
	NameSubjectFilter  = "connections.names.>"
	// Source is the CloudEvents source of every event the registry publishes.
	Source = "connreg"
	// SpecVersion is the CloudEvents spec version the envelope follows.
	SpecVersion = "1.0"
)

// EventSubject is the subject that carries every event of one connection.
func EventSubject(aggregateID string) string { return EventSubjectPrefix + aggregateID }

// NameSubject is the subject that carries the claims of one config name within
// one organization. The name is lower-cased: names are unique case-insensitively.
func NameSubject(org, configName string) string {
	return NameSubjectPrefix + org + "." + strings.ToLower(configName)
}

// Metadata is what every event carries besides its payload: whose event it is
// (the aggregate and its version, which is the event's 1-based position in the
// aggregate's own history), when it happened, who did it and in which request.
type Metadata struct {
	EventID          string
	AggregateID      string
	AggregateVersion uint64
	OccurredAt       time.Time
	Actor            string
	RequestID        string
	CorrelationID    string
	// TraceParent and TraceState are the W3C trace context of the operation
	// that recorded the event (CloudEvents distributed-tracing extension):
	// a subscriber continues the trace from them. Empty when none was traced.
	TraceParent string
	TraceState  string
}

// Event is one recorded fact: metadata and a typed payload.
type Event struct {
	Metadata
	Payload Payload
}

// Type is the versioned type name of the event's payload.
func (e Event) Type() string { return e.Payload.EventType() }

// Payload is implemented by every event payload type of this package.
type Payload interface {
	EventType() string
}

// Envelope is the JSON body of every message on an event subject. Its field
// names are the CloudEvents JSON format's, with the registry's own extension
// attributes (lower-case, as CloudEvents requires).
type Envelope struct {
	SpecVersion      string          `json:"specversion"`
	ID               string          `json:"id"`
	Source           string          `json:"source"`
	Type             string          `json:"type"`
	Subject          string          `json:"subject"`
	Time             time.Time       `json:"time"`
	DataContentType  string          `json:"datacontenttype"`
	AggregateID      string          `json:"aggregateid"`
	AggregateVersion uint64          `json:"aggregateversion"`
	Actor            string          `json:"actor"`
	RequestID        string          `json:"requestid,omitempty"`
	CorrelationID    string          `json:"correlationid,omitempty"`
	TraceParent      string          `json:"traceparent,omitempty"`
	TraceState       string          `json:"tracestate,omitempty"`
	Data             json.RawMessage `json:"data"`
}

// Encode turns an event into the bytes published on its subject.
func Encode(e Event) ([]byte, error) {
	if e.Payload == nil {
		return nil, errors.New("events: event has no payload")
	}
	data, err := json.Marshal(e.Payload)
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", e.Type(), err)
	}
	return json.Marshal(Envelope{
		SpecVersion:      SpecVersion,
		ID:               e.EventID,
		Source:           Source,
		Type:             e.Type(),
		Subject:          e.AggregateID,
		Time:             e.OccurredAt.UTC(),
		DataContentType:  "application/json",
		AggregateID:      e.AggregateID,
		AggregateVersion: e.AggregateVersion,
		Actor:            e.Actor,
		RequestID:        e.RequestID,
		CorrelationID:    e.CorrelationID,
		TraceParent:      e.TraceParent,
		TraceState:       e.TraceState,
		Data:             data,
	})
}

// ErrUnknownType is returned by Decode for an event type this version of the
// package does not know. A consumer should skip or park such an event, not
// stop: newer producers may publish types it has not learnt yet.
var ErrUnknownType = errors.New("events: unknown event type")

// Decode parses a message body into an event, upcasting older payload
// versions to the newest one of their kind.
func Decode(body []byte) (Event, error) { return decode(body, defaultUpcasters) }

func decode(body []byte, u upcasters) (Event, error) {
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Event{}, fmt.Errorf("events: malformed envelope: %w", err)
	}
	if env.AggregateID == "" || env.AggregateVersion == 0 {
		return Event{}, errors.New("events: envelope lacks aggregate id or version")
	}
	eventType, data, err := u.upcast(env.Type, env.Data)
	if err != nil {
		return Event{}, err
	}
	payload, err := decodePayload(eventType, data)
	if err != nil {
		return Event{}, err
	}
	return Event{
		Metadata: Metadata{
			EventID:          env.ID,
			AggregateID:      env.AggregateID,
			AggregateVersion: env.AggregateVersion,
			OccurredAt:       env.Time,
			Actor:            env.Actor,
			RequestID:        env.RequestID,
			CorrelationID:    env.CorrelationID,
			TraceParent:      env.TraceParent,
			TraceState:       env.TraceState,
		},
		Payload: payload,
	}, nil
}

func decodePayload(eventType string, data json.RawMessage) (Payload, error) {
	var p Payload
	switch eventType {
	case TypeConnectionCreatedV1:
		p = &ConnectionCreatedV1{}
	case TypeConnectionUpdatedV1:
		p = &ConnectionUpdatedV1{}
	case TypeConnectionDeletedV1:
		p = &ConnectionDeletedV1{}
	case TypeConnectionCredentialsResealedV1:
		p = &ConnectionCredentialsResealedV1{}
	case TypeConnectionTestedV1:
		p = &ConnectionTestedV1{}
	case TypeConnectionSecretsReadV1:
		p = &ConnectionSecretsReadV1{}
	case TypeConnectionHealthChangedV1:
		p = &ConnectionHealthChangedV1{}
	case TypeConnectionSchemaDiscoveredV1:
		p = &ConnectionSchemaDiscoveredV1{}
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, eventType)
	}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("events: malformed %s payload: %w", eventType, err)
	}
	return p, nil
}

package domain

import (
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/connreg/registry/events"
)

// Credentials are a connection's sealed secrets.
type Credentials struct {
	Password SealedSecret
	SSLKey   SealedSecret // zero when the connection has no client key
}

// Origin says who causes a change and when; every recorded event carries it.
type Origin struct {
	Actor         string
	RequestID     string
	CorrelationID string
	At            time.Time
}

// Connection is the aggregate: one registered database connection. Its fields
// change only by applying events, so that the state rebuilt from the stream
// is the state the service acted on.
type Connection struct {
	id          string
	version     uint64
	org         string
	spec        Spec
	credentials Credentials
	createdAt   time.Time
	updatedAt   time.Time
	deleted     bool
	lastTest    *TestRecord
	health      Health
	idempotency *Idempotency
	// schemaDigest is the digest of the last schema recorded.
	schemaDigest string

	pending []events.Event
}

// Create registers a new connection from a validated spec and sealed
// credentials, recording ConnectionCreatedV1. The id must be new; the
// uniqueness of the config name is enforced by the event store, which holds
// the name's claim before it writes the event.
//
// org is the owning organization (the caller's); idem, when not nil,
// records the Idempotency-Key the create came with.
func Create(id, org string, spec Spec, creds Credentials, origin Origin, idem *Idempotency) (*Connection, error) {
	if id == "" {
		return nil, errors.New("domain: a connection needs an id")
	}
	if _, err := ParseOrganization(org); err != nil {
		return nil, fmt.Errorf("domain: organization: %w", err)
	}
	if creds.Password.IsZero() {
		return nil, errors.New("domain: a connection needs a sealed password")
	}
	if spec.SSL != nil && spec.SSL.Cert != "" && creds.SSLKey.IsZero() {
		return nil, errors.New("domain: a client certificate needs its sealed key")
	}
	c := &Connection{id: id}
	payload := &events.ConnectionCreatedV1{
		Organization: org,
		ConfigName:   spec.ConfigName,
		ProductName:  spec.ProductName,
		Type:         string(spec.Engine),
		Host:         spec.Host,
		Port:         spec.Port,
		DatabaseName: spec.DatabaseName,
		UserName:     spec.UserName,
		Password:     toEventSecret(creds.Password),
		Schema:       spec.Schema,
		Metadata:     maps.Clone(spec.Metadata),
	}
	if idem != nil {
		payload.Idempotency = &events.Idempotency{KeyHash: idem.KeyHash, Fingerprint: idem.Fingerprint}
	}
	if spec.SSL != nil {
		payload.SSL = &events.SSL{Mode: spec.SSL.Mode, CA: spec.SSL.CA, Cert: spec.SSL.Cert}
		if !creds.SSLKey.IsZero() {
			key := toEventSecret(creds.SSLKey)
			payload.SSL.Key = &key
		}
	}
	if err := c.record(payload, origin); err != nil {
		return nil, err
	}
	return c, nil
}

// Rebuild folds a connection's history, oldest first, into its current
// state. It is how the write side loads an aggregate and how readers answer
// "as of" questions; it records nothing.
func Rebuild(history []events.Event) (*Connection, error) {
	if len(history) == 0 {
		return nil, ErrNotFound
	}
	c := &Connection{id: history[0].AggregateID}
	for _, e := range history {
		if err := c.apply(e); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// PendingEvents are the events recorded since the aggregate was created or
// loaded, to be appended by the event store.
func (c *Connection) PendingEvents() []events.Event { return c.pending }

// PendingFrom is the version the aggregate had before its pending events: the
// expected version of the append.
func (c *Connection) PendingFrom() uint64 { return c.version - uint64(len(c.pending)) }

func (c *Connection) record(p events.Payload, origin Origin) error {
	e := events.Event{
		Metadata: events.Metadata{
			AggregateID:      c.id,
			AggregateVersion: c.version + 1,
			OccurredAt:       origin.At.UTC(),
			Actor:            origin.Actor,
			RequestID:        origin.RequestID,
			CorrelationID:    origin.CorrelationID,
		},
		Payload: p,
	}
	if err := c.apply(e); err != nil {
		return err
	}
	c.pending = append(c.pending, e)
	return nil
}

// apply changes state by one event. It only applies a fact: the checks that
// decide whether to record an event happen before.
func (c *Connection) apply(e events.Event) error {
	if e.AggregateID != c.id {
		return fmt.Errorf("domain: event of %s applied to %s", e.AggregateID, c.id)
	}
	if e.AggregateVersion != c.version+1 {
		return fmt.Errorf("domain: event version %d applied to version %d of %s", e.AggregateVersion, c.version, c.id)
	}
	switch p := e.Payload.(type) {
	case *events.ConnectionCreatedV1:
		engine, err := ParseEngine(p.Type)
		if err != nil {
			return fmt.Errorf("domain: created event of %s: type: %w", c.id, err)
		}
		c.org = p.Organization
		c.spec = Spec{
			ProductName:  p.ProductName,
			ConfigName:   p.ConfigName,
			Engine:       engine,
			Host:         p.Host,
			Port:         p.Port,
			DatabaseName: p.DatabaseName,
			UserName:     p.UserName,
			Schema:       p.Schema,
			Metadata:     maps.Clone(p.Metadata),
		}
		c.credentials = Credentials{Password: fromEventSecret(p.Password)}
		if p.SSL != nil {
			c.spec.SSL = &SSL{Mode: p.SSL.Mode, CA: p.SSL.CA, Cert: p.SSL.Cert}
			if p.SSL.Key != nil {
				c.credentials.SSLKey = fromEventSecret(*p.SSL.Key)
			}
		}
		c.createdAt = e.OccurredAt
		c.updatedAt = e.OccurredAt
		if p.Idempotency != nil {
			c.idempotency = &Idempotency{KeyHash: p.Idempotency.KeyHash, Fingerprint: p.Idempotency.Fingerprint}
		}
	case *events.ConnectionUpdatedV1:
		if err := c.applyUpdate(p); err != nil {
			return err
		}
		c.updatedAt = e.OccurredAt
	case *events.ConnectionDeletedV1:
		c.deleted = true
		c.updatedAt = e.OccurredAt
	case *events.ConnectionCredentialsResealedV1:
		c.credentials.Password = fromEventSecret(p.Password)
		if p.SSLKey != nil {
			c.credentials.SSLKey = fromEventSecret(*p.SSLKey)
		}
	case *events.ConnectionTestedV1:
		c.lastTest = &TestRecord{Status: p.Status, Reason: p.Reason, LatencyMs: p.LatencyMs, At: e.OccurredAt}
		c.health.CheckedAt = e.OccurredAt
		if p.Status == TestSucceeded {
			c.health.ConsecutiveFailures = 0
		} else {
			c.health.ConsecutiveFailures++
		}
	case *events.ConnectionHealthChangedV1:
		c.health.Status, c.health.Reason, c.health.Message, c.health.Since = p.Status, p.Reason, p.Message, e.OccurredAt
	case *events.ConnectionSecretsReadV1:
		// An audit record: the state is unchanged, the version moves.
	case *events.ConnectionSchemaDiscoveredV1:
		c.schemaDigest = p.Digest
	default:
		return fmt.Errorf("domain: cannot apply %s", e.Type())
	}
	c.version = e.AggregateVersion
	return nil
}

// ID is the connection's immutable id.
func (c *Connection) ID() string { return c.id }

// Version is the number of events in the connection's history.
func (c *Connection) Version() uint64 { return c.version }

// Organization owns the connection; its config names are unique.
func (c *Connection) Organization() string { return c.org }

// Spec is the current configuration, secrets excluded.
func (c *Connection) Spec() Spec {
	s := c.spec
	s.Metadata = maps.Clone(c.spec.Metadata)
	if c.spec.SSL != nil {
		ssl := *c.spec.SSL
		s.SSL = &ssl
	}
	return s
}

// Credentials are the sealed secrets.
func (c *Connection) Credentials() Credentials { return c.credentials }

// CreatedAt is when the connection was registered.
func (c *Connection) CreatedAt() time.Time { return c.createdAt }

// UpdatedAt is when the connection last changed.
func (c *Connection) UpdatedAt() time.Time { return c.updatedAt }

// Deleted reports whether the connection was retired.
func (c *Connection) Deleted() bool { return c.deleted }

// Idempotency identifies the request that created a connection.
type Idempotency struct {
	KeyHash     string
	Fingerprint string
}

// CreatedBy is the Idempotency-Key record of the create, nil when it had none.
func (c *Connection) CreatedBy() *Idempotency { return c.idempotency }

// TestRecord is the outcome of the latest connection test.
type TestRecord struct {
	Status    string
	Reason    string
	LatencyMs int64
	At        time.Time
}

// Health is what the tests of a connection say about it: the status
// (events.HealthUnknown until the first test), since when, why it fails.
type Health struct {
	Status              string // events.HealthUnknown, HealthHealthy or HealthFailing
	Reason              string // the failure reason while failing
	Message             string
	Since               time.Time // when the status (or failure reason) last changed
	CheckedAt           time.Time // the latest test
	ConsecutiveFailures int
}

// Health returns the connection's health.
func (c *Connection) Health() Health {
	h := c.health
	if h.Status == "" {
		h.Status = events.HealthUnknown
	}
	return h
}

// LastTest is the latest connection test, nil when there was none.
func (c *Connection) LastTest() *TestRecord { return c.lastTest }

func (c *Connection) applyUpdate(p *events.ConnectionUpdatedV1) error {
	s := &c.spec
	if p.ConfigName != nil {
		s.ConfigName = *p.ConfigName
	}
	if p.Type != nil {
		engine, err := ParseEngine(*p.Type)
		if err != nil {
			return fmt.Errorf("domain: updated event of %s: type: %w", c.id, err)
		}
		s.Engine = engine
	}
	if p.Host != nil {
		s.Host = *p.Host
	}
	if p.Port != nil {
		s.Port = *p.Port
	}
	if p.DatabaseName != nil {
		s.DatabaseName = *p.DatabaseName
	}
	if p.UserName != nil {
		s.UserName = *p.UserName
	}
	if p.Password != nil {
		c.credentials.Password = fromEventSecret(*p.Password)
	}
	if p.Schema != nil {
		s.Schema = *p.Schema
	}
	for _, f := range p.Changed {
		switch f {
		case events.FieldSSL:
			s.SSL, c.credentials.SSLKey = nil, SealedSecret{}
			if p.SSL != nil {
				s.SSL = &SSL{Mode: p.SSL.Mode, CA: p.SSL.CA, Cert: p.SSL.Cert}
				if p.SSL.Key != nil {
					c.credentials.SSLKey = fromEventSecret(*p.SSL.Key)
				}
			}
		case events.FieldMetadata:
			s.Metadata = maps.Clone(p.Metadata)
			if len(s.Metadata) == 0 {
				s.Metadata = nil
			}
		}
	}
	return nil
}

func toEventSecret(s SealedSecret) events.SealedSecret {
	return events.SealedSecret{Scheme: s.Scheme, Mount: s.Mount, KeyName: s.KeyName, Context: s.Context, Ciphertext: s.Ciphertext}
}

func fromEventSecret(s events.SealedSecret) SealedSecret {
	return SealedSecret{Scheme: s.Scheme, Mount: s.Mount, KeyName: s.KeyName, Context: s.Context, Ciphertext: s.Ciphertext}
}

package domain

import (
	"github.com/connreg/registry/events"

	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// PatchInput is a partial change as a caller describes it: nil fields stay
// as they are. Password and SSL.Key are plaintext secrets.
type PatchInput struct {
	ConfigName   *string
	Type         *string
	Host         *string
	Port         *int
	DatabaseName *string
	UserName     *string
	Password     []byte // nil: keep the sealed password
	Schema       *string
	SSL          *SSLInput // replaces the whole SSL block
	RemoveSSL    bool      // ssl: null
	Metadata     map[string]string
	SetMetadata  bool // metadata given: it replaces the whole map
}

// Patch is a validated change: the configuration the connection would have
// after it, secrets excluded.
type Patch struct {
	next        Spec
	newPassword bool
	newSSLKey   bool
}

// ParsePatch validates a change against the connection's current state (an
// SSL mode is judged against the engine the connection will have).
func (c *Connection) ParsePatch(in PatchInput) (Patch, Secrets, error) {
	if c.deleted {
		return Patch{}, Secrets{}, ErrNotFound
	}
	var v ValidationError
	next := c.Spec()
	var err error
	if in.ConfigName != nil {
		if next.ConfigName, err = ParseConfigName(*in.ConfigName); err != nil {
			v.Add("configName", ViolationInvalid, err.Error())
		}
	}
	typeChanged := false
	if in.Type != nil {
		e, err := ParseEngine(*in.Type)
		if err != nil {
			v.Add("type", ViolationInvalid, err.Error())
		} else {
			typeChanged = e != next.Engine
			if typeChanged && next.Schema == next.Engine.DefaultSchema() && in.Schema == nil {
				next.Schema = e.DefaultSchema() // the old default follows the engine
			}
			next.Engine = e
		}
	}
	if in.Host != nil {
		if next.Host, err = ParseHost(*in.Host); err != nil {
			v.Add("host", ViolationInvalid, err.Error())
		}
	}
	if in.Port != nil {
		if *in.Port < 1 || *in.Port > 65535 {
			v.Add("port", ViolationInvalid, "must be between 1 and 65535")
		} else {
			next.Port = *in.Port
		}
	}
	if in.DatabaseName != nil {
		next.DatabaseName = requiredText(&v, "databaseName", *in.DatabaseName)
	}
	if in.UserName != nil {
		next.UserName = requiredText(&v, "userName", *in.UserName)
	}
	var secrets Secrets
	if in.Password != nil {
		switch n := utf8.RuneCount(in.Password); {
		case n == 0:
			v.Add("password", ViolationInvalid, "must not be empty")
		case n > MaxPasswordLength:
			v.Add("password", ViolationInvalid, fmt.Sprintf("must be at most %d characters long", MaxPasswordLength))
		}
	}
	if in.Schema != nil {
		s := optionalText(&v, "schema", *in.Schema)
		if s == "" {
			s = next.Engine.DefaultSchema()
		}
		next.Schema = s
	}
	newSSLKey := false
	switch {
	case in.RemoveSSL:
		next.SSL = nil
	case in.SSL != nil:
		next.SSL, secrets.SSLKey = parseSSL(&v, next.Engine, *in.SSL)
		newSSLKey = len(secrets.SSLKey) > 0
	case typeChanged && next.SSL != nil:
		if _, err := next.Engine.ParseSSLMode(next.SSL.Mode); err != nil {
			v.Add("ssl.mode", ViolationSSLMode, fmt.Sprintf("%q is not valid for %s; send a new ssl block with the type", next.SSL.Mode, next.Engine))
		}
	}
	if in.SetMetadata {
		md, err := ParseMetadata(in.Metadata)
		v.Merge(asValidation(err))
		next.Metadata = md
	}
	if err := v.OrNil(); err != nil {
		return Patch{}, Secrets{}, err
	}
	if err := c.secretsFollowTarget(next, in.Password != nil, newSSLKey); err != nil {
		return Patch{}, Secrets{}, err
	}
	secrets.Password = in.Password
	return Patch{next: next, newPassword: in.Password != nil, newSSLKey: newSSLKey}, secrets, nil
}

// Update applies a validated change, recording ConnectionUpdatedV1 with the
// fields that really change. It records nothing and returns false when the
// change changes nothing. creds carries the newly sealed password and SSL
// key, when the patch has them.
func (c *Connection) Update(p Patch, creds Credentials, origin Origin) (bool, error) {
	if c.deleted {
		return false, ErrNotFound
	}
	if p.newPassword && creds.Password.IsZero() || p.newSSLKey && creds.SSLKey.IsZero() {
		return false, fmt.Errorf("domain: a new secret must be sealed before the update")
	}
	cur, next := c.spec, p.next
	e := &events.ConnectionUpdatedV1{}
	if next.ConfigName != cur.ConfigName {
		e.ConfigName = &next.ConfigName
		e.Changed = append(e.Changed, events.FieldConfigName)
	}
	if next.Engine != cur.Engine {
		t := string(next.Engine)
		e.Type = &t
		e.Changed = append(e.Changed, events.FieldType)
	}
	if next.Host != cur.Host {
		e.Host = &next.Host
		e.Changed = append(e.Changed, events.FieldHost)
	}
	if next.Port != cur.Port {
		e.Port = &next.Port
		e.Changed = append(e.Changed, events.FieldPort)
	}
	if next.DatabaseName != cur.DatabaseName {
		e.DatabaseName = &next.DatabaseName
		e.Changed = append(e.Changed, events.FieldDatabaseName)
	}
	if next.UserName != cur.UserName {
		e.UserName = &next.UserName
		e.Changed = append(e.Changed, events.FieldUserName)
	}
	if p.newPassword {
		pw := toEventSecret(creds.Password)
		e.Password = &pw
		e.Changed = append(e.Changed, events.FieldPassword)
	}
	if next.Schema != cur.Schema {
		e.Schema = &next.Schema
		e.Changed = append(e.Changed, events.FieldSchema)
	}
	sslChanged := p.newSSLKey || !sameSSL(cur.SSL, next.SSL) ||
		(next.SSL != nil && next.SSL.Cert == "" && !c.credentials.SSLKey.IsZero())
	if sslChanged {
		if next.SSL != nil {
			e.SSL = &events.SSL{Mode: next.SSL.Mode, CA: next.SSL.CA, Cert: next.SSL.Cert}
			switch {
			case p.newSSLKey:
				k := toEventSecret(creds.SSLKey)
				e.SSL.Key = &k
			case next.SSL.Cert != "" && !c.credentials.SSLKey.IsZero():
				k := toEventSecret(c.credentials.SSLKey) // the same certificate keeps its key
				e.SSL.Key = &k
			}
		}
		e.Changed = append(e.Changed, events.FieldSSL)
	}
	if !maps.Equal(next.Metadata, cur.Metadata) {
		e.Metadata = maps.Clone(next.Metadata)
		if e.Metadata == nil {
			e.Metadata = map[string]string{}
		}
		e.Changed = append(e.Changed, events.FieldMetadata)
	}
	if len(e.Changed) == 0 {
		return false, nil
	}
	return true, c.record(e, origin)
}

// SecretNotResentError refuses a change of where a connection points (host,
// port, type or ssl) that does not send its stored secrets again: a stored
// password, or client key, must never follow a connection to another server,
// where whoever changed the target would receive it at the next test.
type SecretNotResentError struct {
	Changed []string // the target fields the change moves, in API spelling
	Missing []string // "password", "ssl.key"
}

func (e *SecretNotResentError) Error() string {
	return "changing " + strings.Join(e.Changed, ", ") + " requires sending " + strings.Join(e.Missing, " and ") + " again"
}

// secretsFollowTarget applies the rule of SecretNotResentError to the
// configuration a patch leads to.
func (c *Connection) secretsFollowTarget(next Spec, newPassword, newSSLKey bool) error {
	cur := c.spec
	var changed []string
	if next.Host != cur.Host {
		changed = append(changed, events.FieldHost)
	}
	if next.Port != cur.Port {
		changed = append(changed, events.FieldPort)
	}
	if next.Engine != cur.Engine {
		changed = append(changed, events.FieldType)
	}
	if !sameSSL(cur.SSL, next.SSL) {
		changed = append(changed, events.FieldSSL)
	}
	if len(changed) == 0 {
		return nil
	}
	var missing []string
	if !newPassword {
		missing = append(missing, events.FieldPassword)
	}
	keepsKey := next.SSL != nil && next.SSL.Cert != "" && !c.credentials.SSLKey.IsZero()
	if keepsKey && !newSSLKey {
		missing = append(missing, "ssl.key")
	}
	if len(missing) == 0 {
		return nil
	}
	return &SecretNotResentError{Changed: changed, Missing: missing}
}

func sameSSL(a, b *SSL) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Delete retires the connection, recording ConnectionDeletedV1; its config
// name becomes free. Deleting a deleted connection is ErrNotFound.
func (c *Connection) Delete(origin Origin) error {
	if c.deleted {
		return ErrNotFound
	}
	return c.record(&events.ConnectionDeletedV1{ConfigName: c.spec.ConfigName}, origin)
}

// Reseal replaces the sealed credentials by their re-encryption under a newer
// key, recording ConnectionCredentialsResealedV1. It records nothing when the
// ciphertexts are unchanged, so running a rotation twice is harmless.
func (c *Connection) Reseal(creds Credentials, origin Origin) (bool, error) {
	if c.deleted {
		return false, ErrNotFound
	}
	if creds.Password.IsZero() || creds.SSLKey.IsZero() != c.credentials.SSLKey.IsZero() {
		return false, fmt.Errorf("domain: a reseal must carry every sealed secret of the connection")
	}
	if creds == c.credentials {
		return false, nil
	}
	e := &events.ConnectionCredentialsResealedV1{Password: toEventSecret(creds.Password)}
	if !creds.SSLKey.IsZero() {
		k := toEventSecret(creds.SSLKey)
		e.SSLKey = &k
	}
	return true, c.record(e, origin)
}

// Names of the sealed secrets a connection can hand out.
const (
	SecretPassword = "password"
	SecretSSLKey   = "sslKey"
)

// RecordSecretsRead records that the connection's sealed secrets were handed
// to a caller (ConnectionSecretsReadV1), before they are: every opening a
// downstream service can make starts with a read that the history shows.
// It returns the names of the secrets handed out.
func (c *Connection) RecordSecretsRead(origin Origin) ([]string, error) {
	if c.deleted {
		return nil, ErrNotFound
	}
	names := []string{SecretPassword}
	if !c.credentials.SSLKey.IsZero() {
		names = append(names, SecretSSLKey)
	}
	return names, c.record(&events.ConnectionSecretsReadV1{Secrets: names}, origin)
}

// Test outcomes.
const (
	TestSucceeded = "success"
	TestFailed    = "failure"
)

// RecordTest records the outcome of an attempt to connect with the stored
// settings.
func (c *Connection) RecordTest(status, reason string, latencyMs int64, origin Origin) error {
	return c.Observe(Observation{Status: status, Reason: reason, LatencyMs: latencyMs, Origin: events.TestOriginAPI}, origin)
}

// Observation is the outcome of one connection test as the aggregate records
// it. Message (never a secret) explains a failure; Origin is
// events.TestOriginAPI or events.TestOriginMonitor.
type Observation struct {
	Status    string
	Reason    string
	Message   string
	LatencyMs int64
	Origin    string
}

// Observe records a test (ConnectionTestedV1) and, when it changes the
// connection's health (unknown or healthy to failing, failing to healthy, or
// failing for another reason), ConnectionHealthChangedV1 right after it.
func (c *Connection) Observe(o Observation, origin Origin) error {
	if c.deleted {
		return ErrNotFound
	}
	if !slices.Contains([]string{TestSucceeded, TestFailed}, o.Status) {
		return fmt.Errorf("domain: unknown test status %q", o.Status)
	}
	if !slices.Contains([]string{events.TestOriginAPI, events.TestOriginMonitor}, o.Origin) {
		return fmt.Errorf("domain: unknown test origin %q", o.Origin)
	}
	before := c.Health()
	if err := c.record(&events.ConnectionTestedV1{Status: o.Status, Reason: o.Reason, LatencyMs: o.LatencyMs, Origin: o.Origin}, origin); err != nil {
		return err
	}
	next := events.HealthHealthy
	reason, message := "", ""
	if o.Status == TestFailed {
		next, reason, message = events.HealthFailing, o.Reason, o.Message
	}
	if next == before.Status && reason == before.Reason {
		return nil
	}
	return c.record(&events.ConnectionHealthChangedV1{Status: next, Previous: before.Status, Reason: reason, Message: message}, origin)
}

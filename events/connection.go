package events

// Event type names. Published names never change; see the package comment.
const (
	TypeConnectionCreatedV1 = "connection.created.v1"
)

// SealedSecret is a credential as it travels in an event: only ciphertext,
// with the sealer scheme ("vault-transit" or "dev") and key that made it.
// The plaintext is never published. For vault-transit, Mount and Context are
// what a downstream service passes to Vault's transit/decrypt (with its own
// decrypt-only token) to open it: the transit mount and the base64 key
// derivation context. Both were added later (additive): older events lack
// them; the context is then base64(connection id) and the mount the
// registry's (see docs/credentials.md).
type SealedSecret struct {
	Scheme     string `json:"scheme"`
	Mount      string `json:"mount,omitempty"`
	KeyName    string `json:"keyName"`
	Context    string `json:"context,omitempty"`
	Ciphertext string `json:"ciphertext"`
}

// SSL is the TLS configuration of a connection. CA and Cert are public PEM
// certificates; the client key, a secret, is only ever present sealed.
type SSL struct {
	Mode string        `json:"mode"`
	CA   string        `json:"ca,omitempty"`
	Cert string        `json:"cert,omitempty"`
	Key  *SealedSecret `json:"key,omitempty"`
}

// ConnectionCreatedV1 records that a connection was registered. It carries the
// whole configuration; the config name was claimed for the organization just
// before it was written.
type ConnectionCreatedV1 struct {
	Organization string            `json:"organization"`
	ConfigName   string            `json:"configName"`
	ProductName  string            `json:"productName"`
	Type         string            `json:"type"`
	Host         string            `json:"host"`
	Port         int               `json:"port"`
	DatabaseName string            `json:"databaseName"`
	UserName     string            `json:"userName"`
	Password     SealedSecret      `json:"password"`
	Schema       string            `json:"schema,omitempty"`
	SSL          *SSL              `json:"ssl,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	// Idempotency is set when the create carried an Idempotency-Key.
	Idempotency *Idempotency `json:"idempotency,omitempty"`
}

// EventType implements Payload.
func (*ConnectionCreatedV1) EventType() string { return TypeConnectionCreatedV1 }

// More event type names.
const (
	TypeConnectionUpdatedV1             = "connection.updated.v1"
	TypeConnectionDeletedV1             = "connection.deleted.v1"
	TypeConnectionCredentialsResealedV1 = "connection.credentials-resealed.v1"
	TypeConnectionTestedV1              = "connection.tested.v1"
	TypeConnectionSecretsReadV1         = "connection.secrets-read.v1"
	TypeConnectionHealthChangedV1       = "connection.health-changed.v1"
)

// Field names listed in ConnectionUpdatedV1.Changed.
const (
	FieldConfigName   = "configName"
	FieldType         = "type"
	FieldHost         = "host"
	FieldPort         = "port"
	FieldDatabaseName = "databaseName"
	FieldUserName     = "userName"
	FieldPassword     = "password"
	FieldSchema       = "schema"
	FieldSSL          = "ssl"
	FieldMetadata     = "metadata"
)

// ConnectionUpdatedV1 records a change of configuration. Only the changed
// fields are set; Changed names them (a new password appears there as
// "password", its value only sealed). SSL and Metadata replace the whole
// block when listed; SSL nil with "ssl" listed removes the SSL settings.
// A rename claims the new name and releases the old one in the same write.
type ConnectionUpdatedV1 struct {
	Changed      []string          `json:"changed"`
	ConfigName   *string           `json:"configName,omitempty"`
	Type         *string           `json:"type,omitempty"`
	Host         *string           `json:"host,omitempty"`
	Port         *int              `json:"port,omitempty"`
	DatabaseName *string           `json:"databaseName,omitempty"`
	UserName     *string           `json:"userName,omitempty"`
	Password     *SealedSecret     `json:"password,omitempty"`
	Schema       *string           `json:"schema,omitempty"`
	SSL          *SSL              `json:"ssl,omitempty"`
	Metadata     map[string]string `json:"metadata,omitzero"` // {} when the update removed every entry
}

// EventType implements Payload.
func (*ConnectionUpdatedV1) EventType() string { return TypeConnectionUpdatedV1 }

// ConnectionDeletedV1 records that a connection was retired. Its history
// stays; its config name is released in the same write.
type ConnectionDeletedV1 struct {
	ConfigName string `json:"configName"`
}

// EventType implements Payload.
func (*ConnectionDeletedV1) EventType() string { return TypeConnectionDeletedV1 }

// ConnectionCredentialsResealedV1 records that the sealed credentials were
// re-encrypted to a newer key version (Vault transit rewrap) without the
// plaintext leaving the sealer. The configuration is unchanged.
type ConnectionCredentialsResealedV1 struct {
	Password SealedSecret  `json:"password"`
	SSLKey   *SealedSecret `json:"sslKey,omitempty"`
}

// EventType implements Payload.
func (*ConnectionCredentialsResealedV1) EventType() string {
	return TypeConnectionCredentialsResealedV1
}

// ConnectionTestedV1 records an attempt to connect to the database with the
// stored settings, so that the history shows when a connection last worked.
type ConnectionTestedV1 struct {
	Status    string `json:"status"` // success or failure
	Reason    string `json:"reason,omitempty"`
	LatencyMs int64  `json:"latencyMs"`
	// Origin says who asked for the test: "api" (POST .../test) or
	// "monitor" (the connection monitor). Added later (additive): absent
	// on older events, which all came from the API.
	Origin string `json:"origin,omitempty"`
}

// Test origins.
const (
	TestOriginAPI     = "api"
	TestOriginMonitor = "monitor"
)

// ConnectionHealthChangedV1 records that a connection's health changed:
// from unknown, healthy or failing to healthy or failing, or from failing
// for one reason to failing for another. It follows the connection.tested.v1
// event that observed the change, so a subscriber can alert on it without
// re-deriving state from every test.
type ConnectionHealthChangedV1 struct {
	Status   string `json:"status"`   // healthy or failing
	Previous string `json:"previous"` // unknown, healthy or failing
	Reason   string `json:"reason,omitempty"`
	// Message helps a person fix a failure; it never holds a secret.
	Message string `json:"message,omitempty"`
}

// EventType implements Payload.
func (*ConnectionHealthChangedV1) EventType() string { return TypeConnectionHealthChangedV1 }

// Health states.
const (
	HealthUnknown = "unknown"
	HealthHealthy = "healthy"
	HealthFailing = "failing"
)

// EventType implements Payload.
func (*ConnectionTestedV1) EventType() string { return TypeConnectionTestedV1 }

// ConnectionSecretsReadV1 records that a caller received the connection's
// sealed secrets (GET ...?include=sealedSecrets): who and in which request
// are in the envelope; the payload names the secrets handed out, never their
// ciphertext.
type ConnectionSecretsReadV1 struct {
	Secrets []string `json:"secrets"` // "password", "sslKey"
}

// EventType implements Payload.
func (*ConnectionSecretsReadV1) EventType() string { return TypeConnectionSecretsReadV1 }

// Idempotency ties a create to the Idempotency-Key it came with: a hash of
// the key (scoped to the product) and a fingerprint of the request's
// non-secret fields, so that a retry is recognised and a reuse refused.
type Idempotency struct {
	KeyHash     string `json:"keyHash"`
	Fingerprint string `json:"fingerprint"`
}

// TypeConnectionSchemaDiscoveredV1 names the event of a schema discovery that found a change.
const TypeConnectionSchemaDiscoveredV1 = "connection.schema-discovered.v1"

// ConnectionSchemaDiscoveredV1 records what a connection's database offered
// at a discovery whose result differed from the last one recorded (Digest
// decides): every table and view with its columns, the whole schema, never a
// diff, so that one event is enough to know the schema from then on.
// Sampled is true for MongoDB, whose field names come from a bounded sample
// of each collection's documents.
type ConnectionSchemaDiscoveredV1 struct {
	Digest  string        `json:"digest"`
	Sampled bool          `json:"sampled,omitempty"`
	Tables  []SchemaTable `json:"tables"`
}

// EventType implements Payload.
func (*ConnectionSchemaDiscoveredV1) EventType() string { return TypeConnectionSchemaDiscoveredV1 }

// SchemaTable is one table, view or collection, columns in their database order.
type SchemaTable struct {
	Name    string         `json:"name"`
	View    bool           `json:"view,omitempty"`
	Columns []SchemaColumn `json:"columns"`
}

// SchemaColumn is one column: Type is the engine's own type name
// ("character varying(40)", "int(11)", "string").
type SchemaColumn struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Nullable   bool   `json:"nullable,omitempty"`
	PrimaryKey bool   `json:"primaryKey,omitempty"`
}

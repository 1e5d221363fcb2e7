package dbprobe

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Engine names the database product a Target speaks to; it selects the driver, so an unknown value is
// rejected by Test with an *InvalidTargetError instead of being guessed.
type Engine string

// Engines accepted by Test. The values match the API's engine enumeration so the caller can convert
// with a plain Engine(s).
const (
	PostgreSQL Engine = "POSTGRESQL"
	MySQL      Engine = "MYSQL"
	SQLServer  Engine = "SQL_SERVER"
	Oracle     Engine = "ORACLE"
	MongoDB    Engine = "MONGODB"
)

// Secret holds a password or private key. It formats, logs and marshals as "[REDACTED]" so that a Target
// printed with %v, passed to slog or encoded to JSON by mistake never leaks the value; the bytes are
// only read by the drivers.
type Secret []byte

const redacted = "[REDACTED]"

// Format implements fmt.Formatter so every verb (%v, %+v, %#v, %s, %q, %x) prints the placeholder.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// String returns the placeholder, never the secret.
func (s Secret) String() string { return redacted }

// GoString returns the placeholder, never the secret.
func (s Secret) GoString() string { return redacted }

// LogValue keeps the secret out of structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON keeps the secret out of JSON documents (responses, events, debug dumps).
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// SSL is the transport security of a Target as stored with the connection. Mode is the engine's own
// vocabulary (see the README); CA and Cert are PEM text, Key is the PEM private key of the client
// certificate and is only ever held in memory.
type SSL struct {
	Mode string
	CA   string
	Cert string
	Key  Secret
}

// Target is one connection to test, with its password already unsealed. It is passed by value and never
// stored by the Tester.
type Target struct {
	Engine   Engine
	Host     string
	Port     int
	Database string
	User     string
	Password Secret
	// Schema must exist for PostgreSQL and SQL Server (and is the owning user for Oracle); MySQL and
	// MongoDB have no separate schema and ignore it.
	Schema string
	SSL    *SSL
}

// Status is the outcome of a connection test that was attempted.
type Status string

// Statuses of a Result.
const (
	StatusSuccess Status = "success"
	StatusFailure Status = "failure"
)

// Reason classifies a failed test into a fixed vocabulary a client can branch on; the Message carries the
// human detail.
type Reason string

// Reasons of a failed Result. UNKNOWN means the driver error matched no rule; its Message still says what
// the driver reported (scrubbed of secrets).
const (
	ReasonHostUnreachable   Reason = "HOST_UNREACHABLE"
	ReasonConnectionRefused Reason = "CONNECTION_REFUSED"
	ReasonTimeout           Reason = "TIMEOUT"
	ReasonTLSFailed         Reason = "TLS_FAILED"
	ReasonAuthFailed        Reason = "AUTH_FAILED"
	ReasonDatabaseNotFound  Reason = "DATABASE_NOT_FOUND"
	ReasonSchemaNotFound    Reason = "SCHEMA_NOT_FOUND"
	ReasonUnknown           Reason = "UNKNOWN"
)

// Result is what a connection test found. Reason is empty on success. Message never contains the password
// or the client key: driver text is scrubbed before it is put here. Latency covers connecting, the
// handshake and the trivial query, and is reported for failures too.
type Result struct {
	Status  Status
	Reason  Reason
	Message string
	Latency time.Duration
}

package events

// Event type names. Published names never change; see the package comment.
const (
	TypeConnectionCreatedV1 = "connection.created.v1"
)

// SealedSecret is a credential as it travels in an event: only ciphertext,
// with the sealer scheme ("vault-transit" or "dev") and key that made it.
// The plaintext is never published.
type SealedSecret struct {
	Scheme     string `json:"scheme"`
	KeyName    string `json:"keyName"`
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
// whole configuration; the config name is claimed for the organization in the
// same atomic write.
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
}

// EventType implements Payload.
func (*ConnectionCreatedV1) EventType() string { return TypeConnectionCreatedV1 }

package httpapi

import (
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/readmodel"
)

type sslResponse struct {
	Mode string `json:"mode"`
}

// connectionResponse is a connection as the API shows it: never a secret,
// and of the SSL block only the mode.
type connectionResponse struct {
	ID           string            `json:"id"`
	ConfigName   string            `json:"configName"`
	ProductName  string            `json:"productName"`
	Type         string            `json:"type"`
	Host         string            `json:"host"`
	Port         int               `json:"port"`
	DatabaseName string            `json:"databaseName"`
	UserName     string            `json:"userName"`
	Schema       string            `json:"schema,omitempty"`
	SSL          *sslResponse      `json:"ssl,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	CreatedAt    string            `json:"createdAt"`
	UpdatedAt    string            `json:"updatedAt"`
	// Health is what the connection's tests (the monitor's and the API's)
	// say about it; status "unknown" until the first test.
	Health healthResponse `json:"health"`
	// SealedSecrets is present only for include=sealedSecrets.
	SealedSecrets *sealedSecretsResponse `json:"sealedSecrets,omitempty"`

	version uint64
}

// sealedSecretResponse is one sealed secret as a downstream service needs it
// to open it with its own Vault identity (docs/credentials.md).
type sealedSecretResponse struct {
	Scheme     string `json:"scheme"`
	Mount      string `json:"mount,omitempty"`
	KeyName    string `json:"keyName"`
	Context    string `json:"context,omitempty"`
	Ciphertext string `json:"ciphertext"`
}

type sealedSecretsResponse struct {
	Password *sealedSecretResponse `json:"password"`
	SSLKey   *sealedSecretResponse `json:"sslKey,omitempty"`
}

func sealedResponse(s domain.SealedSecret) *sealedSecretResponse {
	if s.IsZero() {
		return nil
	}
	return &sealedSecretResponse{Scheme: s.Scheme, Mount: s.Mount, KeyName: s.KeyName, Context: s.Context, Ciphertext: s.Ciphertext}
}

func withSealedSecrets(r connectionResponse, s commands.SealedSecrets) connectionResponse {
	r.SealedSecrets = &sealedSecretsResponse{Password: sealedResponse(s.Password), SSLKey: sealedResponse(s.SSLKey)}
	return r
}

type listResponse struct {
	Items []connectionResponse `json:"items"`
	Page  int                  `json:"page"`
	Limit int                  `json:"limit"`
	Total int64                `json:"total"`
	// NextCursor continues after this page (keyset paging); empty on the last page.
	NextCursor string `json:"nextCursor,omitempty"`
}

type healthResponse struct {
	Status              string `json:"status"`
	Reason              string `json:"reason,omitempty"`
	Message             string `json:"message,omitempty"`
	CheckedAt           string `json:"checkedAt,omitempty"`
	Since               string `json:"since,omitempty"`
	ConsecutiveFailures int    `json:"consecutiveFailures"`
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// optionalTime is rfc3339, or "" for the zero time.
func optionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return rfc3339(t)
}

func fromAggregate(c *domain.Connection) connectionResponse {
	s := c.Spec()
	r := connectionResponse{
		ID:           c.ID(),
		ConfigName:   s.ConfigName,
		ProductName:  s.ProductName,
		Type:         string(s.Engine),
		Host:         s.Host,
		Port:         s.Port,
		DatabaseName: s.DatabaseName,
		UserName:     s.UserName,
		Schema:       s.Schema,
		Metadata:     s.Metadata,
		CreatedAt:    rfc3339(c.CreatedAt()),
		UpdatedAt:    rfc3339(c.UpdatedAt()),
		version:      c.Version(),
	}
	if s.SSL != nil {
		r.SSL = &sslResponse{Mode: s.SSL.Mode}
	}
	h := c.Health()
	r.Health = healthResponse{Status: h.Status, Reason: h.Reason, Message: h.Message, CheckedAt: optionalTime(h.CheckedAt),
		Since: optionalTime(h.Since), ConsecutiveFailures: h.ConsecutiveFailures}
	return r
}

func fromDocument(d *readmodel.Document) connectionResponse {
	r := connectionResponse{
		ID:           d.ID,
		ConfigName:   d.ConfigName,
		ProductName:  d.ProductName,
		Type:         d.Type,
		Host:         d.Host,
		Port:         d.Port,
		DatabaseName: d.DatabaseName,
		UserName:     d.UserName,
		Schema:       d.Schema,
		Metadata:     d.Metadata,
		CreatedAt:    rfc3339(d.CreatedAt),
		UpdatedAt:    rfc3339(d.UpdatedAt),
		version:      d.Version,
	}
	if d.SSL != nil {
		r.SSL = &sslResponse{Mode: d.SSL.Mode}
	}
	r.Health = healthResponse{Status: d.HealthStatus()}
	if h := d.Health; h != nil {
		r.Health.Reason, r.Health.Message, r.Health.ConsecutiveFailures = h.Reason, h.Message, h.ConsecutiveFailures
		r.Health.CheckedAt, r.Health.Since = optionalTime(h.CheckedAt), optionalTime(h.Since)
	}
	return r
}

package vault

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults used by ConfigFromEnv when a variable is unset.
const (
	DefaultAppRoleMount = "approle"
	DefaultTransitMount = "transit"
	DefaultTransitKey   = "connections"
	DefaultTimeout      = 5 * time.Second
	DefaultMaxBatch     = 128
	DefaultMaxInFlight  = 4
)

// Config says where Vault is, how to log in and which transit key seals the
// credentials. Build it with ConfigFromEnv, or by hand in tests; New fills the
// zero values of the optional fields with the defaults above.
type Config struct {
	// Addr is Vault's base URL, e.g. https://vault.internal:8200 (VAULT_ADDR).
	Addr string
	// Token is a Vault token (VAULT_TOKEN). Exclusive with RoleID/SecretID.
	Token string
	// RoleID and SecretID log in with AppRole (VAULT_ROLE_ID,
	// VAULT_SECRET_ID) at AppRoleMount (VAULT_APPROLE_MOUNT); the sealer logs
	// in again before the token expires.
	RoleID       string
	SecretID     string
	AppRoleMount string
	// CACert is a PEM file with the CA that signed Vault's certificate
	// (VAULT_CACERT). Empty means the system roots.
	CACert string
	// TransitMount and Key name the transit engine and its key
	// (VAULT_TRANSIT_MOUNT, VAULT_TRANSIT_KEY). The key must be derived:
	// the derivation context is what binds a ciphertext to one connection.
	TransitMount string
	Key          string
	// Timeout bounds every call to Vault, so that a hung Vault turns into
	// an Unavailable error instead of a hung request (VAULT_TIMEOUT).
	Timeout time.Duration
	// CreateKey, for development only, enables the transit mount and
	// creates the derived key when they are missing (VAULT_CREATE_KEY=true).
	CreateKey bool
	// MaxBatch is the most Seal calls sent in one transit batch request;
	// 1 turns coalescing off (one HTTP request per call).
	MaxBatch int
	// MaxInFlight is the most transit requests the sealer has outstanding
	// at once. Calls that arrive while all are busy are gathered into the
	// next batch, so a lone call never waits for a timer.
	MaxInFlight int
}

// ConfigFromEnv reads the VAULT_* variables through getenv (os.Getenv in
// production, a map in tests). It reports every problem at once, each naming
// the variable and what is wrong; secret values never appear in the errors.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}

	c := Config{
		Addr:         get("VAULT_ADDR"),
		Token:        get("VAULT_TOKEN"),
		RoleID:       get("VAULT_ROLE_ID"),
		SecretID:     get("VAULT_SECRET_ID"),
		AppRoleMount: strings.Trim(get("VAULT_APPROLE_MOUNT"), "/"),
		CACert:       get("VAULT_CACERT"),
		TransitMount: strings.Trim(get("VAULT_TRANSIT_MOUNT"), "/"),
		Key:          get("VAULT_TRANSIT_KEY"),
		Timeout:      DefaultTimeout,
	}
	if c.AppRoleMount == "" {
		c.AppRoleMount = DefaultAppRoleMount
	}
	if c.TransitMount == "" {
		c.TransitMount = DefaultTransitMount
	}
	if c.Key == "" {
		c.Key = DefaultTransitKey
	}

	if c.Addr == "" {
		bad("VAULT_ADDR", "is empty; set it to Vault's URL, e.g. https://vault:8200")
	} else if u, err := url.Parse(c.Addr); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("VAULT_ADDR", "%q is not an http:// or https:// URL with a host", c.Addr)
	} else if c.CACert != "" && u.Scheme != "https" {
		bad("VAULT_CACERT", "is set but VAULT_ADDR is not https://, so the CA would never be used")
	}

	switch {
	case c.Token != "" && (c.RoleID != "" || c.SecretID != ""):
		bad("VAULT_TOKEN", "is set together with VAULT_ROLE_ID/VAULT_SECRET_ID; choose one way to log in")
	case c.Token != "":
	case c.RoleID != "" && c.SecretID == "":
		bad("VAULT_SECRET_ID", "is empty while VAULT_ROLE_ID is set; AppRole needs both")
	case c.RoleID == "" && c.SecretID != "":
		bad("VAULT_ROLE_ID", "is empty while VAULT_SECRET_ID is set; AppRole needs both")
	case c.RoleID == "":
		bad("VAULT_TOKEN", "is empty and VAULT_ROLE_ID/VAULT_SECRET_ID are not set; one way to log in is required")
	}

	if strings.Contains(c.Key, "/") {
		bad("VAULT_TRANSIT_KEY", "%q contains '/', which a transit key name cannot", c.Key)
	}

	if v := get("VAULT_TIMEOUT"); v != "" {
		d, err := parseTimeout(v)
		if err != nil {
			bad("VAULT_TIMEOUT", "%q is not a duration such as 5s or 1500ms", v)
		} else if d <= 0 {
			bad("VAULT_TIMEOUT", "%q must be positive", v)
		} else {
			c.Timeout = d
		}
	}

	if v := get("VAULT_CREATE_KEY"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("VAULT_CREATE_KEY", "%q is not true or false", v)
		}
		c.CreateKey = b
	}

	if len(errs) > 0 {
		return Config{}, fmt.Errorf("vault config: %w", errors.Join(errs...))
	}
	return c, nil
}

// parseTimeout accepts a Go duration ("5s") or, like Vault's own
// VAULT_CLIENT_TIMEOUT, a bare number of seconds ("5").
func parseTimeout(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// withDefaults fills the optional fields and checks the ones New cannot do
// without, for a Config built by hand.
func (c Config) withDefaults() (Config, error) {
	if c.AppRoleMount == "" {
		c.AppRoleMount = DefaultAppRoleMount
	}
	if c.TransitMount == "" {
		c.TransitMount = DefaultTransitMount
	}
	c.TransitMount = strings.Trim(c.TransitMount, "/")
	if c.Key == "" {
		c.Key = DefaultTransitKey
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Addr == "" {
		return c, errors.New("vault config: Addr (VAULT_ADDR) is empty")
	}
	if c.Token == "" && (c.RoleID == "" || c.SecretID == "") {
		return c, errors.New("vault config: neither Token (VAULT_TOKEN) nor RoleID+SecretID (VAULT_ROLE_ID, VAULT_SECRET_ID) is set")
	}
	return c, nil
}

// usesAppRole reports whether the sealer logs in with AppRole.
func (c Config) usesAppRole() bool { return c.Token == "" }

// Package bootstrap builds the running service from its configuration: it
// starts the embedded parts that no variable replaces, connects the adapters
// and hands the composition roots (cmd/api, cmd/projector) and the component
// tests one Service. It holds no business logic.
package bootstrap

import (
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/connreg/registry/internal/eventstore"
)

// Config is the service's configuration, read from the environment.
type Config struct {
	Env      string // ENV: "development" (default) or "production"
	HTTPAddr string // HTTP_ADDR, default ":8080", "127.0.0.1:8080" when authentication is off
	DataDir  string // DATA_DIR, default "./data": embedded servers' state
	NATSURL  string // NATS_URL: external NATS; empty: embedded
	NATS     NATSAuth
	// StreamReplicas (STREAM_REPLICAS, default 1) is the replica count the
	// stream is created with; an existing stream keeps its own unless
	// StreamUpdate (STREAM_UPDATE=true) asks to move it to StreamReplicas.
	StreamReplicas int
	StreamUpdate   bool
	// ProjectorLease (PROJECTOR_LEASE_TTL, default 5s) is how long the
	// standalone projector's lease lives without renewal: a standby takes
	// over about this long after the active projector died.
	ProjectorLease time.Duration
	MongoURI       string // MONGO_URI: external MongoDB; empty: embedded SQLite under DataDir
	MongoDatabase  string // MONGO_DATABASE, default "connreg"
	VaultAddr      string // VAULT_ADDR: Vault transit sealer; empty: development sealer
	Projector      bool   // PROJECTOR: "embedded" (default) runs it in-process, "off" leaves it to cmd/projector
	MetricsAddr    string // METRICS_ADDR, default "127.0.0.1:9090": cmd/projector's /healthz, /readyz, /metrics; "off": none
	Timeout        time.Duration
	SchemaMaxAge   time.Duration // SCHEMA_MAX_AGE, default 1h: how old a schema validate-schema trusts
	LogLevel       slog.Level
	// MonitorInterval (MONITOR_INTERVAL) is how often the connection
	// monitor tests each connection; 0 when off. Production: 15m unless set;
	// development: off unless set, because development machines hold
	// connections to made-up hosts that must never be dialled on their own.
	MonitorInterval    time.Duration
	MonitorConcurrency int // MONITOR_CONCURRENCY, default 4
	Auth               AuthConfig
	// Getenv is how the Vault sealer reads its own variables.
	Getenv func(string) string
}

// AuthConfig says how callers are authenticated.
type AuthConfig struct {
	Mode          string // AUTH_MODE: "oidc", or "off" (the default; the API refuses it when ENV=production)
	Issuer        string // AUTH_ISSUER: the OIDC issuer URL
	Audience      string // AUTH_AUDIENCE: the aud value tokens must carry
	OrgClaim      string // AUTH_ORG_CLAIM, default "org_id"
	ProductsClaim string // AUTH_PRODUCTS_CLAIM: optional claim listing the allowed products
}

// Authentication modes.
const (
	AuthOIDC = "oidc"
	AuthOff  = "off"
)

// Production reports whether ENV=production, where development shortcuts are refused.
func (c Config) Production() bool { return c.Env == "production" }

// ConfigFromEnv reads the configuration; an error names the variable and
// what is wrong with it.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Env:           strings.ToLower(strings.TrimSpace(getenv("ENV"))),
		HTTPAddr:      getenv("HTTP_ADDR"),
		DataDir:       getenv("DATA_DIR"),
		NATSURL:       strings.TrimSpace(getenv("NATS_URL")),
		MongoURI:      strings.TrimSpace(getenv("MONGO_URI")),
		MongoDatabase: strings.TrimSpace(getenv("MONGO_DATABASE")),
		VaultAddr:     strings.TrimSpace(getenv("VAULT_ADDR")),
		NATS: NATSAuth{
			Creds: strings.TrimSpace(getenv("NATS_CREDS")), NKey: strings.TrimSpace(getenv("NATS_NKEY")),
			CA: strings.TrimSpace(getenv("NATS_CA")), Cert: strings.TrimSpace(getenv("NATS_CERT")), Key: strings.TrimSpace(getenv("NATS_KEY")),
		},
		MetricsAddr:    strings.TrimSpace(getenv("METRICS_ADDR")),
		StreamReplicas: 1,
		ProjectorLease: eventstore.DefaultLeaseTTL,
		Projector:      true,
		Timeout:        5 * time.Second,
		SchemaMaxAge:   time.Hour,
		Getenv:         getenv,
	}
	switch c.Env {
	case "":
		c.Env = "development"
	case "development", "production":
	default:
		return c, fmt.Errorf("ENV=%q: must be development or production", c.Env)
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.MetricsAddr == "" {
		c.MetricsAddr = "127.0.0.1:9090"
	}
	if c.MongoDatabase == "" {
		c.MongoDatabase = "connreg"
	}
	if c.NATSURL != "" && !strings.HasPrefix(c.NATSURL, "nats://") && !strings.HasPrefix(c.NATSURL, "tls://") {
		return c, fmt.Errorf("NATS_URL=%q: must start with nats:// or tls://", c.NATSURL)
	}
	if c.MongoURI != "" && !strings.HasPrefix(c.MongoURI, "mongodb://") && !strings.HasPrefix(c.MongoURI, "mongodb+srv://") {
		return c, fmt.Errorf("MONGO_URI: must start with mongodb:// or mongodb+srv://")
	}
	if err := c.NATS.validate(); err != nil {
		return c, err
	}
	if v := strings.TrimSpace(getenv("STREAM_REPLICAS")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			return c, fmt.Errorf("STREAM_REPLICAS=%q: must be 1 to 5 (JetStream's limit; 3 in a 3-node cluster)", v)
		}
		c.StreamReplicas = n
	}
	if v := getenv("PROJECTOR_LEASE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return c, fmt.Errorf("PROJECTOR_LEASE_TTL=%q: must be a duration of at least 1s such as 5s", v)
		}
		c.ProjectorLease = d
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("STREAM_UPDATE"))); v {
	case "", "false":
	case "true":
		c.StreamUpdate = true
	default:
		return c, fmt.Errorf("STREAM_UPDATE=%q: must be true or false", v)
	}
	switch p := strings.ToLower(getenv("PROJECTOR")); p {
	case "", "embedded":
	case "off":
		c.Projector = false
	default:
		return c, fmt.Errorf("PROJECTOR=%q: must be embedded or off", p)
	}
	if v := getenv("STORE_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("STORE_TIMEOUT=%q: must be a positive duration such as 5s", v)
		}
		c.Timeout = d
	}
	if v := getenv("SCHEMA_MAX_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("SCHEMA_MAX_AGE=%q: must be a positive duration such as 1h", v)
		}
		c.SchemaMaxAge = d
	}
	if v := getenv("LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			return c, fmt.Errorf("LOG_LEVEL=%q: must be debug, info, warn or error", v)
		}
	}
	if err := c.readMonitor(getenv); err != nil {
		return c, err
	}
	if c.Production() {
		if c.NATSURL == "" || c.MongoURI == "" {
			return c, fmt.Errorf("NATS_URL and MONGO_URI: required when ENV=production (embedded servers are for development)")
		}
	}
	if err := c.readAuth(getenv); err != nil {
		return c, err
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8080"
		if c.Auth.Mode == AuthOff {
			c.HTTPAddr = "127.0.0.1:8080" // without authentication, reachable from this machine only
		}
	}
	return c, nil
}

func (c *Config) readMonitor(getenv func(string) string) error {
	c.MonitorConcurrency = 4
	if v := getenv("MONITOR_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("MONITOR_CONCURRENCY=%q: must be a positive integer", v)
		}
		c.MonitorConcurrency = n
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("MONITOR_INTERVAL"))); v {
	case "":
		if c.Production() {
			c.MonitorInterval = 15 * time.Minute
		}
	case "off":
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return fmt.Errorf("MONITOR_INTERVAL=%q: must be off or a duration of at least 1s such as 15m", v)
		}
		c.MonitorInterval = d
	}
	return nil
}

func (c *Config) readAuth(getenv func(string) string) error {
	a := AuthConfig{
		Mode:          strings.ToLower(strings.TrimSpace(getenv("AUTH_MODE"))),
		Issuer:        strings.TrimSpace(getenv("AUTH_ISSUER")),
		Audience:      strings.TrimSpace(getenv("AUTH_AUDIENCE")),
		OrgClaim:      strings.TrimSpace(getenv("AUTH_ORG_CLAIM")),
		ProductsClaim: strings.TrimSpace(getenv("AUTH_PRODUCTS_CLAIM")),
	}
	switch a.Mode {
	case "":
		a.Mode = AuthOff // the API refuses it when ENV=production (see authenticator)
	case AuthOff, AuthOIDC:
	default:
		return fmt.Errorf("AUTH_MODE=%q: must be oidc or off", a.Mode)
	}
	if a.OrgClaim == "" {
		a.OrgClaim = "org_id"
	}
	if a.Mode == AuthOIDC {
		u, err := url.Parse(a.Issuer)
		switch {
		case a.Issuer == "":
			return fmt.Errorf("AUTH_ISSUER: required when AUTH_MODE=oidc")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			return fmt.Errorf("AUTH_ISSUER=%q: must be an http(s) URL", a.Issuer)
		case c.Production() && u.Scheme != "https":
			return fmt.Errorf("AUTH_ISSUER=%q: must be https when ENV=production", a.Issuer)
		case a.Audience == "":
			return fmt.Errorf("AUTH_AUDIENCE: required when AUTH_MODE=oidc")
		}
	}
	c.Auth = a
	return nil
}

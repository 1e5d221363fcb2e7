package domain

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// DefaultOrganization is the single organization of every caller when
// authentication is off (AUTH_MODE=off); config names are unique within an
// organization.
const DefaultOrganization = "default"

var namePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// Engine is a supported database engine.
type Engine string

// The supported engines, as the API spells them.
const (
	EngineOracle     Engine = "ORACLE"
	EngineSQLServer  Engine = "SQL_SERVER"
	EnginePostgreSQL Engine = "POSTGRESQL"
	EngineMongoDB    Engine = "MONGODB"
	EngineMySQL      Engine = "MYSQL"
)

var sslModes = map[Engine][]string{
	EnginePostgreSQL: {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
	EngineMySQL:      {"false", "true", "skip-verify", "preferred"},
	EngineMongoDB:    {"disable", "false", "true", "enable", "insecure"},
	EngineOracle:     {"disable", "false", "true", "enable", "verify", "skip-verify"},
	EngineSQLServer:  {"disable", "false", "true", "strict"},
}

// ParseEngine accepts an engine name in any case.
func ParseEngine(s string) (Engine, error) {
	e := Engine(strings.ToUpper(strings.TrimSpace(s)))
	if _, ok := sslModes[e]; !ok {
		return "", fmt.Errorf("must be one of ORACLE, SQL_SERVER, POSTGRESQL, MONGODB, MYSQL")
	}
	return e, nil
}

// DefaultSchema is the schema a connection gets when none is given.
func (e Engine) DefaultSchema() string {
	switch e {
	case EnginePostgreSQL:
		return "public"
	case EngineSQLServer:
		return "dbo"
	}
	return ""
}

// SSLModes lists the SSL modes the engine accepts, as the API spells them.
func (e Engine) SSLModes() []string { return slices.Clone(sslModes[e]) }

// ParseSSLMode accepts a mode of the engine's list in any case and returns it
// as the list spells it.
func (e Engine) ParseSSLMode(s string) (string, error) {
	m := strings.ToLower(strings.TrimSpace(s))
	if !slices.Contains(sslModes[e], m) {
		return "", fmt.Errorf("must be one of %s for %s", strings.Join(sslModes[e], ", "), e)
	}
	return m, nil
}

// ParseConfigName validates a config name: trimmed, 3 to 100 characters of
// letters, digits, '_' and '-'. The case is kept; uniqueness ignores it.
func ParseConfigName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if err := checkText(s); err != nil {
		return "", err
	}
	if n := len(s); n < 3 || n > 100 {
		return "", fmt.Errorf("must be 3 to 100 characters long")
	}
	if !namePattern.MatchString(s) {
		return "", fmt.Errorf("may contain only letters, digits, '_' and '-'")
	}
	return s, nil
}

// ParseProductName validates a product name: trimmed, 1 to 100 characters of
// letters, digits, '_' and '-', stored in lower case.
func ParseProductName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if err := checkText(s); err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("is required")
	}
	if len(s) > 100 {
		return "", fmt.Errorf("must be at most 100 characters long")
	}
	if !namePattern.MatchString(s) {
		return "", fmt.Errorf("may contain only letters, digits, '_' and '-'")
	}
	return strings.ToLower(s), nil
}

// ParseHost accepts an IP address or a host name: no scheme, path, port,
// credentials or spaces.
func ParseHost(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("is required")
	}
	if err := checkText(s); err != nil {
		return "", err
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("must be an IP address without a zone, or a host name")
		}
		return s, nil
	}
	if len(s) > 253 {
		return "", fmt.Errorf("must be at most 253 characters long")
	}
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	if last := labels[len(labels)-1]; last != "" && strings.Trim(last, "0123456789") == "" {
		// An all-numeric top label is a malformed IP address, not a name.
		return "", fmt.Errorf("must be a valid IP address or a host name")
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("must be a host name or an IP address (no scheme, path or port)")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("must be a host name or an IP address (no scheme, path or port)")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("must be a host name or an IP address (no scheme, path or port)")
			}
		}
	}
	return s, nil
}

func validateCertificatePEM(s string) error {
	rest := []byte(s)
	found := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("must contain only PEM CERTIFICATE blocks")
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("holds a certificate that does not parse")
		}
		found = true
	}
	if !found || strings.TrimSpace(string(rest)) != "" {
		return fmt.Errorf("must be one or more PEM certificates")
	}
	return nil
}

// validatePrivateKeyPEM checks a client key without ever quoting it.
func validatePrivateKeyPEM(key []byte) error {
	block, rest := pem.Decode(key)
	if block == nil || strings.TrimSpace(string(rest)) != "" {
		return fmt.Errorf("must be one PEM private key")
	}
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		_, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		_, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		_, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return fmt.Errorf("must be a PEM private key (PKCS#8, PKCS#1 or EC)")
	}
	if err != nil {
		return fmt.Errorf("is not a valid private key")
	}
	return nil
}

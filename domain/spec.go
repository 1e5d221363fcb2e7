package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Field limits.
const (
	MaxNameFieldLength = 255  // databaseName, userName, schema
	MaxPasswordLength  = 1024 // in characters
)

// SSLInput is the SSL block as a caller gives it; Key is the client's private
// key in PEM, a secret.
type SSLInput struct {
	Mode string
	CA   string
	Cert string
	Key  []byte
}

// SpecInput is a connection as a caller describes it on create, before
// validation. Password and SSL.Key are plaintext secrets: ParseSpec moves
// them into Secrets, which the caller seals and then wipes.
type SpecInput struct {
	ProductName  string
	ConfigName   string
	Type         string
	Host         string
	Port         int
	DatabaseName string
	UserName     string
	Password     []byte
	Schema       *string
	SSL          *SSLInput
	Metadata     map[string]string
}

// SSL is a validated SSL configuration without the client key, which lives
// sealed beside it.
type SSL struct {
	Mode string
	CA   string
	Cert string
}

// Spec is a validated connection configuration, secrets excluded.
type Spec struct {
	ProductName  string
	ConfigName   string
	Engine       Engine
	Host         string
	Port         int
	DatabaseName string
	UserName     string
	Schema       string
	SSL          *SSL
	Metadata     map[string]string
}

// Secrets are the plaintext credentials of a SpecInput, to be sealed.
type Secrets struct {
	Password []byte
	SSLKey   []byte // nil when there is no client key
}

// Wipe overwrites the plaintext so that it does not linger in memory.
func (s Secrets) Wipe() {
	clear(s.Password)
	clear(s.SSLKey)
}

// ParseSpec validates every field of a create request and reports all refused
// fields at once.
func ParseSpec(in SpecInput) (Spec, Secrets, error) {
	var v ValidationError
	var spec Spec
	var err error

	if spec.ProductName, err = ParseProductName(in.ProductName); err != nil {
		v.Add("X-Product-Name", ViolationInvalid, err.Error())
	}
	if strings.TrimSpace(in.ConfigName) == "" {
		v.Add("configName", ViolationMissing, "is required")
	} else if spec.ConfigName, err = ParseConfigName(in.ConfigName); err != nil {
		v.Add("configName", ViolationInvalid, err.Error())
	}
	if strings.TrimSpace(in.Type) == "" {
		v.Add("type", ViolationMissing, "is required")
	} else if spec.Engine, err = ParseEngine(in.Type); err != nil {
		v.Add("type", ViolationInvalid, err.Error())
	}
	if strings.TrimSpace(in.Host) == "" {
		v.Add("host", ViolationMissing, "is required")
	} else if spec.Host, err = ParseHost(in.Host); err != nil {
		v.Add("host", ViolationInvalid, err.Error())
	}
	switch {
	case in.Port == 0:
		v.Add("port", ViolationMissing, "is required")
	case in.Port < 1 || in.Port > 65535:
		v.Add("port", ViolationInvalid, "must be between 1 and 65535")
	default:
		spec.Port = in.Port
	}
	spec.DatabaseName = requiredText(&v, "databaseName", in.DatabaseName)
	spec.UserName = requiredText(&v, "userName", in.UserName)

	switch n := utf8.RuneCount(in.Password); {
	case n == 0:
		v.Add("password", ViolationMissing, "is required")
	case n > MaxPasswordLength:
		v.Add("password", ViolationInvalid, fmt.Sprintf("must be at most %d characters long", MaxPasswordLength))
	}

	if in.Schema != nil && strings.TrimSpace(*in.Schema) != "" {
		spec.Schema = optionalText(&v, "schema", *in.Schema)
	} else {
		spec.Schema = spec.Engine.DefaultSchema()
	}

	var secrets Secrets
	if in.SSL != nil {
		spec.SSL, secrets.SSLKey = parseSSL(&v, spec.Engine, *in.SSL)
	}
	if md, err := ParseMetadata(in.Metadata); err != nil {
		v.Merge(asValidation(err))
	} else {
		spec.Metadata = md
	}
	if err := v.OrNil(); err != nil {
		return Spec{}, Secrets{}, err
	}
	secrets.Password = in.Password
	return spec, secrets, nil
}

// requiredText validates a required free-text field (databaseName,
// userName): surrounding white space is trimmed, as it always was, and what
// remains must pass checkText and the length limit.
// asValidation is err as the *ValidationError every Parse function of the
// package returns.
func asValidation(err error) *ValidationError {
	var v *ValidationError
	errors.As(err, &v)
	return v
}

func requiredText(v *ValidationError, path, s string) string {
	s = strings.TrimSpace(s)
	if err := checkText(s); err != nil {
		v.Add(path, ViolationInvalid, err.Error())
		return ""
	}
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		v.Add(path, ViolationMissing, "is required")
	case n > MaxNameFieldLength:
		v.Add(path, ViolationInvalid, fmt.Sprintf("must be at most %d characters long", MaxNameFieldLength))
	}
	return s
}

// optionalText validates an optional free-text field (schema) the way
// requiredText does; an empty result means the field was blank.
func optionalText(v *ValidationError, path, s string) string {
	s = strings.TrimSpace(s)
	if err := checkText(s); err != nil {
		v.Add(path, ViolationBadValue, err.Error())
		return ""
	}
	if utf8.RuneCountInString(s) > MaxNameFieldLength {
		v.Add(path, ViolationBadValue, fmt.Sprintf("must be at most %d characters long", MaxNameFieldLength))
	}
	return s
}

func parseSSL(v *ValidationError, engine Engine, in SSLInput) (*SSL, []byte) {
	out := &SSL{CA: in.CA, Cert: in.Cert}
	switch {
	case strings.TrimSpace(in.Mode) == "":
		v.Add("ssl.mode", ViolationMissing, "is required when ssl is given")
	case engine == "":
		// The engine is refused already; the mode cannot be judged.
	default:
		mode, err := engine.ParseSSLMode(in.Mode)
		if err != nil {
			v.Add("ssl.mode", ViolationSSLMode, err.Error())
		}
		out.Mode = mode
	}
	if in.CA != "" {
		if err := validateCertificatePEM(in.CA); err != nil {
			v.Add("ssl.ca", ViolationBadValue, err.Error())
		}
	}
	if in.Cert != "" {
		if err := validateCertificatePEM(in.Cert); err != nil {
			v.Add("ssl.cert", ViolationBadValue, err.Error())
		}
	}
	if len(in.Key) > 0 {
		if err := validatePrivateKeyPEM(in.Key); err != nil {
			v.Add("ssl.key", ViolationBadValue, err.Error())
		}
		if in.Cert == "" {
			v.Add("ssl.cert", ViolationBadValue, "is required with ssl.key")
		}
	} else if in.Cert != "" {
		v.Add("ssl.key", ViolationBadValue, "is required with ssl.cert")
	}
	var key []byte
	if len(in.Key) > 0 {
		key = in.Key
	}
	return out, key
}

// Fingerprint identifies the configuration a create asked for, secrets
// excluded (a hash of a password would be a way to guess it): two requests
// with the same fingerprint describe the same connection.
func (s Spec) Fingerprint() string {
	h := sha256.New()
	field := func(v string) { fmt.Fprintf(h, "%d:%s;", len(v), v) }
	for _, v := range []string{s.ProductName, s.ConfigName, string(s.Engine), s.Host, strconv.Itoa(s.Port), s.DatabaseName, s.UserName, s.Schema} {
		field(v)
	}
	if s.SSL != nil {
		field("ssl")
		field(s.SSL.Mode)
		field(s.SSL.CA)
		field(s.SSL.Cert)
	}
	keys := slices.Sorted(maps.Keys(s.Metadata))
	for _, k := range keys {
		field(k)
		field(s.Metadata[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

package domain_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connreg/registry/domain"
)

// pemFixtures are real certificates and private keys, generated once per test
// binary, so that the PEM checks run against what a client would send.
type pemFixtures struct {
	cert      string // one self-signed ECDSA certificate
	otherCert string // a second certificate, for chains
	pkcs8Key  []byte // "PRIVATE KEY"
	ecKey     []byte // "EC PRIVATE KEY"
	rsaKey    []byte // "RSA PRIVATE KEY" (PKCS#1)
}

var fixtures = sync.OnceValue(func() pemFixtures {
	newCert := func(cn string) (string, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), key
	}
	cert, key := newCert("client")
	other, _ := newCert("ca")
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	ec, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		panic(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return pemFixtures{
		cert:      cert,
		otherCert: other,
		pkcs8Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		ecKey:     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ec}),
		rsaKey:    pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
	}
})

// testPassword is the plaintext password of every input; no error may quote it.
const testPassword = "pw-Zq8#never-echo-this"

func validInput() domain.SpecInput {
	return domain.SpecInput{
		ProductName:  "my-product",
		ConfigName:   "production-db",
		Type:         "POSTGRESQL",
		Host:         "db.example.com",
		Port:         5432,
		DatabaseName: "mydatabase",
		UserName:     "dbuser",
		Password:     []byte(testPassword),
	}
}

func ptr(s string) *string { return &s }

// The mode lists of the contract, written out here rather than read from the
// domain, so that a change to the domain's lists fails these tests.
var contractSSLModes = map[domain.Engine][]string{
	domain.EnginePostgreSQL: {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
	domain.EngineMySQL:      {"false", "true", "skip-verify", "preferred"},
	domain.EngineMongoDB:    {"disable", "false", "true", "enable", "insecure"},
	domain.EngineOracle:     {"disable", "false", "true", "enable", "verify", "skip-verify"},
	domain.EngineSQLServer:  {"disable", "false", "true", "strict"},
}

func allContractModes() []string {
	var all []string
	for _, modes := range contractSSLModes {
		for _, m := range modes {
			if !slices.Contains(all, m) {
				all = append(all, m)
			}
		}
	}
	slices.Sort(all)
	return all
}

// requireViolations checks that err is a *domain.ValidationError refusing
// exactly the paths of want, each with its kind, and that no reason and no
// message quotes a secret.
func requireViolations(t *testing.T, err error, want map[string]domain.ViolationKind, secrets ...[]byte) {
	t.Helper()
	var v *domain.ValidationError
	if !errors.As(err, &v) {
		t.Fatalf("error = %v (%T), want a *domain.ValidationError", err, err)
	}
	got := map[string]domain.ViolationKind{}
	for p, viol := range v.Fields {
		got[p] = viol.Kind
		if viol.Reason == "" {
			t.Errorf("path %q has an empty reason", p)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("violations = %v, want %v (error: %v)", got, want, err)
	}
	for _, s := range append(secrets, []byte(testPassword)) {
		if len(s) > 0 && strings.Contains(err.Error(), string(s)) {
			t.Errorf("error message quotes a secret: %v", err)
		}
	}
}

func TestParseSpecRefusesEachBadField(t *testing.T) {
	fx := fixtures()
	const (
		missing  = domain.ViolationMissing
		invalid  = domain.ViolationInvalid
		badValue = domain.ViolationBadValue
		sslMode  = domain.ViolationSSLMode
	)
	longPassword := strings.Repeat("p", domain.MaxPasswordLength) + testPassword
	tests := []struct {
		name   string
		modify func(*domain.SpecInput)
		want   map[string]domain.ViolationKind
	}{
		// X-Product-Name
		{"product missing", func(in *domain.SpecInput) { in.ProductName = "" }, map[string]domain.ViolationKind{"X-Product-Name": invalid}},
		{"product blank", func(in *domain.SpecInput) { in.ProductName = "   " }, map[string]domain.ViolationKind{"X-Product-Name": invalid}},
		{"product 101 chars", func(in *domain.SpecInput) { in.ProductName = strings.Repeat("p", 101) }, map[string]domain.ViolationKind{"X-Product-Name": invalid}},
		{"product with space", func(in *domain.SpecInput) { in.ProductName = "my product" }, map[string]domain.ViolationKind{"X-Product-Name": invalid}},
		{"product with dot", func(in *domain.SpecInput) { in.ProductName = "my.product" }, map[string]domain.ViolationKind{"X-Product-Name": invalid}},
		{"product non-ASCII", func(in *domain.SpecInput) { in.ProductName = "prödukt" }, map[string]domain.ViolationKind{"X-Product-Name": invalid}},

		// configName
		{"configName missing", func(in *domain.SpecInput) { in.ConfigName = "" }, map[string]domain.ViolationKind{"configName": missing}},
		{"configName blank", func(in *domain.SpecInput) { in.ConfigName = " \t " }, map[string]domain.ViolationKind{"configName": missing}},
		{"configName 2 chars", func(in *domain.SpecInput) { in.ConfigName = "ab" }, map[string]domain.ViolationKind{"configName": invalid}},
		{"configName 2 chars after trim", func(in *domain.SpecInput) { in.ConfigName = "  ab  " }, map[string]domain.ViolationKind{"configName": invalid}},
		{"configName 101 chars", func(in *domain.SpecInput) { in.ConfigName = strings.Repeat("c", 101) }, map[string]domain.ViolationKind{"configName": invalid}},
		{"configName with space", func(in *domain.SpecInput) { in.ConfigName = "prod db" }, map[string]domain.ViolationKind{"configName": invalid}},
		{"configName with dot", func(in *domain.SpecInput) { in.ConfigName = "prod.db" }, map[string]domain.ViolationKind{"configName": invalid}},
		{"configName with slash", func(in *domain.SpecInput) { in.ConfigName = "prod/db" }, map[string]domain.ViolationKind{"configName": invalid}},
		{"configName non-ASCII", func(in *domain.SpecInput) { in.ConfigName = "bäse" }, map[string]domain.ViolationKind{"configName": invalid}},

		// type
		{"type missing", func(in *domain.SpecInput) { in.Type = "" }, map[string]domain.ViolationKind{"type": missing}},
		{"type blank", func(in *domain.SpecInput) { in.Type = "  " }, map[string]domain.ViolationKind{"type": missing}},
		{"type postgres", func(in *domain.SpecInput) { in.Type = "postgres" }, map[string]domain.ViolationKind{"type": invalid}},
		{"type SQLSERVER", func(in *domain.SpecInput) { in.Type = "SQLSERVER" }, map[string]domain.ViolationKind{"type": invalid}},
		{"type sql server", func(in *domain.SpecInput) { in.Type = "sql server" }, map[string]domain.ViolationKind{"type": invalid}},
		{"type DB2", func(in *domain.SpecInput) { in.Type = "DB2" }, map[string]domain.ViolationKind{"type": invalid}},

		// host
		{"host missing", func(in *domain.SpecInput) { in.Host = "" }, map[string]domain.ViolationKind{"host": missing}},
		{"host blank", func(in *domain.SpecInput) { in.Host = "   " }, map[string]domain.ViolationKind{"host": missing}},
		{"host with scheme", func(in *domain.SpecInput) { in.Host = "postgres://db.example.com" }, map[string]domain.ViolationKind{"host": invalid}},
		{"host with path", func(in *domain.SpecInput) { in.Host = "db.example.com/mydb" }, map[string]domain.ViolationKind{"host": invalid}},
		{"host with port", func(in *domain.SpecInput) { in.Host = "db.example.com:5432" }, map[string]domain.ViolationKind{"host": invalid}},
		{"host with credentials", func(in *domain.SpecInput) { in.Host = "user:pw@db.example.com" }, map[string]domain.ViolationKind{"host": invalid}},
		{"host with space", func(in *domain.SpecInput) { in.Host = " db.example.com" }, map[string]domain.ViolationKind{"host": invalid}},
		// An IPv6 zone is parsed by netip.ParseAddr with any characters in it.
		{"host IPv6 with zone hiding a path", func(in *domain.SpecInput) { in.Host = "fe80::1%eth0/mydb" }, map[string]domain.ViolationKind{"host": invalid}},

		// port
		{"port missing", func(in *domain.SpecInput) { in.Port = 0 }, map[string]domain.ViolationKind{"port": missing}},
		{"port negative", func(in *domain.SpecInput) { in.Port = -1 }, map[string]domain.ViolationKind{"port": invalid}},
		{"port 65536", func(in *domain.SpecInput) { in.Port = 65536 }, map[string]domain.ViolationKind{"port": invalid}},

		// databaseName, userName
		{"databaseName missing", func(in *domain.SpecInput) { in.DatabaseName = "" }, map[string]domain.ViolationKind{"databaseName": missing}},
		{"databaseName blank", func(in *domain.SpecInput) { in.DatabaseName = "  " }, map[string]domain.ViolationKind{"databaseName": missing}},
		{"databaseName 256 chars", func(in *domain.SpecInput) { in.DatabaseName = strings.Repeat("d", 256) }, map[string]domain.ViolationKind{"databaseName": invalid}},
		{"userName missing", func(in *domain.SpecInput) { in.UserName = "" }, map[string]domain.ViolationKind{"userName": missing}},
		{"userName blank", func(in *domain.SpecInput) { in.UserName = "\t" }, map[string]domain.ViolationKind{"userName": missing}},
		{"userName 256 chars", func(in *domain.SpecInput) { in.UserName = strings.Repeat("ü", 256) }, map[string]domain.ViolationKind{"userName": invalid}},

		// password
		{"password nil", func(in *domain.SpecInput) { in.Password = nil }, map[string]domain.ViolationKind{"password": missing}},
		{"password empty", func(in *domain.SpecInput) { in.Password = []byte{} }, map[string]domain.ViolationKind{"password": missing}},
		{"password too long", func(in *domain.SpecInput) { in.Password = []byte(longPassword) }, map[string]domain.ViolationKind{"password": invalid}},

		// schema
		{"schema 256 chars", func(in *domain.SpecInput) { in.Schema = ptr(strings.Repeat("s", 256)) }, map[string]domain.ViolationKind{"schema": badValue}},

		// ssl
		{"ssl without mode", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{} }, map[string]domain.ViolationKind{"ssl.mode": missing}},
		{"ssl blank mode", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{Mode: "  ", CA: fx.cert} }, map[string]domain.ViolationKind{"ssl.mode": missing}},
		{"ssl unknown mode", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{Mode: "bogus"} }, map[string]domain.ViolationKind{"ssl.mode": sslMode}},
		{"ssl mode of another engine", func(in *domain.SpecInput) {
			in.Type = "MYSQL"
			in.SSL = &domain.SSLInput{Mode: "verify-full"}
		}, map[string]domain.ViolationKind{"ssl.mode": sslMode}},
		{"ssl mode not judged when type is refused", func(in *domain.SpecInput) {
			in.Type = "DB2"
			in.SSL = &domain.SSLInput{Mode: "bogus"}
		}, map[string]domain.ViolationKind{"type": invalid}},
		{"ssl.ca not PEM", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{Mode: "require", CA: "not a certificate"} }, map[string]domain.ViolationKind{"ssl.ca": badValue}},
		{"ssl.ca blank", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{Mode: "require", CA: "  \n"} }, map[string]domain.ViolationKind{"ssl.ca": badValue}},
		{"ssl.ca holds a key", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{Mode: "require", CA: string(fx.pkcs8Key)} }, map[string]domain.ViolationKind{"ssl.ca": badValue}},
		{"ssl.ca certificate block of garbage", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", CA: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")}))}
		}, map[string]domain.ViolationKind{"ssl.ca": badValue}},
		{"ssl.ca with trailing junk", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{Mode: "require", CA: fx.cert + "junk"} }, map[string]domain.ViolationKind{"ssl.ca": badValue}},
		{"ssl.ca cert followed by a key", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", CA: fx.cert + string(fx.pkcs8Key)}
		}, map[string]domain.ViolationKind{"ssl.ca": badValue}},
		{"ssl.cert not PEM", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: "nope", Key: fx.pkcs8Key}
		}, map[string]domain.ViolationKind{"ssl.cert": badValue}},
		{"ssl.cert without key", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert} }, map[string]domain.ViolationKind{"ssl.key": badValue}},
		{"ssl.key without cert", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{Mode: "require", Key: fx.pkcs8Key} }, map[string]domain.ViolationKind{"ssl.cert": badValue}},
		{"ssl.key not PEM", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert, Key: []byte("not-a-key-" + testPassword)}
		}, map[string]domain.ViolationKind{"ssl.key": badValue}},
		{"ssl.key is a certificate", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert, Key: []byte(fx.cert)}
		}, map[string]domain.ViolationKind{"ssl.key": badValue}},
		{"ssl.key block of garbage", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert, Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage")})}
		}, map[string]domain.ViolationKind{"ssl.key": badValue}},
		{"ssl.key encrypted", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert, Key: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")})}
		}, map[string]domain.ViolationKind{"ssl.key": badValue}},
		{"ssl.key two keys", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert, Key: append(slices.Clone(fx.pkcs8Key), fx.ecKey...)}
		}, map[string]domain.ViolationKind{"ssl.key": badValue}},
		{"ssl.key blank", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert, Key: []byte("   ")}
		}, map[string]domain.ViolationKind{"ssl.key": badValue}},

		// metadata
		{"metadata 51 keys", func(in *domain.SpecInput) { in.Metadata = metadataWithKeys(51) }, map[string]domain.ViolationKind{"metadata": badValue}},
		{"metadata empty key", func(in *domain.SpecInput) { in.Metadata = map[string]string{"": "v"} }, map[string]domain.ViolationKind{"metadata": domain.ViolationMetadataKeyTooLong}},
		{"metadata key 101 chars", func(in *domain.SpecInput) { in.Metadata = map[string]string{strings.Repeat("k", 101): "v"} },
			map[string]domain.ViolationKind{"metadata." + strings.Repeat("k", 101): domain.ViolationMetadataKeyTooLong}},
		{"metadata value 2001 chars", func(in *domain.SpecInput) { in.Metadata = map[string]string{"team": strings.Repeat("v", 2001)} },
			map[string]domain.ViolationKind{"metadata.team": domain.ViolationMetadataValueTooLong}},
		{"metadata value 2001 runes", func(in *domain.SpecInput) { in.Metadata = map[string]string{"team": strings.Repeat("é", 2001)} },
			map[string]domain.ViolationKind{"metadata.team": domain.ViolationMetadataValueTooLong}},

		// several at once: every refused field is listed
		{"every field refused", func(in *domain.SpecInput) {
			*in = domain.SpecInput{
				ProductName: "bad product",
				ConfigName:  "x",
				Type:        "DB2",
				Host:        "http://db",
				Port:        70000,
				Password:    nil,
				Schema:      ptr(strings.Repeat("s", 300)),
				SSL:         &domain.SSLInput{CA: "junk", Cert: fx.cert},
				Metadata:    map[string]string{strings.Repeat("k", 101): "v", "team": strings.Repeat("v", 2001)},
			}
		}, map[string]domain.ViolationKind{
			"X-Product-Name":                       invalid,
			"configName":                           invalid,
			"type":                                 invalid,
			"host":                                 invalid,
			"port":                                 invalid,
			"databaseName":                         missing,
			"userName":                             missing,
			"password":                             missing,
			"schema":                               badValue,
			"ssl.mode":                             missing,
			"ssl.ca":                               badValue,
			"ssl.key":                              badValue,
			"metadata." + strings.Repeat("k", 101): domain.ViolationMetadataKeyTooLong,
			"metadata.team":                        domain.ViolationMetadataValueTooLong,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput()
			tt.modify(&in)
			var key []byte
			if in.SSL != nil {
				key = slices.Clone(in.SSL.Key)
			}
			spec, secrets, err := domain.ParseSpec(in)
			requireViolations(t, err, tt.want, key)
			if !isZeroSpec(spec) || secrets.Password != nil || secrets.SSLKey != nil {
				t.Errorf("a refused input returned a spec or secrets, want zero values: %+v", spec)
			}
		})
	}
}

func isZeroSpec(s domain.Spec) bool {
	return s.ProductName == "" && s.ConfigName == "" && s.Engine == "" && s.Host == "" && s.Port == 0 &&
		s.DatabaseName == "" && s.UserName == "" && s.Schema == "" && s.SSL == nil && s.Metadata == nil
}

func metadataWithKeys(n int) map[string]string {
	md := make(map[string]string, n)
	for i := range n {
		md["key"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	if len(md) != n {
		panic("metadataWithKeys made duplicate keys")
	}
	return md
}

func TestParseSpecNormalizesAcceptedInput(t *testing.T) {
	fx := fixtures()
	tests := []struct {
		name   string
		modify func(*domain.SpecInput)
		check  func(t *testing.T, spec domain.Spec, secrets domain.Secrets)
	}{
		{"product trimmed and lower-cased", func(in *domain.SpecInput) { in.ProductName = "  My_Product-01 " }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "ProductName", s.ProductName, "my_product-01")
		}},
		{"product 100 chars", func(in *domain.SpecInput) { in.ProductName = strings.Repeat("P", 100) }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "ProductName", s.ProductName, strings.Repeat("p", 100))
		}},
		{"configName trimmed, case kept", func(in *domain.SpecInput) { in.ConfigName = "  Prod_DB-1 " }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "ConfigName", s.ConfigName, "Prod_DB-1")
		}},
		{"configName 3 chars", func(in *domain.SpecInput) { in.ConfigName = "abc" }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "ConfigName", s.ConfigName, "abc")
		}},
		{"configName 100 chars", func(in *domain.SpecInput) { in.ConfigName = strings.Repeat("c", 100) }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "ConfigName", s.ConfigName, strings.Repeat("c", 100))
		}},
		{"type lower case, stored upper", func(in *domain.SpecInput) { in.Type = "sql_server" }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Engine", s.Engine, domain.EngineSQLServer)
		}},
		{"type mixed case with spaces", func(in *domain.SpecInput) { in.Type = " MongoDb " }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Engine", s.Engine, domain.EngineMongoDB)
		}},
		{"host IPv4", func(in *domain.SpecInput) { in.Host = "10.0.0.1" }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Host", s.Host, "10.0.0.1")
		}},
		{"host IPv6", func(in *domain.SpecInput) { in.Host = "2001:db8::1" }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Host", s.Host, "2001:db8::1")
		}},
		{"port 1", func(in *domain.SpecInput) { in.Port = 1 }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Port", s.Port, 1)
		}},
		{"port 65535", func(in *domain.SpecInput) { in.Port = 65535 }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Port", s.Port, 65535)
		}},
		{"names trimmed", func(in *domain.SpecInput) {
			in.DatabaseName = " mydb "
			in.UserName = "\tdbuser\n"
		}, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "DatabaseName", s.DatabaseName, "mydb")
			wantEqual(t, "UserName", s.UserName, "dbuser")
		}},
		{"names 255 runes", func(in *domain.SpecInput) {
			in.DatabaseName = strings.Repeat("ü", 255)
			in.UserName = strings.Repeat("u", 255)
		}, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "DatabaseName", s.DatabaseName, strings.Repeat("ü", 255))
			wantEqual(t, "UserName", s.UserName, strings.Repeat("u", 255))
		}},
		{"password 1024 runes kept as given", func(in *domain.SpecInput) { in.Password = []byte(strings.Repeat("é", 1024)) }, func(t *testing.T, _ domain.Spec, sec domain.Secrets) {
			wantEqual(t, "Password", string(sec.Password), strings.Repeat("é", 1024))
		}},
		{"password of spaces is not empty", func(in *domain.SpecInput) { in.Password = []byte("   ") }, func(t *testing.T, _ domain.Spec, sec domain.Secrets) {
			wantEqual(t, "Password", string(sec.Password), "   ")
		}},
		{"schema omitted, POSTGRESQL gets public", func(in *domain.SpecInput) { in.Type = "POSTGRESQL" }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Schema", s.Schema, "public")
		}},
		{"schema omitted, SQL_SERVER gets dbo", func(in *domain.SpecInput) { in.Type = "SQL_SERVER" }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Schema", s.Schema, "dbo")
		}},
		{"schema omitted, MYSQL gets none", func(in *domain.SpecInput) { in.Type = "MYSQL" }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Schema", s.Schema, "")
		}},
		{"schema omitted, MONGODB gets none", func(in *domain.SpecInput) { in.Type = "MONGODB" }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Schema", s.Schema, "")
		}},
		{"schema omitted, ORACLE gets none", func(in *domain.SpecInput) { in.Type = "ORACLE" }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Schema", s.Schema, "")
		}},
		{"schema blank counts as omitted", func(in *domain.SpecInput) { in.Schema = ptr("  ") }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Schema", s.Schema, "public")
		}},
		{"schema given is trimmed and kept", func(in *domain.SpecInput) {
			in.Type = "SQL_SERVER"
			in.Schema = ptr(" sales ")
		}, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Schema", s.Schema, "sales")
		}},
		{"schema 255 chars", func(in *domain.SpecInput) { in.Schema = ptr(strings.Repeat("s", 255)) }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "Schema", s.Schema, strings.Repeat("s", 255))
		}},
		{"ssl absent", func(in *domain.SpecInput) { in.SSL = nil }, func(t *testing.T, s domain.Spec, sec domain.Secrets) {
			if s.SSL != nil || sec.SSLKey != nil {
				t.Errorf("SSL = %+v, key set = %v, want none", s.SSL, sec.SSLKey != nil)
			}
		}},
		{"ssl mode upper case stored as listed", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: " VERIFY-FULL ", CA: fx.cert + fx.otherCert}
		}, func(t *testing.T, s domain.Spec, sec domain.Secrets) {
			wantEqual(t, "SSL", *s.SSL, domain.SSL{Mode: "verify-full", CA: fx.cert + fx.otherCert})
			if sec.SSLKey != nil {
				t.Errorf("SSLKey set without a key")
			}
		}},
		{"ssl client cert and PKCS#8 key", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert, Key: fx.pkcs8Key}
		}, func(t *testing.T, s domain.Spec, sec domain.Secrets) {
			wantEqual(t, "SSL", *s.SSL, domain.SSL{Mode: "require", Cert: fx.cert})
			if !bytes.Equal(sec.SSLKey, fx.pkcs8Key) {
				t.Errorf("SSLKey is not the given key")
			}
		}},
		{"ssl client cert and EC key", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert, Key: fx.ecKey}
		}, func(t *testing.T, _ domain.Spec, sec domain.Secrets) {
			if !bytes.Equal(sec.SSLKey, fx.ecKey) {
				t.Errorf("SSLKey is not the given key")
			}
		}},
		{"ssl client cert and PKCS#1 key", func(in *domain.SpecInput) {
			in.SSL = &domain.SSLInput{Mode: "require", Cert: fx.cert, Key: fx.rsaKey}
		}, func(t *testing.T, _ domain.Spec, sec domain.Secrets) {
			if !bytes.Equal(sec.SSLKey, fx.rsaKey) {
				t.Errorf("SSLKey is not the given key")
			}
		}},
		{"metadata at the limits", func(in *domain.SpecInput) {
			in.Metadata = metadataWithKeys(49)
			in.Metadata[strings.Repeat("k", 100)] = strings.Repeat("v", 2000)
		}, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			wantEqual(t, "len(Metadata)", len(s.Metadata), 50)
			wantEqual(t, "long value", s.Metadata[strings.Repeat("k", 100)], strings.Repeat("v", 2000))
		}},
		{"metadata empty", func(in *domain.SpecInput) { in.Metadata = map[string]string{} }, func(t *testing.T, s domain.Spec, _ domain.Secrets) {
			if len(s.Metadata) != 0 {
				t.Errorf("Metadata = %v, want empty", s.Metadata)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput()
			tt.modify(&in)
			spec, secrets, err := domain.ParseSpec(in)
			if err != nil {
				t.Fatalf("ParseSpec: %v", err)
			}
			tt.check(t, spec, secrets)
		})
	}
}

func wantEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestParseSpecCopiesMetadata(t *testing.T) {
	in := validInput()
	in.Metadata = map[string]string{"team": "data"}
	spec, _, err := domain.ParseSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	in.Metadata["team"] = "changed"
	if spec.Metadata["team"] != "data" {
		t.Errorf("spec shares the caller's metadata map: %v", spec.Metadata)
	}
}

func TestParseSpecSSLModesPerEngine(t *testing.T) {
	engines := []struct {
		name   string // as a caller may spell it
		engine domain.Engine
	}{
		{"postgresql", domain.EnginePostgreSQL},
		{"MySQL", domain.EngineMySQL},
		{"MONGODB", domain.EngineMongoDB},
		{"oracle", domain.EngineOracle},
		{"Sql_Server", domain.EngineSQLServer},
	}
	for _, e := range engines {
		for _, mode := range append(allContractModes(), "bogus", "verify_full", "required") {
			valid := slices.Contains(contractSSLModes[e.engine], mode)
			for _, spelled := range []string{mode, strings.ToUpper(mode)} {
				t.Run(string(e.engine)+"/"+spelled, func(t *testing.T) {
					in := validInput()
					in.Type = e.name
					in.SSL = &domain.SSLInput{Mode: spelled}
					spec, _, err := domain.ParseSpec(in)
					if !valid {
						requireViolations(t, err, map[string]domain.ViolationKind{"ssl.mode": domain.ViolationSSLMode})
						return
					}
					if err != nil {
						t.Fatalf("ParseSpec: %v", err)
					}
					wantEqual(t, "SSL.Mode", spec.SSL.Mode, mode)
				})
			}
		}
	}
}

func TestSecretsWipe(t *testing.T) {
	s := domain.Secrets{Password: []byte("secret"), SSLKey: []byte("key")}
	s.Wipe()
	if !bytes.Equal(s.Password, make([]byte, 6)) || !bytes.Equal(s.SSLKey, make([]byte, 3)) {
		t.Errorf("Wipe left %q and %q", s.Password, s.SSLKey)
	}
	domain.Secrets{}.Wipe() // no secrets: must not panic
}

func TestParseEngine(t *testing.T) {
	tests := []struct {
		in   string
		want domain.Engine // "" when refused
	}{
		{"ORACLE", domain.EngineOracle},
		{"oracle", domain.EngineOracle},
		{"SQL_SERVER", domain.EngineSQLServer},
		{"sql_server", domain.EngineSQLServer},
		{"PostgreSQL", domain.EnginePostgreSQL},
		{" postgresql ", domain.EnginePostgreSQL},
		{"MONGODB", domain.EngineMongoDB},
		{"mongoDB", domain.EngineMongoDB},
		{"MYSQL", domain.EngineMySQL},
		{"mysql", domain.EngineMySQL},
		{"", ""},
		{"postgres", ""},
		{"SQLSERVER", ""},
		{"SQL-SERVER", ""},
		{"mongo", ""},
		{"MARIADB", ""},
		{"POSTGRESQL,MYSQL", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := domain.ParseEngine(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParseEngine(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEngine(%q): %v", tt.in, err)
			}
			wantEqual(t, "engine", got, tt.want)
		})
	}
}

func TestEngineDefaultSchema(t *testing.T) {
	tests := []struct {
		engine domain.Engine
		want   string
	}{
		{domain.EnginePostgreSQL, "public"},
		{domain.EngineSQLServer, "dbo"},
		{domain.EngineMySQL, ""},
		{domain.EngineMongoDB, ""},
		{domain.EngineOracle, ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.engine), func(t *testing.T) {
			wantEqual(t, "DefaultSchema", tt.engine.DefaultSchema(), tt.want)
		})
	}
}

func TestEngineParseSSLMode(t *testing.T) {
	for engine, modes := range contractSSLModes {
		t.Run(string(engine), func(t *testing.T) {
			if got := engine.SSLModes(); !slices.Equal(got, modes) {
				t.Errorf("SSLModes() = %v, want %v", got, modes)
			}
			for _, m := range allContractModes() {
				got, err := engine.ParseSSLMode(" " + strings.ToUpper(m) + " ")
				switch {
				case slices.Contains(modes, m) && err != nil:
					t.Errorf("ParseSSLMode(%q): %v", m, err)
				case slices.Contains(modes, m) && got != m:
					t.Errorf("ParseSSLMode(%q) = %q, want %q", m, got, m)
				case !slices.Contains(modes, m) && err == nil:
					t.Errorf("ParseSSLMode(%q) = %q, want an error", m, got)
				}
			}
			if _, err := engine.ParseSSLMode(""); err == nil {
				t.Errorf("ParseSSLMode(\"\") accepted")
			}
		})
	}
	t.Run("SSLModes returns a copy", func(t *testing.T) {
		modes := domain.EnginePostgreSQL.SSLModes()
		modes[0] = "tampered"
		if _, err := domain.EnginePostgreSQL.ParseSSLMode("tampered"); err == nil {
			t.Errorf("changing the slice SSLModes returned changed the engine's modes")
		}
	})
}

func TestParseConfigName(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		refused bool
	}{
		{in: "abc", want: "abc"},
		{in: "  Prod_DB-1  ", want: "Prod_DB-1"},
		{in: strings.Repeat("x", 100), want: strings.Repeat("x", 100)},
		{in: " " + strings.Repeat("x", 100) + " ", want: strings.Repeat("x", 100)},
		{in: "", refused: true},
		{in: "ab", refused: true},
		{in: " ab ", refused: true},
		{in: strings.Repeat("x", 101), refused: true},
		{in: "prod db", refused: true},
		{in: "prod.db", refused: true},
		{in: "prod@db", refused: true},
		{in: "prod\ndb", refused: true},
		{in: "pröd", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := domain.ParseConfigName(tt.in)
			if tt.refused {
				if err == nil {
					t.Fatalf("ParseConfigName(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfigName(%q): %v", tt.in, err)
			}
			wantEqual(t, "config name", got, tt.want)
		})
	}
}

func TestParseProductName(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		refused bool
	}{
		{in: "my-product", want: "my-product"},
		{in: "My_Product", want: "my_product"},
		{in: "  MY-PRODUCT  ", want: "my-product"},
		{in: "p", want: "p"},
		{in: strings.Repeat("A", 100), want: strings.Repeat("a", 100)},
		{in: "", refused: true},
		{in: "   ", refused: true},
		{in: strings.Repeat("a", 101), refused: true},
		{in: "my product", refused: true},
		{in: "my.product", refused: true},
		{in: "my/product", refused: true},
		{in: "prödukt", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := domain.ParseProductName(tt.in)
			if tt.refused {
				if err == nil {
					t.Fatalf("ParseProductName(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseProductName(%q): %v", tt.in, err)
			}
			wantEqual(t, "product name", got, tt.want)
		})
	}
}

func TestParseHost(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	tests := []struct {
		in      string
		refused bool
	}{
		{in: "db.example.com"},
		{in: "localhost"},
		{in: "db-1.internal"},
		{in: "db_1.internal"},
		{in: "db.example.com."},
		{in: label63 + ".example.com"},
		{in: "10.0.0.1"},
		{in: "255.255.255.255"},
		{in: "::1"},
		{in: "2001:db8::1"},
		{in: "::ffff:10.0.0.1"},
		{in: strings.Repeat(label63+".", 3) + strings.Repeat("a", 61)}, // 253 chars

		{in: "", refused: true},
		{in: " ", refused: true},
		{in: " db.example.com", refused: true},
		{in: "db.example.com ", refused: true},
		{in: "db example.com", refused: true},
		{in: "db\texample.com", refused: true},
		{in: "postgres://db.example.com", refused: true},
		{in: "tcp://10.0.0.1", refused: true},
		{in: "db.example.com/mydb", refused: true},
		{in: "/var/run/postgresql", refused: true},
		{in: "db.example.com:5432", refused: true},
		{in: "10.0.0.1:5432", refused: true},
		{in: "[::1]", refused: true},
		{in: "[::1]:5432", refused: true},
		{in: "user@db.example.com", refused: true},
		{in: "user:pw@db.example.com", refused: true},
		{in: "db.example.com?sslmode=disable", refused: true},
		{in: "-db.example.com", refused: true},
		{in: "db-.example.com", refused: true},
		{in: "db..example.com", refused: true},
		{in: ".", refused: true},
		{in: ".db.example.com", refused: true},
		{in: strings.Repeat("a", 64) + ".example.com", refused: true},
		{in: strings.Repeat(label63+".", 3) + strings.Repeat("a", 62), refused: true}, // 254 chars
		{in: "dé.example.com", refused: true},
		// netip.ParseAddr accepts an IPv6 zone of any characters: a path,
		// spaces and credentials hide behind '%'.
		{in: "fe80::1%eth0/mydb", refused: true},
		{in: "fe80::1% db", refused: true},
		{in: "fe80::1%user:pw@db", refused: true},
		// RFC 1123 2.1: a host name never has the dotted-decimal form, so
		// an out-of-range IPv4 address is neither an IP nor a host name.
		{in: "256.1.1.1", refused: true},
		{in: "999.999.999.999", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := domain.ParseHost(tt.in)
			if tt.refused {
				if err == nil {
					t.Fatalf("ParseHost(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHost(%q): %v", tt.in, err)
			}
			wantEqual(t, "host", got, tt.in)
		})
	}
}

func TestValidationError(t *testing.T) {
	var v domain.ValidationError
	if v.OrNil() != nil {
		t.Fatalf("an empty ValidationError is not nil through OrNil")
	}
	v.Add("port", domain.ViolationMissing, "is required")
	v.Add("port", domain.ViolationInvalid, "second reason")
	v.Add("configName", domain.ViolationInvalid, "bad")
	other := &domain.ValidationError{}
	other.Add("port", domain.ViolationBadValue, "from other")
	other.Add("host", domain.ViolationInvalid, "bad host")
	v.Merge(other)
	v.Merge(nil)

	if got, want := v.Paths(), []string{"configName", "host", "port"}; !slices.Equal(got, want) {
		t.Errorf("Paths() = %v, want %v", got, want)
	}
	if got := v.Fields["port"]; got.Kind != domain.ViolationMissing || got.Reason != "is required" {
		t.Errorf("port = %+v, want the first violation recorded", got)
	}
	err := v.OrNil()
	if err == nil {
		t.Fatal("OrNil() = nil with violations")
	}
	if want := "invalid input: configName: bad; host: bad host; port: is required"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

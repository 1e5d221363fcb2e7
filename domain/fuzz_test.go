package domain_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/connreg/registry/domain"
)

// FuzzParseSpec validates arbitrary create inputs. Properties: it never
// panics; a refusal is a *domain.ValidationError whose every path has a
// reason and which does not depend on the password's content; an accepted spec holds only
// text the read model and a terminal take as it is (valid UTF-8, no control
// or bidi characters in names, storable metadata), and it round-trips:
// parsing the accepted spec again gives the same spec and fingerprint.
func FuzzParseSpec(f *testing.F) {
	f.Add("my-product", "production-db", "POSTGRESQL", "db.example.com", 5432, "mydatabase", "dbuser", "pw-secret-1", "public", "team", "data")
	f.Add("p", "abc", "mysql", "10.0.0.1", 3306, " base ", "\tuser\n", "é", "", "", "")
	f.Add("p", "a\x00c", "MONGODB", "db\u202e.example.com", 1, "d\x1b[2J", "u\r\nx", "pw", "s\u2066", "$where", "v")
	f.Add("p", "abc", "ORACLE", "::1", 65535, "d", "u", "\xff\xfe", "s", "a.b", "\x00")
	f.Add("p", "abc", "SQL_SERVER", "h", 70000, "d", "u", "p", "s", "k\xff", "v\xff")
	f.Fuzz(func(t *testing.T, product, name, engine, host string, port int, db, user, password, schema, mdKey, mdValue string) {
		in := domain.SpecInput{ProductName: product, ConfigName: name, Type: engine, Host: host, Port: port,
			DatabaseName: db, UserName: user, Password: []byte(password), Schema: &schema}
		if mdKey != "" || mdValue != "" {
			in.Metadata = map[string]string{mdKey: mdValue}
		}
		spec, secrets, err := domain.ParseSpec(in)
		if err != nil {
			var v *domain.ValidationError
			if !errors.As(err, &v) || len(v.Fields) == 0 {
				t.Fatalf("refusal is not a ValidationError with fields: %v", err)
			}
			for p, viol := range v.Fields {
				if viol.Reason == "" || viol.Kind == 0 || !utf8.ValidString(p) {
					t.Fatalf("violation %q = %+v", p, viol)
				}
			}
			// The refusal depends on the password's length alone: with
			// another password of as many characters it reads the same, so
			// it cannot carry the password.
			other := in
			other.Password = []byte(strings.Repeat("x", utf8.RuneCountInString(password)))
			if _, _, err2 := domain.ParseSpec(other); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("the refusal depends on the password's content:\n%v\n%v", err, err2)
			}
			return
		}
		if string(secrets.Password) != password {
			t.Fatalf("the password was altered")
		}
		for _, s := range []string{spec.ProductName, spec.ConfigName, spec.Host, spec.DatabaseName, spec.UserName, spec.Schema} {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool {
				return r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
			}) {
				t.Fatalf("accepted unsafe text %q", s)
			}
		}
		for k, v := range spec.Metadata {
			if domain.ParseMetadataKey(k) != nil || domain.ParseMetadataValue(v) != nil {
				t.Fatalf("accepted unstorable metadata %q: %q", k, v)
			}
		}
		again, _, err := domain.ParseSpec(domain.SpecInput{ProductName: spec.ProductName, ConfigName: spec.ConfigName,
			Type: string(spec.Engine), Host: spec.Host, Port: spec.Port, DatabaseName: spec.DatabaseName, UserName: spec.UserName,
			Password: []byte(password), Schema: &spec.Schema, Metadata: spec.Metadata})
		if err != nil || again.Fingerprint() != spec.Fingerprint() {
			t.Fatalf("an accepted spec does not round-trip: %v\n%+v\n%+v", err, spec, again)
		}
	})
}

package dbprobe

import (
	"context"
	"testing"
	"time"

	"github.com/connreg/registry/internal/dbprobe/dbtest"
)

type liveCase struct {
	name   string
	edit   func(*Target)
	reason Reason // empty: success expected
}

func runLive(t *testing.T, tt *Tester, base Target, cases []liveCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := base
			if base.SSL != nil {
				ssl := *base.SSL
				tg.SSL = &ssl
			}
			if c.edit != nil {
				c.edit(&tg)
			}
			res, err := tt.Test(context.Background(), tg)
			if err != nil {
				t.Fatalf("Test returned error: %v", err)
			}
			want := StatusSuccess
			if c.reason != "" {
				want = StatusFailure
			}
			if res.Status != want || res.Reason != c.reason {
				t.Fatalf("got %s/%s (%s), want %s/%s", res.Status, res.Reason, res.Message, want, c.reason)
			}
			if res.Message == "" || res.Latency <= 0 {
				t.Fatalf("empty message or latency: %+v", res)
			}
			assertNoSecret(t, res.Message, base.Password, tg.Password)
			if tg.SSL != nil {
				assertNoSecret(t, res.Message, tg.SSL.Key)
			}
			t.Logf("%s in %s: %s", res.Status, res.Latency.Round(time.Millisecond), res.Message)
		})
	}
}

func withSSL(mode, ca string) func(*Target) {
	return func(t *Target) { t.SSL = &SSL{Mode: mode, CA: ca} }
}

func then(fs ...func(*Target)) func(*Target) {
	return func(t *Target) {
		for _, f := range fs {
			f(t)
		}
	}
}

func host(h string) func(*Target) { return func(t *Target) { t.Host = h } }

func TestPostgresLive(t *testing.T) {
	s := postgresServer(t)
	ca, other := live.ca.PEM, live.otherCA.PEM
	client, err := live.ca.Client(s.CertUser)
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, err := live.otherCA.Client(s.CertUser)
	if err != nil {
		t.Fatal(err)
	}
	certUser := func(l dbtest.Leaf) func(*Target) {
		return func(t *Target) {
			t.User, t.Password, t.Schema = s.CertUser, nil, ""
			t.SSL = &SSL{Mode: "verify-full", CA: ca, Cert: string(l.CertPEM), Key: l.KeyPEM}
		}
	}
	base := Target{Engine: PostgreSQL, Host: s.Host, Port: s.Port, Database: s.Database, User: s.User,
		Password: []byte(s.Password), Schema: s.Schema}
	runLive(t, devTester(t, 5*time.Second), base, []liveCase{
		{name: "success with schema", reason: ""},
		{name: "success without schema", edit: func(t *Target) { t.Schema = "" }},
		{name: "wrong password", edit: func(t *Target) { t.Password = []byte(s.Password + "x") }, reason: ReasonAuthFailed},
		{name: "unknown user", edit: func(t *Target) { t.User = "nobody" }, reason: ReasonAuthFailed},
		{name: "unknown database", edit: func(t *Target) { t.Database = "nodb" }, reason: ReasonDatabaseNotFound},
		{name: "missing schema", edit: func(t *Target) { t.Schema = "nope" }, reason: ReasonSchemaNotFound},
		{name: "closed port", edit: func(tg *Target) { tg.Port = closedPort(t) }, reason: ReasonConnectionRefused},
		{name: "unknown host", edit: host("nowhere.test"), reason: ReasonHostUnreachable},
		{name: "verify-full right CA by IP", edit: withSSL("verify-full", ca)},
		{name: "verify-full right CA by name", edit: then(withSSL("verify-full", ca), host("db.test"))},
		{name: "verify-full name not in certificate", edit: then(withSSL("verify-full", ca), host("other.test")), reason: ReasonTLSFailed},
		{name: "verify-full wrong CA", edit: withSSL("verify-full", other), reason: ReasonTLSFailed},
		{name: "verify-ca right CA ignores name", edit: then(withSSL("verify-ca", ca), host("other.test"))},
		{name: "verify-ca wrong CA", edit: withSSL("verify-ca", other), reason: ReasonTLSFailed},
		{name: "require without CA", edit: withSSL("require", "")},
		{name: "require with wrong CA verifies like libpq", edit: withSSL("require", other), reason: ReasonTLSFailed},
		{name: "prefer", edit: withSSL("prefer", "")},
		{name: "allow", edit: withSSL("allow", "")},
		{name: "disable", edit: withSSL("disable", "")},
		{name: "CA not PEM", edit: withSSL("verify-full", "not a certificate"), reason: ReasonTLSFailed},
		{name: "client certificate", edit: certUser(client)},
		{name: "client certificate from unknown CA", edit: certUser(strangerCert), reason: ReasonTLSFailed},
		{name: "cert user without certificate", edit: then(certUser(client), func(t *Target) { t.SSL.Cert, t.SSL.Key = "", nil }), reason: ReasonTLSFailed},
	})
}

func TestPostgresTimeout(t *testing.T) {
	port := silentServer(t)
	res, err := devTester(t, 300*time.Millisecond).Test(context.Background(),
		Target{Engine: PostgreSQL, Host: "127.0.0.1", Port: port, User: "u", Password: []byte("secret-pw")})
	if err != nil || res.Reason != ReasonTimeout {
		t.Fatalf("got %+v, %v; want TIMEOUT", res, err)
	}
}

func TestMySQLLive(t *testing.T) {
	s := mariaDBServer(t)
	ca, other := live.ca.PEM, live.otherCA.PEM
	base := Target{Engine: MySQL, Host: s.Host, Port: s.Port, Database: s.Database, User: s.User,
		Password: []byte(s.Password), Schema: "ignored"}
	runLive(t, devTester(t, 5*time.Second), base, []liveCase{
		{name: "success"},
		{name: "wrong password", edit: func(t *Target) { t.Password = []byte(s.Password + "x") }, reason: ReasonAuthFailed},
		{name: "unknown database", edit: func(t *Target) { t.Database = "nodb" }, reason: ReasonDatabaseNotFound},
		{name: "closed port", edit: func(tg *Target) { tg.Port = closedPort(t) }, reason: ReasonConnectionRefused},
		{name: "true right CA", edit: withSSL("true", ca)},
		{name: "true right CA by name", edit: then(withSSL("true", ca), host("db.test"))},
		{name: "true name not in certificate", edit: then(withSSL("true", ca), host("other.test")), reason: ReasonTLSFailed},
		{name: "true wrong CA", edit: withSSL("true", other), reason: ReasonTLSFailed},
		{name: "skip-verify", edit: withSSL("skip-verify", other)},
		{name: "preferred", edit: withSSL("preferred", "")},
		{name: "false", edit: withSSL("false", "")},
	})
}

func TestMySQLTimeout(t *testing.T) {
	port := silentServer(t)
	res, err := devTester(t, 300*time.Millisecond).Test(context.Background(),
		Target{Engine: MySQL, Host: "127.0.0.1", Port: port, User: "u", Password: []byte("secret-pw")})
	if err != nil || res.Reason != ReasonTimeout {
		t.Fatalf("got %+v, %v; want TIMEOUT", res, err)
	}
}

func TestMongoDBLive(t *testing.T) {
	f := ferretServer(t)
	ca, other := live.ca.PEM, live.otherCA.PEM
	base := Target{Engine: MongoDB, Host: f.Host, Port: f.Port, Database: "appdb"}
	tlsPort := func(t *Target) { t.Port = f.TLSPort }
	runLive(t, devTester(t, 5*time.Second), base, []liveCase{
		{name: "success without credentials"},
		{name: "closed port", edit: func(tg *Target) { tg.Port = closedPort(t) }, reason: ReasonConnectionRefused},
		{name: "unknown host", edit: host("nowhere.test"), reason: ReasonHostUnreachable},
		{name: "true right CA", edit: then(tlsPort, withSSL("true", ca))},
		{name: "enable right CA by name", edit: then(tlsPort, withSSL("enable", ca), host("db.test"))},
		{name: "true wrong CA", edit: then(tlsPort, withSSL("true", other)), reason: ReasonTLSFailed},
		{name: "insecure", edit: then(tlsPort, withSSL("insecure", other))},
	})
}

// FerretDB v1 with the SQLite backend does not enforce authentication: a SCRAM login with any user and
// password is rejected because no such user exists in its (empty) user store. This pins what it does, so a
// change shows up; real MongoDB answers a bad password with the same code 18.
func TestMongoDBCredentialsAgainstFerretDB(t *testing.T) {
	f := ferretServer(t)
	pw := []byte("mongo-secret-pw")
	res, err := devTester(t, 5*time.Second).Test(context.Background(),
		Target{Engine: MongoDB, Host: f.Host, Port: f.Port, Database: "appdb", User: "app", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FerretDB with credentials: %+v", res)
	assertNoSecret(t, res.Message, pw)
	if res.Status == StatusFailure && res.Reason != ReasonAuthFailed {
		t.Fatalf("a credential failure must be AUTH_FAILED, got %+v", res)
	}
}

func TestMongoDBTimeout(t *testing.T) {
	port := silentServer(t)
	res, err := devTester(t, 500*time.Millisecond).Test(context.Background(),
		Target{Engine: MongoDB, Host: "127.0.0.1", Port: port})
	if err != nil || res.Reason != ReasonTimeout {
		t.Fatalf("got %+v, %v; want TIMEOUT", res, err)
	}
}

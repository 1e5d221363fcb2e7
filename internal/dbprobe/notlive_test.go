package dbprobe

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/connreg/registry/internal/dbprobe/dbtest"
	"github.com/microsoft/go-mssqldb/msdsn"
)

// SQL Server and Oracle cannot run on this machine: these tests check how their drivers are configured
// and how they fail against loopback stand-ins (closed port, silent server, TLS server with another CA).

func TestSQLServerConfig(t *testing.T) {
	ca, _ := dbtest.NewCA("ca")
	pw := "Sq1'pw@%/x"
	base := Target{Engine: SQLServer, Host: "db.test", Port: 1433, Database: "appdb", User: "sa", Password: []byte(pw)}
	cases := []struct {
		mode  string
		enc   msdsn.Encryption
		tls   bool
		trust bool
	}{
		{"", msdsn.EncryptionDisabled, false, false},
		{"disable", msdsn.EncryptionDisabled, false, false},
		{"false", msdsn.EncryptionOff, true, true},
		{"true", msdsn.EncryptionRequired, true, false},
		{"strict", msdsn.EncryptionStrict, true, false},
	}
	for _, c := range cases {
		tg := base
		tg.SSL = &SSL{Mode: c.mode}
		cfg, err := sqlServerConfig(tg, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Encryption != c.enc || (cfg.TLSConfig != nil) != c.tls || cfg.TrustServerCertificate != c.trust {
			t.Errorf("mode %q: encryption=%v tls=%v trust=%v", c.mode, cfg.Encryption, cfg.TLSConfig != nil, cfg.TrustServerCertificate)
		}
		if c.tls && !c.trust && (cfg.TLSConfig.InsecureSkipVerify || cfg.TLSConfig.ServerName != "db.test") {
			t.Errorf("mode %q must verify the certificate for db.test", c.mode)
		}
		if cfg.Password != pw || cfg.Host != "db.test" || cfg.Database != "appdb" || cfg.User != "sa" {
			t.Errorf("mode %q: fields not mapped: host=%s db=%s user=%s", c.mode, cfg.Host, cfg.Database, cfg.User)
		}
	}
	tg := base
	tg.SSL = &SSL{Mode: "true", CA: ca.PEM}
	if cfg, _ := sqlServerConfig(tg, time.Second); cfg.TLSConfig.RootCAs == nil {
		t.Error("the CA must become the root pool")
	}
	tg.SSL = &SSL{Mode: "false", CA: ca.PEM}
	if cfg, _ := sqlServerConfig(tg, time.Second); cfg.TrustServerCertificate || cfg.TLSConfig.InsecureSkipVerify {
		t.Error("encrypt=false with a CA must verify the login handshake")
	}
	u := sqlServerURL(base, time.Second)
	if strings.Contains(u, "Sq1") || strings.Contains(u, "pw") {
		t.Fatalf("URL carries the password: %s", u)
	}
}

func TestOracleConfig(t *testing.T) {
	pw := "Ora'pw@%/x"
	base := Target{Engine: Oracle, Host: "db.test", Port: 1521, Database: "ORCLPDB1", User: "scott", Password: []byte(pw)}
	for _, c := range []struct {
		mode        string
		ssl, verify bool
	}{{"", false, false}, {"disable", false, false}, {"false", false, false}, {"true", true, true},
		{"enable", true, true}, {"verify", true, true}, {"skip-verify", true, false}} {
		tg := base
		tg.SSL = &SSL{Mode: c.mode}
		cfg, err := oracleConfig(tg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.SSL != c.ssl || (cfg.TLSConfig != nil) != c.ssl {
			t.Errorf("mode %q: ssl=%v tls=%v", c.mode, cfg.SSL, cfg.TLSConfig != nil)
		}
		if c.ssl && (cfg.TLSConfig.InsecureSkipVerify == c.verify || cfg.SSLVerify != c.verify) {
			t.Errorf("mode %q: verify=%v", c.mode, !cfg.TLSConfig.InsecureSkipVerify)
		}
		if cfg.Password != pw || cfg.UserID != "scott" || cfg.ServiceName != "ORCLPDB1" {
			t.Errorf("mode %q: fields not mapped: user=%s service=%s", c.mode, cfg.UserID, cfg.ServiceName)
		}
		if u := oracleURL(tg, c.ssl); strings.Contains(u, "Ora") {
			t.Fatalf("URL carries the password: %s", u)
		}
	}
}

// tlsServer completes TLS handshakes with a certificate from ca and then says nothing.
func tlsServer(t *testing.T, ca *dbtest.CA) int {
	t.Helper()
	leaf, err := ca.Server("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"tds/8.0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				_ = c.(*tls.Conn).Handshake()
				time.Sleep(time.Second)
				_ = c.Close()
			}(c)
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func TestSQLServerAndOracleFailures(t *testing.T) {
	serverCA, _ := dbtest.NewCA("server CA")
	otherCA, _ := dbtest.NewCA("other CA")
	silent, closed, tlsPort := silentServer(t), closedPort(t), tlsServer(t, serverCA)
	tt := devTester(t, 500*time.Millisecond)
	pw := []byte("never-in-messages")
	for _, c := range []struct {
		engine Engine
		port   int
		ssl    *SSL
		want   Reason
	}{
		{SQLServer, closed, nil, ReasonConnectionRefused},
		{SQLServer, silent, nil, ReasonTimeout},
		{SQLServer, tlsPort, &SSL{Mode: "strict", CA: otherCA.PEM}, ReasonTLSFailed},
		{Oracle, closed, nil, ReasonConnectionRefused},
		{Oracle, silent, nil, ReasonTimeout},
		{Oracle, tlsPort, &SSL{Mode: "true", CA: otherCA.PEM}, ReasonTLSFailed},
	} {
		res, err := tt.Test(context.Background(), Target{Engine: c.engine, Host: "127.0.0.1", Port: c.port,
			Database: "svc", User: "u", Password: pw, SSL: c.ssl})
		if err != nil || res.Reason != c.want {
			t.Errorf("%s port %d: got %+v %v, want %s", c.engine, c.port, res, err, c.want)
		}
		assertNoSecret(t, res.Message, pw)
		// Discovery dials the same way and fails for the same reason; its catalog queries cannot run here.
		res, schema, err := tt.Discover(context.Background(), Target{Engine: c.engine, Host: "127.0.0.1", Port: c.port,
			Database: "svc", User: "u", Password: pw, SSL: c.ssl})
		if err != nil || res.Reason != c.want || len(schema.Tables) != 0 {
			t.Errorf("discovery, %s port %d: got %+v %v, want %s", c.engine, c.port, res, err, c.want)
		}
		assertNoSecret(t, res.Message, pw)
	}
}

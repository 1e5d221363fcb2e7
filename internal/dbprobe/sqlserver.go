package dbprobe

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/msdsn"
)

// sqlServerConfig builds the go-mssqldb configuration. The URL it parses has no password; the password
// and TLS configuration are set on the struct. Modes: disable (no TLS at all), false (only the login
// packet is encrypted, as the driver does; the certificate is checked only when a CA is given),
// true (TLS for the whole session, certificate and host name verified), strict (TDS 8: TLS before
// any TDS byte, verified).
func sqlServerConfig(t Target, timeout time.Duration) (msdsn.Config, error) {
	cfg, err := msdsn.Parse(sqlServerURL(t, timeout))
	if err != nil {
		return cfg, err
	}
	cfg.Password = string(t.Password)
	cfg.ConnTimeout = timeout // go-mssqldb reads the prelogin without watching the context
	cfg.TLSConfig = nil
	cfg.TrustServerCertificate = false

	mode := sslMode(t.SSL)
	if mode == "" || mode == "disable" {
		cfg.Encryption = msdsn.EncryptionDisabled
		return cfg, nil
	}
	m, err := parseTLSMaterial(t.SSL)
	if err != nil {
		return cfg, err
	}
	var tc = m.config(t.Host, verifyFull)
	switch mode {
	case "false":
		cfg.Encryption = msdsn.EncryptionOff
		if m.roots == nil {
			tc = m.config(t.Host, verifyNone)
			cfg.TrustServerCertificate = true
		}
	case "true":
		cfg.Encryption = msdsn.EncryptionRequired
	case "strict":
		cfg.Encryption = msdsn.EncryptionStrict
	}
	tc.DynamicRecordSizingDisabled = true // SQL Server expects one TDS packet per TLS record
	cfg.TLSConfig = tc
	cfg.HostInCertificateProvided = true // keep ServerName = the host, not a routed name
	return cfg, nil
}

// sqlServerURL is the secret-free URL the configuration starts from.
func sqlServerURL(t Target, timeout time.Duration) string {
	q := url.Values{}
	q.Set("database", t.Database)
	q.Set("encrypt", "disable")
	q.Set("app name", "connreg-conntest")
	q.Set("dial timeout", strconv.Itoa(int(timeout.Seconds())))
	u := url.URL{Scheme: "sqlserver", User: url.User(t.User), Host: net.JoinHostPort(t.Host, strconv.Itoa(t.Port)), RawQuery: q.Encode()}
	return u.String()
}

func testSQLServer(ctx context.Context, t Target, d *guardedDialer, timeout time.Duration) error {
	cfg, err := sqlServerConfig(t, timeout)
	if err != nil {
		return err
	}
	c := mssql.NewConnectorConfig(cfg)
	c.Dialer = d // a HostDialer: the driver does not resolve the name itself
	return pingSQL(ctx, c, "SELECT 1", "SELECT 1 FROM sys.schemas WHERE name = @p1", t.Schema)
}

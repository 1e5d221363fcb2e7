package dbprobe

import (
	"context"
	"database/sql/driver"
	"net"
	"net/url"
	"strconv"
	"time"

	go_ora "github.com/sijms/go-ora/v2"
	"github.com/sijms/go-ora/v2/configurations"
)

// oraclePlaceholder stands in for the password in the URL go-ora insists on parsing: with no password
// it would switch to OS authentication. The real password is set on the parsed struct, so the URL never
// holds a secret.
const oraclePlaceholder = "placeholder"

// oracleConfig builds the go-ora configuration; Database is the service name. Modes: disable/false
// (plain TCP), true/enable/verify (TCPS, certificate and host name verified), skip-verify (TCPS without
// verification). The Tester's timeout bounds the attempt through the context.
func oracleConfig(t Target, d *guardedDialer) (*configurations.ConnectionConfig, error) {
	mode := sslMode(t.SSL)
	ssl := mode != "" && mode != "disable" && mode != "false"
	cfg, err := go_ora.ParseConfig(oracleURL(t, ssl))
	if err != nil {
		return nil, err
	}
	cfg.Password = string(t.Password)
	cfg.Dialer = d
	cfg.TLSConfig = nil
	if !ssl {
		return cfg, nil
	}
	m, err := parseTLSMaterial(t.SSL)
	if err != nil {
		return nil, err
	}
	if mode == "skip-verify" {
		cfg.SSLVerify = false
		cfg.TLSConfig = m.config(t.Host, verifyNone)
	} else {
		cfg.SSLVerify = true
		cfg.TLSConfig = m.config(t.Host, verifyFull)
	}
	return cfg, nil
}

// oracleURL is the secret-free URL the configuration starts from.
func oracleURL(t Target, ssl bool) string {
	q := url.Values{}
	q.Set("SSL", strconv.FormatBool(ssl))
	u := url.URL{Scheme: "oracle", User: url.UserPassword(t.User, oraclePlaceholder),
		Host: net.JoinHostPort(t.Host, strconv.Itoa(t.Port)), Path: "/" + t.Database, RawQuery: q.Encode()}
	return u.String()
}

// oracleConnector adapts one go-ora connection configuration to database/sql without go-ora's global
// RegisterConnConfig.
type oracleConnector struct {
	cfg *configurations.ConnectionConfig
}

func (c oracleConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := go_ora.NewConnection("", c.cfg)
	if err != nil {
		return nil, err
	}
	if err := conn.OpenWithContext(ctx); err != nil {
		return nil, err
	}
	return conn, nil
}

func (c oracleConnector) Driver() driver.Driver { return go_ora.NewDriver() }

func testOracle(ctx context.Context, t Target, d *guardedDialer, _ time.Duration) error {
	cfg, err := oracleConfig(t, d)
	if err != nil {
		return err
	}
	return pingSQL(ctx, oracleConnector{cfg}, "SELECT 1 FROM DUAL", "", "")
}

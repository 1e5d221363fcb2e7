package dbprobe

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mysqlConfig builds the driver configuration as a struct (no DSN string, so nothing with the password
// is ever formatted) with the TLS configuration set directly instead of a globally registered name.
func mysqlConfig(t Target, d *guardedDialer, timeout time.Duration) (*mysql.Config, error) {
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	cfg.User = t.User
	cfg.Passwd = string(t.Password)
	cfg.DBName = t.Database
	cfg.DialFunc = d.DialContext
	cfg.Timeout = timeout
	cfg.ReadTimeout = timeout
	cfg.WriteTimeout = timeout
	cfg.Logger = quietLogger{} // the driver's default logger writes to stderr from inside the API
	cfg.AllowCleartextPasswords = false
	cfg.AllowAllFiles = false

	mode := sslMode(t.SSL)
	if mode == "" || mode == "false" {
		return cfg, nil
	}
	m, err := parseTLSMaterial(t.SSL)
	if err != nil {
		return nil, err
	}
	switch mode {
	case "true":
		cfg.TLS = m.config(t.Host, verifyFull)
	case "skip-verify":
		cfg.TLS = m.config(t.Host, verifyNone)
	case "preferred":
		cfg.TLS = m.config(t.Host, verifyNone)
		cfg.AllowFallbackToPlaintext = true
	}
	return cfg, nil
}

func testMySQL(ctx context.Context, t Target, d *guardedDialer, timeout time.Duration) error {
	return withMySQL(ctx, t, d, timeout, nil)
}

// withMySQL connects, runs a trivial query and then use (when not nil) on the same connection.
func withMySQL(ctx context.Context, t Target, d *guardedDialer, timeout time.Duration, use func(*sql.Conn) error) error {
	cfg, err := mysqlConfig(t, d, timeout)
	if err != nil {
		return err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	start := time.Now()
	err = withSQL(ctx, connector, "SELECT 1", "", "", use)
	if errors.Is(err, mysql.ErrInvalidConn) && time.Since(start) >= timeout-10*time.Millisecond {
		// The driver reports its own read deadline as "invalid connection" and logs the i/o timeout.
		return fmt.Errorf("%w: no answer within %s", context.DeadlineExceeded, timeout)
	}
	return err
}

// quietLogger drops the mysql driver's log lines; the error it returns is classified instead.
type quietLogger struct{}

func (quietLogger) Print(...any) {}

// pingSQL opens one connection through database/sql and runs query on it, so the handshake, the login
// and a round trip are all exercised. When schemaQuery is not empty it is then run with schema as its
// only argument and must return a row, else the schema is reported missing.
func pingSQL(ctx context.Context, c driver.Connector, query, schemaQuery, schema string) error {
	return withSQL(ctx, c, query, schemaQuery, schema, nil)
}

// withSQL is pingSQL followed by use (when not nil) on the same connection.
func withSQL(ctx context.Context, c driver.Connector, query, schemaQuery, schema string, use func(*sql.Conn) error) error {
	db := sql.OpenDB(c)
	defer func() { _ = db.Close() }()
	db.SetMaxIdleConns(0)
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	var one int
	if err := conn.QueryRowContext(ctx, query).Scan(&one); err != nil {
		return err
	}
	if schemaQuery != "" && schema != "" {
		err = conn.QueryRowContext(ctx, schemaQuery, schema).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return &schemaNotFoundError{schema: schema}
		}
		if err != nil {
			return err
		}
	}
	if use == nil {
		return nil
	}
	return use(conn)
}

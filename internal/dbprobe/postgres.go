package dbprobe

import (
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgQuote quotes a keyword/value connection string value.
func pgQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// postgresConfig builds the pgconn configuration. The connection string it parses carries no secret:
// the password and the TLS configuration (with the client key) are set on the struct afterwards. Every
// setting that could otherwise come from PG* environment variables or a passfile is fixed here.
func postgresConfig(t Target, d *guardedDialer) (*pgconn.Config, error) {
	cs := strings.Join([]string{
		"host=" + pgQuote(t.Host),
		"port=" + strconv.Itoa(t.Port),
		"user=" + pgQuote(t.User),
		"dbname=" + pgQuote(t.Database),
		"sslmode=disable", "sslcert=''", "sslkey=''", "sslrootcert=''", "sslpassword=''",
		"target_session_attrs=any", "connect_timeout=0",
		"application_name='connreg-conntest'",
	}, " ")
	cfg, err := pgconn.ParseConfig(cs)
	if err != nil {
		return nil, err
	}
	cfg.Password = string(t.Password)
	cfg.DialFunc = d.DialContext
	cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) {
		addrs, err := d.addrs(ctx, host)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(addrs))
		for i, a := range addrs {
			out[i] = a.String()
		}
		return out, nil
	}
	cfg.Fallbacks = nil
	cfg.TLSConfig = nil
	cfg.ValidateConnect = nil
	if t.Schema != "" {
		cfg.RuntimeParams["search_path"] = pgx.Identifier{t.Schema}.Sanitize()
	}

	mode := sslMode(t.SSL)
	if mode == "" || mode == "disable" {
		return cfg, nil
	}
	m, err := parseTLSMaterial(t.SSL)
	if err != nil {
		return nil, err
	}
	fb := func(tc *pgconn.FallbackConfig) { cfg.Fallbacks = append(cfg.Fallbacks, tc) }
	switch mode {
	case "allow": // plaintext first, TLS if the server insists (libpq semantics)
		fb(&pgconn.FallbackConfig{Host: t.Host, Port: uint16(t.Port), TLSConfig: m.config(t.Host, verifyNone)})
	case "prefer": // TLS first without verification, plaintext if the server has no TLS
		cfg.TLSConfig = m.config(t.Host, verifyNone)
		fb(&pgconn.FallbackConfig{Host: t.Host, Port: uint16(t.Port)})
	case "require": // like libpq: a CA turns require into verify-ca
		if m.roots != nil {
			cfg.TLSConfig = m.config(t.Host, verifyChain)
		} else {
			cfg.TLSConfig = m.config(t.Host, verifyNone)
		}
	case "verify-ca":
		cfg.TLSConfig = m.config(t.Host, verifyChain)
	case "verify-full":
		cfg.TLSConfig = m.config(t.Host, verifyFull)
	}
	return cfg, nil
}

func testPostgres(ctx context.Context, t Target, d *guardedDialer) error {
	return withPostgres(ctx, t, d, func(*pgconn.PgConn) error { return nil })
}

// withPostgres connects, checks the session with a trivial query and the schema's existence, runs use on
// the connection and says goodbye.
func withPostgres(ctx context.Context, t Target, d *guardedDialer, use func(*pgconn.PgConn) error) error {
	cfg, err := postgresConfig(t, d)
	if err != nil {
		return err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := closeCtx()
		defer cancel()
		_ = conn.Close(c)
	}()
	if _, err := conn.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		return err
	}
	if t.Schema == "" {
		return use(conn)
	}
	rr := conn.ExecParams(ctx, "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
		[][]byte{[]byte(t.Schema)}, nil, nil, nil).Read()
	if rr.Err != nil {
		return rr.Err
	}
	if len(rr.Rows) == 0 {
		return &schemaNotFoundError{schema: t.Schema}
	}
	return use(conn)
}

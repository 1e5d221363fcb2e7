package dbtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// PostgresBin is where Debian's postgresql-15 package installs the server binaries.
const PostgresBin = "/usr/lib/postgresql/15/bin"

// StartPostgres initialises a cluster in a temporary directory and starts it on 127.0.0.1 with TLS
// (server certificate for "localhost", "db.test" and 127.0.0.1 signed by ca, client certificates checked
// against ca). It creates user "app" with a random password owning database "appdb" with schema
// "ledger", and user "certuser" that may only log in with a client certificate over TLS.
func StartPostgres(ca *CA) (*Server, error) {
	if _, err := os.Stat(filepath.Join(PostgresBin, "postgres")); err != nil {
		return nil, fmt.Errorf("dbtest: PostgreSQL 15 is not installed (apt-get install postgresql-15): %w", err)
	}
	a, err := osAccount("postgres")
	if err != nil {
		return nil, err
	}
	dir, data, err := a.dataDirs("ctpg")
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", User: "app", Password: Password(), Database: "appdb", Schema: "ledger",
		CertUser: "certuser", CA: ca, dir: dir, log: filepath.Join(dir, "postgres.log")}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.run(ctx, dir, filepath.Join(PostgresBin, "initdb"), "-D", data, "-U", "postgres",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions", "-E", "UTF8", "--no-locale"); err != nil {
		return nil, err
	}
	leaf, err := ca.Server("localhost", "db.test", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	hba := "local all all trust\n" +
		"hostssl all certuser 127.0.0.1/32 cert\n" +
		"host all all 127.0.0.1/32 scram-sha-256\n"
	if err := writeFiles(a, map[string][]byte{
		filepath.Join(data, "server.crt"):  leaf.CertPEM,
		filepath.Join(data, "server.key"):  leaf.KeyPEM,
		filepath.Join(data, "ca.crt"):      []byte(ca.PEM),
		filepath.Join(data, "pg_hba.conf"): []byte(hba),
	}); err != nil {
		return nil, err
	}
	if s.Port, err = FreePort(); err != nil {
		return nil, err
	}
	if err := s.start(a, filepath.Join(PostgresBin, "postgres"), "-D", data, "-p", strconv.Itoa(s.Port),
		"-h", "127.0.0.1", "-k", dir,
		"-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key", "-c", "ssl_ca_file=ca.crt",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=40", "-c", "logging_collector=off",
		"-c", "log_min_messages=warning"); err != nil {
		return nil, err
	}
	admin := func(ctx context.Context, db string) (*pgconn.PgConn, error) {
		cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", dir, s.Port, db))
		if err != nil {
			return nil, err
		}
		return pgconn.ConnectConfig(ctx, cfg)
	}
	if err := s.waitReady(30*time.Second, func(ctx context.Context) error {
		c, err := admin(ctx, "postgres")
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}); err != nil {
		return nil, err
	}
	if err := pgExec(ctx, admin, "postgres",
		fmt.Sprintf("CREATE ROLE app LOGIN PASSWORD '%s'", strings.ReplaceAll(s.Password, "'", "''")),
		"CREATE ROLE certuser LOGIN",
		"CREATE DATABASE appdb OWNER app"); err != nil {
		return nil, err
	}
	if err := pgExec(ctx, admin, "appdb", "CREATE SCHEMA ledger AUTHORIZATION app"); err != nil {
		return nil, err
	}
	s.exec = func(ctx context.Context, stmts ...string) error {
		return pgExec(ctx, func(ctx context.Context, db string) (*pgconn.PgConn, error) {
			cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=app dbname=%s sslmode=disable search_path=ledger", dir, s.Port, db))
			if err != nil {
				return nil, err
			}
			return pgconn.ConnectConfig(ctx, cfg)
		}, "appdb", stmts...)
	}
	ok = true
	return s, nil
}

func pgExec(ctx context.Context, connect func(context.Context, string) (*pgconn.PgConn, error), db string, stmts ...string) error {
	c, err := connect(ctx, db)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close(ctx) }()
	for _, q := range stmts {
		if _, err := c.Exec(ctx, q).ReadAll(); err != nil {
			return errors.Join(fmt.Errorf("dbtest: %s", strings.SplitN(q, " ", 3)[:2]), err)
		}
	}
	return nil
}

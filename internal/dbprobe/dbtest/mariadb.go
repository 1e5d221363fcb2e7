package dbtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// StartMariaDB initialises a MariaDB data directory and starts mariadbd on 127.0.0.1 with TLS (server
// certificate for "localhost", "db.test" and 127.0.0.1 signed by ca). It creates user "app" with a random
// password and database "appdb" on which app has all privileges.
func StartMariaDB(ca *CA) (*Server, error) {
	installDB, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		return nil, fmt.Errorf("dbtest: MariaDB is not installed (apt-get install mariadb-server): %w", err)
	}
	mariadbd := "/usr/sbin/mariadbd"
	if _, err := os.Stat(mariadbd); err != nil {
		return nil, fmt.Errorf("dbtest: MariaDB is not installed (apt-get install mariadb-server): %w", err)
	}
	a, err := osAccount("mysql")
	if err != nil {
		return nil, err
	}
	dir, data, err := a.dataDirs("ctmy")
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", User: "app", Password: Password(), Database: "appdb", CA: ca, dir: dir,
		log: filepath.Join(dir, "mariadb.log")}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// The install script runs as the caller; mariadbd drops to --user itself.
	root := account{uid: os.Getuid(), gid: os.Getgid()}
	args := []string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve"}
	if a.asRoot {
		args = append(args, "--user="+a.name)
	}
	if err := root.run(ctx, dir, installDB, args...); err != nil {
		return nil, err
	}
	leaf, err := ca.Server("localhost", "db.test", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	if err := writeFiles(a, map[string][]byte{
		filepath.Join(dir, "server.crt"): leaf.CertPEM,
		filepath.Join(dir, "server.key"): leaf.KeyPEM,
		filepath.Join(dir, "ca.crt"):     []byte(ca.PEM),
	}); err != nil {
		return nil, err
	}
	if s.Port, err = FreePort(); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "my.sock")
	dargs := []string{"--no-defaults", "--datadir=" + data, "--port=" + strconv.Itoa(s.Port),
		"--bind-address=127.0.0.1", "--socket=" + sock, "--pid-file=" + filepath.Join(dir, "my.pid"),
		"--ssl-ca=" + filepath.Join(dir, "ca.crt"), "--ssl-cert=" + filepath.Join(dir, "server.crt"),
		"--ssl-key=" + filepath.Join(dir, "server.key"),
		"--skip-name-resolve", "--skip-log-bin", "--performance-schema=OFF", "--innodb-buffer-pool-size=16M",
		"--innodb-flush-log-at-trx-commit=0", "--max-connections=40"}
	// Started directly as the mysql user (not with --user, whose setuid would clear the parent-death
	// signal that kills the server if the test binary dies). Without --log-error it logs to stderr.
	if err := s.start(a, mariadbd, dargs...); err != nil {
		return nil, err
	}

	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User = "unix", sock, "root"
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	defer func() { _ = db.Close() }()
	if err := s.waitReady(60*time.Second, db.PingContext); err != nil {
		return nil, err
	}
	for _, q := range []string{
		fmt.Sprintf("CREATE USER 'app'@'%%' IDENTIFIED BY '%s'", strings.ReplaceAll(s.Password, "'", "''")),
		"CREATE DATABASE appdb",
		"GRANT ALL PRIVILEGES ON appdb.* TO 'app'@'%'",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("dbtest: mariadb setup %q: %w", strings.SplitN(q, " ", 3)[:2], err)
		}
	}
	s.exec = func(ctx context.Context, stmts ...string) error {
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.User, cfg.DBName = "unix", sock, "root", "appdb"
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		db := sql.OpenDB(connector)
		defer func() { _ = db.Close() }()
		for _, q := range stmts {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("dbtest: %q: %w", q, err)
			}
		}
		return nil
	}
	ok = true
	return s, nil
}

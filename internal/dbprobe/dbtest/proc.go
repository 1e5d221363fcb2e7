package dbtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Server is one running database with the account the tests use.
type Server struct {
	Host     string // always 127.0.0.1
	Port     int
	User     string
	Password string
	Database string
	Schema   string // PostgreSQL only
	CertUser string // PostgreSQL only: a user that logs in with a client certificate and no password
	CA       *CA

	exec  func(ctx context.Context, stmts ...string) error
	dir   string
	cmd   *exec.Cmd
	done  chan struct{}
	stop  func()
	log   string
	errWt error
}

// Close stops the server and removes its files. It is safe to call on a nil Server.
func (s *Server) Close() {
	if s == nil {
		return
	}
	if s.stop != nil {
		s.stop()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// Exec runs statements in order in the test database (PostgreSQL: as the test user, in its schema),
// so that a test can shape what a discovery finds.
func (s *Server) Exec(ctx context.Context, stmts ...string) error {
	if s.exec == nil {
		return errors.New("dbtest: this server has no Exec")
	}
	return s.exec(ctx, stmts...)
}

// Log returns the server's log, for a failure message.
func (s *Server) Log() string {
	if s.log == "" {
		return ""
	}
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Password returns a random password with characters that need quoting in SQL and escaping in URLs, so the
// tests also show those forms are scrubbed.
func Password() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "p@ss%w'rd/" + hex.EncodeToString(b)
}

// account is the OS user a server runs as: PostgreSQL refuses to run as root.
type account struct {
	name     string
	uid, gid int
	asRoot   bool // the test runs as root and must switch user
}

func osAccount(name string) (account, error) {
	if os.Geteuid() != 0 {
		return account{uid: os.Getuid(), gid: os.Getgid()}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, fmt.Errorf("dbtest: running as root needs the %q OS user (created by its Debian package): %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{name: name, uid: uid, gid: gid, asRoot: true}, nil
}

func (a account) chown(paths ...string) error {
	if !a.asRoot {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, a.uid, a.gid); err != nil {
			return err
		}
	}
	return nil
}

func (a account) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if a.asRoot {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid)}
	}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/bin", "LANG=C", "LC_ALL=C", "HOME=/tmp", "TZ=UTC"}
	return cmd
}

// run runs a setup command and returns its output in the error.
func (a account) run(ctx context.Context, dir, name string, args ...string) error {
	cmd := a.command(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("dbtest: %s: %w\n%s", filepath.Base(name), err, out.String())
	}
	return nil
}

// tempDir makes a short directory (unix socket paths are limited to 107 bytes) that the server's OS
// user can enter.
func tempDir(prefix string) (string, error) {
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(d, 0o755); err != nil {
		return "", err
	}
	return d, nil
}

// dataDirs makes a server's directory and its data folder inside, owned by
// the account; it removes what it made when it fails.
func (a account) dataDirs(prefix string) (dir, data string, err error) {
	if dir, err = tempDir(prefix); err != nil {
		return "", "", err
	}
	data = filepath.Join(dir, "data")
	if err = os.Mkdir(data, 0o700); err == nil {
		err = a.chown(dir, data)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	return dir, data, nil
}

// start launches the server process with its output in a log file.
func (s *Server) start(a account, name string, args ...string) error {
	f, err := os.Create(s.log)
	if err != nil {
		return err
	}
	cmd := a.command(context.Background(), name, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return err
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() {
		s.errWt = cmd.Wait()
		_ = f.Close()
		close(s.done)
	}()
	return nil
}

// waitReady polls ready until it succeeds, the process exits, or the deadline passes.
func (s *Server) waitReady(deadline time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var last error
	for {
		select {
		case <-s.done:
			return fmt.Errorf("dbtest: server exited during startup (%v):\n%s", s.errWt, s.Log())
		default:
		}
		a, cancelA := context.WithTimeout(ctx, time.Second)
		last = ready(a)
		cancelA()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dbtest: server not ready after %s: %w\n%s", deadline, errors.Join(last, ctx.Err()), s.Log())
		case <-s.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func writeFiles(a account, files map[string][]byte) error {
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
		if err := a.chown(p); err != nil {
			return err
		}
	}
	return nil
}

// Package devstack runs embedded servers: an in-process nats-server with
// JetStream (the embedded default's event store) and an in-process FerretDB
// (SQLite backend) speaking the MongoDB wire protocol, keeping their state
// under one folder. The service starts NATS private (StartPrivateNATS):
// reachable by its own process only, since it asks for no credentials. The
// service's embedded read model is internal/sqlitestore; FerretDB stays for
// the tests of the MongoDB adapter (internal/mongostore) and of MONGO_URI
// setups (StartMongo; StartPrivateMongo, its unix-socket variant, is no
// longer used by the service). Tests also start NATS on loopback (StartNATS)
// as a stand-in for an external server.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS is an embedded nats-server with JetStream.
type NATS struct {
	srv     *server.Server
	lock    *os.File
	private bool
}

// lockDir takes an exclusive lock on dir for this process: two servers on
// one store directory corrupt it, and nats-server does not lock its own.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".connreg.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("devstack: lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("devstack: %s is in use by another process (an API or projector on the same DATA_DIR?): %w", dir, err)
	}
	return f, nil
}

// StartNATS starts nats-server on 127.0.0.1 (port 0: any free port) with
// JetStream storing under dir. It asks for no credentials: any local user
// reaches it. Tests use it as an external server.
func StartNATS(dir string, port int) (*NATS, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return startNATS(dir, port, false)
}

// StartPrivateNATS starts nats-server with JetStream storing under dir and
// no listener at all: only this process reaches it, through Connect
// (nats.go's in-process connection).
func StartPrivateNATS(dir string) (*NATS, error) { return startNATS(dir, 0, true) }

func startNATS(dir string, port int, private bool) (*NATS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: nats dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "connreg-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		DontListen: private,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("devstack: nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		lock.Close()
		return nil, errors.New("devstack: nats did not become ready in 10s")
	}
	return &NATS{srv: srv, lock: lock, private: private}, nil
}

// Connect opens a client connection to the server: in-process when it is
// private, over loopback otherwise.
func (n *NATS) Connect(opts ...nats.Option) (*nats.Conn, error) {
	if n.private {
		return nats.Connect("", append(opts, nats.InProcessServer(n.srv))...)
	}
	return nats.Connect(n.URL(), opts...)
}

// URL is the client URL of the server; "" for a private server.
func (n *NATS) URL() string {
	if n.private {
		return ""
	}
	return n.srv.ClientURL()
}

// Shutdown stops the server and waits for it.
func (n *NATS) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.lock.Close()
}

// Mongo is an embedded FerretDB with its SQLite backend.
type Mongo struct {
	fdb     *ferretdb.FerretDB
	cancel  context.CancelFunc
	done    chan struct{}
	sockDir string // the private socket's folder, removed at Shutdown
}

// StartMongo starts FerretDB on 127.0.0.1 (addr "127.0.0.1:0" for any free
// port) with its SQLite files under dir. It asks for no credentials: any
// local user reaches it. Tests use it as an external server.
func StartMongo(dir, addr string, logger *slog.Logger) (*Mongo, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	return startMongo(dir, ferretdb.ListenerConfig{TCP: addr}, "", logger)
}

// StartPrivateMongo starts FerretDB with its SQLite files under dir,
// listening only on a unix socket in a new folder of its own that only this
// user may enter (0700, under the system's temporary folder: a socket path
// is limited to about 100 bytes, which a deep DATA_DIR would exceed).
func StartPrivateMongo(dir string, logger *slog.Logger) (*Mongo, error) {
	sockDir, err := os.MkdirTemp("", "connreg-store-")
	if err != nil {
		return nil, fmt.Errorf("devstack: mongo socket dir: %w", err)
	}
	if err := os.Chmod(sockDir, 0o700); err != nil {
		os.RemoveAll(sockDir)
		return nil, err
	}
	m, err := startMongo(dir, ferretdb.ListenerConfig{Unix: filepath.Join(sockDir, "mongodb.sock")}, sockDir, logger)
	if err != nil {
		os.RemoveAll(sockDir)
	}
	return m, err
}

func startMongo(dir string, listener ferretdb.ListenerConfig, sockDir string, logger *slog.Logger) (*Mongo, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: mongo dir: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fdb, err := ferretdb.New(&ferretdb.Config{
		Listener:  listener,
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		return nil, fmt.Errorf("devstack: ferretdb: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mongo{fdb: fdb, cancel: cancel, done: make(chan struct{}), sockDir: sockDir}
	go func() {
		defer close(m.done)
		_ = fdb.Run(ctx)
	}()
	return m, nil
}

// URI is the MongoDB connection string of the server.
func (m *Mongo) URI() string { return m.fdb.MongoDBURI() }

// Shutdown stops the server and waits for it.
func (m *Mongo) Shutdown() {
	m.cancel()
	<-m.done
	if m.sockDir != "" {
		_ = os.RemoveAll(m.sockDir)
	}
}

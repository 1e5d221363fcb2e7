// Package devstack runs the embedded default: an in-process nats-server with
// JetStream and an in-process FerretDB (SQLite backend) speaking the MongoDB
// wire protocol, both on loopback and keeping their state under one folder,
// so that `go run ./cmd/api` needs no external server. Tests use it too.
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
)

// NATS is an embedded nats-server with JetStream.
type NATS struct {
	srv  *server.Server
	lock *os.File
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
// JetStream storing under dir.
func StartNATS(dir string, port int) (*NATS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: nats dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "connreg-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
		JetStreamLimits: server.JSLimitOpts{
			// Every create is an atomic batch; allow many at once.
			MaxBatchInflightPerStream: 1000,
			MaxBatchInflightTotal:     1000,
		},
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
	return &NATS{srv: srv, lock: lock}, nil
}

// URL is the client URL of the server.
func (n *NATS) URL() string { return n.srv.ClientURL() }

// Shutdown stops the server and waits for it.
func (n *NATS) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.lock.Close()
}

// Mongo is an embedded FerretDB with its SQLite backend.
type Mongo struct {
	fdb    *ferretdb.FerretDB
	cancel context.CancelFunc
	done   chan struct{}
}

// StartMongo starts FerretDB on 127.0.0.1 (addr "127.0.0.1:0" for any free
// port) with its SQLite files under dir.
func StartMongo(dir, addr string, logger *slog.Logger) (*Mongo, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: mongo dir: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	fdb, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		return nil, fmt.Errorf("devstack: ferretdb: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mongo{fdb: fdb, cancel: cancel, done: make(chan struct{})}
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
}

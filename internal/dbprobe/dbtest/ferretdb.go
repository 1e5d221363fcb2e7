package dbtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Ferret is an embedded FerretDB (SQLite backend) speaking the MongoDB wire protocol, with a plain TCP
// listener on Port and a TLS listener on TLSPort whose certificate ("localhost", "db.test", 127.0.0.1)
// is signed by CA.
type Ferret struct {
	Host    string
	Port    int
	TLSPort int
	CA      *CA

	dir    string
	cancel context.CancelFunc
	done   chan struct{}
}

// StartFerretDB runs FerretDB in this process until Close. A free port can
// be taken by another process between FreePort and FerretDB's listen (tests
// run in parallel packages): such a start is tried again on new ports.
func StartFerretDB(ca *CA) (*Ferret, error) {
	var err error
	for range 3 {
		var f *Ferret
		if f, err = startFerretDB(ca); err == nil || !strings.Contains(err.Error(), "address already in use") {
			return f, err
		}
	}
	return nil, err
}

func startFerretDB(ca *CA) (*Ferret, error) {
	dir, err := os.MkdirTemp("", "ctfe")
	if err != nil {
		return nil, err
	}
	f := &Ferret{Host: "127.0.0.1", CA: ca, dir: dir, done: make(chan struct{})}
	leaf, err := ca.Server("localhost", "db.test", "127.0.0.1")
	if err != nil {
		f.Close()
		return nil, err
	}
	crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := writeFiles(account{}, map[string][]byte{crt: leaf.CertPEM, key: leaf.KeyPEM}); err != nil {
		f.Close()
		return nil, err
	}
	if f.Port, err = FreePort(); err != nil {
		f.Close()
		return nil, err
	}
	if f.TLSPort, err = FreePort(); err != nil {
		f.Close()
		return nil, err
	}
	db, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			TCP:         "127.0.0.1:" + strconv.Itoa(f.Port),
			TLS:         "127.0.0.1:" + strconv.Itoa(f.TLSPort),
			TLSCertFile: crt,
			TLSKeyFile:  key,
		},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dbtest: ferretdb: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		_ = db.Run(ctx)
	}()
	_ = db.MongoDBURI() // blocks until the listeners are bound
	return f, nil
}

// Close stops FerretDB and removes its files.
func (f *Ferret) Close() {
	if f == nil {
		return
	}
	if f.cancel != nil {
		f.cancel()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
		}
	}
	_ = os.RemoveAll(f.dir)
}

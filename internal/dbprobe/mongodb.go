package dbprobe

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// mongoOptions builds the client options as a struct: no URI is formatted, so the password is never
// part of a string. The connection is direct (only the given host is tested, no replica set discovery).
// The authentication database follows MongoDB URI rules: the target database, else "admin".
func mongoOptions(t Target, d *guardedDialer, timeout time.Duration) (*options.ClientOptions, error) {
	o := options.Client().
		SetHosts([]string{net.JoinHostPort(t.Host, strconv.Itoa(t.Port))}).
		SetDirect(true).
		SetDialer(d).
		SetAppName("connreg-conntest").
		SetConnectTimeout(timeout).
		SetServerSelectionTimeout(timeout).
		SetMaxPoolSize(1).
		SetRetryReads(false).
		SetRetryWrites(false)
	if t.User != "" {
		src := t.Database
		if src == "" {
			src = "admin"
		}
		o.SetAuth(options.Credential{Username: t.User, Password: string(t.Password), PasswordSet: len(t.Password) > 0, AuthSource: src})
	}
	mode := sslMode(t.SSL)
	if mode == "" || mode == "disable" || mode == "false" {
		return o, nil
	}
	m, err := parseTLSMaterial(t.SSL)
	if err != nil {
		return nil, err
	}
	switch mode {
	case "true", "enable":
		o.SetTLSConfig(m.config(t.Host, verifyFull))
	case "insecure":
		o.SetTLSConfig(m.config(t.Host, verifyNone))
	}
	return o, nil
}

func testMongo(ctx context.Context, t Target, d *guardedDialer, timeout time.Duration) error {
	return withMongo(ctx, t, d, timeout, nil)
}

// withMongo connects, pings the database and then runs use (when not nil) with the client.
func withMongo(ctx context.Context, t Target, d *guardedDialer, timeout time.Duration, use func(context.Context, *mongo.Database) error) error {
	o, err := mongoOptions(t, d, timeout)
	if err != nil {
		return err
	}
	// The driver retries a failing server until server selection times out and then reports a flattened
	// error. The first failed heartbeat (refused, TLS, timeout) carries the typed cause: keep it and stop
	// waiting.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		hbErr error
	)
	o.SetServerMonitor(&event.ServerMonitor{ServerHeartbeatFailed: func(e *event.ServerHeartbeatFailedEvent) {
		mu.Lock()
		if hbErr == nil {
			hbErr = e.Failure
		}
		mu.Unlock()
		cancel()
	}})
	err = pingMongo(ctx, t, o, use)
	mu.Lock()
	defer mu.Unlock()
	if err != nil && hbErr != nil {
		return hbErr
	}
	return err
}

func pingMongo(ctx context.Context, t Target, o *options.ClientOptions, use func(context.Context, *mongo.Database) error) error {
	client, err := mongo.Connect(o)
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := closeCtx()
		defer cancel()
		_ = client.Disconnect(c)
	}()
	db := t.Database
	if db == "" {
		db = "admin"
	}
	if err := client.Database(db).RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil || use == nil {
		return err
	}
	return use(ctx, client.Database(db))
}

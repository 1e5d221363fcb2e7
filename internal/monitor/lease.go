package monitor

// This file is the monitor's single-activity lease. The projector is getting
// one of its own on another branch (deploy); the two are meant to be unified
// into one package at merge. Keep it self-contained.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket is the NATS KV bucket of the monitor's lease.
const LeaseBucket = "connreg-monitor-lease"

// Lease makes one process at a time active among several: the holder owns a
// key in a KV bucket whose entries expire after TTL and renews it every
// TTL/3; a standby tries to create the key at the same pace and takes over
// once the holder stopped renewing (crashed, or cut off from NATS) and the
// key expired, or at once when the holder released it on a clean stop. A
// holder that cannot renew stops its work before its key can expire, so two
// holders never overlap by more than a renewal's round trip.
type Lease struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	ttl    time.Duration
	logger *slog.Logger
}

// NewLease opens (creating if needed) the lease bucket; holder names this
// process in the key's value, for a person reading the bucket.
func NewLease(ctx context.Context, js jetstream.JetStream, key, holder string, ttl time.Duration, logger *slog.Logger) (*Lease, error) {
	if ttl < 300*time.Millisecond {
		return nil, errors.New("monitor: a lease needs a TTL of at least 300ms")
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeaseBucket,
		Description: "Which process runs the connection monitor; entries expire unless renewed.",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: lease bucket %s: %w", LeaseBucket, err)
	}
	return &Lease{kv: kv, key: key, holder: holder, ttl: ttl, logger: logger}, nil
}

// Run waits to hold the lease, runs work with a context that ends when the
// lease is lost or ctx ends, and goes back to waiting after a loss. It
// returns when ctx ends (nil) or when work returns an error while the lease
// is held.
func (l *Lease) Run(ctx context.Context, work func(context.Context) error) error {
	tick := l.ttl / 3
	for {
		rev, err := l.kv.Create(ctx, l.key, []byte(l.holder))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				l.logger.Warn("lease: cannot reach the lease bucket", "key", l.key, "error", err.Error())
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(tick):
			}
			continue
		}
		l.logger.Info("lease acquired; this process is active", "key", l.key, "holder", l.holder)
		lost, err := l.hold(ctx, rev, work)
		if err != nil || ctx.Err() != nil {
			return err
		}
		if lost {
			l.logger.Warn("lease lost; this process is standing by", "key", l.key, "holder", l.holder)
		}
	}
}

// hold runs work while renewing the key at revision rev.
func (l *Lease) hold(ctx context.Context, rev uint64, work func(context.Context) error) (lost bool, err error) {
	workCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- work(workCtx) }()
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			l.release(rev)
			return false, err
		case <-t.C:
			rctx, rcancel := context.WithTimeout(ctx, l.ttl/3)
			next, uerr := l.kv.Update(rctx, l.key, []byte(l.holder), rev)
			rcancel()
			if uerr != nil {
				cancel()
				<-done
				return true, nil
			}
			rev = next
		}
	}
}

// release deletes the key, if still ours, so a standby takes over at once.
func (l *Lease) release(rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl)
	defer cancel()
	_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
}

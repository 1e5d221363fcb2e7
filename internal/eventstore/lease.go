package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
)

// LeaseBucket is the NATS KV bucket of the service's leases.
const LeaseBucket = "connreg_leases"

// ProjectorLeaseKey is the key of the live projector's lease: one projector
// process consumes, the others stand by.
const ProjectorLeaseKey = "readmodel-projector"

// DefaultLeaseTTL is how long a lease lives without renewal: a standby takes
// over about this long after the holder died.
const DefaultLeaseTTL = 5 * time.Second

// Lease makes one process among several the only one doing a piece of work
// (the live projector: two projectors consuming at once would apply a
// connection's events out of order). The lease is a key in a KV bucket whose
// values expire after ttl; the holder renews it every ttl/4 with an update
// conditional on the revision it last wrote, so a holder that was replaced
// learns it at its next renewal and never overwrites its successor.
//
// Safety does not depend on that conditional update arriving, though: the
// holder stops its work once 2/3 of ttl have passed since it sent its last
// successful renewal (measured on its own clock, before the server stored
// the value), while the server keeps that value for a full ttl after storing
// it. A standby can therefore create the key only after the holder has
// stopped, with ttl/3 to spare for the work to wind down, even when the
// holder is cut off from NATS or paused.
type Lease struct {
	kv    jetstream.KeyValue
	key   string
	owner string
	ttl   time.Duration
	poll  time.Duration
	log   *slog.Logger
}

// OpenLease opens (creating it when missing) the lease bucket, with as many
// replicas as the event stream and a value lifetime of ttl, and returns the
// lease key for owner, a name unique to this process.
func OpenLease(ctx context.Context, js jetstream.JetStream, key, owner string, ttl time.Duration, logger *slog.Logger) (*Lease, error) {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	replicas := 1
	if s, err := js.Stream(ctx, events.StreamName); err == nil {
		replicas = s.CachedInfo().Config.Replicas
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeaseBucket,
		Description: "Leases of the connection registry: which process runs the live projector.",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: lease bucket %s: %w", LeaseBucket, err)
	}
	return &Lease{kv: kv, key: key, owner: owner, ttl: ttl, poll: max(ttl/20, 50*time.Millisecond), log: logger}, nil
}

// Hold runs work each time this process holds the lease, until ctx ends.
// work gets a context that ends when the lease is lost or could not be
// renewed in time, and must return promptly then; Hold waits for it before
// trying to take the lease again. When ctx ends, the lease is released so
// that a standby takes over at once; a crashed holder's lease expires after
// ttl.
func (l *Lease) Hold(ctx context.Context, work func(ctx context.Context)) {
	var rev uint64 // the revision this process last wrote, kept across a lost renewal
	for ctx.Err() == nil {
		sent := time.Now()
		r, err := l.acquire(ctx, rev)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, jetstream.ErrKeyExists) {
				l.log.Warn("lease: cannot reach the lease bucket; retrying", "key", l.key, "error", err.Error())
			}
			sleep(ctx, l.poll)
			continue
		}
		rev = r
		l.log.Info("lease acquired: this process is active", "key", l.key, "owner", l.owner, "revision", rev)
		rev = l.run(ctx, rev, sent, work)
		sleep(ctx, l.poll)
	}
	if rev != 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := l.kv.Delete(rctx, l.key, jetstream.LastRevision(rev)); err == nil {
			l.log.Info("lease released", "key", l.key, "owner", l.owner)
		}
	}
}

// acquire creates the key, or renews it when this process wrote its current
// revision (a holder that paused its work after missed renewals resumes
// without waiting for its own lease to expire).
func (l *Lease) acquire(ctx context.Context, rev uint64) (uint64, error) {
	if rev != 0 {
		if r, err := l.kv.Update(ctx, l.key, []byte(l.owner), rev); err == nil {
			return r, nil
		}
	}
	return l.kv.Create(ctx, l.key, []byte(l.owner))
}

// run runs work while renewing the lease and returns the revision this
// process last wrote, or 0 when another process holds the lease now.
func (l *Lease) run(ctx context.Context, rev uint64, sent time.Time, work func(ctx context.Context)) uint64 {
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(wctx)
	}()
	defer func() { stop(); <-done }()

	valid := sent.Add(2 * l.ttl / 3)
	renew := time.NewTicker(l.ttl / 4)
	defer renew.Stop()
	for {
		deadline := time.NewTimer(time.Until(valid))
		select {
		case <-ctx.Done():
			deadline.Stop()
			return rev
		case <-done:
			deadline.Stop()
			return rev
		case <-deadline.C:
			l.log.Warn("lease: not renewed in time; stopping until it is held again", "key", l.key)
			return rev
		case <-renew.C:
			deadline.Stop()
			at := time.Now()
			rctx, cancel := context.WithDeadline(ctx, valid)
			r, err := l.kv.Update(rctx, l.key, []byte(l.owner), rev)
			cancel()
			switch {
			case err == nil:
				rev, valid = r, at.Add(2*l.ttl/3)
			case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound):
				l.log.Warn("lease lost to another process; stopping", "key", l.key)
				return 0
			case ctx.Err() == nil:
				l.log.Warn("lease: renewal failed; retrying", "key", l.key, "error", err.Error())
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Package retry is the one backoff of the service: exponential, with jitter,
// capped. Every loop that retries a dependency (the projector's consumer, a
// replay, the generation follower, a Vault login) waits with it, so that
// processes that failed together do not retry in lockstep.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Backoff returns a fresh exponential backoff from initial to max, each wait
// randomised by ±50% (jitter).
func Backoff(initial, max time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         max,
	}
	b.Reset()
	return b
}

// Wait sleeps for d or until ctx ends; it reports whether the full wait
// elapsed (false: ctx ended, stop retrying).
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Package eventstore is the event store: it appends connection events and name
// claims to a NATS JetStream stream, the service's system of record, and
// reads an aggregate's history back from it.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

// DuplicateWindow is how long JetStream remembers message ids: a publish
// retried within it (same event id) is stored once.
const DuplicateWindow = 2 * time.Minute

// StreamConfig is the configuration of the system-of-record stream: file
// storage, no age or size limit, delete and purge denied (the log is
// append-only), duplicates detected (a publish asked again after a lost
// answer is stored once), direct get on (fast last-message reads for name and
// version checks). Besides the events it carries the name claims and the
// fences that keep config names unique (claim.go).
func StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.StreamName,
		Description: "Connection registry system of record: connection events and config-name claims.",
		Subjects:    []string{events.EventSubjectFilter, events.NameSubjectFilter, fenceSubjectFilter},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      0,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		Discard:     jetstream.DiscardNew,
		Duplicates:  DuplicateWindow,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

// StreamOptions are the operator's choices for the stream.
type StreamOptions struct {
	// Replicas is the replica count a new stream gets (0 means 1).
	Replicas int
	// Update moves an existing stream to Replicas; without it an existing
	// stream keeps the replica count an operator gave it.
	Update bool
}

// EnsureStream creates the stream with opts.Replicas replicas, or brings an
// existing one to the configuration above while keeping its replica count
// (unless opts.Update). A process never resets a stream an operator moved to
// three replicas back to one because its own setting says otherwise: the
// caller compares the returned stream's replica count with its setting and
// reports a difference.
func EnsureStream(ctx context.Context, js jetstream.JetStream, opts StreamOptions) (jetstream.Stream, error) {
	cfg := StreamConfig()
	cfg.Replicas = max(opts.Replicas, 1)
	s, err := ensure(ctx, js, cfg, opts.Update)
	if err != nil {
		return nil, domain.Unavailable(domain.DependencyEventStore, fmt.Errorf("ensure stream %s: %w", cfg.Name, err))
	}
	info := s.CachedInfo()
	if !info.Config.DenyDelete || !info.Config.DenyPurge {
		return nil, errors.New("jetstream: the stream does not deny delete and purge")
	}
	return s, nil
}

func ensure(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, update bool) (jetstream.Stream, error) {
	for range 3 {
		s, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // another process created it at the same moment: check it as an existing one
			}
			return s, err
		}
		if err != nil {
			return nil, err
		}
		if !update {
			cfg.Replicas = s.CachedInfo().Config.Replicas
		}
		return js.UpdateStream(ctx, cfg)
	}
	return nil, errors.New("the stream is being created and changed concurrently")
}

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

// EnsureStream creates the stream, or updates an existing one to the
// configuration above.
func EnsureStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	cfg := StreamConfig()
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, domain.Unavailable(domain.DependencyEventStore, fmt.Errorf("ensure stream %s: %w", cfg.Name, err))
	}
	info := s.CachedInfo()
	if !info.Config.DenyDelete || !info.Config.DenyPurge {
		return nil, errors.New("jetstream: the stream does not deny delete and purge")
	}
	return s, nil
}

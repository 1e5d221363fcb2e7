package eventstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

var _ commands.ConnectionLister = (*Store)(nil)

// AggregateIDs lists the id of every connection that has at least one event
// in the stream, deleted ones included, sorted, without reading a single
// message: it asks the server for the stream's subjects under
// connections.events.> and their counts. The server answers at most 100 000
// subjects per request; nats.go's Stream.Info with WithSubjectFilter asks
// for the following pages itself (the server pages over the sorted subject
// list; checked with 230 000 connections), so the whole list comes back,
// held in memory (about 60 bytes per connection). Subjects are never removed
// (the stream denies delete and purge), so a connection created between two
// pages can only repeat a subject, never hide one that existed at the start.
// The listing as a whole is bounded by ctx and, when ctx has no deadline, by
// a minute.
func (s *Store) AggregateIDs(ctx context.Context) ([]string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(s.timeout, listTimeout))
		defer cancel()
	}
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(events.EventSubjectFilter))
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, domain.Unavailable(domain.DependencyEventStore, err)
	}
	ids := make([]string, 0, len(info.State.Subjects))
	for subject := range info.State.Subjects {
		if id, ok := strings.CutPrefix(subject, events.EventSubjectPrefix); ok && id != "" {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// listTimeout bounds AggregateIDs when its caller set no deadline: a stream
// of millions of connections takes several paged requests.
const listTimeout = time.Minute

package main

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/eventstore"
)

// seedStore is a commands.EventStore for seeding only: it writes the same
// messages as eventstore.Store.Append (the name claim, then the event, with
// the same subjects, bodies and headers) but as two plain asynchronous
// publishes instead of an atomic batch, and without reading the name's
// current claim. The stream ends up holding what the real path writes; the
// guarantees (atomicity, uniqueness) are skipped, which is harmless for
// fresh unique names and is why it is never used for a timed create figure.
// It exists because an atomic batch on a single-replica file stream costs
// ~20 ms and is serialized (see the "atomic batch" limit): 100,000 real
// appends would take over half an hour.
type seedStore struct {
	js jetstream.JetStream
}

func (s seedStore) Append(ctx context.Context, a commands.Append) (uint64, error) {
	var futures []jetstream.PubAckFuture
	if a.Claim != nil {
		body, err := json.Marshal(map[string]string{"state": "claimed", "connectionId": a.AggregateID, "configName": a.Claim.ConfigName})
		if err != nil {
			return 0, err
		}
		m := nats.NewMsg(events.NameSubject(a.Claim.Organization, a.Claim.ConfigName))
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, a.Events[0].EventID+".claimed")
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			return 0, err
		}
		futures = append(futures, f)
	}
	for _, e := range a.Events {
		m, err := eventstore.EventMessage(e, a.Organization)
		if err != nil {
			return 0, err
		}
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			return 0, err
		}
		futures = append(futures, f)
	}
	var seq uint64
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			seq = ack.Sequence
		case err := <-f.Err():
			return 0, err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return seq, nil
}

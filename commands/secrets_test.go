package commands_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

func (f *fixture) secretsHandler(store commands.EventStore) *commands.SecretsReadHandler {
	f.t.Helper()
	h, err := commands.NewSecretsReadHandler(store, f.store, f.sealer, f.ids.next, f.clock.now)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

// downStore is the event store unreachable for writes, as the NATS store
// reports it.
type downStore struct{}

func (downStore) Append(context.Context, commands.Append) (uint64, error) {
	return 0, domain.Unavailable(domain.DependencyEventStore, errors.New("connection refused"))
}

func TestSecretsReadIsRecordedBeforeTheHandOut(t *testing.T) {
	tests := []struct {
		name    string
		in      domain.SpecInput
		secrets []string
	}{
		{"password only", input("plain-db"), []string{domain.SecretPassword}},
		{"password and client key", withClientKey("tls-db"), []string{domain.SecretPassword, domain.SecretSSLKey}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			id := f.mustCreateFrom(tc.in)
			before, err := domain.Rebuild(f.history(id))
			if err != nil {
				t.Fatal(err)
			}
			reader := domain.Origin{Actor: "report-generator", RequestID: "req-9"}
			out, err := f.secretsHandler(f.store).Handle(ctx(t), commands.ReadSealedSecrets{Scope: caller, ID: id, Origin: reader})
			if err != nil {
				t.Fatal(err)
			}
			creds := before.Credentials()
			if out.Password != creds.Password || out.SSLKey != creds.SSLKey || out.Connection.Version() != 2 {
				t.Fatalf("handed out %+v, want the stored sealed secrets at version 2", out)
			}
			evs := f.assertHistory(id, "created", "secrets-read")
			e := evs[1]
			if p := e.Payload.(*events.ConnectionSecretsReadV1); !slices.Equal(p.Secrets, tc.secrets) ||
				e.Actor != "report-generator" || e.RequestID != "req-9" || !e.OccurredAt.Equal(f.clock.now()) {
				t.Fatalf("recorded %+v by %s", e.Payload, e.Actor)
			}
			if _, last, _ := f.store.Load(ctx(t), id); out.Sequence != last {
				t.Fatalf("sequence %d, stored at %d", out.Sequence, last)
			}
		})
	}
}

func TestSecretsReadHandsOutNothingUnrecorded(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	gone := f.mustCreate("gone")
	if _, err := f.delete.Handle(ctx(t), commands.DeleteConnection{Scope: caller, ID: gone, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		store   commands.EventStore
		id      string
		wantErr func(error) bool
	}{
		{"event store down", downStore{}, id, domain.IsUnavailable},
		{"deleted", f.store, gone, func(err error) bool { return errors.Is(err, domain.ErrNotFound) }},
		{"unknown", f.store, "00000000-0000-7000-8000-999999999999", func(err error) bool { return errors.Is(err, domain.ErrNotFound) }},
		{"too many lost races", f.racer(id, commands.MaxConflictRetries+1), id, func(err error) bool { return errors.Is(err, domain.ErrConcurrentChange) }},
	}
	for _, tc := range tests {
		out, err := f.secretsHandler(tc.store).Handle(ctx(t), commands.ReadSealedSecrets{Scope: caller, ID: tc.id, Origin: origin})
		if !tc.wantErr(err) {
			t.Fatalf("%s: err = %v", tc.name, err)
		}
		if !out.Password.IsZero() || !out.SSLKey.IsZero() || out.Connection != nil {
			t.Fatalf("%s: handed out %+v", tc.name, out)
		}
	}
	for _, e := range f.history(id) {
		if e.Type() == events.TypeConnectionSecretsReadV1 {
			t.Fatal("a read that was not handed out is recorded")
		}
	}
}

func TestSecretsReadAfterAConcurrentChange(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	out, err := f.secretsHandler(f.racer(id, 1)).Handle(ctx(t), commands.ReadSealedSecrets{Scope: caller, ID: id, Origin: origin})
	if err != nil || out.Connection.Version() != 3 || out.Connection.Spec().DatabaseName != "raced-1" {
		t.Fatalf("read after a lost race: %v, %+v", err, out)
	}
	f.assertHistory(id, "created", "updated", "secrets-read")
}

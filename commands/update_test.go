package commands_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

func TestUpdateRecordsWhatChanges(t *testing.T) {
	tests := []struct {
		name    string
		patch   domain.PatchInput
		changed []string // nil: nothing recorded
		wantErr bool
	}{
		{"empty patch", domain.PatchInput{}, nil, false},
		{"same values", domain.PatchInput{Host: ptr("db.example.com"), Port: ptr(5432), ConfigName: ptr("orders")}, nil, false},
		{"same metadata", domain.PatchInput{SetMetadata: true}, nil, false},
		// Moving the connection sends the password again (domain.SecretNotResentError otherwise).
		{"host", domain.PatchInput{Host: ptr("db2.example.com"), Password: []byte("rotated")}, []string{events.FieldHost, events.FieldPassword}, false},
		{"host and port, one the same", domain.PatchInput{Host: ptr("db.example.com"), Port: ptr(6432), Password: []byte("rotated")}, []string{events.FieldPort, events.FieldPassword}, false},
		{"password", domain.PatchInput{Password: []byte("rotated")}, []string{events.FieldPassword}, false},
		{"metadata", domain.PatchInput{Metadata: map[string]string{"team": "x"}, SetMetadata: true}, []string{events.FieldMetadata}, false},
		{"type takes its default schema", domain.PatchInput{Type: ptr("MYSQL"), Password: []byte("rotated")}, []string{events.FieldType, events.FieldPassword, events.FieldSchema}, false},
		{"invalid port", domain.PatchInput{Host: ptr("db2.example.com"), Port: ptr(0)}, nil, true},
		{"empty password", domain.PatchInput{Password: []byte{}}, nil, true},
		{"invalid name", domain.PatchInput{ConfigName: ptr("x")}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			id := f.mustCreate("orders")
			seals := f.sealer.count()
			f.clock.advance(time.Hour)
			password := tc.patch.Password
			res, err := f.update.Handle(ctx(t), commands.UpdateConnection{Scope: caller, ID: id, Input: tc.patch, Origin: origin})
			var verr *domain.ValidationError
			if tc.wantErr != errors.As(err, &verr) {
				t.Fatalf("err = %v, want a validation error: %v", err, tc.wantErr)
			}
			if strings.Trim(string(password), "\x00") != "" {
				t.Fatalf("the caller's password was not wiped: %q", password)
			}
			if tc.changed == nil {
				if res.Changed || res.Sequence != 0 {
					t.Fatalf("result %+v for a patch that changes nothing", res)
				}
				f.assertHistory(id, "created")
				if tc.wantErr && f.sealer.count() != seals {
					t.Fatal("a refused patch sealed a secret")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			evs := f.assertHistory(id, "created", "updated")
			p := evs[1].Payload.(*events.ConnectionUpdatedV1)
			if !slices.Equal(p.Changed, tc.changed) || !evs[1].OccurredAt.Equal(f.clock.now()) || evs[1].AggregateVersion != 2 {
				t.Fatalf("recorded %v at %s (version %d), want %v at %s", p.Changed, evs[1].OccurredAt, evs[1].AggregateVersion, tc.changed, f.clock.now())
			}
			if !res.Changed || res.Connection.Version() != 2 || !res.Connection.UpdatedAt().Equal(f.clock.now()) {
				t.Fatalf("result %+v", res)
			}
			if _, last, _ := f.store.Load(ctx(t), id); last != res.Sequence {
				t.Fatalf("result sequence %d, stored at %d", res.Sequence, last)
			}
			if p.Password != nil {
				plain, err := f.sealer.Unseal(ctx(t), id, domain.SealedSecret{Scheme: p.Password.Scheme, KeyName: p.Password.KeyName, Ciphertext: p.Password.Ciphertext})
				if err != nil || string(plain) != "rotated" {
					t.Fatalf("the new password opens as %q (%v)", plain, err)
				}
			}
		})
	}
}

func TestUpdateOfAMissingConnection(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	if _, err := f.delete.Handle(ctx(t), commands.DeleteConnection{Scope: caller, ID: id, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{id, "00000000-0000-7000-8000-999999999999"} {
		_, err := f.update.Handle(ctx(t), commands.UpdateConnection{Scope: caller, ID: target, Input: domain.PatchInput{Host: ptr("x.example.com")}, Origin: origin})
		if !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("update of %s: %v, want domain.ErrNotFound", target, err)
		}
	}
}

func TestRenameClaimsTheNewNameAndReleasesTheOld(t *testing.T) {
	tests := []struct {
		name     string
		to       string
		taken    []string // names a new connection is refused afterwards
		free     []string // names a new connection gets afterwards
		wantErr  error
		recorded bool
	}{
		{"to a free name", "payments", []string{"payments", "PAYMENTS"}, []string{"orders"}, nil, true},
		{"case only", "ORDERS", []string{"orders", "Orders"}, nil, nil, true},
		{"to a held name", "held", []string{"orders", "held"}, nil, domain.ErrNameTaken, false},
		{"to a held name in another case", "HELD", []string{"orders", "held"}, nil, domain.ErrNameTaken, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			id := f.mustCreate("orders")
			f.mustCreate("held")
			_, err := f.update.Handle(ctx(t), commands.UpdateConnection{Scope: caller, ID: id, Input: domain.PatchInput{ConfigName: &tc.to}, Origin: origin})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("rename: %v, want %v", err, tc.wantErr)
			}
			if tc.recorded {
				f.assertHistory(id, "created", "updated")
			} else {
				f.assertHistory(id, "created")
			}
			for _, name := range tc.taken {
				f.assertNameTaken(name)
			}
			for _, name := range tc.free {
				f.assertNameFree(name)
			}
		})
	}
}

// TestLostRaces follows commands.afterConflict: another writer changes the
// connection between the handler's load and its append. Without If-Match the
// handler reloads and applies its change on top, at most MaxConflictRetries
// times; with If-Match the caller's version is stale and nothing is written.
func TestLostRaces(t *testing.T) {
	type run func(f *fixture, store commands.EventStore, id string, ifMatch *uint64) error
	update := func(f *fixture, store commands.EventStore, id string, ifMatch *uint64) error {
		_, h, _ := f.handlers(store)
		_, err := h.Handle(ctx(f.t), commands.UpdateConnection{Scope: caller, ID: id, IfMatch: ifMatch,
			Input: domain.PatchInput{Host: ptr("mine.example.com"), Password: []byte("new-password")}, Origin: origin})
		return err
	}
	del := func(f *fixture, store commands.EventStore, id string, ifMatch *uint64) error {
		_, _, h := f.handlers(store)
		_, err := h.Handle(ctx(f.t), commands.DeleteConnection{Scope: caller, ID: id, IfMatch: ifMatch, Origin: origin})
		return err
	}
	tests := []struct {
		name    string
		run     run
		races   int
		ifMatch bool
		wantErr error
		applied string // the handler's event, when it got through
	}{
		{"update, one lost race", update, 1, false, nil, "updated"},
		{"update, as many lost races as retries", update, commands.MaxConflictRetries, false, nil, "updated"},
		{"update, one race too many", update, commands.MaxConflictRetries + 1, false, domain.ErrConcurrentChange, ""},
		{"update with If-Match", update, 1, true, domain.ErrVersionMismatch, ""},
		{"delete, one lost race", del, 1, false, nil, "deleted"},
		{"delete, one race too many", del, commands.MaxConflictRetries + 1, false, domain.ErrConcurrentChange, ""},
		{"delete with If-Match", del, 1, true, domain.ErrVersionMismatch, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			id := f.mustCreate("orders")
			seals := f.sealer.count()
			store := f.racer(id, tc.races)
			var ifMatch *uint64
			if tc.ifMatch {
				ifMatch = ptr(uint64(1))
			}
			err := tc.run(f, store, id, ifMatch)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			attempts := min(tc.races+1, commands.MaxConflictRetries+1)
			if tc.ifMatch {
				attempts = 1
			}
			if store.appends != attempts {
				t.Fatalf("%d append attempts, want %d", store.appends, attempts)
			}
			want := []string{"created"}
			for range min(tc.races, attempts) {
				want = append(want, "updated") // the other writer's changes, all kept
			}
			if tc.applied != "" {
				want = append(want, tc.applied)
			}
			evs := f.assertHistory(id, want...)
			if tc.applied == "updated" {
				p := evs[len(evs)-1].Payload.(*events.ConnectionUpdatedV1)
				if !slices.Equal(p.Changed, []string{events.FieldHost, events.FieldPassword}) {
					t.Fatalf("the retried update recorded %v", p.Changed)
				}
				if n := f.sealer.count() - seals; n != 1 {
					t.Fatalf("the password was sealed %d times over the retries, want once", n)
				}
			}
		})
	}
}

func TestStaleIfMatchChangesNothing(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	if _, err := f.update.Handle(ctx(t), commands.UpdateConnection{Scope: caller, ID: id, Input: domain.PatchInput{Port: ptr(1), Password: []byte("moved")}, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint64{0, 1, 3} {
		_, err := f.update.Handle(ctx(t), commands.UpdateConnection{Scope: caller, ID: id, IfMatch: &v, Input: domain.PatchInput{Port: ptr(2), Password: []byte("moved")}, Origin: origin})
		if !errors.Is(err, domain.ErrVersionMismatch) {
			t.Fatalf("update at If-Match %d: %v, want domain.ErrVersionMismatch", v, err)
		}
		if _, err := f.delete.Handle(ctx(t), commands.DeleteConnection{Scope: caller, ID: id, IfMatch: &v, Origin: origin}); !errors.Is(err, domain.ErrVersionMismatch) {
			t.Fatalf("delete at If-Match %d: %v, want domain.ErrVersionMismatch", v, err)
		}
	}
	f.assertHistory(id, "created", "updated")
	res, err := f.update.Handle(ctx(t), commands.UpdateConnection{Scope: caller, ID: id, IfMatch: ptr(uint64(2)), Input: domain.PatchInput{Port: ptr(2), Password: []byte("moved")}, Origin: origin})
	if err != nil || res.Connection.Version() != 3 {
		t.Fatalf("update at the current version: %v", err)
	}
}

func TestDeleteReleasesTheNameOnce(t *testing.T) {
	f := newFixture(t)
	id := f.mustCreate("orders")
	// Less than the claim lease: the name must be free because the delete
	// released it, not because its claim aged.
	f.clock.advance(time.Second)
	res, err := f.delete.Handle(ctx(t), commands.DeleteConnection{Scope: caller, ID: id, IfMatch: ptr(uint64(1)), Origin: origin})
	if err != nil || !res.Changed || !res.Connection.Deleted() || res.Sequence == 0 {
		t.Fatalf("delete: %+v, %v", res, err)
	}
	evs := f.assertHistory(id, "created", "deleted")
	if p := evs[1].Payload.(*events.ConnectionDeletedV1); p.ConfigName != "orders" || !evs[1].OccurredAt.Equal(f.clock.now()) || evs[1].Actor != "alice" {
		t.Fatalf("deleted event %+v %+v", evs[1].Metadata, p)
	}
	f.assertNameFree("ORDERS")
	if _, err := f.delete.Handle(ctx(t), commands.DeleteConnection{Scope: caller, ID: id, Origin: origin}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("second delete: %v, want domain.ErrNotFound", err)
	}
	f.assertHistory(id, "created", "deleted")
}

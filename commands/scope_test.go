package commands_test

import (
	"errors"
	"testing"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
)

// TestCommandsOutsideTheCallersScopeFindNothing: another organization, or a
// product the caller may not use, sees no connection: every command answers
// domain.ErrNotFound (also before a stale If-Match could reveal it), nothing
// is appended, sealed, unsealed, dialled or discovered.
func TestCommandsOutsideTheCallersScopeFindNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		scope domain.Scope
	}{
		{"another organization", domain.Scope{Organization: "org-b"}},
		{"another product of the organization", domain.Scope{Organization: domain.DefaultOrganization, Products: []string{"reports"}}},
		{"no organization", domain.Scope{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			id := f.mustCreate("orders")
			seals := f.sealer.count()
			p, d := &fixedProber{}, &fixedDiscoverer{}
			stale := uint64(7)
			moved := domain.PatchInput{Host: ptr("attacker.example.net"), Password: []byte("x")}
			for name, run := range map[string]func() error{
				"update": func() error {
					_, err := f.update.Handle(ctx(t), commands.UpdateConnection{Scope: tc.scope, ID: id, Input: moved, Origin: origin})
					return err
				},
				"update with a stale If-Match": func() error {
					_, err := f.update.Handle(ctx(t), commands.UpdateConnection{Scope: tc.scope, ID: id, IfMatch: &stale, Input: moved, Origin: origin})
					return err
				},
				"delete": func() error {
					_, err := f.delete.Handle(ctx(t), commands.DeleteConnection{Scope: tc.scope, ID: id, Origin: origin})
					return err
				},
				"test": func() error {
					_, err := f.testHandler(f.store, p, f.sealer, 10).Handle(ctx(t), commands.TestConnection{Scope: tc.scope, ID: id, Origin: origin})
					return err
				},
				"discover the schema": func() error {
					_, err := f.discoverHandler(f.store, d, 10).Handle(ctx(t), commands.DiscoverSchema{Scope: tc.scope, ID: id, Origin: origin})
					return err
				},
				"read sealed secrets": func() error {
					_, err := f.secretsHandler(f.store).Handle(ctx(t), commands.ReadSealedSecrets{Scope: tc.scope, ID: id, Origin: origin})
					return err
				},
			} {
				if err := run(); !errors.Is(err, domain.ErrNotFound) {
					t.Errorf("%s: %v, want domain.ErrNotFound", name, err)
				}
			}
			f.assertHistory(id, "created")
			if p.calls != 0 || d.calls != 0 || f.sealer.count() != seals {
				t.Fatalf("%d probes, %d discoveries, %d seals outside the scope", p.calls, d.calls, f.sealer.count()-seals)
			}
		})
	}
}

// TestCreateBelongsToTheCallersOrganization: names and Idempotency-Keys are
// per organization; a product outside the caller's is refused.
func TestCreateBelongsToTheCallersOrganization(t *testing.T) {
	f := newFixture(t)
	orgB := domain.Scope{Organization: "org-b"}
	a, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: input("orders"), Origin: origin, IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: orgB, Input: input("orders"), Origin: origin, IdempotencyKey: "k"})
	if err != nil || !b.Changed {
		t.Fatalf("the same name and key in another organization: %+v %v", b, err)
	}
	if b.Connection.ID() == a.Connection.ID() || b.Connection.Organization() != "org-b" || a.Connection.Organization() != domain.DefaultOrganization {
		t.Fatalf("ids %s %s, organizations %s %s", a.Connection.ID(), b.Connection.ID(), a.Connection.Organization(), b.Connection.Organization())
	}
	limited := domain.Scope{Organization: "org-b", Products: []string{"reports"}}
	if _, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: limited, Input: input("ledger"), Origin: origin}); !errors.Is(err, domain.ErrProductNotAllowed) {
		t.Fatalf("a product outside the caller's: %v", err)
	}
	if n := f.aggregates(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

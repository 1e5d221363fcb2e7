package commands_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
)

func TestHandlersRefuseMissingDependencies(t *testing.T) {
	f := newFixture(t)
	cases := map[string]func() error{
		"create": func() error {
			_, err := commands.NewCreateHandler(commands.CreateDeps{Store: f.store, History: f.store, Sealer: f.sealer, NewID: f.ids.next, Now: f.clock.now})
			return err
		},
		"update": func() error {
			_, err := commands.NewUpdateHandler(f.store, f.store, nil, f.ids.next, f.clock.now)
			return err
		},
		"delete": func() error { _, err := commands.NewDeleteHandler(f.store, nil, f.ids.next, f.clock.now); return err },
		"test": func() error {
			_, err := commands.NewTestHandler(commands.TestDeps{Store: f.store, History: f.store, Unsealer: f.sealer, NewID: f.ids.next, Now: f.clock.now})
			return err
		},
		"discover": func() error {
			_, err := commands.NewDiscoverHandler(commands.DiscoverDeps{Store: f.store, History: f.store, Unsealer: f.sealer, NewID: f.ids.next, Now: f.clock.now})
			return err
		},
		"secrets read": func() error {
			_, err := commands.NewSecretsReadHandler(f.store, f.store, nil, f.ids.next, f.clock.now)
			return err
		},
		"reseal": func() error {
			_, err := commands.NewResealHandler(commands.ResealDeps{IDs: f.store, History: f.store, Store: f.store, NewID: f.ids.next, Now: f.clock.now})
			return err
		},
	}
	for name, build := range cases {
		if build() == nil {
			t.Errorf("New%sHandler accepted a missing dependency", name)
		}
	}
}

func TestCreateValidatesAndWritesNothingOnError(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*domain.SpecInput)
		fields []string
	}{
		{"empty", func(in *domain.SpecInput) { *in = domain.SpecInput{} },
			[]string{"X-Product-Name", "configName", "databaseName", "host", "password", "port", "type", "userName"}},
		{"short name", func(in *domain.SpecInput) { in.ConfigName = "ab" }, []string{"configName"}},
		{"name with a space", func(in *domain.SpecInput) { in.ConfigName = "orders db" }, []string{"configName"}},
		{"unknown type", func(in *domain.SpecInput) { in.Type = "DB2" }, []string{"type"}},
		{"port out of range", func(in *domain.SpecInput) { in.Port = 70000 }, []string{"port"}},
		{"bad product", func(in *domain.SpecInput) { in.ProductName = "bad product!" }, []string{"X-Product-Name"}},
		{"several at once", func(in *domain.SpecInput) { in.Port, in.Type, in.UserName = -1, "nope", " " },
			[]string{"port", "type", "userName"}},
		{"ssl mode of another engine", func(in *domain.SpecInput) { in.SSL = &domain.SSLInput{Mode: "REQUIRED"} }, []string{"ssl.mode"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			in := input("orders")
			tc.edit(&in)
			_, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: in, Origin: origin, IdempotencyKey: "k"})
			var verr *domain.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("err = %v, want a *domain.ValidationError", err)
			}
			if got := verr.Paths(); !slices.Equal(got, tc.fields) {
				t.Fatalf("refused fields %v, want %v", got, tc.fields)
			}
			if n := f.aggregates(); n != 0 || f.sealer.count() != 0 {
				t.Fatalf("a refused create stored %d connections and sealed %d secrets", n, f.sealer.count())
			}
		})
	}
}

func TestCreateSealsStampsAndAppends(t *testing.T) {
	f := newFixture(t)
	in := input("orders")
	in.Metadata = map[string]string{"team": "data"}
	password := in.Password
	res, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: in, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	conn := res.Connection
	if !res.Changed || res.Sequence == 0 || conn.Version() != 1 || conn.ID() == "" {
		t.Fatalf("result %+v, version %d", res, conn.Version())
	}
	if strings.Trim(string(password), "\x00") != "" {
		t.Fatalf("the caller's password was not wiped: %q", password)
	}
	evs := f.assertHistory(conn.ID(), "created")
	e := evs[0]
	if e.EventID == "" || e.EventID == conn.ID() || !e.OccurredAt.Equal(f.clock.now()) || e.Actor != "alice" ||
		e.RequestID != "req-1" || e.CorrelationID != "corr-1" {
		t.Fatalf("event metadata %+v", e.Metadata)
	}
	p := e.Payload.(*events.ConnectionCreatedV1)
	if p.Organization != domain.DefaultOrganization || p.ConfigName != "orders" || p.ProductName != "billing" ||
		p.Schema != "public" || p.Metadata["team"] != "data" || p.Idempotency != nil {
		t.Fatalf("payload %+v", p)
	}
	if strings.Contains(p.Password.Ciphertext, "pw-of-orders") {
		t.Fatal("the event carries the plaintext password")
	}
	plain, err := f.sealer.Unseal(ctx(t), conn.ID(), domain.SealedSecret{Scheme: p.Password.Scheme, KeyName: p.Password.KeyName, Ciphertext: p.Password.Ciphertext})
	if err != nil || string(plain) != "pw-of-orders" {
		t.Fatalf("the sealed password, bound to the connection id, opens as %q (%v)", plain, err)
	}
	if _, last, _ := f.store.Load(ctx(t), conn.ID()); last != res.Sequence {
		t.Fatalf("result sequence %d, stored at %d", res.Sequence, last)
	}
}

func TestCreateOfATakenNameIsRefused(t *testing.T) {
	f := newFixture(t)
	f.mustCreate("Orders")
	for _, name := range []string{"Orders", "orders", "ORDERS"} {
		f.assertNameTaken(name)
	}
	in := input("orders")
	in.ProductName = "another-product" // names are unique across products
	if _, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: in, Origin: origin}); !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("create in another product: %v, want domain.ErrNameTaken", err)
	}
	if n := f.aggregates(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestIdempotentCreate(t *testing.T) {
	tests := []struct {
		name    string
		retry   func(*domain.SpecInput)
		key     string
		wantErr error
		same    bool // the retry answers the first connection
	}{
		{"same request", func(*domain.SpecInput) {}, "key-1", nil, true},
		{"only the password differs", func(in *domain.SpecInput) { in.Password = []byte("another password") }, "key-1", nil, true},
		{"another host", func(in *domain.SpecInput) { in.Host = "elsewhere.example.com" }, "key-1", domain.ErrIdempotencyKeyReused, false},
		{"another name", func(in *domain.SpecInput) { in.ConfigName = "payments" }, "key-1", domain.ErrIdempotencyKeyReused, false},
		{"metadata differs", func(in *domain.SpecInput) { in.Metadata = map[string]string{"a": "b"} }, "key-1", domain.ErrIdempotencyKeyReused, false},
		{"another key, same body", func(*domain.SpecInput) {}, "key-2", domain.ErrNameTaken, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			first, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: input("orders"), Origin: origin, IdempotencyKey: "key-1"})
			if err != nil {
				t.Fatal(err)
			}
			// The connection changes after its create: a replay still
			// answers it as its create made it.
			if _, err := f.update.Handle(ctx(t), commands.UpdateConnection{Scope: caller, ID: first.Connection.ID(),
				Input: domain.PatchInput{Host: ptr("moved.example.com"), Password: []byte("moved")}, Origin: origin}); err != nil {
				t.Fatal(err)
			}
			in := input("orders")
			tc.retry(&in)
			f.clock.advance(time.Minute)
			res, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: in, Origin: origin, IdempotencyKey: tc.key})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("retry: %v, want %v", err, tc.wantErr)
			}
			if tc.same {
				c := res.Connection
				if res.Changed || c.ID() != first.Connection.ID() || c.Version() != 1 || c.Spec().Host != "db.example.com" ||
					!c.CreatedAt().Equal(first.Connection.CreatedAt()) {
					t.Fatalf("replay answered %+v (id %s, version %d, host %s), want the original create", res, c.ID(), c.Version(), c.Spec().Host)
				}
			}
			if n := f.aggregates(); n != 1 {
				t.Fatalf("%d connections after the retry, want 1", n)
			}
			f.assertHistory(first.Connection.ID(), "created", "updated")
		})
	}
}

// TestIdempotencyKeyIsScopedToTheProduct: one key used by two products makes
// two connections.
func TestIdempotencyKeyIsScopedToTheProduct(t *testing.T) {
	f := newFixture(t)
	a, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: input("orders"), Origin: origin, IdempotencyKey: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	in := input("payments")
	in.ProductName = "shipping"
	b, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: in, Origin: origin, IdempotencyKey: "shared"})
	if err != nil || a.Connection.ID() == b.Connection.ID() {
		t.Fatalf("second product: %v; ids %s and %s", err, a.Connection.ID(), b.Connection.ID())
	}
}

// TestConcurrentIdempotentRetriesMakeOneConnection: retries of one request
// race for one aggregate; the store lets one win and every other retry
// answers the connection it made, whose name stays held.
func TestConcurrentIdempotentRetriesMakeOneConnection(t *testing.T) {
	f := newFixture(t)
	const n = 16
	results := make([]commands.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: input("orders"), Origin: origin, IdempotencyKey: "retry"})
		})
	}
	wg.Wait()
	changed := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("retry %d: %v", i, errs[i])
		}
		if results[i].Connection.ID() != results[0].Connection.ID() {
			t.Fatalf("retries answered two connections: %s and %s", results[i].Connection.ID(), results[0].Connection.ID())
		}
		if results[i].Changed {
			changed++
		}
	}
	if changed != 1 || f.aggregates() != 1 {
		t.Fatalf("%d retries created, %d connections stored; want 1 and 1", changed, f.aggregates())
	}
	f.assertHistory(results[0].Connection.ID(), "created")
	f.assertNameTaken("orders")
}

// TestIdempotentCreateOfATakenName: the key is new but the name is held by
// another connection; the create is refused, not replayed.
func TestIdempotentCreateOfATakenName(t *testing.T) {
	f := newFixture(t)
	f.mustCreate("orders")
	_, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: input("orders"), Origin: origin, IdempotencyKey: "fresh"})
	if !errors.Is(err, domain.ErrNameTaken) {
		t.Fatalf("err = %v, want domain.ErrNameTaken", err)
	}
}

// TestConcurrentCreatesOfOneNameMakeOneConnection: of many creates of one
// name (in any case) exactly one is stored; the others are told the name is
// taken.
func TestConcurrentCreatesOfOneNameMakeOneConnection(t *testing.T) {
	f := newFixture(t)
	const n = 24
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		name := []string{"hot-name", "HOT-NAME", "Hot-Name"}[i%3]
		wg.Go(func() {
			_, errs[i] = f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: input(name), Origin: origin})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, domain.ErrNameTaken):
			t.Errorf("a losing create: %v", err)
		}
	}
	if won != 1 || f.aggregates() != 1 {
		t.Fatalf("%d creates won, %d connections stored; want 1 and 1", won, f.aggregates())
	}
}

func TestCreateSealsTheClientKey(t *testing.T) {
	f := newFixture(t)
	in := withClientKey("tls-db")
	key := in.SSL.Key
	res, err := f.create.Handle(ctx(t), commands.CreateConnection{Scope: caller, Input: in, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Trim(string(key), "\x00") != "" {
		t.Fatal("the caller's private key was not wiped")
	}
	p := f.history(res.Connection.ID())[0].Payload.(*events.ConnectionCreatedV1)
	if p.SSL == nil || p.SSL.Key == nil || p.SSL.Mode != "verify-full" || strings.Contains(p.SSL.Key.Ciphertext, "PRIVATE KEY") {
		t.Fatalf("ssl block %+v", p.SSL)
	}
	_, want := clientCert()
	plain, err := f.sealer.Unseal(ctx(t), res.Connection.ID(), domain.SealedSecret{Scheme: p.SSL.Key.Scheme, KeyName: p.SSL.Key.KeyName, Ciphertext: p.SSL.Key.Ciphertext})
	if err != nil || string(plain) != string(want) {
		t.Fatalf("the sealed key opens as %d bytes (%v)", len(plain), err)
	}
	if f.sealer.count() != 2 {
		t.Fatalf("%d seals, want the password and the key", f.sealer.count())
	}
}

package commands_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/eventstore/memstore"
	"github.com/connreg/registry/internal/sealer/devseal"
)

// The command tests run every handler against the in-memory event store
// (it passes the NATS store's contract suite, internal/eventstore/
// eventstoretest) and the development sealer with a key in a temporary
// directory, with a clock and id generators the test controls. No server
// is started.

// clock is the handlers' clock: it stands still unless a test moves it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// ids hands out predictable ids, connection and event ids alike.
type ids struct {
	mu sync.Mutex
	n  int
}

func (g *ids) next() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	return fmt.Sprintf("00000000-0000-7000-8000-%012d", g.n)
}

// keyedID derives the id of an idempotent create from its scope, as the
// service's UUID v5 does: the same scope, the same id.
func keyedID(scope string) string {
	return fmt.Sprintf("keyed-%x", []byte(scope))
}

// countingSealer counts the seals a handler asks for.
type countingSealer struct {
	*devseal.Sealer
	mu    sync.Mutex
	seals int
}

func (s *countingSealer) Seal(ctx context.Context, binding string, plaintext []byte) (domain.SealedSecret, error) {
	s.mu.Lock()
	s.seals++
	s.mu.Unlock()
	return s.Sealer.Seal(ctx, binding, plaintext)
}

func (s *countingSealer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seals
}

type fixture struct {
	t      *testing.T
	store  *memstore.Store
	sealer *countingSealer
	clock  *clock
	ids    *ids
	create *commands.CreateHandler
	update *commands.UpdateHandler
	delete *commands.DeleteHandler
}

var origin = domain.Origin{Actor: "alice", RequestID: "req-1", CorrelationID: "corr-1"}

// caller is the scope of the tests' requests: the organization its
// connections belong to, every product (scope_test.go tests other scopes).
var caller = domain.Scope{Organization: domain.DefaultOrganization}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	dev, err := devseal.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, store: memstore.New(c.now), sealer: &countingSealer{Sealer: dev}, clock: c, ids: &ids{}}
	f.create, f.update, f.delete = f.handlers(f.store)
	return f
}

// handlers wires the create, update and delete handlers over store (the
// fixture's store, or a decorator of it).
func (f *fixture) handlers(store commands.EventStore) (*commands.CreateHandler, *commands.UpdateHandler, *commands.DeleteHandler) {
	f.t.Helper()
	create, err := commands.NewCreateHandler(commands.CreateDeps{Store: store, History: f.store, Sealer: f.sealer,
		NewID: f.ids.next, KeyedID: keyedID, Now: f.clock.now})
	if err != nil {
		f.t.Fatal(err)
	}
	update, err := commands.NewUpdateHandler(store, f.store, f.sealer, f.ids.next, f.clock.now)
	if err != nil {
		f.t.Fatal(err)
	}
	del, err := commands.NewDeleteHandler(store, f.store, f.ids.next, f.clock.now)
	if err != nil {
		f.t.Fatal(err)
	}
	return create, update, del
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// input is a valid create request for name.
func input(name string) domain.SpecInput {
	return domain.SpecInput{ProductName: "billing", ConfigName: name, Type: "POSTGRESQL", Host: "db.example.com",
		Port: 5432, DatabaseName: "ledger", UserName: "app", Password: []byte("pw-of-" + name)}
}

// clientCert is a client certificate and its private key in PEM, made once
// per test binary, for connections with a client key. (dbtest.CA makes
// certificates too, but importing dbtest links FerretDB and the database
// drivers into a test binary that should build and start in a moment.)
var clientCert = sync.OnceValues(func() (string, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
})

// withClientKey is a valid create request for name with a client
// certificate and its key (a fresh copy the handler may wipe).
func withClientKey(name string) domain.SpecInput {
	in := input(name)
	cert, key := clientCert()
	in.SSL = &domain.SSLInput{Mode: "verify-full", CA: cert, Cert: cert, Key: slices.Clone(key)}
	return in
}

// mustCreate registers a connection and returns its id.
func (f *fixture) mustCreate(name string) string {
	f.t.Helper()
	return f.mustCreateFrom(input(name))
}

// mustCreateFrom registers a connection from in and returns its id.
func (f *fixture) mustCreateFrom(in domain.SpecInput) string {
	f.t.Helper()
	name := in.ConfigName
	res, err := f.create.Handle(ctx(f.t), commands.CreateConnection{Scope: caller, Input: in, Origin: origin})
	if err != nil {
		f.t.Fatalf("create %q: %v", name, err)
	}
	return res.Connection.ID()
}

// history loads a connection's events.
func (f *fixture) history(id string) []events.Event {
	f.t.Helper()
	evs, _, err := f.store.Load(ctx(f.t), id)
	if err != nil {
		f.t.Fatalf("load %s: %v", id, err)
	}
	return evs
}

// types lists the event types of a history, oldest first.
func types(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = strings.TrimPrefix(strings.TrimSuffix(e.Type(), ".v1"), "connection.")
	}
	return out
}

func (f *fixture) assertHistory(id string, want ...string) []events.Event {
	f.t.Helper()
	evs := f.history(id)
	if got := types(evs); !slices.Equal(got, want) {
		f.t.Fatalf("history of %s = %v, want %v", id, got, want)
	}
	return evs
}

// aggregates counts the connections the store holds.
func (f *fixture) aggregates() int {
	f.t.Helper()
	ids, err := f.store.AggregateIDs(ctx(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	return len(ids)
}

// assertNameTaken checks that a new connection cannot take name.
func (f *fixture) assertNameTaken(name string) {
	f.t.Helper()
	if _, err := f.create.Handle(ctx(f.t), commands.CreateConnection{Scope: caller, Input: input(name), Origin: origin}); !errors.Is(err, domain.ErrNameTaken) {
		f.t.Fatalf("create of %q: %v, want domain.ErrNameTaken", name, err)
	}
}

// assertNameFree checks that a new connection can take name (and takes it).
func (f *fixture) assertNameFree(name string) {
	f.t.Helper()
	if _, err := f.create.Handle(ctx(f.t), commands.CreateConnection{Scope: caller, Input: input(name), Origin: origin}); err != nil {
		f.t.Fatalf("create of %q: %v, want the name free", name, err)
	}
}

// racingStore lets another writer change a connection between a handler's
// load and its append: before each of the first races appends it runs race,
// which writes through the fixture's own store, so the handler's append
// meets a real concurrent change.
type racingStore struct {
	commands.EventStore
	mu      sync.Mutex
	races   int
	race    func()
	appends int
}

func (r *racingStore) Append(ctx context.Context, a commands.Append) (uint64, error) {
	r.mu.Lock()
	r.appends++
	run := r.races > 0
	if run {
		r.races--
	}
	r.mu.Unlock()
	if run {
		r.race()
	}
	return r.EventStore.Append(ctx, a)
}

// racer returns a store on which the first races appends lose to a change
// of the connection's database name by another writer (a new name each
// time; a change that does not move the connection, so that it needs no
// password).
func (f *fixture) racer(id string, races int) *racingStore {
	n := 0
	return &racingStore{EventStore: f.store, races: races, race: func() {
		n++
		database := fmt.Sprintf("raced-%d", n)
		if _, err := f.update.Handle(context.Background(), commands.UpdateConnection{Scope: caller, ID: id,
			Input: domain.PatchInput{DatabaseName: &database}, Origin: domain.Origin{Actor: "racer"}}); err != nil {
			f.t.Errorf("the concurrent writer: %v", err)
		}
	}}
}

func ptr[T any](v T) *T { return &v }

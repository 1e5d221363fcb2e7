package commands_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/sealer/devseal"
)

// keyring is a sealer with key versions, for the reseal rules. Vault
// transit, the production one, needs a server (its rotation is tested in
// internal/bootstrap), and devseal has a single key version, so this test
// adapter writes the version that sealed a secret in front of a devseal
// ciphertext, as Vault's "vault:vN:" does. The sealing is devseal's AES-GCM
// bound to the connection id: a rewrap under the wrong binding fails for real.
type keyring struct {
	dev *devseal.Sealer

	mu      sync.Mutex
	version int
	rewraps int
	down    bool // the sealer is unreachable
	lagging bool // Rewrap answers a version below the newest
}

func newKeyring(t *testing.T) *keyring {
	dev, err := devseal.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &keyring{dev: dev, version: 1}
}

func (k *keyring) rotate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.version++
}

func (k *keyring) state() (version, rewraps int, down, lagging bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.version, k.rewraps, k.down, k.lagging
}

func (k *keyring) seal(ctx context.Context, binding string, plaintext []byte, version int) (domain.SealedSecret, error) {
	s, err := k.dev.Seal(ctx, binding, plaintext)
	s.Ciphertext = fmt.Sprintf("k%d:%s", version, s.Ciphertext)
	return s, err
}

func (k *keyring) Seal(ctx context.Context, binding string, plaintext []byte) (domain.SealedSecret, error) {
	v, _, _, _ := k.state()
	return k.seal(ctx, binding, plaintext, v)
}

func (k *keyring) Unseal(ctx context.Context, binding string, s domain.SealedSecret) ([]byte, error) {
	if _, err := sealedVersion(s); err != nil {
		return nil, err
	}
	_, s.Ciphertext, _ = strings.Cut(s.Ciphertext, ":")
	return k.dev.Unseal(ctx, binding, s)
}

func (k *keyring) KeyVersion(context.Context) (int, error) {
	v, _, down, _ := k.state()
	if down {
		return 0, domain.Unavailable(domain.DependencySealer, errors.New("keyring down"))
	}
	return v, nil
}

func (k *keyring) Rewrap(ctx context.Context, binding string, s domain.SealedSecret) (domain.SealedSecret, error) {
	k.mu.Lock()
	k.rewraps++
	version, down, lagging := k.version, k.down, k.lagging
	k.mu.Unlock()
	if down {
		return domain.SealedSecret{}, domain.Unavailable(domain.DependencySealer, errors.New("keyring down"))
	}
	plain, err := k.Unseal(ctx, binding, s)
	if err != nil {
		return domain.SealedSecret{}, err
	}
	defer clear(plain)
	if lagging {
		version--
	}
	return k.seal(ctx, binding, plain, version)
}

// sealedVersion reads the key version of a keyring secret.
func sealedVersion(s domain.SealedSecret) (int, error) {
	prefix, _, ok := strings.Cut(s.Ciphertext, ":")
	v, err := strconv.Atoi(strings.TrimPrefix(prefix, "k"))
	if !ok || !strings.HasPrefix(prefix, "k") || err != nil {
		return 0, errors.New("not a keyring secret")
	}
	return v, nil
}

// resealFixture is a fixture whose connections are sealed by a keyring.
type resealFixture struct {
	*fixture
	keys *keyring
}

func newResealFixture(t *testing.T) *resealFixture {
	f := newFixture(t)
	k := newKeyring(t)
	create, err := commands.NewCreateHandler(commands.CreateDeps{Store: f.store, History: f.store, Sealer: k,
		NewID: f.ids.next, KeyedID: keyedID, Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	f.create = create
	return &resealFixture{fixture: f, keys: k}
}

func (f *resealFixture) reseal(store commands.EventStore, workers int, progress func(commands.ResealProgress)) (commands.ResealReport, error) {
	f.t.Helper()
	h, err := commands.NewResealHandler(commands.ResealDeps{IDs: f.store, History: f.store, Store: store, Sealer: f.keys,
		SealedVersion: sealedVersion, NewID: f.ids.next, Now: f.clock.now, Workers: workers})
	if err != nil {
		f.t.Fatal(err)
	}
	return h.Handle(ctx(f.t), commands.ResealCredentials{Origin: domain.Origin{Actor: "reseal"}, Progress: progress})
}

// credentials are the sealed secrets of a connection as its history leaves
// them.
func (f *resealFixture) credentials(id string) domain.Credentials {
	f.t.Helper()
	conn, err := domain.Rebuild(f.history(id))
	if err != nil {
		f.t.Fatal(err)
	}
	return conn.Credentials()
}

func (f *resealFixture) password(id string) domain.SealedSecret { return f.credentials(id).Password }

func TestResealRotatesWhatIsStaleOnce(t *testing.T) {
	f := newResealFixture(t)
	stale := []string{f.mustCreate("alpha"), f.mustCreate("bravo"), f.mustCreateFrom(withClientKey("charlie"))}
	gone := f.mustCreate("delta")
	if _, err := f.delete.Handle(ctx(t), commands.DeleteConnection{Scope: caller, ID: gone, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	f.keys.rotate()
	current := f.mustCreate("echo") // sealed with the newest version already

	var mu sync.Mutex
	seen := map[string]commands.ResealOutcome{}
	var last commands.ResealReport
	report, err := f.reseal(f.store, 3, func(p commands.ResealProgress) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := seen[p.ID]; dup {
			t.Errorf("progress reported %s twice", p.ID)
		}
		seen[p.ID] = p.Outcome
		last = p.Report
	})
	if err != nil {
		t.Fatal(err)
	}
	want := commands.ResealReport{KeyVersion: 2, Total: 5, Examined: 5, Resealed: 3, Skipped: 2}
	if report != want || last != want {
		t.Fatalf("report %+v, last progress %+v, want %+v", report, last, want)
	}
	if seen[gone] != commands.ResealDeleted || seen[current] != commands.ResealCurrent {
		t.Fatalf("outcomes %v", seen)
	}
	for i, id := range stale {
		if seen[id] != commands.ResealResealed {
			t.Fatalf("outcome of %s: %s", id, seen[id])
		}
		evs := f.assertHistory(id, "created", "credentials-resealed")
		if evs[1].Actor != "reseal" || !evs[1].OccurredAt.Equal(f.clock.now()) {
			t.Fatalf("reseal event %+v", evs[1].Metadata)
		}
		pw := f.password(id)
		if v, _ := sealedVersion(pw); v != 2 {
			t.Fatalf("password of %s at key version %d after the reseal", id, v)
		}
		if key := f.credentials(id).SSLKey; !key.IsZero() {
			plain, err := f.keys.Unseal(ctx(t), id, key)
			_, want := clientCert()
			if v, _ := sealedVersion(key); v != 2 || err != nil || string(plain) != string(want) {
				t.Fatalf("client key of %s at key version %d after the reseal (%v)", id, v, err)
			}
		} else if i == 2 {
			t.Fatal("the client key was lost")
		}
		plain, err := f.keys.Unseal(ctx(t), id, pw)
		if name := []string{"alpha", "bravo", "charlie"}[i]; err != nil || string(plain) != "pw-of-"+name {
			t.Fatalf("resealed password opens as %q (%v)", plain, err)
		}
	}
	f.assertHistory(gone, "created", "deleted")
	f.assertHistory(current, "created")

	// Running again finds nothing to do and writes nothing.
	again, err := f.reseal(f.store, 3, nil)
	if err != nil || again.Resealed != 0 || again.Skipped != 5 || again.Failed != 0 {
		t.Fatalf("second run: %+v, %v", again, err)
	}
	for _, id := range stale {
		f.assertHistory(id, "created", "credentials-resealed")
	}
}

// TestResealFailuresAreCountedAndTheRunGoesOn: a secret the sealer cannot
// read, or a rewrap that does not reach the newest version, fails its
// connection without an event; the others are resealed.
func TestResealFailuresAreCountedAndTheRunGoesOn(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(f *resealFixture) string // returns the connection that fails
		wantErr string
	}{
		{"sealed by another scheme", func(f *resealFixture) string {
			// Created with the development sealer before the keyring.
			create, _, _ := f.handlers(f.store)
			res, err := create.Handle(ctx(f.t), commands.CreateConnection{Scope: caller, Input: input("foreign"), Origin: origin})
			if err != nil {
				f.t.Fatal(err)
			}
			return res.Connection.ID()
		}, "not a keyring secret"},
		{"a rewrap below the newest version", func(f *resealFixture) string {
			f.keys.rotate()
			f.keys.mu.Lock()
			f.keys.lagging = true
			f.keys.mu.Unlock()
			return ""
		}, "below key version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newResealFixture(t)
			good := f.mustCreate("good")
			bad := tc.setup(f)
			if bad == "" { // every connection fails
				bad = good
			} else {
				f.keys.rotate()
			}
			var failures []commands.ResealProgress
			report, err := f.reseal(f.store, 1, func(p commands.ResealProgress) {
				if p.Outcome == commands.ResealFailed {
					failures = append(failures, p)
				}
			})
			if err != nil {
				t.Fatalf("a failed connection stopped the run: %v", err)
			}
			if len(failures) != 1 || failures[0].ID != bad || !strings.Contains(failures[0].Err.Error(), tc.wantErr) ||
				report.Failed != 1 || report.Examined != report.Total {
				t.Fatalf("report %+v, failures %+v", report, failures)
			}
			f.assertHistory(bad, "created")
			if bad != good {
				f.assertHistory(good, "created", "credentials-resealed")
			}
		})
	}
}

// TestResealAfterAConcurrentChange: the API changes a connection between
// the reseal's load and its append; the reseal reloads, keeps the change,
// and reuses the rewrap it already has.
func TestResealAfterAConcurrentChange(t *testing.T) {
	tests := []struct {
		races int
		want  []string
		fails bool
	}{
		{1, []string{"created", "updated", "credentials-resealed"}, false},
		{commands.MaxConflictRetries + 1, []string{"created", "updated", "updated", "updated", "updated"}, true},
	}
	for _, tc := range tests {
		f := newResealFixture(t)
		id := f.mustCreate("raced")
		f.keys.rotate()
		report, err := f.reseal(f.racer(id, tc.races), 1, func(p commands.ResealProgress) {
			if tc.fails != (p.Outcome == commands.ResealFailed) || tc.fails && !errors.Is(p.Err, domain.ErrConcurrentChange) {
				t.Errorf("%d races: outcome %s (%v)", tc.races, p.Outcome, p.Err)
			}
		})
		if err != nil || report.Examined != 1 {
			t.Fatalf("%d races: %+v, %v", tc.races, report, err)
		}
		evs := f.assertHistory(id, tc.want...)
		if _, rewraps, _, _ := f.keys.state(); rewraps != 1 {
			t.Fatalf("%d races: %d rewraps, want 1 reused across the retries", tc.races, rewraps)
		}
		if !tc.fails {
			if p := evs[1].Payload.(*events.ConnectionUpdatedV1); p.DatabaseName == nil || *p.DatabaseName != "raced-1" {
				t.Fatalf("the concurrent change was lost: %+v", p)
			}
		}
	}
}

// TestResealStopsWhenTheSealerGoesAway: past the first reseal the sealer is
// unreachable; the run stops with the sealer's unavailability instead of
// failing every remaining connection, and its report counts what was done.
func TestResealStopsWhenTheSealerGoesAway(t *testing.T) {
	f := newResealFixture(t)
	ids := []string{f.mustCreate("one"), f.mustCreate("two"), f.mustCreate("three")}
	f.keys.rotate()
	report, err := f.reseal(f.store, 1, func(p commands.ResealProgress) {
		if p.Outcome == commands.ResealResealed {
			f.keys.mu.Lock()
			f.keys.down = true
			f.keys.mu.Unlock()
		}
	})
	var unavailable *domain.UnavailableError
	if !errors.As(err, &unavailable) || unavailable.Dependency != domain.DependencySealer {
		t.Fatalf("err = %v, want the sealer unavailable", err)
	}
	if report.Resealed != 1 || report.Failed != 1 || report.Examined != 2 || report.Total != 3 {
		t.Fatalf("report %+v", report)
	}
	resealed := 0
	for _, id := range ids {
		if slices.Contains(types(f.history(id)), "credentials-resealed") {
			resealed++
		}
	}
	if resealed != 1 {
		t.Fatalf("%d connections resealed, want 1", resealed)
	}

	// Once the sealer is back, a second run finishes the job.
	f.keys.mu.Lock()
	f.keys.down = false
	f.keys.mu.Unlock()
	report, err = f.reseal(f.store, 2, nil)
	if err != nil || report.Resealed != 2 || report.Skipped != 1 {
		t.Fatalf("second run: %+v, %v", report, err)
	}

	// No key version: nothing is listed or examined.
	f.keys.mu.Lock()
	f.keys.down = true
	f.keys.mu.Unlock()
	if report, err := f.reseal(f.store, 1, nil); !domain.IsUnavailable(err) || report.Total != 0 {
		t.Fatalf("without a key version: %+v, %v", report, err)
	}
}

package bootstrap_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/sealer/vault"
	"github.com/connreg/registry/internal/sealer/vault/vaulttest"
)

// rotationFixture is a running service sealing with a real Vault, holding
// connections whose plaintext secrets the test knows.
type rotationFixture struct {
	h   *harness
	v   *vaulttest.Server
	env map[string]string
	dir string
	// secrets maps a connection id to the plaintexts of its password and
	// (when it has one) SSL key.
	secrets map[string][]string
	live    []string
	deleted []string
}

// closedAddr is a loopback address nothing listens on, so the reseal's
// "is an API running on HTTP_ADDR" probe never meets another test's server.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// newRotationFixture creates `live` connections (the first with a client
// certificate and key) and one deleted connection, sealed under key
// version 1, on a service with an external NATS (NATS_URL), so that a reseal
// can run beside it.
func newRotationFixture(t *testing.T, live int) *rotationFixture {
	t.Helper()
	return newRotationFixtureOn(t, live, true)
}

// newRotationFixtureOn is newRotationFixture on an external NATS, or on the
// embedded stack (which only a process of its own can reach: a reseal runs
// on it once the API has stopped).
func newRotationFixtureOn(t *testing.T, live int, external bool) *rotationFixture {
	t.Helper()
	v := vaulttest.Start(t)
	f := &rotationFixture{
		v:       v,
		dir:     t.TempDir(),
		env:     map[string]string{"VAULT_ADDR": v.Addr, "VAULT_TOKEN": v.Token, "HTTP_ADDR": closedAddr(t)},
		secrets: map[string][]string{},
	}
	if external {
		f.env["NATS_URL"] = externalNATS(t).URL()
	}
	f.h = startService(t, f.dir, f.env)
	cert, key := clientCertificate(t)
	for i := range live + 1 {
		name := "rotated-" + string(rune('a'+i))
		body := validBody(name)
		body["password"] = "pw-" + uuid.NewString()
		secrets := []string{body["password"].(string)}
		if i == 0 {
			body["type"], body["port"] = "MYSQL", 3306
			body["ssl"] = map[string]any{"mode": "true", "cert": cert, "key": key}
			secrets = append(secrets, key)
		}
		res := f.h.create(body)
		if res.status != http.StatusCreated {
			t.Fatalf("create %s: %d %s", name, res.status, res.body)
		}
		id := res.json(t)["id"].(string)
		f.secrets[id] = secrets
		if i == live {
			if del := f.h.do(http.MethodDelete, "/v1/management/connections/"+id, nil, nil); del.status != http.StatusNoContent {
				t.Fatalf("delete: %d %s", del.status, del.body)
			}
			f.deleted = append(f.deleted, id)
			continue
		}
		f.live = append(f.live, id)
	}
	if n := v.RotateKey(t); n != 2 {
		t.Fatalf("key version after rotation = %d, want 2", n)
	}
	return f
}

// config is the service's configuration pointed at its running NATS, as an
// operator runs `NATS_URL=... api reseal` next to a running API (the fixture's
// service uses an external NATS: the embedded one has no listener).
func (f *rotationFixture) config(t *testing.T) bootstrap.Config {
	t.Helper()
	env := maps.Clone(f.env)
	env["NATS_URL"] = f.h.svc.NATSURL
	return testConfig(t, f.dir, env)
}

// reseal runs bootstrap.Reseal with the given options, returning its
// report, error and log.
func (f *rotationFixture) reseal(t *testing.T, ctx context.Context, cfg bootstrap.Config, opts bootstrap.ResealOptions) (commands.ResealReport, error, string) {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	report, err := bootstrap.Reseal(ctx, cfg, logger, opts)
	return report, err, logs.String()
}

// resealEvents returns, per connection, the credentials-resealed events in
// the stream, and fails the test when a message carries a plaintext secret.
func (f *rotationFixture) resealEvents(t *testing.T, h *harness) map[string][]*events.ConnectionCredentialsResealedV1 {
	t.Helper()
	out := map[string][]*events.ConnectionCredentialsResealedV1{}
	for _, m := range h.streamMessages("") {
		f.assertNoSecret(t, "stream message "+m.Subject, string(m.Data))
		if !strings.HasPrefix(m.Subject, events.EventSubjectPrefix) {
			continue
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := e.Payload.(*events.ConnectionCredentialsResealedV1); ok {
			if e.Actor != bootstrap.ResealActor {
				t.Errorf("reseal event actor = %q", e.Actor)
			}
			out[e.AggregateID] = append(out[e.AggregateID], p)
		}
	}
	return out
}

func (f *rotationFixture) assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, secrets := range f.secrets {
		for _, s := range secrets {
			if strings.Contains(text, s) || strings.Contains(text, firstLine(s)) {
				t.Fatalf("a plaintext secret is in %s", where)
			}
		}
	}
}

// firstLine is the first base64 line of a PEM key, or the secret itself.
func firstLine(s string) string {
	if lines := strings.Split(strings.TrimSpace(s), "\n"); len(lines) > 2 {
		return lines[1]
	}
	return s
}

// assertResealedOnce checks that every live connection has exactly one
// reseal event, whose ciphertexts are at key version 2 and decrypt to the
// connection's secrets under its own context only, and that deleted
// connections have none.
func (f *rotationFixture) assertResealedOnce(t *testing.T, got map[string][]*events.ConnectionCredentialsResealedV1) {
	t.Helper()
	for _, id := range f.deleted {
		if len(got[id]) != 0 {
			t.Errorf("deleted connection %s was resealed", id)
		}
	}
	for _, id := range f.live {
		if len(got[id]) != 1 {
			t.Fatalf("connection %s has %d reseal events, want 1", id, len(got[id]))
		}
		e := got[id][0]
		sealed := []events.SealedSecret{e.Password}
		if e.SSLKey != nil {
			sealed = append(sealed, *e.SSLKey)
		}
		if len(sealed) != len(f.secrets[id]) {
			t.Fatalf("connection %s: %d secrets resealed, want %d", id, len(sealed), len(f.secrets[id]))
		}
		other := f.live[0]
		if other == id {
			other = f.live[1]
		}
		for i, s := range sealed {
			if s.Scheme != vault.Scheme || s.KeyName != vaulttest.Key || !strings.HasPrefix(s.Ciphertext, "vault:v2:") {
				t.Fatalf("connection %s: resealed secret %d = %s/%s %.9s", id, i, s.Scheme, s.KeyName, s.Ciphertext)
			}
			plain, err := f.v.Client().Logical().Write("transit/decrypt/"+vaulttest.Key,
				map[string]any{"ciphertext": s.Ciphertext, "context": b64(id)})
			if err != nil || plain == nil || plain.Data["plaintext"] != b64(f.secrets[id][i]) {
				t.Fatalf("connection %s: resealed secret %d does not decrypt to its plaintext: %v", id, i, err)
			}
			if _, err := f.v.Client().Logical().Write("transit/decrypt/"+vaulttest.Key,
				map[string]any{"ciphertext": s.Ciphertext, "context": b64(other)}); err == nil {
				t.Fatalf("connection %s: resealed secret %d decrypts under another connection's context", id, i)
			}
		}
	}
}

// TestResealAfterKeyRotation rotates the transit key and reseals next to a
// running API: one event per live connection, under key version 2, bound to
// its connection, no plaintext anywhere; a second run appends nothing.
func TestResealAfterKeyRotation(t *testing.T) {
	f := newRotationFixture(t, 2)
	ctx, cancel := testContext(t)
	defer cancel()
	before := len(f.h.streamMessages(""))

	var mu sync.Mutex
	var progress []commands.ResealProgress
	report, err, logs := f.reseal(t, ctx, f.config(t), bootstrap.ResealOptions{Progress: func(p commands.ResealProgress) {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, p)
	}})
	if err != nil {
		t.Fatalf("reseal: %v", err)
	}
	want := commands.ResealReport{KeyVersion: 2, Total: 3, Examined: 3, Resealed: 2, Skipped: 1}
	if report != want {
		t.Fatalf("report = %+v, want %+v", report, want)
	}
	if len(progress) != 3 || progress[2].Report != want {
		t.Fatalf("progress = %+v", progress)
	}
	f.assertNoSecret(t, "the reseal's log", logs)
	f.assertNoSecret(t, "the service's log", f.h.logs.String())
	f.assertResealedOnce(t, f.resealEvents(t, f.h))
	if n := len(f.h.streamMessages("")); n != before+2 {
		t.Fatalf("%d stream messages after the reseal, want %d", n, before+2)
	}

	// The API follows: the projector applies the event and the connection
	// still reads, at its new version.
	eventually(t, "the read model reflects the reseal", func() bool {
		res := f.h.do(http.MethodGet, "/v1/management/connections/"+f.live[0], nil, nil)
		return res.status == http.StatusOK && res.header.Get("ETag") == `"2"`
	})

	again, err, _ := f.reseal(t, ctx, f.config(t), bootstrap.ResealOptions{})
	if err != nil {
		t.Fatalf("second reseal: %v", err)
	}
	if want := (commands.ResealReport{KeyVersion: 2, Total: 3, Examined: 3, Skipped: 3}); again != want {
		t.Fatalf("second report = %+v, want %+v", again, want)
	}
	if n := len(f.h.streamMessages("")); n != before+2 {
		t.Fatalf("the second reseal appended: %d stream messages, want %d", n, before+2)
	}
}

// TestResealResumesAfterACrash stops a run after its first reseal (the
// context ends, as when the process is killed), then runs again: the rest
// are resealed and none twice.
func TestResealResumesAfterACrash(t *testing.T) {
	f := newRotationFixture(t, 3)
	ctx, cancel := testContext(t)
	defer cancel()
	crashCtx, crash := context.WithCancel(ctx)
	first, err, _ := f.reseal(t, crashCtx, f.config(t), bootstrap.ResealOptions{Workers: 1, Progress: func(p commands.ResealProgress) {
		if p.Outcome == commands.ResealResealed {
			crash()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted reseal: err = %v, want context.Canceled", err)
	}
	if first.Resealed != 1 || first.Failed != 0 || first.Examined == first.Total {
		t.Fatalf("interrupted report = %+v", first)
	}
	if got := f.resealEvents(t, f.h); len(got) != 1 {
		t.Fatalf("%d connections resealed by the interrupted run, want 1", len(got))
	}

	second, err, _ := f.reseal(t, ctx, f.config(t), bootstrap.ResealOptions{})
	if err != nil {
		t.Fatalf("resumed reseal: %v", err)
	}
	want := commands.ResealReport{KeyVersion: 2, Total: 4, Examined: 4, Resealed: 2, Skipped: 2}
	if second != want {
		t.Fatalf("resumed report = %+v, want %+v", second, want)
	}
	f.assertResealedOnce(t, f.resealEvents(t, f.h))
}

// TestResealEmbeddedStackWithTheAPIStopped reseals the embedded stack under
// DATA_DIR (no NATS_URL): refused while something answers on HTTP_ADDR,
// done once the API is stopped, and the restarted API reads the result.
func TestResealEmbeddedStackWithTheAPIStopped(t *testing.T) {
	f := newRotationFixtureOn(t, 2, false)
	ctx, cancel := testContext(t)
	defer cancel()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := maps.Clone(f.env)
	busy["HTTP_ADDR"] = l.Addr().String()
	if _, err, _ := f.reseal(t, ctx, testConfig(t, f.dir, busy), bootstrap.ResealOptions{}); !errors.Is(err, bootstrap.ErrAPIRunning) {
		t.Fatalf("reseal of the embedded stack while HTTP_ADDR answers: err = %v, want ErrAPIRunning", err)
	}

	f.h.stop()
	report, err, _ := f.reseal(t, ctx, testConfig(t, f.dir, f.env), bootstrap.ResealOptions{})
	if err != nil {
		t.Fatalf("reseal: %v", err)
	}
	if report.Resealed != 2 || report.Skipped != 1 || report.Failed != 0 {
		t.Fatalf("report = %+v", report)
	}
	restarted := startService(t, f.dir, f.env)
	f.assertResealedOnce(t, f.resealEvents(t, restarted))
	for _, id := range f.live {
		eventually(t, "the restarted API reads "+id, func() bool {
			res := restarted.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil)
			return res.status == http.StatusOK && res.header.Get("ETag") == `"2"`
		})
	}
}

// TestResealWithTheDevelopmentSealerHasNothingToDo: without VAULT_ADDR
// there is one key version, so the reseal says so and touches nothing.
func TestResealWithTheDevelopmentSealerHasNothingToDo(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), nil)
	_, err := bootstrap.Reseal(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), bootstrap.ResealOptions{})
	if !errors.Is(err, bootstrap.ErrNothingToRotate) {
		t.Fatalf("err = %v, want ErrNothingToRotate", err)
	}
}

// racingRewrapper changes the connection through the API while its first
// rewrap is in flight, so that the reseal's append meets a concurrent
// change.
type racingRewrapper struct {
	*vault.Sealer
	once sync.Once
	race func()
}

func (r *racingRewrapper) Rewrap(ctx context.Context, binding string, s domain.SealedSecret) (domain.SealedSecret, error) {
	r.once.Do(r.race)
	return r.Sealer.Rewrap(ctx, binding, s)
}

// TestResealRetriesAConcurrentChange: a PATCH lands between the reseal's
// load and its append; the reseal reloads and appends after it, keeping the
// patch, and the connection is resealed once.
func TestResealRetriesAConcurrentChange(t *testing.T) {
	f := newRotationFixture(t, 2)
	ctx, cancel := testContext(t)
	defer cancel()
	sealer, err := vault.New(ctx, vault.Config{Addr: f.v.Addr, Token: f.v.Token, Timeout: 5 * time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sealer.Close()
	target := f.live[1]
	rewrapper := &racingRewrapper{Sealer: sealer, race: func() {
		res := f.h.do(http.MethodPatch, "/v1/management/connections/"+target,
			map[string]any{"metadata": map[string]any{"team": "raced"}}, nil)
		if res.status != http.StatusOK {
			t.Errorf("concurrent patch: %d %s", res.status, res.body)
		}
	}}
	store := f.h.svc.Store
	h, err := commands.NewResealHandler(commands.ResealDeps{
		IDs: onlyIDs{target}, History: store, Store: store, Sealer: rewrapper,
		SealedVersion: vault.CiphertextVersion, NewID: uuid.NewString,
		Now: time.Now, Workers: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	report, err := h.Handle(ctx, commands.ResealCredentials{Origin: domain.Origin{Actor: bootstrap.ResealActor}})
	if err != nil || report.Resealed != 1 || report.Failed != 0 {
		t.Fatalf("report = %+v, err = %v", report, err)
	}
	evs, _, err := store.Load(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[1].Type() != events.TypeConnectionUpdatedV1 || evs[2].Type() != events.TypeConnectionCredentialsResealedV1 {
		types := make([]string, len(evs))
		for i, e := range evs {
			types[i] = e.Type()
		}
		t.Fatalf("history = %v, want created, updated, resealed", types)
	}
	if got := f.resealEvents(t, f.h); len(got[target]) != 1 {
		t.Fatalf("%d reseal events for the raced connection", len(got[target]))
	}
}

// onlyIDs lists a fixed set of connections.
type onlyIDs []string

func (o onlyIDs) AggregateIDs(context.Context) ([]string, error) { return o, nil }

// TestResealStopsWhenVaultGoesAway: Vault stops after the first reseal; the
// run stops at the next connection with a sealer-unavailable error instead
// of failing every remaining one, and nothing more is appended.
func TestResealStopsWhenVaultGoesAway(t *testing.T) {
	f := newRotationFixture(t, 3)
	f.env["VAULT_TIMEOUT"] = "1s"
	ctx, cancel := testContext(t)
	defer cancel()
	report, err, logs := f.reseal(t, ctx, f.config(t), bootstrap.ResealOptions{Workers: 1, Progress: func(p commands.ResealProgress) {
		if p.Outcome == commands.ResealResealed {
			f.v.Stop()
		}
	}})
	var unavailable *domain.UnavailableError
	if !errors.As(err, &unavailable) || unavailable.Dependency != domain.DependencySealer {
		t.Fatalf("err = %v, want the sealer unavailable", err)
	}
	if report.Resealed != 1 || report.Failed != 1 || report.Examined != 2 {
		t.Fatalf("report = %+v", report)
	}
	f.assertNoSecret(t, "the reseal's log", logs+err.Error())
	if got := f.resealEvents(t, f.h); len(got) != 1 {
		t.Fatalf("%d connections resealed, want 1", len(got))
	}
}

// TestResealReportsASecretItCannotRewrapAndGoesOn: a connection sealed by
// the development sealer before Vault was configured cannot be rewrapped by
// Vault; it is reported as failed, without an event, and the others are
// resealed.
func TestResealReportsASecretItCannotRewrapAndGoesOn(t *testing.T) {
	f := newRotationFixture(t, 2)
	f.h.stop()
	dev := startService(t, f.dir, map[string]string{"HTTP_ADDR": f.env["HTTP_ADDR"], "NATS_URL": f.env["NATS_URL"]})
	res := dev.create(validBody("dev-sealed"))
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	devID := res.json(t)["id"].(string)
	dev.stop()
	f.h = startService(t, f.dir, f.env)

	ctx, cancel := testContext(t)
	defer cancel()
	var failed []commands.ResealProgress
	report, err, _ := f.reseal(t, ctx, f.config(t), bootstrap.ResealOptions{Progress: func(p commands.ResealProgress) {
		if p.Outcome == commands.ResealFailed {
			failed = append(failed, p)
		}
	}})
	if err != nil {
		t.Fatalf("reseal: %v", err)
	}
	if report.Resealed != 2 || report.Failed != 1 || report.Skipped != 1 {
		t.Fatalf("report = %+v", report)
	}
	if len(failed) != 1 || failed[0].ID != devID || !errors.Is(failed[0].Err, vault.ErrScheme) {
		t.Fatalf("failures = %+v", failed)
	}
	got := f.resealEvents(t, f.h)
	if len(got[devID]) != 0 {
		t.Fatal("the development-sealed connection got a reseal event")
	}
	f.assertResealedOnce(t, got)
}

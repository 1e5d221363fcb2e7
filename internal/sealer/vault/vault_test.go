package vault_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/internal/sealer/sealertest"
	"github.com/connreg/registry/internal/sealer/vault"
	"github.com/connreg/registry/internal/sealer/vault/vaulttest"
)

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func config(srv *vaulttest.Server) vault.Config {
	return vault.Config{
		Addr:         srv.Addr,
		Token:        srv.Token,
		CACert:       srv.CACert,
		TransitMount: srv.Mount,
		Key:          srv.Key,
		Timeout:      5 * time.Second,
	}
}

func newSealer(t testing.TB, cfg vault.Config) *vault.Sealer {
	t.Helper()
	s, err := vault.New(context.Background(), cfg, logger(t))
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	srv := vaulttest.Start(t)
	sealertest.Run(t, func(t *testing.T) sealertest.Sealer {
		return newSealer(t, config(srv))
	})
}

func TestContractWithoutCoalescing(t *testing.T) {
	srv := vaulttest.Start(t)
	sealertest.Run(t, func(t *testing.T) sealertest.Sealer {
		cfg := config(srv)
		cfg.MaxBatch = 1
		return newSealer(t, cfg)
	})
}

func TestCiphertextIsBoundToItsConnection(t *testing.T) {
	srv := vaulttest.Start(t)
	s := newSealer(t, config(srv))
	ctx := context.Background()

	sealed, err := s.Seal(ctx, "conn-a", []byte("secret-a"))
	if err != nil {
		t.Fatal(err)
	}
	if sealed.Scheme != vault.Scheme || sealed.KeyName != srv.Key || !strings.HasPrefix(sealed.Ciphertext, "vault:v1:") {
		t.Fatalf("sealed = %+v", sealed)
	}
	// The ciphertext copied onto another connection does not open there.
	_, err = s.Unseal(ctx, "conn-b", sealed)
	if !errors.Is(err, vault.ErrRejected) || domain.IsUnavailable(err) {
		t.Fatalf("Unseal under conn-b: err = %v, want ErrRejected", err)
	}
	if strings.Contains(err.Error(), "secret-a") {
		t.Fatalf("error leaks the plaintext: %v", err)
	}
	if _, err := s.Rewrap(ctx, "conn-b", sealed); !errors.Is(err, vault.ErrRejected) {
		t.Fatalf("Rewrap under conn-b: err = %v, want ErrRejected", err)
	}
	// Nor does it under another key name or scheme.
	wrongKey := sealed
	wrongKey.KeyName = "other"
	if _, err := s.Unseal(ctx, "conn-a", wrongKey); !errors.Is(err, vault.ErrScheme) {
		t.Fatalf("other key name: err = %v, want ErrScheme", err)
	}
}

func TestRotateThenRewrap(t *testing.T) {
	srv := vaulttest.Start(t)
	s := newSealer(t, config(srv))
	ctx := context.Background()

	old, err := s.Seal(ctx, "conn-1", []byte("pw-1"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := vault.CiphertextVersion(old); v != 1 {
		t.Fatalf("version before rotation = %d", v)
	}
	latest := srv.RotateKey(t)
	if got, err := s.KeyVersion(ctx); err != nil || got != latest || latest != 2 {
		t.Fatalf("KeyVersion = %d, %v; rotated to %d", got, err, latest)
	}

	rewrapped, err := s.Rewrap(ctx, "conn-1", old)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := vault.CiphertextVersion(rewrapped); v != latest {
		t.Fatalf("rewrapped %s is version %d, want %d", rewrapped, v, latest)
	}
	if !strings.HasPrefix(rewrapped.Ciphertext, fmt.Sprintf("vault:v%d:", latest)) {
		t.Fatalf("rewrapped ciphertext prefix: %.12s", rewrapped.Ciphertext)
	}
	for _, sealed := range []domain.SealedSecret{old, rewrapped} {
		pt, err := s.Unseal(ctx, "conn-1", sealed)
		if err != nil || string(pt) != "pw-1" {
			t.Fatalf("Unseal(%s) = %q, %v", sealed, pt, err)
		}
	}
	fresh, err := s.Seal(ctx, "conn-2", []byte("pw-2"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := vault.CiphertextVersion(fresh); v != latest {
		t.Fatalf("new seal uses version %d, want %d", v, latest)
	}
}

func TestVaultDownIsUnavailableQuickly(t *testing.T) {
	srv := vaulttest.Start(t)
	cfg := config(srv)
	cfg.Timeout = 10 * time.Second
	s := newSealer(t, cfg)
	srv.Stop()

	start := time.Now()
	_, err := s.Seal(context.Background(), "conn-1", []byte("pw-down"))
	elapsed := time.Since(start)
	assertUnavailable(t, err, "pw-down")
	// Connection refused must not be turned into a wait for the timeout.
	if elapsed >= cfg.Timeout/2 {
		t.Fatalf("Seal against a stopped Vault took %s (timeout %s)", elapsed, cfg.Timeout)
	}

	_, err = vault.New(context.Background(), cfg, logger(t))
	if !domain.IsUnavailable(err) {
		t.Fatalf("New against a stopped Vault: %v, want Unavailable", err)
	}
}

// blackhole accepts TCP connections on loopback and never answers.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close(); conns.Wait() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				go io.Copy(io.Discard, c) //nolint:errcheck // drains until closed
				<-done
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

// freezer is a loopback TCP proxy to Vault that can stop forwarding, so a
// sealer that started against a healthy Vault meets a hung one.
type freezer struct {
	addr   string
	frozen atomic.Bool
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{addr: "http://" + l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	target = strings.TrimPrefix(target, "http://")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				defer dst.Close()
				defer src.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !f.frozen.Load() {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return f
}

func TestSlowVaultIsCutAtTheTimeout(t *testing.T) {
	t.Run("at start", func(t *testing.T) {
		cfg := vault.Config{Addr: blackhole(t), Token: "t", Timeout: 300 * time.Millisecond}
		start := time.Now()
		_, err := vault.New(context.Background(), cfg, logger(t))
		if !domain.IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("New against a hung Vault: %v, want Unavailable deadline", err)
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Fatalf("New took %s with a 300ms timeout", elapsed)
		}
	})
	t.Run("while sealing", func(t *testing.T) {
		srv := vaulttest.Start(t)
		proxy := newFreezer(t, srv.Addr)
		cfg := config(srv)
		cfg.Addr = proxy.addr
		cfg.Timeout = 500 * time.Millisecond
		s := newSealer(t, cfg)
		if _, err := s.Seal(context.Background(), "conn-1", []byte("warm-up")); err != nil {
			t.Fatal(err)
		}
		proxy.frozen.Store(true)
		start := time.Now()
		_, err := s.Seal(context.Background(), "conn-1", []byte("pw-slow"))
		elapsed := time.Since(start)
		assertUnavailable(t, err, "pw-slow")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline", err)
		}
		if elapsed < cfg.Timeout || elapsed > cfg.Timeout+3*time.Second {
			t.Fatalf("Seal returned after %s, timeout %s", elapsed, cfg.Timeout)
		}
		proxy.frozen.Store(false)
	})
}

func TestDeniedIsUnavailable(t *testing.T) {
	srv := vaulttest.Start(t)
	// May read the key (so New succeeds) but not encrypt with it.
	token := srv.PolicyToken(t, "read-only", fmt.Sprintf(`path "%s/keys/%s" { capabilities = ["read"] }`, srv.Mount, srv.Key))
	cfg := config(srv)
	cfg.Token = token
	s := newSealer(t, cfg)
	_, err := s.Seal(context.Background(), "conn-1", []byte("pw-denied"))
	assertUnavailable(t, err, "pw-denied")
	if !errors.Is(err, vault.ErrDenied) {
		t.Fatalf("err = %v, want ErrDenied", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestAppRole(t *testing.T) {
	srv := vaulttest.Start(t)
	roleID, secretID := srv.AppRole(t, time.Hour, 2*time.Hour)
	cfg := config(srv)
	cfg.Token, cfg.RoleID, cfg.SecretID = "", roleID, secretID
	s := newSealer(t, cfg)
	roundTrip(t, s, "conn-approle")
	if got := s.Stats().Logins; got != 1 {
		t.Fatalf("logins = %d, want 1", got)
	}

	cfg.SecretID = "wrong-secret-id"
	_, err := vault.New(context.Background(), cfg, logger(t))
	if !errors.Is(err, vault.ErrLogin) || !strings.Contains(err.Error(), "VAULT_SECRET_ID") {
		t.Fatalf("wrong secret id: %v, want ErrLogin naming VAULT_SECRET_ID", err)
	}
	if strings.Contains(err.Error(), "wrong-secret-id") {
		t.Fatalf("error leaks the secret id: %v", err)
	}
}

func TestAppRoleLogsInAgainAtMaxTTL(t *testing.T) {
	srv := vaulttest.Start(t)
	roleID, secretID := srv.AppRole(t, 2*time.Second, 3*time.Second)
	cfg := config(srv)
	cfg.Token, cfg.RoleID, cfg.SecretID = "", roleID, secretID
	s := newSealer(t, cfg)

	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Logins < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("logins = %d after 30s with a 3s max TTL", s.Stats().Logins)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Well past the first token's max TTL, sealing still works.
	roundTrip(t, s, "conn-relogin")
}

func TestTLSWithCA(t *testing.T) {
	srv := vaulttest.Start(t, vaulttest.WithTLS())
	if !strings.HasPrefix(srv.Addr, "https://") {
		t.Fatalf("addr %s", srv.Addr)
	}
	s := newSealer(t, config(srv))
	roundTrip(t, s, "conn-tls")

	cfg := config(srv)
	cfg.CACert = ""
	_, err := vault.New(context.Background(), cfg, logger(t))
	if err == nil || !strings.Contains(err.Error(), "VAULT_CACERT") {
		t.Fatalf("without the CA: %v, want an error pointing at VAULT_CACERT", err)
	}
}

func TestStartupCheckSaysWhatIsMissing(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.CreateKey(t, "not-derived", false)

	for _, tc := range []struct {
		name     string
		change   func(*vault.Config)
		want     error
		mentions string
	}{
		{"mount", func(c *vault.Config) { c.TransitMount = "no-such-mount" }, vault.ErrMountMissing, `"no-such-mount"`},
		{"key", func(c *vault.Config) { c.Key = "no-such-key" }, vault.ErrKeyMissing, `"no-such-key"`},
		{"not derived", func(c *vault.Config) { c.Key = "not-derived" }, vault.ErrKeyNotDerived, "derived=true"},
		{"bad token", func(c *vault.Config) { c.Token = "s.not-a-token" }, vault.ErrLogin, "VAULT_TOKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(srv)
			tc.change(&cfg)
			_, err := vault.New(context.Background(), cfg, logger(t))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mentions) {
				t.Fatalf("err = %v, want %v mentioning %s", err, tc.want, tc.mentions)
			}
			if domain.IsUnavailable(err) {
				t.Fatalf("a misconfiguration reported as an outage: %v", err)
			}
		})
	}

	t.Run("created on request", func(t *testing.T) {
		cfg := config(srv)
		cfg.TransitMount, cfg.Key, cfg.CreateKey = "dev-transit", "dev-key", true
		s := newSealer(t, cfg)
		roundTrip(t, s, "conn-created")
		sec, err := srv.Client().Logical().Read("dev-transit/keys/dev-key")
		if err != nil || sec == nil || sec.Data["derived"] != true {
			t.Fatalf("created key: %v, %v", sec, err)
		}
	})
}

func TestCoalescing(t *testing.T) {
	srv := vaulttest.Start(t)
	cfg := config(srv)
	cfg.MaxInFlight = 1
	s := newSealer(t, cfg)
	ctx := context.Background()

	const n = 300
	sealed := make([]domain.SealedSecret, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			sealed[i], err = s.Seal(ctx, fmt.Sprintf("conn-%d", i), []byte(fmt.Sprintf("pw-%d", i)))
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("%d seals in %d requests (mean batch %.1f)", st.Items, st.Requests, float64(st.Items)/float64(st.Requests))
	if st.Items != n || st.Requests >= n {
		t.Fatalf("stats %+v: want %d items in fewer than %d requests", st, n, n)
	}

	// A batch mixing good and bad items gives each caller its own answer:
	// odd callers unseal under the wrong binding.
	before := s.Stats().Requests
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			binding := fmt.Sprintf("conn-%d", i)
			if i%2 == 1 {
				binding = "someone-else"
			}
			pt, err := s.Unseal(ctx, binding, sealed[i])
			switch {
			case i%2 == 1 && !errors.Is(err, vault.ErrRejected):
				t.Errorf("caller %d (wrong binding): %q, %v", i, pt, err)
			case i%2 == 0 && (err != nil || string(pt) != fmt.Sprintf("pw-%d", i)):
				t.Errorf("caller %d: %q, %v", i, pt, err)
			}
		}()
	}
	wg.Wait()
	if reqs := s.Stats().Requests - before; reqs >= n {
		t.Fatalf("%d unseals took %d requests", n, reqs)
	}
}

func TestWithoutCoalescingEachCallIsARequest(t *testing.T) {
	srv := vaulttest.Start(t)
	cfg := config(srv)
	cfg.MaxBatch = 1
	s := newSealer(t, cfg)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Seal(context.Background(), fmt.Sprint(i), []byte("x")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if st := s.Stats(); st.Requests != 20 || st.Items != 20 {
		t.Fatalf("stats %+v, want 20 requests", st)
	}
}

func TestCloseFinishesQueuedCalls(t *testing.T) {
	srv := vaulttest.Start(t)
	s, err := vault.New(context.Background(), config(srv), logger(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var ok, closed atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Seal(context.Background(), fmt.Sprint(i), []byte("x"))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, vault.ErrClosed) && domain.IsUnavailable(err):
				closed.Add(1)
			default:
				t.Errorf("call %d: %v", i, err)
			}
		}()
	}
	time.Sleep(time.Millisecond) // let some calls queue; either outcome is valid
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if ok.Load()+closed.Load() != 200 {
		t.Fatalf("ok %d + closed %d != 200", ok.Load(), closed.Load())
	}
	if _, err := s.Seal(context.Background(), "late", []byte("x")); !errors.Is(err, vault.ErrClosed) {
		t.Fatalf("Seal after Close: %v", err)
	}
}

func roundTrip(t *testing.T, s *vault.Sealer, binding string) {
	t.Helper()
	ctx := context.Background()
	sealed, err := s.Seal(ctx, binding, []byte("round-trip"))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	pt, err := s.Unseal(ctx, binding, sealed)
	if err != nil || string(pt) != "round-trip" {
		t.Fatalf("Unseal = %q, %v", pt, err)
	}
}

func assertUnavailable(t *testing.T, err error, plaintext string) {
	t.Helper()
	var u *domain.UnavailableError
	if !errors.As(err, &u) || u.Dependency != domain.DependencySealer {
		t.Fatalf("err = %v, want *domain.UnavailableError for %s", err, domain.DependencySealer)
	}
	if strings.Contains(err.Error(), plaintext) {
		t.Fatalf("error leaks the plaintext: %v", err)
	}
}

package auth_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/internal/auth"
	"github.com/connreg/registry/internal/auth/authtest"
)

// clock is the verifier's time: the wall clock plus an offset a test
// advances to pass the key-refresh rate limit without sleeping.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func newVerifier(t *testing.T, iss *authtest.Issuer, minRefresh time.Duration) *auth.Verifier {
	t.Helper()
	return newVerifierAt(t, iss, minRefresh, time.Now)
}

func newVerifierAt(t *testing.T, iss *authtest.Issuer, minRefresh time.Duration, now func() time.Time) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Issuer: iss.URL, Audience: authtest.Audience, ProductsClaim: "products", MinRefresh: minRefresh, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func with(claims map[string]any, k string, v any) map[string]any {
	c := map[string]any{}
	for key, val := range claims {
		c[key] = val
	}
	if v == nil {
		delete(c, k)
	} else {
		c[k] = v
	}
	return c
}

// TestVerifierRefusesEveryForgery: each token below must fail as an invalid
// token (401), never verify and never be mistaken for an outage.
func TestVerifierRefusesEveryForgery(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss, time.Hour)
	valid := iss.Claims("alice", "org-a", auth.ScopeRead)
	now := time.Now()
	stranger := authtest.NewKey(t, "key-1", jose.RS256) // the published kid, another key

	if _, err := v.Authenticate(context.Background(), iss.Token(t, valid)); err != nil {
		t.Fatalf("a valid token is refused: %v", err)
	}
	for _, tt := range []struct {
		name  string
		token string
	}{
		{"no token", ""},
		{"garbage", "not-a-jwt"},
		{"three garbage parts", "a.b.c"},
		{"alg none", authtest.Unsigned(t, valid)},
		{"HS256 signed with the public key", iss.HS256WithPublicKey(t, valid)},
		{"expired beyond the leeway", iss.Token(t, with(valid, "exp", now.Add(-61*time.Second).Unix()))},
		{"not valid for more than the leeway", iss.Token(t, with(valid, "nbf", now.Add(2*time.Minute).Unix()))},
		{"no exp", iss.Token(t, with(valid, "exp", nil))},
		{"wrong issuer", iss.Token(t, with(valid, "iss", "https://evil.example.com"))},
		{"wrong audience", iss.Token(t, with(valid, "aud", "another-service"))},
		{"unknown kid", authtest.Sign(t, authtest.NewKey(t, "key-unknown", jose.RS256), valid)},
		{"published kid, another key", authtest.Sign(t, stranger, valid)},
		{"missing org", iss.Token(t, with(valid, "org_id", nil))},
		{"empty org", iss.Token(t, with(valid, "org_id", ""))},
		{"org with subject syntax", iss.Token(t, with(valid, "org_id", "org.*"))},
		{"org not a string", iss.Token(t, with(valid, "org_id", 42))},
		{"missing sub", iss.Token(t, with(valid, "sub", nil))},
		{"products not an array", iss.Token(t, with(valid, "products", "p1"))},
		{"payload altered after signing", tamper(iss.Token(t, valid), iss.Token(t, with(valid, "org_id", "org-b")))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Authenticate(context.Background(), tt.token)
			var invalid *auth.InvalidTokenError
			if !errors.As(err, &invalid) {
				t.Fatalf("error = %v (%T), want *auth.InvalidTokenError", err, err)
			}
			if len(tt.token) > 8 && strings.Contains(invalid.Reason, tt.token) {
				t.Errorf("the reason quotes the token")
			}
		})
	}
}

// tamper puts the payload of b under the header and signature of a.
func tamper(a, b string) string {
	pa, pb := splitJWS(a), splitJWS(b)
	return pa[0] + "." + pb[1] + "." + pa[2]
}

func splitJWS(s string) [3]string {
	var out [3]string
	n := 0
	start := 0
	for i := 0; i < len(s) && n < 2; i++ {
		if s[i] == '.' {
			out[n] = s[start:i]
			n++
			start = i + 1
		}
	}
	out[2] = s[start:]
	return out
}

func TestVerifierReadsClaims(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss, time.Hour)
	now := time.Now()
	for _, tt := range []struct {
		name   string
		claims map[string]any
		want   auth.Principal
	}{
		{"scope string", iss.Claims("alice", "org-a", auth.ScopeRead, auth.ScopeWrite),
			auth.Principal{Subject: "alice", Organization: "org-a", Scopes: []string{auth.ScopeRead, auth.ScopeWrite}}},
		{"scp array", with(with(iss.Claims("bob", "org-b"), "scope", nil), "scp", []string{auth.ScopeTest}),
			auth.Principal{Subject: "bob", Organization: "org-b", Scopes: []string{auth.ScopeTest}}},
		{"products, lower-cased", with(iss.Claims("carol", "org-a", auth.ScopeRead), "products", []string{"Reports", "billing"}),
			auth.Principal{Subject: "carol", Organization: "org-a", Scopes: []string{auth.ScopeRead}, Products: []string{"reports", "billing"}}},
		{"expired within the leeway", with(iss.Claims("dave", "org-a"), "exp", now.Add(-30*time.Second).Unix()),
			auth.Principal{Subject: "dave", Organization: "org-a"}},
		{"nbf within the leeway", with(iss.Claims("erin", "org-a"), "nbf", now.Add(30*time.Second).Unix()),
			auth.Principal{Subject: "erin", Organization: "org-a"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Authenticate(context.Background(), iss.Token(t, tt.claims))
			if err != nil {
				t.Fatal(err)
			}
			if p.Subject != tt.want.Subject || p.Organization != tt.want.Organization ||
				!slices.Equal(p.Scopes, tt.want.Scopes) || !slices.Equal(p.Products, tt.want.Products) ||
				(p.Products == nil) != (tt.want.Products == nil) {
				t.Errorf("principal %+v, want %+v", p, tt.want)
			}
		})
	}
}

// TestVerifierKeyRefresh: a token under a new kid makes the verifier fetch
// the keys again, at most once per MinRefresh however many such tokens come.
func TestVerifierKeyRefresh(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss, time.Hour)
	ctx := context.Background()
	claims := iss.Claims("alice", "org-a", auth.ScopeRead)
	for range 3 {
		if _, err := v.Authenticate(ctx, iss.Token(t, claims)); err != nil {
			t.Fatal(err)
		}
	}
	if n := iss.KeyFetches.Load(); n != 1 {
		t.Fatalf("%d key fetches for one key, want 1", n)
	}
	// A flood of tokens under unknown kids within MinRefresh of the last
	// fetch: refused from the cache, the issuer is not asked again.
	for i := range 20 {
		tok := authtest.Sign(t, authtest.NewKey(t, "flood", jose.ES256), claims)
		if _, err := v.Authenticate(ctx, tok); err == nil {
			t.Fatalf("token %d under an unknown key verified", i)
		}
	}
	if n := iss.KeyFetches.Load(); n != 1 {
		t.Fatalf("%d key fetches after a flood of unknown kids, want still 1 (rate-limited)", n)
	}

	// Rotation: past MinRefresh, the new key is picked up without a restart.
	iss2 := authtest.NewIssuer(t)
	clk := &clock{}
	v2 := newVerifierAt(t, iss2, time.Minute, clk.now)
	c2 := iss2.Claims("alice", "org-a", auth.ScopeRead)
	if _, err := v2.Authenticate(ctx, iss2.Token(t, c2)); err != nil {
		t.Fatal(err)
	}
	iss2.Rotate(t, "key-2", jose.ES256)
	rotated := iss2.Token(t, c2)
	if _, err := v2.Authenticate(ctx, rotated); err == nil {
		t.Fatal("a new key was fetched within MinRefresh of the last fetch")
	}
	clk.advance(time.Minute)
	if _, err := v2.Authenticate(ctx, rotated); err != nil {
		t.Fatalf("a token of the rotated key: %v", err)
	}
}

// TestVerifierIssuerDown: without keys the answer is an outage (503), never
// a pass and never a 401; keys already held keep verifying.
func TestVerifierIssuerDown(t *testing.T) {
	ctx := context.Background()
	iss := authtest.NewIssuer(t)
	claims := iss.Claims("alice", "org-a", auth.ScopeRead)
	token := iss.Token(t, claims)

	clk := &clock{}
	cold := newVerifierAt(t, iss, time.Second, clk.now)
	iss.SetDown(true)
	_, err := cold.Authenticate(ctx, token)
	var down *domain.UnavailableError
	if !errors.As(err, &down) || down.Dependency != domain.DependencyIdentityProvider {
		t.Fatalf("issuer down, no keys: %v (%T), want an identity-provider UnavailableError", err, err)
	}
	iss.SetDown(false)
	if _, err := cold.Authenticate(ctx, token); !errors.As(err, &down) {
		t.Fatalf("within MinRefresh of the failed fetch: %v, want still unavailable (no new fetch)", err)
	}
	clk.advance(time.Second)
	if _, err := cold.Authenticate(ctx, token); err != nil {
		t.Fatalf("the issuer is back: %v", err)
	}
	iss.SetDown(true)
	if _, err := cold.Authenticate(ctx, token); err != nil {
		t.Fatalf("a held key stopped verifying while the issuer is down: %v", err)
	}
	unknown := authtest.Sign(t, authtest.NewKey(t, "key-9", jose.RS256), claims)
	clk.advance(time.Second)
	if _, err := cold.Authenticate(ctx, unknown); !errors.As(err, &down) {
		t.Fatalf("unknown kid while the issuer is down: %v, want unavailable", err)
	}

	iss.Close()
	closed := newVerifier(t, iss, time.Second)
	if _, err := closed.Authenticate(ctx, token); !errors.As(err, &down) {
		t.Fatalf("issuer unreachable: %v, want unavailable", err)
	}
	// A malformed token is refused without asking the issuer: still a 401.
	var invalid *auth.InvalidTokenError
	if _, err := closed.Authenticate(ctx, "garbage"); !errors.As(err, &invalid) {
		t.Fatalf("garbage while the issuer is down: %v", err)
	}
}

// TestVerifierFetchesOnceForConcurrentUnknownKids: many requests under new
// kids at once cause one fetch, not one each.
func TestVerifierFetchesOnceForConcurrentUnknownKids(t *testing.T) {
	iss := authtest.NewIssuer(t)
	clk := &clock{}
	v := newVerifierAt(t, iss, time.Minute, clk.now)
	claims := iss.Claims("alice", "org-a", auth.ScopeRead)
	if _, err := v.Authenticate(context.Background(), iss.Token(t, claims)); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Minute)
	tokens := make([]string, 32)
	for i := range tokens {
		tokens[i] = authtest.Sign(t, authtest.NewKey(t, "burst", jose.ES256), claims)
	}
	var wg sync.WaitGroup
	for _, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Authenticate(context.Background(), tok); err == nil {
				t.Error("a token under an unpublished key verified")
			}
		}()
	}
	wg.Wait()
	if n := iss.KeyFetches.Load(); n != 2 {
		t.Fatalf("%d key fetches for a burst of 32 unknown kids, want 2 (the first, then one)", n)
	}
}

// BenchmarkAuthenticate measures verifying an RS256 token whose key is held:
// the cost every request pays with AUTH_MODE=oidc.
func BenchmarkAuthenticate(b *testing.B) {
	iss := authtest.NewIssuer(b)
	v, err := auth.NewVerifier(auth.Config{Issuer: iss.URL, Audience: authtest.Audience})
	if err != nil {
		b.Fatal(err)
	}
	token := iss.Token(b, iss.Claims("alice", "org-a", auth.ScopeRead))
	ctx := context.Background()
	if _, err := v.Authenticate(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Authenticate(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}

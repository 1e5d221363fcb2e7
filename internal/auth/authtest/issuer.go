// Package authtest is a test helper: an OIDC issuer on loopback with keys
// generated in the test, which signs the tokens a test needs, valid or
// forged. It is not a stand-in for a real identity provider (the component
// tests also run Vault's); it exists to craft the tokens an identity provider
// never issues.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Audience is the aud of the issuer's tokens unless a test sets another.
const Audience = "connreg-test"

// Key is a signing key and the kid and algorithm it signs under.
type Key struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// Issuer serves a discovery document and a JWKS on a loopback httptest
// server and signs tokens with its keys.
type Issuer struct {
	URL string

	srv       *httptest.Server
	mu        sync.Mutex
	published []Key // in the JWKS
	signing   Key   // signs Token

	// KeyFetches counts requests for the JWKS.
	KeyFetches atomic.Int64
	down       atomic.Bool
}

// NewIssuer starts an issuer with one published RS256 key, "key-1".
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		if i.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                i.URL,
			"jwks_uri":                              i.URL + "/keys",
			"authorization_endpoint":                i.URL + "/authorize",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		i.KeyFetches.Add(1)
		if i.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		i.mu.Lock()
		set := jose.JSONWebKeySet{}
		for _, k := range i.published {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		i.mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	})
	i.srv = httptest.NewServer(mux)
	t.Cleanup(i.srv.Close)
	i.URL = i.srv.URL
	i.signing = i.Rotate(t, "key-1", jose.RS256)
	return i
}

// Rotate makes a new key of the algorithm (RS256 or ES256), publishes it
// beside the others and signs the next tokens with it.
func (i *Issuer) Rotate(t testing.TB, kid string, alg jose.SignatureAlgorithm) Key {
	t.Helper()
	k := NewKey(t, kid, alg)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = append(i.published, k)
	i.signing = k
	return k
}

// NewKey makes a key that no issuer publishes.
func NewKey(t testing.TB, kid string, alg jose.SignatureAlgorithm) Key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	return Key{kid: kid, alg: alg, priv: priv}
}

// SetDown makes the issuer answer 503 to discovery and key requests.
func (i *Issuer) SetDown(down bool) { i.down.Store(down) }

// Close stops the issuer: connections to it are refused.
func (i *Issuer) Close() { i.srv.Close() }

// Claims are the claims of a valid token for subject sub of organization
// org with the given scopes, valid for ten minutes.
func (i *Issuer) Claims(sub, org string, scopes ...string) map[string]any {
	now := time.Now()
	scope := ""
	for n, s := range scopes {
		if n > 0 {
			scope += " "
		}
		scope += s
	}
	return map[string]any{
		"iss": i.URL, "aud": Audience, "sub": sub, "org_id": org, "scope": scope,
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
}

// Token signs the claims with the issuer's current key.
func (i *Issuer) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	i.mu.Lock()
	k := i.signing
	i.mu.Unlock()
	return Sign(t, k, claims)
}

// Sign signs the claims with the key, as a compact JWS with its kid.
func Sign(t testing.TB, k Key, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Unsigned is the claims as a token with "alg": "none".
func Unsigned(t testing.TB, claims map[string]any) string {
	t.Helper()
	return encode(t, map[string]any{"alg": "none", "typ": "JWT"}, claims) + "."
}

// HS256WithPublicKey is the algorithm-confusion forgery: an HMAC-SHA256
// token whose secret is the issuer's current public key in PEM, under the
// key's kid, which a verifier that lets the token choose its algorithm would
// accept.
func (i *Issuer) HS256WithPublicKey(t testing.TB, claims map[string]any) string {
	t.Helper()
	i.mu.Lock()
	k := i.signing
	i.mu.Unlock()
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	signingInput := encode(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": k.kid}, claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signingInput))
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func encode(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
}

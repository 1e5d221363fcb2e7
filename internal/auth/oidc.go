package auth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/connreg/registry/domain"
)

// asymmetric are the only signature algorithms a token may use. "none" and
// the HMAC family are absent on purpose: an HMAC "signature" made with the
// issuer's public key as the secret is the classic forgery.
var asymmetric = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// MaxLeeway bounds the clock skew tolerated on exp and nbf.
const MaxLeeway = 60 * time.Second

// Config configures the OIDC verifier.
type Config struct {
	Issuer        string // AUTH_ISSUER; its discovery document names the keys
	Audience      string // AUTH_AUDIENCE: a required aud value
	OrgClaim      string // AUTH_ORG_CLAIM, default "org_id"
	ProductsClaim string // AUTH_PRODUCTS_CLAIM: optional array of allowed products

	// Leeway is the clock skew tolerated on exp and nbf; default and maximum MaxLeeway.
	Leeway time.Duration
	// MinRefresh is the least time between two fetches of the issuer's keys:
	// tokens with unknown key ids cannot make the service hammer the issuer.
	// Default 10s.
	MinRefresh time.Duration
	// KeyMaxAge is how long fetched keys are used before they are fetched
	// again, so that a withdrawn key stops verifying. Default 15m.
	KeyMaxAge time.Duration
	// HTTPClient fetches discovery and keys; default: a client with a 5s timeout.
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Verifier authenticates bearer tokens against an OIDC issuer. Signatures,
// algorithms, issuer and audience are checked by go-oidc and go-jose; the
// verifier keeps the issuer's keys (fetched through its discovery document),
// refreshes them when a token names an unknown key id (at most once per
// MinRefresh) and when they are older than KeyMaxAge, and checks exp and nbf
// with a bounded leeway (go-oidc tolerates five minutes on nbf and none on
// exp) and the registry's own claims.
type Verifier struct {
	cfg Config

	fetchMu sync.Mutex // one fetch at a time

	mu      sync.Mutex // guards what follows
	jwksURL string
	algs    []string
	keys    []jose.JSONWebKey
	fetched time.Time // last successful key fetch
	tried   time.Time // last fetch attempt
	lastErr error     // of the last attempt
}

// NewVerifier checks the configuration; it contacts nobody, so the service
// starts while the issuer is down (requests then answer 503).
func NewVerifier(c Config) (*Verifier, error) {
	if c.Issuer == "" || c.Audience == "" {
		return nil, errors.New("auth: the OIDC verifier needs an issuer and an audience")
	}
	if c.OrgClaim == "" {
		c.OrgClaim = "org_id"
	}
	if c.Leeway <= 0 || c.Leeway > MaxLeeway {
		c.Leeway = MaxLeeway
	}
	if c.MinRefresh <= 0 {
		c.MinRefresh = 10 * time.Second
	}
	if c.KeyMaxAge <= 0 {
		c.KeyMaxAge = 15 * time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Verifier{cfg: c}, nil
}

// Authenticate verifies a bearer token and returns its principal. It fails
// with *InvalidTokenError for a token that does not verify, and with a
// *domain.UnavailableError (domain.DependencyIdentityProvider) when the
// issuer's keys are needed and cannot be fetched: never a pass.
func (v *Verifier) Authenticate(ctx context.Context, raw string) (Principal, error) {
	if raw == "" {
		return Principal{}, invalid("no bearer token")
	}
	jws, err := jose.ParseSignedCompact(raw, asymmetric)
	if err != nil {
		return Principal{}, invalid("malformed token, or a signature algorithm other than RS*, PS*, ES* or EdDSA")
	}
	if len(jws.Signatures) != 1 {
		return Principal{}, invalid("a token must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, algs, err := v.keysFor(ctx, kid)
	if err != nil {
		return Principal{}, err
	}
	var pub []crypto.PublicKey
	for _, k := range keys {
		if kid == "" || k.KeyID == kid {
			pub = append(pub, k.Key)
		}
	}
	verifier := oidc.NewVerifier(v.cfg.Issuer, &oidc.StaticKeySet{PublicKeys: pub}, &oidc.Config{
		ClientID:             v.cfg.Audience,
		SupportedSigningAlgs: algs,
		SkipExpiryCheck:      true, // checked below with our own leeway
	})
	tok, err := verifier.Verify(ctx, raw)
	if err != nil {
		return Principal{}, invalid("the signature, issuer or audience does not verify")
	}
	return v.principal(tok)
}

func (v *Verifier) principal(tok *oidc.IDToken) (Principal, error) {
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return Principal{}, invalid("claims are not a JSON object")
	}
	now := v.cfg.Now()
	if tok.Expiry.IsZero() {
		return Principal{}, invalid("no exp claim")
	}
	if now.After(tok.Expiry.Add(v.cfg.Leeway)) {
		return Principal{}, invalid("the token has expired")
	}
	if raw, ok := claims["nbf"]; ok {
		var nbf float64
		if err := json.Unmarshal(raw, &nbf); err != nil {
			return Principal{}, invalid("nbf is not a number")
		}
		if now.Add(v.cfg.Leeway).Before(time.Unix(int64(nbf), 0)) {
			return Principal{}, invalid("the token is not valid yet (nbf)")
		}
	}
	if tok.Subject == "" || len(tok.Subject) > 255 {
		return Principal{}, invalid("sub must be 1 to 255 characters")
	}
	p := Principal{Subject: tok.Subject}
	var org string
	if err := json.Unmarshal(claims[v.cfg.OrgClaim], &org); err != nil || org == "" {
		return Principal{}, invalid("no " + v.cfg.OrgClaim + " claim naming the organization")
	}
	var err error
	if p.Organization, err = domain.ParseOrganization(org); err != nil {
		return Principal{}, invalid(v.cfg.OrgClaim + " " + err.Error())
	}
	if raw, ok := claims[v.cfg.ProductsClaim]; ok && v.cfg.ProductsClaim != "" {
		var products []string
		if err := json.Unmarshal(raw, &products); err != nil || products == nil {
			return Principal{}, invalid(v.cfg.ProductsClaim + " must be an array of product names")
		}
		p.Products = make([]string, 0, len(products))
		for _, s := range products {
			name, err := domain.ParseProductName(s)
			if err != nil {
				return Principal{}, invalid(v.cfg.ProductsClaim + " holds an invalid product name")
			}
			p.Products = append(p.Products, name)
		}
	}
	p.Scopes = scopes(claims)
	return p, nil
}

// scopes reads `scope` (OAuth 2.0, space-separated) and `scp` (an array, as
// Entra and Okta issue it, or a string).
func scopes(claims map[string]json.RawMessage) []string {
	var out []string
	var s string
	if json.Unmarshal(claims["scope"], &s) == nil {
		out = append(out, strings.Fields(s)...)
	}
	var list []string
	if json.Unmarshal(claims["scp"], &list) == nil {
		out = append(out, list...)
	} else if json.Unmarshal(claims["scp"], &s) == nil {
		out = append(out, strings.Fields(s)...)
	}
	return out
}

// keysFor returns the issuer's keys and algorithms, fetching them when the
// key id is unknown or the keys are old, at most once per MinRefresh.
func (v *Verifier) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, []string, error) {
	if keys, algs, ok := v.cached(kid); ok {
		return keys, algs, nil
	}
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	if keys, algs, ok := v.cached(kid); ok { // fetched while we waited
		return keys, algs, nil
	}
	v.mu.Lock()
	known := hasKey(v.keys, kid)
	limited := !v.tried.IsZero() && v.cfg.Now().Sub(v.tried) < v.cfg.MinRefresh
	keys, algs, lastErr := v.keys, v.algs, v.lastErr
	if !limited {
		v.tried = v.cfg.Now()
	}
	v.mu.Unlock()
	if limited {
		switch {
		case known:
			return keys, algs, nil
		case lastErr != nil:
			return nil, nil, domain.Unavailable(domain.DependencyIdentityProvider, lastErr)
		}
		return nil, nil, invalid("signed by a key the issuer does not publish")
	}
	// A fetch outlives the request that triggered it: other requests wait on it.
	err := v.refresh(context.WithoutCancel(ctx))
	v.mu.Lock()
	v.lastErr = err
	keys, algs = v.keys, v.algs
	v.mu.Unlock()
	switch {
	case err != nil && known:
		return keys, algs, nil // the issuer is down: keys we hold keep working until it is back
	case err != nil:
		return nil, nil, domain.Unavailable(domain.DependencyIdentityProvider, err)
	case !hasKey(keys, kid):
		return nil, nil, invalid("signed by a key the issuer does not publish")
	}
	return keys, algs, nil
}

func (v *Verifier) cached(kid string) ([]jose.JSONWebKey, []string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fresh := !v.fetched.IsZero() && v.cfg.Now().Sub(v.fetched) < v.cfg.KeyMaxAge
	return v.keys, v.algs, fresh && hasKey(v.keys, kid)
}

func hasKey(keys []jose.JSONWebKey, kid string) bool {
	if kid == "" {
		return len(keys) > 0
	}
	return slices.ContainsFunc(keys, func(k jose.JSONWebKey) bool { return k.KeyID == kid })
}

// refresh reads the discovery document (once) and the key set.
func (v *Verifier) refresh(ctx context.Context) error {
	ctx = oidc.ClientContext(ctx, v.cfg.HTTPClient)
	v.mu.Lock()
	jwksURL := v.jwksURL
	v.mu.Unlock()
	var algs []string
	if jwksURL == "" {
		provider, err := oidc.NewProvider(ctx, v.cfg.Issuer) // checks that the document names this issuer
		if err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
		var doc struct {
			JWKSURL string   `json:"jwks_uri"`
			Algs    []string `json:"id_token_signing_alg_values_supported"`
		}
		if err := provider.Claims(&doc); err != nil || doc.JWKSURL == "" {
			return errors.New("discovery: the document has no jwks_uri")
		}
		jwksURL = doc.JWKSURL
		for _, a := range asymmetric {
			if len(doc.Algs) == 0 || slices.Contains(doc.Algs, string(a)) {
				algs = append(algs, string(a))
			}
		}
		if len(algs) == 0 {
			return errors.New("discovery: the issuer declares no asymmetric signature algorithm")
		}
	}
	keys, err := v.fetchKeys(ctx, jwksURL)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if algs != nil {
		v.jwksURL, v.algs = jwksURL, algs
	}
	v.keys, v.fetched = keys, v.cfg.Now()
	return nil
}

// fetchKeys reads the issuer's JWKS and keeps its public signing keys.
func (v *Verifier) fetchKeys(ctx context.Context, url string) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("keys: %s answered %s", url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.IsPublic() && k.Valid() && (k.Use == "" || k.Use == "sig") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("keys: the issuer publishes no public signing key")
	}
	return keys, nil
}

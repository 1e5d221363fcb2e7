// Package vault seals connection credentials with HashiCorp Vault's transit
// engine. It is the production implementation of commands.Sealer: the
// plaintext goes to Vault and only the ciphertext comes back, bound to the
// connection through a derived key.
package vault

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/vault/api"

	"github.com/connreg/registry/domain"
)

// Scheme is the domain.SealedSecret scheme of everything this package seals.
const Scheme = "vault-transit"

// Errors callers and operators branch on. Runtime outages are reported as
// *domain.UnavailableError wrapping a description, not as these.
var (
	// ErrMountMissing: no secrets engine is mounted at the transit mount.
	ErrMountMissing = errors.New("transit mount missing")
	// ErrKeyMissing: the transit key does not exist.
	ErrKeyMissing = errors.New("transit key missing")
	// ErrKeyNotDerived: the key exists but is not a derived encryption key,
	// so it could not bind a ciphertext to its connection.
	ErrKeyNotDerived = errors.New("transit key not usable")
	// ErrLogin: Vault refused the configured credentials.
	ErrLogin = errors.New("vault login refused")
	// ErrDenied: the token may not use the transit key (policy).
	ErrDenied = errors.New("vault permission denied")
	// ErrRejected: Vault refused one ciphertext, e.g. it was sealed for
	// another connection or tampered with. Retrying will not help.
	ErrRejected = errors.New("vault rejected the ciphertext")
	// ErrScheme: the secret was not sealed by this sealer or key.
	ErrScheme = errors.New("secret sealed by another scheme or key")
	// ErrClosed: the sealer was closed.
	ErrClosed = errors.New("vault sealer closed")
)

// Stats counts the sealer's traffic to Vault, so that coalescing can be
// observed (Items/Requests is the mean batch size) and exported as metrics.
type Stats struct {
	Requests uint64 // transit HTTP requests sent
	Items    uint64 // seal, unseal and rewrap items carried by them
	Logins   uint64 // successful logins (AppRole) or token checks
	Renewals uint64 // token renewals
}

// Sealer encrypts credentials with a derived transit key whose context is
// the connection id, so a ciphertext copied to another connection cannot be
// decrypted there. Concurrent calls are coalesced into transit batch
// requests. It is safe for concurrent use; Close releases it.
type Sealer struct {
	cfg    Config
	client *api.Client
	log    *slog.Logger

	encrypt, decrypt, rewrap *batcher

	mu     sync.RWMutex // guards closed against enqueues
	closed bool

	requests, items, logins, renewals atomic.Uint64

	reauth     chan struct{} // nudges the auth loop after a 403
	stopAuth   context.CancelFunc
	authDone   chan struct{}
	flushes    sync.WaitGroup
	closeOnce  sync.Once
	batchersWG sync.WaitGroup
}

// New logs in to Vault, checks that the transit mount and the derived key
// exist (or creates them when cfg.CreateKey is set), and starts keeping the
// token alive. Unreachable or hung Vault yields a *domain.UnavailableError;
// a misconfiguration yields an error wrapping ErrLogin, ErrDenied,
// ErrMountMissing, ErrKeyMissing or ErrKeyNotDerived that says what to fix.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Sealer, error) {
	if logger == nil {
		return nil, errors.New("vault: nil logger")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	s := &Sealer{
		cfg:      cfg,
		client:   client,
		log:      logger.With("component", "vault-sealer"),
		reauth:   make(chan struct{}, 1),
		authDone: make(chan struct{}),
	}

	authSecret, err := s.login(ctx)
	if err != nil {
		return nil, err
	}
	latest, err := s.checkKey(ctx)
	if err != nil {
		return nil, err
	}

	authCtx, cancel := context.WithCancel(context.Background())
	s.stopAuth = cancel
	go s.keepAuth(authCtx, authSecret)

	s.encrypt = s.newBatcher("encrypt")
	s.decrypt = s.newBatcher("decrypt")
	s.rewrap = s.newBatcher("rewrap")

	s.log.Info("vault sealer ready",
		"addr", cfg.Addr, "auth", s.authMethod(), "mount", cfg.TransitMount, "key", cfg.Key,
		"latest_version", latest, "max_batch", cfg.MaxBatch, "max_in_flight", cfg.MaxInFlight)
	return s, nil
}

func newClient(cfg Config) (*api.Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	transport.MaxIdleConnsPerHost = 64
	ac := &api.Config{
		Address: cfg.Addr,
		// The per-call bound is the http.Client's (it also covers reading
		// the body) plus a context deadline per call. api.Config.Timeout
		// stays zero: the client would cancel it before WriteRaw's caller
		// reads the body.
		HttpClient: &http.Client{Transport: transport, Timeout: cfg.Timeout},
		// No retries inside the client: a failed call becomes an
		// Unavailable error at once, and the caller (an HTTP client
		// receiving 503) decides whether to retry.
		MaxRetries: 0,
	}
	ac.HttpClient.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cfg.CACert != "" {
		if err := ac.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault config: VAULT_CACERT %q: %w", cfg.CACert, err)
		}
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault config: VAULT_ADDR %q: %w", cfg.Addr, err)
	}
	// NewClient picks VAULT_TOKEN up from the process environment; the
	// injected configuration is the only source of credentials.
	client.ClearToken()
	return client, nil
}

func (s *Sealer) authMethod() string {
	if s.cfg.usesAppRole() {
		return "approle"
	}
	return "token"
}

// Seal encrypts plaintext for the connection named by binding. The result's
// Ciphertext is "vault:vN:...", N being the key version that sealed it.
func (s *Sealer) Seal(ctx context.Context, binding string, plaintext []byte) (domain.SealedSecret, error) {
	if binding == "" {
		return domain.SealedSecret{}, errors.New("vault seal: empty binding")
	}
	r, err := s.encrypt.do(ctx, map[string]string{
		"plaintext": base64.StdEncoding.EncodeToString(plaintext),
		"context":   encodeContext(binding),
	})
	if err != nil {
		return domain.SealedSecret{}, err
	}
	if r.Ciphertext == "" {
		return domain.SealedSecret{}, domain.Unavailable(domain.DependencySealer, errors.New("vault transit encrypt: empty ciphertext in answer"))
	}
	return s.sealed(binding, r.Ciphertext), nil
}

// sealed is a ciphertext of this sealer with what a holder of a
// decrypt-only token needs to open it: mount, key and derivation context.
func (s *Sealer) sealed(binding, ciphertext string) domain.SealedSecret {
	return domain.SealedSecret{Scheme: Scheme, Mount: s.cfg.TransitMount, KeyName: s.cfg.Key,
		Context: encodeContext(binding), Ciphertext: ciphertext}
}

// Describe fills in the mount and the derivation context of a secret this
// scheme sealed before they were recorded with it. The context is always
// the connection's: a copied ciphertext opens nowhere else.
func (s *Sealer) Describe(binding string, sealed domain.SealedSecret) domain.SealedSecret {
	if sealed.Scheme != Scheme {
		return sealed
	}
	if sealed.Mount == "" {
		sealed.Mount = s.cfg.TransitMount
	}
	sealed.Context = encodeContext(binding)
	return sealed
}

// Unseal decrypts a secret sealed for binding. A secret sealed for another
// connection fails with ErrRejected: the derived key differs.
func (s *Sealer) Unseal(ctx context.Context, binding string, sealed domain.SealedSecret) ([]byte, error) {
	if err := s.own(sealed); err != nil {
		return nil, err
	}
	r, err := s.decrypt.do(ctx, map[string]string{
		"ciphertext": sealed.Ciphertext,
		"context":    encodeContext(binding),
	})
	if err != nil {
		return nil, err
	}
	pt, err := base64.StdEncoding.DecodeString(r.Plaintext)
	if err != nil {
		return nil, domain.Unavailable(domain.DependencySealer, errors.New("vault transit decrypt: answer is not base64"))
	}
	return pt, nil
}

// Rewrap re-encrypts a sealed secret under the newest key version inside
// Vault (the plaintext never leaves it), so old key versions can be retired
// after a rotation.
func (s *Sealer) Rewrap(ctx context.Context, binding string, sealed domain.SealedSecret) (domain.SealedSecret, error) {
	if err := s.own(sealed); err != nil {
		return domain.SealedSecret{}, err
	}
	r, err := s.rewrap.do(ctx, map[string]string{
		"ciphertext": sealed.Ciphertext,
		"context":    encodeContext(binding),
	})
	if err != nil {
		return domain.SealedSecret{}, err
	}
	if r.Ciphertext == "" {
		return domain.SealedSecret{}, domain.Unavailable(domain.DependencySealer, errors.New("vault transit rewrap: empty ciphertext in answer"))
	}
	return s.sealed(binding, r.Ciphertext), nil
}

func (s *Sealer) own(sealed domain.SealedSecret) error {
	if sealed.Scheme != Scheme || sealed.KeyName != s.cfg.Key {
		return fmt.Errorf("vault: secret %s is not %s/%s: %w", sealed, Scheme, s.cfg.Key, ErrScheme)
	}
	if _, err := CiphertextVersion(sealed); err != nil {
		return err
	}
	return nil
}

// KeyVersion returns the transit key's latest version. A rotation job reads
// it once and skips every secret whose CiphertextVersion already equals it.
func (s *Sealer) KeyVersion(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	sec, err := s.readKey(ctx)
	if err != nil {
		return 0, s.unavailable("read key", err)
	}
	if sec == nil || sec.Data == nil {
		return 0, fmt.Errorf("vault: key %q at mount %q: %w", s.cfg.Key, s.cfg.TransitMount, ErrKeyMissing)
	}
	return intField(sec.Data["latest_version"])
}

var ciphertextVersion = regexp.MustCompile(`^vault:v([0-9]+):`)

// CiphertextVersion returns N of a "vault:vN:..." ciphertext: the key
// version that sealed it.
func CiphertextVersion(sealed domain.SealedSecret) (int, error) {
	m := ciphertextVersion.FindStringSubmatch(sealed.Ciphertext)
	if m == nil {
		return 0, fmt.Errorf("vault: ciphertext of %s lacks the vault:vN: prefix: %w", sealed, ErrScheme)
	}
	return strconv.Atoi(m[1])
}

// Stats returns the traffic counters since New.
func (s *Sealer) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Items: s.items.Load(), Logins: s.logins.Load(), Renewals: s.renewals.Load()}
}

// Close stops accepting calls, lets queued and in-flight calls finish (each
// is bounded by the timeout) and stops renewing the token. It does not
// revoke the token. Safe to call more than once.
func (s *Sealer) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.encrypt.in)
		close(s.decrypt.in)
		close(s.rewrap.in)
		s.mu.Unlock()
		s.batchersWG.Wait()
		s.flushes.Wait()
		s.stopAuth()
		<-s.authDone
	})
	return nil
}

func (s *Sealer) keyPath() string { return s.cfg.TransitMount + "/keys/" + s.cfg.Key }

// encodeContext turns a binding into the transit derivation context.
func encodeContext(binding string) string {
	return base64.StdEncoding.EncodeToString([]byte(binding))
}

func intField(v any) (int, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err
	case float64:
		return int(n), nil
	case int:
		return n, nil
	}
	return 0, fmt.Errorf("vault: unexpected number %T in answer", v)
}

// unavailable turns a failed call into a *domain.UnavailableError with a
// message that names the operation; Vault's answer never carries the
// plaintext, and neither does the request URL.
func (s *Sealer) unavailable(op string, err error) error {
	var re *api.ResponseError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("vault %s: no answer within %s (VAULT_TIMEOUT): %w", op, s.cfg.Timeout, context.DeadlineExceeded)
	case errors.As(err, &re) && re.StatusCode == http.StatusForbidden:
		s.nudgeReauth()
		err = fmt.Errorf("vault %s: permission denied (403) by %s; check the token's policy and expiry: %w", op, s.cfg.Addr, ErrDenied)
	case errors.As(err, &re) && re.RawError:
		err = fmt.Errorf("vault %s: status %d with a non-JSON answer", op, re.StatusCode)
	case errors.As(err, &re):
		err = fmt.Errorf("vault %s: status %d: %v", op, re.StatusCode, re.Errors)
	default:
		err = fmt.Errorf("vault %s: %w", op, err)
	}
	return domain.Unavailable(domain.DependencySealer, err)
}

func (s *Sealer) nudgeReauth() {
	if !s.cfg.usesAppRole() {
		return
	}
	select {
	case s.reauth <- struct{}{}:
	default:
	}
}

package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/connreg/registry/internal/retry"
	"github.com/hashicorp/vault/api"
)

// login authenticates and returns the secret whose lifetime keepAuth
// watches (nil when the token never expires).
func (s *Sealer) login(ctx context.Context) (*api.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if s.cfg.usesAppRole() {
		return s.loginAppRole(ctx)
	}
	s.client.SetToken(s.cfg.Token)
	sec, err := s.client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		if isStatus(err, http.StatusForbidden) {
			return nil, fmt.Errorf("VAULT_TOKEN: Vault at %s does not accept the token (expired, revoked or wrong): %w", s.cfg.Addr, ErrLogin)
		}
		return nil, s.startupErr("token lookup", err)
	}
	s.logins.Add(1)
	ttl, _ := sec.TokenTTL()
	renewable, _ := sec.TokenIsRenewable()
	if ttl <= 0 {
		return nil, nil
	}
	if !renewable {
		s.log.Warn("vault token is not renewable; sealing fails once it expires", "ttl", ttl.String())
		return nil, nil
	}
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   s.cfg.Token,
		Renewable:     true,
		LeaseDuration: int(ttl.Seconds()),
	}}, nil
}

func (s *Sealer) loginAppRole(ctx context.Context) (*api.Secret, error) {
	path := "auth/" + s.cfg.AppRoleMount + "/login"
	// A login must not carry a previous (perhaps expired) token.
	client, err := s.client.Clone()
	if err != nil {
		return nil, fmt.Errorf("vault approle login: %w", err)
	}
	client.ClearToken()
	sec, err := client.Logical().WriteWithContext(ctx, path, map[string]any{
		"role_id":   s.cfg.RoleID,
		"secret_id": s.cfg.SecretID,
	})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 {
			return nil, fmt.Errorf("VAULT_ROLE_ID/VAULT_SECRET_ID: AppRole login at %s refused (status %d: %s): %w",
				path, re.StatusCode, strings.Join(re.Errors, "; "), ErrLogin)
		}
		return nil, s.startupErr("approle login", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, fmt.Errorf("vault approle login at %s: answer has no token: %w", path, ErrLogin)
	}
	s.client.SetToken(sec.Auth.ClientToken)
	s.logins.Add(1)
	return sec, nil
}

// startupErr classifies a failure during New: a Vault that cannot be
// reached or does not answer is Unavailable (retrying later may work).
func (s *Sealer) startupErr(op string, err error) error {
	var (
		re      *api.ResponseError
		unknown x509.UnknownAuthorityError
		verify  *tls.CertificateVerificationError
		host    x509.HostnameError
	)
	if errors.As(err, &unknown) || errors.As(err, &verify) || errors.As(err, &host) {
		return fmt.Errorf("vault %s at %s: Vault's TLS certificate is not trusted; set VAULT_CACERT to the CA that signed it: %w", op, s.cfg.Addr, err)
	}
	if errors.As(err, &re) && re.StatusCode < 500 && re.StatusCode != http.StatusTooManyRequests {
		return fmt.Errorf("vault %s at %s: status %d: %s", op, s.cfg.Addr, re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return s.unavailable(op, err)
}

// checkKey verifies that the transit mount and the derived key exist, or
// creates them when CreateKey is set. It returns the key's latest version.
func (s *Sealer) checkKey(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	mount, key := s.cfg.TransitMount, s.cfg.Key

	sec, err := s.readKey(ctx)
	switch {
	case isStatus(err, http.StatusForbidden):
		return 0, fmt.Errorf("vault: the token may not read %s; its policy needs read on %q and update on %q, %q and %q: %w",
			s.keyPath(), s.keyPath(), mount+"/encrypt/"+key, mount+"/decrypt/"+key, mount+"/rewrap/"+key, ErrDenied)
	case err != nil && isNoRoute(err):
		if !s.cfg.CreateKey {
			return 0, fmt.Errorf("vault: no transit engine is mounted at %q (VAULT_TRANSIT_MOUNT); enable it with `vault secrets enable -path=%s transit`, or set VAULT_CREATE_KEY=true in development: %w",
				mount, mount, ErrMountMissing)
		}
		if err := s.client.Sys().MountWithContext(ctx, mount, &api.MountInput{Type: "transit"}); err != nil {
			return 0, s.startupErr("enable transit mount "+mount, err)
		}
		s.log.Info("vault transit mount enabled", "mount", mount)
		sec = nil
	case err != nil:
		return 0, s.startupErr("read key "+s.keyPath(), err)
	}

	if sec == nil || sec.Data == nil {
		if !s.cfg.CreateKey {
			return 0, fmt.Errorf("vault: transit key %q does not exist at mount %q (VAULT_TRANSIT_KEY); create it with `vault write -f %s derived=true`, or set VAULT_CREATE_KEY=true in development: %w",
				key, mount, s.keyPath(), ErrKeyMissing)
		}
		if _, err := s.client.Logical().WriteWithContext(ctx, s.keyPath(), map[string]any{
			"derived": true,
			"type":    "aes256-gcm96",
		}); err != nil {
			return 0, s.startupErr("create key "+s.keyPath(), err)
		}
		s.log.Info("vault transit key created", "mount", mount, "key", key)
		if sec, err = s.readKey(ctx); err != nil || sec == nil {
			if err == nil {
				err = errors.New("key missing right after creation")
			}
			return 0, s.startupErr("read key "+s.keyPath(), err)
		}
	}

	if derived, _ := sec.Data["derived"].(bool); !derived {
		return 0, fmt.Errorf("vault: transit key %q at mount %q is not derived, so it cannot bind a ciphertext to its connection; create a new key with derived=true (derivation cannot be turned on later): %w",
			key, mount, ErrKeyNotDerived)
	}
	if ok, _ := sec.Data["supports_encryption"].(bool); !ok {
		return 0, fmt.Errorf("vault: transit key %q at mount %q (type %v) cannot encrypt; use type aes256-gcm96: %w",
			key, mount, sec.Data["type"], ErrKeyNotDerived)
	}
	return intField(sec.Data["latest_version"])
}

// readKey reads the key's description: (nil, nil) when the key is missing,
// an error satisfying isNoRoute when the mount is. Logical().Read cannot
// tell the two apart: it turns every 404 into (nil, nil).
func (s *Sealer) readKey(ctx context.Context) (*api.Secret, error) {
	resp, err := s.client.Logical().ReadRawWithContext(ctx, s.keyPath())
	if resp != nil && resp.Body != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		if isStatus(err, http.StatusNotFound) && !isNoRoute(err) {
			return nil, nil
		}
		return nil, err
	}
	if resp == nil {
		return nil, errors.New("empty answer")
	}
	return api.ParseSecret(resp.Body)
}

func isStatus(err error, code int) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

// isNoRoute recognises Vault's answer for a path no engine is mounted at.
func isNoRoute(err error) bool {
	var re *api.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, "no handler for route") {
			return true
		}
	}
	return false
}

// keepAuth keeps the token valid until ctx ends: it renews it with a
// LifetimeWatcher and, for AppRole, logs in again when it can no longer be
// renewed (max TTL) or when a call was denied.
func (s *Sealer) keepAuth(ctx context.Context, secret *api.Secret) {
	defer close(s.authDone)
	for {
		if secret == nil {
			if !s.cfg.usesAppRole() {
				return // a token without expiry needs no care
			}
			if secret = s.relogin(ctx); secret == nil {
				return
			}
		}
		watcher, err := s.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
		if err != nil {
			s.log.Error("vault token renewal cannot start", "err", err)
			return
		}
		go watcher.Start()
		reason := s.watch(ctx, watcher, time.Now())
		watcher.Stop()
		if reason == "" {
			return
		}
		if !s.cfg.usesAppRole() {
			s.log.Warn("vault token can no longer be renewed; sealing fails once it expires", "reason", reason)
			return
		}
		s.log.Info("vault token needs a new login", "reason", reason)
		secret = nil
	}
}

// watch waits until the watcher gives up, a call was denied, or ctx ends
// (reason ""). Denials within reloginSpacing of the last login are ignored,
// so a policy problem does not turn into a login storm.
func (s *Sealer) watch(ctx context.Context, w *api.LifetimeWatcher, loggedIn time.Time) string {
	for {
		select {
		case <-ctx.Done():
			return ""
		case err := <-w.DoneCh():
			if err != nil {
				return "renewal failed: " + err.Error()
			}
			return "token reached its maximum TTL"
		case r := <-w.RenewCh():
			s.renewals.Add(1)
			if r.Secret != nil && r.Secret.Auth != nil {
				s.log.Debug("vault token renewed", "ttl_seconds", r.Secret.Auth.LeaseDuration)
			}
		case <-s.reauth:
			if time.Since(loggedIn) >= reloginSpacing {
				return "a call was denied"
			}
		}
	}
}

const reloginSpacing = 5 * time.Second

// relogin logs in with AppRole until it succeeds or ctx ends, backing off
// (with jitter) from 250ms to 30s between attempts.
func (s *Sealer) relogin(ctx context.Context) *api.Secret {
	b := retry.Backoff(250*time.Millisecond, 30*time.Second)
	for {
		sec, err := s.login(ctx)
		if err == nil {
			return sec
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := b.NextBackOff()
		s.log.Warn("vault login failed; retrying", "err", err, "retry_in", wait.String())
		if !retry.Wait(ctx, wait) {
			return nil
		}
	}
}

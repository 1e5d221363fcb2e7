// Package sealed opens the registry's sealed secrets inside a downstream
// service, with that service's own Vault identity. The registry never hands
// out plaintext: it hands out ciphertext (events, or GET ...?include=sealedSecrets)
// and Vault decides, by policy, who may decrypt it, and records every
// decryption in its audit log. See docs/credentials.md for the policy a
// consumer needs (update on <mount>/decrypt/<key>, nothing else).
//
// Unlike the events package, which stays standard-library only, this package
// depends on HashiCorp's vault/api client.
package sealed

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/api"

	"github.com/connreg/registry/events"
)

// SchemeVaultTransit is the scheme of secrets sealed with Vault transit,
// the only scheme a downstream service can open.
const SchemeVaultTransit = "vault-transit"

// Errors Open returns, to branch on with errors.Is.
var (
	// ErrNotAllowed: Vault refused the decryption (403): the token lacks the
	// decrypt policy for this mount and key, or has expired.
	ErrNotAllowed = errors.New("sealed: Vault refused to decrypt: the token is not allowed (see docs/credentials.md)")
	// ErrNotOpenable: the secret was sealed by the registry's development
	// sealer, whose key never leaves the registry.
	ErrNotOpenable = errors.New("sealed: only the registry can open a secret of this scheme (development sealer)")
	// ErrIncomplete: mount, key name, context or ciphertext is missing; fill
	// an older event's secret with Fill.
	ErrIncomplete = errors.New("sealed: the secret lacks its mount, key name, context or ciphertext")
	// ErrRejected: Vault could not decrypt it: the ciphertext was altered or
	// belongs to another connection (the derivation context differs).
	ErrRejected = errors.New("sealed: Vault rejected the ciphertext (altered, or another connection's context)")
)

// Fill completes a secret from an event published before the mount and the
// context were recorded with it: the context is the base64 of the connection
// id (the key is derived per connection) and the mount is the registry's
// transit mount (VAULT_TRANSIT_MOUNT, default "transit").
func Fill(s events.SealedSecret, connectionID, mount string) events.SealedSecret {
	if s.Scheme != SchemeVaultTransit {
		return s
	}
	if s.Mount == "" {
		s.Mount = mount
	}
	if s.Context == "" {
		s.Context = base64.StdEncoding.EncodeToString([]byte(connectionID))
	}
	return s
}

// Open decrypts s with client's token through Vault transit and returns the
// plaintext. The caller owns the plaintext: keep it in memory only for as
// long as the database connection needs it.
func Open(ctx context.Context, client *api.Client, s events.SealedSecret) ([]byte, error) {
	if s.Scheme != SchemeVaultTransit {
		if s.Scheme == "dev" {
			return nil, ErrNotOpenable
		}
		return nil, fmt.Errorf("sealed: unknown scheme %q", s.Scheme)
	}
	if s.Mount == "" || s.KeyName == "" || s.Context == "" || s.Ciphertext == "" {
		return nil, ErrIncomplete
	}
	sec, err := client.Logical().WriteWithContext(ctx, s.Mount+"/decrypt/"+s.KeyName, map[string]any{
		"ciphertext": s.Ciphertext,
		"context":    s.Context,
	})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) {
			switch {
			case re.StatusCode == http.StatusForbidden:
				return nil, fmt.Errorf("%w (%s/decrypt/%s)", ErrNotAllowed, s.Mount, s.KeyName)
			case re.StatusCode == http.StatusBadRequest:
				return nil, ErrRejected
			}
		}
		return nil, fmt.Errorf("sealed: Vault transit decrypt: %w", err)
	}
	if sec == nil || sec.Data == nil {
		return nil, errors.New("sealed: Vault answered no data")
	}
	b64, _ := sec.Data["plaintext"].(string)
	plain, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("sealed: Vault's plaintext is not base64")
	}
	return plain, nil
}

package domain

import (
	"errors"
	"fmt"
)

// SealedSecret is a credential after a Sealer has encrypted it: the only form
// in which a password or a private key may be stored, published or logged.
// Scheme names the sealer that made it ("vault-transit" or "dev"), KeyName the
// key (for Vault, the transit key name) and Ciphertext the sealer's output,
// which carries its own prefix ("vault:v1:..." or "devseal:v1:...").
//
// Mount and Context say how to open it where the scheme allows anyone but
// the registry to: for Vault transit, the mount of the transit engine and the
// base64 key-derivation context (bound to the connection id), which a
// downstream service with decrypt-only rights passes to transit/decrypt.
// Secrets sealed before these fields existed have them empty; a sealer's
// Describe fills them in.
type SealedSecret struct {
	Scheme     string
	Mount      string
	KeyName    string
	Context    string
	Ciphertext string
}

// IsZero reports whether the secret is absent.
func (s SealedSecret) IsZero() bool { return s.Ciphertext == "" }

// String never prints the ciphertext in full, so that a sealed secret that
// reaches a log by accident still says little.
func (s SealedSecret) String() string {
	if s.IsZero() {
		return "<none>"
	}
	return fmt.Sprintf("<sealed %s/%s>", s.Scheme, s.KeyName)
}

// UnavailableError says that a dependency (the event store, the read model
// store, the sealer) could not be reached or refused to serve. The HTTP layer
// turns it into 503 with a code of the dependency's own; nothing was written.
type UnavailableError struct {
	Dependency string // "event-store", "read-model", "sealer"
	Err        error
}

// Dependencies named by UnavailableError.
const (
	DependencyEventStore = "event-store"
	DependencyReadModel  = "read-model"
	DependencySealer     = "sealer"
	// DependencyIdentityProvider: the OIDC issuer whose keys verify tokens.
	DependencyIdentityProvider = "identity-provider"
)

func (e *UnavailableError) Error() string {
	return e.Dependency + " unavailable: " + e.Err.Error()
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable wraps err as an UnavailableError of the given dependency.
func Unavailable(dependency string, err error) error {
	return &UnavailableError{Dependency: dependency, Err: err}
}

// IsUnavailable reports whether err is, or wraps, an UnavailableError.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

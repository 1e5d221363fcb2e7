// Package auth establishes who calls the API: it verifies OIDC/JWT bearer
// tokens against an issuer's published keys (AUTH_MODE=oidc), or names every
// caller anonymous in the single default organization (AUTH_MODE=off, for
// development on loopback only).
package auth

import (
	"context"
	"slices"

	"github.com/connreg/registry/domain"
)

// Scopes a token grants, from its `scope` (space-separated) or `scp` (array)
// claim. None implies another.
const (
	ScopeRead  = "connections:read"  // GET one, list, history, asOf
	ScopeWrite = "connections:write" // create, PATCH, DELETE
	ScopeTest  = "connections:test"  // both test endpoints
	// ScopeSealed lets a reader receive sealed credentials
	// (?include=sealedSecrets); no other scope implies it.
	ScopeSealed = "connections:sealed"
)

// Principal is the caller a verified token names.
type Principal struct {
	Subject      string   // the token's sub: the actor recorded in every event
	Organization string   // the organization claim
	Scopes       []string // granted scopes
	Products     []string // the products claim, lower case; nil when the token has none (every product)
}

// HasScope reports whether the token grants the scope.
func (p Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// Scope is the part of the registry the principal may see and change.
func (p Principal) Scope() domain.Scope {
	return domain.Scope{Organization: p.Organization, Products: p.Products}
}

// InvalidTokenError says the request carries no token, or one that does not
// verify: malformed, badly signed, expired, from another issuer or audience,
// or without the claims the registry needs. Reason is safe to show the
// caller: it never contains the token.
type InvalidTokenError struct{ Reason string }

func (e *InvalidTokenError) Error() string { return "invalid token: " + e.Reason }

func invalid(reason string) error { return &InvalidTokenError{Reason: reason} }

// InsufficientScopeError says the token is valid but does not grant the
// scope the request needs.
type InsufficientScopeError struct{ Scope string }

func (e *InsufficientScopeError) Error() string { return "insufficient scope: needs " + e.Scope }

// Off is the authenticator of AUTH_MODE=off (development on loopback): every
// caller is "anonymous" in domain.DefaultOrganization with every scope and
// every product. It ignores any Authorization header.
type Off struct{}

// Authenticate names the anonymous caller.
func (Off) Authenticate(context.Context, string) (Principal, error) {
	return Principal{Subject: "anonymous", Organization: domain.DefaultOrganization,
		Scopes: []string{ScopeRead, ScopeWrite, ScopeTest, ScopeSealed}}, nil
}

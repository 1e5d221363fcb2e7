package domain

import (
	"fmt"
	"slices"
)

// Scope is the part of the registry one caller may see and change: one
// organization and, when Products is not nil, only those products. A
// connection outside a caller's scope is reported as not found (never as
// forbidden), so that its existence is not revealed to other organizations.
type Scope struct {
	Organization string
	Products     []string // nil: every product of the organization

	every bool // EveryOrganization
}

// EveryOrganization is the scope of the registry's own work that no caller
// asked for (the connection monitor testing every connection): it contains
// every connection. A request's scope is never this one.
func EveryOrganization() Scope { return Scope{every: true} }

// AllowsProduct reports whether the scope includes the product.
func (s Scope) AllowsProduct(product string) bool {
	return s.every || s.Products == nil || slices.Contains(s.Products, product)
}

// Narrow limits the scope to one product (a request's X-Product-Name). The
// product must be allowed: narrowing never widens.
func (s Scope) Narrow(product string) Scope {
	if !s.AllowsProduct(product) {
		return Scope{Organization: s.Organization, Products: []string{}}
	}
	return Scope{Organization: s.Organization, Products: []string{product}}
}

// AllowsDocument reports whether a connection of the organization and
// product, as a read model states them, is inside the scope.
func (s Scope) AllowsDocument(org, product string) bool {
	return s.every || s.Organization != "" && org == s.Organization && s.AllowsProduct(product)
}

// Contains reports whether the connection is inside the scope. A scope
// without an organization contains nothing.
func (s Scope) Contains(c *Connection) bool {
	return s.AllowsDocument(c.org, c.spec.ProductName)
}

// ParseOrganization validates an organization name as an identity provider
// states it: 1 to 100 letters, digits, '_' and '-', kept as given. It becomes
// part of the NATS subject of the organization's name claims, where '.', '*'
// and '>' would change the meaning of the subject.
func ParseOrganization(s string) (string, error) {
	if len(s) == 0 || len(s) > 100 || !namePattern.MatchString(s) {
		return "", fmt.Errorf("must be 1 to 100 letters, digits, '_' or '-'")
	}
	return s, nil
}

package httpapi

import (
	"context"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/internal/auth"
	"github.com/connreg/registry/readmodel"
)

// Authenticator establishes who calls from the bearer token of a request
// ("" when there is none). It fails with *auth.InvalidTokenError or a
// *domain.UnavailableError when the identity provider cannot be reached.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (auth.Principal, error)
}

const ctxPrincipal = "principal"

// requireScope authenticates the request and refuses it unless the token
// grants the scope. A product the request names (X-Product-Name) must be one
// the token allows. The principal is kept for the handler.
func (a *API) requireScope(need string) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, err := a.Auth.Authenticate(c.Request.Context(), bearerToken(c.GetHeader("Authorization")))
		if err != nil {
			a.fail(c, err)
			return
		}
		if !p.HasScope(need) {
			a.fail(c, &auth.InsufficientScopeError{Scope: need})
			return
		}
		if h, ok := c.Request.Header["X-Product-Name"]; ok && len(h) > 0 {
			if product, err := domain.ParseProductName(h[0]); err == nil && !p.Scope().AllowsProduct(product) {
				a.fail(c, domain.ErrProductNotAllowed)
				return
			}
		}
		c.Set(ctxPrincipal, p)
		c.Next()
	}
}

// sealedScope refuses ?include=sealedSecrets to a token without
// connections:sealed: reading a connection does not imply receiving its
// sealed credentials.
func sealedScope(c *gin.Context) error {
	if !principal(c).HasScope(auth.ScopeSealed) {
		return &auth.InsufficientScopeError{Scope: auth.ScopeSealed}
	}
	return nil
}

// bearerToken is the token of an "Authorization: Bearer <token>" header, or
// "" for any other header.
func bearerToken(h string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

func principal(c *gin.Context) auth.Principal {
	p, _ := c.Get(ctxPrincipal)
	pr, _ := p.(auth.Principal) // zero without requireScope: an empty scope that contains nothing
	return pr
}

// scope is the part of the registry this request may touch: the caller's
// organization and allowed products, narrowed to X-Product-Name when the
// request names one.
func scope(c *gin.Context) domain.Scope {
	s := principal(c).Scope()
	if h, ok := c.Request.Header["X-Product-Name"]; ok && len(h) > 0 {
		if product, err := domain.ParseProductName(h[0]); err == nil {
			s = s.Narrow(product)
		}
	}
	return s
}

// visibility is scope as the query side takes it.
func visibility(c *gin.Context) readmodel.Visibility {
	s := scope(c)
	return readmodel.Visibility{Organization: s.Organization, Products: s.Products}
}

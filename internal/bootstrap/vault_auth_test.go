package bootstrap_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/connreg/registry/internal/sealer/vault/vaulttest"
)

// vaultClaims is the claim template of the test role: the organization and
// the allowed product come from the entity's metadata, the scopes are fixed.
const vaultClaims = `{"org_id": {{identity.entity.metadata.org_id}}, ` +
	`"products": [{{identity.entity.metadata.product}}], ` +
	`"scope": "connections:read connections:write connections:test"}`

func kidOf(t *testing.T, token string) string {
	t.Helper()
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// TestVaultIdentityTokensEndToEnd runs the API with AUTH_MODE=oidc against
// Vault's OIDC identity provider: discovery, JWKS, claims from a template,
// the token's sub as the actor, organizations kept apart, and a key rotation
// picked up without a restart.
func TestVaultIdentityTokensEndToEnd(t *testing.T) {
	v := vaulttest.Start(t)
	issuer, audience := v.OIDCProvider(t, "connreg", "connreg", vaultClaims)
	h := startService(t, t.TempDir(), oidcEnv(issuer, audience))

	alice, aliceID := v.OIDCToken(t, "connreg", "alice", map[string]string{"org_id": "org-a", "product": "reports"})
	bob, _ := v.OIDCToken(t, "connreg", "bob", map[string]string{"org_id": "org-b", "product": "reports"})
	carol, _ := v.OIDCToken(t, "connreg", "carol", map[string]string{"org_id": "org-a", "product": "billing"})

	res := h.do(http.MethodPost, "/v1/management/connections", validBody("vault-db"), bearer(alice))
	if res.status != http.StatusCreated {
		t.Fatalf("create with a Vault identity token: %d %s\nlogs:\n%s", res.status, res.body, h.logs.String())
	}
	id := res.json(t)["id"].(string)
	path := "/v1/management/connections/" + id
	hist := h.do(http.MethodGet, path+"/history", nil, bearer(alice))
	if hist.status != http.StatusOK || !strings.Contains(string(hist.body), `"actor":"`+aliceID+`"`) {
		t.Fatalf("history does not name the token's sub %s: %d %s", aliceID, hist.status, hist.body)
	}
	if res := h.do(http.MethodGet, path, nil, bearer(bob)); res.status != http.StatusNotFound {
		t.Fatalf("another organization reads the connection: %d %s", res.status, res.body)
	}
	if res := h.do(http.MethodGet, path, nil, bearer(carol)); res.status != http.StatusForbidden || res.json(t)["code"] != "REG-0403" {
		t.Fatalf("a token limited to product billing sends X-Product-Name reports: %d %s", res.status, res.body)
	}

	// Rotation: tokens signed by the new key verify without a restart; the
	// old key stays published, so tokens issued before keep working.
	// Vault publishes the next key ahead of a rotation: rotating twice makes
	// the signing key one the service has never seen.
	published := publishedKids(t, issuer)
	v.RotateOIDCKey(t, "connreg")
	v.RotateOIDCKey(t, "connreg")
	fresh, _ := v.OIDCToken(t, "connreg", "alice", map[string]string{"org_id": "org-a", "product": "reports"})
	if kid := kidOf(t, fresh); strings.Contains(published, kid) {
		t.Fatalf("the rotated key %s was already published before the rotation: %s", kid, published)
	}
	// Unknown kids refresh the keys at most once per 10 s: poll.
	eventually(t, "a token of the rotated key verifies", func() bool {
		return h.do(http.MethodGet, path, nil, bearer(fresh)).status == http.StatusOK
	})
	if res := h.do(http.MethodGet, path, nil, bearer(alice)); res.status != http.StatusOK {
		t.Fatalf("a token of the previous key: %d %s", res.status, res.body)
	}
}

// publishedKids is the JWKS of the issuer as it stands, for a check that a
// key id is new.
func publishedKids(t *testing.T, issuer string) string {
	t.Helper()
	res, err := http.Get(issuer + "/.well-known/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("JWKS: %d %v", res.StatusCode, err)
	}
	return string(b)
}

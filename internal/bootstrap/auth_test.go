package bootstrap_test

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/auth"
	"github.com/connreg/registry/internal/auth/authtest"
	"github.com/connreg/registry/internal/eventstore"
)

var allScopes = []string{auth.ScopeRead, auth.ScopeWrite, auth.ScopeTest, auth.ScopeSealed}

func oidcEnv(issuer, audience string) map[string]string {
	return map[string]string{"AUTH_MODE": "oidc", "AUTH_ISSUER": issuer, "AUTH_AUDIENCE": audience, "AUTH_PRODUCTS_CLAIM": "products"}
}

func bearer(token string, extra ...string) map[string]string {
	h := map[string]string{"Authorization": "Bearer " + token, "X-Product-Name": "Reports"}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

// route is one call of the API, with a body when it has one.
type route struct {
	method, path string
	body         map[string]any
}

func routesOf(id string, moved map[string]any) []route {
	base := "/v1/management/connections"
	now := time.Now().Add(time.Second).UTC().Format(time.RFC3339)
	return []route{
		{http.MethodPost, base, validBody("attacker-db")},
		{http.MethodPost, base + "/test", validBody("attacker-db")},
		{http.MethodGet, base, nil},
		{http.MethodGet, base + "/" + id, nil},
		{http.MethodGet, base + "/" + id + "?asOf=" + now, nil},
		{http.MethodGet, base + "/" + id + "?include=sealedSecrets", nil},
		{http.MethodGet, base + "?include=sealedSecrets", nil},
		{http.MethodGet, base + "/" + id + "/history", nil},
		{http.MethodGet, base + "/" + id + "/schema", nil},
		{http.MethodPost, base + "/validate-schema", map[string]any{"mappedFields": map[string]any{"orders-db": map[string]any{"t": []string{"f"}}}}},
		{http.MethodPatch, base + "/" + id, moved},
		{http.MethodDelete, base + "/" + id, nil},
		{http.MethodPost, base + "/" + id + "/test", nil},
	}
}

// TestAuthenticationRefusesEveryAttack sends each forged, expired, misdirected
// or underprivileged token to every route: each is refused with RFC 6750's
// answer, and nothing reaches the event stream.
func TestAuthenticationRefusesEveryAttack(t *testing.T) {
	iss := authtest.NewIssuer(t)
	h := startService(t, t.TempDir(), oidcEnv(iss.URL, authtest.Audience))
	owner := iss.Token(t, iss.Claims("alice", "org-a", allScopes...))
	res := h.do(http.MethodPost, "/v1/management/connections", validBody("orders-db"), bearer(owner))
	if res.status != http.StatusCreated {
		t.Fatalf("create with a valid token: %d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)
	before := len(h.streamMessages(""))

	valid := iss.Claims("mallory", "org-a", allScopes...)
	now := time.Now()
	with := func(k string, v any) map[string]any {
		c := iss.Claims("mallory", "org-a", allScopes...)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	const invalid, scope = `error="invalid_token"`, `error="insufficient_scope"`
	for _, tt := range []struct {
		name    string
		headers map[string]string
		status  int
		code    string
		wwwAuth string
	}{
		{"no token", map[string]string{"X-Product-Name": "Reports"}, 401, "REG-0401", invalid},
		{"another scheme", map[string]string{"Authorization": "Basic YWxpY2U6cHc=", "X-Product-Name": "Reports"}, 401, "REG-0401", invalid},
		{"garbage", bearer("garbage"), 401, "REG-0401", invalid},
		{"alg none", bearer(authtest.Unsigned(t, valid)), 401, "REG-0401", invalid},
		{"HS256 signed with the public key", bearer(iss.HS256WithPublicKey(t, valid)), 401, "REG-0401", invalid},
		{"expired", bearer(iss.Token(t, with("exp", now.Add(-2*time.Minute).Unix()))), 401, "REG-0401", invalid},
		{"not yet valid", bearer(iss.Token(t, with("nbf", now.Add(5*time.Minute).Unix()))), 401, "REG-0401", invalid},
		{"wrong issuer", bearer(iss.Token(t, with("iss", "https://evil.example.com"))), 401, "REG-0401", invalid},
		{"wrong audience", bearer(iss.Token(t, with("aud", "another-service"))), 401, "REG-0401", invalid},
		{"unknown kid", bearer(authtest.Sign(t, authtest.NewKey(t, "rogue", jose.RS256), valid)), 401, "REG-0401", invalid},
		{"missing org", bearer(iss.Token(t, with("org_id", nil))), 401, "REG-0401", invalid},
		{"missing scope", bearer(iss.Token(t, with("scope", ""))), 403, "REG-0403", scope},
		{"product not allowed", bearer(iss.Token(t, with("products", []string{"billing"}))), 403, "REG-0403", scope},
	} {
		t.Run(tt.name, func(t *testing.T) {
			moved := map[string]any{"host": "attacker.example.net", "password": "x"}
			for _, r := range routesOf(id, moved) {
				res := h.do(r.method, r.path, r.body, tt.headers)
				if res.status != tt.status || res.json(t)["code"] != tt.code {
					t.Errorf("%s %s: %d %s, want %d %s", r.method, r.path, res.status, res.body, tt.status, tt.code)
				}
				if got := res.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") || !strings.Contains(got, tt.wwwAuth) {
					t.Errorf("%s %s: WWW-Authenticate %q, want Bearer with %s", r.method, r.path, got, tt.wwwAuth)
				}
			}
		})
	}
	// A scope grants its routes only; reading does not hand out sealed secrets.
	readOnly := bearer(iss.Token(t, iss.Claims("reader", "org-a", auth.ScopeRead)))
	for _, r := range routesOf(id, map[string]any{"metadata": map[string]any{"x": "y"}}) {
		if strings.Contains(r.path, "schema") {
			continue // reads that discover the database (db.example.com): their scope is checked above
		}
		res := h.do(r.method, r.path, r.body, readOnly)
		want := http.StatusForbidden
		if r.method == http.MethodGet && !strings.Contains(r.path, "include=sealedSecrets") {
			want = http.StatusOK
		}
		if res.status != want {
			t.Errorf("read-only token, %s %s: %d %s, want %d", r.method, r.path, res.status, res.body, want)
		}
		if want == http.StatusForbidden && !strings.Contains(res.header.Get("WWW-Authenticate"), `scope="connections:`) {
			t.Errorf("read-only token, %s %s: WWW-Authenticate %q names no scope", r.method, r.path, res.header.Get("WWW-Authenticate"))
		}
	}
	if after := len(h.streamMessages("")); after != before {
		t.Fatalf("refused requests appended %d messages to the stream", after-before)
	}

	// The connection is untouched and its history names its owner.
	hist := h.do(http.MethodGet, "/v1/management/connections/"+id+"/history", nil, bearer(owner))
	if hist.status != http.StatusOK || !strings.Contains(string(hist.body), `"actor":"alice"`) || strings.Contains(string(hist.body), "mallory") {
		t.Fatalf("history: %d %s", hist.status, hist.body)
	}
	// The access log names the caller, never a token (a token is a credential).
	logs := h.logs.String()
	if !strings.Contains(logs, `"actor":"alice","organization":"org-a"`) {
		t.Errorf("the access log does not name the caller")
	}
	if strings.Contains(logs, owner) || strings.Contains(logs, strings.Split(owner, ".")[2]) {
		t.Fatalf("a token reached the log")
	}
}

// TestOrganizationsAreIsolated: organization B's valid token gets 404 on
// every route naming A's connection (its existence is not revealed), B's
// lists never show it, names and idempotency keys are per organization, and
// every event names its organization in a header.
func TestOrganizationsAreIsolated(t *testing.T) {
	iss := authtest.NewIssuer(t)
	h := startService(t, t.TempDir(), oidcEnv(iss.URL, authtest.Audience))
	a := bearer(iss.Token(t, iss.Claims("alice", "org-a", allScopes...)), "Idempotency-Key", "same-key")
	b := bearer(iss.Token(t, iss.Claims("bob", "org-b", allScopes...)), "Idempotency-Key", "same-key")

	res := h.do(http.MethodPost, "/v1/management/connections", validBody("orders-db"), a)
	if res.status != http.StatusCreated {
		t.Fatalf("A creates: %d %s", res.status, res.body)
	}
	idA := res.json(t)["id"].(string)
	// The same name and the same Idempotency-Key in B: another connection.
	res = h.do(http.MethodPost, "/v1/management/connections", validBody("orders-db"), b)
	if res.status != http.StatusCreated || res.json(t)["id"] == idA || res.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("B creates the same name with the same key: %d %s", res.status, res.body)
	}
	idB := res.json(t)["id"].(string)
	before := len(h.streamMessages(""))

	for _, r := range routesOf(idA, map[string]any{"host": "attacker.example.net", "password": "x"}) {
		if !strings.Contains(r.path, idA) {
			continue // the routes without an id: lists below, creates are B's own
		}
		res := h.do(r.method, r.path, r.body, b)
		if res.status != http.StatusNotFound || res.json(t)["code"] != "FET-1001" {
			t.Errorf("B %s %s: %d %s, want 404 FET-1001", r.method, r.path, res.status, res.body)
		}
	}
	// With If-Match too: a stale version would otherwise reveal the connection.
	if res := h.do(http.MethodPatch, "/v1/management/connections/"+idA, map[string]any{"metadata": map[string]any{}}, bearer(iss.Token(t, iss.Claims("bob", "org-b", allScopes...)), "If-Match", `"7"`)); res.status != http.StatusNotFound {
		t.Errorf("B PATCH with If-Match: %d %s", res.status, res.body)
	}
	// A product outside the request's X-Product-Name is not found either.
	other := bearer(iss.Token(t, iss.Claims("alice", "org-a", allScopes...)))
	other["X-Product-Name"] = "billing"
	if res := h.do(http.MethodGet, "/v1/management/connections/"+idA, nil, other); res.status != http.StatusNotFound {
		t.Errorf("A's connection under another product: %d %s", res.status, res.body)
	}
	if after := len(h.streamMessages("")); after != before {
		t.Fatalf("B's refused requests appended %d messages", after-before)
	}
	for who, hdr := range map[string]map[string]string{idA: a, idB: b} {
		eventually(t, "list of "+who, func() bool {
			page := h.do(http.MethodGet, "/v1/management/connections", nil, hdr).json(t)
			items := page["items"].([]any)
			return len(items) == 1 && items[0].(map[string]any)["id"] == who && page["total"] == float64(1)
		})
	}
	// B's list with sealed secrets hands out B's own only.
	sealed := h.do(http.MethodGet, "/v1/management/connections?include=sealedSecrets", nil, b)
	if sealed.status != http.StatusOK || strings.Contains(string(sealed.body), idA) || !strings.Contains(string(sealed.body), idB) {
		t.Fatalf("B lists sealed secrets: %d %s", sealed.status, sealed.body)
	}
	// Subscribers tell the organization from a header.
	orgs := map[string]string{idA: "org-a", idB: "org-b"}
	for _, m := range h.streamMessages(events.EventSubjectPrefix) {
		id := strings.TrimPrefix(m.Subject, events.EventSubjectPrefix)
		if got := m.Header.Get(eventstore.HeaderOrganization); got != orgs[id] {
			t.Errorf("%s: %s %q, want %q", m.Subject, eventstore.HeaderOrganization, got, orgs[id])
		}
	}
	// B deletes its own connection; A's is still there.
	if res := h.do(http.MethodDelete, "/v1/management/connections/"+idB, nil, b); res.status != http.StatusNoContent {
		t.Fatalf("B deletes its own: %d %s", res.status, res.body)
	}
	if res := h.do(http.MethodGet, "/v1/management/connections/"+idA, nil, a); res.status != http.StatusOK {
		t.Fatalf("A's connection after B's delete: %d %s", res.status, res.body)
	}
}

// TestStoredPasswordCannotBeExfiltrated is the attack of issue 11: move a
// connection to a server of the attacker's choosing, then test it, so that
// the registry sends the stored password there. Another organization gets
// 404 at each step; the owner cannot move it without sending the password
// again; the attacker's server never sees a connection.
func TestStoredPasswordCannotBeExfiltrated(t *testing.T) {
	attacker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var dialled atomic.Int64
	go func() {
		for {
			c, err := attacker.Accept()
			if err != nil {
				return
			}
			dialled.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { attacker.Close() })
	attackerPort := attacker.Addr().(*net.TCPAddr).Port
	// The connection's own server: a loopback port where nothing listens.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ownPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	iss := authtest.NewIssuer(t)
	h := startService(t, t.TempDir(), oidcEnv(iss.URL, authtest.Audience))
	owner := bearer(iss.Token(t, iss.Claims("alice", "org-a", allScopes...)))
	thief := bearer(iss.Token(t, iss.Claims("mallory", "org-b", allScopes...)))
	const password = "the-stored-password-9f3a"
	body := validBody("payments-db")
	body["host"], body["port"], body["password"] = "127.0.0.1", ownPort, password
	res := h.do(http.MethodPost, "/v1/management/connections", body, owner)
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)
	path := "/v1/management/connections/" + id
	moveAway := map[string]any{"host": "127.0.0.1", "port": attackerPort}

	// Another organization: 404 for the move and for the test.
	if res := h.do(http.MethodPatch, path, moveAway, thief); res.status != http.StatusNotFound {
		t.Fatalf("B moves A's connection: %d %s", res.status, res.body)
	}
	if res := h.do(http.MethodPost, path+"/test", nil, thief); res.status != http.StatusNotFound {
		t.Fatalf("B tests A's connection: %d %s", res.status, res.body)
	}
	// The owner (or a stolen write token of the owner's organization) cannot
	// move it without the password.
	res = h.do(http.MethodPatch, path, moveAway, owner)
	if got := res.json(t); res.status != http.StatusUnprocessableEntity || got["code"] != "REG-0423" ||
		got["fields"].(map[string]any)["password"] == nil || got["fields"].(map[string]any)["port"] == nil {
		t.Fatalf("A moves without the password: %d %s, want 422 REG-0423 naming port and password", res.status, res.body)
	}
	// The stored target is what a test dials: refused, nothing sent elsewhere.
	res = h.do(http.MethodPost, path+"/test", nil, owner)
	if got := res.json(t); res.status != http.StatusOK || got["reason"] != "CONNECTION_REFUSED" {
		t.Fatalf("A tests its connection: %d %s", res.status, res.body)
	}
	got := h.do(http.MethodGet, path, nil, owner).json(t)
	if got["host"] != "127.0.0.1" || got["port"] != float64(ownPort) {
		t.Fatalf("the connection moved: %v", got)
	}
	if n := dialled.Load(); n != 0 {
		t.Fatalf("the attacker's server received %d connections", n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.responses {
		if strings.Contains(string(b), password) {
			t.Fatalf("a response carries the stored password: %s", b)
		}
	}
}

// TestIdentityProviderDownIsAnOutage: with the issuer unreachable, a request
// is answered 503 REG-5036 (never 500, never let through) and writes nothing.
func TestIdentityProviderDownIsAnOutage(t *testing.T) {
	iss := authtest.NewIssuer(t)
	token := iss.Token(t, iss.Claims("alice", "org-a", allScopes...))
	iss.SetDown(true)
	h := startService(t, t.TempDir(), oidcEnv(iss.URL, authtest.Audience))
	for _, r := range routesOf("0190a000-0000-7000-8000-000000000001", map[string]any{"host": "x", "password": "y"}) {
		res := h.do(r.method, r.path, r.body, bearer(token))
		if res.status != http.StatusServiceUnavailable || res.json(t)["code"] != "REG-5036" || res.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: %d %s, want 503 REG-5036", r.method, r.path, res.status, res.body)
		}
	}
	if n := len(h.streamMessages("")); n != 0 {
		t.Fatalf("%d messages written while the issuer was down", n)
	}
	iss.SetDown(false)
	// Past the refresh rate limit (10s), the service asks again and recovers.
	eventually(t, "recovery after the issuer is back", func() bool {
		return h.do(http.MethodGet, "/v1/management/connections", nil, bearer(token)).status == http.StatusOK
	})
}

// TestAuthOffIsLoudAndLocal: without configuration the service runs with
// authentication off, says so at start, and every event names the anonymous
// actor in organization default.
func TestAuthOffIsLoudAndLocal(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	if !strings.Contains(h.logs.String(), "AUTHENTICATION IS OFF") {
		t.Fatalf("no start-up warning:\n%s", h.logs.String())
	}
	res := h.create(validBody("anon-db"))
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	for _, m := range h.streamMessages(events.EventSubjectPrefix) {
		if m.Header.Get(eventstore.HeaderOrganization) != "default" || !strings.Contains(string(m.Data), `"actor":"anonymous"`) {
			t.Fatalf("event without organization default or actor anonymous: %v %s", m.Header, m.Data)
		}
	}
}

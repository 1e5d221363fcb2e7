package bootstrap_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/events/sealed"
	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/sealer/vault/vaulttest"
)

// TestConsumersOpenSealedSecretsWithTheirOwnVaultIdentity is the story of
// docs/credentials.md against a real Vault: a downstream service with a
// decrypt-only token opens the password and the SSL key it reads from
// GET ?include=sealedSecrets and from the events, before and after a key
// rotation; Vault refuses every other token and operation and logs every
// opening in its audit device; the registry records every hand-out and the
// plaintext never leaves it.
func TestConsumersOpenSealedSecretsWithTheirOwnVaultIdentity(t *testing.T) {
	f := newRotationFixture(t, 2) // sealed at key version 1, key now at version 2
	auditLog := filepath.Join(t.TempDir(), "vault-audit.log")
	if err := f.v.Client().Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": auditLog}}); err != nil {
		t.Fatal(err)
	}
	consumer := f.v.Client()
	consumer, err := consumer.Clone()
	if err != nil {
		t.Fatal(err)
	}
	consumer.SetToken(f.v.PolicyToken(t, "report-fetcher", vaulttest.ConsumerPolicy("transit", "connections")))
	nobody, _ := f.v.Client().Clone()
	nobody.SetToken(f.v.PolicyToken(t, "nothing", `path "secret/*" { capabilities = ["read"] }`))

	id := f.live[0] // the connection with a password and a client key
	want := f.secrets[id]
	path := "/v1/management/connections/" + id

	// 1. GET with include=sealedSecrets: the sealed form, complete, and openable.
	res := f.h.do(http.MethodGet, path+"?include=sealedSecrets", nil, map[string]string{"X-Request-Id": "fetcher-read-1"})
	if res.status != http.StatusOK {
		t.Fatalf("GET include: %d %s", res.status, res.body)
	}
	ss := res.json(t)["sealedSecrets"].(map[string]any)
	pw, key := sealedOf(t, ss["password"]), sealedOf(t, ss["sslKey"])
	if pw.Scheme != "vault-transit" || pw.Mount != "transit" || pw.KeyName != "connections" || pw.Context != b64(id) ||
		!strings.HasPrefix(pw.Ciphertext, "vault:v1:") {
		t.Fatalf("sealed password = %+v", pw)
	}
	for i, s := range []events.SealedSecret{pw, key} {
		plain, err := sealed.Open(t.Context(), consumer, s)
		if err != nil || string(plain) != want[i] {
			t.Fatalf("open secret %d from GET: %q, %v", i, plain, err)
		}
	}
	if res.header.Get("ETag") == "" {
		t.Error("GET include has no ETag")
	}

	// 2. From the created event, read by a plain subscriber.
	var created *events.ConnectionCreatedV1
	for _, m := range f.h.streamMessages(events.EventSubjectPrefix + id) {
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := e.Payload.(*events.ConnectionCreatedV1); ok {
			created = p
		}
	}
	if created == nil {
		t.Fatal("no created event")
	}
	if created.Password.Mount != "transit" || created.Password.Context != b64(id) {
		t.Errorf("the event's sealed password lacks mount or context: %+v", created.Password)
	}
	if plain, err := sealed.Open(t.Context(), consumer, created.Password); err != nil || string(plain) != want[0] {
		t.Fatalf("open the event's password: %q, %v", plain, err)
	}
	if plain, err := sealed.Open(t.Context(), consumer, *created.SSL.Key); err != nil || string(plain) != want[1] {
		t.Fatalf("open the event's SSL key: %v", err)
	}

	// 3. What Vault refuses.
	if _, err := sealed.Open(t.Context(), nobody, pw); !errors.Is(err, sealed.ErrNotAllowed) {
		t.Errorf("a token without the policy: %v, want ErrNotAllowed", err)
	}
	other := pw
	other.Context = b64(f.live[1])
	if _, err := sealed.Open(t.Context(), consumer, other); err == nil {
		t.Error("the ciphertext opened under another connection's context")
	}
	for _, op := range []struct {
		path string
		data map[string]any
	}{
		{"transit/encrypt/connections", map[string]any{"plaintext": b64("x"), "context": b64(id)}},
		{"transit/rewrap/connections", map[string]any{"ciphertext": pw.Ciphertext, "context": b64(id)}},
		{"transit/keys/connections/rotate", nil},
	} {
		var re *api.ResponseError
		if _, err := consumer.Logical().Write(op.path, op.data); !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
			t.Errorf("the decrypt-only token on %s: %v, want 403", op.path, err)
		}
	}
	if _, err := consumer.Logical().Read("transit/keys/connections"); err == nil {
		t.Error("the decrypt-only token read the key")
	}

	// 4. The list hands out every page item's secrets, each read recorded.
	list := f.h.do(http.MethodGet, "/v1/management/connections?include=sealedSecrets&limit=100", nil, map[string]string{"X-Product-Name": "Reports"})
	if list.status != http.StatusOK {
		t.Fatalf("list include: %d %s", list.status, list.body)
	}
	items := list.json(t)["items"].([]any)
	if len(items) != len(f.live) {
		t.Fatalf("list has %d items, want %d", len(items), len(f.live))
	}
	for _, it := range items {
		m := it.(map[string]any)
		s := sealedOf(t, m["sealedSecrets"].(map[string]any)["password"])
		plain, err := sealed.Open(t.Context(), consumer, s)
		if err != nil || string(plain) != f.secrets[m["id"].(string)][0] {
			t.Fatalf("open a listed password: %v", err)
		}
	}

	// 5. Rotation: the resealed event's new ciphertext opens too.
	if _, err, logs := f.reseal(t, t.Context(), f.config(t), bootstrap.ResealOptions{}); err != nil {
		t.Fatalf("reseal: %v\n%s", err, logs)
	}
	resealed := f.resealEvents(t, f.h)[id]
	if len(resealed) != 1 || !strings.HasPrefix(resealed[0].Password.Ciphertext, "vault:v2:") {
		t.Fatalf("resealed events of %s: %+v", id, resealed)
	}
	if plain, err := sealed.Open(t.Context(), consumer, resealed[0].Password); err != nil || string(plain) != want[0] {
		t.Fatalf("open the resealed password: %v", err)
	}

	// 6. Vault's audit log has an entry for every decryption the consumer made.
	audit, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	for _, line := range bytes.Split(audit, []byte("\n")) {
		if bytes.Contains(line, []byte(`"type":"response"`)) && bytes.Contains(line, []byte(`"path":"transit/decrypt/connections"`)) {
			opened++
		}
	}
	if opened < 2+2+len(f.live)+1 {
		t.Errorf("Vault's audit log has %d decrypt responses, want at least %d", opened, 2+2+len(f.live)+1)
	}

	// 7. The registry's own record: one secrets-read event per hand-out, in
	// the history with its actor and request id, never a ciphertext.
	hist := f.h.do(http.MethodGet, path+"/history?limit=100", nil, nil)
	if hist.status != http.StatusOK {
		t.Fatalf("history: %d %s", hist.status, hist.body)
	}
	reads := 0
	for _, it := range hist.json(t)["items"].([]any) {
		e := it.(map[string]any)
		if e["type"] == events.TypeConnectionSecretsReadV1 {
			reads++
			if e["actor"] == "" || (reads == 1 && e["requestId"] != "fetcher-read-1") {
				t.Errorf("secrets-read entry %v", e)
			}
		}
	}
	if reads != 2 { // the GET and the list
		t.Errorf("history has %d secrets-read entries, want 2", reads)
	}
	if bytes.Contains(hist.body, []byte("vault:v")) {
		t.Error("the history shows a ciphertext")
	}
	for _, m := range f.h.streamMessages(events.EventSubjectPrefix + id) {
		if e, _ := events.Decode(m.Data); e.Type() == events.TypeConnectionSecretsReadV1 && bytes.Contains(m.Data, []byte("vault:v")) {
			t.Error("a secrets-read event carries a ciphertext")
		}
	}

	// 8. The plaintext never left the registry.
	f.h.mu.Lock()
	for i, r := range f.h.responses {
		f.assertNoSecret(t, "response "+string(rune('0'+i)), string(r))
	}
	f.h.mu.Unlock()
	f.assertNoSecret(t, "the logs", f.h.logs.String())
}

// TestDevelopmentSecretsOpenOnlyInTheRegistry: with the development sealer
// the sealed form says scheme "dev", carries no mount or context, and the
// consumer package refuses it with ErrNotOpenable.
func TestDevelopmentSecretsOpenOnlyInTheRegistry(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	res := h.create(validBody("dev-sealed"))
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)
	got := h.do(http.MethodGet, "/v1/management/connections/"+id+"?include=sealedSecrets", nil, nil)
	if got.status != http.StatusOK {
		t.Fatalf("%d %s", got.status, got.body)
	}
	ss := got.json(t)["sealedSecrets"].(map[string]any)
	pw := sealedOf(t, ss["password"])
	if pw.Scheme != "dev" || pw.Mount != "" || pw.Context != "" || !strings.HasPrefix(pw.Ciphertext, "devseal:v1:") {
		t.Fatalf("development sealed password = %+v", pw)
	}
	if _, ok := ss["sslKey"]; ok {
		t.Error("sslKey present for a connection without a client key")
	}
	if _, err := sealed.Open(t.Context(), nil, pw); !errors.Is(err, sealed.ErrNotOpenable) {
		t.Errorf("open a development secret: %v, want ErrNotOpenable", err)
	}
	for _, bad := range []string{"?include=password", "?include=sealedSecrets&include=sealedSecrets", "?include=sealedSecrets&asOf=2026-01-01"} {
		if r := h.do(http.MethodGet, "/v1/management/connections/"+id+bad, nil, nil); r.status != http.StatusBadRequest {
			t.Errorf("GET %s: %d %s", bad, r.status, r.body)
		}
	}
}

func sealedOf(t *testing.T, v any) events.SealedSecret {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("sealed secret = %v", v)
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	return events.SealedSecret{Scheme: str("scheme"), Mount: str("mount"), KeyName: str("keyName"), Context: str("context"), Ciphertext: str("ciphertext")}
}

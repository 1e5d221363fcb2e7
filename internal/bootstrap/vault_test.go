package bootstrap_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/sealer/vault/vaulttest"
)

// TestCreateSealsThroughVault boots the API with a real Vault: the event holds
// Vault's ciphertext for the connection, the plaintext is nowhere, and with
// Vault gone a create answers 503 and appends nothing.
func TestCreateSealsThroughVault(t *testing.T) {
	v := vaulttest.Start(t)
	dir := t.TempDir()
	h := startService(t, dir, map[string]string{
		"VAULT_ADDR": v.Addr, "VAULT_TOKEN": v.Token, "VAULT_TIMEOUT": "1s",
	})
	body := validBody("vaulted-db")
	password := "vault-only-" + strings.Repeat("x", 8)
	body["password"] = password
	res := h.create(body)
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)
	msgs := h.streamMessages(events.EventSubjectPrefix)
	if len(msgs) != 1 {
		t.Fatalf("%d events", len(msgs))
	}
	ev, err := events.Decode(msgs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	sealed := ev.Payload.(*events.ConnectionCreatedV1).Password
	if sealed.Scheme != "vault-transit" || sealed.KeyName != "connections" || !strings.HasPrefix(sealed.Ciphertext, "vault:v1:") {
		t.Fatalf("sealed password = %+v", sealed)
	}
	// Vault decrypts it only with this connection's id as the derivation context.
	plain, err := v.Client().Logical().Write("transit/decrypt/connections", map[string]any{
		"ciphertext": sealed.Ciphertext, "context": b64(id)})
	if err != nil || plain.Data["plaintext"] != b64(password) {
		t.Fatalf("decrypt with the connection's context: %v %v", plain, err)
	}
	if _, err := v.Client().Logical().Write("transit/decrypt/connections", map[string]any{
		"ciphertext": sealed.Ciphertext, "context": b64("another-connection")}); err == nil {
		t.Fatal("the ciphertext decrypted under another connection's context")
	}

	v.Stop()
	down := h.create(validBody("while-vault-is-down"))
	if down.status != http.StatusServiceUnavailable || down.json(t)["code"] != "REG-5033" {
		t.Fatalf("create with Vault down: %d %s", down.status, down.body)
	}
	if n := len(h.streamMessages("")); n != 2 {
		t.Fatalf("%d stream messages after the failed create, want 2", n)
	}
	if strings.Contains(h.logs.String(), password) {
		t.Fatal("the password is in the logs")
	}
	h.stop()
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if data, rerr := os.ReadFile(path); rerr == nil && bytes.Contains(data, []byte(password)) {
				t.Errorf("the password is in %s", path)
			}
		}
		return nil
	})
}

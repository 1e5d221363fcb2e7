package vault_test

import (
	"strings"
	"testing"
	"time"

	"github.com/connreg/registry/internal/sealer/vault"
)

func TestConfigFromEnv(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	t.Run("defaults", func(t *testing.T) {
		c, err := vault.ConfigFromEnv(env(map[string]string{"VAULT_ADDR": "https://vault:8200", "VAULT_TOKEN": "tok"}))
		if err != nil {
			t.Fatal(err)
		}
		want := vault.Config{Addr: "https://vault:8200", Token: "tok", AppRoleMount: "approle",
			TransitMount: "transit", Key: "connections", Timeout: 5 * time.Second}
		if c != want {
			t.Fatalf("got %+v\nwant %+v", c, want)
		}
	})
	t.Run("approle and options", func(t *testing.T) {
		c, err := vault.ConfigFromEnv(env(map[string]string{
			"VAULT_ADDR": "https://vault:8200", "VAULT_ROLE_ID": "r", "VAULT_SECRET_ID": "s",
			"VAULT_APPROLE_MOUNT": "/ci-approle/", "VAULT_CACERT": "/etc/ca.pem",
			"VAULT_TRANSIT_MOUNT": "kms", "VAULT_TRANSIT_KEY": "k", "VAULT_TIMEOUT": "1500ms",
			"VAULT_CREATE_KEY": "true",
		}))
		if err != nil {
			t.Fatal(err)
		}
		want := vault.Config{Addr: "https://vault:8200", RoleID: "r", SecretID: "s", AppRoleMount: "ci-approle",
			CACert: "/etc/ca.pem", TransitMount: "kms", Key: "k", Timeout: 1500 * time.Millisecond, CreateKey: true}
		if c != want {
			t.Fatalf("got %+v\nwant %+v", c, want)
		}
	})
	t.Run("timeout in seconds", func(t *testing.T) {
		c, err := vault.ConfigFromEnv(env(map[string]string{"VAULT_ADDR": "http://v", "VAULT_TOKEN": "t", "VAULT_TIMEOUT": "3"}))
		if err != nil || c.Timeout != 3*time.Second {
			t.Fatalf("%v %v", c.Timeout, err)
		}
	})
	for _, tc := range []struct {
		name    string
		env     map[string]string
		mention []string
	}{
		{"nothing", map[string]string{}, []string{"VAULT_ADDR", "VAULT_TOKEN"}},
		{"bad addr", map[string]string{"VAULT_ADDR": "vault:8200", "VAULT_TOKEN": "t"}, []string{"VAULT_ADDR"}},
		{"both logins", map[string]string{"VAULT_ADDR": "http://v", "VAULT_TOKEN": "secret-token", "VAULT_ROLE_ID": "r"}, []string{"VAULT_TOKEN", "choose one"}},
		{"role without secret", map[string]string{"VAULT_ADDR": "http://v", "VAULT_ROLE_ID": "r"}, []string{"VAULT_SECRET_ID"}},
		{"secret without role", map[string]string{"VAULT_ADDR": "http://v", "VAULT_SECRET_ID": "very-secret"}, []string{"VAULT_ROLE_ID"}},
		{"ca over http", map[string]string{"VAULT_ADDR": "http://v", "VAULT_TOKEN": "t", "VAULT_CACERT": "/ca"}, []string{"VAULT_CACERT"}},
		{"bad timeout", map[string]string{"VAULT_ADDR": "http://v", "VAULT_TOKEN": "t", "VAULT_TIMEOUT": "soon"}, []string{"VAULT_TIMEOUT"}},
		{"negative timeout", map[string]string{"VAULT_ADDR": "http://v", "VAULT_TOKEN": "t", "VAULT_TIMEOUT": "-1s"}, []string{"VAULT_TIMEOUT", "positive"}},
		{"bad create", map[string]string{"VAULT_ADDR": "http://v", "VAULT_TOKEN": "t", "VAULT_CREATE_KEY": "yes please"}, []string{"VAULT_CREATE_KEY"}},
		{"bad key", map[string]string{"VAULT_ADDR": "http://v", "VAULT_TOKEN": "t", "VAULT_TRANSIT_KEY": "a/b"}, []string{"VAULT_TRANSIT_KEY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := vault.ConfigFromEnv(env(tc.env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			for _, secret := range []string{"secret-token", "very-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks a credential: %v", err)
				}
			}
		})
	}
}

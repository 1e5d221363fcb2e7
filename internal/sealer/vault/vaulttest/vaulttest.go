// Package vaulttest starts a real HashiCorp Vault (the repository's
// bin/vault, in dev mode, on a loopback port) for tests, with the transit
// engine and a derived key ready. It never assumes a Vault is already
// running, and stops the one it started when the test ends.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Names of what Start prepares.
const (
	Mount = "transit"
	Key   = "connections"
)

// startTimeout bounds how long Start waits for Vault to answer health
// checks; a loaded 2-core CI runner needs a few seconds.
const startTimeout = 60 * time.Second

// Server is one Vault dev server owned by a test.
type Server struct {
	// Addr is the base URL, http://127.0.0.1:PORT (https with WithTLS).
	Addr string
	// Token is the root token (random per server).
	Token string
	// CACert is the PEM file of the CA that signed the server certificate
	// (WithTLS only).
	CACert string
	// Mount and Key name the transit engine and its derived key.
	Mount, Key string

	cmd      *exec.Cmd
	exited   chan struct{}
	logPath  string
	client   *api.Client
	stopOnce sync.Once
	mu       sync.Mutex
	approle  bool
}

// Option changes how Start runs Vault.
type Option func(*options)

type options struct{ tls bool }

// WithTLS serves HTTPS with a certificate signed by a CA Vault writes to
// Server.CACert (vault server -dev-tls).
func WithTLS() Option { return func(o *options) { o.tls = true } }

// Start runs a Vault dev server for the test, prepared with the transit
// mount and a derived key, and stops it in t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	bin := Binary(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(t, bin, o)
		if err == nil {
			s.prepare(t)
			return s
		}
		lastErr = err
		t.Logf("vaulttest: start attempt %d: %v", attempt+1, err)
	}
	t.Fatalf("vaulttest: Vault did not start: %v", lastErr)
	return nil
}

// Binary returns the path of the repository's bin/vault, building it with
// scripts/build-vault.sh when it is missing (that takes 10+ minutes: run
// the script before `go test` in CI, or raise -timeout).
func Binary(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	bin := filepath.Join(root, "bin", "vault")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("vaulttest: %s missing; running scripts/build-vault.sh", bin)
	cmd := exec.Command(filepath.Join(root, "scripts", "build-vault.sh"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vaulttest: build-vault.sh: %v\n%s", err, tail(out, 4000))
	}
	return bin
}

// repoRoot finds the repository from this source file's location, so tests
// work whatever their working directory.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if ok {
		root := filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
		if _, err := os.Stat(filepath.Join(root, "scripts", "build-vault.sh")); err == nil {
			return filepath.Clean(root), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "build-vault.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the repository root (scripts/build-vault.sh)")
		}
		dir = parent
	}
}

func start(t testing.TB, bin string, o options) (*Server, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	token := randomToken()
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"server", "-dev",
		"-dev-root-token-id=" + token,
		"-dev-listen-address=" + listen,
		"-dev-no-store-token",
		"-log-level=warn",
	}
	s := &Server{
		Addr:    "http://" + listen,
		Token:   token,
		Mount:   Mount,
		Key:     Key,
		exited:  make(chan struct{}),
		logPath: filepath.Join(dir, "vault.log"),
	}
	if o.tls {
		certDir := filepath.Join(dir, "tls")
		if err := os.Mkdir(certDir, 0o700); err != nil {
			return nil, err
		}
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certDir)
		s.Addr = "https://" + listen
		s.CACert = filepath.Join(certDir, "vault-ca.pem")
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv(dir)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s.cmd = cmd
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	t.Cleanup(s.Stop)

	if err := s.waitHealthy(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\nvault log:\n%s", err, s.Log())
	}
	client, err := s.NewClient()
	if err != nil {
		s.Stop()
		return nil, err
	}
	client.SetToken(token)
	s.client = client
	return s, nil
}

// cleanEnv is the process environment without VAULT_* variables, with HOME
// pointing into the test's temporary directory.
func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "root-" + hex.EncodeToString(b)
}

// waitHealthy polls /v1/sys/health until Vault is unsealed and active, the
// process exits, or startTimeout passes.
func (s *Server) waitHealthy() error {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return errors.New("vault exited during start")
		default:
		}
		lastErr = s.healthy()
		if lastErr == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("vault not healthy after %s: %v", startTimeout, lastErr)
}

func (s *Server) healthy() error {
	hc, err := s.httpClient()
	if err != nil {
		return err
	}
	resp, err := hc.Get(s.Addr + "/v1/sys/health")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health status %d", resp.StatusCode)
	}
	return nil
}

func (s *Server) httpClient() (*http.Client, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	if s.CACert == "" {
		return hc, nil
	}
	pem, err := os.ReadFile(s.CACert)
	if err != nil {
		return nil, err // not written yet
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", s.CACert)
	}
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return hc, nil
}

// NewClient returns a Vault API client for this server without a token.
func (s *Server) NewClient() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	if s.CACert != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: s.CACert}); err != nil {
			return nil, err
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearToken()
	return c, nil
}

// Client returns a root-token client for arranging test state.
func (s *Server) Client() *api.Client { return s.client }

func (s *Server) prepare(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	if err := s.client.Sys().MountWithContext(ctx, s.Mount, &api.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("vaulttest: enable transit: %v", err)
	}
	s.CreateKey(t, s.Key, true)
}

// CreateKey creates an aes256-gcm96 transit key, derived or not.
func (s *Server) CreateKey(t testing.TB, name string, derived bool) {
	t.Helper()
	_, err := s.client.Logical().Write(s.Mount+"/keys/"+name, map[string]any{
		"derived": derived,
		"type":    "aes256-gcm96",
	})
	if err != nil {
		t.Fatalf("vaulttest: create key %s: %v", name, err)
	}
}

// RotateKey adds a version to the key and returns the new latest version.
func (s *Server) RotateKey(t testing.TB) int {
	t.Helper()
	if _, err := s.client.Logical().Write(s.Mount+"/keys/"+s.Key+"/rotate", nil); err != nil {
		t.Fatalf("vaulttest: rotate: %v", err)
	}
	sec, err := s.client.Logical().Read(s.Mount + "/keys/" + s.Key)
	if err != nil || sec == nil {
		t.Fatalf("vaulttest: read key: %v", err)
	}
	var n int
	if _, err := fmt.Sscan(fmt.Sprint(sec.Data["latest_version"]), &n); err != nil {
		t.Fatalf("vaulttest: latest_version %v: %v", sec.Data["latest_version"], err)
	}
	return n
}

// SealerPolicy is the least a sealer's token needs on mount/key.
func SealerPolicy(mount, key string) string {
	return fmt.Sprintf(`
path "%[1]s/keys/%[2]s" { capabilities = ["read"] }
path "%[1]s/encrypt/%[2]s" { capabilities = ["update"] }
path "%[1]s/decrypt/%[2]s" { capabilities = ["update"] }
path "%[1]s/rewrap/%[2]s" { capabilities = ["update"] }
`, mount, key)
}

// ConsumerPolicy is what a downstream service needs to open the registry's
// sealed secrets itself, and nothing more: decrypt on mount/key. No encrypt,
// rewrap, rotate or key read. docs/credentials.md shows the same policy.
func ConsumerPolicy(mount, key string) string {
	return fmt.Sprintf(`
path "%[1]s/decrypt/%[2]s" { capabilities = ["update"] }
`, mount, key)
}

// PolicyToken writes the policy rules under name and returns a new token
// holding only that policy (and default).
func (s *Server) PolicyToken(t testing.TB, name, rules string) string {
	t.Helper()
	if err := s.client.Sys().PutPolicy(name, rules); err != nil {
		t.Fatalf("vaulttest: put policy: %v", err)
	}
	sec, err := s.client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{name}, NoParent: true})
	if err != nil {
		t.Fatalf("vaulttest: create token: %v", err)
	}
	return sec.Auth.ClientToken
}

// AppRole creates an AppRole role allowed to use the transit key (policy
// SealerPolicy) whose tokens live tokenTTL and at most maxTTL, and returns
// its role id and a fresh secret id.
func (s *Server) AppRole(t testing.TB, tokenTTL, maxTTL time.Duration) (roleID, secretID string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.client.Logical()
	if !s.approle {
		if err := s.client.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
			t.Fatalf("vaulttest: enable approle: %v", err)
		}
		if err := s.client.Sys().PutPolicy("connreg-sealer", SealerPolicy(s.Mount, s.Key)); err != nil {
			t.Fatalf("vaulttest: put policy: %v", err)
		}
		s.approle = true
	}
	role := "sealer-" + randomToken()[5:13]
	if _, err := c.Write("auth/approle/role/"+role, map[string]any{
		"token_policies": []string{"connreg-sealer"},
		"token_ttl":      int(tokenTTL.Seconds()),
		"token_max_ttl":  int(maxTTL.Seconds()),
	}); err != nil {
		t.Fatalf("vaulttest: create role: %v", err)
	}
	sec, err := c.Read("auth/approle/role/" + role + "/role-id")
	if err != nil || sec == nil {
		t.Fatalf("vaulttest: read role id: %v", err)
	}
	roleID, _ = sec.Data["role_id"].(string)
	sec, err = c.Write("auth/approle/role/"+role+"/secret-id", nil)
	if err != nil || sec == nil {
		t.Fatalf("vaulttest: create secret id: %v", err)
	}
	secretID, _ = sec.Data["secret_id"].(string)
	return roleID, secretID
}

// Stop terminates Vault (SIGINT, then SIGKILL after 10s) and waits for it.
// Tests call it to simulate "Vault is down"; t.Cleanup calls it too.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// Log returns the end of Vault's output, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(tail(b, 4000))
}

func tail(b []byte, n int) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// OIDCProvider configures Vault's identity OIDC provider as a token issuer:
// the issuer URL (this server), an RS256 key and a role whose tokens carry
// the claims of template (Vault's claim template syntax, e.g.
// {"org_id": {{identity.entity.metadata.org_id}}}). It returns the issuer
// URL a verifier discovers from and the audience of the role's tokens (its
// client id).
func (s *Server) OIDCProvider(t testing.TB, key, role, template string) (issuer, audience string) {
	t.Helper()
	c := s.client.Logical()
	if _, err := c.Write("identity/oidc/config", map[string]any{"issuer": s.Addr}); err != nil {
		t.Fatalf("vaulttest: oidc config: %v", err)
	}
	if _, err := c.Write("identity/oidc/key/"+key, map[string]any{
		"algorithm": "RS256", "allowed_client_ids": "*", "rotation_period": "24h", "verification_ttl": "24h",
	}); err != nil {
		t.Fatalf("vaulttest: oidc key: %v", err)
	}
	if _, err := c.Write("identity/oidc/role/"+role, map[string]any{"key": key, "ttl": "10m", "template": template}); err != nil {
		t.Fatalf("vaulttest: oidc role: %v", err)
	}
	sec, err := c.Read("identity/oidc/role/" + role)
	if err != nil || sec == nil {
		t.Fatalf("vaulttest: read oidc role: %v", err)
	}
	audience, _ = sec.Data["client_id"].(string)
	if err := s.client.Sys().PutPolicy("oidc-"+role, `path "identity/oidc/token/`+role+`" { capabilities = ["read"] }`); err != nil {
		t.Fatalf("vaulttest: oidc policy: %v", err)
	}
	if _, err := c.Write("auth/token/roles/oidc-"+role, map[string]any{
		"allowed_policies": []string{"oidc-" + role}, "allowed_entity_aliases": []string{"*"}, "orphan": true,
	}); err != nil {
		t.Fatalf("vaulttest: token role: %v", err)
	}
	return s.Addr + "/v1/identity/oidc", audience
}

// OIDCToken returns an identity token of the role (see OIDCProvider) for the
// entity named name, created with the metadata the role's template reads.
func (s *Server) OIDCToken(t testing.TB, role, name string, metadata map[string]string) (token, subject string) {
	t.Helper()
	c := s.client.Logical()
	sec, err := c.Write("identity/entity", map[string]any{"name": name, "metadata": metadata})
	if err != nil {
		t.Fatalf("vaulttest: entity: %v", err)
	}
	if sec == nil { // the entity existed: updated in place
		if sec, err = c.Read("identity/entity/name/" + name); err != nil || sec == nil {
			t.Fatalf("vaulttest: read entity: %v", err)
		}
	} else {
		auths, err := s.client.Sys().ListAuth()
		if err != nil {
			t.Fatalf("vaulttest: list auth: %v", err)
		}
		if _, err := c.Write("identity/entity-alias", map[string]any{
			"name": name, "canonical_id": sec.Data["id"], "mount_accessor": auths["token/"].Accessor,
		}); err != nil {
			t.Fatalf("vaulttest: entity alias: %v", err)
		}
	}
	subject, _ = sec.Data["id"].(string)
	tok, err := c.Write("auth/token/create/oidc-"+role, map[string]any{"entity_alias": name, "policies": []string{"oidc-" + role}})
	if err != nil || tok == nil || tok.Auth == nil {
		t.Fatalf("vaulttest: entity token: %v", err)
	}
	client, err := s.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(tok.Auth.ClientToken)
	idt, err := client.Logical().Read("identity/oidc/token/" + role)
	if err != nil || idt == nil {
		t.Fatalf("vaulttest: identity token: %v", err)
	}
	token, _ = idt.Data["token"].(string)
	return token, subject
}

// RotateOIDCKey makes the OIDC key sign with a new key pair; the old public
// key stays published for its verification_ttl.
func (s *Server) RotateOIDCKey(t testing.TB, key string) {
	t.Helper()
	if _, err := s.client.Logical().Write("identity/oidc/key/"+key+"/rotate", nil); err != nil {
		t.Fatalf("vaulttest: rotate oidc key: %v", err)
	}
}

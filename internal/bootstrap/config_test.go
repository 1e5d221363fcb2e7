package bootstrap_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/bootstrap"
)

func TestConfigurationErrorsNameTheVariable(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"ENV": "staging"}, "ENV"},
		{map[string]string{"NATS_URL": "http://x"}, "NATS_URL"},
		{map[string]string{"MONGO_URI": "postgres://x"}, "MONGO_URI"},
		{map[string]string{"PROJECTOR": "sometimes"}, "PROJECTOR"},
		{map[string]string{"STORE_TIMEOUT": "soon"}, "STORE_TIMEOUT"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{map[string]string{"ENV": "production"}, "NATS_URL"},
		{map[string]string{"STREAM_REPLICAS": "0"}, "STREAM_REPLICAS"},
		{map[string]string{"STREAM_REPLICAS": "three"}, "STREAM_REPLICAS"},
		{map[string]string{"STREAM_UPDATE": "yes"}, "STREAM_UPDATE"},
		{map[string]string{"NATS_CREDS": "/nonexistent/user.creds"}, "NATS_CREDS"},
		{map[string]string{"NATS_CA": "/nonexistent/ca.pem"}, "NATS_CA"},
		{map[string]string{"NATS_CERT": "/etc/hostname"}, "NATS_KEY"},
		{map[string]string{"MONITOR_INTERVAL": "often"}, "MONITOR_INTERVAL"},
		{map[string]string{"MONITOR_INTERVAL": "10ms"}, "MONITOR_INTERVAL"},
		{map[string]string{"MONITOR_CONCURRENCY": "0"}, "MONITOR_CONCURRENCY"},
		{map[string]string{"AUTH_MODE": "maybe"}, "AUTH_MODE"},
		{map[string]string{"AUTH_MODE": "oidc"}, "AUTH_ISSUER"},
		{map[string]string{"AUTH_MODE": "oidc", "AUTH_ISSUER": "ftp://id.example.com"}, "AUTH_ISSUER"},
		{map[string]string{"AUTH_MODE": "oidc", "AUTH_ISSUER": "https://id.example.com"}, "AUTH_AUDIENCE"},
		{map[string]string{"ENV": "production", "NATS_URL": "nats://n:4222", "MONGO_URI": "mongodb://m", "AUTH_MODE": "oidc",
			"AUTH_ISSUER": "http://id.example.com", "AUTH_AUDIENCE": "connreg"}, "AUTH_ISSUER"},
	} {
		_, err := bootstrap.ConfigFromEnv(func(k string) string { return tt.env[k] })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v does not name %s", tt.env, err, tt.want)
		}
	}
	cfg, err := bootstrap.ConfigFromEnv(func(string) string { return "" })
	if err != nil || cfg.HTTPAddr != "127.0.0.1:8080" || cfg.Auth.Mode != bootstrap.AuthOff || cfg.DataDir != "./data" || !cfg.Projector || cfg.Env != "development" ||
		cfg.StreamReplicas != 1 || cfg.StreamUpdate {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	oidc := map[string]string{"AUTH_MODE": "OIDC", "AUTH_ISSUER": "https://id.example.com/realms/x", "AUTH_AUDIENCE": "connreg"}
	cfg, err = bootstrap.ConfigFromEnv(func(k string) string { return oidc[k] })
	if err != nil || cfg.HTTPAddr != ":8080" || cfg.Auth.Mode != bootstrap.AuthOIDC || cfg.Auth.OrgClaim != "org_id" ||
		cfg.Auth.Issuer != oidc["AUTH_ISSUER"] || cfg.Auth.Audience != "connreg" || cfg.Auth.ProductsClaim != "" {
		t.Fatalf("oidc: %+v %v", cfg, err)
	}
	oidc["HTTP_ADDR"], oidc["AUTH_ORG_CLAIM"], oidc["AUTH_PRODUCTS_CLAIM"] = "127.0.0.1:9000", "tenant", "products"
	cfg, err = bootstrap.ConfigFromEnv(func(k string) string { return oidc[k] })
	if err != nil || cfg.HTTPAddr != "127.0.0.1:9000" || cfg.Auth.OrgClaim != "tenant" || cfg.Auth.ProductsClaim != "products" {
		t.Fatalf("oidc with claims: %+v %v", cfg, err)
	}
}

// TestMonitorIsOffInDevelopmentUnlessSet: development machines hold made-up
// hosts, so the monitor dials nothing there unless asked; production
// monitors every 15 minutes unless told otherwise.
func TestMonitorIsOffInDevelopmentUnlessSet(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want time.Duration
	}{
		{map[string]string{}, 0},
		{map[string]string{"MONITOR_INTERVAL": "2m"}, 2 * time.Minute},
		{map[string]string{"ENV": "production", "NATS_URL": "nats://n", "MONGO_URI": "mongodb://m"}, 15 * time.Minute},
		{map[string]string{"ENV": "production", "NATS_URL": "nats://n", "MONGO_URI": "mongodb://m", "MONITOR_INTERVAL": "off"}, 0},
	} {
		cfg, err := bootstrap.ConfigFromEnv(func(k string) string { return tt.env[k] })
		if err != nil || cfg.MonitorInterval != tt.want || cfg.MonitorConcurrency != 4 {
			t.Errorf("%v: interval %s, concurrency %d, %v; want %s, 4", tt.env, cfg.MonitorInterval, cfg.MonitorConcurrency, err, tt.want)
		}
	}
}

func TestProductionRefusesTheDevelopmentSealer(t *testing.T) {
	n := externalNATS(t)
	m := externalMongo(t)
	env := map[string]string{"ENV": "production", "NATS_URL": n.URL(), "MONGO_URI": m.URI(), "DATA_DIR": t.TempDir(),
		"AUTH_MODE": "oidc", "AUTH_ISSUER": "https://id.example.com", "AUTH_AUDIENCE": "connreg"}
	cfg, err := bootstrap.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	svc, err := bootstrap.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		svc.Close()
		t.Fatal("the service started in production with the development sealer")
	}
	if !strings.Contains(err.Error(), "VAULT_ADDR") {
		t.Fatalf("the error does not name VAULT_ADDR: %v", err)
	}
}

// TestNATSPasswordNeverLogged: a NATS_URL with a password that cannot be
// reached fails with an error naming the variable and the host, never the
// password.
func TestNATSPasswordNeverLogged(t *testing.T) {
	const password = "s3cret-nats-password"
	env := map[string]string{"NATS_URL": "nats://registry:" + password + "@127.0.0.1:1", "MONGO_URI": "mongodb://127.0.0.1:1",
		"DATA_DIR": t.TempDir(), "STORE_TIMEOUT": "1s"}
	cfg, err := bootstrap.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	svc, err := bootstrap.Start(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err == nil {
		svc.Close()
		t.Fatal("started without NATS")
	}
	if !strings.Contains(err.Error(), "NATS_URL") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("the error does not name NATS_URL and its host: %v", err)
	}
	if strings.Contains(err.Error()+logs.String(), password) {
		t.Fatalf("the NATS password appears in the error or the logs: %v\n%s", err, logs.String())
	}
}

// TestStartKeepsTheStreamsReplicaCount: an API whose STREAM_REPLICAS differs
// from the existing stream's says so at start and leaves the stream as it is
// (on this single server, moving it to 3 replicas would fail the start).
func TestStartKeepsTheStreamsReplicaCount(t *testing.T) {
	n := externalNATS(t)
	m := externalMongo(t)
	env := map[string]string{"NATS_URL": n.URL(), "MONGO_URI": m.URI(), "PROJECTOR": "off"}
	first := startService(t, t.TempDir(), env)
	first.stop()

	env["STREAM_REPLICAS"] = "3"
	h := startService(t, t.TempDir(), env)
	if !strings.Contains(h.logs.String(), "replica count differs from STREAM_REPLICAS") {
		t.Fatalf("no warning about the replica count at start:\n%s", h.logs.String())
	}
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 1 {
		t.Fatalf("the stream has %d replicas after the start, want its 1 kept", r)
	}
}

// TestProductionRefusesAuthenticationOff: the API does not start in
// production without bearer authentication; the projector, which serves no
// caller, reads the same configuration without AUTH_* variables.
func TestProductionRefusesAuthenticationOff(t *testing.T) {
	for _, mode := range []string{"", "off"} {
		env := map[string]string{"ENV": "production", "NATS_URL": "nats://127.0.0.1:1", "MONGO_URI": "mongodb://127.0.0.1:1",
			"DATA_DIR": t.TempDir(), "AUTH_MODE": mode}
		cfg, err := bootstrap.ConfigFromEnv(func(k string) string { return env[k] })
		if err != nil {
			t.Fatalf("AUTH_MODE=%q: the configuration (also the projector's) is refused: %v", mode, err)
		}
		svc, err := bootstrap.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			svc.Close()
			t.Fatalf("AUTH_MODE=%q: the API started in production without authentication", mode)
		}
		if !strings.Contains(err.Error(), "AUTH_MODE") {
			t.Fatalf("AUTH_MODE=%q: the error does not name AUTH_MODE: %v", mode, err)
		}
	}
}

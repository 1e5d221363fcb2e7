package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/internal/eventstore"
)

// NATSAuth is how the service proves itself to a secured NATS and checks the
// server's certificate. User and password, when used, travel in NATS_URL
// (nats://user:password@host:4222) and are never logged.
type NATSAuth struct {
	Creds string // NATS_CREDS: a credentials file (user JWT + NKey seed), the NATS operator/JWT mode
	NKey  string // NATS_NKEY: a file holding an NKey seed (SU...), for servers configured with nkey users
	CA    string // NATS_CA: PEM CA bundle that signed the servers' certificates
	Cert  string // NATS_CERT: client certificate (PEM), for servers that verify clients
	Key   string // NATS_KEY: the client certificate's private key (PEM)
}

func (a NATSAuth) validate() error {
	if a.Creds != "" && a.NKey != "" {
		return errors.New("NATS_CREDS and NATS_NKEY: set one, not both")
	}
	if (a.Cert == "") != (a.Key == "") {
		return errors.New("NATS_CERT and NATS_KEY: set both or neither")
	}
	for _, f := range []struct{ name, path string }{
		{"NATS_CREDS", a.Creds}, {"NATS_NKEY", a.NKey}, {"NATS_CA", a.CA}, {"NATS_CERT", a.Cert}, {"NATS_KEY", a.Key},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s=%q: %w", f.name, f.path, err)
		}
	}
	return nil
}

// Reconnection. A client that gives up after nats.go's default 60 attempts
// (two minutes) would stay disconnected for good after a long rolling
// restart of the cluster, so the service retries for ever; the jitter
// spreads the reconnects of many replicas over the restarted node, and the
// buffer keeps publishes made during a short disconnection (each still
// bounded by STORE_TIMEOUT: a publish that gets no acknowledgement in time
// is answered 503 and never reported stored).
const (
	natsReconnectWait   = 250 * time.Millisecond
	natsReconnectJitter = 500 * time.Millisecond
	natsReconnectBuffer = 8 << 20
)

// connectNATS is the one way the service's processes connect to NATS: to
// NATS_URL with the authentication of cfg.NATS, or, when embedded is not
// nil, in-process to the embedded server (which has no listener, so no
// credentials); reconnection that survives a rolling restart, and connection
// events logged (without credentials).
//
// extra options come last, so a caller's own (a name, say) win.
func connectNATS(cfg Config, embedded *devstack.NATS, name string, logger *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(natsReconnectWait),
		nats.ReconnectJitter(natsReconnectJitter, 2*natsReconnectJitter),
		nats.ReconnectBufSize(natsReconnectBuffer),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("NATS disconnected; reconnecting", "error", err.Error())
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("NATS reconnected", "server", redactURL(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			logger.Warn("NATS asynchronous error", "error", err.Error())
		}),
	}
	if cfg.Timeout > 0 {
		opts = append(opts, nats.Timeout(cfg.Timeout))
	}
	if embedded != nil {
		return embedded.Connect(append(opts, extra...)...)
	}
	natsURL := cfg.NATSURL
	a := cfg.NATS
	if a.Creds != "" {
		opts = append(opts, nats.UserCredentials(a.Creds))
	}
	if a.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(a.NKey)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY: %w", err)
		}
		opts = append(opts, o)
	}
	if a.CA != "" {
		opts = append(opts, nats.RootCAs(a.CA))
	}
	if a.Cert != "" {
		opts = append(opts, nats.ClientCert(a.Cert, a.Key))
	}
	nc, err := nats.Connect(natsURL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("NATS_URL: cannot connect to %s: %w", redactURL(natsURL), err)
	}
	return nc, nil
}

// connectNATSOrEmbedded connects a maintenance process (replay, verify,
// reseal) to NATS_URL, or starts the embedded nats-server in this process on
// the state under DATA_DIR (the API must be stopped: the directory lock
// refuses a second server). stop closes what it opened.
func connectNATSOrEmbedded(cfg Config, name string, logger *slog.Logger) (nc *nats.Conn, stop func(), err error) {
	if cfg.NATSURL != "" {
		if nc, err = connectNATS(cfg, nil, name, logger); err != nil {
			return nil, nil, err
		}
		return nc, nc.Close, nil
	}
	dir := filepath.Join(cfg.DataDir, "nats")
	n, err := devstack.StartPrivateNATS(dir)
	if err != nil {
		return nil, nil, err
	}
	if nc, err = connectNATS(cfg, n, name, logger); err != nil {
		n.Shutdown()
		return nil, nil, err
	}
	logger.Info("embedded nats-server started on the state under DATA_DIR; keep the API stopped until this ends", "dir", dir)
	return nc, func() { nc.Close(); n.Shutdown() }, nil
}

// redactURL hides the password of every URL in a comma-separated NATS URL
// list.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// ensureStream creates the system-of-record stream with STREAM_REPLICAS
// replicas, or checks an existing one, and says at start when its replica
// count differs from the configured one (left as it is unless
// STREAM_UPDATE=true).
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg Config, logger *slog.Logger) (jetstream.Stream, error) {
	stream, err := eventstore.EnsureStream(ctx, js, eventstore.StreamOptions{Replicas: cfg.StreamReplicas, Update: cfg.StreamUpdate})
	if err != nil {
		return nil, err
	}
	if have := stream.CachedInfo().Config.Replicas; have != cfg.StreamReplicas {
		logger.Warn("the event stream's replica count differs from STREAM_REPLICAS and was left as it is; "+
			"start one process with STREAM_UPDATE=true to change it",
			"stream", stream.CachedInfo().Config.Name, "replicas", have, "STREAM_REPLICAS", cfg.StreamReplicas)
	}
	return stream, nil
}
